//! Health hysteresis (pingora-style, but a new backend starts `Unknown` and
//! carries no traffic until it passes `rise` consecutive checks).

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::net::SocketAddr;

use super::{BackendId, Health, HealthPolicy};
use crate::time::{Instant, Micros};

/// When failures seen by the data plane (a refused or timed-out connect, an
/// ICMP port unreachable) take a backend out before its checks do.
///
/// Defaults: `error_limit` failures within 10 s, where `error_limit` is the
/// check's `fall` (3 unless configured): a failed connect is the same
/// evidence as a failed TCP check, so it takes as many to eject, but
/// passive failures come as fast as clients do, so they must also be recent:
/// a handful of refusals spread over an hour is noise, not an outage. This is
/// HAProxy's `observe layer4` with `error-limit` (consecutive errors) turned
/// into a sliding window, so that interleaved successes on other backends'
/// connections do not matter. `max_ejection_percent` (Envoy's name; default
/// 50, so that with the usual 2 to 4 backends one may go) bounds the share
/// of backends that may be out at once through passive ejection: a
/// client-side or network-wide fault that makes every backend look bad must
/// not empty the pool; beyond the cap vipd keeps serving from all and leaves
/// the verdict to the active checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassivePolicy {
    /// Failures within `window` that eject; `None`: the check's `fall`.
    pub error_limit: Option<u32>,
    pub window: Micros,
    /// Most backends (percent of the table, 0..=100) that may be down at once
    /// when a passive ejection is considered; 0 disables passive ejection.
    pub max_ejection_percent: u32,
}

impl Default for PassivePolicy {
    fn default() -> Self {
        PassivePolicy {
            error_limit: None,
            window: Micros::from_secs(10),
            max_ejection_percent: 50,
        }
    }
}

impl PassivePolicy {
    /// The failure count that ejects under check policy `check`.
    pub fn limit(&self, check: HealthPolicy) -> u32 {
        self.error_limit.unwrap_or(check.fall).max(1)
    }
    /// May one more backend go down when `down` of `total` already are?
    pub fn may_eject(&self, down: usize, total: usize) -> bool {
        let pct = u64::from(self.max_ejection_percent.min(100));
        (down as u64 + 1) * 100 <= pct * total as u64
    }
}

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
    /// Times of recent passive failures (at most `error_limit`, within the window).
    passive: VecDeque<Instant>,
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
            passive: VecDeque::new(),
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

    /// A failure seen by the data plane. Returns true when it makes
    /// `error_limit` failures within the window (the table then decides,
    /// under `max_ejection_percent`, whether to [`eject`](Self::eject)).
    /// Always false without a check policy: nothing could bring it back.
    pub fn passive_failure(&mut self, policy: Option<HealthPolicy>, passive: PassivePolicy, now: Instant) -> bool {
        let Some(policy) = policy else { return false };
        let limit = passive.limit(policy) as usize;
        while self
            .passive
            .front()
            .is_some_and(|t| now.since(*t) >= passive.window || self.passive.len() >= limit)
        {
            self.passive.pop_front();
        }
        self.passive.push_back(now);
        self.health != Health::Down && self.passive.len() >= limit
    }

    /// Passive failures counted in the window ending at `now`.
    pub fn recent_passive_failures(&self, passive: PassivePolicy, now: Instant) -> usize {
        self.passive.iter().filter(|t| now.since(**t) < passive.window).count()
    }

    /// Take the backend out after passive failures: Down until `rise` good checks.
    pub fn eject(&mut self, policy: HealthPolicy, detail: &str, now: Instant) -> Option<Transition> {
        let n = self.passive.len();
        self.passive.clear();
        self.successes = 0;
        self.failures = self.failures.max(policy.fall.max(1));
        if self.health == Health::Down {
            return None;
        }
        Some(self.change(Health::Down, format!("passive failure ({n} recent): {detail}"), now))
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

    const PP: PassivePolicy = PassivePolicy {
        error_limit: None,
        window: Micros(10_000_000),
        max_ejection_percent: 50,
    };

    fn up(h: &mut HealthTracker) {
        for i in 0..3 {
            h.record(P, true, "ok", t(i));
        }
        assert_eq!(h.health(), Health::Up);
    }

    #[test]
    fn passive_failures_eject_at_fall_within_the_window() {
        let mut h = HealthTracker::new(Some(P), t(0));
        up(&mut h);
        // fall = 2: the second failure within 10 s reaches the limit.
        assert!(!h.passive_failure(Some(P), PP, t(1_000_000)));
        assert!(h.passive_failure(Some(P), PP, t(2_000_000)));
        let tr = h.eject(P, "connection refused", t(2_000_000)).unwrap();
        assert_eq!((tr.from, tr.to), (Health::Up, Health::Down));
        assert_eq!(tr.reason, "passive failure (2 recent): connection refused");
        // Already down: no new verdict.
        assert!(!h.passive_failure(Some(P), PP, t(2_100_000)));
        // needs rise successes to come back
        assert_eq!(h.record(P, true, "ok", t(7)), None);
        assert_eq!(h.record(P, true, "ok", t(8)), None);
        assert!(h.record(P, true, "ok", t(9)).is_some());
    }

    #[test]
    fn passive_failures_spread_beyond_the_window_never_eject() {
        let mut h = HealthTracker::new(Some(P), t(0));
        up(&mut h);
        let pp = PassivePolicy {
            error_limit: Some(3),
            ..PP
        };
        // One failure every 6 s: never 3 within 10 s.
        for i in 1..=20u64 {
            assert!(!h.passive_failure(Some(P), pp, t(i * 6_000_000)), "failure {i}");
        }
        assert_eq!(h.recent_passive_failures(pp, t(120_000_000)), 2);
        // A third within 10 s (114 s, 120 s, 121 s) reaches the limit.
        assert!(h.passive_failure(Some(P), pp, t(121_000_000)));
        assert_eq!(h.health(), Health::Up, "the table decides whether to eject");
    }

    #[test]
    fn ejection_cap_is_a_share_of_the_table() {
        let p = PP;
        // 3 backends, 50 %: one may go (1/3), a second may not (2/3).
        assert!(p.may_eject(0, 3));
        assert!(!p.may_eject(1, 3));
        // A single backend is never ejected passively at 50 %.
        assert!(!p.may_eject(0, 1));
        // 2 of 4.
        assert!(p.may_eject(1, 4));
        assert!(!p.may_eject(2, 4));
        let all = PassivePolicy {
            max_ejection_percent: 100,
            ..p
        };
        assert!(all.may_eject(0, 1) && all.may_eject(2, 3));
        let off = PassivePolicy {
            max_ejection_percent: 0,
            ..p
        };
        assert!(!off.may_eject(0, 10));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let p = HealthPolicy { rise: 0, fall: 0 };
        let mut h = HealthTracker::new(Some(p), t(0));
        assert!(h.record(p, true, "ok", t(1)).is_some());
        assert!(h.record(p, false, "bad", t(2)).is_some());
    }
}
