//! The TOML configuration model (keepalived-like names, see
//! `shared/design/vision.md`) and its validation. Every error names the file,
//! line, column and key and says what is allowed. Unknown keys are errors.

mod raw;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use crate::time::Micros;
use crate::vrrp::{Auth, Centis, ChecksumForm, Interval, RouterConfig, Secs, Version};
use raw::{NumOrStr, StatusSpec};

/// A configuration error: `FILE:LINE:COL: KEY: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// Dotted key path, e.g. `vrrp_instance.VI_1.priority` (empty if unknown).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.col, self.key, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub global: Global,
    /// Sorted by name.
    pub instances: Vec<Instance>,
    /// Sorted by name.
    pub servers: Vec<VirtualServer>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Global {
    pub router_id: String,
    pub control_socket: PathBuf,
    pub metrics: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInterface {
    pub interface: String,
    pub weight: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub interface: String,
    pub router: RouterConfig,
    /// VIPs with their prefix length (bare address = /32 or /128).
    pub vips: Vec<IpNetwork>,
    pub unicast_src_ip: Option<IpAddr>,
    pub track_interface: Vec<TrackInterface>,
    pub notify: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LbAlgo {
    Rr,
    Wrr,
    Lc,
    Sh,
    Maglev,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Admin {
    #[default]
    Ready,
    Drain,
    Maint,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Tcp {
        port: Option<u16>,
    },
    Http {
        port: Option<u16>,
        path: String,
        expect_status: (u16, u16),
        host: Option<String>,
    },
    Exec {
        command: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub kind: CheckKind,
    pub interval: Micros,
    pub timeout: Micros,
    pub rise: u32,
    pub fall: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealServer {
    pub address: SocketAddr,
    /// 0..=65535; 0 = never picked.
    pub weight: u32,
    pub backup: bool,
    /// Failover group: lower is preferred. Primaries 0; `backup = true` defaults to 1.
    pub priority: u32,
    pub admin: Admin,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VirtualServer {
    pub name: String,
    pub listen: SocketAddr,
    pub protocol: Protocol,
    pub lb_algo: LbAlgo,
    pub vrrp_instance: Option<String>,
    pub check: Option<Check>,
    pub real_servers: Vec<RealServer>,
    pub connect_timeout: Micros,
    pub idle_timeout: Micros,
    pub max_connections: Option<u32>,
    /// Redispatch attempts on a failed connect.
    pub retries: u32,
}

/// Load and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        col: 0,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, &file)
}

/// Parse and validate configuration text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let cx = Cx { text, file };
    let raw: raw::File = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        let msg = e.message().trim().to_string();
        // Name the key for "unknown field" errors: the text at the span is the key.
        let key = e
            .span()
            .and_then(|s| text.get(s.clone()))
            .filter(|k| msg.starts_with("unknown field") && !k.contains('\n'))
            .map(|k| k.trim().to_string())
            .unwrap_or_default();
        cx.err_at(at, &key, msg)
    })?;
    cx.build(raw)
}

/// Parse a duration: "250ms", "1s", "1.5s", "2m", "100us", or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Micros, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000f64)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1f64)
    } else if let Some(n) = s.strip_suffix("µs") {
        (n, 1f64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000f64)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000_000f64)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000_000f64)
    } else {
        (s, 1_000_000f64)
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        format!("{s:?} is not a duration (use e.g. \"250ms\", \"1s\", \"1.5s\", \"2m\" or a number of seconds)")
    })?;
    seconds_like(v, mult, s)
}

fn seconds_like(v: f64, mult: f64, shown: &str) -> Result<Micros, String> {
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{shown:?} must be a non-negative duration"));
    }
    let us = (v * mult).round();
    if us > 1e15 {
        return Err(format!("{shown:?} is too long"));
    }
    Ok(Micros(us as u64))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "vipd".into())
}

struct Cx<'a> {
    text: &'a str,
    file: &'a str,
}

type R<T> = Result<T, ConfigError>;

impl Cx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let upto = &self.text[..offset.min(self.text.len())];
        let line = upto.matches('\n').count() + 1;
        let col = upto.rfind('\n').map(|p| upto.len() - p).unwrap_or(upto.len() + 1);
        (line, col)
    }
    fn err_at(&self, offset: usize, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, col) = self.line_col(offset);
        ConfigError {
            file: self.file.to_string(),
            line,
            col,
            key: key.to_string(),
            message: message.into(),
        }
    }
    fn err<T>(&self, sp: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        self.err_at(sp.span().start, key, message)
    }

    fn int_in(&self, v: &Spanned<i64>, key: &str, lo: i64, hi: i64, note: &str) -> R<i64> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            return Err(self.err(v, key, format!("{n} is out of range, allowed {lo}..={hi}{note}")));
        }
        Ok(n)
    }

    fn duration(&self, v: &Spanned<NumOrStr>, key: &str) -> R<Micros> {
        let r = match v.get_ref() {
            NumOrStr::Int(n) => seconds_like(*n as f64, 1_000_000f64, &n.to_string()),
            NumOrStr::Float(f) => seconds_like(*f, 1_000_000f64, &f.to_string()),
            NumOrStr::Str(s) => parse_duration(s),
        };
        r.map_err(|m| self.err(v, key, m))
    }

    fn build(&self, raw: raw::File) -> R<Config> {
        let global = match &raw.global {
            None => Global {
                router_id: hostname(),
                control_socket: crate::control::default_socket(),
                metrics: None,
            },
            Some(g) => {
                let g = g.get_ref();
                let metrics = match &g.metrics {
                    None => None,
                    Some(m) => Some(m.get_ref().parse::<SocketAddr>().map_err(|_| {
                        self.err(
                            m,
                            "global.metrics",
                            format!("{:?} is not an address:port like \"127.0.0.1:9650\"", m.get_ref()),
                        )
                    })?),
                };
                let control_socket = match &g.control_socket {
                    None => crate::control::default_socket(),
                    Some(p) => {
                        let path = PathBuf::from(p.get_ref());
                        if !path.is_absolute() {
                            return Err(self.err(p, "global.control_socket", "must be an absolute path"));
                        }
                        path
                    }
                };
                Global {
                    router_id: g
                        .router_id
                        .as_ref()
                        .map(|r| r.get_ref().clone())
                        .unwrap_or_else(hostname),
                    control_socket,
                    metrics,
                }
            }
        };
        let mut instances = Vec::new();
        for (name, inst) in raw.vrrp_instance.iter().flatten() {
            instances.push(self.instance(name, inst)?);
        }
        // Cross checks between instances.
        for (a_i, a) in instances.iter().enumerate() {
            for b in &instances[a_i + 1..] {
                let same_family = a.vips[0].is_ipv4() == b.vips[0].is_ipv4();
                if a.interface == b.interface && a.router.vrid == b.router.vrid && same_family {
                    let sp = &raw
                        .vrrp_instance
                        .as_ref()
                        .and_then(|m| m.get(&b.name))
                        .map(|s| s.span().start)
                        .unwrap_or(0);
                    return Err(self.err_at(
                        *sp,
                        &format!("vrrp_instance.{}.virtual_router_id", b.name),
                        format!(
                            "VRID {} on {} is already used by vrrp_instance.{} (one VRID per interface and address family)",
                            b.router.vrid, b.interface, a.name
                        ),
                    ));
                }
                for v in &b.vips {
                    if a.vips.iter().any(|x| x.ip() == v.ip()) {
                        let sp = raw
                            .vrrp_instance
                            .as_ref()
                            .and_then(|m| m.get(&b.name))
                            .map(|s| s.span().start)
                            .unwrap_or(0);
                        return Err(self.err_at(
                            sp,
                            &format!("vrrp_instance.{}.virtual_ipaddress", b.name),
                            format!("{} is also a VIP of vrrp_instance.{}", v.ip(), a.name),
                        ));
                    }
                }
            }
        }
        let mut servers = Vec::new();
        for (name, vs) in raw.virtual_server.iter().flatten() {
            let s = self.server(name, vs, &instances)?;
            if let Some(o) = servers
                .iter()
                .find(|o: &&VirtualServer| o.listen == s.listen && o.protocol == s.protocol)
            {
                return Err(self.err(
                    &vs.get_ref().listen,
                    &format!("virtual_server.{name}.listen"),
                    format!(
                        "{} is already the listen address of virtual_server.{}",
                        s.listen, o.name
                    ),
                ));
            }
            servers.push(s);
        }
        Ok(Config {
            global,
            instances,
            servers,
        })
    }

    fn instance(&self, name: &str, sp: &Spanned<raw::Instance>) -> R<Instance> {
        let k = |key: &str| format!("vrrp_instance.{name}.{key}");
        let r = sp.get_ref();
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            return Err(self.err(
                sp,
                &format!("vrrp_instance.{name}"),
                "instance names use 1-64 of A-Z a-z 0-9 _ - .",
            ));
        }
        let interface = r.interface.get_ref().clone();
        if interface.is_empty()
            || interface.len() > 15
            || interface.contains('/')
            || interface.contains(char::is_whitespace)
        {
            return Err(self.err(
                &r.interface,
                &k("interface"),
                format!("{interface:?} is not an interface name (1-15 characters)"),
            ));
        }
        let vrid = self.int_in(&r.virtual_router_id, &k("virtual_router_id"), 1, 255, "")? as u8;
        let priority = match &r.priority {
            Some(p) => self.int_in(p, &k("priority"), 1, 255, " (255 = address owner)")? as u8,
            None => 100,
        };
        let version = match &r.version {
            None => Version::V3,
            Some(v) => match v.get_ref() {
                3 => Version::V3,
                2 => Version::V2,
                n => return Err(self.err(v, &k("version"), format!("{n} is not a VRRP version, allowed 2 or 3"))),
            },
        };
        let advert_us = match &r.advert_int {
            None => Micros::from_secs(1),
            Some(a) => self.duration(a, &k("advert_int"))?,
        };
        let advert_interval = match version {
            Version::V3 => {
                let ok = advert_us.0 % 10_000 == 0;
                let cs = advert_us.0 / 10_000;
                match (ok, u16::try_from(cs).ok().and_then(Centis::new)) {
                    (true, Some(c)) => Interval::V3(c),
                    _ => {
                        return Err(self.err_at(
                            r.advert_int.as_ref().map(off).unwrap_or(off(&r.virtual_router_id)),
                            &k("advert_int"),
                            format!(
                                "{} µs is not allowed for VRRPv3: use a multiple of 10 ms from 10ms to 40.95s",
                                advert_us.0
                            ),
                        ))
                    }
                }
            }
            Version::V2 => {
                let ok = advert_us.0 % 1_000_000 == 0;
                match (ok, u8::try_from(advert_us.0 / 1_000_000).ok().and_then(Secs::new)) {
                    (true, Some(s)) => Interval::V2(s),
                    _ => {
                        return Err(self.err_at(
                            r.advert_int.as_ref().map(off).unwrap_or(off(&r.virtual_router_id)),
                            &k("advert_int"),
                            format!(
                                "{} µs is not allowed for VRRPv2: use whole seconds from 1 to 255",
                                advert_us.0
                            ),
                        ))
                    }
                }
            }
        };
        let preempt = match (&r.preempt, &r.nopreempt) {
            (Some(p), Some(n)) if *p.get_ref() == *n.get_ref() => {
                return Err(self.err(n, &k("nopreempt"), "contradicts preempt; set only one of them"));
            }
            (Some(p), _) => *p.get_ref(),
            (None, Some(n)) => !*n.get_ref(),
            (None, None) => true,
        };
        let preempt_delay = match &r.preempt_delay {
            None => Micros::ZERO,
            Some(d) => {
                let v = self.duration(d, &k("preempt_delay"))?;
                if v > Micros::from_secs(1000) {
                    return Err(self.err(d, &k("preempt_delay"), "at most 1000s"));
                }
                v
            }
        };
        if r.virtual_ipaddress.get_ref().is_empty() {
            return Err(self.err(
                &r.virtual_ipaddress,
                &k("virtual_ipaddress"),
                "needs at least one address",
            ));
        }
        let mut vips: Vec<IpNetwork> = Vec::new();
        for v in r.virtual_ipaddress.get_ref() {
            let s = v.get_ref();
            let net = if s.contains('/') {
                s.parse::<IpNetwork>().ok()
            } else {
                s.parse::<IpAddr>()
                    .ok()
                    .and_then(|a| IpNetwork::new(a, if a.is_ipv4() { 32 } else { 128 }).ok())
            };
            let Some(net) = net else {
                return Err(self.err(
                    v,
                    &k("virtual_ipaddress"),
                    format!("{s:?} is not an address or address/prefix"),
                ));
            };
            if vips.first().is_some_and(|f| f.is_ipv4() != net.is_ipv4()) {
                return Err(self.err(
                    v,
                    &k("virtual_ipaddress"),
                    format!(
                        "{s} mixes address families; use one family per instance (a second instance for the other)"
                    ),
                ));
            }
            if version == Version::V2 && net.is_ipv6() {
                return Err(self.err(
                    v,
                    &k("virtual_ipaddress"),
                    format!("{s}: VRRPv2 carries IPv4 only; use version = 3"),
                ));
            }
            if vips.iter().any(|x| x.ip() == net.ip()) {
                return Err(self.err(v, &k("virtual_ipaddress"), format!("{s} is listed twice")));
            }
            vips.push(net);
        }
        if vips.len() > 255 {
            return Err(self.err(
                &r.virtual_ipaddress,
                &k("virtual_ipaddress"),
                "at most 255 addresses per instance",
            ));
        }
        let v4 = vips[0].is_ipv4();
        let fam_ok = |a: &IpAddr| a.is_ipv4() == v4;
        let unicast_src_ip = match &r.unicast_src_ip {
            None => None,
            Some(s) => {
                let a: IpAddr = s.get_ref().parse().map_err(|_| {
                    self.err(
                        s,
                        &k("unicast_src_ip"),
                        format!("{:?} is not an IP address", s.get_ref()),
                    )
                })?;
                if !fam_ok(&a) {
                    return Err(self.err(s, &k("unicast_src_ip"), "must be of the VIPs' address family"));
                }
                Some(a)
            }
        };
        let mut unicast_peers = Vec::new();
        for p in r.unicast_peer.iter().flatten() {
            let a: IpAddr = p
                .get_ref()
                .parse()
                .map_err(|_| self.err(p, &k("unicast_peer"), format!("{:?} is not an IP address", p.get_ref())))?;
            if !fam_ok(&a) {
                return Err(self.err(p, &k("unicast_peer"), format!("{a} is not of the VIPs' address family")));
            }
            unicast_peers.push(a);
        }
        let auth = match &r.authentication {
            None => Auth::None,
            Some(a) => {
                if version != Version::V2 {
                    return Err(self.err(
                        a,
                        &k("authentication"),
                        "only VRRPv2 has authentication (RFC 9568 removed it)",
                    ));
                }
                let ar = a.get_ref();
                if !ar.auth_type.get_ref().eq_ignore_ascii_case("PASS") {
                    return Err(self.err(&ar.auth_type, &k("authentication.auth_type"), "allowed: \"PASS\""));
                }
                let pass = ar.auth_pass.get_ref().as_bytes();
                if pass.is_empty() || pass.len() > 8 {
                    return Err(self.err(&ar.auth_pass, &k("authentication.auth_pass"), "must be 1 to 8 bytes"));
                }
                let mut b = [0u8; 8];
                b[..pass.len()].copy_from_slice(pass);
                Auth::Simple(b)
            }
        };
        let checksum_form = match &r.checksum_form {
            None => ChecksumForm::PseudoHeader,
            Some(c) => {
                if version != Version::V3 || !v4 {
                    return Err(self.err(c, &k("checksum_form"), "only applies to VRRPv3 over IPv4"));
                }
                match c.get_ref().as_str() {
                    "pseudo_header" => ChecksumForm::PseudoHeader,
                    "message_only" => ChecksumForm::MessageOnly,
                    o => {
                        return Err(self.err(
                            c,
                            &k("checksum_form"),
                            format!("{o:?}: allowed \"pseudo_header\" or \"message_only\""),
                        ))
                    }
                }
            }
        };
        let garp_master_repeat = match &r.garp_master_repeat {
            None => 5,
            Some(g) => self.int_in(g, &k("garp_master_repeat"), 1, 100, "")? as u32,
        };
        let garp_master_delay = match &r.garp_master_delay {
            None => Micros::from_secs(5),
            Some(d) => {
                let v = self.duration(d, &k("garp_master_delay"))?;
                if v > Micros::from_secs(3600) {
                    return Err(self.err(d, &k("garp_master_delay"), "at most 3600s (0 = no second burst)"));
                }
                v
            }
        };
        let mut track_interface = Vec::new();
        for t in r.track_interface.iter().flatten() {
            let tr = t.get_ref();
            let weight = match &tr.weight {
                Some(w) => self.int_in(w, &k("track_interface.weight"), -254, 254, "")? as i32,
                None => 1 - i32::from(priority),
            };
            track_interface.push(TrackInterface {
                interface: tr.interface.get_ref().clone(),
                weight,
            });
        }
        let notify = match &r.notify {
            None => None,
            Some(n) => {
                let p = PathBuf::from(n.get_ref());
                if !p.is_absolute() {
                    return Err(self.err(n, &k("notify"), "must be an absolute path to an executable"));
                }
                Some(p)
            }
        };
        let router = RouterConfig {
            name: name.to_string(),
            vrid,
            priority,
            version,
            advert_interval,
            preempt,
            preempt_delay,
            vips: vips.iter().map(|n| n.ip()).collect(),
            unicast_peers,
            allowed_peers: Vec::new(), // TODO(lead): wire `allowed_peers` from the config file
            auth,
            checksum_form,
            garp_master_repeat,
            garp_master_delay,
        };
        Ok(Instance {
            name: name.to_string(),
            interface,
            router,
            vips,
            unicast_src_ip,
            track_interface,
            notify,
        })
    }

    fn server(&self, name: &str, sp: &Spanned<raw::Server>, instances: &[Instance]) -> R<VirtualServer> {
        let k = |key: &str| format!("virtual_server.{name}.{key}");
        let r = sp.get_ref();
        let listen: SocketAddr = r.listen.get_ref().parse().map_err(|_| {
            self.err(
                &r.listen,
                &k("listen"),
                format!(
                    "{:?} is not an address:port like \"192.0.2.100:6000\" or \"[2001:db8::100]:6000\"",
                    r.listen.get_ref()
                ),
            )
        })?;
        if listen.port() == 0 {
            return Err(self.err(&r.listen, &k("listen"), "port 0 is not allowed"));
        }
        let protocol = match r.protocol.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some(o) => {
                return Err(self.err_at(
                    r.protocol.as_ref().map(off).unwrap_or(off(&r.listen)),
                    &k("protocol"),
                    format!("{o:?}: allowed \"tcp\" or \"udp\""),
                ))
            }
        };
        let lb_algo = match r.lb_algo.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("rr") => LbAlgo::Rr,
            Some("wrr") => LbAlgo::Wrr,
            Some("lc") | Some("wlc") => LbAlgo::Lc,
            Some("sh") => LbAlgo::Sh,
            Some("maglev") | Some("mh") => LbAlgo::Maglev,
            Some(o) => {
                return Err(self.err_at(
                    r.lb_algo.as_ref().map(off).unwrap_or(off(&r.listen)),
                    &k("lb_algo"),
                    format!("{o:?}: allowed \"rr\", \"wrr\", \"lc\", \"sh\" or \"maglev\""),
                ))
            }
        };
        let vrrp_instance = match &r.vrrp_instance {
            None => None,
            Some(v) => {
                if !instances.iter().any(|i| &i.name == v.get_ref()) {
                    let known: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
                    return Err(self.err(
                        v,
                        &k("vrrp_instance"),
                        format!("no vrrp_instance named {:?} (defined: {:?})", v.get_ref(), known),
                    ));
                }
                Some(v.get_ref().clone())
            }
        };
        let check = match &r.check {
            None => None,
            Some(c) => Some(self.check(name, c)?),
        };
        if r.real_server.get_ref().is_empty() {
            return Err(self.err(&r.real_server, &k("real_server"), "needs at least one backend"));
        }
        let mut real_servers: Vec<RealServer> = Vec::new();
        for rs in r.real_server.get_ref() {
            let rr = rs.get_ref();
            let address: SocketAddr = rr.address.get_ref().parse().map_err(|_| {
                self.err(
                    &rr.address,
                    &k("real_server.address"),
                    format!(
                        "{:?} is not an address:port like \"198.51.100.11:6000\"",
                        rr.address.get_ref()
                    ),
                )
            })?;
            if address.port() == 0 {
                return Err(self.err(&rr.address, &k("real_server.address"), "port 0 is not allowed"));
            }
            if real_servers.iter().any(|o| o.address == address) {
                return Err(self.err(
                    &rr.address,
                    &k("real_server.address"),
                    format!("{address} is listed twice"),
                ));
            }
            let weight = match &rr.weight {
                None => 1,
                Some(w) => self.int_in(w, &k("real_server.weight"), 0, 65535, " (0 = never picked)")? as u32,
            };
            let backup = rr.backup.as_ref().map(|b| *b.get_ref()).unwrap_or(false);
            let priority = match &rr.priority {
                None => u32::from(backup),
                Some(p) => self.int_in(p, &k("real_server.priority"), 0, 1000, " (lower is preferred)")? as u32,
            };
            let admin = match rr.state.as_ref().map(|s| s.get_ref().as_str()) {
                None | Some("ready") => Admin::Ready,
                Some("drain") => Admin::Drain,
                Some("maint") => Admin::Maint,
                Some(o) => {
                    return Err(self.err_at(
                        rr.state.as_ref().map(off).unwrap_or(off(&rr.address)),
                        &k("real_server.state"),
                        format!("{o:?}: allowed \"ready\", \"drain\" or \"maint\""),
                    ))
                }
            };
            real_servers.push(RealServer {
                address,
                weight,
                backup,
                priority,
                admin,
            });
        }
        let secs = |v: &Option<Spanned<NumOrStr>>, key: &str, default: Micros| -> R<Micros> {
            match v {
                None => Ok(default),
                Some(d) => {
                    let x = self.duration(d, &k(key))?;
                    if x.0 == 0 || x > Micros::from_secs(86_400) {
                        return Err(self.err(d, &k(key), "allowed from 1us to 24h"));
                    }
                    Ok(x)
                }
            }
        };
        let connect_timeout = secs(&r.connect_timeout, "connect_timeout", Micros::from_secs(2))?;
        let idle_default = if protocol == Protocol::Tcp {
            Micros::from_secs(300)
        } else {
            Micros::from_secs(30)
        };
        let idle_timeout = secs(&r.idle_timeout, "idle_timeout", idle_default)?;
        let max_connections = match &r.max_connections {
            None => None,
            Some(m) => Some(self.int_in(m, &k("max_connections"), 1, 10_000_000, "")? as u32),
        };
        let retries = match &r.retries {
            None => 3,
            Some(m) => self.int_in(m, &k("retries"), 0, 100, "")? as u32,
        };
        Ok(VirtualServer {
            name: name.to_string(),
            listen,
            protocol,
            lb_algo,
            vrrp_instance,
            check,
            real_servers,
            connect_timeout,
            idle_timeout,
            max_connections,
            retries,
        })
    }

    fn check(&self, name: &str, sp: &Spanned<raw::Check>) -> R<Check> {
        let k = |key: &str| format!("virtual_server.{name}.check.{key}");
        let c = sp.get_ref();
        let interval = match &c.interval {
            None => Micros::from_secs(2),
            Some(d) => self.duration(d, &k("interval"))?,
        };
        if interval < Micros::from_millis(10) || interval > Micros::from_secs(3600) {
            return Err(self.err_at(
                c.interval.as_ref().map(off).unwrap_or(off(&c.kind)),
                &k("interval"),
                "allowed from 10ms to 3600s",
            ));
        }
        let timeout = match &c.timeout {
            None => Micros::from_secs(1).min(interval),
            Some(d) => {
                let t = self.duration(d, &k("timeout"))?;
                if t.0 == 0 || t > interval {
                    return Err(self.err(
                        d,
                        &k("timeout"),
                        format!(
                            "must be more than 0 and at most the interval ({} ms)",
                            interval.0 / 1000
                        ),
                    ));
                }
                t
            }
        };
        let rise = match &c.rise {
            None => 2,
            Some(v) => self.int_in(v, &k("rise"), 1, 100, "")? as u32,
        };
        let fall = match &c.fall {
            None => 3,
            Some(v) => self.int_in(v, &k("fall"), 1, 100, "")? as u32,
        };
        let port = match &c.port {
            None => None,
            Some(p) => Some(self.int_in(p, &k("port"), 1, 65535, "")? as u16),
        };
        let kind_s = c.kind.get_ref().as_str();
        let only = |present: bool, key: &str, kinds: &str| -> R<()> {
            if present {
                return Err(self.err_at(
                    sp.span().start,
                    &k(key),
                    format!("only for check type {kinds} (this check is {kind_s:?})"),
                ));
            }
            Ok(())
        };
        let kind = match kind_s {
            "tcp" => {
                only(c.path.is_some(), "path", "\"http\"")?;
                only(c.expect_status.is_some(), "expect_status", "\"http\"")?;
                only(c.host.is_some(), "host", "\"http\"")?;
                only(c.command.is_some(), "command", "\"exec\"")?;
                CheckKind::Tcp { port }
            }
            "http" => {
                only(c.command.is_some(), "command", "\"exec\"")?;
                let path = match &c.path {
                    None => "/".to_string(),
                    Some(p) => {
                        if !p.get_ref().starts_with('/') || p.get_ref().contains(char::is_whitespace) {
                            return Err(self.err(p, &k("path"), "must start with '/' and contain no spaces"));
                        }
                        p.get_ref().clone()
                    }
                };
                let expect_status = match &c.expect_status {
                    None => (200, 299),
                    Some(e) => {
                        let bad = || {
                            self.err(e, &k("expect_status"), "allowed: a status like 200, a class like \"2xx\", or a range [200, 399] within 100..=599")
                        };
                        let (lo, hi) = match e.get_ref() {
                            StatusSpec::One(n) => (*n, *n),
                            StatusSpec::Str(s) => {
                                let s = s.trim();
                                if s.len() == 3 && s.ends_with("xx") {
                                    let d = s[..1].parse::<i64>().map_err(|_| bad())?;
                                    (d * 100, d * 100 + 99)
                                } else {
                                    let n = s.parse::<i64>().map_err(|_| bad())?;
                                    (n, n)
                                }
                            }
                            StatusSpec::Range(v) if v.len() == 2 => (v[0], v[1]),
                            StatusSpec::Range(_) => return Err(bad()),
                        };
                        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
                            return Err(bad());
                        }
                        (lo as u16, hi as u16)
                    }
                };
                CheckKind::Http {
                    port,
                    path,
                    expect_status,
                    host: c.host.as_ref().map(|h| h.get_ref().clone()),
                }
            }
            "exec" => {
                only(c.path.is_some(), "path", "\"http\"")?;
                only(c.expect_status.is_some(), "expect_status", "\"http\"")?;
                only(c.port.is_some(), "port", "\"tcp\" or \"http\"")?;
                let Some(cmd) = &c.command else {
                    return Err(self.err_at(
                        sp.span().start,
                        &k("command"),
                        "an exec check needs command = [\"/absolute/path\", \"{address}\", ...]",
                    ));
                };
                let v = cmd.get_ref();
                if v.is_empty() || !v[0].starts_with('/') {
                    return Err(self.err(
                        cmd,
                        &k("command"),
                        "must be a non-empty list whose first element is an absolute path",
                    ));
                }
                CheckKind::Exec { command: v.clone() }
            }
            o => {
                return Err(self.err(
                    &c.kind,
                    &k("type"),
                    format!("{o:?}: allowed \"tcp\", \"http\" or \"exec\""),
                ))
            }
        };
        Ok(Check {
            kind,
            interval,
            timeout,
            rise,
            fall,
        })
    }
}

/// Byte offset where a spanned value starts.
fn off<T>(s: &Spanned<T>) -> usize {
    s.span().start
}
