//! PURE: the UDP flow table: client address → flow, with a hard cap and two
//! LRU segments (conntrack's "assured" idea): a flow that has seen one
//! datagram is *new*, a second datagram makes it *assured*. At the cap the
//! least recently used *new* flow is evicted first, so a flood of one-shot
//! (forged) sources churns among itself and never pushes out an established
//! sender; only when every flow is assured does the LRU assured flow go.
//! Times are milliseconds passed in by the caller; no clock, no I/O.

use std::collections::HashMap;
use std::net::SocketAddr;

const NIL: usize = usize::MAX;
const NEW: usize = 0;
const ASSURED: usize = 1;

struct Node<V> {
    key: SocketAddr,
    val: Option<V>,
    prev: usize,
    next: usize,
    seg: usize,
    last_ms: u64,
}

/// Head is the most recently used, tail the least.
#[derive(Clone, Copy)]
struct List {
    head: usize,
    tail: usize,
}

pub struct FlowTable<V> {
    map: HashMap<SocketAddr, usize>,
    nodes: Vec<Node<V>>,
    free: Vec<usize>,
    lists: [List; 2],
    cap: usize,
}

impl<V> FlowTable<V> {
    /// A table holding at most `cap` flows (at least 1).
    pub fn new(cap: usize) -> Self {
        FlowTable {
            map: HashMap::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            lists: [List { head: NIL, tail: NIL }; 2],
            cap: cap.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next, seg) = (self.nodes[i].prev, self.nodes[i].next, self.nodes[i].seg);
        if prev == NIL {
            self.lists[seg].head = next;
        } else {
            self.nodes[prev].next = next;
        }
        if next == NIL {
            self.lists[seg].tail = prev;
        } else {
            self.nodes[next].prev = prev;
        }
        self.nodes[i].prev = NIL;
        self.nodes[i].next = NIL;
    }

    fn push_front(&mut self, i: usize, seg: usize) {
        let head = self.lists[seg].head;
        self.nodes[i].seg = seg;
        self.nodes[i].prev = NIL;
        self.nodes[i].next = head;
        if head == NIL {
            self.lists[seg].tail = i;
        } else {
            self.nodes[head].prev = i;
        }
        self.lists[seg].head = i;
    }

    /// The flow of `key`, marked used at `now_ms` (a second datagram makes a
    /// new flow assured).
    pub fn touch(&mut self, key: &SocketAddr, now_ms: u64) -> Option<&mut V> {
        let i = *self.map.get(key)?;
        self.unlink(i);
        self.push_front(i, ASSURED);
        self.nodes[i].last_ms = now_ms;
        self.nodes[i].val.as_mut()
    }

    /// The flow of `key` without marking it used.
    pub fn get(&self, key: &SocketAddr) -> Option<&V> {
        self.map.get(key).and_then(|&i| self.nodes[i].val.as_ref())
    }

    /// The flow of `key`, mutable, without marking it used.
    pub fn get_mut(&mut self, key: &SocketAddr) -> Option<&mut V> {
        let i = *self.map.get(key)?;
        self.nodes[i].val.as_mut()
    }

    /// Insert a new flow (replacing any flow of `key`). At the cap, first
    /// evicts the LRU new flow, else the LRU assured one, and returns it.
    pub fn insert(&mut self, key: SocketAddr, val: V, now_ms: u64) -> Option<(SocketAddr, V)> {
        let mut evicted = None;
        if let Some(old) = self.remove(&key) {
            evicted = Some((key, old));
        } else if self.map.len() >= self.cap {
            let seg = if self.lists[NEW].tail != NIL { NEW } else { ASSURED };
            let t = self.lists[seg].tail;
            if t != NIL {
                let k = self.nodes[t].key;
                evicted = self.remove(&k).map(|v| (k, v));
            }
        }
        let node = Node {
            key,
            val: Some(val),
            prev: NIL,
            next: NIL,
            seg: NEW,
            last_ms: now_ms,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.push_front(i, NEW);
        self.map.insert(key, i);
        evicted
    }

    pub fn remove(&mut self, key: &SocketAddr) -> Option<V> {
        let i = self.map.remove(key)?;
        self.unlink(i);
        self.free.push(i);
        self.nodes[i].val.take()
    }

    /// Remove flows idle for at least `idle_ms`, looking at most at `budget`
    /// flows from the LRU ends. `active_ms(v)` reports activity the table did
    /// not see (answers from the backend); a flow active that way is kept and
    /// moved to the front. Returns the removed flows.
    pub fn expire(
        &mut self,
        now_ms: u64,
        idle_ms: u64,
        budget: usize,
        active_ms: impl Fn(&V) -> u64,
    ) -> Vec<(SocketAddr, V)> {
        let mut out = Vec::new();
        let mut looked = 0;
        for seg in [NEW, ASSURED] {
            // Each node is looked at once per call: a refreshed node goes to
            // the front, behind the ones still to look at.
            let mut left = self.len();
            while looked < budget && left > 0 {
                left -= 1;
                let t = self.lists[seg].tail;
                if t == NIL {
                    break;
                }
                looked += 1;
                let seen = self.nodes[t].val.as_ref().map(&active_ms).unwrap_or(0);
                let last = self.nodes[t].last_ms.max(seen);
                if now_ms.saturating_sub(last) < idle_ms {
                    if last > self.nodes[t].last_ms {
                        // Answers kept it alive: refresh its place.
                        self.nodes[t].last_ms = last;
                        self.unlink(t);
                        self.push_front(t, seg);
                        continue;
                    }
                    // The tail is the oldest: nothing further is idle.
                    break;
                }
                let k = self.nodes[t].key;
                if let Some(v) = self.remove(&k) {
                    out.push((k, v));
                }
            }
        }
        out
    }

    /// Remove every flow.
    pub fn drain_all(&mut self) -> Vec<(SocketAddr, V)> {
        let keys: Vec<SocketAddr> = self.map.keys().copied().collect();
        let out = keys
            .into_iter()
            .filter_map(|k| self.remove(&k).map(|v| (k, v)))
            .collect();
        self.nodes.clear();
        self.free.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u16) -> SocketAddr {
        SocketAddr::from(([203, 0, 113, 1], n))
    }

    #[test]
    fn cap_is_enforced_and_new_flows_go_first() {
        let mut t = FlowTable::new(3);
        t.insert(a(1), 1, 0);
        assert!(t.touch(&a(1), 1).is_some()); // assured
        t.insert(a(2), 2, 2);
        t.insert(a(3), 3, 3);
        // Full: the LRU *new* flow (a2) goes, not the older assured a1.
        assert_eq!(t.insert(a(4), 4, 4), Some((a(2), 2)));
        assert_eq!(t.insert(a(5), 5, 5), Some((a(3), 3)));
        assert_eq!(t.len(), 3);
        for k in 6..1000 {
            t.insert(a(k), k, u64::from(k));
            assert_eq!(t.len(), 3);
        }
        assert_eq!(t.get(&a(1)), Some(&1), "the assured flow survives a flood");
        // Only assured flows: the LRU assured one goes.
        let mut t = FlowTable::new(2);
        t.insert(a(1), 1, 0);
        t.touch(&a(1), 1);
        t.insert(a(2), 2, 2);
        t.touch(&a(2), 3);
        t.touch(&a(1), 4);
        assert_eq!(t.insert(a(3), 3, 5), Some((a(2), 2)));
    }

    #[test]
    fn replace_remove_and_reuse_slots() {
        let mut t = FlowTable::new(10);
        t.insert(a(1), 1, 0);
        assert_eq!(t.insert(a(1), 2, 1), Some((a(1), 1)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove(&a(1)), Some(2));
        assert_eq!(t.remove(&a(1)), None);
        assert!(t.is_empty());
        for k in 0..100 {
            t.insert(a(k), k, 0);
            t.remove(&a(k));
        }
        assert!(t.nodes.len() <= 1, "slots are reused");
    }

    #[test]
    fn expire_removes_idle_keeps_answered() {
        let mut t = FlowTable::new(10);
        t.insert(a(1), 0u64, 0); // answered at 900 (value = last answer)
        t.insert(a(2), 0u64, 100);
        t.insert(a(3), 0u64, 950);
        if let Some(v) = t.touch(&a(3), 960) {
            *v = 0;
        }
        let mut t2 = t;
        if let Some(i) = t2.map.get(&a(1)).copied() {
            t2.nodes[i].val = Some(900);
        }
        let gone = t2.expire(1000, 500, 100, |v| *v);
        assert_eq!(gone, vec![(a(2), 0)]);
        assert!(t2.get(&a(1)).is_some() && t2.get(&a(3)).is_some());
        let gone = t2.expire(2000, 500, 100, |v| *v);
        assert_eq!(gone.len(), 2);
        assert!(t2.is_empty());
    }

    #[test]
    fn expire_respects_its_budget() {
        let mut t = FlowTable::new(100);
        for k in 0..50 {
            t.insert(a(k), (), 0);
        }
        assert_eq!(t.expire(10, 5, 20, |_| 0).len(), 20);
        assert_eq!(t.len(), 30);
        assert_eq!(t.drain_all().len(), 30);
        assert!(t.is_empty());
    }
}
