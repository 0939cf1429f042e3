//! The forwarding table of one virtual server: backends with admin state,
//! weight, failover group, health hysteresis and live counters. Every change
//! that can alter forwarding republishes an immutable [`Snapshot`].

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use super::health::{HealthTracker, PassivePolicy, Transition};
use super::{
    Admin, BackendId, BackendSpec, BackendStats, Group, Health, HealthEvent, HealthPolicy, LbAlgo, Snapshot,
    SnapshotEntry, TableError, TableSpec,
};
use crate::time::Instant;

#[derive(Debug)]
struct Backend {
    id: BackendId,
    address: SocketAddr,
    weight: u32,
    group: Group,
    /// Current admin state (config or runtime override).
    admin: Admin,
    /// Admin state last seen in the config; a reload only overrides a runtime
    /// `set_admin` when the config itself changed this value.
    spec_admin: Admin,
    health: HealthTracker,
    stats: Arc<BackendStats>,
}

impl Backend {
    fn eligible(&self) -> bool {
        self.health.health() == Health::Up && self.admin == Admin::Ready && self.weight > 0
    }
}

/// Status of one backend, for `vipctl status` and metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub id: BackendId,
    pub address: SocketAddr,
    pub weight: u32,
    pub admin: Admin,
    pub health: Health,
    pub backup: bool,
    pub priority: u32,
    /// Picked for new connections right now (eligible and in the active group).
    pub serving: bool,
    pub active_connections: u64,
    pub total_connections: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub failed_connects: u64,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub last_check_ok: Option<bool>,
    pub last_check: Option<String>,
    pub last_check_at: Option<Instant>,
    pub last_change: Option<String>,
    pub last_change_at: Option<Instant>,
}

/// What a reload changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub added: Vec<SocketAddr>,
    pub removed: Vec<SocketAddr>,
    /// Kept backends whose weight, group or admin state changed.
    pub changed: Vec<SocketAddr>,
    /// Health transitions caused by the reload (e.g. the check was removed).
    pub events: Vec<HealthEvent>,
}

/// Forwarding table of one virtual server. Not `Sync`-shared directly: wrap
/// it in a [`TableHandle`] (a mutex for the cold control path, `ArcSwap`
/// for the hot data path).
#[derive(Debug)]
pub struct Table {
    name: String,
    algo: LbAlgo,
    policy: Option<HealthPolicy>,
    passive: PassivePolicy,
    /// Passive ejections refused by `max_ejection_percent`.
    ejections_suppressed: u64,
    backends: Vec<Backend>,
    next_id: u32,
    generation: u64,
    published: Arc<ArcSwap<Snapshot>>,
}

fn check_duplicates(spec: &TableSpec) -> Result<(), TableError> {
    for (i, b) in spec.backends.iter().enumerate() {
        if spec.backends[..i].iter().any(|o| o.address == b.address) {
            return Err(TableError::DuplicateAddress(b.address));
        }
    }
    Ok(())
}

impl Table {
    /// A table for `spec`. With a check policy every backend starts
    /// `Unknown` (no traffic until `rise` passes); without one, `Up`.
    pub fn new(spec: TableSpec, now: Instant) -> Result<Table, TableError> {
        check_duplicates(&spec)?;
        let empty = Snapshot::new(&spec.name, spec.algo, 0, None, Vec::new(), 0, 0);
        let mut t = Table {
            name: spec.name,
            algo: spec.algo,
            policy: spec.health,
            passive: PassivePolicy::default(),
            ejections_suppressed: 0,
            backends: Vec::new(),
            next_id: 0,
            generation: 0,
            published: Arc::new(ArcSwap::from_pointee(empty)),
        };
        for b in &spec.backends {
            t.add_backend(b, now);
        }
        t.publish();
        Ok(t)
    }

    fn add_backend(&mut self, b: &BackendSpec, now: Instant) {
        let id = BackendId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        self.backends.push(Backend {
            id,
            address: b.address,
            weight: b.weight,
            group: b.group(),
            admin: b.admin,
            spec_admin: b.admin,
            health: HealthTracker::new(self.policy, now),
            stats: Arc::new(BackendStats::new()),
        });
    }

    /// Recompute the eligible set and publish a new snapshot.
    fn publish(&mut self) {
        let group = self.backends.iter().filter(|b| b.eligible()).map(|b| b.group).min();
        let entries: Vec<SnapshotEntry> = self
            .backends
            .iter()
            .filter(|b| b.eligible() && Some(b.group) == group)
            .map(|b| SnapshotEntry::new(b.id, b.address, b.weight, Arc::clone(&b.stats)))
            .collect();
        self.generation += 1;
        let cursor = self.published.load().cursor();
        let snap = Snapshot::new(
            &self.name,
            self.algo,
            self.generation,
            group,
            entries,
            cursor,
            self.backends.len(),
        );
        self.published.store(Arc::new(snap));
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn algo(&self) -> LbAlgo {
        self.algo
    }
    pub fn policy(&self) -> Option<HealthPolicy> {
        self.policy
    }
    /// The cell the data plane loads snapshots from (`.load()` per connection).
    pub fn snapshots(&self) -> Arc<ArcSwap<Snapshot>> {
        Arc::clone(&self.published)
    }
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.published.load_full()
    }
    /// Every backend (any state), in configuration order: what the checker probes.
    pub fn backends(&self) -> Vec<(BackendId, SocketAddr)> {
        self.backends.iter().map(|b| (b.id, b.address)).collect()
    }
    pub fn id_of(&self, address: SocketAddr) -> Option<BackendId> {
        self.backends.iter().find(|b| b.address == address).map(|b| b.id)
    }
    pub fn health(&self, id: BackendId) -> Option<Health> {
        self.get(id).map(|b| b.health.health())
    }
    /// Counters of any backend (also drained/down ones, unlike the snapshot).
    pub fn stats(&self, id: BackendId) -> Option<Arc<BackendStats>> {
        self.get(id).map(|b| Arc::clone(&b.stats))
    }

    fn get(&self, id: BackendId) -> Option<&Backend> {
        self.backends.iter().find(|b| b.id == id)
    }

    fn event(&mut self, idx: usize, tr: Transition, now: Instant) -> HealthEvent {
        let b = &self.backends[idx];
        HealthEvent {
            id: b.id,
            address: b.address,
            from: tr.from,
            to: tr.to,
            reason: tr.reason,
            at: now,
        }
    }

    /// Feed one check result. Returns the health transition it caused, if
    /// any. Results for unknown ids (a reload removed the backend while the
    /// probe ran) and results without a check policy are ignored.
    pub fn apply_check(&mut self, id: BackendId, ok: bool, detail: &str, now: Instant) -> Option<HealthEvent> {
        let policy = self.policy?;
        let idx = self.backends.iter().position(|b| b.id == id)?;
        let tr = self.backends[idx].health.record(policy, ok, detail, now)?;
        let ev = self.event(idx, tr, now);
        self.publish();
        Some(ev)
    }

    /// A failure seen by the data plane (a connect the backend refused or
    /// did not answer; never a local error such as EMFILE): counts
    /// `failed_connects` and, when a check is configured and the backend has
    /// failed `error_limit` times within the window, marks it Down (checks
    /// bring it back after `rise` passes) unless that would take more than
    /// `max_ejection_percent` of the backends out: then it stays in and the
    /// refusal is counted in [`ejections_suppressed`](Self::ejections_suppressed).
    pub fn passive_failure(&mut self, id: BackendId, detail: &str, now: Instant) -> Option<HealthEvent> {
        let idx = self.backends.iter().position(|b| b.id == id)?;
        self.backends[idx].stats.add_failed_connect();
        let policy = self.policy?;
        if !self.backends[idx]
            .health
            .passive_failure(Some(policy), self.passive, now)
        {
            return None;
        }
        let down = self
            .backends
            .iter()
            .enumerate()
            .filter(|(i, b)| *i != idx && b.health.health() == Health::Down)
            .count();
        if !self.passive.may_eject(down, self.backends.len()) {
            self.ejections_suppressed += 1;
            return None;
        }
        let tr = self.backends[idx].health.eject(policy, detail, now)?;
        let ev = self.event(idx, tr, now);
        self.publish();
        Some(ev)
    }

    /// Set the passive ejection policy (at start and on reload).
    pub fn set_passive_policy(&mut self, p: PassivePolicy) {
        self.passive = p;
    }
    pub fn passive_policy(&self) -> PassivePolicy {
        self.passive
    }
    /// Passive ejections refused so far because of `max_ejection_percent`.
    pub fn ejections_suppressed(&self) -> u64 {
        self.ejections_suppressed
    }

    /// Runtime admin change (`vipctl drain`). Drain/Maint stop new
    /// connections; existing ones and the counters are untouched.
    pub fn set_admin(&mut self, address: SocketAddr, admin: Admin) -> Result<(), TableError> {
        let b = self
            .backends
            .iter_mut()
            .find(|b| b.address == address)
            .ok_or(TableError::UnknownAddress(address))?;
        if b.admin != admin {
            b.admin = admin;
            self.publish();
        }
        Ok(())
    }

    /// Runtime weight change. Weight 0 stops new connections.
    pub fn set_weight(&mut self, address: SocketAddr, weight: u32) -> Result<(), TableError> {
        let b = self
            .backends
            .iter_mut()
            .find(|b| b.address == address)
            .ok_or(TableError::UnknownAddress(address))?;
        if b.weight != weight {
            b.weight = weight;
            self.publish();
        }
        Ok(())
    }

    /// Apply a reloaded spec. Backends are matched by address: kept ones keep
    /// their id, health and counters (weight/group follow the spec; admin
    /// follows the spec only if the spec's admin changed); new ones start as
    /// a fresh backend (Unknown with a check); gone ones are removed (their
    /// open connections keep their `Arc<BackendStats>` and finish normally).
    /// On error nothing changes.
    pub fn reconcile(&mut self, spec: TableSpec, now: Instant) -> Result<ReconcileReport, TableError> {
        check_duplicates(&spec)?;
        let mut report = ReconcileReport::default();
        let policy_changed = spec.health != self.policy;
        self.name = spec.name;
        self.algo = spec.algo;
        self.policy = spec.health;
        let mut old = std::mem::take(&mut self.backends);
        for s in &spec.backends {
            match old.iter().position(|b| b.address == s.address) {
                Some(i) => {
                    let mut b = old.swap_remove(i);
                    let mut changed = b.weight != s.weight || b.group != s.group();
                    b.weight = s.weight;
                    b.group = s.group();
                    if s.admin != b.spec_admin {
                        changed |= b.admin != s.admin;
                        b.admin = s.admin;
                        b.spec_admin = s.admin;
                    }
                    if changed {
                        report.changed.push(s.address);
                    }
                    let tr = if policy_changed {
                        b.health.policy_changed(self.policy, now)
                    } else {
                        None
                    };
                    self.backends.push(b);
                    if let Some(tr) = tr {
                        let ev = self.event(self.backends.len() - 1, tr, now);
                        report.events.push(ev);
                    }
                }
                None => {
                    self.add_backend(s, now);
                    report.added.push(s.address);
                }
            }
        }
        report.removed = old.iter().map(|b| b.address).collect();
        self.publish();
        Ok(report)
    }

    /// Status of every backend, in configuration order.
    pub fn status(&self) -> Vec<BackendStatus> {
        let snap = self.published.load();
        self.backends
            .iter()
            .map(|b| {
                let last_check = b.health.last_check();
                let last_change = b.health.last_change();
                BackendStatus {
                    id: b.id,
                    address: b.address,
                    weight: b.weight,
                    admin: b.admin,
                    health: b.health.health(),
                    backup: b.group.backup,
                    priority: b.group.priority,
                    serving: snap.get(b.id).is_some(),
                    active_connections: b.stats.active(),
                    total_connections: b.stats.total(),
                    bytes_in: b.stats.bytes_in(),
                    bytes_out: b.stats.bytes_out(),
                    failed_connects: b.stats.failed_connects(),
                    consecutive_successes: b.health.consecutive_successes(),
                    consecutive_failures: b.health.consecutive_failures(),
                    last_check_ok: last_check.map(|c| c.0),
                    last_check: last_check.map(|c| c.1.clone()),
                    last_check_at: last_check.map(|c| c.2),
                    last_change: last_change.map(|c| c.0.clone()),
                    last_change_at: last_change.map(|c| c.1),
                }
            })
            .collect()
    }
}

/// A table shared between the control path (checker, passive failures,
/// control socket, reload: short mutex sections) and the data path
/// (`load()`: lock-free `ArcSwap` read). Cheap to clone.
#[derive(Clone, Debug)]
pub struct TableHandle {
    table: Arc<Mutex<Table>>,
    snapshots: Arc<ArcSwap<Snapshot>>,
}

impl TableHandle {
    pub fn new(table: Table) -> Self {
        let snapshots = table.snapshots();
        TableHandle {
            table: Arc::new(Mutex::new(table)),
            snapshots,
        }
    }
    /// Hot path: the current snapshot, no lock.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.snapshots.load()
    }
    /// The current snapshot as an owned `Arc` (to keep across awaits).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.load_full()
    }
    /// Lock the table for a mutation or a read (cold path only).
    pub fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
    pub fn name(&self) -> String {
        self.lock().name().to_string()
    }
    pub fn apply_check(&self, id: BackendId, ok: bool, detail: &str, now: Instant) -> Option<HealthEvent> {
        self.lock().apply_check(id, ok, detail, now)
    }
    pub fn passive_failure(&self, id: BackendId, detail: &str, now: Instant) -> Option<HealthEvent> {
        self.lock().passive_failure(id, detail, now)
    }
    pub fn set_admin(&self, address: SocketAddr, admin: Admin) -> Result<(), TableError> {
        self.lock().set_admin(address, admin)
    }
    pub fn set_passive_policy(&self, p: PassivePolicy) {
        self.lock().set_passive_policy(p)
    }
    pub fn set_weight(&self, address: SocketAddr, weight: u32) -> Result<(), TableError> {
        self.lock().set_weight(address, weight)
    }
    pub fn reconcile(&self, spec: TableSpec, now: Instant) -> Result<ReconcileReport, TableError> {
        self.lock().reconcile(spec, now)
    }
    pub fn status(&self) -> Vec<BackendStatus> {
        self.lock().status()
    }
}
