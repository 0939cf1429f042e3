//! PURE: decisions the daemon takes from interface facts: the address an
//! instance sends adverts from (TX3) and its effective priority from what it
//! tracks (interfaces, scripts, files, processes, virtual servers). No I/O: the facts come from `net::netlink` via `links`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::config::Instance;
use crate::net::netlink::IfFacts;
use crate::track::state::{Signal, Tracked};
use crate::track::TrackerStatus;
use crate::vrrp::wire::Family;

/// The address family of an instance (one family per instance).
pub fn family_of(inst: &Instance) -> Family {
    inst.router.vips.first().map(|a| Family::of(*a)).unwrap_or(Family::V4)
}

/// The address we send adverts from and break ties with (TX3): the configured
/// unicast source, else any IPv4 address of the interface that is not a VIP
/// (primaries first, then secondaries: after a renumbering the real address
/// may come back as a secondary), or the first IPv6 link-local that is not a
/// VIP. `vips` holds every VIP configured on the interface (all instances):
/// a VIP is never the source. `None` = no usable source (the instance faults).
pub fn source_for(inst: &Instance, facts: Option<&IfFacts>, vips: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    if let Some(src) = inst.unicast_src_ip {
        return Some(src);
    }
    let facts = facts?;
    let usable = |a: &IpAddr| !vips.contains(a) && !inst.router.vips.contains(a);
    match family_of(inst) {
        Family::V4 => {
            let primaries = facts.v4.iter().filter(|a| !a.secondary);
            let secondaries = facts.v4.iter().filter(|a| a.secondary);
            primaries
                .chain(secondaries)
                .map(|a| IpAddr::V4(a.addr))
                .find(|a| usable(a))
        }
        Family::V6 => facts.link_local_v6.iter().map(|a| IpAddr::V6(*a)).find(|a| usable(a)),
    }
}

/// What tracking makes of an instance: its effective priority, the first
/// tracker that faults it (FAULT while set), and each tracker's share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackOutcome {
    pub priority: u8,
    pub fault: Option<String>,
    pub trackers: Vec<TrackerStatus>,
}

/// Smallest (most negative) share a tracked file may give before it faults
/// the instance (keepalived: a result below -253 is FAULT).
const FILE_FAULT_BELOW: i64 = -253;

/// One tracker's share of the priority and whether it faults (keepalived's
/// rules): weight 0 faults while down (a file: while its value is not 0);
/// a positive weight is added while up, a negative one while down; a file
/// adds value x weight and faults below -253. An address owner (base 255)
/// ignores weighted trackers (keepalived drops them with a warning) but still
/// faults on weight-0 ones.
///
/// `reverse` (keepalived's `weight_multiplier` -1, vrrp_track.c): the
/// adjustment is applied in the same state but goes the other way (a
/// positive weight is subtracted while up, a negative one added while down),
/// a file adds value x weight x -1, and weight 0 faults while up (a file:
/// while its value is 0). `state` is the tracker's own (a file's: down
/// while it faults).
fn share(t: &Tracked, owner: bool) -> (i64, bool, &'static str) {
    let w = i64::from(t.weight);
    let m: i64 = if t.reverse { -1 } else { 1 };
    let (c, fault, state) = match t.signal {
        Signal::Unknown => (0, false, "unknown"),
        Signal::Up => (if w > 0 { w * m } else { 0 }, w == 0 && t.reverse, "up"),
        Signal::Down => (if w < 0 { w * m } else { 0 }, w == 0 && !t.reverse, "down"),
        Signal::Value(v) if w == 0 => {
            let fault = (v != 0) != t.reverse;
            (0, fault, if fault { "down" } else { "up" })
        }
        Signal::Value(v) => {
            let c = v.saturating_mul(w).saturating_mul(m);
            (
                c,
                c < FILE_FAULT_BELOW,
                if c < FILE_FAULT_BELOW { "down" } else { "up" },
            )
        }
    };
    if owner && w != 0 {
        return (0, false, state);
    }
    (c, fault, state)
}

/// What tracking makes of an instance: base priority + the shares of the
/// tracked interfaces (`is_up(name)`) and of
/// `others` (scripts, files, processes, virtual servers), clamped to
/// 1..=254; the owner's 255 stays (weights ignored, see [`share`]). The
/// fault is the first weight-0 tracker that is down, interfaces first.
pub fn tracked(inst: &Instance, is_up: impl Fn(&str) -> bool, others: &[Tracked]) -> TrackOutcome {
    let base = inst.router.priority;
    let owner = base == 255;
    let ifaces = inst.track_interface.iter().map(|t| Tracked {
        kind: "interface",
        name: t.interface.clone(),
        weight: t.weight,
        reverse: t.reverse,
        signal: if is_up(&t.interface) { Signal::Up } else { Signal::Down },
    });
    let mut p = i64::from(base);
    let mut fault = None;
    let mut trackers = Vec::new();
    for t in ifaces.chain(others.iter().cloned()) {
        let (c, f, state) = share(&t, owner);
        p = p.saturating_add(c);
        if f {
            fault.get_or_insert_with(|| format!("{} {}", t.kind, t.name));
        }
        trackers.push(TrackerStatus {
            kind: t.kind.to_string(),
            name: t.name.clone(),
            weight: t.weight,
            state: state.to_string(),
            contribution: c.clamp(-100_000, 100_000) as i32,
            fault: f,
            value: match t.signal {
                Signal::Value(v) => Some(v),
                _ => None,
            },
        });
    }
    let priority = if owner { 255 } else { p.clamp(1, 254) as u8 };
    TrackOutcome {
        priority,
        fault,
        trackers,
    }
}

/// What the kernel must change so that the interface holds exactly `want`
/// (address -> prefix) of the addresses we are responsible for (`owned`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipPlan {
    /// Delete with the prefix the kernel reports (a delete with another prefix fails).
    pub del: Vec<(IpAddr, u8)>,
    pub add: Vec<(IpAddr, u8)>,
    /// Wanted addresses that are in place.
    pub present: Vec<IpAddr>,
    /// Owned addresses that are gone and can be forgotten.
    pub forget: Vec<IpAddr>,
}

/// Compare what should be on the interface with what the kernel reports
/// (`have`: address -> prefix). A wanted address with another prefix is deleted
/// and re-added; an owned address that is no longer wanted is deleted.
pub fn plan_vips(want: &BTreeMap<IpAddr, u8>, owned: &BTreeMap<IpAddr, u8>, have: &BTreeMap<IpAddr, u8>) -> VipPlan {
    let mut plan = VipPlan::default();
    for (&ip, &p) in want {
        match have.get(&ip) {
            Some(&kp) if kp == p => plan.present.push(ip),
            Some(&kp) => {
                plan.del.push((ip, kp));
                plan.add.push((ip, p));
            }
            None => plan.add.push((ip, p)),
        }
    }
    for &ip in owned.keys() {
        if want.contains_key(&ip) {
            continue;
        }
        match have.get(&ip) {
            Some(&kp) => plan.del.push((ip, kp)),
            None => plan.forget.push(ip),
        }
    }
    plan
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use crate::net::netlink::V4Addr;
    use std::net::Ipv4Addr;

    fn inst(vips: &[&str]) -> Instance {
        let text = format!(
            "[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 1\npriority = 100\nvirtual_ipaddress = [{}]\n",
            vips.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ")
        );
        crate::config::parse(&text, "t.toml")
            .expect("config")
            .instances
            .remove(0)
    }

    fn v4(a: [u8; 4], secondary: bool) -> V4Addr {
        V4Addr {
            addr: Ipv4Addr::from(a),
            secondary,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn source_skips_a_vip_that_became_primary__TX3() {
        let i = inst(&["192.0.2.100/24"]);
        // The real address came back as a secondary behind the VIP.
        let f = IfFacts {
            v4: vec![v4([192, 0, 2, 100], false), v4([192, 0, 2, 1], true)],
            ..Default::default()
        };
        let vips: BTreeSet<IpAddr> = [ip("192.0.2.100")].into();
        assert_eq!(source_for(&i, Some(&f), &vips), Some(ip("192.0.2.1")));
        // Only the VIP left: no usable source.
        let f = IfFacts {
            v4: vec![v4([192, 0, 2, 100], false)],
            ..Default::default()
        };
        assert_eq!(source_for(&i, Some(&f), &vips), None);
        // Another instance's VIP is not a source either.
        let f = IfFacts {
            v4: vec![v4([192, 0, 2, 101], false), v4([192, 0, 2, 2], true)],
            ..Default::default()
        };
        let vips: BTreeSet<IpAddr> = [ip("192.0.2.100"), ip("192.0.2.101")].into();
        assert_eq!(source_for(&i, Some(&f), &vips), Some(ip("192.0.2.2")));
        assert_eq!(source_for(&i, None, &vips), None);
    }

    #[test]
    fn tracked_interfaces_follow_keepalived_weights() {
        let text = "[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 1\npriority = 100\nvirtual_ipaddress = [\"192.0.2.100/24\"]\ntrack_interface = [{ interface = \"f\" }, { interface = \"p\", weight = 20 }, { interface = \"n\", weight = -30 }, { interface = \"r\", weight = -5, reverse = true }]\n";
        let i = crate::config::parse(text, "t.toml")
            .expect("config")
            .instances
            .remove(0);
        let up = |set: &'static [&'static str]| move |n: &str| set.contains(&n);
        let t = |set| {
            let o = tracked(&i, up(set), &[]);
            (o.priority, o.fault)
        };
        // All up: +20 for p; r (negative, reversed) adds nothing while up.
        assert_eq!(t(&["f", "p", "n", "r"]), (120, None));
        // n down: -30; p down: nothing; r down: -5 x -1 = +5 (keepalived).
        assert_eq!(t(&["f"]), (75, None));
        // f (weight 0) down: FAULT.
        assert_eq!(t(&["p", "n", "r"]), (120, Some("interface f".to_string())));
    }

    fn trk(kind: &'static str, name: &str, weight: i32, signal: Signal) -> Tracked {
        Tracked {
            kind,
            name: name.into(),
            weight,
            reverse: false,
            signal,
        }
    }

    fn rev(kind: &'static str, name: &str, weight: i32, signal: Signal) -> Tracked {
        Tracked {
            reverse: true,
            ..trk(kind, name, weight, signal)
        }
    }

    /// keepalived's `reverse` (vrrp_track.c, weight_multiplier -1): same
    /// state, other direction; weight 0 faults while up; a file's share is
    /// value x weight x -1.
    #[test]
    fn reverse_follows_keepalived() {
        let i = with_priority(100);
        let t = |others: &[Tracked]| {
            let o = tracked(&i, |_: &str| true, others);
            (o.priority, o.fault)
        };
        for kind in ["script", "process"] {
            // Positive weight: subtracted while up, nothing while down.
            assert_eq!(t(&[rev(kind, "a", 30, Signal::Up)]), (70, None));
            assert_eq!(t(&[rev(kind, "a", 30, Signal::Down)]), (100, None));
            // Negative weight: nothing while up, added (raises) while down.
            assert_eq!(t(&[rev(kind, "a", -20, Signal::Up)]), (100, None));
            assert_eq!(t(&[rev(kind, "a", -20, Signal::Down)]), (120, None));
            // Weight 0: FAULT while up, fine while down; unknown: neither.
            let name = format!("{kind} a");
            assert_eq!(t(&[rev(kind, "a", 0, Signal::Up)]), (100, Some(name)));
            assert_eq!(t(&[rev(kind, "a", 0, Signal::Down)]), (100, None));
            assert_eq!(t(&[rev(kind, "a", 0, Signal::Unknown)]), (100, None));
        }
        // A file: value x weight x -1; weight 0 faults on 0; below -253 faults.
        assert_eq!(t(&[rev("file", "f", 5, Signal::Value(3))]), (85, None));
        assert_eq!(t(&[rev("file", "f", 5, Signal::Value(-3))]), (115, None));
        assert_eq!(
            t(&[rev("file", "f", 0, Signal::Value(0))]),
            (100, Some("file f".to_string()))
        );
        assert_eq!(t(&[rev("file", "f", 0, Signal::Value(7))]), (100, None));
        let o = tracked(&i, |_: &str| true, &[rev("file", "f", 0, Signal::Value(0))]);
        assert_eq!(o.trackers[0].state, "down", "a faulting file is down");
        assert_eq!(
            t(&[rev("file", "f", 2, Signal::Value(127))]),
            (1, Some("file f".to_string()))
        );
        // The status shows the tracker's own state and the reversed share.
        let o = tracked(&i, |_: &str| true, &[rev("script", "s", 30, Signal::Up)]);
        assert_eq!((o.trackers[0].state.as_str(), o.trackers[0].contribution), ("up", -30));
        // An owner keeps 255 and still faults on a reversed weight-0 tracker that is up.
        let o = tracked(
            &with_priority(255),
            |_: &str| true,
            &[rev("script", "s", 0, Signal::Up)],
        );
        assert_eq!((o.priority, o.fault), (255, Some("script s".to_string())));
    }

    fn with_priority(p: u8) -> Instance {
        let mut i = inst(&["192.0.2.100/24"]);
        i.router.priority = p;
        i
    }

    #[test]
    fn scripts_files_processes_follow_keepalived_weights() {
        let i = with_priority(100);
        let none = |_: &str| true;
        let t = |others: &[Tracked]| {
            let o = tracked(&i, none, others);
            (o.priority, o.fault)
        };
        // Negative: added while failing; positive: while succeeding; unknown: nothing.
        assert_eq!(t(&[trk("script", "a", -20, Signal::Down)]), (80, None));
        assert_eq!(t(&[trk("script", "a", -20, Signal::Up)]), (100, None));
        assert_eq!(t(&[trk("script", "a", 30, Signal::Up)]), (130, None));
        assert_eq!(t(&[trk("script", "a", 30, Signal::Down)]), (100, None));
        assert_eq!(t(&[trk("script", "a", 0, Signal::Unknown)]), (100, None));
        // Weight 0: FAULT while failing, named.
        assert_eq!(
            t(&[
                trk("process", "p", 0, Signal::Down),
                trk("script", "s", 0, Signal::Down)
            ]),
            (100, Some("process p".to_string()))
        );
        // A file adds value x weight; weight 0 faults on a non-zero value;
        // below -253 faults.
        assert_eq!(t(&[trk("file", "f", 5, Signal::Value(-3))]), (85, None));
        assert_eq!(t(&[trk("file", "f", 0, Signal::Value(0))]), (100, None));
        assert_eq!(
            t(&[trk("file", "f", 0, Signal::Value(2))]),
            (100, Some("file f".to_string()))
        );
        assert_eq!(
            t(&[trk("file", "f", 1, Signal::Value(-254))]),
            (1, Some("file f".to_string()))
        );
        // Clamped to 1..=254, whatever the sum.
        assert_eq!(
            t(&[
                trk("file", "f", 254, Signal::Value(1)),
                trk("script", "a", 253, Signal::Up)
            ])
            .0,
            254
        );
        assert_eq!(
            t(&[
                trk("script", "a", -253, Signal::Down),
                trk("process", "b", -254, Signal::Down)
            ])
            .0,
            1
        );
        // The list for status: each tracker's state and share.
        let o = tracked(
            &i,
            none,
            &[
                trk("file", "f", 5, Signal::Value(-3)),
                trk("script", "s", 0, Signal::Down),
            ],
        );
        assert_eq!(o.trackers.len(), 2);
        assert_eq!((o.trackers[0].contribution, o.trackers[0].value), (-15, Some(-3)));
        assert_eq!((o.trackers[1].state.as_str(), o.trackers[1].fault), ("down", true));
    }

    #[test]
    fn an_owner_keeps_255_and_faults_on_weight_zero() {
        let i = with_priority(255);
        let up = |_: &str| true;
        let o = tracked(
            &i,
            up,
            &[
                trk("script", "a", -50, Signal::Down),
                trk("file", "f", 10, Signal::Value(-30)),
            ],
        );
        assert_eq!((o.priority, o.fault), (255, None));
        assert!(o.trackers.iter().all(|t| t.contribution == 0));
        let o = tracked(&i, up, &[trk("script", "a", 0, Signal::Down)]);
        assert_eq!((o.priority, o.fault), (255, Some("script a".to_string())));
    }

    /// Virtual time, pure pieces only: a master tracking a script (interval
    /// 1 s, fall 2, weight -100) whose process dies at 1.1 s lowers its
    /// priority at the second failing run (3.0 s, exactly), and the backup
    /// takes over exactly Master_Down_Interval after the master's last advert
    /// at the old priority (the lowered adverts do not hold it back).
    #[test]
    fn script_failover_timing_in_virtual_time() {
        use crate::time::{Instant, Micros};
        use crate::track::state::ScriptState;
        use crate::vrrp::router::{master_down_interval, Router};
        use crate::vrrp::{wire, Action, Input, Received, State};

        let mut a_inst = with_priority(150);
        a_inst.router.advert_interval = crate::vrrp::Interval::V3(crate::vrrp::Centis::new(10).unwrap());
        let mut b_cfg = a_inst.router.clone();
        b_cfg.priority = 100;
        let addrs = [ip("192.0.2.1"), ip("192.0.2.2")];
        let mut r = [
            Router::new(a_inst.router.clone(), Some(addrs[0])),
            Router::new(b_cfg, Some(addrs[1])),
        ];
        let mut script = ScriptState::new(1, 2, false, Instant::ZERO);
        let kill = Instant(1_100_000);
        let mut next_run = Instant::ZERO;
        let mut prio_a = 150u8;
        let mut lowered_at = None;
        let mut last_150 = None;
        let mut b_master = None;
        // Carry out actions: adverts reach the other router at once.
        fn deliver(
            r: &mut [Router; 2],
            from: usize,
            now: Instant,
            acts: Vec<Action>,
            addrs: &[IpAddr; 2],
            log: &mut Vec<(usize, Instant, Action)>,
        ) {
            let mut queue: Vec<(usize, Action)> = acts.into_iter().map(|a| (from, a)).collect();
            while let Some((i, a)) = queue.pop() {
                if let Action::SendAdvert { advert, checksum_form } = &a {
                    let rx = Received {
                        src: addrs[i],
                        dst: IpAddr::V4(wire::GROUP_V4),
                        ttl: 255,
                        checksum_form: *checksum_form,
                        advert: advert.clone(),
                    };
                    let more = r[1 - i].handle(now, Input::Advert(Ok(rx)));
                    queue.extend(more.into_iter().map(|m| (1 - i, m)));
                }
                log.push((i, now, a));
            }
        }
        let mut log = Vec::new();
        let mut now = Instant::ZERO;
        for i in 0..2 {
            let acts = r[i].handle(now, Input::Startup);
            deliver(&mut r, i, now, acts, &addrs, &mut log);
        }
        for _ in 0..100_000 {
            let t = [r[0].poll_at(), r[1].poll_at(), Some(next_run)]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            if t > Instant(6_000_000) {
                break;
            }
            now = t;
            if now == next_run {
                script.record(now < kill, "run", now);
                let o = tracked(
                    &a_inst,
                    |_| true,
                    &[Tracked {
                        kind: "script",
                        name: "chk".into(),
                        weight: -100,
                        reverse: false,
                        signal: script.signal(),
                    }],
                );
                if o.priority != prio_a {
                    prio_a = o.priority;
                    lowered_at = Some(now);
                    let acts = r[0].handle(now, Input::SetPriority(prio_a));
                    deliver(&mut r, 0, now, acts, &addrs, &mut log);
                }
                next_run = now + Micros::from_secs(1);
            }
            for i in 0..2 {
                if r[i].poll_at().is_some_and(|p| p <= now) {
                    let acts = r[i].handle(now, Input::Tick);
                    deliver(&mut r, i, now, acts, &addrs, &mut log);
                }
            }
        }
        for (i, t, a) in &log {
            match a {
                Action::SendAdvert { advert, .. } if *i == 0 && advert.priority == 150 => last_150 = Some(*t),
                Action::StateChange { to: State::Master, .. } if *i == 1 => b_master = Some(*t),
                _ => {}
            }
        }
        assert_eq!(lowered_at, Some(Instant(3_000_000)), "the second failing run");
        assert_eq!(prio_a, 50);
        let last_150 = last_150.expect("adverts at 150");
        let mdi = master_down_interval(crate::vrrp::Version::V3, 100, Micros::from_millis(100));
        assert_eq!(
            b_master,
            Some(last_150 + mdi),
            "takeover = last advert at 150 + Master_Down_Interval"
        );
        assert!(last_150 <= Instant(3_000_000));
        assert_eq!(r[1].state(), State::Master);
    }

    #[test]
    fn plan_readds_with_new_prefix_and_deletes_with_the_kernels() {
        let want: BTreeMap<IpAddr, u8> = [(ip("192.0.2.100"), 32)].into();
        let owned: BTreeMap<IpAddr, u8> = [(ip("192.0.2.100"), 24), (ip("192.0.2.101"), 24)].into();
        let have: BTreeMap<IpAddr, u8> =
            [(ip("192.0.2.1"), 24), (ip("192.0.2.100"), 24), (ip("192.0.2.101"), 24)].into();
        let p = plan_vips(&want, &owned, &have);
        assert_eq!(p.del, vec![(ip("192.0.2.100"), 24), (ip("192.0.2.101"), 24)]);
        assert_eq!(p.add, vec![(ip("192.0.2.100"), 32)]);
        assert!(p.present.is_empty());
        // Leaving: everything owned goes, with the kernel's prefix; gone ones are forgotten.
        let have: BTreeMap<IpAddr, u8> = [(ip("192.0.2.100"), 32)].into();
        let p = plan_vips(&BTreeMap::new(), &owned, &have);
        assert_eq!(p.del, vec![(ip("192.0.2.100"), 32)]);
        assert_eq!(p.forget, vec![ip("192.0.2.101")]);
        // Never touches an address we do not own.
        let p = plan_vips(&BTreeMap::new(), &BTreeMap::new(), &have);
        assert_eq!(p, VipPlan::default());
    }
}
