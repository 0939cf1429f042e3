//! Live per-backend counters, shared (via `Arc`) by every snapshot and by the
//! data plane. Lock-free: relaxed atomics (they are statistics, not locks).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of one backend. `bytes_in` = bytes from the client forwarded to
/// the backend; `bytes_out` = bytes from the backend forwarded to the client.
#[derive(Debug, Default)]
pub struct BackendStats {
    active: AtomicU64,
    total: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    failed_connects: AtomicU64,
}

impl BackendStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Count a new connection (active+1, total+1); the returned guard counts
    /// it closed (active-1) when dropped.
    pub fn open(self: &Arc<Self>) -> ConnGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        ConnGuard {
            stats: Arc::clone(self),
        }
    }
    pub fn add_bytes_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_bytes_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }
    /// Counted by [`crate::balance::Table::passive_failure`]; the data plane
    /// need not call it itself.
    pub fn add_failed_connect(&self) {
        self.failed_connects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }
    pub fn failed_connects(&self) -> u64 {
        self.failed_connects.load(Ordering::Relaxed)
    }
}

/// One open connection to a backend; drop it when the connection closes.
#[derive(Debug)]
pub struct ConnGuard {
    stats: Arc<BackendStats>,
}

impl ConnGuard {
    pub fn stats(&self) -> &Arc<BackendStats> {
        &self.stats
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.stats.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_counts_active_and_total() {
        let s = Arc::new(BackendStats::new());
        let a = s.open();
        let b = s.open();
        assert_eq!((s.active(), s.total()), (2, 2));
        drop(a);
        assert_eq!((s.active(), s.total()), (1, 2));
        drop(b);
        assert_eq!((s.active(), s.total()), (0, 2));
        s.add_bytes_in(10);
        s.add_bytes_out(20);
        assert_eq!((s.bytes_in(), s.bytes_out()), (10, 20));
    }
}
