//! SHELL: the instance table (a VRRP router per configured instance with the
//! shell's facts about it), the receive index, and the executor that carries
//! out the actions a router returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::facts::{family_of, tracked};
use super::Daemon;
use crate::config::Instance;
use crate::net::vrrp_socket::Family;
use crate::vrrp::router::Router;
use crate::vrrp::{wire, Action, Advert, ChecksumForm, Discard, Input, Received, RxError, State};

/// What the shell knows of one instance's VIPs on the interface.
#[derive(Default)]
pub(super) struct VipBook {
    /// Addresses we added (or found in place while master) and have not seen
    /// go: address -> prefix. Only these are ever deleted.
    pub owned: BTreeMap<IpAddr, u8>,
    /// Netlink requests in flight per address.
    pub inflight: BTreeMap<IpAddr, u32>,
    /// Wanted and seen in place during this hold (a later absence = EX2).
    pub confirmed: BTreeSet<IpAddr>,
    /// Deleted with success; seen again = a VIP that would not go.
    pub removed: BTreeSet<IpAddr>,
    pub readded: u64,
    pub add_failures: u64,
    pub remove_failures: u64,
    pub last_error: Option<String>,
    pub retry_at: Option<std::time::Instant>,
    pub backoff: Duration,
    /// Announcements waiting for the VIPs to be in place (count per VIP).
    pub announce: Option<u32>,
}

pub(super) struct Inst {
    pub cfg: Instance,
    pub router: Router,
    pub family: Family,
    pub src: Option<IpAddr>,
    pub link_up: bool,
    pub effective_priority: u8,
    /// The first weight-0 tracked interface that is down (FAULT while set).
    pub track_fault: Option<String>,
    pub master_tx: watch::Sender<bool>,
    pub vips: VipBook,
}

/// The instances and a (family, vrid) index for the receive path, rebuilt
/// whenever an instance is added or removed (250 instances: no linear scan
/// per advert).
#[derive(Default)]
pub(super) struct Instances {
    pub list: Vec<Inst>,
    rx_index: HashMap<(Family, u8), Vec<usize>>,
}

impl Instances {
    pub fn push(&mut self, inst: Inst) -> usize {
        self.list.push(inst);
        self.rebuild_index();
        self.list.len() - 1
    }

    pub fn remove(&mut self, i: usize) -> Inst {
        let x = self.list.remove(i);
        self.rebuild_index();
        x
    }

    fn rebuild_index(&mut self) {
        self.rx_index.clear();
        for (i, x) in self.list.iter().enumerate() {
            self.rx_index.entry((x.family, x.cfg.router.vrid)).or_default().push(i);
        }
    }

    pub fn position(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|x| x.cfg.name == name)
    }

    /// The instance a packet received on `ifname` belongs to.
    pub fn find(&self, ifname: &str, family: Family, vrid: u8) -> Option<usize> {
        self.rx_index
            .get(&(family, vrid))?
            .iter()
            .copied()
            .find(|&i| self.list.get(i).is_some_and(|x| x.cfg.rx_interface() == ifname))
    }
}

impl Daemon {
    /// Create a router for `inst`, remove stale VIPs of an earlier run (EX1,
    /// whatever their prefix) and start it.
    pub(super) async fn add_instance(&mut self, inst: Instance, startup_cleanup: bool) {
        // Stale VIPs may sit on the base and (use_vmac) on the macvlan.
        let mut homes = vec![inst.interface.clone()];
        homes.extend(inst.vmac.as_ref().map(|v| v.ifname.clone()));
        homes.retain(|h| startup_cleanup && !self.foreign_vmac(h));
        for home in &homes {
            if let Some(f) = self.links.facts(home).cloned() {
                let mut removed = false;
                for net in &inst.vips {
                    if let Some(&prefix) = f.addrs.get(&net.ip()) {
                        removed = true;
                        info!(
                            "{}: removing stale VIP {}/{prefix} left by an earlier run",
                            inst.name,
                            net.ip()
                        );
                        if let Err(e) = self.links.nl.del_address(f.index, net.ip(), prefix).await {
                            warn!("{}: removing stale VIP {}/{prefix}: {e}", inst.name, net.ip());
                        }
                    }
                }
                if removed {
                    self.refresh_now().await;
                }
            }
        }
        let link_up = self.links.is_up(&inst.interface);
        let (master_tx, master_rx) = watch::channel(false);
        self.mastership.insert(inst.name.clone(), master_rx);
        let family = family_of(&inst);
        let t = tracked(&inst, |n| self.links.is_up(n), &self.track.inputs(&inst));
        let (effective_priority, track_fault) = (t.priority, t.fault);
        if self.links.facts(&inst.interface).is_none() {
            warn!(
                "{}: interface {} does not exist (fault until it appears)",
                inst.name, inst.interface
            );
        }
        let router = Router::new(inst.router.clone(), None);
        let i = self.insts.push(Inst {
            cfg: inst,
            router,
            family,
            src: None,
            link_up,
            effective_priority,
            track_fault: track_fault.clone(),
            master_tx,
            vips: VipBook::default(),
        });
        self.ensure_sockets().await;
        let src = self.source_of(i, &self.configured_vips());
        let now = self.clock.now();
        let x = &mut self.insts.list[i];
        x.src = src;
        let mut actions = x.router.handle(now, Input::LocalAddr(src));
        if src.is_none() {
            warn!("{}: no usable source address on {}", x.cfg.name, x.cfg.interface);
        }
        if effective_priority != x.cfg.router.priority {
            actions.extend(x.router.handle(now, Input::SetPriority(effective_priority)));
        }
        if !link_up {
            actions.extend(x.router.handle(now, Input::LinkDown));
        }
        if let Some(what) = track_fault {
            warn!("{}: tracked {what} is down (weight 0: fault)", x.cfg.name);
            actions.extend(x.router.handle(now, Input::TrackFault(Some(what))));
        }
        actions.extend(x.router.handle(now, Input::Startup));
        self.exec(i, actions).await;
    }

    /// Feed one input to instance `i` and carry out what it returns.
    pub(super) async fn input(&mut self, i: usize, input: Input) {
        let now = self.clock.now();
        let actions = self.insts.list[i].router.handle(now, input);
        self.exec(i, actions).await;
    }

    pub(super) async fn on_timers(&mut self) {
        let now = self.clock.now();
        for i in 0..self.insts.list.len() {
            if self.insts.list[i].router.poll_at().is_some_and(|t| t <= now) {
                self.input(i, Input::Tick).await;
            }
        }
    }

    /// A packet from a receive task; returns the instance it reached, if any.
    pub(super) async fn on_rx(
        &mut self,
        ifname: &str,
        family: Family,
        result: Result<Received, Discard>,
    ) -> Option<usize> {
        let vrid = match &result {
            Ok(r) => Some(r.advert.vrid),
            Err(d) => d.vrid,
        };
        let target = vrid.and_then(|v| self.insts.find(ifname, family, v));
        match (target, result) {
            (Some(i), result) => {
                self.input(i, Input::Advert(result)).await;
                return Some(i);
            }
            (None, Ok(r)) => self.count_interface(
                ifname,
                &Discard {
                    reason: RxError::UnknownVrid,
                    vrid,
                    src: Some(r.src),
                },
            ),
            (None, Err(d)) => {
                let reason = if d.vrid.is_some() {
                    RxError::UnknownVrid
                } else {
                    d.reason
                };
                self.count_interface(ifname, &Discard { reason, ..d })
            }
        }
        None
    }

    fn count_interface(&mut self, ifname: &str, d: &Discard) {
        *self
            .stats
            .interface_discards
            .entry(d.reason.name().to_string())
            .or_insert(0) += 1;
        self.log_discard(ifname, d);
    }

    /// The one discard log line, rate-limited per (where, reason).
    fn log_discard(&mut self, whom: &str, d: &Discard) {
        if let Some(suppressed) = self.limiter.allow(format!("{whom}/{}", d.reason.name())) {
            let from = d.src.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
            let vrid = d.vrid.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
            warn!(
                "{whom}: discarded VRRP packet from {from} (vrid {vrid}): {} [{suppressed} similar suppressed]",
                d.reason
            );
        }
    }

    /// Carry out a router's actions, in order.
    pub(super) async fn exec(&mut self, i: usize, actions: Vec<Action>) {
        let x = &self.insts.list[i];
        self.obs
            .on_actions(&x.cfg.name, &actions, x.router.knows_master(), self.clock.now());
        self.sync.dirty |= self.insts.list[i].cfg.sync_group.is_some();
        self.events.note(&self.insts.list[i], &actions);
        for a in actions {
            match a {
                Action::SendAdvert { advert, checksum_form } => self.send_advert(i, &advert, checksum_form),
                Action::AddVips(_) | Action::RemoveVips(_) => self.reconcile_vips(i),
                Action::Announce { count, .. } => self.request_announce(i, count),
                Action::StateChange { from, to, reason } => self.on_state_change(i, from, to, &reason.to_string()),
                Action::Discarded(d) => {
                    let name = self.insts.list[i].cfg.name.clone();
                    self.log_discard(&name, &d);
                }
                Action::AddressListMismatch { from, advertised } => {
                    let name = &self.insts.list[i].cfg.name;
                    if let Some(suppressed) = self.limiter.allow(format!("{name}/address_list_mismatch")) {
                        warn!("{name}: advert from {from} lists {advertised:?}, not our VIPs [{suppressed} similar suppressed]");
                    }
                }
                Action::ForeignOwner { from } => {
                    let name = &self.insts.list[i].cfg.name;
                    if let Some(suppressed) = self.limiter.allow(format!("{name}/foreign_owner")) {
                        warn!("{name}: priority 255 from {from}, which does not own our VIPs [{suppressed} similar suppressed]");
                    }
                }
                Action::HandedOver(o) => self.on_handed_over(i, &o),
                Action::IntervalAdopted {
                    configured,
                    adopted,
                    from,
                } => {
                    warn!(
                        "{}: master {from} advertises every {} µs, configured {} µs; adopting the master's interval",
                        self.insts.list[i].cfg.name,
                        adopted.to_micros().0,
                        configured.to_micros().0
                    );
                }
            }
        }
    }

    fn send_advert(&mut self, i: usize, advert: &Advert, form: ChecksumForm) {
        let inst = &self.insts.list[i];
        let Some(src) = inst.src else {
            if self.limiter.allow(format!("{}/nosrc", inst.cfg.name)).is_some() {
                warn!(
                    "{}: no source address on {}; advert not sent",
                    inst.cfg.name, inst.cfg.interface
                );
            }
            return;
        };
        let sock = match self.vmac_tx_socket(i) {
            Some(s) => s,
            None => match self
                .links
                .sockets
                .get(&(inst.cfg.rx_interface().to_string(), inst.family))
            {
                Some(s) => s.sock.clone(),
                None => return,
            },
        };
        let dsts: Vec<IpAddr> = if inst.cfg.router.unicast_peers.is_empty() {
            vec![inst.family.group()]
        } else {
            inst.cfg.router.unicast_peers.clone()
        };
        for dst in dsts {
            let bytes = wire::emit(advert, src, dst, form);
            if let Err(e) = sock.send(&bytes, src, dst) {
                if self.limiter.allow(format!("{}/send", inst.cfg.name)).is_some() {
                    warn!("{}: sending advert to {dst}: {e}", inst.cfg.name);
                }
            }
        }
    }

    fn on_state_change(&mut self, i: usize, from: State, to: State, reason: &str) {
        let inst = &self.insts.list[i];
        info!(
            instance = %inst.cfg.name,
            vrid = inst.cfg.router.vrid,
            state = to.name(),
            "{}: {} -> {} ({reason})",
            inst.cfg.name,
            from.name(),
            to.name()
        );
        let _ = inst.master_tx.send(to == State::Master);
        self.notify_status();
        self.notify_instance(i, to);
    }
}
