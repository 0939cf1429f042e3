//! Multi-router simulation of the pure VRRP core in virtual time. A
//! discrete-event `SimLan` carries adverts between routers (through the real
//! wire codec: emit, then decode) with per-link delay, seeded loss, partitions,
//! kills and restarts, and jumps straight to the next deadline. Timing
//! assertions are equalities in microseconds.
#![allow(non_snake_case)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;
use vipd::time::{Instant, Micros};
use vipd::vrrp::router::{master_down_interval, skew_time, Router};
use vipd::vrrp::{wire, Action, Auth, Centis, ChecksumForm, Input, Interval, RouterConfig, Secs, State, Version};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100));

fn cfg(prio: u8, interval_cs: u16) -> RouterConfig {
    RouterConfig {
        name: "VI_1".into(),
        vrid: 51,
        priority: prio,
        version: Version::V3,
        advert_interval: Interval::V3(Centis::new(interval_cs).unwrap()),
        preempt: true,
        preempt_delay: Micros::ZERO,
        vips: vec![VIP],
        unicast_peers: vec![],
        allowed_peers: vec![],
        auth: Auth::None,
        checksum_form: ChecksumForm::PseudoHeader,
        garp_master_repeat: 5,
        garp_master_delay: Micros::from_secs(5),
        announce: Default::default(),
    }
}

fn addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + i as u8))
}

struct Node {
    router: Router,
    alive: bool,
    /// Every action with its time, for invariants.
    log: Vec<(Instant, Action)>,
}

/// A LAN of routers in virtual time.
struct SimLan {
    now: Instant,
    nodes: Vec<Node>,
    /// (deliver_at, seq) -> (to, bytes, from)
    queue: BTreeMap<(Instant, u64), (usize, Vec<u8>, usize)>,
    seq: u64,
    delay: Micros,
    /// Loss probability in 1/1000.
    loss_permille: u32,
    rng: u64,
    /// partition[i] = group id; packets only flow within a group.
    partition: Vec<u32>,
}

impl SimLan {
    fn new(cfgs: Vec<RouterConfig>, delay: Micros) -> SimLan {
        let nodes = cfgs
            .into_iter()
            .enumerate()
            .map(|(i, c)| Node {
                router: Router::new(c, Some(addr(i))),
                alive: false,
                log: Vec::new(),
            })
            .collect::<Vec<_>>();
        let n = nodes.len();
        SimLan {
            now: Instant::ZERO,
            nodes,
            queue: BTreeMap::new(),
            seq: 0,
            delay,
            loss_permille: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            partition: vec![0; n],
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn input(&mut self, i: usize, input: Input) {
        let now = self.now;
        let actions = self.nodes[i].router.handle(now, input);
        self.carry_out(i, actions);
    }

    fn carry_out(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            if let Action::SendAdvert { advert, checksum_form } = &a {
                let dst = IpAddr::V4(wire::GROUP_V4);
                let bytes = wire::emit(advert, addr(i), dst, *checksum_form);
                for j in 0..self.nodes.len() {
                    if j == i || self.partition[j] != self.partition[i] {
                        continue;
                    }
                    if self.loss_permille > 0 && (self.rand() % 1000) < u64::from(self.loss_permille) {
                        continue;
                    }
                    self.seq += 1;
                    self.queue
                        .insert((self.now + self.delay, self.seq), (j, bytes.clone(), i));
                }
            }
            self.nodes[i].log.push((self.now, a));
        }
    }

    fn start(&mut self, i: usize) {
        self.nodes[i].alive = true;
        self.input(i, Input::Startup);
    }

    /// Crash: the router vanishes (no priority-0 advert, nothing more sent).
    fn kill(&mut self, i: usize) {
        self.nodes[i].alive = false;
        let c = self.nodes[i].router.config().clone();
        self.nodes[i].router = Router::new(c, Some(addr(i)));
    }

    fn shutdown(&mut self, i: usize) {
        self.input(i, Input::Shutdown);
        self.nodes[i].alive = false;
    }

    fn next_event(&self) -> Option<Instant> {
        let q = self.queue.keys().next().map(|k| k.0);
        let t = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.router.poll_at())
            .min();
        match (q, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run until `until`, processing every event in time order.
    fn run_until(&mut self, until: Instant) {
        for _ in 0..10_000_000 {
            let Some(t) = self.next_event() else { break };
            if t > until {
                break;
            }
            self.now = t;
            // Deliveries due now.
            while let Some((&(at, seq), _)) = self.queue.iter().next() {
                if at > self.now {
                    break;
                }
                let (to, bytes, _from) = self.queue.remove(&(at, seq)).unwrap();
                if !self.nodes[to].alive {
                    continue;
                }
                let mut pkt = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, 255, 112, 0, 0];
                let total = (20 + bytes.len()) as u16;
                pkt[2..4].copy_from_slice(&total.to_be_bytes());
                let src = match addr(_from) {
                    IpAddr::V4(a) => a.octets(),
                    _ => unreachable!(),
                };
                pkt.extend_from_slice(&src);
                pkt.extend_from_slice(&wire::GROUP_V4.octets());
                pkt.extend_from_slice(&bytes);
                let decoded = wire::decode_ipv4(&pkt);
                self.input(to, Input::Advert(decoded));
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].alive && self.nodes[i].router.poll_at().is_some_and(|p| p <= self.now) {
                    self.input(i, Input::Tick);
                }
            }
        }
        self.now = until.max(self.now);
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive && self.nodes[i].router.state() == State::Master)
            .collect()
    }

    fn last_state_change_to(&self, i: usize, to: State) -> Option<Instant> {
        self.nodes[i].log.iter().rev().find_map(|(t, a)| match a {
            Action::StateChange { to: s, .. } if *s == to => Some(*t),
            _ => None,
        })
    }

    /// Whether `i` holds the VIPs now, by its own last AddVips / RemoveVips.
    fn holds(&self, i: usize) -> bool {
        self.nodes[i]
            .log
            .iter()
            .rev()
            .find_map(|(_, a)| match a {
                Action::AddVips(_) => Some(true),
                Action::RemoveVips(_) => Some(false),
                _ => None,
            })
            .unwrap_or(false)
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.holds(i)).collect()
    }

    /// Time of the last advert `i` sent with a non-zero priority.
    fn last_advert_sent(&self, i: usize) -> Option<Instant> {
        self.nodes[i].log.iter().rev().find_map(|(t, a)| match a {
            Action::SendAdvert { advert, .. } if advert.priority > 0 => Some(*t),
            _ => None,
        })
    }
}

#[test]
fn skew_and_master_down_are_exact_integers__SM3() {
    let s = Micros::from_secs(1);
    assert_eq!(skew_time(Version::V3, 100, s), Micros(609_375));
    assert_eq!(master_down_interval(Version::V3, 100, s), Micros(3_609_375));
    assert_eq!(skew_time(Version::V3, 100, Micros::from_millis(100)), Micros(60_937));
    assert_eq!(master_down_interval(Version::V2, 100, s), Micros(3_609_375));
    // v2: skew does not scale with the interval.
    assert_eq!(
        master_down_interval(Version::V2, 100, Micros::from_secs(2)),
        Micros(6_609_375)
    );
    assert_eq!(skew_time(Version::V3, 255, s), Micros(3_906));
    assert_eq!(skew_time(Version::V3, 1, s), Micros(996_093));
}

#[test]
fn crash_takeover_exactly_master_down_after_last_advert__SM4() {
    let mut lan = SimLan::new(vec![cfg(150, 100), cfg(100, 100), cfg(50, 100)], Micros::ZERO);
    for i in 0..3 {
        lan.start(i);
    }
    lan.run_until(Instant(10_000_000));
    assert_eq!(lan.masters(), vec![0]);
    lan.kill(0);
    let last = lan.last_advert_sent(0).unwrap();
    lan.run_until(Instant(20_000_000));
    assert_eq!(lan.masters(), vec![1]);
    let took = lan.last_state_change_to(1, State::Master).unwrap() - last;
    assert_eq!(
        took,
        Micros(3_609_375),
        "priority 100 at 1 s must take over exactly 3 609 375 µs after the last advert"
    );
    // The third router never became master after the crash.
    assert!(lan.last_state_change_to(2, State::Master).is_none());
}

#[test]
fn crash_takeover_with_link_delay_counts_from_reception__SM4() {
    let delay = Micros(250);
    let mut lan = SimLan::new(vec![cfg(150, 10), cfg(100, 10)], delay);
    lan.start(0);
    lan.start(1);
    lan.run_until(Instant(2_000_000));
    assert_eq!(lan.masters(), vec![0]);
    lan.kill(0);
    let last_heard = lan.last_advert_sent(0).unwrap() + delay;
    lan.run_until(Instant(4_000_000));
    let took = lan.last_state_change_to(1, State::Master).unwrap() - last_heard;
    // 0.1 s adverts: 3 × 100 000 + (156 × 100 000) / 256 = 360 937 µs.
    assert_eq!(took, Micros(360_937));
}

#[test]
fn priority_zero_takeover_after_exactly_skew_time__SM5_SM12() {
    let mut lan = SimLan::new(vec![cfg(150, 100), cfg(100, 100)], Micros::ZERO);
    lan.start(0);
    lan.start(1);
    lan.run_until(Instant(10_000_000));
    assert_eq!(lan.masters(), vec![0]);
    let t = lan.now;
    lan.shutdown(0);
    // The leaving master sent priority 0 and removed its VIPs.
    let tail: Vec<&Action> = lan.nodes[0]
        .log
        .iter()
        .filter(|(at, _)| *at == t)
        .map(|(_, a)| a)
        .collect();
    assert!(matches!(tail[0], Action::SendAdvert { advert, .. } if advert.priority == 0));
    assert!(matches!(tail[1], Action::RemoveVips(v) if v == &vec![VIP]));
    lan.run_until(Instant(20_000_000));
    assert_eq!(lan.masters(), vec![1]);
    assert_eq!(lan.last_state_change_to(1, State::Master).unwrap() - t, Micros(609_375));
}

#[test]
fn preempt_delay_honoured_to_the_microsecond__SM7() {
    let mut c0 = cfg(150, 100);
    c0.preempt_delay = Micros(2_500_001);
    let mut lan = SimLan::new(vec![c0, cfg(100, 100)], Micros::ZERO);
    lan.start(1);
    lan.run_until(Instant(5_000_000));
    assert_eq!(lan.masters(), vec![1]);
    lan.now = Instant(5_123_457);
    lan.start(0);
    let ready = lan.now;
    lan.run_until(Instant(20_000_000));
    assert_eq!(lan.masters(), vec![0]);
    assert_eq!(
        lan.last_state_change_to(0, State::Master).unwrap(),
        ready + Micros(2_500_001)
    );
    assert!(lan.last_state_change_to(1, State::Backup).is_some());
}

#[test]
fn preempt_off_keeps_lower_priority_master__SM6() {
    let mut c0 = cfg(150, 100);
    c0.preempt = false;
    let mut lan = SimLan::new(vec![c0, cfg(100, 100)], Micros::ZERO);
    lan.start(1);
    lan.run_until(Instant(5_000_000));
    lan.start(0);
    lan.run_until(Instant(60_000_000));
    assert_eq!(lan.masters(), vec![1]);
}

#[test]
fn preempt_on_higher_priority_takes_over_after_master_down__SM6_SM10() {
    let mut lan = SimLan::new(vec![cfg(150, 100), cfg(100, 100)], Micros::ZERO);
    lan.start(1);
    lan.run_until(Instant(5_000_000));
    lan.now = Instant(5_000_000);
    lan.start(0);
    lan.run_until(Instant(20_000_000));
    assert_eq!(lan.masters(), vec![0]);
    // fe1 ignores the lower-priority adverts, so its master-down timer (150: 3 s + 414 062 µs) fires.
    assert_eq!(
        lan.last_state_change_to(0, State::Master).unwrap(),
        Instant(5_000_000) + Micros(3_414_062)
    );
}

#[test]
fn equal_priorities_elect_the_higher_address__SM10() {
    let mut lan = SimLan::new(vec![cfg(100, 100), cfg(100, 100), cfg(100, 100)], Micros::ZERO);
    for i in 0..3 {
        lan.start(i);
    }
    lan.run_until(Instant(30_000_000));
    assert_eq!(lan.masters(), vec![2], "192.0.2.3 is the highest address");
}

#[test]
fn owner_priority_255_starts_as_master__SM1() {
    let mut lan = SimLan::new(vec![cfg(255, 100), cfg(100, 100)], Micros::ZERO);
    lan.start(1);
    lan.start(0);
    let acts: Vec<&Action> = lan.nodes[0].log.iter().map(|(_, a)| a).collect();
    assert!(matches!(acts[0], Action::SendAdvert { advert, .. } if advert.priority == 255));
    assert!(matches!(acts[1], Action::AddVips(_)));
    assert!(matches!(acts[2], Action::Announce { .. }));
    assert_eq!(lan.nodes[0].router.state(), State::Master);
    lan.run_until(Instant(10_000_000));
    assert_eq!(lan.masters(), vec![0]);
}

#[test]
fn v2_master_down_is_exact__SM3_TX5() {
    let c = |p: u8| {
        let mut c = cfg(p, 100);
        c.version = Version::V2;
        c.advert_interval = Interval::V2(Secs::new(1).unwrap());
        c
    };
    let mut lan = SimLan::new(vec![c(150), c(100)], Micros::ZERO);
    lan.start(0);
    lan.start(1);
    lan.run_until(Instant(10_000_000));
    assert_eq!(lan.masters(), vec![0]);
    lan.kill(0);
    let last = lan.last_advert_sent(0).unwrap();
    lan.run_until(Instant(20_000_000));
    assert_eq!(
        lan.last_state_change_to(1, State::Master).unwrap() - last,
        Micros(3_609_375)
    );
}

#[test]
fn second_garp_burst_after_garp_master_delay__EX3() {
    let mut lan = SimLan::new(vec![cfg(150, 100)], Micros::ZERO);
    lan.start(0);
    lan.run_until(Instant(20_000_000));
    let bursts: Vec<Instant> = lan.nodes[0]
        .log
        .iter()
        .filter_map(|(t, a)| matches!(a, Action::Announce { count: 5, vips } if vips == &vec![VIP]).then_some(*t))
        .collect();
    let became = lan.last_state_change_to(0, State::Master).unwrap();
    assert_eq!(bursts, vec![became, became + Micros::from_secs(5)]);
}

#[test]
fn partition_heals_to_one_master__SM10_SM11() {
    let mut lan = SimLan::new(vec![cfg(150, 100), cfg(100, 100), cfg(50, 100)], Micros(100));
    for i in 0..3 {
        lan.start(i);
    }
    lan.run_until(Instant(10_000_000));
    lan.partition = vec![0, 1, 1];
    lan.run_until(Instant(20_000_000));
    assert_eq!(lan.masters(), vec![0, 1], "each side of the partition elects a master");
    lan.partition = vec![0, 0, 0];
    lan.run_until(Instant(30_000_000));
    assert_eq!(lan.masters(), vec![0]);
}

#[derive(Clone, Debug)]
enum Ev {
    Kill(usize),
    Restart(usize),
    Shutdown(usize),
    Partition(Vec<u32>),
    Heal,
    Priority(usize, u8),
    Wait(u64),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        (0usize..4).prop_map(Ev::Kill),
        (0usize..4).prop_map(Ev::Restart),
        (0usize..4).prop_map(Ev::Shutdown),
        prop::collection::vec(0u32..2, 4).prop_map(Ev::Partition),
        Just(Ev::Heal),
        ((0usize..4), (1u8..=254)).prop_map(|(i, p)| Ev::Priority(i, p)),
        (1u64..3_000_000).prop_map(Ev::Wait),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Once the network has been healed and quiet for more than a master-down
    /// interval, there is exactly one master; every master entry added and
    /// announced every VIP.
    #[test]
    fn converges_to_exactly_one_master(
        n in 2usize..=4,
        prios in prop::collection::vec(1u8..=254, 4),
        interval_cs in prop::sample::select(vec![1u16, 10, 100]),
        loss in 0u32..200,
        events in prop::collection::vec(ev(), 0..25),
    ) {
        let cfgs: Vec<RouterConfig> = (0..n).map(|i| cfg(prios[i], interval_cs)).collect();
        let mut lan = SimLan::new(cfgs, Micros(50));
        lan.loss_permille = loss;
        for i in 0..n { lan.start(i); }
        let step = u64::from(interval_cs) * 10_000;
        for e in events {
            match e {
                Ev::Kill(i) if i < n => lan.kill(i),
                Ev::Restart(i) if i < n && !lan.nodes[i].alive => lan.start(i),
                Ev::Shutdown(i) if i < n && lan.nodes[i].alive => lan.shutdown(i),
                Ev::Partition(p) => lan.partition = p[..n].to_vec(),
                Ev::Heal => lan.partition = vec![0; n],
                Ev::Priority(i, p) if i < n && lan.nodes[i].alive => lan.input(i, Input::SetPriority(p)),
                Ev::Wait(us) => { let t = lan.now + Micros(us % (20 * step)); lan.run_until(t); }
                _ => {}
            }
        }
        // Heal, make sure someone is alive, stop losing packets, and be quiet.
        lan.partition = vec![0; n];
        lan.loss_permille = 0;
        if lan.nodes.iter().all(|x| !x.alive) { lan.start(0); }
        let quiet = Micros(4 * step + step + 100) + Micros(50);
        let t = lan.now + quiet + quiet;
        lan.run_until(t);
        prop_assert_eq!(lan.masters().len(), 1, "masters: {:?}", lan.masters());
        // The master has the highest live priority. Among equal priorities the
        // address decides only between two masters (SM10): a backup accepts a
        // master of equal priority (SM6, "greater than or equal"), so a
        // lower-addressed master that won earlier keeps the role.
        let best = (0..n).filter(|&i| lan.nodes[i].alive)
            .map(|i| lan.nodes[i].router.status().effective_priority).max().unwrap();
        let m = lan.masters()[0];
        prop_assert_eq!(lan.nodes[m].router.status().effective_priority, best, "master {} is not of the highest priority", m);
        for node in &lan.nodes {
            let log = &node.log;
            for (k, (_, a)) in log.iter().enumerate() {
                if let Action::StateChange { to: State::Master, .. } = a {
                    let before: Vec<&Action> = log[..k].iter().rev().take(3).map(|(_, a)| a).collect();
                    let added = before.iter().any(|a| matches!(a, Action::AddVips(v) if v == &vec![VIP]));
                    let announced = before.iter().any(|a| matches!(a, Action::Announce { vips, .. } if vips == &vec![VIP]));
                    prop_assert!(added, "master entry without AddVips");
                    prop_assert!(announced, "master entry without Announce");
                }
            }
        }
    }
}

/// A backup accepts a master of equal priority (">= local priority"): a node
/// with a higher address that starts later does not preempt it.
#[test]
fn later_equal_priority_backup_does_not_preempt_lower_address__SM6() {
    let mut lan = SimLan::new(vec![cfg(100, 100), cfg(100, 100)], Micros(50));
    lan.start(0);
    lan.run_until(Instant(10_000_000));
    assert_eq!(lan.masters(), vec![0]);
    lan.start(1);
    lan.run_until(Instant(60_000_000));
    assert_eq!(
        lan.masters(),
        vec![0],
        "192.0.2.2 accepts the equal-priority master 192.0.2.1"
    );
}

/// Issue 8 item 5: a master whose source address goes away cannot advertise;
/// it used to stay master (and keep the VIPs) while the backup took over too.
/// Now it goes to FAULT and releases the VIPs, the backup takes over, and
/// when the address returns the higher priority preempts back: one holder.
#[test]
fn master_without_source_address_goes_fault_and_one_holder_remains__SM14() {
    let mut lan = SimLan::new(vec![cfg(150, 100), cfg(100, 100)], Micros::ZERO);
    lan.start(0);
    lan.start(1);
    lan.run_until(Instant(10_000_000));
    assert_eq!((lan.masters(), lan.holders()), (vec![0], vec![0]));
    let last = lan.last_advert_sent(0).unwrap();
    lan.input(0, Input::LocalAddr(None));
    assert_eq!(lan.nodes[0].router.state(), State::Fault);
    assert!(!lan.holds(0), "a master without a source address must release its VIPs");
    lan.run_until(Instant(20_000_000));
    assert_eq!((lan.masters(), lan.holders()), (vec![1], vec![1]));
    assert_eq!(
        lan.last_state_change_to(1, State::Master).unwrap() - last,
        Micros(3_609_375),
        "the backup takes over at Master_Down_Interval after the last advert"
    );
    // The link flapping meanwhile does not bring it back without an address.
    lan.input(0, Input::LinkDown);
    lan.input(0, Input::LinkUp);
    assert_eq!(lan.nodes[0].router.state(), State::Fault);
    let back = lan.now;
    lan.input(0, Input::LocalAddr(Some(addr(0))));
    assert_eq!(lan.nodes[0].router.state(), State::Backup);
    lan.run_until(Instant(30_000_000));
    assert_eq!((lan.masters(), lan.holders()), (vec![0], vec![0]));
    assert_eq!(
        lan.last_state_change_to(0, State::Master).unwrap(),
        back + Micros(3_414_062),
        "priority 150 preempts after its own Master_Down_Interval"
    );
}

/// allowed_peers: a router that is not allowed cannot make us backup, and
/// its adverts are counted per reason (multicast mode).
#[test]
fn adverts_from_peers_not_allowed_are_discarded_and_counted__RX14() {
    let mut low = cfg(100, 100);
    low.allowed_peers = vec![addr(2)];
    let mut lan = SimLan::new(vec![cfg(200, 100), low], Micros::ZERO);
    lan.start(0);
    lan.start(1);
    lan.run_until(Instant(10_000_000));
    assert_eq!(lan.masters(), vec![0, 1], "node 1 ignores node 0, which is not allowed");
    let c = lan.nodes[1].router.status().counters;
    assert_eq!(c.adverts_received, 0);
    assert!(c.discards["peer_not_allowed"] >= 9, "{:?}", c.discards);
}
