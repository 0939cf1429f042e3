//! The control protocol as types, without I/O: requests, their specific parse
//! errors, responses and the status snapshot that `vipctl` and the metrics read.
//! The JSON shape of `Status` is pinned by `tests/control_status.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::balance::{BackendStatus, Health};
// Where the virtual server's protocol and algorithm types live (config today).
use crate::config::{LbAlgo, Protocol};
use crate::vrrp::router::RouterStatus;
use crate::vrrp::{ChecksumForm, State};

/// Largest request line accepted, in bytes (newline excluded).
pub const MAX_REQUEST: usize = 64 * 1024;

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Everything `vipctl status` shows.
    Status {},
    /// Change a backend's admin state: `state` is one of [`BACKEND_STATES`].
    Backend {
        virtual_server: String,
        address: String,
        state: String,
    },
    /// Reload the configuration file (as SIGHUP does), answering with the outcome.
    Reload {},
    /// Hand an instance's mastership over (make-before-break) and keep it
    /// BACKUP at priority 1 until `promote`. `wait`: answer when the
    /// successor holds the VIPs; `timeout_ms`: how long to wait for one.
    Demote {
        instance: String,
        #[serde(default)]
        wait: bool,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// Undo `demote`.
    Promote { instance: String },
    /// Follow events: a snapshot, then one [`WatchLine`] per event (see `control::watch`).
    Watch {
        /// Set by the control server, never by a client: where on the event bus
        /// the daemon took the snapshot (`control::events::Bus::mark`).
        #[serde(skip)]
        marker: u64,
    },
}

/// The `cmd` of every [`Request`] variant.
pub const COMMANDS: [&str; 6] = ["status", "backend", "reload", "demote", "promote", "watch"];

/// Admin states a `backend` request may set.
pub const BACKEND_STATES: [&str; 3] = ["ready", "drain", "maint"];

impl Request {
    /// The `cmd` this request travels under.
    pub fn cmd(&self) -> &'static str {
        match self {
            Request::Status {} => "status",
            Request::Backend { .. } => "backend",
            Request::Reload {} => "reload",
            Request::Demote { .. } => "demote",
            Request::Promote { .. } => "promote",
            Request::Watch { .. } => "watch",
        }
    }
}

/// Why a request line was refused; each case names what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    TooLarge { len: usize },
    Empty,
    NotJson(String),
    NotObject,
    NoCommand,
    UnknownCommand(String),
    BadArguments { cmd: String, detail: String },
    BadState(String),
    BadAddress(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::TooLarge { len } => {
                write!(f, "request larger than {MAX_REQUEST} bytes ({len} bytes)")
            }
            RequestError::Empty => f.write_str("empty request: send one JSON object per line"),
            RequestError::NotJson(e) => write!(f, "bad request: not JSON: {e}"),
            RequestError::NotObject => f.write_str("bad request: not a JSON object"),
            RequestError::NoCommand => f.write_str("bad request: no \"cmd\" string"),
            RequestError::UnknownCommand(c) => {
                write!(f, "unknown command {c:?} (expected one of {})", COMMANDS.join(", "))
            }
            RequestError::BadArguments { cmd, detail } => write!(f, "bad {cmd} request: {detail}"),
            RequestError::BadState(s) => {
                write!(f, "unknown backend state {s:?}: use {}", BACKEND_STATES.join(", "))
            }
            RequestError::BadAddress(a) => write!(f, "{a:?} is not an address:port"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Parse one request line (surrounding whitespace ignored).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST {
        return Err(RequestError::TooLarge { len: line.len() });
    }
    let line = line.trim_ascii();
    if line.is_empty() {
        return Err(RequestError::Empty);
    }
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| RequestError::NotJson(e.to_string()))?;
    let serde_json::Value::Object(map) = &v else {
        return Err(RequestError::NotObject);
    };
    let Some(serde_json::Value::String(cmd)) = map.get("cmd") else {
        return Err(RequestError::NoCommand);
    };
    if !COMMANDS.contains(&cmd.as_str()) {
        return Err(RequestError::UnknownCommand(cmd.clone()));
    }
    let cmd = cmd.clone();
    let req = serde_json::from_value::<Request>(v).map_err(|e| RequestError::BadArguments {
        cmd,
        detail: e.to_string(),
    })?;
    if let Request::Backend { address, state, .. } = &req {
        if !BACKEND_STATES.contains(&state.as_str()) {
            return Err(RequestError::BadState(state.clone()));
        }
        if address.parse::<SocketAddr>().is_err() {
            return Err(RequestError::BadAddress(address.clone()));
        }
    }
    Ok(req)
}

/// One VRRP instance as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub interface: String,
    /// Source address used for adverts (primary IPv4 or link-local IPv6).
    pub source: Option<IpAddr>,
    pub link_up: bool,
    /// VIPs deleted behind our back while master and re-added (EX2).
    pub vips_readded: u64,
    /// Netlink refused to add a VIP (retried with backoff).
    #[serde(default)]
    pub vip_add_failures: u64,
    /// A VIP removal failed, or the VIP was still there after it.
    #[serde(default)]
    pub vip_remove_failures: u64,
    /// The last VIP install or removal error, if any.
    #[serde(default)]
    pub vip_last_error: Option<String>,
    /// What the instance tracks and what each adds now (`track::TrackerStatus`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trackers: Vec<crate::track::TrackerStatus>,
    /// The `vrrp_sync_group` of the instance (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_group: Option<String>,
    #[serde(flatten)]
    pub router: RouterStatus,
    /// Live timers and the last peer facts, for `vipctl explain`.
    #[serde(flatten)]
    pub explain: InstanceExplain,
}

/// One virtual server of the balancer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VirtualServerStatus {
    pub name: String,
    pub listen: SocketAddr,
    pub protocol: Protocol,
    pub lb_algo: LbAlgo,
    pub vrrp_instance: Option<String>,
    /// Listening and accepting right now (the tied instance is master).
    pub serving: bool,
    pub active_connections: u64,
    /// Connections refused at max_connections, or with no backend available.
    pub rejected_connections: u64,
    /// TCP: refusals and resets by cause.
    #[serde(default)]
    pub streams: StreamCounts,
    /// Passive ejections refused by `passive.max_ejection_percent`.
    #[serde(default)]
    pub passive_ejections_suppressed: u64,
    pub backends: Vec<BackendStatus>,
    // UDP virtual servers (0 for TCP): datagrams dropped with no backend
    // available, dropped by the kernel on the VIP socket (receive queue
    // full), not sent to a backend or back to a client; flows evicted at
    // `udp_max_flows`.
    #[serde(default)]
    pub udp_dropped_no_backend: u64,
    #[serde(default)]
    pub udp_kernel_drops: u64,
    #[serde(default)]
    pub udp_send_errors: u64,
    #[serde(default)]
    pub udp_flows_evicted: u64,
}

/// Why TCP streams of a virtual server were refused or cut;
/// `rejected_connections` is the sum of the refusals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCounts {
    /// Refused at `max_connections` or at the process-wide cap from the fd limit.
    pub rejected_at_cap: u64,
    /// Refused: no backend eligible, or every attempt failed.
    pub rejected_no_backend: u64,
    /// Refused: the connect failed for a local reason (EMFILE, EADDRNOTAVAIL,
    /// ENOBUFS...); never counted against the backend.
    pub local_connect_errors: u64,
    /// Clients shed by accept-and-close while out of file descriptors.
    pub rejected_fd_exhausted: u64,
    /// Clients closed for sending nothing within `client_first_byte_timeout`.
    pub first_byte_timeouts: u64,
    /// Established streams ended with a RST (mastership lost, maint, backend
    /// marked down, relay error).
    pub aborted: u64,
}

/// Clients of one endpoint (control socket or metrics) turned away or cut off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Accepted and closed at once: every slot busy with a client already talking.
    pub refused: u64,
    /// Closed before their answer: silent past the read timeout, slower than the
    /// write timeout, or evicted (oldest silent client) to make room for a new one.
    pub aborted: u64,
    /// accept() failures (EMFILE and kin), each followed by a back-off sleep.
    pub accept_errors: u64,
}

/// The daemon's whole status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Version of the vipd that answered (the crate version).
    #[serde(default)]
    pub version: String,
    pub router_id: String,
    pub config_file: PathBuf,
    pub uptime_s: u64,
    pub reloads: u64,
    pub reload_failures: u64,
    /// Receive errors not attributable to any instance (per reason).
    pub interface_discards: BTreeMap<String, u64>,
    /// Bad control requests (unparsable, unknown backend, bad state...).
    pub control_errors: u64,
    /// See [`ClientStats`]; filled from `control::ControlListener::counters`.
    #[serde(default)]
    pub control_clients_refused: u64,
    #[serde(default)]
    pub control_clients_aborted: u64,
    #[serde(default)]
    pub control_accept_errors: u64,
    /// Changing requests refused for want of permission (not uid 0, the
    /// daemon's uid or the control socket's group); status stays open to all.
    #[serde(default)]
    pub control_requests_denied: u64,
    /// See [`ClientStats`]; filled from `control::metrics::MetricsServer::counters`.
    #[serde(default)]
    pub metrics_clients_refused: u64,
    #[serde(default)]
    pub metrics_clients_aborted: u64,
    #[serde(default)]
    pub metrics_accept_errors: u64,
    pub instances: Vec<InstanceStatus>,
    pub virtual_servers: Vec<VirtualServerStatus>,
}

impl Default for Status {
    /// An empty status that already carries this build's version.
    fn default() -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            router_id: String::new(),
            config_file: PathBuf::new(),
            uptime_s: 0,
            reloads: 0,
            reload_failures: 0,
            interface_discards: BTreeMap::new(),
            control_errors: 0,
            control_clients_refused: 0,
            control_clients_aborted: 0,
            control_accept_errors: 0,
            control_requests_denied: 0,
            metrics_clients_refused: 0,
            metrics_clients_aborted: 0,
            metrics_accept_errors: 0,
            instances: Vec::new(),
            virtual_servers: Vec::new(),
        }
    }
}

impl Status {
    /// The control socket's client counters.
    pub fn set_control_clients(&mut self, c: ClientStats) {
        self.control_clients_refused = c.refused;
        self.control_clients_aborted = c.aborted;
        self.control_accept_errors = c.accept_errors;
    }
    /// The metrics endpoint's client counters.
    pub fn set_metrics_clients(&mut self, c: ClientStats) {
        self.metrics_clients_refused = c.refused;
        self.metrics_clients_aborted = c.aborted;
        self.metrics_accept_errors = c.accept_errors;
    }
    pub fn control_clients(&self) -> ClientStats {
        ClientStats {
            refused: self.control_clients_refused,
            aborted: self.control_clients_aborted,
            accept_errors: self.control_accept_errors,
        }
    }
    pub fn metrics_clients(&self) -> ClientStats {
        ClientStats {
            refused: self.metrics_clients_refused,
            aborted: self.metrics_clients_aborted,
            accept_errors: self.metrics_accept_errors,
        }
    }
}

// --- vipctl explain and watch -------------------------------------------

/// What `vipctl explain` adds to an instance's status: the timers as time left
/// when the status was taken, and what was last heard. Every field is absent
/// (null) when it does not apply, and in the status of an older vipd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceExplain {
    /// A backup's Master_Down_Timer: microseconds until it fires.
    #[serde(default)]
    pub master_down_in_us: Option<u64>,
    /// Master_Down_Interval at the current priority and interval in use.
    #[serde(default)]
    pub master_down_interval_us: Option<u64>,
    /// A backup waiting out `preempt_delay`: microseconds left.
    #[serde(default)]
    pub preempt_in_us: Option<u64>,
    /// Age of the master's last advert (a backup's view), microseconds.
    #[serde(default)]
    pub master_advert_age_us: Option<u64>,
    /// Interval the master advertises, microseconds.
    #[serde(default)]
    pub master_advert_interval_us: Option<u64>,
    /// Checksum form of the master's last advert.
    #[serde(default)]
    pub master_checksum_form: Option<ChecksumForm>,
    /// Checksum form we send (v3 over IPv4 follows the peers).
    #[serde(default)]
    pub checksum_form_sent: Option<ChecksumForm>,
    /// Age of `last_transition`, microseconds.
    #[serde(default)]
    pub last_transition_age_us: Option<u64>,
    /// The last discarded packet: why, from whom, how long ago.
    #[serde(default)]
    pub last_discard: Option<LastDiscard>,
}

/// The last packet an instance discarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastDiscard {
    /// `RxError::name()`, as in the discard counters.
    pub reason: String,
    pub src: Option<IpAddr>,
    pub age_us: u64,
}

/// One line of the `watch` stream, in order: a snapshot, then events.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchLine {
    /// Wall clock when the daemon published it, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    #[serde(flatten)]
    pub event: WatchEvent,
}

/// What a watcher is told.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    /// The whole status, once, first: the events that follow are news to it.
    Snapshot { status: Box<Status> },
    /// An instance changed state.
    Transition {
        instance: String,
        vrid: u8,
        from: State,
        to: State,
        reason: String,
        /// Effective priority after the change.
        priority: u8,
    },
    /// An instance's effective priority changed (tracking).
    Priority {
        instance: String,
        vrid: u8,
        from: u8,
        to: u8,
        base: u8,
    },
    /// A backend's health changed (active check or passive failure).
    Backend {
        virtual_server: String,
        address: SocketAddr,
        from: Health,
        to: Health,
        reason: String,
    },
    /// This watcher read too slowly: `dropped` events are lost to it.
    Lagged { dropped: u64 },
    /// vipd is stopping; the last line of the stream.
    Stopping { reason: String },
}

impl WatchLine {
    /// `event` stamped with the wall clock now.
    pub fn now(event: WatchEvent) -> WatchLine {
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        WatchLine { unix_ms, event }
    }
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            status: None,
            message: None,
        }
    }
    pub fn message(msg: impl Into<String>) -> Response {
        Response {
            ok: true,
            error: None,
            status: None,
            message: Some(msg.into()),
        }
    }
    pub fn status(st: Status) -> Response {
        Response {
            ok: true,
            error: None,
            status: Some(st),
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> RequestError {
        parse_request(line.as_bytes()).unwrap_err()
    }

    #[test]
    fn parses_every_command() {
        assert_eq!(parse_request(br#"{"cmd":"status"}"#), Ok(Request::Status {}));
        assert_eq!(parse_request(b" {\"cmd\":\"reload\"}\n"), Ok(Request::Reload {}));
        assert_eq!(
            parse_request(
                br#"{"cmd":"backend","virtual_server":"ingest","address":"198.51.100.11:6000","state":"drain"}"#
            ),
            Ok(Request::Backend {
                virtual_server: "ingest".into(),
                address: "198.51.100.11:6000".into(),
                state: "drain".into()
            })
        );
    }

    #[test]
    fn commands_list_matches_the_enum() {
        let all = [
            Request::Status {},
            Request::Backend {
                virtual_server: "v".into(),
                address: "[2001:db8::1]:80".into(),
                state: "maint".into(),
            },
            Request::Reload {},
            Request::Demote {
                instance: "VI_1".into(),
                wait: true,
                timeout_ms: Some(2000),
            },
            Request::Promote {
                instance: "VI_1".into(),
            },
            Request::Watch { marker: 0 },
        ];
        for r in all {
            assert!(COMMANDS.contains(&r.cmd()));
            let line = serde_json::to_vec(&r).unwrap();
            assert_eq!(parse_request(&line), Ok(r));
        }
    }

    #[test]
    fn bad_requests_get_specific_errors() {
        let big = vec![b' '; MAX_REQUEST + 1];
        assert_eq!(
            parse_request(&big),
            Err(RequestError::TooLarge { len: MAX_REQUEST + 1 })
        );
        assert_eq!(err(""), RequestError::Empty);
        assert_eq!(err("  \n"), RequestError::Empty);
        assert!(matches!(err("not json"), RequestError::NotJson(_)));
        assert!(matches!(err(r#"{"cmd":"status""#), RequestError::NotJson(_)));
        assert_eq!(err("[1,2]"), RequestError::NotObject);
        assert_eq!(err(r#""status""#), RequestError::NotObject);
        assert_eq!(err("{}"), RequestError::NoCommand);
        assert_eq!(err(r#"{"cmd":7}"#), RequestError::NoCommand);
        assert_eq!(
            err(r#"{"cmd":"explode"}"#),
            RequestError::UnknownCommand("explode".into())
        );
        assert_eq!(
            err(r#"{"cmd":"Status"}"#),
            RequestError::UnknownCommand("Status".into())
        );
        match err(r#"{"cmd":"status","x":1}"#) {
            RequestError::BadArguments { cmd, detail } => {
                assert_eq!(cmd, "status");
                assert!(detail.contains("unknown field `x`"), "{detail}");
            }
            e => panic!("{e:?}"),
        }
        match err(r#"{"cmd":"backend","virtual_server":"v","state":"drain"}"#) {
            RequestError::BadArguments { cmd, detail } => {
                assert_eq!(cmd, "backend");
                assert!(detail.contains("missing field `address`"), "{detail}");
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(
            err(r#"{"cmd":"backend","virtual_server":"v","address":"192.0.2.1:80","state":"up"}"#),
            RequestError::BadState("up".into())
        );
        assert_eq!(
            err(r#"{"cmd":"backend","virtual_server":"v","address":"192.0.2.1","state":"ready"}"#),
            RequestError::BadAddress("192.0.2.1".into())
        );
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            err(r#"{"cmd":"explode"}"#).to_string(),
            "unknown command \"explode\" (expected one of status, backend, reload, demote, promote, watch)"
        );
        assert_eq!(
            RequestError::BadState("up".into()).to_string(),
            "unknown backend state \"up\": use ready, drain, maint"
        );
        assert!(err("nope").to_string().starts_with("bad request: not JSON"));
    }

    #[test]
    fn default_status_carries_the_crate_version() {
        assert_eq!(Status::default().version, env!("CARGO_PKG_VERSION"));
        let mut st = Status::default();
        let c = ClientStats {
            refused: 1,
            aborted: 2,
            accept_errors: 3,
        };
        st.set_control_clients(c);
        st.set_metrics_clients(ClientStats::default());
        assert_eq!(st.control_clients(), c);
        assert_eq!(st.metrics_clients(), ClientStats::default());
    }

    #[test]
    fn status_from_an_older_daemon_still_reads() {
        // No version, no client counters: what vipd 0.1.0 before this field sent.
        let old = r#"{"router_id":"r","config_file":"/etc/vipd.toml","uptime_s":1,"reloads":0,
            "reload_failures":0,"interface_discards":{},"control_errors":0,"instances":[],
            "virtual_servers":[]}"#;
        let st: Status = serde_json::from_str(old).unwrap();
        assert_eq!(st.version, "");
        assert_eq!(st.control_clients(), ClientStats::default());
    }
}
