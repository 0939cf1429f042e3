//! Forwarding table and schedulers, through the public API only.

use std::collections::HashMap;
use std::net::SocketAddr;

use vipd::balance::{
    Admin, BackendId, BackendSpec, Group, Health, HealthPolicy, LbAlgo, PassivePolicy, Table, TableError, TableHandle,
    TableSpec,
};
use vipd::time::Instant;

fn addr(i: u8) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, i], 6000))
}

fn client(i: u32) -> SocketAddr {
    let [_, a, b, c] = i.to_be_bytes();
    SocketAddr::from(([203, a, b, c], 40000))
}

fn spec(algo: LbAlgo, health: Option<HealthPolicy>, backends: Vec<BackendSpec>) -> TableSpec {
    TableSpec {
        name: "ingest".into(),
        algo,
        health,
        backends,
    }
}

fn weighted(ws: &[u32]) -> Vec<BackendSpec> {
    ws.iter()
        .enumerate()
        .map(|(i, w)| BackendSpec::new(addr(i as u8 + 1), *w))
        .collect()
}

const T0: Instant = Instant(0);
const P11: HealthPolicy = HealthPolicy { rise: 1, fall: 1 };

fn picks(t: &Table, n: usize) -> Vec<SocketAddr> {
    let snap = t.snapshot();
    (0..n).map(|_| snap.pick(client(1), &[]).unwrap().1).collect()
}

#[test]
fn rr_exact_order_and_exclude() {
    let t = Table::new(spec(LbAlgo::Rr, None, weighted(&[1, 5, 1])), T0).unwrap();
    assert_eq!(picks(&t, 6), vec![addr(1), addr(2), addr(3), addr(1), addr(2), addr(3)]);
    let snap = t.snapshot();
    let b1 = t.id_of(addr(1)).unwrap();
    let b2 = t.id_of(addr(2)).unwrap();
    let b3 = t.id_of(addr(3)).unwrap();
    for _ in 0..5 {
        assert_eq!(snap.pick(client(1), &[b1, b3]), Some((b2, addr(2))));
    }
    assert_eq!(snap.pick(client(1), &[b1, b2, b3]), None);
}

#[test]
fn wrr_proportions_exact_over_a_cycle() {
    let t = Table::new(spec(LbAlgo::Wrr, None, weighted(&[3, 2, 1])), T0).unwrap();
    let cycle = picks(&t, 6);
    // smooth: a b a c b a (nginx order for 3,2,1)
    assert_eq!(cycle, vec![addr(1), addr(2), addr(1), addr(3), addr(2), addr(1)]);
    let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
    for a in picks(&t, 600) {
        *counts.entry(a).or_default() += 1;
    }
    assert_eq!((counts[&addr(1)], counts[&addr(2)], counts[&addr(3)]), (300, 200, 100));
}

#[test]
fn wrr_zero_weight_is_never_picked() {
    let t = Table::new(spec(LbAlgo::Wrr, None, weighted(&[2, 0, 1])), T0).unwrap();
    assert!(!picks(&t, 30).contains(&addr(2)));
    assert!(!t.status()[1].serving);
}

#[test]
fn lc_picks_min_active_per_weight() {
    let t = Table::new(spec(LbAlgo::Lc, None, weighted(&[1, 1, 1])), T0).unwrap();
    let stats: Vec<_> = (1..=3).map(|i| t.stats(t.id_of(addr(i)).unwrap()).unwrap()).collect();
    let _g: Vec<_> = [3usize, 1, 2]
        .iter()
        .zip(&stats)
        .flat_map(|(n, s)| (0..*n).map(|_| s.open()))
        .collect();
    let snap = t.snapshot();
    for _ in 0..5 {
        assert_eq!(snap.pick(client(1), &[]).unwrap().1, addr(2));
    }
    // excluded min -> next min
    let b2 = t.id_of(addr(2)).unwrap();
    assert_eq!(snap.pick(client(1), &[b2]).unwrap().1, addr(3));

    // weighted: 3 conns on weight 3 (1.0) beats 2 conns on weight 1 (2.0)
    let t = Table::new(spec(LbAlgo::Lc, None, weighted(&[3, 1])), T0).unwrap();
    let s1 = t.stats(t.id_of(addr(1)).unwrap()).unwrap();
    let s2 = t.stats(t.id_of(addr(2)).unwrap()).unwrap();
    let _g1: Vec<_> = (0..3).map(|_| s1.open()).collect();
    let _g2: Vec<_> = (0..2).map(|_| s2.open()).collect();
    assert_eq!(t.snapshot().pick(client(1), &[]).unwrap().1, addr(1));
}

#[test]
fn lc_spreads_a_burst_evenly_when_the_caller_counts_connections() {
    let t = Table::new(spec(LbAlgo::Lc, None, weighted(&[1, 1, 1, 1])), T0).unwrap();
    let snap = t.snapshot();
    let mut guards = Vec::new();
    for _ in 0..40 {
        let e = snap.pick_entry(client(1), &[]).unwrap();
        guards.push(e.stats.open());
    }
    for st in t.status() {
        assert_eq!(st.active_connections, 10, "{st:?}");
    }
}

#[test]
fn sh_is_stable_per_client_ip_and_moves_only_the_clients_of_a_removed_backend() {
    let mut t = Table::new(spec(LbAlgo::Sh, None, weighted(&[1, 1, 1, 1])), T0).unwrap();
    let snap = t.snapshot();
    let mut before = HashMap::new();
    let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
    for c in 0..4000 {
        let a = snap.pick(client(c), &[]).unwrap().1;
        // another source port of the same IP, and a later call: same backend
        let mut other = client(c);
        other.set_port(55555);
        assert_eq!(snap.pick(other, &[]).unwrap().1, a);
        before.insert(c, a);
        *counts.entry(a).or_default() += 1;
    }
    for (a, n) in &counts {
        assert!((800..=1200).contains(n), "{a}: {n} of 4000");
    }
    // a new snapshot of the same set gives the same answers
    t.set_weight(addr(4), 1).unwrap();
    let snap_same = t.snapshot();
    assert!((0..4000).all(|c| snap_same.pick(client(c), &[]).unwrap().1 == before[&c]));
    // backend 4 leaves: only its clients move
    t.set_admin(addr(4), Admin::Maint).unwrap();
    let snap2 = t.snapshot();
    for c in 0..4000 {
        let a = snap2.pick(client(c), &[]).unwrap().1;
        if before[&c] != addr(4) {
            assert_eq!(a, before[&c], "client {c} moved");
        }
    }
}

fn maglev_owner(snap: &vipd::balance::Snapshot) -> Vec<BackendId> {
    snap.maglev_slots()
        .iter()
        .map(|i| snap.entries()[*i as usize].id)
        .collect()
}

#[test]
fn maglev_table_size_is_prime_at_least_100_per_backend() {
    for (n, m) in [(1usize, 101usize), (3, 307), (10, 1009), (20, 2003)] {
        let t = Table::new(spec(LbAlgo::Maglev, None, weighted(&vec![1; n])), T0).unwrap();
        assert_eq!(t.snapshot().maglev_slots().len(), m, "{n} backends");
    }
}

#[test]
fn maglev_minimal_disruption_when_backend_leaves() {
    let n = 10u8;
    let mut t = Table::new(spec(LbAlgo::Maglev, None, weighted(&vec![1; n as usize])), T0).unwrap();
    let before = t.snapshot();
    let gone = t.id_of(addr(n)).unwrap();
    t.set_admin(addr(n), Admin::Drain).unwrap();
    let after = t.snapshot();
    // The size follows the configured count, so it does not change when one leaves.
    assert_eq!(before.maglev_slots().len(), 1009);
    assert_eq!(after.maglev_slots().len(), 1009);

    // Slot level.
    let (ob, oa) = (maglev_owner(&before), maglev_owner(&after));
    let m = ob.len();
    let on_gone = ob.iter().filter(|o| **o == gone).count();
    let changed = ob.iter().zip(&oa).filter(|(b, a)| b != a).count();
    let survivors_changed = ob.iter().zip(&oa).filter(|(b, a)| **b != gone && b != a).count();
    assert!(!oa.contains(&gone));
    eprintln!(
        "maglev {m} slots, 10 -> 9 backends: {changed} slots changed ({:.1}%), {on_gone} were the removed \
         backend's, {survivors_changed} survivor slots changed ({:.2}%)",
        100.0 * changed as f64 / m as f64,
        100.0 * survivors_changed as f64 / (m - on_gone) as f64
    );
    assert_eq!(changed, on_gone + survivors_changed);
    assert!((100..=101).contains(&on_gone), "{on_gone}"); // 1009/10, balanced to within 1
    assert!((changed as f64) < 0.13 * m as f64, "{changed} of {m} changed");
    assert!(
        (survivors_changed as f64) < 0.03 * m as f64,
        "{survivors_changed} survivor slots changed"
    );

    // Client level (what users see).
    let clients = 20_000u32;
    let (mut moved, mut moved_from_survivor, mut were_on_gone) = (0u32, 0u32, 0u32);
    for c in 0..clients {
        let b = before.pick(client(c), &[]).unwrap().0;
        let a = after.pick(client(c), &[]).unwrap().0;
        were_on_gone += u32::from(b == gone);
        moved += u32::from(a != b);
        moved_from_survivor += u32::from(a != b && b != gone);
    }
    eprintln!(
        "maglev clients: {moved} of {clients} moved, {were_on_gone} were on the removed backend, \
         {moved_from_survivor} clients of survivors moved"
    );
    assert!(f64::from(moved) < 0.13 * f64::from(clients));
    assert!(f64::from(moved_from_survivor) < 0.03 * f64::from(clients - were_on_gone));

    // And back: the old table is restored exactly.
    t.set_admin(addr(n), Admin::Ready).unwrap();
    assert_eq!(maglev_owner(&t.snapshot()), ob);
}

#[test]
fn maglev_is_stable_per_client_and_exclude_falls_through() {
    let t = Table::new(spec(LbAlgo::Maglev, None, weighted(&[1, 1, 1])), T0).unwrap();
    let snap = t.snapshot();
    for c in 0..200 {
        let (id, _) = snap.pick(client(c), &[]).unwrap();
        assert_eq!(snap.pick(client(c), &[]).unwrap().0, id);
        let (other, _) = snap.pick(client(c), &[id]).unwrap();
        assert_ne!(other, id);
    }
}

fn up_all(t: &mut Table) {
    for (id, _) in t.backends() {
        t.apply_check(id, true, "connected", Instant(1));
    }
}

#[test]
fn new_backend_serves_nothing_until_rise_checks_pass() {
    let p = HealthPolicy { rise: 2, fall: 2 };
    let mut t = Table::new(spec(LbAlgo::Rr, Some(p), weighted(&[1])), T0).unwrap();
    let id = t.id_of(addr(1)).unwrap();
    assert_eq!(t.health(id), Some(Health::Unknown));
    assert!(t.snapshot().pick(client(1), &[]).is_none());
    assert!(t.apply_check(id, true, "connected", Instant(10)).is_none());
    assert!(t.snapshot().pick(client(1), &[]).is_none());
    let ev = t.apply_check(id, true, "connected", Instant(20)).unwrap();
    assert_eq!(
        (ev.from, ev.to, ev.at, ev.address),
        (Health::Unknown, Health::Up, Instant(20), addr(1))
    );
    assert_eq!(ev.reason, "check passed 2/2: connected");
    assert_eq!(t.snapshot().pick(client(1), &[]), Some((id, addr(1))));
    // fall
    assert!(t.apply_check(id, false, "connection refused", Instant(30)).is_none());
    assert!(t.snapshot().pick(client(1), &[]).is_some());
    let ev = t.apply_check(id, false, "connection refused", Instant(40)).unwrap();
    assert_eq!(ev.reason, "check failed 2/2: connection refused");
    assert!(t.snapshot().pick(client(1), &[]).is_none());
    let st = &t.status()[0];
    assert_eq!(st.last_check.as_deref(), Some("connection refused"));
    assert_eq!(st.last_change.as_deref(), Some("check failed 2/2: connection refused"));
    assert_eq!(st.last_change_at, Some(Instant(40)));
}

#[test]
fn no_check_means_up_at_once_and_passive_failures_only_count() {
    let mut t = Table::new(spec(LbAlgo::Rr, None, weighted(&[1])), T0).unwrap();
    let id = t.id_of(addr(1)).unwrap();
    assert_eq!(t.health(id), Some(Health::Up));
    assert!(t.passive_failure(id, "connection refused", Instant(5)).is_none());
    assert!(t.snapshot().pick(client(1), &[]).is_some());
    assert_eq!(t.status()[0].failed_connects, 1);
    assert_eq!(t.status()[0].last_change.as_deref(), Some("no health check configured"));
}

#[test]
fn passive_failures_eject_after_the_limit_within_the_window_and_count() {
    let mut t = Table::new(
        spec(LbAlgo::Rr, Some(HealthPolicy { rise: 2, fall: 3 }), weighted(&[1, 1])),
        T0,
    )
    .unwrap();
    up_all(&mut t);
    up_all(&mut t);
    let a = t.id_of(addr(1)).unwrap();
    let ms = |x: u64| Instant(x * 1_000);
    // Default limit = fall (3) within 10 s: two failures leave it in.
    assert!(t.passive_failure(a, "connection refused", ms(1_000)).is_none());
    assert!(t.passive_failure(a, "connection refused", ms(2_000)).is_none());
    assert_eq!(t.health(a), Some(Health::Up));
    // The first one ages out of the window: still two.
    assert!(t.passive_failure(a, "connection refused", ms(11_500)).is_none());
    assert_eq!(t.health(a), Some(Health::Up));
    let ev = t.passive_failure(a, "connection refused", ms(11_900)).unwrap();
    assert_eq!(
        (ev.to, ev.reason.as_str()),
        (Health::Down, "passive failure (3 recent): connection refused")
    );
    assert!(picks(&t, 4).iter().all(|x| *x == addr(2)));
    assert_eq!(t.status()[0].failed_connects, 4);
}

#[test]
fn passive_ejection_stops_at_max_ejection_percent_and_keeps_serving_from_all() {
    let mut t = Table::new(spec(LbAlgo::Rr, Some(P11), weighted(&[1, 1, 1])), T0).unwrap();
    up_all(&mut t);
    t.set_passive_policy(PassivePolicy {
        error_limit: Some(1),
        ..PassivePolicy::default()
    });
    let ids: Vec<BackendId> = (1..=3).map(|i| t.id_of(addr(i)).unwrap()).collect();
    // Every backend looks bad at once (a fault on our side of the network):
    // one of three may go (33 % <= 50 %), the others stay.
    assert!(t.passive_failure(ids[0], "connect timeout", Instant(10)).is_some());
    assert!(t.passive_failure(ids[1], "connect timeout", Instant(11)).is_none());
    assert!(t.passive_failure(ids[2], "connect timeout", Instant(12)).is_none());
    assert_eq!(t.ejections_suppressed(), 2);
    let mut served = picks(&t, 4);
    served.sort();
    served.dedup();
    assert_eq!(served, vec![addr(2), addr(3)]);
    // A backend the active checks took down counts toward the cap too.
    t.apply_check(ids[0], true, "ok", Instant(20));
    t.apply_check(ids[1], false, "refused", Instant(21));
    assert_eq!(t.health(ids[1]), Some(Health::Down));
    assert!(t.passive_failure(ids[2], "connect timeout", Instant(22)).is_none());
    assert_eq!(t.health(ids[2]), Some(Health::Up));
    // A single backend is never ejected passively (it would leave nothing).
    let mut one = Table::new(spec(LbAlgo::Rr, Some(P11), weighted(&[1])), T0).unwrap();
    up_all(&mut one);
    let id = one.id_of(addr(1)).unwrap();
    for k in 0..10 {
        assert!(one.passive_failure(id, "connection refused", Instant(k)).is_none());
    }
    assert_eq!(one.health(id), Some(Health::Up));
    assert_eq!(one.status()[0].failed_connects, 10);
}

#[test]
fn priority_groups_fail_over_and_fail_back() {
    let mut backends = weighted(&[1, 1, 1, 1, 1]);
    backends[2].backup = true;
    backends[2].priority = 1;
    backends[3].backup = true;
    backends[3].priority = 2;
    backends[4].backup = true;
    backends[4].priority = 2;
    let mut t = Table::new(spec(LbAlgo::Rr, Some(P11), backends), T0).unwrap();
    let id = |t: &Table, i| t.id_of(addr(i)).unwrap();
    up_all(&mut t);
    let sorted = |mut v: Vec<SocketAddr>| {
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(sorted(picks(&t, 10)), vec![addr(1), addr(2)]);
    assert_eq!(
        t.snapshot().active_group(),
        Some(Group {
            backup: false,
            priority: 0
        })
    );
    // one primary down: still primary only
    t.apply_check(id(&t, 1), false, "refused", Instant(2));
    assert_eq!(sorted(picks(&t, 10)), vec![addr(2)]);
    // both primaries down: backup priority 1
    t.apply_check(id(&t, 2), false, "refused", Instant(3));
    assert_eq!(sorted(picks(&t, 10)), vec![addr(3)]);
    // backup 1 drained: group 2 (two backends)
    t.set_admin(addr(3), Admin::Drain).unwrap();
    assert_eq!(sorted(picks(&t, 10)), vec![addr(4), addr(5)]);
    assert_eq!(
        t.snapshot().active_group(),
        Some(Group {
            backup: true,
            priority: 2
        })
    );
    // everything down: nothing
    t.apply_check(id(&t, 4), false, "refused", Instant(4));
    t.apply_check(id(&t, 5), false, "refused", Instant(4));
    assert!(t.snapshot().pick(client(1), &[]).is_none());
    assert_eq!(t.snapshot().active_group(), None);
    // fail back to the primary as soon as one is up again
    t.apply_check(id(&t, 4), true, "ok", Instant(5));
    assert_eq!(sorted(picks(&t, 10)), vec![addr(4)]);
    t.apply_check(id(&t, 1), true, "ok", Instant(6));
    assert_eq!(sorted(picks(&t, 10)), vec![addr(1)]);
    let serving: Vec<bool> = t.status().iter().map(|s| s.serving).collect();
    assert_eq!(serving, vec![true, false, false, false, false]);
}

#[test]
fn drain_excludes_from_picks_but_keeps_stats_and_connections() {
    let mut t = Table::new(spec(LbAlgo::Rr, None, weighted(&[1, 1])), T0).unwrap();
    let a = t.id_of(addr(1)).unwrap();
    let entry_stats = t.snapshot().stats(a).unwrap();
    let guard = entry_stats.open();
    entry_stats.add_bytes_in(100);
    t.set_admin(addr(1), Admin::Drain).unwrap();
    assert!(picks(&t, 6).iter().all(|x| *x == addr(2)));
    let st = &t.status()[0];
    assert_eq!((st.admin, st.serving, st.health), (Admin::Drain, false, Health::Up));
    assert_eq!((st.active_connections, st.total_connections, st.bytes_in), (1, 1, 100));
    drop(guard);
    assert_eq!(t.status()[0].active_connections, 0);
    t.set_admin(addr(1), Admin::Ready).unwrap();
    assert!(picks(&t, 6).contains(&addr(1)));
}

#[test]
fn maint_excludes_from_picks() {
    let mut t = Table::new(spec(LbAlgo::Lc, None, weighted(&[1, 1])), T0).unwrap();
    t.set_admin(addr(2), Admin::Maint).unwrap();
    assert!(picks(&t, 6).iter().all(|x| *x == addr(1)));
    assert_eq!(t.status()[1].admin, Admin::Maint);
    assert_eq!(
        t.set_admin(addr(9), Admin::Maint),
        Err(TableError::UnknownAddress(addr(9)))
    );
}

#[test]
fn reconcile_keeps_state_and_stats_of_unchanged_backends() {
    let mut t = Table::new(spec(LbAlgo::Rr, Some(P11), weighted(&[1, 1])), T0).unwrap();
    up_all(&mut t);
    let a = t.id_of(addr(1)).unwrap();
    let sa = t.stats(a).unwrap();
    let _g = sa.open();
    sa.add_bytes_out(4242);
    t.set_admin(addr(1), Admin::Drain).unwrap(); // runtime override
    let gen = t.snapshot().generation();

    let mut new = weighted(&[3, 1, 1]);
    new.remove(1); // backend 2 gone
    new[1].address = addr(7); // a new one
    let report = t.reconcile(spec(LbAlgo::Wrr, Some(P11), new), Instant(50)).unwrap();
    assert_eq!(report.added, vec![addr(7)]);
    assert_eq!(report.removed, vec![addr(2)]);
    assert_eq!(report.changed, vec![addr(1)]);
    assert!(t.snapshot().generation() > gen);

    assert_eq!(t.id_of(addr(1)), Some(a));
    assert_eq!(t.id_of(addr(2)), None);
    let st = t.status();
    assert_eq!(st.len(), 2);
    assert_eq!((st[0].health, st[0].weight, st[0].admin), (Health::Up, 3, Admin::Drain));
    assert_eq!(
        (st[0].active_connections, st[0].total_connections, st[0].bytes_out),
        (1, 1, 4242)
    );
    assert_eq!(st[1].health, Health::Unknown);
    assert!(t.snapshot().pick(client(1), &[]).is_none()); // a drained, 7 unknown
                                                          // config changes admin explicitly -> applied
    let mut new = weighted(&[3]);
    new[0].admin = Admin::Maint;
    t.reconcile(spec(LbAlgo::Wrr, Some(P11), new), Instant(60)).unwrap();
    assert_eq!(t.status()[0].admin, Admin::Maint);
    // stale check result for the removed backend is ignored
    let old_b = BackendId(1);
    assert!(t.apply_check(old_b, false, "x", Instant(70)).is_none());
    // duplicate address rejected, nothing changed
    let dup = vec![BackendSpec::new(addr(1), 1), BackendSpec::new(addr(1), 2)];
    assert_eq!(
        t.reconcile(spec(LbAlgo::Rr, None, dup), Instant(80)),
        Err(TableError::DuplicateAddress(addr(1)))
    );
    assert_eq!(t.algo(), LbAlgo::Wrr);
}

#[test]
fn reconcile_removing_the_check_brings_backends_up() {
    let mut t = Table::new(spec(LbAlgo::Rr, Some(P11), weighted(&[1])), T0).unwrap();
    let report = t.reconcile(spec(LbAlgo::Rr, None, weighted(&[1])), Instant(9)).unwrap();
    assert_eq!(report.events.len(), 1);
    assert_eq!(report.events[0].to, Health::Up);
    assert!(t.snapshot().pick(client(1), &[]).is_some());
}

#[test]
fn rr_position_survives_a_rebuild() {
    let mut t = Table::new(spec(LbAlgo::Rr, None, weighted(&[1, 1, 1])), T0).unwrap();
    assert_eq!(picks(&t, 1), vec![addr(1)]);
    t.set_weight(addr(3), 2).unwrap();
    assert_eq!(picks(&t, 2), vec![addr(2), addr(3)]);
}

#[test]
fn handle_shares_snapshots_without_lock_and_status_serializes() {
    let t = Table::new(spec(LbAlgo::Rr, Some(P11), weighted(&[1, 1])), T0).unwrap();
    let h = TableHandle::new(t);
    assert!(h.load().pick(client(1), &[]).is_none());
    let id = h.lock().id_of(addr(1)).unwrap();
    let ev = h.apply_check(id, true, "connected", Instant(3)).unwrap();
    assert_eq!(ev.to, Health::Up);
    // a clone sees the new snapshot
    let h2 = h.clone();
    assert_eq!(h2.load().pick(client(1), &[]), Some((id, addr(1))));
    let json = serde_json::to_string(&h.status()).unwrap();
    assert!(json.contains("\"address\":\"198.51.100.1:6000\""), "{json}");
    assert!(json.contains("\"health\":\"up\""), "{json}");
    assert!(json.contains("\"admin\":\"ready\""), "{json}");
    let back: Vec<vipd::balance::BackendStatus> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h.status());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Check(u8, bool),
        Passive(u8),
        Admin(u8, u8),
        Weight(u8, u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..6, any::<bool>()).prop_map(|(i, ok)| Op::Check(i, ok)),
            1 => (0u8..6).prop_map(Op::Passive),
            1 => (0u8..6, 0u8..3).prop_map(|(i, a)| Op::Admin(i, a)),
            1 => (0u8..6, 0u32..4).prop_map(|(i, w)| Op::Weight(i, w)),
        ]
    }

    fn algo() -> impl Strategy<Value = LbAlgo> {
        prop_oneof![
            Just(LbAlgo::Rr),
            Just(LbAlgo::Wrr),
            Just(LbAlgo::Lc),
            Just(LbAlgo::Sh),
            Just(LbAlgo::Maglev)
        ]
    }

    proptest! {
        #[test]
        fn picks_are_always_eligible_and_in_the_best_group(
            algo in algo(),
            groups in proptest::collection::vec((any::<bool>(), 0u32..3), 6),
            ops in proptest::collection::vec(op(), 0..60),
        ) {
            let backends: Vec<BackendSpec> = groups
                .iter()
                .enumerate()
                .map(|(i, (backup, prio))| BackendSpec {
                    address: addr(i as u8 + 1),
                    weight: 1,
                    backup: *backup,
                    priority: *prio,
                    admin: Admin::Ready,
                })
                .collect();
            let p = HealthPolicy { rise: 2, fall: 2 };
            let mut t = Table::new(spec(algo, Some(p), backends), T0).unwrap();
            for (k, o) in ops.iter().enumerate() {
                let now = Instant(k as u64);
                match *o {
                    Op::Check(i, ok) => { t.apply_check(BackendId(u32::from(i)), ok, "x", now); }
                    Op::Passive(i) => { t.passive_failure(BackendId(u32::from(i)), "x", now); }
                    Op::Admin(i, a) => {
                        let a = [Admin::Ready, Admin::Drain, Admin::Maint][a as usize];
                        t.set_admin(addr(i + 1), a).unwrap();
                    }
                    Op::Weight(i, w) => t.set_weight(addr(i + 1), w).unwrap(),
                }
                let st = t.status();
                let eligible = |s: &vipd::balance::BackendStatus| {
                    s.health == Health::Up && s.admin == Admin::Ready && s.weight > 0
                };
                let best = st.iter().filter(|s| eligible(s)).map(|s| (s.backup, s.priority)).min();
                let snap = t.snapshot();
                for c in 0..8 {
                    match snap.pick(client(c), &[]) {
                        None => prop_assert!(best.is_none()),
                        Some((id, a)) => {
                            let s = st.iter().find(|s| s.id == id).unwrap();
                            prop_assert_eq!(s.address, a);
                            prop_assert!(eligible(s), "{:?}", s);
                            prop_assert_eq!(Some((s.backup, s.priority)), best);
                            // excluding the pick never returns it again
                            prop_assert_ne!(snap.pick(client(c), &[id]).map(|p| p.0), Some(id));
                        }
                    }
                }
                prop_assert_eq!(st.iter().filter(|s| s.serving).count(), snap.len());
            }
        }

        #[test]
        fn wrr_cycle_counts_equal_reduced_weights(ws in proptest::collection::vec(0u32..20, 1..8)) {
            let t = Table::new(spec(LbAlgo::Wrr, None, weighted(&ws)), T0).unwrap();
            let g = ws.iter().fold(0u32, |g, w| { let (mut a, mut b) = (g, *w); while b != 0 { (a, b) = (b, a % b); } a });
            prop_assume!(g > 0);
            let cycle: u32 = ws.iter().map(|w| w / g).sum();
            let snap = t.snapshot();
            let mut counts: HashMap<SocketAddr, u32> = HashMap::new();
            for _ in 0..cycle * 3 {
                *counts.entry(snap.pick(client(1), &[]).unwrap().1).or_default() += 1;
            }
            for (i, w) in ws.iter().enumerate() {
                prop_assert_eq!(counts.get(&addr(i as u8 + 1)).copied().unwrap_or(0), 3 * w / g);
            }
        }
    }
}
