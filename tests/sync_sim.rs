//! Sync groups (`vrrp/sync.rs`) in virtual time: two nodes, each with two
//! routers in one group, adverts between the same VRIDs with a fixed delay.
//! The group's timing is asserted to the microsecond.
#![allow(non_snake_case)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use vipd::time::{Instant, Micros};
use vipd::vrrp::router::{master_down_interval, skew_time, Router};
use vipd::vrrp::sync::Group;
use vipd::vrrp::{Action, Auth, Centis, ChecksumForm, Input, Interval, Reason, Received, RouterConfig, State, Version};

const DELAY: Micros = Micros(1_000);
const NAMES: [&str; 2] = ["VI_1", "VI_2"];

fn cfg(member: usize, prio: u8) -> RouterConfig {
    RouterConfig {
        name: NAMES[member].into(),
        vrid: 51 + member as u8,
        priority: prio,
        version: Version::V3,
        advert_interval: Interval::V3(Centis::new(100).unwrap()),
        preempt: true,
        preempt_delay: Micros::ZERO,
        vips: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100 + member as u8))],
        unicast_peers: vec![],
        allowed_peers: vec![],
        auth: Auth::None,
        checksum_form: ChecksumForm::PseudoHeader,
        garp_master_repeat: 5,
        garp_master_delay: Micros::ZERO,
        announce: Default::default(),
    }
}

fn addr(node: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + node as u8))
}

struct Node {
    routers: Vec<Router>,
    group: Group,
    /// (time, member, action)
    log: Vec<(Instant, usize, Action)>,
    /// Group state changes.
    group_log: Vec<(Instant, State)>,
}

struct Lan {
    now: Instant,
    nodes: Vec<Node>,
    /// (at, seq) -> (to node, member, advert received)
    queue: BTreeMap<(Instant, u64), (usize, usize, Received)>,
    seq: u64,
    /// Member VRIDs whose adverts are dropped between nodes.
    cut: Vec<usize>,
}

impl Lan {
    fn new(prios: &[u8]) -> Lan {
        let nodes = prios
            .iter()
            .enumerate()
            .map(|(n, &p)| Node {
                routers: (0..2).map(|m| Router::new(cfg(m, p), Some(addr(n)))).collect(),
                group: Group::new("G"),
                log: Vec::new(),
                group_log: Vec::new(),
            })
            .collect();
        Lan {
            now: Instant::ZERO,
            nodes,
            queue: BTreeMap::new(),
            seq: 0,
            cut: Vec::new(),
        }
    }

    fn input(&mut self, n: usize, m: usize, input: Input) {
        let actions = self.nodes[n].routers[m].handle(self.now, input);
        self.carry_out(n, m, actions);
        self.sync(n);
    }

    fn carry_out(&mut self, n: usize, m: usize, actions: Vec<Action>) {
        for a in actions {
            if let Action::SendAdvert { advert, checksum_form } = &a {
                for to in (0..self.nodes.len()).filter(|&to| to != n && !self.cut.contains(&m)) {
                    self.seq += 1;
                    let r = Received {
                        src: addr(n),
                        dst: IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)),
                        ttl: 255,
                        checksum_form: *checksum_form,
                        advert: advert.clone(),
                    };
                    self.queue.insert((self.now + DELAY, self.seq), (to, m, r));
                }
            }
            self.nodes[n].log.push((self.now, m, a));
        }
    }

    /// The daemon's loop: evaluate the group until it sends nothing.
    fn sync(&mut self, n: usize) {
        for _ in 0..16 {
            let views: Vec<_> = self.nodes[n].routers.iter().map(|r| r.sync_view()).collect();
            let d = self.nodes[n].group.evaluate(self.now, &NAMES, &views);
            if let Some((_, to)) = d.changed {
                self.nodes[n].group_log.push((self.now, to));
            }
            if d.commands.is_empty() {
                return;
            }
            for (m, c) in d.commands {
                let actions = self.nodes[n].routers[m].handle(self.now, Input::Sync(c));
                self.carry_out(n, m, actions);
            }
        }
        panic!("group did not settle");
    }

    fn start(&mut self) {
        for n in 0..self.nodes.len() {
            for m in 0..2 {
                self.input(n, m, Input::Sync(vipd::vrrp::sync::Command::Join(true)));
                self.input(n, m, Input::Startup);
            }
        }
    }

    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            let q = self.queue.keys().next().map(|k| k.0);
            let t = self
                .nodes
                .iter()
                .flat_map(|n| n.routers.iter().filter_map(|r| r.poll_at()))
                .min();
            let Some(next) = [q, t].into_iter().flatten().min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = next;
            while let Some((&k, _)) = self.queue.iter().next() {
                if k.0 > self.now {
                    break;
                }
                let (to, m, r) = self.queue.remove(&k).unwrap();
                self.input(to, m, Input::Advert(Ok(r)));
            }
            for n in 0..self.nodes.len() {
                for m in 0..2 {
                    if self.nodes[n].routers[m].poll_at().is_some_and(|p| p <= self.now) {
                        self.input(n, m, Input::Tick);
                    }
                }
            }
        }
        self.now = until.max(self.now);
    }

    fn states(&self, n: usize) -> [State; 2] {
        [self.nodes[n].routers[0].state(), self.nodes[n].routers[1].state()]
    }

    /// When member `m` of node `n` last entered `to`, and why.
    fn entered(&self, n: usize, m: usize, to: State) -> Option<(Instant, Reason)> {
        self.nodes[n].log.iter().rev().find_map(|(t, mm, a)| match a {
            Action::StateChange { to: s, reason, .. } if *mm == m && *s == to => Some((*t, reason.clone())),
            _ => None,
        })
    }
}

fn secs(s: u64) -> Instant {
    Instant::ZERO + Micros::from_secs(s)
}

const SEC: Micros = Micros(1_000_000);

/// Both members of the higher node are master after the same master-down
/// interval; the group reports BACKUP then MASTER.
#[test]
fn group_forms_on_the_higher_node() {
    let mut lan = Lan::new(&[200, 100]);
    lan.start();
    lan.run_until(secs(10));
    assert_eq!(lan.states(0), [State::Master, State::Master]);
    assert_eq!(lan.states(1), [State::Backup, State::Backup]);
    let mdi = master_down_interval(Version::V3, 200, SEC);
    for m in 0..2 {
        assert_eq!(lan.entered(0, m, State::Master).unwrap().0, Instant::ZERO + mdi);
    }
    assert_eq!(
        lan.nodes[0].group_log,
        [(Instant::ZERO, State::Backup), (Instant::ZERO + mdi, State::Master)]
    );
}

/// One member faults on the master node: the other leaves with it (priority
/// 0 from both), and the other node's members take over together after
/// exactly delay + Skew_Time.
#[test]
fn one_member_fault_moves_the_group_after_skew_time() {
    let mut lan = Lan::new(&[200, 100]);
    lan.start();
    lan.run_until(secs(10));
    lan.input(0, 0, Input::TrackFault(Some("interface trk".into())));
    assert_eq!(lan.states(0), [State::Fault, State::Fault]);
    let (_, why) = lan.entered(0, 1, State::Fault).unwrap();
    assert_eq!(why.to_string(), "sync group G: VI_1 is in fault");
    let zeros = lan.nodes[0]
        .log
        .iter()
        .filter(|(t, _, a)| *t == secs(10) && matches!(a, Action::SendAdvert { advert, .. } if advert.priority == 0))
        .count();
    assert_eq!(zeros, 2, "both members leave with priority 0");
    lan.run_until(secs(20));
    let at = secs(10) + DELAY + skew_time(Version::V3, 100, SEC);
    for m in 0..2 {
        assert_eq!(lan.entered(1, m, State::Master).unwrap().0, at, "member {m}");
    }
    assert_eq!(lan.nodes[0].group_log.last(), Some(&(secs(10), State::Fault)));
    assert_eq!(lan.nodes[1].group_log.last(), Some(&(at, State::Master)));
    // Recovery: both back to BACKUP, preempt after the master-down interval
    // together; the other node's members go back to BACKUP together.
    lan.input(0, 0, Input::TrackFault(None));
    assert_eq!(lan.states(0), [State::Backup, State::Backup]);
    lan.run_until(secs(30));
    let back = secs(20) + master_down_interval(Version::V3, 200, SEC);
    for m in 0..2 {
        assert_eq!(lan.entered(0, m, State::Master).unwrap().0, back, "member {m}");
        assert_eq!(lan.entered(1, m, State::Backup).unwrap().0, back + DELAY, "member {m}");
    }
    assert_eq!(lan.states(1), [State::Backup, State::Backup]);
}

/// The group becomes master only when every member can: a member whose
/// master disappeared waits (no timer) while the other still hears its master.
#[test]
fn a_member_waits_while_another_still_hears_its_master() {
    let mut lan = Lan::new(&[200, 100]);
    lan.start();
    lan.run_until(secs(10));
    // VI_1's adverts stop reaching node 1; VI_2's still do.
    lan.cut = vec![0];
    lan.run_until(secs(30));
    assert_eq!(lan.states(1), [State::Backup, State::Backup]);
    let v = lan.nodes[1].routers[0].sync_view();
    assert!(v.wants_master, "{v:?}");
    assert_eq!(lan.nodes[1].routers[0].poll_at(), None, "waits without a timer");
    assert_eq!(lan.states(0), [State::Master, State::Master]);
}

/// When member `m` of node `n` removed its VIPs, and its handover's outcome.
fn released(lan: &Lan, n: usize, m: usize) -> (Option<Instant>, Option<vipd::vrrp::HandoverOutcome>) {
    let log = &lan.nodes[n].log;
    let at = log
        .iter()
        .find_map(|(t, mm, a)| (*mm == m && matches!(a, Action::RemoveVips(_))).then_some(*t));
    let o = log.iter().find_map(|(_, mm, a)| match a {
        Action::HandedOver(o) if *mm == m => Some(o.clone()),
        _ => None,
    });
    (at, o)
}

/// A planned handover of the group (`vipctl demote` of a member demotes
/// every member): both send priority 0, the other node's members take over
/// together after Skew_Time. VI_2's first advert as master is lost: VI_1
/// hands over and goes BACKUP, but the group does not cut VI_2's handover
/// short; VI_2 keeps its VIPs until it hears its successor (after its next
/// priority 0, answered at once) plus the hold.
#[test]
fn group_demote_hands_every_member_over_make_before_break() {
    let mut lan = Lan::new(&[200, 100]);
    lan.start();
    lan.run_until(secs(10));
    for m in 0..2 {
        lan.input(
            0,
            m,
            Input::Demote {
                timeout: Micros::from_secs(5),
            },
        );
    }
    let skew = skew_time(Version::V3, 100, SEC);
    let at = secs(10) + DELAY + skew;
    lan.run_until(secs(10) + DELAY + Micros(skew.0 - 1));
    lan.cut = vec![1];
    lan.run_until(at);
    lan.cut = Vec::new();
    lan.run_until(secs(20));
    for m in 0..2 {
        assert_eq!(lan.entered(1, m, State::Master).unwrap().0, at, "member {m}");
    }
    assert_eq!(lan.states(0), [State::Backup, State::Backup]);
    assert_eq!(lan.states(1), [State::Master, State::Master]);
    let hold = Micros(100_000);
    let (t0, o0) = released(&lan, 0, 0);
    assert_eq!(t0, Some(at + DELAY + hold));
    assert_eq!(o0.and_then(|o| o.successor), Some(addr(1)));
    // VI_2: priority 0 again at 11 s, answered at once by the new master.
    let (t1, o1) = released(&lan, 0, 1);
    let o1 = o1.expect("VI_2 handed over");
    assert_eq!(o1.successor, Some(addr(1)), "{o1:?}");
    assert_eq!(t1, Some(secs(11) + DELAY + DELAY + hold));
    assert_eq!(o1.released_after, Some(Micros(SEC.0 + 2 * DELAY.0 + hold.0)));
}

/// SIGTERM of the master node (`Leave` for every member): the other node's
/// members take over together after Skew_Time and each leaving member keeps
/// its VIPs until its successor advertised, plus the hold.
#[test]
fn group_sigterm_hands_every_member_over() {
    let mut lan = Lan::new(&[200, 100]);
    lan.start();
    lan.run_until(secs(10));
    for m in 0..2 {
        lan.input(
            0,
            m,
            Input::Leave {
                timeout: Micros::from_secs(5),
            },
        );
    }
    lan.run_until(secs(20));
    let at = secs(10) + DELAY + skew_time(Version::V3, 100, SEC);
    assert_eq!(lan.states(0), [State::Initialize, State::Initialize]);
    for m in 0..2 {
        assert_eq!(lan.entered(1, m, State::Master).unwrap().0, at, "member {m}");
        let (t, o) = released(&lan, 0, m);
        assert_eq!(t, Some(at + DELAY + Micros(100_000)), "member {m}");
        assert_eq!(o.and_then(|o| o.successor), Some(addr(1)), "member {m}");
    }
}
