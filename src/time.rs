//! Virtual time for the pure cores: integer microseconds since an arbitrary
//! epoch chosen by the caller. The cores never read a clock; the shell maps its
//! monotonic clock onto this type, tests construct instants directly.
#![forbid(unsafe_code)]

use std::ops::{Add, Sub};

/// A point in time, in integer microseconds since the caller's epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct Instant(pub u64);

/// A span of time in integer microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize, serde::Deserialize)]
pub struct Micros(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    pub fn from_micros(us: u64) -> Self {
        Instant(us)
    }
    pub fn as_micros(self) -> u64 {
        self.0
    }
    /// Time elapsed since `earlier`, saturating at zero.
    pub fn since(self, earlier: Instant) -> Micros {
        Micros(self.0.saturating_sub(earlier.0))
    }
}

impl Micros {
    pub const ZERO: Micros = Micros(0);
    pub fn from_millis(ms: u64) -> Self {
        Micros(ms.saturating_mul(1000))
    }
    pub fn from_secs(s: u64) -> Self {
        Micros(s.saturating_mul(1_000_000))
    }
    pub fn as_micros(self) -> u64 {
        self.0
    }
    pub fn to_duration(self) -> std::time::Duration {
        std::time::Duration::from_micros(self.0)
    }
    pub fn from_duration(d: std::time::Duration) -> Self {
        Micros(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

impl Add<Micros> for Instant {
    type Output = Instant;
    fn add(self, rhs: Micros) -> Instant {
        Instant(self.0.saturating_add(rhs.0))
    }
}

impl Sub<Instant> for Instant {
    type Output = Micros;
    fn sub(self, rhs: Instant) -> Micros {
        self.since(rhs)
    }
}

impl Add for Micros {
    type Output = Micros;
    fn add(self, rhs: Micros) -> Micros {
        Micros(self.0.saturating_add(rhs.0))
    }
}
