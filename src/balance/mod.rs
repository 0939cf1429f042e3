//! PURE balancer core: health hysteresis (`health`), live counters (`stats`),
//! schedulers (`sched`), the published forwarding snapshot (`snapshot`) and
//! the per-virtual-server forwarding table (`table`).
//!
//! Nothing here does I/O or reads a clock: every mutation takes
//! `now: crate::time::Instant`. The data plane reads an immutable
//! [`Snapshot`] through an [`arc_swap::ArcSwap`] (no lock on the hot path);
//! the control plane (checker, control socket, reload) mutates the [`Table`],
//! which republishes a new snapshot after every change that matters.
//!
//! Data-plane use (one new connection, with redispatch):
//! ```text
//! let mut tried = Vec::new();
//! for _ in 0..=retries {
//!     let snap = handle.load();                       // lock-free
//!     let Some(e) = snap.pick_entry(client, &tried) else { break };  // None: nothing eligible
//!     let (id, addr, stats) = (e.id, e.address, e.stats.clone());
//!     drop(snap);                                     // do not hold the guard across .await
//!     match connect(addr, connect_timeout).await {
//!         Ok(s) => { let _conn = stats.open(); /* splice; stats.add_bytes_in/out(n) */ return }
//!         Err(err) => {
//!             if let Some(ev) = handle.passive_failure(id, &detail(err), clock.now()) {
//!                 crate::check::log_health_event(&name, &ev);
//!             }
//!             tried.push(id);
//!         }
//!     }
//! }
//! ```
#![forbid(unsafe_code)]

pub mod health;
pub mod sched;
pub mod snapshot;
pub mod stats;
pub mod table;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

pub use health::{HealthEvent, HealthTracker, PassivePolicy};
pub use snapshot::{Snapshot, SnapshotEntry};
pub use stats::{BackendStats, ConnGuard};
pub use table::{BackendStatus, ReconcileReport, Table, TableHandle};

/// Identifier of a backend inside one [`Table`]. Assigned when the backend is
/// added, kept across reloads while its address stays, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackendId(pub u32);

impl fmt::Display for BackendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Operator state of a backend (keepalived/HAProxy semantics); also the
/// config's `real_server.state` and the JSON of `vipctl status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    /// Takes new connections when healthy.
    #[default]
    Ready,
    /// No new connections; existing ones continue; checks and stats continue.
    Drain,
    /// Maintenance: no new connections (checks still run, status still shown).
    Maint,
}

/// Health as decided by the hysteresis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Not yet proven healthy: carries no traffic until `rise` successes.
    Unknown,
    Up,
    Down,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Unknown => "UNKNOWN",
            Health::Up => "UP",
            Health::Down => "DOWN",
        })
    }
}

/// Scheduling algorithm (`lb_algo`); also the config's and the JSON of `vipctl status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LbAlgo {
    /// Round robin over eligible backends (weights ignored except weight 0).
    #[default]
    Rr,
    /// Smooth weighted round robin (nginx).
    Wrr,
    /// Weighted least connections: min active/weight.
    Lc,
    /// Source-address hash (weighted rendezvous hash of the client IP).
    Sh,
    /// Maglev consistent hash of the client IP.
    Maglev,
}

/// One real server as configured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendSpec {
    pub address: SocketAddr,
    /// 0 = never picked.
    pub weight: u32,
    /// `false` with priority 0 = the primary group.
    pub backup: bool,
    /// Failover order among groups, lowest first.
    pub priority: u32,
    pub admin: Admin,
}

impl BackendSpec {
    /// A primary, ready backend with the given weight.
    pub fn new(address: SocketAddr, weight: u32) -> Self {
        BackendSpec {
            address,
            weight,
            backup: false,
            priority: 0,
            admin: Admin::Ready,
        }
    }

    /// The failover group, ordered: all non-backup groups (by priority) come
    /// before all backup groups (by priority). The primary group is `(false, 0)`.
    pub fn group(&self) -> Group {
        Group {
            backup: self.backup,
            priority: self.priority,
        }
    }
}

/// A failover group; `Ord` gives the failover order (lowest is preferred).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Group {
    pub backup: bool,
    pub priority: u32,
}

/// Hysteresis thresholds from the `check` block. Values below 1 act as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthPolicy {
    pub rise: u32,
    pub fall: u32,
}

/// Everything the table needs from a `virtual_server` block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpec {
    pub name: String,
    pub algo: LbAlgo,
    /// `None` = no check configured: backends are Up at once (HAProxy without `check`).
    pub health: Option<HealthPolicy>,
    pub backends: Vec<BackendSpec>,
}

/// Errors of table mutations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableError {
    /// No backend with that address in this virtual server.
    UnknownAddress(SocketAddr),
    /// No backend with that id (removed by a reload, or never existed).
    UnknownId(BackendId),
    /// The same address appears twice in a spec.
    DuplicateAddress(SocketAddr),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::UnknownAddress(a) => write!(f, "no real_server {a} in this virtual_server"),
            TableError::UnknownId(id) => write!(f, "no backend {id} in this virtual_server"),
            TableError::DuplicateAddress(a) => write!(f, "real_server {a} is listed twice"),
        }
    }
}

impl std::error::Error for TableError {}
