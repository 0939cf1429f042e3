//! keepalived's statement tree to vipd's TOML. One small function per
//! directive; what vipd cannot do becomes a `# not converted:` comment where
//! the directive was and a [`Finding`], never silence.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::emit::{array, inline, key, s, secs, Entry, Item, Table, Val};
use super::lexer::{split_words, Loc};
use super::parse::Node;

/// vipd config keys that other work adds. `false`: the importer writes the
/// directive as `# not converted (vipd does not support X yet)`. Flip one
/// when vipd's config parser accepts the key; the unit test
/// `support_flags_match_the_config_parser` fails until each flag matches.
pub mod vipd_has {
    /// `[vrrp_script.NAME]` and an instance's `track_script`.
    pub const TRACK_SCRIPT: bool = true;
    /// `[vrrp_track_file.NAME]` and `track_file`.
    pub const TRACK_FILE: bool = true;
    /// `[vrrp_track_process.NAME]` and `track_process`.
    pub const TRACK_PROCESS: bool = true;
    /// `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`.
    pub const NOTIFY_STATES: bool = true;
    /// `notify` as a command line with arguments (split like keepalived):
    /// comes with the notify_* keys.
    pub const NOTIFY_ARGS: bool = NOTIFY_STATES;
    /// `[vrrp_sync_group.NAME]`.
    pub const SYNC_GROUP: bool = true;
    /// `use_vmac`, `vmac_xmit_base`.
    pub const USE_VMAC: bool = true;
    /// `garp_master_refresh`, `garp_master_refresh_repeat`, `garp_lower_prio_repeat`.
    pub const GARP_REFRESH: bool = true;
    /// `[global] script_user`.
    pub const SCRIPT_USER: bool = true;
    /// `[global] enable_script_security`.
    pub const SCRIPT_SECURITY: bool = true;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Could not be carried over (exit status 3).
    NotConverted,
    /// Converted, with a comment on how it maps.
    Note,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub loc: Loc,
    pub kind: Kind,
    pub msg: String,
}

/// The converted file: tables in keepalived's order, `[global]` first.
pub struct Output {
    pub tables: Vec<Table>,
    pub findings: Vec<Finding>,
}

struct Cv {
    global: Table,
    tables: Vec<Table>,
    findings: Vec<Finding>,
    /// global_defs: `vrrp_version`, `default_interface`, GARP defaults.
    vrrp_version: Option<u8>,
    default_interface: Option<String>,
    garp_defaults: Vec<(String, Val)>,
    /// Converted instances: interface, VRID, IPv4?, vipd name (one VRID per interface and family).
    vrids: Vec<(String, i64, bool, String)>,
    /// keepalived instance name → vipd name (renamed if vipd refuses the name).
    renamed: Vec<(String, String)>,
    headers: HashSet<String>,
    /// VIPs converted so far and the (vipd) instance holding each; a
    /// virtual server on one of them is tied to that instance.
    vips_taken: Vec<(IpAddr, String)>,
}

/// Convert the statement tree.
pub fn convert(nodes: &[Node]) -> Output {
    let mut cv = Cv {
        global: Table::new("global"),
        tables: Vec::new(),
        findings: Vec::new(),
        vrrp_version: None,
        default_interface: None,
        garp_defaults: Vec::new(),
        vrids: Vec::new(),
        renamed: Vec::new(),
        headers: HashSet::new(),
        vips_taken: Vec::new(),
    };
    // global_defs first: its defaults apply to every instance.
    for n in nodes.iter().filter(|n| n.key() == "global_defs") {
        cv.global_defs(n);
    }
    for n in nodes.iter().filter(|n| n.key() == "vrrp_instance") {
        cv.pre_instance(n);
    }
    // Sync groups and virtual servers after the instances they name.
    let later = ["vrrp_sync_group", "virtual_server"];
    for n in nodes.iter().filter(|n| !later.contains(&n.key())) {
        cv.top(n);
    }
    for k in later {
        for n in nodes.iter().filter(|n| n.key() == k) {
            cv.top(n);
        }
    }
    let mut tables = Vec::new();
    if !cv.global.entries.is_empty() {
        tables.push(cv.global);
    }
    tables.extend(cv.tables);
    Output {
        tables,
        findings: cv.findings,
    }
}

/// Why vipd has no equivalent of a keepalived keyword (any level).
fn why(k: &str) -> &'static str {
    match k {
        "notification_email"
        | "notification_email_from"
        | "smtp_server"
        | "smtp_connect_timeout"
        | "smtp_alert"
        | "smtp_helo_name"
        | "smtp_alert_vrrp"
        | "smtp_alert_checker" => "vipd sends no e-mail; use a notify script",
        "static_ipaddress" | "static_routes" | "static_rules" | "virtual_routes" | "virtual_rules" => {
            "vipd manages only virtual addresses; configure routes and rules with the system's network configuration"
        }
        "net_namespace" | "net_namespace_ipvs" | "instance" => "run vipd inside the namespace instead (ip netns exec)",
        "virtual_server_group" => "vipd virtual servers listen on one address:port each; write one per address",
        "vrrp_strict" | "strict_mode" => "vipd has no strict mode",
        "lvs_sync_daemon" | "lvs_sync_daemon_interface" | "lvs_flush" | "lvs_flush_onstop" | "lvs_timeouts" => {
            "IPVS connection sync has no equivalent: vipd proxies in user space"
        }
        "persistence_timeout" | "persistence_granularity" | "persistence_engine" => {
            "vipd has no persistence table; lb_algo = \"sh\" or \"maglev\" keeps a client on one backend"
        }
        "quorum" | "quorum_up" | "quorum_down" | "hysteresis" => {
            "vipd has no quorum scripts (track_virtual_server gives the VRRP side a quorum)"
        }
        "alpha" | "omega" | "ha_suspend" | "ops" | "one_packet_scheduling" => "an IPVS-only knob",
        "inhibit_on_failure" | "sorry_server_inhibit" => {
            "vipd takes a failed backend out of rotation; weight 0 is not kept"
        }
        "notify_up" | "notify_down" => "vipd runs no script when a backend goes up or down (vipctl status shows it)",
        "uthreshold" | "lthreshold" => {
            "vipd has no per-backend connection thresholds (max_connections is per virtual server)"
        }
        "mcast_src_ip" => "vipd sends from the interface's primary address (or unicast_src_ip)",
        "dont_track_primary" | "track_src_ip" | "track_bfd" | "bfd_instance" => "vipd has no such tracking",
        "virtual_ipaddress_excluded" => "vipd advertises every address it holds",
        "no_accept" => "vipd always accepts traffic for its addresses",
        "debug"
        | "kernel_rx_buf_size"
        | "enable_traps"
        | "enable_snmp_vrrp"
        | "enable_snmp_checker"
        | "enable_snmp_rfc" => "no equivalent",
        _ => "vipd has no equivalent",
    }
}

/// A keepalived instance name vipd accepts as is.
fn vipd_name_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn sanitize(n: &str) -> String {
    let mut o: String = n
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if o.is_empty() {
        o.push('_');
    }
    o
}

/// A keepalived number (integer).
fn int(w: Option<&str>) -> Option<i64> {
    w?.trim().parse().ok()
}

/// `weight N [reverse]` of a vrrp_script / vrrp_track_file /
/// vrrp_track_process: `Some(reverse)` when well formed.
fn weight_reverse(c: &Node) -> Option<bool> {
    int(c.arg(1))?;
    match c.words.len() {
        2 => Some(false),
        3 if c.words[2] == "reverse" => Some(true),
        _ => None,
    }
}

/// `weight = N` and, when reversed, `reverse = true`.
fn weight_kv(t: &mut Table, v: &str, reverse: Option<bool>) {
    t.kv("weight", v.to_string());
    if reverse == Some(true) {
        t.kv("reverse", "true".into());
    }
}

/// A keepalived timer (seconds, may be fractional).
fn timer(w: Option<&str>) -> Option<f64> {
    w?.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
}

/// The state of one instance while it converts.
struct Inst {
    /// The vipd instance name.
    vname: String,
    t: Table,
    version: u8,
    interface: Option<String>,
    master: bool,
    priority: bool,
    v4: Option<bool>,
}

/// The check of one real server, as vipd will run it.
#[derive(Clone, Debug, PartialEq)]
struct CheckDesc {
    kind: &'static str,
    port: Option<u16>,
    path: Option<String>,
    status: Option<(u16, u16)>,
    host: Option<String>,
    command: Option<Vec<String>>,
    interval: f64,
    timeout: f64,
    fall: i64,
}

/// Timing keys that virtual_server, real_server and a checker can each set.
#[derive(Clone, Copy, Debug)]
struct Timing {
    delay_loop: f64,
    connect_timeout: f64,
    retry: Option<i64>,
}

type InstFn = fn(&mut Cv, &mut Inst, &Node);

/// vrrp_instance directives and their converters.
const INSTANCE: &[(&str, InstFn)] = &[
    ("state", Cv::i_state),
    ("interface", Cv::i_interface),
    ("virtual_router_id", Cv::i_int),
    ("priority", Cv::i_priority),
    ("advert_int", Cv::i_advert_int),
    ("version", Cv::i_version),
    ("nopreempt", Cv::i_nopreempt),
    ("preempt", Cv::i_preempt),
    ("preempt_delay", Cv::i_secs),
    ("authentication", Cv::i_authentication),
    ("virtual_ipaddress", Cv::i_vips),
    ("unicast_src_ip", Cv::i_unicast_src_ip),
    ("unicast_peer", Cv::i_unicast_peer),
    ("track_interface", Cv::i_track_interface),
    ("track_script", Cv::i_track_script),
    ("track_file", Cv::i_track_file),
    ("track_process", Cv::i_track_process),
    ("notify", Cv::i_notify),
    ("notify_master", Cv::i_notify_state),
    ("notify_backup", Cv::i_notify_state),
    ("notify_fault", Cv::i_notify_state),
    ("notify_stop", Cv::i_notify_state),
    ("use_vmac", Cv::i_use_vmac),
    ("vmac_xmit_base", Cv::i_vmac_xmit_base),
    ("garp_master_delay", Cv::i_secs),
    ("garp_master_repeat", Cv::i_int),
    ("garp_master_refresh", Cv::i_garp_refresh),
    ("garp_master_refresh_repeat", Cv::i_garp_refresh),
    ("garp_lower_prio_repeat", Cv::i_garp_refresh),
    ("accept", Cv::i_accept),
    ("native_ipv6", Cv::i_native_ipv6),
];

impl Cv {
    // ---- findings ----

    /// `# not converted: …` in `t` and a finding.
    fn nc(&mut self, t: &mut Table, n: &Node, why: &str) {
        let msg = format!("{}: {why}", n.summary());
        t.comment(format!("not converted: {msg}"));
        self.nc_silent(n, &msg);
    }
    /// A finding whose comment the caller places.
    fn nc_silent(&mut self, n: &Node, msg: &str) {
        self.findings.push(Finding {
            loc: n.loc.clone(),
            kind: Kind::NotConverted,
            msg: msg.to_string(),
        });
    }
    /// A key vipd will have but does not have yet.
    fn not_yet(&mut self, t: &mut Table, n: &Node, what: &str) {
        let msg = format!("{} (vipd does not support {what} yet)", n.summary());
        t.comment(format!(
            "not converted (vipd does not support {what} yet): {}",
            n.summary()
        ));
        self.nc_silent(n, &msg);
    }
    fn note(&mut self, n: &Node, msg: &str) {
        self.findings.push(Finding {
            loc: n.loc.clone(),
            kind: Kind::Note,
            msg: msg.to_string(),
        });
    }
    /// A whole top-level block that is not converted: a comment table.
    fn nc_top(&mut self, n: &Node, why: &str) {
        let mut t = Table::new("").at(&n.loc);
        self.nc(&mut t, n, why);
        self.tables.push(t);
    }
    fn not_yet_top(&mut self, n: &Node, what: &str) {
        let mut t = Table::new("").at(&n.loc);
        self.not_yet(&mut t, n, what);
        self.tables.push(t);
    }
    /// The (vipd) instance that already holds VIP `a`.
    fn vip_owner(&self, a: IpAddr) -> Option<String> {
        self.vips_taken.iter().find(|(x, _)| *x == a).map(|(_, h)| h.clone())
    }
    /// A header not used before (TOML forbids a table twice).
    fn claim(&mut self, header: &str) -> bool {
        self.headers.insert(header.to_string())
    }

    // ---- top level ----

    fn top(&mut self, n: &Node) {
        match n.key() {
            "global_defs" => {}
            "vrrp_instance" => self.vrrp_instance(n),
            "vrrp_script" => self.vrrp_script(n),
            "vrrp_track_file" => self.vrrp_track_file(n),
            "vrrp_track_process" => self.vrrp_track_process(n),
            "vrrp_sync_group" => self.vrrp_sync_group(n),
            "virtual_server" => self.virtual_server(n),
            k => self.nc_top(n, why(k)),
        }
    }

    fn global_defs(&mut self, n: &Node) {
        let mut g = std::mem::take(&mut self.global);
        if g.src.is_none() {
            g.src = Some(n.loc.clone());
        }
        for c in n.children() {
            match c.key() {
                "router_id" => match c.arg(1) {
                    Some(r) if !g.has("router_id") => g.kv("router_id", s(r)),
                    _ => self.nc(&mut g, c, "router_id given twice or empty"),
                },
                "script_user" if !vipd_has::SCRIPT_USER => self.not_yet(&mut g, c, "script_user"),
                "enable_script_security" if !vipd_has::SCRIPT_SECURITY => {
                    self.not_yet(&mut g, c, "enable_script_security")
                }
                "script_user" => match (c.arg(1), c.arg(2)) {
                    (Some(u), None) => g.kv("script_user", s(u)),
                    (Some(u), Some(_)) => {
                        g.kv("script_user", s(u));
                        self.nc(&mut g, c, "the group: vipd runs scripts with the user's primary group");
                    }
                    _ => self.nc(&mut g, c, "needs a user name"),
                },
                "enable_script_security" => g.kv("enable_script_security", "true".into()),
                "vrrp_version" => match int(c.arg(1)) {
                    Some(v @ (2 | 3)) => {
                        self.vrrp_version = Some(v as u8);
                        g.comment(format!(
                            "vrrp_version {v}: written as version = {v} in each vrrp_instance"
                        ));
                        self.note(c, "applied to every vrrp_instance");
                    }
                    _ => self.nc(&mut g, c, "allowed 2 or 3"),
                },
                "default_interface" => match c.arg(1) {
                    Some(i) => {
                        self.default_interface = Some(i.to_string());
                        g.comment(format!(
                            "default_interface {i}: written as interface in each vrrp_instance without one"
                        ));
                    }
                    None => self.nc(&mut g, c, "needs an interface"),
                },
                "vrrp_garp_master_delay" | "vrrp_garp_master_repeat" => {
                    let k = &c.key()["vrrp_".len()..];
                    let v = if k == "garp_master_delay" {
                        timer(c.arg(1)).map(secs)
                    } else {
                        int(c.arg(1)).map(|v| v.to_string())
                    };
                    match v {
                        Some(v) => {
                            g.comment(format!(
                                "{}: written as {k} in each vrrp_instance without one",
                                c.summary()
                            ));
                            self.garp_defaults.push((k.to_string(), v));
                        }
                        None => self.nc(&mut g, c, "not a number"),
                    }
                }
                k => self.nc(&mut g, c, why(k)),
            }
        }
        self.global = g;
    }

    // ---- vrrp_instance ----

    /// First pass: names, for sync groups.
    fn pre_instance(&mut self, n: &Node) {
        let Some(name) = n.arg(1) else { return };
        let vname = if vipd_name_ok(name) {
            name.to_string()
        } else {
            sanitize(name)
        };
        self.renamed.push((name.to_string(), vname));
    }

    fn vipd_instance_name(&self, k: &str) -> String {
        self.renamed
            .iter()
            .find(|(a, _)| a == k)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| sanitize(k))
    }

    fn vrrp_instance(&mut self, n: &Node) {
        let Some(name) = n.arg(1) else {
            return self.nc_top(n, "a vrrp_instance needs a name");
        };
        let vname = self.vipd_instance_name(name);
        let header = format!("vrrp_instance.{}", key(&vname));
        let has = |k: &str| n.children().iter().any(|c| c.key() == k);
        let interface = n
            .children()
            .iter()
            .find(|c| c.key() == "interface")
            .and_then(|c| c.arg(1))
            .map(str::to_string)
            .or_else(|| self.default_interface.clone());
        let has_vip = n
            .children()
            .iter()
            .filter(|c| c.key() == "virtual_ipaddress")
            .any(|c| !c.children().is_empty());
        let missing = match () {
            _ if interface.is_none() => Some("no interface (vipd needs one)"),
            _ if !has("virtual_router_id") => Some("no virtual_router_id"),
            _ if !has_vip => Some("no virtual_ipaddress (vipd needs at least one address)"),
            _ => None,
        };
        if let Some(m) = missing {
            return self.nc_top(n, m);
        }
        if !self.claim(&header) {
            return self.nc_top(n, "a second vrrp_instance of this name");
        }
        let version = n
            .children()
            .iter()
            .find(|c| c.key() == "version")
            .and_then(|c| int(c.arg(1)))
            .and_then(|v| u8::try_from(v).ok())
            .or(self.vrrp_version);
        // keepalived runs an IPv6 instance as VRRPv3 whatever the default.
        let first_v6 = n
            .children()
            .iter()
            .filter(|c| c.key() == "virtual_ipaddress")
            .flat_map(|c| c.children())
            .find_map(|l| vip_addrs(l.key()))
            .is_some_and(|(a, _)| a.first().is_some_and(IpAddr::is_ipv6));
        let vrid = n
            .children()
            .iter()
            .find(|c| c.key() == "virtual_router_id")
            .and_then(|c| int(c.arg(1)))
            .unwrap_or(0);
        let ifc = interface.clone().unwrap_or_default();
        if let Some((.., other)) = self
            .vrids
            .iter()
            .find(|(f, v, v4, _)| *f == ifc && *v == vrid && *v4 != first_v6)
        {
            let why =
                format!("VRID {vrid} on {ifc} is already vrrp_instance {other} (one VRID per interface and family)");
            self.headers.remove(&header);
            return self.nc_top(n, &why);
        }
        self.vrids.push((ifc, vrid, !first_v6, vname.clone()));
        let explicit = version;
        let version = match version {
            Some(2) if first_v6 => 3,
            Some(v) => v,
            None if first_v6 => 3,
            None => 2,
        };
        let mut t = Table::new(header).at(&n.loc);
        if vname != name {
            t.lead.push(format!(
                "keepalived name {name:?}: vipd instance names use A-Z a-z 0-9 _ - ."
            ));
            self.note(n, &format!("renamed to {vname}"));
        }
        let mut i = Inst {
            vname: vname.clone(),
            t: Table::default(),
            version,
            interface: interface.clone(),
            master: false,
            priority: false,
            v4: None,
        };
        if !has("interface") {
            if let Some(ifc) = &interface {
                i.t.kv_c("interface", s(ifc), "global_defs default_interface");
            }
        }
        if !has("version") || (first_v6 && explicit == Some(2)) {
            let why = if first_v6 {
                "keepalived runs IPv6 instances as VRRPv3"
            } else if self.vrrp_version.is_some() {
                "global_defs vrrp_version"
            } else {
                "keepalived's default (vipd's is 3)"
            };
            i.t.kv_c("version", version.to_string(), why);
        }
        for c in n.children() {
            match INSTANCE.iter().find(|(k, _)| *k == c.key()) {
                Some((_, f)) => f(self, &mut i, c),
                None => {
                    let w = why(c.key());
                    self.nc(&mut i.t, c, w);
                }
            }
        }
        for (k, v) in self.garp_defaults.clone() {
            if !has(&k) {
                i.t.kv_c(&k, v, "global_defs vrrp_".to_string() + &k);
            }
        }
        if i.master && !i.priority {
            i.t.entries.insert(
                0,
                Entry::Kv {
                    key: "priority".into(),
                    val: "255".into(),
                    comment: Some("keepalived: state MASTER without a priority is the address owner (255)".into()),
                },
            );
        }
        let any_vip = i.t.entries.iter().any(|e| {
            matches!(e, Entry::List { key, items } if key == "virtual_ipaddress"
                && items.iter().any(|x| matches!(x, Item::Val(..))))
        });
        if !any_vip {
            self.headers.remove(&t.header);
            self.vrids.pop();
            t.header = String::new();
            t.lead.clear();
            t.comment(format!(
                "not converted: vrrp_instance {name} as a whole: none of its addresses can be used (the reasons follow)"
            ));
            i.t.entries = std::mem::take(&mut i.t.entries)
                .into_iter()
                .flat_map(|e| match e {
                    Entry::Comment(c) => vec![Entry::Comment(c)],
                    Entry::List { items, .. } => items
                        .into_iter()
                        .filter_map(|x| match x {
                            Item::Comment(c) => Some(Entry::Comment(c)),
                            Item::Val(..) => None,
                        })
                        .collect(),
                    Entry::Kv { .. } => Vec::new(),
                })
                .collect();
            self.nc_silent(n, "vrrp_instance without a usable virtual_ipaddress");
        }
        t.entries.append(&mut i.t.entries);
        self.tables.push(t);
    }

    fn i_state(&mut self, i: &mut Inst, n: &Node) {
        match n.arg(1) {
            Some("MASTER") => {
                i.master = true;
                i.t.comment(
                    "state MASTER: keepalived's initial state. vipd elects by priority: it starts as BACKUP and \
                     becomes MASTER when no higher priority\nadvertises within 3 x advert_int (at once with priority 255); \
                     give this node the highest priority to make it the usual master",
                );
                self.note(n, "initial state; vipd elects by priority");
            }
            Some("BACKUP") => {
                i.t.comment("state BACKUP: vipd always starts as BACKUP");
            }
            _ => self.nc(&mut i.t, n, "allowed MASTER or BACKUP"),
        }
    }

    fn i_interface(&mut self, i: &mut Inst, n: &Node) {
        match n.arg(1) {
            Some(x) => i.t.kv("interface", s(x)),
            None => self.nc(&mut i.t, n, "needs an interface"),
        }
    }

    /// A directive whose integer argument carries over under the same key.
    fn i_int(&mut self, i: &mut Inst, n: &Node) {
        match int(n.arg(1)) {
            Some(v) => i.t.kv(n.key(), v.to_string()),
            None => self.nc(&mut i.t, n, "not an integer"),
        }
    }

    /// A directive whose seconds carry over under the same key.
    fn i_secs(&mut self, i: &mut Inst, n: &Node) {
        match timer(n.arg(1)) {
            Some(v) => i.t.kv(n.key(), secs(v)),
            None => self.nc(&mut i.t, n, "not a number of seconds"),
        }
    }

    fn i_priority(&mut self, i: &mut Inst, n: &Node) {
        i.priority = true;
        self.i_int(i, n);
    }

    fn i_version(&mut self, i: &mut Inst, n: &Node) {
        match int(n.arg(1)) {
            Some(2) if i.version == 3 => i.t.comment("version 2: IPv6 needs VRRPv3 (keepalived switches too)"),
            Some(v @ (2 | 3)) => i.t.kv("version", v.to_string()),
            _ => self.nc(&mut i.t, n, "allowed 2 or 3"),
        }
    }

    /// `advert_int`: whole seconds for VRRPv2, 10 ms steps for VRRPv3.
    fn i_advert_int(&mut self, i: &mut Inst, n: &Node) {
        let Some(v) = timer(n.arg(1)) else {
            return self.nc(&mut i.t, n, "not a number of seconds");
        };
        let (r, unit) = if i.version == 2 {
            (v.round().max(1.0), "whole seconds in VRRPv2")
        } else {
            ((v * 100.0).round().max(1.0) / 100.0, "10 ms steps in VRRPv3")
        };
        if r != v {
            i.t.kv_c("advert_int", secs(r), format!("keepalived: {v}; rounded to {unit}"));
            self.note(n, &format!("rounded to {r} ({unit})"));
        } else {
            i.t.kv("advert_int", secs(v));
        }
    }

    fn i_nopreempt(&mut self, i: &mut Inst, _n: &Node) {
        i.t.kv("nopreempt", "true".into());
    }

    fn i_preempt(&mut self, i: &mut Inst, _n: &Node) {
        i.t.kv("preempt", "true".into());
    }

    fn i_authentication(&mut self, i: &mut Inst, n: &Node) {
        if i.version != 2 {
            return self.nc(&mut i.t, n, "VRRPv3 has no authentication (keepalived ignores it too)");
        }
        let get = |k: &str| n.children().iter().find(|c| c.key() == k).and_then(|c| c.arg(1));
        match (get("auth_type"), get("auth_pass")) {
            (Some("PASS"), Some(p)) if !p.is_empty() => {
                // keepalived uses the first 8 bytes.
                let mut end = p.len().min(8);
                while !p.is_char_boundary(end) {
                    end -= 1;
                }
                let pass = &p[..end];
                let val = inline(&[("auth_type", s("PASS")), ("auth_pass", s(pass))]);
                if pass.len() < p.len() {
                    i.t.kv_c(
                        "authentication",
                        val,
                        "keepalived sends only the first 8 bytes of auth_pass",
                    );
                } else {
                    i.t.kv("authentication", val);
                }
            }
            (Some("AH"), _) => self.nc(&mut i.t, n, "IPSEC-AH: vipd has only PASS"),
            _ => self.nc(&mut i.t, n, "needs auth_type PASS and auth_pass"),
        }
    }

    /// `virtual_ipaddress`: addresses (ranges expanded); `dev` other than
    /// the instance's interface, `label`, `scope`, `brd` and the rest are
    /// listed as not converted next to the address.
    fn i_vips(&mut self, i: &mut Inst, n: &Node) {
        for l in n.children() {
            let Some((addrs, prefix)) = vip_addrs(l.key()) else {
                let msg = format!("{}: not an address", l.summary());
                i.t.push_item("virtual_ipaddress", Item::Comment(format!("not converted: {msg}")));
                self.nc_silent(l, &msg);
                continue;
            };
            let mut skipped = Vec::new();
            let mut w = 1;
            while w < l.words.len() {
                let opt = l.words[w].as_str();
                let val = l.arg(w + 1);
                match (opt, val) {
                    ("dev", Some(d)) if Some(d) == i.interface.as_deref() => w += 1,
                    ("scope", Some("global")) => w += 1,
                    (
                        "dev" | "label" | "scope" | "brd" | "broadcast" | "preferred_lft" | "track_group" | "peer",
                        Some(v),
                    ) => {
                        let reason = match opt {
                            "dev" => "vipd adds an instance's addresses to its interface",
                            "label" => "vipd adds addresses without a label",
                            "scope" => "vipd adds addresses with scope global",
                            _ => "vipd has no such address option",
                        };
                        skipped.push(format!("{opt} {v} ({reason})"));
                        w += 1;
                    }
                    (o, _) => skipped.push(format!("{o} (vipd has no such address option)")),
                }
                w += 1;
            }
            let comment = if skipped.is_empty() {
                None
            } else {
                Some(format!("not converted: {}", skipped.join("; ")))
            };
            if !skipped.is_empty() {
                self.nc_silent(l, &format!("{}: {}", l.summary(), skipped.join("; ")));
            }
            if addrs.len() > 1 {
                self.note(l, &format!("range expanded to {} addresses", addrs.len()));
            }
            for a in addrs {
                if let Some(owner) = self.vip_owner(a) {
                    let msg = format!("{a}: already a VIP of {owner} (vipd holds each address in one instance, once)");
                    i.t.push_item("virtual_ipaddress", Item::Comment(format!("not converted: {msg}")));
                    self.nc_silent(l, &msg);
                    continue;
                }
                self.vips_taken.push((a, i.vname.clone()));
                if *i.v4.get_or_insert(a.is_ipv4()) != a.is_ipv4() {
                    let msg = format!(
                        "{a}: one address family per instance in vipd (and in keepalived); write a second instance"
                    );
                    i.t.push_item("virtual_ipaddress", Item::Comment(format!("not converted: {msg}")));
                    self.nc_silent(l, &msg);
                    continue;
                }
                let text = match prefix {
                    Some(p) => format!("{a}/{p}"),
                    None => a.to_string(),
                };
                i.t.push_item("virtual_ipaddress", Item::Val(s(&text), comment.clone()));
            }
        }
    }

    fn i_unicast_src_ip(&mut self, i: &mut Inst, n: &Node) {
        match n.arg(1) {
            Some(a) if a.parse::<IpAddr>().is_ok() => i.t.kv("unicast_src_ip", s(a)),
            _ => self.nc(&mut i.t, n, "not an IP address"),
        }
    }

    fn i_unicast_peer(&mut self, i: &mut Inst, n: &Node) {
        for p in n.children() {
            if p.key().parse::<IpAddr>().is_err() {
                let msg = format!("{}: not an IP address", p.summary());
                i.t.push_item("unicast_peer", Item::Comment(format!("not converted: {msg}")));
                self.nc_silent(p, &msg);
                continue;
            }
            let c = if p.words.len() > 1 {
                let msg = format!("{} (vipd has no per-peer TTL limits)", p.words[1..].join(" "));
                self.nc_silent(p, &msg);
                Some(format!("not converted: {msg}"))
            } else {
                None
            };
            i.t.push_item("unicast_peer", Item::Val(s(p.key()), c));
        }
    }

    /// `NAME [weight N [reverse|noreverse]]` lines of a track_* block into
    /// `[{ FIELD = NAME, weight = N, reverse = true }]` (`noreverse`, which
    /// undoes a tracker's own `reverse`, only on scripts, files, processes).
    fn track_list(&mut self, i: &mut Inst, n: &Node, list: &str, field: &str) {
        let noreverse_ok = list != "track_interface";
        for l in n.children() {
            let mut pairs = vec![(field, s(l.key()))];
            let mut bad = None;
            let mut w = 1;
            while w < l.words.len() {
                match (l.words[w].as_str(), l.arg(w + 1)) {
                    ("weight", Some(v)) => match int(Some(v)) {
                        Some(x) if (-254..=254).contains(&x) => {
                            pairs.push(("weight", x.to_string()));
                            w += 1;
                        }
                        _ => bad = Some("weight must be -254..=254"),
                    },
                    ("reverse", _) => pairs.push(("reverse", "true".into())),
                    ("noreverse", _) if noreverse_ok => pairs.push(("reverse", "false".into())),
                    _ => bad = Some("allowed: NAME [weight N [reverse]]"),
                }
                w += 1;
            }
            match bad {
                Some(b) => {
                    let msg = format!("{}: {b}", l.summary());
                    i.t.push_item(list, Item::Comment(format!("not converted: {msg}")));
                    self.nc_silent(l, &msg);
                }
                None => i.t.push_item(list, Item::Val(inline(&pairs), None)),
            }
        }
    }

    fn i_track_interface(&mut self, i: &mut Inst, n: &Node) {
        self.track_list(i, n, "track_interface", "interface");
    }

    fn i_track_script(&mut self, i: &mut Inst, n: &Node) {
        if !vipd_has::TRACK_SCRIPT {
            return self.not_yet(&mut i.t, n, "track_script");
        }
        self.track_list(i, n, "track_script", "name");
    }

    fn i_track_file(&mut self, i: &mut Inst, n: &Node) {
        if !vipd_has::TRACK_FILE {
            return self.not_yet(&mut i.t, n, "track_file");
        }
        self.track_list(i, n, "track_file", "name");
    }

    fn i_track_process(&mut self, i: &mut Inst, n: &Node) {
        if !vipd_has::TRACK_PROCESS {
            return self.not_yet(&mut i.t, n, "track_process");
        }
        self.track_list(i, n, "track_process", "name");
    }

    /// `notify SCRIPT`: a bare absolute path carries over today; a command
    /// line with arguments once vipd splits it like keepalived.
    fn i_notify(&mut self, i: &mut Inst, n: &Node) {
        let Some(cmd) = n.arg(1) else {
            return self.nc(&mut i.t, n, "needs a script");
        };
        let argv = split_words(cmd, &n.loc).unwrap_or_default();
        let plain = argv.len() == 1 && argv[0].starts_with('/') && n.words.len() == 2;
        if plain || vipd_has::NOTIFY_ARGS {
            self.notify_kv(i, n, cmd);
        } else if !argv.first().is_some_and(|a| a.starts_with('/')) {
            self.nc(&mut i.t, n, "vipd needs an absolute path");
        } else {
            self.not_yet(&mut i.t, n, "notify with arguments");
        }
    }

    fn i_notify_state(&mut self, i: &mut Inst, n: &Node) {
        if !vipd_has::NOTIFY_STATES {
            return self.not_yet(&mut i.t, n, n.key());
        }
        match n.arg(1) {
            Some(cmd) => self.notify_kv(i, n, cmd),
            None => self.nc(&mut i.t, n, "needs a script"),
        }
    }

    /// `KEY "/path args" [USER [GROUP]]`: the command line as a string, or
    /// `{ script, user, group }` with a user. keepalived's `:GROUP` (set the
    /// supplementary groups) is not converted: vipd drops them.
    fn notify_kv(&mut self, i: &mut Inst, n: &Node, cmd: &str) {
        match (n.arg(2), n.arg(3), n.words.len()) {
            (None, _, _) => i.t.kv(n.key(), s(cmd)),
            (Some(u), None, 3) => i.t.kv(n.key(), inline(&[("script", s(cmd)), ("user", s(u))])),
            (Some(u), Some(g), 4) if !g.starts_with(':') && !u.contains(':') => {
                i.t.kv(n.key(), inline(&[("script", s(cmd)), ("user", s(u)), ("group", s(g))]))
            }
            _ => self.nc(
                &mut i.t,
                n,
                "allowed: SCRIPT [USER [GROUP]] (vipd sets no supplementary groups)",
            ),
        }
    }

    fn i_use_vmac(&mut self, i: &mut Inst, n: &Node) {
        if !vipd_has::USE_VMAC {
            return self.not_yet(&mut i.t, n, "use_vmac");
        }
        match n.arg(1) {
            None => i.t.kv("use_vmac", "true".into()),
            Some(name) => i.t.kv("use_vmac", s(name)),
        }
    }

    fn i_vmac_xmit_base(&mut self, i: &mut Inst, n: &Node) {
        if !vipd_has::USE_VMAC {
            return self.not_yet(&mut i.t, n, "vmac_xmit_base");
        }
        i.t.kv("vmac_xmit_base", "true".into());
    }

    fn i_garp_refresh(&mut self, i: &mut Inst, n: &Node) {
        if !vipd_has::GARP_REFRESH {
            return self.not_yet(&mut i.t, n, n.key());
        }
        if n.key() == "garp_master_refresh" {
            self.i_secs(i, n)
        } else {
            self.i_int(i, n)
        }
    }

    fn i_accept(&mut self, i: &mut Inst, n: &Node) {
        i.t.comment("accept: vipd always accepts traffic for the addresses it holds");
        self.note(n, "vipd always accepts");
    }

    fn i_native_ipv6(&mut self, i: &mut Inst, n: &Node) {
        i.t.comment("native_ipv6: vipd takes the family from virtual_ipaddress");
        self.note(n, "family from the addresses");
    }

    // ---- scripts, tracked files and processes, sync groups ----

    fn vrrp_script(&mut self, n: &Node) {
        if !vipd_has::TRACK_SCRIPT {
            return self.not_yet_top(n, "vrrp_script");
        }
        let Some(name) = n.arg(1) else {
            return self.nc_top(n, "a vrrp_script needs a name");
        };
        let header = format!("vrrp_script.{}", key(name));
        if !self.claim(&header) {
            return self.nc_top(n, "a second vrrp_script of this name");
        }
        let mut t = Table::new(header).at(&n.loc);
        for c in n.children() {
            match (c.key(), c.arg(1)) {
                ("script", Some(cmd)) if needs_shell(cmd) => {
                    t.kv_c(
                        "script",
                        s(cmd),
                        "shell syntax: keepalived 2 and vipd run it without a shell; for one: [\"/bin/sh\", \"-c\", ...]",
                    );
                    self.note(c, "shell syntax in a script run without a shell");
                }
                ("script", Some(cmd)) => t.kv("script", s(cmd)),
                ("interval" | "timeout", Some(v)) if timer(Some(v)).is_some() => {
                    t.kv(c.key(), secs(timer(Some(v)).unwrap_or(0.0)))
                }
                ("rise" | "fall", Some(v)) if int(Some(v)).is_some() => t.kv(c.key(), v.to_string()),
                ("weight", Some(v)) if weight_reverse(c).is_some() => weight_kv(&mut t, v, weight_reverse(c)),
                ("weight", Some(_)) => self.nc(&mut t, c, "allowed: weight N [reverse]"),
                ("user", Some(u)) => {
                    t.kv("user", s(u));
                    if let Some(g) = c.arg(2) {
                        t.kv("group", s(g));
                    }
                }
                ("init_fail", None) => t.kv("init_fail", "true".into()),
                (k, _) => self.nc(&mut t, c, why(k)),
            }
        }
        self.tables.push(t);
    }

    /// `vrrp_track_file NAME { file PATH; weight N; init_file }`.
    fn vrrp_track_file(&mut self, n: &Node) {
        if !vipd_has::TRACK_FILE {
            return self.not_yet_top(n, "vrrp_track_file");
        }
        let Some(mut t) = self.named_table(n, "vrrp_track_file") else {
            return;
        };
        for c in n.children() {
            match (c.key(), c.arg(1)) {
                ("file", Some(f)) => t.kv("file", s(f)),
                ("weight", Some(v)) if weight_reverse(c).is_some() => weight_kv(&mut t, v, weight_reverse(c)),
                ("weight", Some(_)) => self.nc(&mut t, c, "allowed: weight N [reverse]"),
                ("init_file", _) => {
                    let mut words = c.words[1..].to_vec();
                    let overwrite = words.last().is_some_and(|w| w == "overwrite");
                    if overwrite {
                        words.pop();
                    }
                    match words.first() {
                        None => t.kv("init_file", "true".into()),
                        Some(x) if int(Some(x)).is_some() => t.kv("init_file", x.clone()),
                        Some(_) => {
                            self.nc(&mut t, c, "init_file takes a number");
                            continue;
                        }
                    }
                    if overwrite {
                        t.kv("init_file_overwrite", "true".into());
                    }
                }
                (k, _) => self.nc(&mut t, c, why(k)),
            }
        }
        self.tables.push(t);
    }

    /// `vrrp_track_process NAME { process …; quorum N; weight N; … }`.
    fn vrrp_track_process(&mut self, n: &Node) {
        if !vipd_has::TRACK_PROCESS {
            return self.not_yet_top(n, "vrrp_track_process");
        }
        let Some(mut t) = self.named_table(n, "vrrp_track_process") else {
            return;
        };
        for c in n.children() {
            match (c.key(), c.arg(1)) {
                ("process", Some(_)) => {
                    let argv: Vec<Val> = c.words[1..].iter().map(|w| s(w)).collect();
                    t.kv("process", array(&argv));
                }
                ("param_match", Some(m)) => t.kv("param_match", s(m)),
                ("full_command", None) => t.kv("full_command", "true".into()),
                ("quorum" | "quorum_max", Some(v)) if int(Some(v)).is_some() => t.kv(c.key(), v.to_string()),
                ("weight", Some(v)) if weight_reverse(c).is_some() => weight_kv(&mut t, v, weight_reverse(c)),
                ("weight", Some(_)) => self.nc(&mut t, c, "allowed: weight N [reverse]"),
                ("delay" | "fork_delay" | "terminate_delay", Some(v)) if timer(Some(v)).is_some() => {
                    t.kv(c.key(), secs(timer(Some(v)).unwrap_or(0.0)))
                }
                (k, _) => self.nc(&mut t, c, why(k)),
            }
        }
        self.tables.push(t);
    }

    /// The table of a named top-level block (`KIND NAME { … }`), or `None`
    /// (and a comment) when it has no name or the name is taken.
    fn named_table(&mut self, n: &Node, kind: &str) -> Option<Table> {
        let Some(name) = n.arg(1) else {
            self.nc_top(n, "needs a name");
            return None;
        };
        let header = format!("{kind}.{}", key(name));
        if !self.claim(&header) {
            self.nc_top(n, "a second block of this name");
            return None;
        }
        Some(Table::new(header).at(&n.loc))
    }

    fn vrrp_sync_group(&mut self, n: &Node) {
        let Some(name) = n.arg(1) else {
            return self.nc_top(n, "a vrrp_sync_group needs a name");
        };
        let members: Vec<&Node> = n
            .children()
            .iter()
            .filter(|c| c.key() == "group")
            .flat_map(|c| c.children())
            .collect();
        if members.len() < 2 {
            return self.nc_top(
                n,
                "a group needs group { ... } with two instances or more: keepalived ignores it",
            );
        }
        let converted = |m: &Node| self.vrids.iter().any(|v| v.3 == self.vipd_instance_name(m.key()));
        if let Some(m) = members.iter().find(|m| !converted(m)) {
            let why = format!(
                "member {} is not converted, and a group moves together or not at all",
                m.key()
            );
            return self.nc_top(n, &why);
        }
        if !vipd_has::SYNC_GROUP {
            return self.not_yet_top(n, "vrrp_sync_group");
        }
        let header = format!("vrrp_sync_group.{}", key(name));
        if !self.claim(&header) {
            return self.nc_top(n, "a second vrrp_sync_group of this name");
        }
        let mut t = Table::new(header).at(&n.loc);
        let mut i = Inst {
            vname: name.to_string(),
            t: Table::default(),
            version: 2,
            interface: None,
            master: false,
            priority: false,
            v4: None,
        };
        for c in n.children() {
            match c.key() {
                "group" => {
                    let members: Vec<Val> = c
                        .children()
                        .iter()
                        .map(|m| s(&self.vipd_instance_name(m.key())))
                        .collect();
                    i.t.kv("group", array(&members));
                }
                "notify" | "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" => {
                    self.i_notify_state(&mut i, c)
                }
                "track_interface" => self.i_track_interface(&mut i, c),
                // vipd's groups take the same tracker lists as instances.
                "track_script" => self.i_track_script(&mut i, c),
                "track_file" => self.i_track_file(&mut i, c),
                "track_process" => self.i_track_process(&mut i, c),
                "sync_group_tracking_weight" => i.t.kv("sync_group_tracking_weight", "true".into()),
                k => self.nc(&mut i.t, c, why(k)),
            }
        }
        t.entries = i.t.entries;
        self.tables.push(t);
    }

    // ---- virtual_server ----

    fn virtual_server(&mut self, n: &Node) {
        let (ip, port) = match (n.arg(1), n.arg(2)) {
            (Some("fwmark"), _) => {
                return self.nc_top(n, "fwmark services are IPVS-only: vipd listens on an address:port")
            }
            (Some("group"), _) => return self.nc_top(n, why("virtual_server_group")),
            (Some(ip), Some(port)) => match (ip.parse::<IpAddr>(), port.parse::<u16>()) {
                (Ok(ip), Ok(p)) if p != 0 => (ip, p),
                _ => return self.nc_top(n, "vipd needs an IP address and a port 1-65535"),
            },
            _ => return self.nc_top(n, "vipd needs an IP address and a port"),
        };
        let proto = n
            .children()
            .iter()
            .find(|c| c.key() == "protocol")
            .and_then(|c| c.arg(1))
            .unwrap_or("TCP");
        let protocol = match proto {
            "TCP" => "tcp",
            "UDP" => "udp",
            _ => return self.nc_top(n, "vipd balances TCP and UDP only"),
        };
        let listen = sockaddr(ip, port);
        let name = format!(
            "vs_{}_{}{}",
            ip.to_string().replace([':', '.'], "_"),
            port,
            if protocol == "udp" { "_udp" } else { "" }
        );
        let header = format!("virtual_server.{name}");
        if !self.claim(&header) {
            return self.nc_top(n, "this address, port and protocol are already a virtual server");
        }
        let mut t = Table::new(header).at(&n.loc);
        t.kv("listen", s(&listen));
        t.kv("protocol", s(protocol));
        if let Some(inst) = self.vip_owner(ip) {
            t.kv_c(
                "vrrp_instance",
                s(&inst),
                format!("{ip} is a VIP of {inst}: serve while it is master (keepalived's IPVS rules stay loaded, the VIP moves)"),
            );
        }
        let timing = vs_timing(
            n,
            Timing {
                delay_loop: 60.0,
                connect_timeout: 5.0,
                retry: None,
            },
        );
        let host = n
            .children()
            .iter()
            .find(|c| c.key() == "virtualhost")
            .and_then(|c| c.arg(1))
            .map(str::to_string);
        let mut rs_items: Vec<Item> = Vec::new();
        let mut checks: Vec<(String, Option<CheckDesc>, Node)> = Vec::new();
        for c in n.children() {
            match c.key() {
                "protocol" | "delay_loop" | "connect_timeout" | "retry" | "nb_get_retry" | "virtualhost" => {}
                "lb_algo" | "lvs_sched" => self.lb_algo(&mut t, c),
                "lb_kind" | "lvs_method" => self.lb_kind(&mut t, c),
                "real_server" => {
                    if let Some((addr, check)) = self.real_server(&mut rs_items, c, timing, host.as_deref()) {
                        checks.push((addr, check, c.clone()));
                    }
                }
                "sorry_server" => self.sorry_server(&mut rs_items, c),
                "delay_before_retry" => self.nc(
                    &mut t,
                    c,
                    "vipd probes every interval; a failed probe is not retried sooner",
                ),
                "warmup" => self.nc(&mut t, c, "vipd starts every check at once"),
                "ip_family" => {}
                k => self.nc(&mut t, c, why(k)),
            }
        }
        if !rs_items.iter().any(|i| matches!(i, Item::Val(..))) {
            t.comment(format!(
                "not converted: the virtual server itself ({}): no real_server vipd can use (it needs at least one)",
                n.words.join(" ")
            ));
            t.header = String::new();
            t.entries.retain(|e| matches!(e, Entry::Comment(_)));
            self.headers.remove(&format!("virtual_server.{name}"));
            self.nc_silent(n, "virtual_server without a usable real_server");
            rs_items.retain(|i| matches!(i, Item::Comment(_)));
        } else {
            self.one_check(&mut t, &checks);
        }
        t.entries.push(Entry::List {
            key: "real_server".into(),
            items: rs_items,
        });
        self.tables.push(t);
    }

    fn lb_algo(&mut self, t: &mut Table, n: &Node) {
        let (algo, note) = match n.arg(1) {
            Some("rr") => ("rr", None),
            Some("wrr") => ("wrr", None),
            Some("lc") => ("lc", None),
            Some("wlc") => ("lc", Some("wlc: vipd's lc weighs least connections by weight")),
            Some("sh") => ("sh", None),
            Some("mh") => ("maglev", Some("mh: vipd's maglev is a Maglev hash like IPVS mh")),
            _ => {
                return self.nc(
                    t,
                    n,
                    "vipd has rr, wrr, lc (weighted), sh and maglev; the default rr is used",
                )
            }
        };
        match note {
            Some(c) => t.kv_c("lb_algo", s(algo), c),
            None => t.kv("lb_algo", s(algo)),
        }
    }

    fn lb_kind(&mut self, t: &mut Table, n: &Node) {
        match n.arg(1) {
            Some("NAT") => {
                t.comment("lb_kind NAT: vipd proxies in user space; backends see vipd's address as the client's (no route back through the director needed)");
                self.note(n, "vipd proxies");
            }
            _ => self.nc(
                t,
                n,
                "vipd proxies in user space (like NAT); DR and TUN need the VIP on each backend's loopback, which a proxy does not",
            ),
        }
    }

    /// One `real_server IP PORT { … }` into the list; returns its address and check.
    fn real_server(
        &mut self,
        items: &mut Vec<Item>,
        n: &Node,
        vs: Timing,
        host: Option<&str>,
    ) -> Option<(String, Option<CheckDesc>)> {
        let addr = match (
            n.arg(1).and_then(|a| a.parse::<IpAddr>().ok()),
            n.arg(2).and_then(|p| p.parse::<u16>().ok()),
        ) {
            (Some(a), Some(p)) if p != 0 => std::net::SocketAddr::new(a, p),
            _ => {
                let msg = format!("{}: vipd needs an IP address and a port", n.summary());
                items.push(Item::Comment(format!("not converted: {msg}")));
                self.nc_silent(n, &msg);
                return None;
            }
        };
        let rs = addr;
        let addr = rs.to_string();
        let timing = vs_timing(n, vs);
        let mut pairs = vec![("address", s(&addr))];
        let mut comments = Vec::new();
        let mut check: Option<CheckDesc> = None;
        for c in n.children() {
            match c.key() {
                "weight" => match int(c.arg(1)) {
                    Some(w) if (0..=65535).contains(&w) => pairs.push(("weight", w.to_string())),
                    _ => comments.push(self.nc_item(c, "weight must be 0-65535")),
                },
                "delay_loop" | "connect_timeout" | "retry" | "nb_get_retry" => {}
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" => {
                    if check.is_some() {
                        comments.push(self.nc_item(
                            c,
                            "vipd runs one check per virtual server; this second checker is dropped",
                        ));
                        continue;
                    }
                    let (d, mut notes) = self.checker(c, timing, rs, host);
                    comments.append(&mut notes);
                    check = d;
                }
                "SMTP_CHECK" | "UDP_CHECK" | "DNS_CHECK" | "PING_CHECK" | "FILE_CHECK" | "BFD_CHECK" => {
                    comments.push(self.nc_item(
                        c,
                        "vipd checks with tcp, http or exec: use an exec check script for this",
                    ))
                }
                k => comments.push(self.nc_item(c, why(k))),
            }
        }
        items.extend(comments.into_iter().map(Item::Comment));
        items.push(Item::Val(inline(&pairs), None));
        Some((addr, check))
    }

    /// A not-converted finding and the comment for a list.
    fn nc_item(&mut self, n: &Node, why: &str) -> String {
        let msg = format!("{}: {why}", n.summary());
        self.nc_silent(n, &msg);
        format!("not converted: {msg}")
    }

    fn sorry_server(&mut self, items: &mut Vec<Item>, n: &Node) {
        match (
            n.arg(1).and_then(|a| a.parse::<IpAddr>().ok()),
            n.arg(2).and_then(|p| p.parse::<u16>().ok()),
        ) {
            (Some(a), Some(p)) if p != 0 => items.push(Item::Val(
                inline(&[("address", s(&sockaddr(a, p))), ("backup", "true".into())]),
                Some("sorry_server: a backup used while every other backend is down".into()),
            )),
            _ => {
                let c = self.nc_item(n, "vipd needs an IP address and a port");
                items.push(Item::Comment(c));
            }
        }
    }

    /// One keepalived checker into vipd's check (and comments on what was dropped).
    fn checker(
        &mut self,
        n: &Node,
        outer: Timing,
        rs: std::net::SocketAddr,
        host: Option<&str>,
    ) -> (Option<CheckDesc>, Vec<String>) {
        let t = vs_timing(n, outer);
        let mut notes = Vec::new();
        let default_retry = if n.key() == "MISC_CHECK" { 0 } else { 1 };
        let mut d = CheckDesc {
            kind: "tcp",
            port: None,
            path: None,
            status: None,
            host: host.map(str::to_string),
            command: None,
            interval: t.delay_loop,
            timeout: t.connect_timeout,
            fall: t.retry.unwrap_or(default_retry) + 1,
        };
        for c in n.children() {
            match c.key() {
                "connect_timeout" | "delay_loop" | "retry" | "nb_get_retry" => {}
                "connect_port" => match c.arg(1).and_then(|p| p.parse::<u16>().ok()) {
                    Some(p) if p != rs.port() => d.port = Some(p),
                    Some(_) => {}
                    None => notes.push(self.nc_item(c, "not a port")),
                },
                "delay_before_retry" => {
                    notes.push(self.nc_item(c, "vipd probes every interval; a failed probe is not retried sooner"))
                }
                "warmup" => notes.push(self.nc_item(c, "vipd starts every check at once")),
                "url" if matches!(n.key(), "HTTP_GET" | "SSL_GET") => {
                    if d.path.is_some() {
                        notes.push(self.nc_item(c, "vipd's http check fetches one path"));
                        continue;
                    }
                    for u in c.children() {
                        match (u.key(), u.arg(1)) {
                            ("path", Some(p)) => d.path = Some(p.to_string()),
                            ("status_code", Some(code)) => match status_range(code) {
                                Some(r) if u.words.len() == 2 => d.status = Some(r),
                                Some(r) => {
                                    d.status = Some(r);
                                    notes.push(self.nc_item(
                                        u,
                                        "vipd's expect_status is one status or one range; the first is used",
                                    ));
                                }
                                None => notes.push(self.nc_item(u, "not a status or range")),
                            },
                            ("virtualhost", Some(h)) => d.host = Some(h.to_string()),
                            (k, _) => notes.push(self.nc_item(
                                u,
                                if k == "digest" {
                                    "vipd checks the status, not a digest of the body"
                                } else {
                                    why(k)
                                },
                            )),
                        }
                    }
                }
                "virtualhost" => d.host = c.arg(1).map(str::to_string),
                "misc_path" if n.key() == "MISC_CHECK" => {
                    let argv = c
                        .arg(1)
                        .map(|p| split_words(p, &c.loc).unwrap_or_default())
                        .unwrap_or_default();
                    if argv.first().is_some_and(|a| a.starts_with('/')) {
                        // The real server's own address in the arguments becomes
                        // vipd's placeholder, so one check serves every backend.
                        let (ip, full) = (rs.ip().to_string(), rs.to_string());
                        let argv = argv
                            .iter()
                            .enumerate()
                            .map(|(i, a)| match a {
                                a if i > 0 && *a == full => "{address}".to_string(),
                                a if i > 0 && *a == ip => "{ip}".to_string(),
                                a => a.clone(),
                            })
                            .collect();
                        d.command = Some(argv);
                    } else {
                        notes.push(self.nc_item(c, "vipd needs an absolute path"));
                        return (None, notes);
                    }
                }
                "misc_timeout" if n.key() == "MISC_CHECK" => match timer(c.arg(1)) {
                    Some(v) => d.timeout = v,
                    None => notes.push(self.nc_item(c, "not a number of seconds")),
                },
                "misc_dynamic" => notes.push(self.nc_item(c, "vipd does not set weights from an exit status")),
                "enable_sni" => {}
                k => notes.push(self.nc_item(c, why(k))),
            }
        }
        match n.key() {
            "HTTP_GET" => d.kind = "http",
            "SSL_GET" => {
                d.path = None;
                d.status = None;
                d.host = None;
                notes.push(self.nc_item(
                    &Node {
                        loc: n.loc.clone(),
                        words: n.words.clone(),
                        block: None,
                    },
                    "vipd's checks have no TLS: a TCP connect to the port is checked instead of the HTTPS request",
                ));
            }
            "MISC_CHECK" => {
                // keepalived's misc_timeout defaults to delay_loop (connect_timeout is not used).
                if !n.children().iter().any(|c| c.key() == "misc_timeout") {
                    d.timeout = d.interval;
                }
                if d.command.is_none() {
                    notes.push(self.nc_item(n, "MISC_CHECK without misc_path"));
                    return (None, notes);
                }
                d.kind = "exec";
                d.host = None;
            }
            _ => d.host = None,
        }
        (Some(d), notes)
    }

    /// The virtual server's check: the first real server's; any other that
    /// differs is listed.
    fn one_check(&mut self, t: &mut Table, checks: &[(String, Option<CheckDesc>, Node)]) {
        let Some((_, Some(first), _)) = checks.iter().find(|(_, c, _)| c.is_some()) else {
            return;
        };
        let mut first = first.clone();
        for (addr, c, n) in checks {
            match c {
                Some(c) if *c == first => {}
                Some(_) => {
                    let msg = format!("the check of real_server {addr} differs from the first; vipd runs one check per virtual server (the first)");
                    t.comment(format!("not converted: {msg}"));
                    self.nc_silent(n, &msg);
                }
                None => {
                    let msg = format!(
                        "real_server {addr} has no checker (always up in keepalived); vipd checks it like the others"
                    );
                    t.comment(msg.clone());
                    self.note(n, &msg);
                }
            }
        }
        let mut comment = Vec::new();
        if first.interval < 0.01 || first.interval > 3600.0 {
            let v = first.interval.clamp(0.01, 3600.0);
            comment.push(format!(
                "delay_loop {} clamped to {v} (vipd: 10ms-3600s)",
                first.interval
            ));
            first.interval = v;
        }
        if first.timeout > first.interval || first.timeout <= 0.0 {
            comment.push(format!(
                "connect_timeout {} > delay_loop: vipd's timeout is at most the interval",
                first.timeout
            ));
            first.timeout = first.interval;
        }
        if first.fall > 100 {
            comment.push(format!("retry {} capped (fall at most 100)", first.fall - 1));
            first.fall = 100;
        }
        let mut pairs: Vec<(&str, Val)> = vec![("type", s(first.kind))];
        if let Some(p) = first.port {
            pairs.push(("port", p.to_string()));
        }
        if let Some(p) = &first.path {
            pairs.push(("path", s(p)));
        }
        if let Some((lo, hi)) = first.status {
            pairs.push((
                "expect_status",
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("[{lo}, {hi}]")
                },
            ));
        }
        if let Some(h) = &first.host {
            pairs.push(("host", s(h)));
        }
        if let Some(c) = &first.command {
            pairs.push(("command", array(&c.iter().map(|a| s(a)).collect::<Vec<_>>())));
        }
        pairs.push(("interval", secs(first.interval)));
        pairs.push(("timeout", secs(first.timeout)));
        pairs.push(("rise", "1".into()));
        pairs.push(("fall", first.fall.to_string()));
        let base =
            "keepalived: delay_loop = interval, connect_timeout = timeout, retry + 1 = fall, up after one success";
        let c = if comment.is_empty() {
            base.to_string()
        } else {
            format!("{base}; {}", comment.join("; "))
        };
        t.kv_c("check", inline(&pairs), c);
    }
}

/// delay_loop / connect_timeout / retry set in this block, over `outer`.
fn vs_timing(n: &Node, outer: Timing) -> Timing {
    let mut t = outer;
    for c in n.children() {
        match c.key() {
            "delay_loop" => t.delay_loop = timer(c.arg(1)).unwrap_or(t.delay_loop),
            "connect_timeout" => t.connect_timeout = timer(c.arg(1)).unwrap_or(t.connect_timeout),
            "retry" | "nb_get_retry" => t.retry = int(c.arg(1)).or(t.retry),
            _ => {}
        }
    }
    t
}

/// A command line that only works through a shell (redirection, pipes, ...).
fn needs_shell(cmd: &str) -> bool {
    cmd.contains(['<', '>', '|', '&', ';', '`']) || cmd.contains("$(")
}

/// `200` or `200-299`.
fn status_range(w: &str) -> Option<(u16, u16)> {
    let (a, b) = match w.split_once('-') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => {
            let v = w.parse().ok()?;
            (v, v)
        }
    };
    (100 <= a && a <= b && b <= 599).then_some((a, b))
}

fn sockaddr(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

/// The addresses of a `virtual_ipaddress` line's first word: `A`, `A/P`,
/// or a range `A-B[/P]` (the last octet, or the last IPv6 group in hex).
fn vip_addrs(w: &str) -> Option<(Vec<IpAddr>, Option<u8>)> {
    let (a, prefix) = match w.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (w, None),
    };
    if let Ok(ip) = a.parse::<IpAddr>() {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix.is_some_and(|p| p > max) {
            return None;
        }
        return Some((vec![ip], prefix));
    }
    let (start, end) = a.rsplit_once('-')?;
    let ip = start.parse::<IpAddr>().ok()?;
    let addrs: Vec<IpAddr> = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let last: u8 = end.parse().ok()?;
            if last < o[3] {
                return None;
            }
            (o[3]..=last)
                .map(|x| IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], x)))
                .collect()
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let last = u16::from_str_radix(end, 16).ok()?;
            if last < seg[7] {
                return None;
            }
            (seg[7]..=last)
                .map(|x| {
                    let mut s = seg;
                    s[7] = x;
                    IpAddr::V6(Ipv6Addr::from(s))
                })
                .collect()
        }
    };
    Some((addrs, prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_ranges() {
        let (a, p) = vip_addrs("192.0.2.3-5/24").unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(p, Some(24));
        assert_eq!(vip_addrs("2001:db8::9-b").unwrap().0.len(), 3);
        assert!(vip_addrs("192.0.2.9-3").is_none());
        assert!(vip_addrs("eth0").is_none());
    }

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("200"), Some((200, 200)));
        assert_eq!(status_range("200-299"), Some((200, 299)));
        assert_eq!(status_range("299-200"), None);
    }

    /// Each flag in `vipd_has` says whether vipd's config parser knows the
    /// key: flip the flag when the key lands (this test fails until then).
    #[test]
    fn support_flags_match_the_config_parser() {
        let inst =
            "[vrrp_instance.V]\ninterface = \"eth0\"\nvirtual_router_id = 1\nvirtual_ipaddress = [\"192.0.2.1\"]\n";
        let probes: &[(&str, bool, String)] = &[
            (
                "TRACK_SCRIPT",
                vipd_has::TRACK_SCRIPT,
                "[vrrp_script.c]\nscript = \"/bin/true\"\n".into(),
            ),
            (
                "TRACK_SCRIPT",
                vipd_has::TRACK_SCRIPT,
                format!("{inst}track_script = [{{ name = \"c\" }}]\n"),
            ),
            (
                "TRACK_FILE",
                vipd_has::TRACK_FILE,
                "[vrrp_track_file.f]\nfile = \"/tmp/x\"\n".into(),
            ),
            (
                "TRACK_PROCESS",
                vipd_has::TRACK_PROCESS,
                "[vrrp_track_process.p]\nprocess = \"x\"\n".into(),
            ),
            (
                "NOTIFY_STATES",
                vipd_has::NOTIFY_STATES,
                format!("{inst}notify_master = \"/bin/true\"\n"),
            ),
            (
                "SYNC_GROUP",
                vipd_has::SYNC_GROUP,
                "[vrrp_sync_group.g]\ngroup = [\"V\"]\n".to_string() + inst,
            ),
            ("USE_VMAC", vipd_has::USE_VMAC, format!("{inst}use_vmac = true\n")),
            (
                "GARP_REFRESH",
                vipd_has::GARP_REFRESH,
                format!("{inst}garp_master_refresh = 60\n"),
            ),
            (
                "SCRIPT_USER",
                vipd_has::SCRIPT_USER,
                "[global]\nscript_user = \"nobody\"\n".into(),
            ),
            (
                "SCRIPT_SECURITY",
                vipd_has::SCRIPT_SECURITY,
                "[global]\nenable_script_security = true\n".into(),
            ),
            ("USE_VMAC", vipd_has::USE_VMAC, format!("{inst}vmac_xmit_base = true\n")),
            (
                "GARP_REFRESH",
                vipd_has::GARP_REFRESH,
                format!("{inst}garp_lower_prio_repeat = 1\n"),
            ),
            (
                "TRACK_FILE",
                vipd_has::TRACK_FILE,
                format!("{inst}track_file = [{{ name = \"f\" }}]\n"),
            ),
            (
                "TRACK_PROCESS",
                vipd_has::TRACK_PROCESS,
                format!("{inst}track_process = [{{ name = \"p\" }}]\n"),
            ),
        ];
        for (flag, on, probe) in probes {
            let unknown = match crate::config::parse(probe, "probe.toml") {
                Ok(_) => false,
                Err(e) => e.message.contains("unknown field"),
            };
            assert_eq!(
                !unknown,
                *on,
                "vipd_has::{flag} is {on} but vipd's parser {} the key:\n{probe}",
                if unknown { "rejects" } else { "accepts" }
            );
        }
    }
}
