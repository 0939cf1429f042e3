//! Validation of a `virtual_server` block into a [`VirtualServer`]: listen
//! address, protocol, scheduler, VRRP tie, real servers and timeouts.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use super::raw::{self, NumOrStr};
use super::{off, Check, Cx, Instance, R};
use crate::time::Micros;

/// The scheduler and a backend's operator state are the balancer's own types.
pub use crate::balance::{Admin, LbAlgo};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
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
    /// UDP: most client flows (one socket each) before the LRU one is evicted.
    pub udp_max_flows: u32,
    /// UDP: receive buffer of the VIP socket, bytes.
    pub udp_rcvbuf: u32,
    /// TCP data-plane limits (issue 8): see [`StreamLimits`].
    pub limits: StreamLimits,
}

/// Default `udp_max_flows`: fds and memory stay bounded (one socket per flow).
pub const DEFAULT_UDP_MAX_FLOWS: u32 = 8192;
/// Default `udp_rcvbuf`: absorbs bursts at line rate between two reads.
pub const DEFAULT_UDP_RCVBUF: u32 = 4 << 20;

// ---- TCP data-plane limits (issue 8): types and parsing in one block ----

/// What a backend's established streams do when its checks mark it down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnMarkedDown {
    /// Keep them (they end by themselves or at the idle timeout).
    #[default]
    None,
    /// Reset them, so clients reconnect to a healthy backend at once.
    Shutdown,
}

/// Per-virtual-server keys of the TCP data plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StreamLimits {
    /// Connect to the backend only once the client has sent its first byte,
    /// and close a client silent for this long. `None`: connect at once
    /// (server-speaks-first protocols such as SMTP need that).
    pub client_first_byte_timeout: Option<Micros>,
    pub on_marked_down: OnMarkedDown,
    /// `passive.error_limit`; `None`: the check's `fall`.
    pub passive_error_limit: Option<u32>,
    /// `passive.window`; `None`: 10 s.
    pub passive_window: Option<Micros>,
    /// `passive.max_ejection_percent`; `None`: 50.
    pub max_ejection_percent: Option<u32>,
}

impl Cx<'_> {
    fn stream_limits(&self, name: &str, r: &raw::Server) -> R<StreamLimits> {
        let k = keys(name);
        let client_first_byte_timeout = match &r.client_first_byte_timeout {
            None => None,
            Some(d) => {
                let x = self.duration(d, &k("client_first_byte_timeout"))?;
                if x < Micros::from_millis(1) || x > Micros::from_secs(3600) {
                    return Err(self.err(d, &k("client_first_byte_timeout"), "allowed from 1ms to 1h"));
                }
                Some(x)
            }
        };
        let on_marked_down = match r.on_marked_down.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "none")) => OnMarkedDown::None,
            Some((_, "shutdown")) => OnMarkedDown::Shutdown,
            Some((s, o)) => {
                return Err(self.err(
                    s,
                    &k("on_marked_down"),
                    format!("{o:?}: allowed \"none\" or \"shutdown\""),
                ))
            }
        };
        let mut l = StreamLimits {
            client_first_byte_timeout,
            on_marked_down,
            ..StreamLimits::default()
        };
        if let Some(p) = &r.passive {
            let p = p.get_ref();
            if let Some(v) = &p.error_limit {
                l.passive_error_limit = Some(self.int_in(v, &k("passive.error_limit"), 1, 1000, "")? as u32);
            }
            if let Some(d) = &p.window {
                let x = self.duration(d, &k("passive.window"))?;
                if x < Micros::from_millis(10) || x > Micros::from_secs(3600) {
                    return Err(self.err(d, &k("passive.window"), "allowed from 10ms to 1h"));
                }
                l.passive_window = Some(x);
            }
            if let Some(v) = &p.max_ejection_percent {
                l.max_ejection_percent = Some(self.int_in(v, &k("passive.max_ejection_percent"), 0, 100, "")? as u32);
            }
        }
        Ok(l)
    }
}

// ---- end of TCP data-plane limits ----

/// The dotted key of a field of virtual server `name`.
fn keys(name: &str) -> impl Fn(&str) -> String + '_ {
    move |key| format!("virtual_server.{name}.{key}")
}

impl Cx<'_> {
    pub(super) fn server(&self, name: &str, sp: &Spanned<raw::Server>, instances: &[Instance]) -> R<VirtualServer> {
        let k = keys(name);
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
        let lb_algo = self.lb_algo(name, r)?;
        let vrrp_instance = self.vrrp_tie(name, r, instances)?;
        let check = match &r.check {
            None => None,
            Some(c) => Some(self.check(name, c)?),
        };
        let real_servers = self.real_servers(name, r)?;
        let (connect_timeout, idle_timeout) = self.timeouts(name, r, protocol)?;
        let max_connections = match &r.max_connections {
            None => None,
            Some(m) => Some(self.int_in(m, &k("max_connections"), 1, 10_000_000, "")? as u32),
        };
        let retries = match &r.retries {
            None => 3,
            Some(m) => self.int_in(m, &k("retries"), 0, 100, "")? as u32,
        };
        // UDP keys (ignored by TCP virtual servers).
        let udp_max_flows = match &r.udp_max_flows {
            None => DEFAULT_UDP_MAX_FLOWS,
            Some(m) => self.int_in(m, &k("udp_max_flows"), 16, 1_000_000, " (one socket per flow)")? as u32,
        };
        let udp_rcvbuf = match &r.udp_rcvbuf {
            None => DEFAULT_UDP_RCVBUF,
            Some(m) => self.int_in(m, &k("udp_rcvbuf"), 4096, 1 << 30, " bytes")? as u32,
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
            udp_max_flows,
            udp_rcvbuf,
            limits: self.stream_limits(name, r)?,
        })
    }

    /// `lb_algo`, with keepalived's aliases `wlc` and `mh`.
    fn lb_algo(&self, name: &str, r: &raw::Server) -> R<LbAlgo> {
        match r.lb_algo.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("rr") => Ok(LbAlgo::Rr),
            Some("wrr") => Ok(LbAlgo::Wrr),
            Some("lc") | Some("wlc") => Ok(LbAlgo::Lc),
            Some("sh") => Ok(LbAlgo::Sh),
            Some("maglev") | Some("mh") => Ok(LbAlgo::Maglev),
            Some(o) => Err(self.err_at(
                r.lb_algo.as_ref().map(off).unwrap_or(off(&r.listen)),
                &keys(name)("lb_algo"),
                format!("{o:?}: allowed \"rr\", \"wrr\", \"lc\", \"sh\" or \"maglev\""),
            )),
        }
    }

    /// `vrrp_instance`: must name a configured instance.
    fn vrrp_tie(&self, name: &str, r: &raw::Server, instances: &[Instance]) -> R<Option<String>> {
        let Some(v) = &r.vrrp_instance else {
            return Ok(None);
        };
        if !instances.iter().any(|i| &i.name == v.get_ref()) {
            let known: Vec<&str> = instances.iter().map(|i| i.name.as_str()).collect();
            return Err(self.err(
                v,
                &keys(name)("vrrp_instance"),
                format!("no vrrp_instance named {:?} (defined: {:?})", v.get_ref(), known),
            ));
        }
        Ok(Some(v.get_ref().clone()))
    }

    /// `real_server`: at least one, no address twice.
    fn real_servers(&self, name: &str, r: &raw::Server) -> R<Vec<RealServer>> {
        if r.real_server.get_ref().is_empty() {
            return Err(self.err(&r.real_server, &keys(name)("real_server"), "needs at least one backend"));
        }
        let mut real_servers: Vec<RealServer> = Vec::new();
        for rs in r.real_server.get_ref() {
            let s = self.real_server(name, rs.get_ref(), &real_servers)?;
            real_servers.push(s);
        }
        Ok(real_servers)
    }

    /// One `real_server`; `earlier` are the ones before it in the list.
    fn real_server(&self, name: &str, rr: &raw::Real, earlier: &[RealServer]) -> R<RealServer> {
        let k = keys(name);
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
        if earlier.iter().any(|o| o.address == address) {
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
        Ok(RealServer {
            address,
            weight,
            backup,
            priority,
            admin,
        })
    }

    /// `connect_timeout` and `idle_timeout` (default 300 s for TCP, 30 s for UDP).
    fn timeouts(&self, name: &str, r: &raw::Server, protocol: Protocol) -> R<(Micros, Micros)> {
        let k = keys(name);
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
        Ok((connect_timeout, idle_timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `vipctl status --json` shows these as the config spells them.
    #[test]
    fn algo_and_admin_serialize_as_the_config_words() {
        let algos = [LbAlgo::Rr, LbAlgo::Wrr, LbAlgo::Lc, LbAlgo::Sh, LbAlgo::Maglev];
        let words: Vec<String> = algos.iter().map(|a| serde_json::to_string(a).unwrap()).collect();
        assert_eq!(words, ["\"rr\"", "\"wrr\"", "\"lc\"", "\"sh\"", "\"maglev\""]);
        let admins = [Admin::Ready, Admin::Drain, Admin::Maint];
        let words: Vec<String> = admins.iter().map(|a| serde_json::to_string(a).unwrap()).collect();
        assert_eq!(words, ["\"ready\"", "\"drain\"", "\"maint\""]);
        assert_eq!(serde_json::to_string(&Protocol::Udp).unwrap(), "\"udp\"");
    }
}
