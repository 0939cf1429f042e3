//! PURE: what a tracker's results mean over time: rise/fall hysteresis for
//! scripts (the balancer's `HealthTracker`, with keepalived's "the first
//! result decides"), the delays of a tracked process, and the signal each
//! tracker gives an instance. Takes `now`; no I/O, no clock.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use crate::balance::health::HealthTracker;
use crate::balance::{Health, HealthPolicy};
use crate::time::{Instant, Micros};

/// What a tracker says right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// No result yet: contributes nothing and does not fault.
    Unknown,
    Up,
    Down,
    /// A tracked file's value (multiplied by the weight).
    Value(i64),
}

/// One tracker an instance follows (interfaces included), with the weight
/// in force for that instance and what it says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub kind: &'static str,
    pub name: String,
    pub weight: i32,
    /// keepalived `reverse` (see `daemon::facts::share`).
    pub reverse: bool,
    pub signal: Signal,
}

/// A state change of a tracker, with its cause (for the log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub from: Signal,
    pub to: Signal,
    pub reason: String,
}

/// A `vrrp_script`'s verdict: `rise` consecutive successes make it up,
/// `fall` consecutive failures down; the first result after start decides
/// at once (keepalived starts a script one success short of up), unless
/// `init_fail` starts it down.
#[derive(Clone, Debug)]
pub struct ScriptState {
    policy: HealthPolicy,
    tracker: HealthTracker,
    first: bool,
}

impl ScriptState {
    pub fn new(rise: u32, fall: u32, init_fail: bool, now: Instant) -> ScriptState {
        let policy = HealthPolicy { rise, fall };
        let mut tracker = HealthTracker::new(Some(policy), now);
        if init_fail {
            // Down until `rise` successes (keepalived `init_fail`).
            let _ = tracker.record(HealthPolicy { rise, fall: 1 }, false, "init_fail", now);
        }
        ScriptState {
            policy,
            tracker,
            first: !init_fail,
        }
    }

    pub fn signal(&self) -> Signal {
        match self.tracker.health() {
            Health::Unknown => Signal::Unknown,
            Health::Up => Signal::Up,
            Health::Down => Signal::Down,
        }
    }

    /// One run's result; `detail` says how it ended.
    pub fn record(&mut self, ok: bool, detail: &str, now: Instant) -> Option<Change> {
        let policy = if std::mem::take(&mut self.first) {
            HealthPolicy { rise: 1, fall: 1 }
        } else {
            self.policy
        };
        let from = self.signal();
        let t = self.tracker.record(policy, ok, detail, now)?;
        Some(Change {
            from,
            to: self.signal(),
            reason: t.reason,
        })
    }

    pub fn consecutive(&self) -> (u32, u32) {
        (
            self.tracker.consecutive_successes(),
            self.tracker.consecutive_failures(),
        )
    }
}

/// A `vrrp_track_process`: up while `quorum <= count <= quorum_max`; a
/// change must hold for `fork_delay` (to up) or `terminate_delay` (to down)
/// before it counts (checked at each scan). The first scan decides at once.
#[derive(Clone, Debug)]
pub struct ProcessState {
    quorum: u32,
    quorum_max: u32,
    fork_delay: Micros,
    terminate_delay: Micros,
    signal: Signal,
    count: Option<u32>,
    /// The other verdict, seen since.
    pending: Option<(bool, Instant)>,
}

impl ProcessState {
    pub fn new(quorum: u32, quorum_max: u32, fork_delay: Micros, terminate_delay: Micros) -> ProcessState {
        ProcessState {
            quorum,
            quorum_max,
            fork_delay,
            terminate_delay,
            signal: Signal::Unknown,
            count: None,
            pending: None,
        }
    }

    pub fn signal(&self) -> Signal {
        self.signal
    }

    pub fn count(&self) -> Option<u32> {
        self.count
    }

    /// One scan found `count` matching processes.
    pub fn observe(&mut self, count: u32, now: Instant) -> Option<Change> {
        self.count = Some(count);
        let ok = count >= self.quorum && count <= self.quorum_max;
        let want = if ok { Signal::Up } else { Signal::Down };
        let reason = || {
            let max = if self.quorum_max == u32::MAX {
                String::new()
            } else {
                format!("..={}", self.quorum_max)
            };
            format!("{count} matching process(es), quorum {}{max}", self.quorum)
        };
        if self.signal == want {
            self.pending = None;
            return None;
        }
        if self.signal != Signal::Unknown {
            let delay = if ok { self.fork_delay } else { self.terminate_delay };
            let since = match self.pending {
                Some((p, t)) if p == ok => t,
                _ => {
                    self.pending = Some((ok, now));
                    now
                }
            };
            if now.since(since) < delay {
                return None;
            }
        }
        self.pending = None;
        let from = self.signal;
        self.signal = want;
        Some(Change {
            from,
            to: want,
            reason: reason(),
        })
    }
}

/// A `vrrp_track_file`'s value. An unreadable or malformed file reads as 0
/// (the reason is logged).
#[derive(Clone, Debug, Default)]
pub struct FileState {
    value: Option<i64>,
}

impl FileState {
    pub fn signal(&self) -> Signal {
        self.value.map(Signal::Value).unwrap_or(Signal::Unknown)
    }

    pub fn observe(&mut self, value: i64, detail: &str) -> Option<Change> {
        if self.value == Some(value) {
            return None;
        }
        let from = self.signal();
        self.value = Some(value);
        Some(Change {
            from,
            to: Signal::Value(value),
            reason: detail.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant(ms * 1000)
    }

    #[test]
    fn script_first_result_decides_then_rise_and_fall() {
        let mut s = ScriptState::new(2, 3, false, t(0));
        assert_eq!(s.signal(), Signal::Unknown);
        let c = s.record(true, "exit status 0", t(1)).unwrap();
        assert_eq!((c.from, c.to), (Signal::Unknown, Signal::Up));
        assert_eq!(s.record(false, "exit status 1", t(2)), None);
        assert_eq!(s.record(false, "exit status 1", t(3)), None);
        let c = s.record(false, "exit status 1", t(4)).unwrap();
        assert_eq!(c.to, Signal::Down);
        assert!(c.reason.contains("3/3"), "{}", c.reason);
        assert_eq!(s.record(true, "exit status 0", t(5)), None);
        assert_eq!(s.record(true, "exit status 0", t(6)).unwrap().to, Signal::Up);
        // A failure first: down at once.
        let mut s = ScriptState::new(2, 3, false, t(0));
        assert_eq!(s.record(false, "timed out", t(1)).unwrap().to, Signal::Down);
    }

    #[test]
    fn init_fail_starts_down_until_rise() {
        let mut s = ScriptState::new(2, 1, true, t(0));
        assert_eq!(s.signal(), Signal::Down);
        assert_eq!(s.record(true, "ok", t(1)), None);
        assert_eq!(s.record(true, "ok", t(2)).unwrap().to, Signal::Up);
    }

    #[test]
    fn process_quorum_and_delays() {
        let mut p = ProcessState::new(2, 3, Micros::from_millis(500), Micros::from_millis(1000));
        assert_eq!(p.observe(1, t(0)).unwrap().to, Signal::Down);
        // Up only after fork_delay of quorum.
        assert_eq!(p.observe(2, t(100)), None);
        assert_eq!(p.observe(2, t(400)), None);
        assert_eq!(p.observe(3, t(600)).unwrap().to, Signal::Up);
        // Above quorum_max: down after terminate_delay; a bounce back resets it.
        assert_eq!(p.observe(4, t(700)), None);
        assert_eq!(p.observe(2, t(800)), None);
        assert_eq!(p.observe(0, t(900)), None);
        assert_eq!(p.observe(0, t(1800)), None);
        let c = p.observe(0, t(1900)).unwrap();
        assert_eq!(c.to, Signal::Down);
        assert!(c.reason.contains("0 matching"), "{}", c.reason);
        // No delay: at the scan.
        let mut p = ProcessState::new(1, u32::MAX, Micros::ZERO, Micros::ZERO);
        assert_eq!(p.observe(1, t(0)).unwrap().to, Signal::Up);
        assert_eq!(p.observe(0, t(1)).unwrap().to, Signal::Down);
    }

    #[test]
    fn file_value_changes_only() {
        let mut f = FileState::default();
        assert_eq!(f.signal(), Signal::Unknown);
        assert_eq!(f.observe(5, "read 5").unwrap().to, Signal::Value(5));
        assert_eq!(f.observe(5, "read 5"), None);
        assert_eq!(f.observe(-2, "read -2").unwrap().from, Signal::Value(5));
    }
}
