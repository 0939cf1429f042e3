//! The RFC 9568 §6 state machine for one virtual router (v3, and v2 per
//! RFC 3768). Pure: `handle(now, input) -> actions` and `poll_at()`; it does
//! no I/O and reads no clock. `change_state` is the only writer of `state`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::sync::{self, MemberView, Membership};
use super::{
    Action, Advert, ChecksumForm, Discard, HandoverOutcome, Input, Interval, Reason, Received, RouterConfig, RxError,
    State, Version,
};
use crate::time::{Instant, Micros};

/// Counters of one router, shown by `vipctl status --json` (EX5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub priority_zero_sent: u64,
    pub priority_zero_received: u64,
    pub transitions: u64,
    pub became_master: u64,
    /// Accepted adverts whose address list differs from our VIPs (RFC 9568 §7.1).
    #[serde(default)]
    pub address_list_mismatch: u64,
    /// Priority-255 adverts from a source that is not one of our VIPs.
    #[serde(default)]
    pub foreign_owner_adverts: u64,
    /// Lower-priority adverts heard as master (a healed split brain) that
    /// made us re-announce our VIPs (gratuitous ARP / NA), at most once per
    /// advert interval, so clients leave the stepped-down node's MAC.
    #[serde(default)]
    pub lower_priority_reannounced: u64,
    /// Per `RxError::name()`; every reason present (0 if never seen).
    pub discards: BTreeMap<String, u64>,
}

/// Snapshot for vipctl.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterStatus {
    pub name: String,
    pub vrid: u8,
    pub state: State,
    pub base_priority: u8,
    pub effective_priority: u8,
    pub master_addr: Option<IpAddr>,
    pub master_priority: Option<u8>,
    /// Configured interval, microseconds.
    pub advert_interval_us: u64,
    /// Interval in use (a v3 backup adopts the master's), microseconds.
    pub master_adver_interval_us: u64,
    pub vips: Vec<IpAddr>,
    pub counters: Counters,
    /// The last state change and why (`None` before the first).
    #[serde(default)]
    pub last_transition: Option<LastTransition>,
    /// `vipctl demote` in force: priority 1 (never preempts; takes over only
    /// when no other router is alive) until `vipctl promote`.
    #[serde(default)]
    pub demoted: bool,
}

/// A state change as status shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastTransition {
    pub from: State,
    pub to: State,
    /// Why, in words (`Reason`'s display form, e.g. "no source address").
    pub reason: String,
    /// When, on the core's clock (microseconds since the daemon started).
    pub at_us: u64,
}

/// Skew_Time (SM3). v3: ((256 - priority) × Master_Adver_Interval) / 256;
/// v2: (256 - priority) / 256 seconds.
pub fn skew_time(version: Version, priority: u8, master_adver_interval: Micros) -> Micros {
    let p = 256 - u64::from(priority);
    match version {
        Version::V3 => Micros(p * master_adver_interval.0 / 256),
        Version::V2 => Micros(p * 1_000_000 / 256),
    }
}

/// Master_Down_Interval = 3 × Master_Adver_Interval + Skew_Time (SM3).
pub fn master_down_interval(version: Version, priority: u8, master_adver_interval: Micros) -> Micros {
    Micros(3 * master_adver_interval.0) + skew_time(version, priority, master_adver_interval)
}

pub struct Router {
    cfg: RouterConfig,
    state: State,
    local_addr: Option<IpAddr>,
    /// Effective priority (base priority adjusted by tracking).
    priority: u8,
    link_up: bool,
    /// A weight-0 tracker that fails (FAULT while `Some`).
    track_fault: Option<String>,
    /// Interval in use: ours as master, the master's as a v3 backup.
    master_adver_interval: Micros,
    /// Last interval adopted from a master that differs from ours (logged once per change).
    adopted: Option<Interval>,
    advert_timer: Option<Instant>,
    master_down_timer: Option<Instant>,
    /// ready + preempt_delay, while a backup waits to preempt (SM7).
    preempt_deadline: Option<Instant>,
    /// Second GARP/NA burst (EX3).
    garp_timer: Option<Instant>,
    /// Last re-announcement after a lower-priority advert (SM11).
    lower_prio_announced_at: Option<Instant>,
    /// Next periodic announcement while master (garp_master_refresh).
    refresh_timer: Option<Instant>,
    master_addr: Option<IpAddr>,
    master_priority: Option<u8>,
    master_heard_at: Option<Instant>,
    /// The master's advertised interval and checksum form, from its last
    /// advert (recorded for `vipctl explain`; no rule reads them).
    master_interval: Option<Interval>,
    master_checksum_form: Option<ChecksumForm>,
    /// The last discarded packet and when (for `vipctl explain`).
    last_discard: Option<(Discard, Instant)>,
    /// Checksum form to send (v3/IPv4), learnt from the peers (RX5).
    tx_form: ChecksumForm,
    counters: Counters,
    last_transition: Option<LastTransition>,
    /// Demoted (`Input::Demote`): `priority` is 1 until `Input::Promote`.
    demoted: bool,
    /// The priority tracking and the config give; `priority` unless demoted.
    tracked_priority: u8,
    /// A planned handover in progress (master only).
    handover: Option<Handover>,
    /// Sync group membership (`sync.rs`).
    sync: Membership,
}

impl Router {
    /// A router in Initialize; `local_addr` is our source / tie-break address
    /// (`None`: none yet, so `Startup` goes to FAULT until `LocalAddr(Some)`).
    pub fn new(cfg: RouterConfig, local_addr: Option<IpAddr>) -> Self {
        let mut counters = Counters::default();
        for r in RxError::ALL {
            counters.discards.insert(r.name().to_string(), 0);
        }
        let cfg_priority = cfg.priority;
        Router {
            priority: cfg.priority,
            master_adver_interval: cfg.advert_interval.to_micros(),
            tx_form: cfg.checksum_form,
            cfg,
            state: State::Initialize,
            local_addr,
            link_up: true,
            track_fault: None,
            adopted: None,
            advert_timer: None,
            master_down_timer: None,
            preempt_deadline: None,
            garp_timer: None,
            lower_prio_announced_at: None,
            refresh_timer: None,
            master_addr: None,
            master_priority: None,
            master_heard_at: None,
            master_interval: None,
            master_checksum_form: None,
            last_discard: None,
            counters,
            last_transition: None,
            demoted: false,
            tracked_priority: cfg_priority,
            handover: None,
            sync: Membership::default(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    /// Whether this router knows of a live master: itself while master; while
    /// backup, the sender of the last accepted advert unless it sent priority 0.
    pub fn knows_master(&self) -> bool {
        match self.state {
            State::Master => true,
            State::Backup => self.master_addr.is_some() && self.master_priority != Some(0),
            State::Initialize | State::Fault => false,
        }
    }

    /// Earliest deadline at which `handle(now, Input::Tick)` must be called.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.state {
            State::Master => [
                self.advert_timer,
                self.garp_timer,
                self.refresh_timer,
                self.handover_due(),
            ]
            .into_iter()
            .flatten()
            .min(),
            State::Backup => [self.master_down_timer, self.preempt_deadline]
                .into_iter()
                .flatten()
                .min(),
            State::Initialize | State::Fault => None,
        }
    }

    pub fn status(&self) -> RouterStatus {
        RouterStatus {
            name: self.cfg.name.clone(),
            vrid: self.cfg.vrid,
            state: self.state,
            base_priority: self.cfg.priority,
            effective_priority: self.priority,
            master_addr: self.master_addr,
            master_priority: self.master_priority,
            advert_interval_us: self.cfg.advert_interval.to_micros().0,
            master_adver_interval_us: self.master_adver_interval.0,
            vips: self.cfg.vips.clone(),
            counters: self.counters.clone(),
            last_transition: self.last_transition.clone(),
            demoted: self.demoted,
        }
    }

    // Read-only views for `vipctl explain` (the shell turns instants into ages).

    /// Effective priority (base adjusted by tracking).
    pub fn priority(&self) -> u8 {
        self.priority
    }

    /// The last state change and why.
    pub fn last_transition(&self) -> Option<&LastTransition> {
        self.last_transition.as_ref()
    }

    /// When Master_Down_Timer fires (a backup's; `None` otherwise).
    pub fn master_down_at(&self) -> Option<Instant> {
        self.master_down_timer.filter(|_| self.state == State::Backup)
    }

    /// Master_Down_Interval with the current priority and interval in use.
    pub fn master_down_interval(&self) -> Micros {
        self.mdi()
    }

    /// When a waiting `preempt_delay` ends (a backup's; `None` otherwise).
    pub fn preempt_at(&self) -> Option<Instant> {
        self.preempt_deadline.filter(|_| self.state == State::Backup)
    }

    /// When the master's last advert was accepted (or ignored under preempt).
    pub fn master_heard_at(&self) -> Option<Instant> {
        self.master_heard_at
    }

    /// Interval and checksum form of the master's last advert.
    pub fn master_advert_form(&self) -> Option<(Interval, ChecksumForm)> {
        self.master_interval.zip(self.master_checksum_form)
    }

    /// The checksum form we send (v3 over IPv4: learnt from the peers).
    pub fn tx_checksum_form(&self) -> ChecksumForm {
        self.tx_form
    }

    /// The last discarded packet and when it came.
    pub fn last_discard(&self) -> Option<(&Discard, Instant)> {
        self.last_discard.as_ref().map(|(d, t)| (d, *t))
    }

    fn my_interval(&self) -> Micros {
        self.cfg.advert_interval.to_micros()
    }

    fn mdi(&self) -> Micros {
        master_down_interval(self.cfg.version, self.priority, self.master_adver_interval)
    }

    fn skew(&self) -> Micros {
        skew_time(self.cfg.version, self.priority, self.master_adver_interval)
    }

    fn advert(&mut self, priority: u8) -> Action {
        self.counters.adverts_sent += 1;
        if priority == 0 {
            self.counters.priority_zero_sent += 1;
        }
        Action::SendAdvert {
            advert: Advert {
                version: self.cfg.version,
                vrid: self.cfg.vrid,
                priority,
                interval: self.cfg.advert_interval,
                addrs: self.cfg.vips.clone(),
                auth: self.cfg.auth,
            },
            checksum_form: self.tx_form,
        }
    }

    fn discard(&mut self, now: Instant, d: Discard) -> Vec<Action> {
        *self.counters.discards.entry(d.reason.name().to_string()).or_insert(0) += 1;
        self.last_discard = Some((d.clone(), now));
        vec![Action::Discarded(d)]
    }

    /// The only entry point: feed one input at `now`, get the actions in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Action> {
        match input {
            Input::Startup => {
                if self.state != State::Initialize {
                    return Vec::new();
                }
                self.startup(now, Reason::Startup)
            }
            Input::Shutdown => {
                if self.state == State::Initialize {
                    return Vec::new();
                }
                self.change_state(now, State::Initialize, Reason::Shutdown)
            }
            Input::Advert(Err(d)) => self.discard(now, d),
            Input::Advert(Ok(r)) => self.on_advert(now, r),
            Input::Tick => self.on_tick(now),
            Input::LinkUp => {
                self.link_up = true;
                self.leave_fault(now, Reason::LinkUp)
            }
            Input::LinkDown => {
                self.link_up = false;
                match self.state {
                    State::Backup | State::Master => self.change_state(now, State::Fault, Reason::LinkDown),
                    State::Initialize | State::Fault => Vec::new(),
                }
            }
            Input::LocalAddr(a) => {
                self.local_addr = a;
                match (a, self.state) {
                    // No source: we could not advertise, so we must not hold the VIPs.
                    (None, State::Backup | State::Master) => {
                        self.change_state(now, State::Fault, Reason::NoSourceAddress)
                    }
                    (Some(_), _) => self.leave_fault(now, Reason::SourceAddressRestored),
                    (None, State::Initialize | State::Fault) => Vec::new(),
                }
            }
            Input::TrackFault(what) => {
                let was = std::mem::replace(&mut self.track_fault, what.clone());
                match (what, self.state) {
                    (Some(what), State::Backup | State::Master) => {
                        self.change_state(now, State::Fault, Reason::TrackFault { what })
                    }
                    (None, _) if was.is_some() => self.leave_fault(now, Reason::TrackRecovered),
                    _ => Vec::new(),
                }
            }
            Input::SetPriority(p) => {
                // TX4: 255 belongs to the address owner (configured 255), 0 to leaving.
                let p = if self.cfg.priority == 255 {
                    p.max(1)
                } else {
                    p.clamp(1, 254)
                };
                self.tracked_priority = p;
                if self.demoted || p == self.priority {
                    return Vec::new();
                }
                self.priority = p;
                if self.state == State::Master && self.handover.is_none() {
                    // Tell the backups at once (a lowered master may be preempted now).
                    self.advert_timer = Some(now + self.my_interval());
                    vec![self.advert(p)]
                } else {
                    Vec::new()
                }
            }
            Input::Config(new) => self.on_config(now, new),
            Input::Demote { timeout } => self.demote(now, timeout),
            Input::Promote => self.promote(now),
            Input::Leave { timeout } => self.leave(now, timeout),
            Input::Sync(c) => self.on_sync(now, c),
        }
    }

    /// Ready = link up and a source address: from FAULT, startup rules again (SM14).
    fn leave_fault(&mut self, now: Instant, reason: Reason) -> Vec<Action> {
        if self.state == State::Fault {
            self.startup(now, reason)
        } else {
            Vec::new()
        }
    }

    /// SM1 / SM2 (and SM14 on link up); FAULT unless the link is up and we
    /// have a source address to advertise from.
    fn startup(&mut self, now: Instant, reason: Reason) -> Vec<Action> {
        self.master_adver_interval = self.my_interval();
        if !self.link_up {
            return self.change_state(now, State::Fault, Reason::LinkDown);
        }
        if self.local_addr.is_none() {
            return self.change_state(now, State::Fault, Reason::NoSourceAddress);
        }
        if let Some(what) = &self.track_fault {
            let what = what.clone();
            return self.change_state(now, State::Fault, Reason::TrackFault { what });
        }
        if let Some(why) = &self.sync.fault {
            let why = why.clone();
            return self.change_state(now, State::Fault, Reason::SyncGroup { why });
        }
        if self.priority == 255 {
            self.change_state(now, State::Master, Reason::AddressOwner)
        } else {
            self.change_state(now, State::Backup, reason)
        }
    }

    /// An advert that passed the wire checks: the instance-level checks
    /// (discard), the §7.1 observations (log and count), then the rules of
    /// the current state.
    fn on_advert(&mut self, now: Instant, r: Received) -> Vec<Action> {
        if let Some(reason) = self.rx_check(&r) {
            return self.discard(
                now,
                Discard {
                    reason,
                    vrid: Some(r.advert.vrid),
                    src: Some(r.src),
                },
            );
        }
        let mut out = self.accept(&r);
        match self.state {
            State::Initialize | State::Fault => {}
            State::Backup => self.backup_hears(now, &r, &mut out),
            State::Master => self.master_hears(now, &r, &mut out),
        }
        out
    }

    /// Instance-level receive checks (RFC 9568 §7.1), in order; `Some` discards.
    fn rx_check(&self, r: &Received) -> Option<RxError> {
        let a = &r.advert;
        if a.vrid != self.cfg.vrid {
            Some(RxError::UnknownVrid) // RX6
        } else if a.version != self.cfg.version {
            Some(RxError::VersionMismatch) // RX3
        } else if Some(r.src) == self.local_addr {
            Some(RxError::OwnAddress) // RX13
        } else if !self.cfg.unicast_peers.is_empty() && !self.cfg.unicast_peers.contains(&r.src) {
            Some(RxError::NotAPeer) // RX14
        } else if !self.cfg.allowed_peers.is_empty() && !self.cfg.allowed_peers.contains(&r.src) {
            Some(RxError::PeerNotAllowed)
        } else if a.version == Version::V2 && a.interval != self.cfg.advert_interval {
            Some(RxError::IntervalMismatch) // RX10 (v2)
        } else if a.version == Version::V2 && a.auth != self.cfg.auth {
            Some(RxError::AuthMismatch) // RX11
        } else {
            None
        }
    }

    /// Count an accepted advert, learn the peer's checksum form (RX5), and
    /// report what §7.1 asks to log without discarding: an address list
    /// other than ours, and a priority-255 claim from a non-owner.
    fn accept(&mut self, r: &Received) -> Vec<Action> {
        let a = &r.advert;
        let mut out = Vec::new();
        self.counters.adverts_received += 1;
        if a.priority == 0 {
            self.counters.priority_zero_received += 1;
        }
        if self.cfg.version == Version::V3 && r.src.is_ipv4() {
            self.tx_form = r.checksum_form;
        }
        let vips = &self.cfg.vips;
        if a.addrs.len() != vips.len()
            || !a.addrs.iter().all(|x| vips.contains(x))
            || !vips.iter().all(|x| a.addrs.contains(x))
        {
            self.counters.address_list_mismatch += 1;
            out.push(Action::AddressListMismatch {
                from: r.src,
                advertised: a.addrs.clone(),
            });
        }
        if a.priority == 255 && !vips.contains(&r.src) {
            self.counters.foreign_owner_adverts += 1;
            out.push(Action::ForeignOwner { from: r.src });
        }
        out
    }

    /// Backup: SM5 (the master leaves), SM6 (reset the timer, or ignore a
    /// lower priority with preempt on).
    fn backup_hears(&mut self, now: Instant, r: &Received, out: &mut Vec<Action>) {
        let prio = r.advert.priority;
        if prio == 0 {
            // SM5: the master is leaving; take over after Skew_Time.
            self.sync.wants_master = false;
            self.master_down_timer = Some(now + self.skew());
            self.master_priority = Some(0);
            return;
        }
        let in_delay = self.preempt_deadline.is_some_and(|d| now < d);
        let accept = !self.cfg.preempt || prio >= self.priority || in_delay;
        self.master_addr = Some(r.src);
        self.master_priority = Some(prio);
        self.master_heard_at = Some(now);
        self.master_interval = Some(r.advert.interval);
        self.master_checksum_form = Some(r.checksum_form);
        if accept {
            // SM6: adopt the master's interval (v3, RX10) and reset the timer.
            out.extend(self.adopt_interval(r.advert.interval, r.src));
            self.sync.wants_master = false;
            self.master_down_timer = Some(now + self.mdi());
        }
        // else: preempt on and a lower priority: ignore; the timer fires.
    }

    /// RX10 (v3): a backup uses the master's interval; a difference from our
    /// configuration is reported once per change.
    fn adopt_interval(&mut self, interval: Interval, from: IpAddr) -> Option<Action> {
        let Interval::V3(_) = interval else {
            return None;
        };
        let differs = interval != self.cfg.advert_interval;
        let adv = interval.to_micros();
        if adv == self.master_adver_interval && !(differs && self.adopted != Some(interval)) {
            return None;
        }
        self.master_adver_interval = adv;
        let report = (differs && self.adopted != Some(interval)).then_some(Action::IntervalAdopted {
            configured: self.cfg.advert_interval,
            adopted: interval,
            from,
        });
        self.adopted = differs.then_some(interval);
        report
    }

    /// Master: SM9 (priority 0: answer at once), SM10 (yield to a higher
    /// priority or an equal one from a higher address), SM11 (reassert over
    /// a lower one).
    fn master_hears(&mut self, now: Instant, r: &Received, out: &mut Vec<Action>) {
        let prio = r.advert.priority;
        if self.handover.is_some() {
            // Handing over: the first advert of another master is our successor's.
            self.heard_successor(now, r);
            return;
        }
        if prio == 0 {
            // SM9
            self.advert_timer = Some(now + self.my_interval());
            out.push(self.advert(self.priority));
        } else if prio > self.priority || (prio == self.priority && self.is_higher_addr(r.src)) {
            // SM10
            if let Interval::V3(_) = r.advert.interval {
                self.master_adver_interval = r.advert.interval.to_micros();
            }
            self.master_addr = Some(r.src);
            self.master_priority = Some(prio);
            self.master_heard_at = Some(now);
            self.master_interval = Some(r.advert.interval);
            self.master_checksum_form = Some(r.checksum_form);
            let reason = if prio > self.priority {
                Reason::HigherPriority {
                    priority: prio,
                    from: r.src,
                }
            } else {
                Reason::EqualPriorityHigherAddress {
                    priority: prio,
                    from: r.src,
                }
            };
            out.extend(self.change_state(now, State::Backup, reason));
        } else if prio < self.priority {
            // SM11 (RFC 9568): reassert at once.
            self.advert_timer = Some(now + self.my_interval());
            out.push(self.advert(self.priority));
            // Another master means clients may have learnt its MAC for our
            // VIPs (a healed partition): announce again, as keepalived's
            // garp_lower_prio_repeat does (0 = never), at most once per
            // advert interval.
            let count = self
                .cfg
                .announce
                .lower_prio_repeat
                .unwrap_or(self.cfg.garp_master_repeat);
            if count > 0
                && self
                    .lower_prio_announced_at
                    .is_none_or(|t| now >= t + self.my_interval())
            {
                self.lower_prio_announced_at = Some(now);
                self.counters.lower_priority_reannounced += 1;
                out.push(Action::Announce {
                    vips: self.cfg.vips.clone(),
                    count,
                });
            }
        }
    }

    /// The next garp_master_refresh deadline after `now` (`None`: off).
    fn next_refresh(&self, now: Instant) -> Option<Instant> {
        let every = self.cfg.announce.refresh;
        (every.0 > 0).then(|| now + every)
    }

    /// SM10 tie-break: `src` is above our address, compared as unsigned integers.
    fn is_higher_addr(&self, src: IpAddr) -> bool {
        match (src, self.local_addr) {
            (IpAddr::V4(s), Some(IpAddr::V4(l))) => u32::from(s) > u32::from(l),
            (IpAddr::V6(s), Some(IpAddr::V6(l))) => u128::from(s) > u128::from(l),
            (_, None) => true,
            _ => false,
        }
    }

    fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Master if self.handover.is_some() => return self.handover_tick(now),
            State::Master => {
                if self.advert_timer.is_some_and(|t| t <= now) {
                    // SM8
                    self.advert_timer = Some(now + self.my_interval());
                    out.push(self.advert(self.priority));
                }
                if self.garp_timer.is_some_and(|t| t <= now) {
                    self.garp_timer = None;
                    out.push(Action::Announce {
                        vips: self.cfg.vips.clone(),
                        count: self.cfg.garp_master_repeat,
                    });
                }
                if self.refresh_timer.is_some_and(|t| t <= now) {
                    // garp_master_refresh: periodic, counted from the last one.
                    self.refresh_timer = self.next_refresh(now);
                    out.push(Action::Announce {
                        vips: self.cfg.vips.clone(),
                        count: self.cfg.announce.refresh_repeat,
                    });
                }
            }
            State::Backup => {
                if self.master_down_timer.is_some_and(|t| t <= now) {
                    if self.sync.joined {
                        // A sync group member waits for every member (sync.rs).
                        self.master_down_timer = None;
                        self.sync.wants_master = true;
                        return out;
                    }
                    // SM4
                    return self.change_state(now, State::Master, Reason::MasterDownTimer);
                }
                if self.preempt_deadline.is_some_and(|t| t <= now) {
                    // SM7: the delay is over; preempt a lower-priority master still alive.
                    self.preempt_deadline = None;
                    let alive = self.master_heard_at.is_some_and(|h| now.since(h) < self.mdi());
                    if self.cfg.preempt && alive && self.master_priority.is_some_and(|p| p > 0 && p < self.priority) {
                        if self.sync.joined {
                            self.master_down_timer = None;
                            self.sync.wants_master = true;
                            return out;
                        }
                        let priority = self.priority;
                        return self.change_state(now, State::Master, Reason::PreemptHigherPriority { priority });
                    }
                }
            }
            State::Initialize | State::Fault => {}
        }
        out
    }

    fn on_config(&mut self, now: Instant, new: RouterConfig) -> Vec<Action> {
        let old = std::mem::replace(&mut self.cfg, new);
        let mut out = Vec::new();
        if old.priority != self.cfg.priority {
            self.tracked_priority = self.cfg.priority;
            if !self.demoted {
                self.priority = self.cfg.priority;
            }
        }
        if old.advert_interval != self.cfg.advert_interval && self.state == State::Master {
            self.master_adver_interval = self.my_interval();
            self.advert_timer = Some(now + self.my_interval());
        }
        if self.cfg.version == Version::V2 || self.state != State::Backup {
            self.master_adver_interval = self.my_interval();
        }
        if !self.cfg.preempt {
            self.preempt_deadline = None;
        }
        if self.state == State::Master && old.announce.refresh != self.cfg.announce.refresh {
            self.refresh_timer = self.next_refresh(now);
        }
        if self.state == State::Master {
            let gone: Vec<IpAddr> = old
                .vips
                .iter()
                .filter(|v| !self.cfg.vips.contains(v))
                .copied()
                .collect();
            let added: Vec<IpAddr> = self
                .cfg
                .vips
                .iter()
                .filter(|v| !old.vips.contains(v))
                .copied()
                .collect();
            if !gone.is_empty() {
                out.push(Action::RemoveVips(gone));
            }
            if !added.is_empty() {
                out.push(Action::AddVips(added.clone()));
                out.push(Action::Announce {
                    vips: added,
                    count: self.cfg.garp_master_repeat,
                });
            }
            if (old.priority != self.cfg.priority
                || old.vips != self.cfg.vips
                || old.advert_interval != self.cfg.advert_interval)
                && self.handover.is_none()
            {
                self.advert_timer = Some(now + self.my_interval());
                out.push(self.advert(self.priority));
            }
        }
        out
    }

    /// What the instance's sync group needs to know of it (`sync.rs`).
    pub fn sync_view(&self) -> MemberView {
        MemberView {
            state: Some(self.state),
            own_fault: self.state != State::Initialize
                && (!self.link_up || self.local_addr.is_none() || self.track_fault.is_some()),
            sync_fault: self.sync.fault.is_some(),
            wants_master: self.sync.wants_master,
            handing_over: self.handover.is_some(),
        }
    }

    /// An input from the sync group (`sync.rs`).
    fn on_sync(&mut self, now: Instant, c: sync::Command) -> Vec<Action> {
        match c {
            sync::Command::Join(joined) => {
                self.sync.joined = joined;
                if joined {
                    return Vec::new();
                }
                let mut out = Vec::new();
                if self.sync.fault.take().is_some() {
                    let why = "left its sync group".to_string();
                    out.extend(self.leave_fault(now, Reason::SyncGroup { why }));
                }
                if std::mem::take(&mut self.sync.wants_master) && self.state == State::Backup {
                    out.extend(self.change_state(now, State::Master, Reason::MasterDownTimer));
                }
                out
            }
            sync::Command::Fault(Some(why)) => {
                self.sync.fault = Some(why.clone());
                match self.state {
                    State::Backup | State::Master => self.change_state(now, State::Fault, Reason::SyncGroup { why }),
                    State::Initialize | State::Fault => Vec::new(),
                }
            }
            sync::Command::Fault(None) => {
                if self.sync.fault.take().is_some() {
                    let why = "sync group: no member in fault".to_string();
                    self.leave_fault(now, Reason::SyncGroup { why })
                } else {
                    Vec::new()
                }
            }
            sync::Command::Master(why) if self.state == State::Backup && self.sync.wants_master => {
                self.change_state(now, State::Master, Reason::SyncGroup { why })
            }
            sync::Command::Backup(why) if self.state == State::Master => {
                self.change_state(now, State::Backup, Reason::SyncGroup { why })
            }
            sync::Command::Master(_) | sync::Command::Backup(_) => Vec::new(),
        }
    }

    /// Performs every transition: VIPs, announcements, timers, the state
    /// change action. The only writer of `self.state`.
    fn change_state(&mut self, now: Instant, to: State, reason: Reason) -> Vec<Action> {
        let from = self.state;
        let mut out = Vec::new();
        if from == to {
            return out;
        }
        // A handover cut short by another transition (link down, fault...).
        let cut = self.handover.take().map(|h| h.outcome(now, to != State::Master));
        self.advert_timer = None;
        self.sync.wants_master = false;
        self.lower_prio_announced_at = None;
        self.master_down_timer = None;
        self.garp_timer = None;
        self.refresh_timer = None;
        if to != State::Backup {
            self.preempt_deadline = None;
        }
        match to {
            State::Master => {
                // SM1 / SM4: advertise, take the VIPs, announce them. The
                // advert goes first (RFC order): taking it after the netlink
                // round trip measurably delayed it past Master_Down_Interval.
                self.master_adver_interval = self.my_interval();
                self.adopted = None;
                out.push(self.advert(self.priority));
                out.push(Action::AddVips(self.cfg.vips.clone()));
                out.push(Action::Announce {
                    vips: self.cfg.vips.clone(),
                    count: self.cfg.garp_master_repeat,
                });
                self.advert_timer = Some(now + self.my_interval());
                if self.cfg.garp_master_delay.0 > 0 {
                    self.garp_timer = Some(now + self.cfg.garp_master_delay);
                }
                self.refresh_timer = self.next_refresh(now);
                self.master_addr = self.local_addr;
                self.master_priority = Some(self.priority);
                self.counters.became_master += 1;
            }
            State::Backup => {
                if from == State::Master {
                    // Sent back by the sync group: priority 0, so the peer's
                    // member takes over after Skew_Time with the others.
                    if matches!(reason, Reason::SyncGroup { .. }) {
                        out.push(self.advert(0));
                    }
                    // SM10 / SM13: a backup never holds the VIPs.
                    out.push(Action::RemoveVips(self.cfg.vips.clone()));
                } else {
                    // Ready: from Initialize or Fault (SM7 counts from here).
                    self.master_addr = None;
                    self.master_priority = None;
                    self.master_heard_at = None;
                    self.preempt_deadline =
                        (self.cfg.preempt && self.cfg.preempt_delay.0 > 0).then(|| now + self.cfg.preempt_delay);
                }
                self.master_down_timer = Some(now + self.mdi());
            }
            State::Fault => {
                if from == State::Master {
                    // A tracker failed but the link and source are fine: leave
                    // with priority 0 (as keepalived does) so a backup takes
                    // over after Skew_Time instead of Master_Down_Interval.
                    if matches!(reason, Reason::TrackFault { .. } | Reason::SyncGroup { .. }) {
                        out.push(self.advert(0));
                    }
                    out.push(Action::RemoveVips(self.cfg.vips.clone()));
                }
                self.master_addr = None;
                self.master_priority = None;
            }
            State::Initialize => {
                if from == State::Master {
                    // SM12: leave with priority 0 so a backup takes over after Skew_Time.
                    out.push(self.advert(0));
                    out.push(Action::RemoveVips(self.cfg.vips.clone()));
                }
                self.master_addr = None;
                self.master_priority = None;
            }
        }
        self.state = to;
        self.counters.transitions += 1;
        self.last_transition = Some(LastTransition {
            from,
            to,
            reason: reason.to_string(),
            at_us: now.as_micros(),
        });
        out.push(Action::StateChange { from, to, reason });
        out.extend(cut.map(Action::HandedOver));
        out
    }
}

/// How long a handing-over master keeps its VIPs (and keeps serving) after
/// the successor's first advert as master, at most; at least
/// [`HANDOVER_HOLD_MIN`]; in between, the successor's advert interval
/// ([`handover_hold`]). The successor sends that advert, then adds the VIPs
/// (a netlink round trip) and only then its gratuitous ARP / unsolicited NA;
/// clients move when that arrives. Measured from the first advert to the
/// first GARP on the wire (`scripts/bench-failover`, docs/handover.md): a
/// median of 0.1-0.5 ms, at worst 8.8 ms on a busy 2-core machine. Two
/// nodes hold a VIP together for one advert interval (at least 20 ms, at
/// most 100 ms).
pub const HANDOVER_HOLD: Micros = Micros(100_000);

/// The shortest hold: twice the worst advert-to-GARP delay measured.
pub const HANDOVER_HOLD_MIN: Micros = Micros(20_000);

/// The hold after a successor advertising every `interval` (see [`HANDOVER_HOLD`]).
pub fn handover_hold(interval: Micros) -> Micros {
    Micros(interval.0.clamp(HANDOVER_HOLD_MIN.0, HANDOVER_HOLD.0))
}

/// The longest a master waits for a successor.
pub const HANDOVER_MAX: Micros = Micros(5_000_000);

/// How long a master advertising every `interval` waits for a successor
/// before it leaves anyway (SIGTERM) or gives up a demote: 3 intervals (two
/// lost priority-0 adverts; a backup takes over after Skew_Time < 1
/// interval) + 100 ms, at most [`HANDOVER_MAX`].
pub fn handover_timeout(interval: Micros) -> Micros {
    Micros((3 * interval.0 + 100_000).min(HANDOVER_MAX.0))
}

/// A planned handover of a master (make-before-break): priority-0 adverts
/// every interval, the VIPs kept until a successor has advertised as master
/// plus [`HANDOVER_HOLD`].
#[derive(Clone, Debug)]
struct Handover {
    /// `Leave` (ends in Initialize, releases at the deadline regardless).
    leave: bool,
    started: Instant,
    deadline: Instant,
    /// The first advert heard from another master: who, when, and when to
    /// release (after `handover_hold`).
    successor: Option<(IpAddr, Instant, Instant)>,
}

impl Handover {
    fn outcome(&self, now: Instant, released: bool) -> HandoverOutcome {
        HandoverOutcome {
            successor: self.successor.map(|s| s.0),
            successor_after: self.successor.map(|s| s.1.since(self.started)),
            released_after: released.then(|| now.since(self.started)),
            leave: self.leave,
        }
    }
}

impl Router {
    /// Demoted with `vipctl demote` and not promoted since.
    pub fn demoted(&self) -> bool {
        self.demoted
    }

    /// A planned handover is in progress.
    pub fn handing_over(&self) -> bool {
        self.handover.is_some()
    }

    /// When the handover needs a tick: release after the hold, or the deadline.
    fn handover_due(&self) -> Option<Instant> {
        let h = self.handover.as_ref()?;
        Some(h.successor.map_or(h.deadline, |(_, _, release)| release))
    }

    /// Priority 1 from now on; a master starts a handover (priority 0 at once).
    fn demote(&mut self, now: Instant, timeout: Micros) -> Vec<Action> {
        self.demoted = true;
        self.priority = 1;
        self.preempt_deadline = None;
        if self.state != State::Master || self.handover.is_some() {
            return Vec::new();
        }
        self.begin_handover(now, timeout, false)
    }

    /// Graceful exit: a master hands over first; any other state leaves now.
    fn leave(&mut self, now: Instant, timeout: Micros) -> Vec<Action> {
        match (&mut self.handover, self.state) {
            (Some(h), _) => {
                // A demote in progress becomes the exit.
                h.leave = true;
                h.deadline = h.deadline.min(now + timeout);
                Vec::new()
            }
            (None, State::Master) => self.begin_handover(now, timeout, true),
            (None, State::Initialize) => Vec::new(),
            (None, _) => self.change_state(now, State::Initialize, Reason::Shutdown),
        }
    }

    fn begin_handover(&mut self, now: Instant, timeout: Micros, leave: bool) -> Vec<Action> {
        self.handover = Some(Handover {
            leave,
            started: now,
            deadline: now + timeout,
            successor: None,
        });
        // No announcements while leaving (they resume if a demote fails).
        self.garp_timer = None;
        self.refresh_timer = None;
        // TX4 / SM12: priority 0 = leaving; backups take over after Skew_Time.
        self.advert_timer = Some(now + self.my_interval());
        vec![self.advert(0)]
    }

    /// The tracked priority again; a demote still waiting is cancelled (we
    /// stay master and say so at once).
    fn promote(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.demoted {
            return out;
        }
        self.demoted = false;
        self.priority = self.tracked_priority;
        if self.handover.as_ref().is_some_and(|h| !h.leave) {
            if let Some(h) = self.handover.take() {
                self.advert_timer = Some(now + self.my_interval());
                self.refresh_timer = self.next_refresh(now);
                out.push(self.advert(self.priority));
                out.push(Action::HandedOver(h.outcome(now, false)));
            }
        } else if self.state == State::Backup && self.cfg.preempt && self.cfg.preempt_delay.0 > 0 {
            self.preempt_deadline = Some(now + self.cfg.preempt_delay);
        }
        out
    }

    fn heard_successor(&mut self, now: Instant, r: &Received) {
        let Some(h) = self.handover.as_mut() else {
            return;
        };
        if r.advert.priority > 0 && h.successor.is_none() {
            h.successor = Some((r.src, now, now + handover_hold(r.advert.interval.to_micros())));
            self.master_priority = Some(r.advert.priority);
            // Nothing more to say: a priority 0 now would only make the new
            // master answer at once (SM9).
            self.advert_timer = None;
        }
    }

    fn handover_tick(&mut self, now: Instant) -> Vec<Action> {
        let Some(h) = self.handover.clone() else {
            return Vec::new();
        };
        let due = h.successor.map_or(h.deadline, |(_, _, release)| release);
        if now >= due {
            return self.finish_handover(now, h);
        }
        let mut out = Vec::new();
        if h.successor.is_none() && self.advert_timer.is_some_and(|t| t <= now) {
            // Keep saying priority 0 (a lost one would leave the backups on
            // Master_Down_Interval); Skew_Time < interval, so a repeat never
            // postpones a backup's takeover.
            self.advert_timer = Some(now + self.my_interval());
            out.push(self.advert(0));
        }
        out
    }

    fn finish_handover(&mut self, now: Instant, h: Handover) -> Vec<Action> {
        self.handover = None;
        let mut out = match (h.successor, h.leave) {
            (Some((src, at, _)), leave) => {
                let to = if leave { State::Initialize } else { State::Backup };
                let prio = self.master_priority;
                let out = self.change_state(now, to, Reason::HandedOver { to: Some(src) });
                if !leave {
                    self.master_addr = Some(src);
                    self.master_priority = prio;
                    self.master_heard_at = Some(at);
                }
                out
            }
            // Nobody took over in time: leave anyway (bounded exit).
            (None, true) => self.change_state(now, State::Initialize, Reason::HandedOver { to: None }),
            // Demote failed: stay master at our priority, say so at once.
            (None, false) => {
                self.demoted = false;
                self.priority = self.tracked_priority;
                self.advert_timer = Some(now + self.my_interval());
                self.refresh_timer = self.next_refresh(now);
                vec![self.advert(self.priority)]
            }
        };
        let released = self.state != State::Master;
        out.push(Action::HandedOver(h.outcome(now, released)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hold and wait of a handover at 10 ms, 100 ms, 1 s and 2 s adverts.
    #[test]
    fn handover_hold_and_timeout_bounds() {
        let ms = Micros::from_millis;
        let holds: Vec<Micros> = [10, 100, 1000].map(|i| handover_hold(ms(i))).to_vec();
        assert_eq!(holds, vec![ms(20), ms(100), ms(100)]);
        let waits: Vec<Micros> = [10, 100, 1000, 2000].map(|i| handover_timeout(ms(i))).to_vec();
        assert_eq!(waits, vec![ms(130), ms(400), ms(3100), ms(5000)]);
    }

    /// `vipctl status --json` of an older vipd has neither new counter.
    #[test]
    fn counters_without_the_newer_fields_still_parse() {
        let old = r#"{"adverts_sent":1,"adverts_received":2,"priority_zero_sent":0,
            "priority_zero_received":0,"transitions":1,"became_master":1,"discards":{"too_short":0}}"#;
        let c: Counters = serde_json::from_str(old).unwrap();
        assert_eq!(
            (c.adverts_received, c.address_list_mismatch, c.foreign_owner_adverts),
            (2, 0, 0)
        );
    }
}
