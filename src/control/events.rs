//! The event bus behind `vipctl watch`: one broadcast channel per process that
//! the daemon (state and priority changes) and the health checkers (backend
//! health, from any thread) publish to, and every watcher reads from.
//!
//! Publishing never waits: a watcher that reads too slowly loses the oldest
//! events and is told how many (`lagged`), the daemon is never held up.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

use super::proto::{WatchEvent, WatchLine};
use crate::balance::HealthEvent;

/// Events a watcher may fall behind by before it loses some.
pub const CAPACITY: usize = 1024;

/// Watchers at once: half the control socket's client slots, so that one-shot
/// commands (`status`, `reload`) always find a slot.
pub const MAX_WATCHERS: usize = super::MAX_CLIENTS / 2;

/// What travels on the bus.
#[derive(Clone, Debug)]
pub enum Item {
    /// An event for every watcher.
    Line(Arc<WatchLine>),
    /// The daemon took the snapshot of the watcher holding this marker here:
    /// what came before is in the snapshot, what follows is news.
    Marker(u64),
}

pub struct Bus {
    tx: broadcast::Sender<Item>,
    next_marker: AtomicU64,
    watchers: AtomicUsize,
}

/// A watcher's place: dropping it frees the place.
pub struct WatcherSlot(&'static Bus);

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process's bus.
pub fn bus() -> &'static Bus {
    static BUS: OnceLock<Bus> = OnceLock::new();
    BUS.get_or_init(|| Bus {
        tx: broadcast::channel(CAPACITY).0,
        next_marker: AtomicU64::new(1),
        watchers: AtomicUsize::new(0),
    })
}

impl Bus {
    /// Is anyone watching? (Skip building events when not.)
    pub fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Send `event` to every watcher, stamped now. Never blocks.
    pub fn publish(&self, event: WatchEvent) {
        if self.watched() {
            let _ = self.tx.send(Item::Line(Arc::new(WatchLine::now(event))));
        }
    }

    /// A backend's health changed (called where every such change is logged).
    pub fn backend_health(&self, virtual_server: &str, ev: &HealthEvent) {
        if self.watched() {
            self.publish(WatchEvent::Backend {
                virtual_server: virtual_server.to_string(),
                address: ev.address,
                from: ev.from,
                to: ev.to,
                reason: ev.reason.clone(),
            });
        }
    }

    /// Mark the stream for the watcher holding `marker` (the daemon calls
    /// this when it takes that watcher's snapshot).
    pub fn mark(&self, marker: u64) {
        let _ = self.tx.send(Item::Marker(marker));
    }

    /// A place for one more watcher, or `None` at [`MAX_WATCHERS`].
    pub fn enter(&'static self) -> Option<WatcherSlot> {
        let n = self.watchers.fetch_add(1, Ordering::Relaxed);
        let slot = WatcherSlot(self);
        (n < MAX_WATCHERS).then_some(slot)
    }

    /// Watchers still connected.
    pub fn watchers(&self) -> usize {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Subscribe: a fresh marker for the snapshot, and the receiver.
    pub fn subscribe(&self) -> (u64, broadcast::Receiver<Item>) {
        let rx = self.tx.subscribe();
        (self.next_marker.fetch_add(1, Ordering::Relaxed), rx)
    }

    /// After `Stopping` was published: give the watchers up to `limit` to
    /// write it and close, so that `vipctl watch` ends with its final line.
    pub async fn wait_for_watchers(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.watchers() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
