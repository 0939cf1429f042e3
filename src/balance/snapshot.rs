//! The immutable forwarding snapshot the data plane reads (through
//! `ArcSwap`, no lock). Only the round-robin cursor is mutable (an atomic).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::sched::{self, hash64};
use super::{BackendId, BackendStats, Group, LbAlgo};

/// One eligible backend (Up, Ready, weight > 0, in the active group).
#[derive(Debug, Clone)]
pub struct SnapshotEntry {
    pub id: BackendId,
    pub address: SocketAddr,
    pub weight: u32,
    /// Shared with the table and every other snapshot.
    pub stats: Arc<BackendStats>,
    key: Vec<u8>,
}

impl SnapshotEntry {
    pub fn new(id: BackendId, address: SocketAddr, weight: u32, stats: Arc<BackendStats>) -> Self {
        SnapshotEntry {
            id,
            address,
            weight,
            stats,
            key: sched::addr_key(address),
        }
    }
}

/// A published forwarding state of one virtual server.
#[derive(Debug)]
pub struct Snapshot {
    name: String,
    algo: LbAlgo,
    generation: u64,
    group: Option<Group>,
    entries: Vec<SnapshotEntry>,
    cursor: AtomicUsize,
    wrr: Vec<u32>,
    maglev: Vec<u32>,
}

impl Snapshot {
    /// Build a snapshot over `entries` (already filtered to the eligible set).
    /// `cursor` is the starting round-robin position (carried over from the
    /// previous snapshot so a rebuild does not restart at the first backend).
    /// `configured` is the number of configured backends: it fixes the Maglev
    /// table size, so health and admin changes do not change the size (which
    /// would reshuffle every client).
    pub fn new(
        name: &str,
        algo: LbAlgo,
        generation: u64,
        group: Option<Group>,
        entries: Vec<SnapshotEntry>,
        cursor: usize,
        configured: usize,
    ) -> Self {
        let weights: Vec<u32> = entries.iter().map(|e| e.weight).collect();
        let wrr = if algo == LbAlgo::Wrr {
            sched::smooth_wrr_cycle(&weights)
        } else {
            Vec::new()
        };
        let maglev = if algo == LbAlgo::Maglev {
            let keys: Vec<(Vec<u8>, u32)> = entries.iter().map(|e| (e.key.clone(), e.weight)).collect();
            sched::maglev_table(&keys, sched::maglev_size(configured.max(entries.len())))
        } else {
            Vec::new()
        };
        Snapshot {
            name: name.to_string(),
            algo,
            generation,
            group,
            entries,
            cursor: AtomicUsize::new(cursor),
            wrr,
            maglev,
        }
    }

    /// Choose a backend for a new connection from `client`, skipping the ids
    /// in `exclude` (backends already tried by this connection). `None` when
    /// nothing is eligible.
    pub fn pick(&self, client: SocketAddr, exclude: &[BackendId]) -> Option<(BackendId, SocketAddr)> {
        self.pick_entry(client, exclude).map(|e| (e.id, e.address))
    }

    /// Like [`Snapshot::pick`] but returns the entry (with its stats).
    pub fn pick_entry(&self, client: SocketAddr, exclude: &[BackendId]) -> Option<&SnapshotEntry> {
        let n = self.entries.len();
        let allowed = |e: &SnapshotEntry| !exclude.contains(&e.id);
        if n == 0 || !self.entries.iter().any(allowed) {
            return None;
        }
        match self.algo {
            LbAlgo::Rr => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| &self.entries[start.wrapping_add(k) % n])
                    .find(|e| allowed(e))
            }
            LbAlgo::Wrr => {
                let len = self.wrr.len();
                if len == 0 {
                    return None;
                }
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                (0..len)
                    .map(|k| &self.entries[self.wrr[start.wrapping_add(k) % len] as usize])
                    .find(|e| allowed(e))
            }
            LbAlgo::Lc => {
                // Ties are broken by a rotating start so equal loads spread.
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                let mut best: Option<(&SnapshotEntry, u64)> = None;
                for k in 0..n {
                    let e = &self.entries[start.wrapping_add(k) % n];
                    if !allowed(e) {
                        continue;
                    }
                    let active = e.stats.active();
                    let better = match best {
                        None => true,
                        // active/weight < best_active/best_weight, in integers
                        Some((b, b_active)) => {
                            u128::from(active) * u128::from(b.weight) < u128::from(b_active) * u128::from(e.weight)
                        }
                    };
                    if better {
                        best = Some((e, active));
                    }
                }
                best.map(|(e, _)| e)
            }
            LbAlgo::Sh => {
                let ck = sched::IpKey::new(client.ip());
                let mut best: Option<(&SnapshotEntry, f64)> = None;
                for e in self.entries.iter().filter(|e| allowed(e)) {
                    let s = sched::rendezvous_score(ck.as_bytes(), &e.key, e.weight);
                    if best.is_none_or(|(_, bs)| s > bs) {
                        best = Some((e, s));
                    }
                }
                best.map(|(e, _)| e)
            }
            LbAlgo::Maglev => {
                let m = self.maglev.len();
                if m == 0 {
                    return None;
                }
                let slot = (hash64(0x6d67, sched::IpKey::new(client.ip()).as_bytes()) % m as u64) as usize;
                (0..m)
                    .map(|k| &self.entries[self.maglev[(slot + k) % m] as usize])
                    .find(|e| allowed(e))
            }
        }
    }

    /// The eligible backends, in configuration order.
    pub fn entries(&self) -> &[SnapshotEntry] {
        &self.entries
    }
    pub fn get(&self, id: BackendId) -> Option<&SnapshotEntry> {
        self.entries.iter().find(|e| e.id == id)
    }
    pub fn stats(&self, id: BackendId) -> Option<Arc<BackendStats>> {
        self.get(id).map(|e| Arc::clone(&e.stats))
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn algo(&self) -> LbAlgo {
        self.algo
    }
    /// Increases by one on every publish.
    pub fn generation(&self) -> u64 {
        self.generation
    }
    /// The failover group in use, `None` when nothing is eligible.
    pub fn active_group(&self) -> Option<Group> {
        self.group
    }
    /// The Maglev lookup table (indexes into `entries()`); empty for other algorithms.
    pub fn maglev_slots(&self) -> &[u32] {
        &self.maglev
    }
    pub(crate) fn cursor(&self) -> usize {
        self.cursor.load(Ordering::Relaxed)
    }
}
