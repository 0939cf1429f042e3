//! Measurements the status snapshot does not carry, for the metrics page: state transitions by
//! cause, failover phase durations, time without a known master, health-check latency, and the
//! daemon's readiness. Written by the shell (event loop, checkers) with the daemon's `Clock`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::histogram::Histogram;

use crate::clock::Clock;
use crate::time::Instant;
use crate::vrrp::{Action, Reason, State};

/// Bucket bounds (seconds) of the failover histogram: 100 µs .. 10 s.
pub const FAILOVER_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Bucket bounds (seconds) of the health-check latency histogram: 250 µs .. 10 s.
pub const CHECK_BUCKETS: [f64; 15] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A phase of a failover, the `phase` label of `vipd_vrrp_failover_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// From the decision to become master (master-down timer fired, preempt...)
    /// to every VIP confirmed in place by netlink.
    VipInstall,
    /// From every VIP in place to the first gratuitous ARP / unsolicited NA sent.
    Announce,
    /// From the decision to become master to the first announcement sent.
    Total,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::VipInstall => "vip_install",
            Phase::Announce => "announce",
            Phase::Total => "total",
        }
    }
}

/// Where the daemon is in its life, for `/ready`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Config loaded; sockets, instances and virtual servers are being set up.
    Starting,
    /// Start-up complete: config loaded, sockets bound, instances and balancer started.
    Ready,
    /// Leaving (SIGTERM / SIGINT): releasing VIPs, draining connections.
    Stopping,
}

/// A failover in progress: when the instance became master, when its VIPs were all in place.
#[derive(Clone, Copy, Debug)]
struct Pending {
    started: Instant,
    vips_at: Option<Instant>,
}

/// Accumulated time without a known master, and the start of the current stretch.
#[derive(Clone, Copy, Debug, Default)]
struct NoMaster {
    micros: u64,
    since: Option<Instant>,
}

/// The transition key: (instance, from, to, reason).
pub type TransitionKey = (String, &'static str, &'static str, String);

#[derive(Debug, Default)]
struct Book {
    transitions: BTreeMap<TransitionKey, u64>,
    failover: BTreeMap<(String, Phase), Histogram>,
    pending: HashMap<String, Pending>,
    no_master: BTreeMap<String, NoMaster>,
    /// (virtual server, backend, check succeeded) -> latency.
    checks: BTreeMap<(String, SocketAddr, bool), Histogram>,
}

/// Shared by the event loop, the checkers and the metrics endpoint (clones share one book).
#[derive(Clone, Debug)]
pub struct Observer {
    book: Arc<Mutex<Book>>,
    stage: Arc<AtomicU8>,
    clock: Clock,
}

impl Default for Observer {
    fn default() -> Self {
        Observer::new(Clock::new())
    }
}

/// The `reason` label of a transition: the snake_case name of its [`Reason`]
/// variant (`master_down_timer`, `higher_priority`...), without its details.
pub fn reason_label(r: &Reason) -> String {
    match serde_json::to_value(r) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(m)) => m.keys().next().cloned().unwrap_or_else(|| "other".into()),
        _ => "other".into(),
    }
}

fn micros_to_secs(us: u64) -> f64 {
    us as f64 / 1e6
}

impl Observer {
    /// An empty book on `clock` (the daemon's clock: every instant passed in is on it).
    pub fn new(clock: Clock) -> Observer {
        Observer {
            book: Arc::default(),
            stage: Arc::new(AtomicU8::new(0)),
            clock,
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic elsewhere while holding it leaves numbers, not broken invariants.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    pub fn set_stage(&self, s: Stage) {
        let v = match s {
            Stage::Starting => 0,
            Stage::Ready => 1,
            Stage::Stopping => 2,
        };
        self.stage.store(v, Ordering::Relaxed);
    }

    pub fn stage(&self) -> Stage {
        match self.stage.load(Ordering::Relaxed) {
            0 => Stage::Starting,
            1 => Stage::Ready,
            _ => Stage::Stopping,
        }
    }

    /// Before instance `inst` carries out `actions` (its router has already
    /// moved): count state changes by cause, start or abandon a failover
    /// measurement, and account time without a master (`knows_master` is the
    /// router's view after the input).
    pub fn on_actions(&self, inst: &str, actions: &[Action], knows_master: bool, now: Instant) {
        let mut b = self.book();
        for a in actions {
            if let Action::StateChange { from, to, reason } = a {
                let key = (inst.to_string(), from.name(), to.name(), reason_label(reason));
                *b.transitions.entry(key).or_insert(0) += 1;
                if *to == State::Master {
                    b.pending.insert(
                        inst.to_string(),
                        Pending {
                            started: now,
                            vips_at: None,
                        },
                    );
                } else {
                    b.pending.remove(inst);
                }
            }
        }
        let nm = match b.no_master.get_mut(inst) {
            Some(nm) => nm,
            None => b.no_master.entry(inst.to_string()).or_default(),
        };
        match (nm.since, knows_master) {
            (Some(s), true) => {
                nm.micros += now.0.saturating_sub(s.0);
                nm.since = None;
            }
            (None, false) => nm.since = Some(now),
            _ => {}
        }
    }

    /// Every VIP of `inst` is in place (called on each reconcile that finds them so).
    pub fn vips_in_place(&self, inst: &str, now: Instant) {
        let mut b = self.book();
        let Some(p) = b.pending.get_mut(inst) else { return };
        if p.vips_at.is_some() {
            return;
        }
        p.vips_at = Some(now);
        let took = now.0.saturating_sub(p.started.0);
        b.observe_failover(inst, Phase::VipInstall, took);
    }

    /// An announcement frame of `inst` went out: the first after its VIPs
    /// were in place ends the failover measurement.
    pub fn announced(&self, inst: &str, now: Instant) {
        let mut b = self.book();
        let Some(p) = b.pending.get(inst).copied() else { return };
        let Some(vips_at) = p.vips_at else { return };
        b.pending.remove(inst);
        b.observe_failover(inst, Phase::Announce, now.0.saturating_sub(vips_at.0));
        b.observe_failover(inst, Phase::Total, now.0.saturating_sub(p.started.0));
    }

    /// A health check of `backend` of `server` ended after `micros`.
    pub fn check_done(&self, server: &str, backend: SocketAddr, ok: bool, micros: u64) {
        let mut b = self.book();
        b.checks
            .entry((server.to_string(), backend, ok))
            .or_insert_with(|| Histogram::new(CHECK_BUCKETS))
            .observe(micros_to_secs(micros));
    }

    /// What the metrics page shows, read at `now`.
    pub fn snapshot(&self) -> Observed {
        let now = self.clock.now();
        let b = self.book();
        Observed {
            transitions: b.transitions.clone(),
            failover: b.failover.clone(),
            no_master_seconds: b
                .no_master
                .iter()
                .map(|(k, nm)| {
                    let open = nm.since.map_or(0, |s| now.0.saturating_sub(s.0));
                    (k.clone(), micros_to_secs(nm.micros + open))
                })
                .collect(),
            checks: b.checks.clone(),
        }
    }
}

impl Book {
    fn observe_failover(&mut self, inst: &str, phase: Phase, micros: u64) {
        self.failover
            .entry((inst.to_string(), phase))
            .or_insert_with(|| Histogram::new(FAILOVER_BUCKETS))
            .observe(micros_to_secs(micros));
    }
}

/// A copy of the book for one scrape (histograms are shared handles: read, never observed).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub transitions: BTreeMap<TransitionKey, u64>,
    pub failover: BTreeMap<(String, Phase), Histogram>,
    pub no_master_seconds: BTreeMap<String, f64>,
    pub checks: BTreeMap<(String, SocketAddr, bool), Histogram>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::Reason;

    fn change(from: State, to: State, reason: Reason) -> Action {
        Action::StateChange { from, to, reason }
    }

    #[test]
    fn reasons_are_labels_without_details() {
        assert_eq!(reason_label(&Reason::MasterDownTimer), "master_down_timer");
        let r = Reason::HigherPriority {
            priority: 200,
            from: "192.0.2.1".parse().unwrap(),
        };
        assert_eq!(reason_label(&r), "higher_priority");
        assert_eq!(reason_label(&Reason::TrackFault { what: "eth1".into() }), "track_fault");
    }

    #[test]
    fn a_failover_is_measured_phase_by_phase_once() {
        let o = Observer::default();
        o.on_actions(
            "VI_1",
            &[change(State::Backup, State::Master, Reason::MasterDownTimer)],
            true,
            Instant(1_000),
        );
        o.announced("VI_1", Instant(1_500)); // VIPs not in place yet: not the end
        o.vips_in_place("VI_1", Instant(3_000));
        o.vips_in_place("VI_1", Instant(9_000)); // later reconciles change nothing
        o.announced("VI_1", Instant(3_250));
        o.announced("VI_1", Instant(5_000)); // a refresh is no failover
        let s = o.snapshot();
        let t = s.transitions[&("VI_1".into(), "backup", "master", "master_down_timer".into())];
        assert_eq!(t, 1);
        let mut page = String::new();
        let mut reg = prometheus_client::registry::Registry::default();
        for ((_, p), h) in &s.failover {
            reg.register(format!("f_{}", p.name()), "x", h.clone());
        }
        prometheus_client::encoding::prometheus_text::encode(&mut page, &reg).unwrap();
        assert!(page.contains("f_vip_install_sum 0.002\n"), "{page}");
        assert!(page.contains("f_announce_sum 0.00025\n"), "{page}");
        assert!(page.contains("f_total_sum 0.00225\n"), "{page}");
        assert!(page.contains("f_total_count 1\n"), "{page}");
    }

    #[test]
    fn leaving_master_abandons_the_measurement() {
        let o = Observer::default();
        let up = change(State::Backup, State::Master, Reason::MasterDownTimer);
        o.on_actions("VI_1", &[up], true, Instant(0));
        let down = change(State::Master, State::Fault, Reason::LinkDown);
        o.on_actions("VI_1", &[down], false, Instant(10));
        o.vips_in_place("VI_1", Instant(20));
        o.announced("VI_1", Instant(30));
        assert!(o.snapshot().failover.is_empty());
    }

    #[test]
    fn time_without_a_master_adds_up_stretches() {
        let o = Observer::new(Clock::new());
        o.on_actions("VI_1", &[], false, Instant(0));
        o.on_actions("VI_1", &[], false, Instant(500_000));
        o.on_actions("VI_1", &[], true, Instant(1_000_000));
        o.on_actions("VI_1", &[], true, Instant(2_000_000));
        o.on_actions("VI_1", &[], false, Instant(3_000_000));
        o.on_actions("VI_1", &[], true, Instant(3_250_000));
        assert_eq!(o.snapshot().no_master_seconds["VI_1"], 1.25);
    }
}
