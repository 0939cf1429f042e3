//! The file as written: serde structs with spans, unknown keys rejected.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub global: Option<Spanned<Global>>,
    pub vrrp_instance: Option<BTreeMap<String, Spanned<Instance>>>,
    pub virtual_server: Option<BTreeMap<String, Spanned<Server>>>,
    // Tracking (config/track.rs).
    pub vrrp_script: Option<BTreeMap<String, Spanned<super::track::RawScript>>>,
    pub vrrp_track_file: Option<BTreeMap<String, Spanned<super::track::RawFile>>>,
    pub vrrp_track_process: Option<BTreeMap<String, Spanned<super::track::RawProcess>>>,
    pub vrrp_sync_group: Option<BTreeMap<String, Spanned<super::sync::RawSyncGroup>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Global {
    pub router_id: Option<Spanned<String>>,
    pub control_socket: Option<Spanned<String>>,
    pub metrics: Option<Spanned<String>>,
    // Scripts (config/track.rs).
    pub script_user: Option<Spanned<String>>,
    pub enable_script_security: Option<Spanned<bool>>,
    // Notify scripts (config/notify.rs).
    pub notify_script_timeout: Option<Spanned<NumOrStr>>,
}

/// A number of seconds (integer or float) or a duration string.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum NumOrStr {
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub auth_type: Spanned<String>,
    pub auth_pass: Spanned<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub interface: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub reverse: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub interface: Spanned<String>,
    pub virtual_router_id: Spanned<i64>,
    pub priority: Option<Spanned<i64>>,
    pub version: Option<Spanned<i64>>,
    pub advert_int: Option<Spanned<NumOrStr>>,
    pub preempt: Option<Spanned<bool>>,
    pub nopreempt: Option<Spanned<bool>>,
    pub preempt_delay: Option<Spanned<NumOrStr>>,
    pub virtual_ipaddress: Spanned<Vec<Spanned<String>>>,
    pub unicast_src_ip: Option<Spanned<String>>,
    pub unicast_peer: Option<Vec<Spanned<String>>>,
    pub allowed_peers: Option<Vec<Spanned<String>>>,
    pub authentication: Option<Spanned<Auth>>,
    pub checksum_form: Option<Spanned<String>>,
    pub garp_master_repeat: Option<Spanned<i64>>,
    pub garp_master_delay: Option<Spanned<NumOrStr>>,
    pub track_interface: Option<Vec<Spanned<Track>>>,
    // Virtual MAC and announcements (src/config/vmac.rs).
    pub use_vmac: Option<Spanned<super::vmac::BoolOrName>>,
    pub vmac_xmit_base: Option<Spanned<bool>>,
    pub garp_master_refresh: Option<Spanned<NumOrStr>>,
    pub garp_master_refresh_repeat: Option<Spanned<i64>>,
    pub garp_lower_prio_repeat: Option<Spanned<i64>>,
    // Tracking (config/track.rs).
    pub track_script: Option<Vec<Spanned<super::track::RawRef>>>,
    pub track_file: Option<Vec<Spanned<super::track::RawRef>>>,
    pub track_process: Option<Vec<Spanned<super::track::RawRef>>>,
    pub track_virtual_server: Option<Vec<Spanned<super::track::RawVsRef>>>,
    // Notify scripts (config/notify.rs).
    pub notify: Option<Spanned<super::notify::NotifyCommand>>,
    pub notify_master: Option<Spanned<super::notify::NotifyCommand>>,
    pub notify_backup: Option<Spanned<super::notify::NotifyCommand>>,
    pub notify_fault: Option<Spanned<super::notify::NotifyCommand>>,
    pub notify_stop: Option<Spanned<super::notify::NotifyCommand>>,
}

/// An HTTP status: 200, "2xx", or [200, 399].
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum StatusSpec {
    One(i64),
    Str(String),
    Range(Vec<i64>),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Check {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub interval: Option<Spanned<NumOrStr>>,
    pub timeout: Option<Spanned<NumOrStr>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub port: Option<Spanned<i64>>,
    pub path: Option<Spanned<String>>,
    pub expect_status: Option<Spanned<StatusSpec>>,
    pub host: Option<Spanned<String>>,
    pub command: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Real {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub backup: Option<Spanned<bool>>,
    pub priority: Option<Spanned<i64>>,
    pub state: Option<Spanned<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: Spanned<String>,
    pub protocol: Option<Spanned<String>>,
    pub lb_algo: Option<Spanned<String>>,
    pub vrrp_instance: Option<Spanned<String>>,
    pub check: Option<Spanned<Check>>,
    pub real_server: Spanned<Vec<Spanned<Real>>>,
    pub connect_timeout: Option<Spanned<NumOrStr>>,
    pub idle_timeout: Option<Spanned<NumOrStr>>,
    pub max_connections: Option<Spanned<i64>>,
    pub retries: Option<Spanned<i64>>,
    pub udp_max_flows: Option<Spanned<i64>>,
    pub udp_rcvbuf: Option<Spanned<i64>>,
    // TCP data-plane limits (issue 8).
    pub client_first_byte_timeout: Option<Spanned<NumOrStr>>,
    pub on_marked_down: Option<Spanned<String>>,
    pub passive: Option<Spanned<Passive>>,
}

/// `passive = { error_limit = 3, window = "10s", max_ejection_percent = 50 }`
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Passive {
    pub error_limit: Option<Spanned<i64>>,
    pub window: Option<Spanned<NumOrStr>>,
    pub max_ejection_percent: Option<Spanned<i64>>,
}
