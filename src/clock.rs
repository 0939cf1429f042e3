//! The one monotonic clock of the shell: tokio's monotonic clock (the
//! system's, unless a test pauses tokio time) as the cores' [`Instant`].

use std::time::Duration;

use crate::time::{Instant, Micros};

/// Microseconds since `epoch` as a [`crate::time::Instant`]. Copy one clock
/// to every part of the daemon so that their instants are comparable.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: tokio::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose epoch is now (instant 0).
    pub fn new() -> Self {
        Clock {
            epoch: tokio::time::Instant::now(),
        }
    }

    /// A clock with a given epoch (tests with paused tokio time).
    pub fn with_epoch(epoch: tokio::time::Instant) -> Self {
        Clock { epoch }
    }

    /// Now, in microseconds since the epoch.
    pub fn now(&self) -> Instant {
        Instant(Micros::from_duration(self.epoch.elapsed()).as_micros())
    }

    /// The tokio instant of `at` (to sleep until a core's deadline).
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        self.epoch + Duration::from_micros(at.as_micros())
    }
}
