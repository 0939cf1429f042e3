//! Health hysteresis (pingora-style, but a new backend starts `Unknown` and
//! carries no traffic until it passes `rise` consecutive checks).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use super::{BackendId, Health, HealthPolicy};
use crate::time::Instant;

/// A health transition, with its cause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthEvent {
    pub id: BackendId,
    pub address: SocketAddr,
    pub from: Health,
    pub to: Health,
    /// e.g. "check failed 2/2: connection refused", "passive failure: connect timeout".
    pub reason: String,
    pub at: Instant,
}

/// Consecutive-result counters and the current verdict of one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTracker {
    health: Health,
    successes: u32,
    failures: u32,
    last_check: Option<(bool, String, Instant)>,
    last_change: Option<(String, Instant)>,
}

/// A transition without the backend identity (the table adds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
    pub reason: String,
}

impl HealthTracker {
    /// A tracker for a backend under `policy`: `Unknown` with a check,
    /// `Up` at once without one.
    pub fn new(policy: Option<HealthPolicy>, now: Instant) -> Self {
        let mut t = HealthTracker {
            health: Health::Unknown,
            successes: 0,
            failures: 0,
            last_check: None,
            last_change: None,
        };
        if policy.is_none() {
            t.health = Health::Up;
            t.last_change = Some(("no health check configured".to_string(), now));
        }
        t
    }

    pub fn health(&self) -> Health {
        self.health
    }
    pub fn consecutive_successes(&self) -> u32 {
        self.successes
    }
    pub fn consecutive_failures(&self) -> u32 {
        self.failures
    }
    /// (ok, detail, when) of the last check result.
    pub fn last_check(&self) -> Option<&(bool, String, Instant)> {
        self.last_check.as_ref()
    }
    /// (reason, when) of the last transition.
    pub fn last_change(&self) -> Option<&(String, Instant)> {
        self.last_change.as_ref()
    }

    /// Feed one check result. Returns the transition it caused, if any.
    pub fn record(&mut self, policy: HealthPolicy, ok: bool, detail: &str, now: Instant) -> Option<Transition> {
        let rise = policy.rise.max(1);
        let fall = policy.fall.max(1);
        self.last_check = Some((ok, detail.to_string(), now));
        if ok {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            if self.health != Health::Up && self.successes >= rise {
                return Some(self.change(Health::Up, format!("check passed {rise}/{rise}: {detail}"), now));
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            if self.health != Health::Down && self.failures >= fall {
                return Some(self.change(Health::Down, format!("check failed {fall}/{fall}: {detail}"), now));
            }
        }
        None
    }

    /// A failed connect seen by the data plane: Down at once (the next
    /// `rise` good checks bring it back). Ignored without a check policy,
    /// since nothing could ever bring the backend back.
    pub fn passive_failure(&mut self, policy: Option<HealthPolicy>, detail: &str, now: Instant) -> Option<Transition> {
        let policy = policy?;
        self.successes = 0;
        self.failures = self.failures.saturating_add(1).max(policy.fall.max(1));
        if self.health == Health::Down {
            return None;
        }
        Some(self.change(Health::Down, format!("passive failure: {detail}"), now))
    }

    /// The check policy changed on reload. Dropping the check makes the
    /// backend Up at once; adding one keeps the current verdict.
    pub fn policy_changed(&mut self, new: Option<HealthPolicy>, now: Instant) -> Option<Transition> {
        if new.is_none() && self.health != Health::Up {
            self.successes = 0;
            self.failures = 0;
            return Some(self.change(Health::Up, "health check removed from config".to_string(), now));
        }
        None
    }

    fn change(&mut self, to: Health, reason: String, now: Instant) -> Transition {
        let from = self.health;
        self.health = to;
        self.last_change = Some((reason.clone(), now));
        Transition { from, to, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: HealthPolicy = HealthPolicy { rise: 3, fall: 2 };

    fn t(us: u64) -> Instant {
        Instant(us)
    }

    #[test]
    fn new_backend_is_unknown_until_rise_successes() {
        let mut h = HealthTracker::new(Some(P), t(0));
        assert_eq!(h.health(), Health::Unknown);
        assert_eq!(h.record(P, true, "connected", t(1)), None);
        assert_eq!(h.record(P, true, "connected", t(2)), None);
        assert_eq!(h.health(), Health::Unknown);
        let tr = h.record(P, true, "connected", t(3)).unwrap();
        assert_eq!((tr.from, tr.to), (Health::Unknown, Health::Up));
        assert_eq!(tr.reason, "check passed 3/3: connected");
        assert_eq!(
            h.last_change(),
            Some(&("check passed 3/3: connected".to_string(), t(3)))
        );
    }

    #[test]
    fn up_goes_down_after_exactly_fall_failures_and_back_after_rise() {
        let mut h = HealthTracker::new(Some(P), t(0));
        for i in 0..3 {
            h.record(P, true, "ok", t(i));
        }
        assert_eq!(h.health(), Health::Up);
        assert_eq!(h.record(P, false, "connection refused", t(10)), None);
        assert_eq!(h.health(), Health::Up);
        let tr = h.record(P, false, "connection refused", t(11)).unwrap();
        assert_eq!((tr.from, tr.to), (Health::Up, Health::Down));
        assert_eq!(tr.reason, "check failed 2/2: connection refused");
        // more failures: no new event
        assert_eq!(h.record(P, false, "connection refused", t(12)), None);
        // a success in the middle resets the count
        assert_eq!(h.record(P, true, "ok", t(13)), None);
        assert_eq!(h.record(P, true, "ok", t(14)), None);
        assert_eq!(h.record(P, false, "x", t(15)), None);
        assert_eq!(h.record(P, true, "ok", t(16)), None);
        assert_eq!(h.record(P, true, "ok", t(17)), None);
        assert_eq!(h.health(), Health::Down);
        let tr = h.record(P, true, "ok", t(18)).unwrap();
        assert_eq!((tr.from, tr.to), (Health::Down, Health::Up));
    }

    #[test]
    fn unknown_goes_down_after_fall_failures() {
        let mut h = HealthTracker::new(Some(P), t(0));
        assert_eq!(h.record(P, false, "timeout after 500ms", t(1)), None);
        let tr = h.record(P, false, "timeout after 500ms", t(2)).unwrap();
        assert_eq!((tr.from, tr.to), (Health::Unknown, Health::Down));
    }

    #[test]
    fn passive_failure_ejects_at_once() {
        let mut h = HealthTracker::new(Some(P), t(0));
        for i in 0..3 {
            h.record(P, true, "ok", t(i));
        }
        let tr = h.passive_failure(Some(P), "connection refused", t(5)).unwrap();
        assert_eq!((tr.from, tr.to), (Health::Up, Health::Down));
        assert_eq!(tr.reason, "passive failure: connection refused");
        assert_eq!(h.passive_failure(Some(P), "connection refused", t(6)), None);
        // needs rise successes to come back
        assert_eq!(h.record(P, true, "ok", t(7)), None);
        assert_eq!(h.record(P, true, "ok", t(8)), None);
        assert!(h.record(P, true, "ok", t(9)).is_some());
    }

    #[test]
    fn without_check_up_at_once_and_passive_ignored() {
        let mut h = HealthTracker::new(None, t(0));
        assert_eq!(h.health(), Health::Up);
        assert_eq!(h.passive_failure(None, "connection refused", t(1)), None);
        assert_eq!(h.health(), Health::Up);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let p = HealthPolicy { rise: 0, fall: 0 };
        let mut h = HealthTracker::new(Some(p), t(0));
        assert!(h.record(p, true, "ok", t(1)).is_some());
        assert!(h.record(p, false, "bad", t(2)).is_some());
    }
}
