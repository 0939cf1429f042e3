//! SHELL: the kernel side of the daemon. Interface facts from netlink, one raw
//! VRRP socket per (interface, family) with its receive task, AF_PACKET
//! announcements, and VIP install and repair. Every netlink request runs in one
//! worker task, so a round trip never blocks the event loop; its results come
//! back as events and reach the instance (counted, retried with backoff, shown
//! in status), not only the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::facts::{plan_vips, source_for, VipPlan};
use super::instances::VipBook;
use super::{Daemon, Event};
use crate::net::announce::PacketSender;
use crate::net::inet_conf::DEVCONF_PROMOTE_SECONDARIES;
use crate::net::netlink::{read_facts, IfFacts, Netlink};
use crate::net::vrrp_socket::{Family, VrrpSocket};
use crate::vrrp::{wire, Input, State};

/// The first retry after a failed VIP change waits this long; it doubles per
/// failure up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A request for the netlink worker.
pub(super) enum Job {
    /// Re-read the facts of these interfaces.
    Refresh(Vec<String>),
    /// Add or delete one VIP of instance `inst`.
    Vip {
        inst: String,
        ifindex: u32,
        ip: IpAddr,
        prefix: u8,
        add: bool,
    },
}

/// What the netlink worker reports back.
pub(super) enum Reply {
    Facts(Vec<(String, Result<Option<IfFacts>, String>)>),
    Vip {
        inst: String,
        ip: IpAddr,
        prefix: u8,
        add: bool,
        result: Result<(), String>,
    },
}

/// Run netlink jobs in order (an add queued after a delete of the same
/// address runs after it) and post each result to the event loop.
pub(super) fn spawn_worker(nl: Netlink, events: mpsc::UnboundedSender<Event>) -> mpsc::UnboundedSender<Job> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
    tokio::spawn(async move {
        while let Some(job) = rx.recv().await {
            let reply = match job {
                Job::Refresh(names) => Reply::Facts(
                    read_facts(&nl, &names)
                        .await
                        .into_iter()
                        .map(|(n, r)| (n, r.map_err(|e| e.to_string())))
                        .collect(),
                ),
                Job::Vip {
                    inst,
                    ifindex,
                    ip,
                    prefix,
                    add,
                } => {
                    let r = if add {
                        nl.add_address(ifindex, ip, prefix).await
                    } else {
                        nl.del_address(ifindex, ip, prefix).await
                    };
                    Reply::Vip {
                        inst,
                        ip,
                        prefix,
                        add,
                        result: r.map_err(|e| e.to_string()),
                    }
                }
            };
            if events.send(Event::Netlink(reply)).is_err() {
                return;
            }
        }
    });
    tx
}

pub(super) struct SockEntry {
    pub sock: Arc<VrrpSocket>,
    ifindex: u32,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SockEntry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
pub(super) struct Iface {
    pub facts: Option<IfFacts>,
    packet: Option<PacketSender>,
    packet_index: u32,
}

/// Everything the daemon holds of the kernel: facts, sockets, the netlink worker.
pub(super) struct Links {
    /// For requests the event loop must await (start-up, reload, shutdown, and
    /// `promote_secondaries` when a VRRP socket opens on a new interface).
    pub nl: Netlink,
    pub jobs: mpsc::UnboundedSender<Job>,
    pub ifaces: BTreeMap<String, Iface>,
    pub sockets: HashMap<(String, Family), SockEntry>,
    refresh_inflight: bool,
    refresh_dirty: bool,
    /// `promote_secondaries` we changed: (interface, index, old value), restored on exit.
    sysctl_restore: Vec<(String, u32, i32)>,
    /// `use_vmac` macvlans and their send sockets (daemon/vmac.rs).
    pub(super) vmacs: super::vmac::Vmacs,
}

impl Links {
    pub fn new(nl: Netlink, jobs: mpsc::UnboundedSender<Job>) -> Links {
        Links {
            nl,
            jobs,
            ifaces: BTreeMap::new(),
            sockets: HashMap::new(),
            refresh_inflight: false,
            refresh_dirty: false,
            sysctl_restore: Vec::new(),
            vmacs: Default::default(),
        }
    }

    pub fn facts(&self, ifname: &str) -> Option<&IfFacts> {
        self.ifaces.get(ifname)?.facts.as_ref()
    }

    pub fn is_up(&self, ifname: &str) -> bool {
        self.facts(ifname).is_some_and(|f| f.up)
    }

    /// Set `promote_secondaries` on VRRP interface `ifname` (index `index`),
    /// so that deleting the interface's primary address does not take the VIPs
    /// (its secondaries) with it. Through rtnetlink, not /proc/sys (read-only
    /// under the unit's `ProtectKernelTunables=yes`). Restored on exit. Best
    /// effort: the source-address rules keep us correct without it (a VIP is
    /// never the source).
    pub async fn promote_secondaries(&mut self, ifname: &str, index: u32) {
        if self.sysctl_restore.iter().any(|(n, i, _)| n == ifname && *i == index) {
            return;
        }
        // An interface recreated under the same name starts from the kernel's default again.
        self.sysctl_restore.retain(|(n, _, _)| n != ifname);
        let old = match self.nl.promote_secondaries(index).await {
            Ok(Some(old)) => old,
            Ok(None) => {
                warn!("{ifname}: cannot read promote_secondaries: no IPv4 settings");
                return;
            }
            Err(e) => {
                warn!("{ifname}: cannot read promote_secondaries: {e}");
                return;
            }
        };
        if old == 1 {
            return;
        }
        match self.nl.set_inet_conf(index, &[(DEVCONF_PROMOTE_SECONDARIES, 1)]).await {
            Ok(()) => {
                debug!("{ifname}: promote_secondaries set (was {old})");
                self.sysctl_restore.push((ifname.to_string(), index, old));
            }
            Err(e) => warn!("{ifname}: cannot set promote_secondaries: {e}"),
        }
    }

    /// Put back the `promote_secondaries` values we changed (exit).
    pub async fn restore_sysctls(&mut self) {
        for (ifname, index, old) in std::mem::take(&mut self.sysctl_restore) {
            match self
                .nl
                .set_inet_conf(index, &[(DEVCONF_PROMOTE_SECONDARIES, old as u32)])
                .await
            {
                Ok(()) => debug!("{ifname}: promote_secondaries restored to {old}"),
                Err(e) => warn!("{ifname}: restoring promote_secondaries to {old}: {e}"),
            }
        }
    }
}

/// Receive task of one raw socket: decode each packet and hand the result
/// (errors included) to the event loop.
async fn reader(sock: Arc<VrrpSocket>, ifname: String, family: Family, tx: mpsc::UnboundedSender<Event>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let meta = match sock.recv(&mut buf).await {
            Ok(m) => m,
            Err(e) => {
                warn!("{ifname}: VRRP receive: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let data = &buf[..meta.len.min(buf.len())];
        let result = match family {
            Family::V4 => wire::decode_ipv4(data),
            Family::V6 => {
                let (Some(IpAddr::V6(src)), dst) = (meta.src, meta.dst) else {
                    continue;
                };
                let dst = match dst {
                    Some(IpAddr::V6(d)) => d,
                    _ => wire::GROUP_V6,
                };
                wire::decode_ipv6(src, dst, meta.hop_limit.unwrap_or(0), data)
            }
        };
        let ev = Event::Rx {
            ifname: ifname.clone(),
            family,
            result,
        };
        if tx.send(ev).is_err() {
            return;
        }
    }
}

impl VipBook {
    /// Record a plan and return the netlink jobs it needs, (address, prefix,
    /// add), skipping addresses with a request in flight. Counts a VIP that
    /// would not go and one removed behind our back (EX2, announced again).
    fn book(
        &mut self,
        plan: &VipPlan,
        want: &BTreeMap<IpAddr, u8>,
        have: &BTreeMap<IpAddr, u8>,
        name: &str,
        repeat: u32,
    ) -> Vec<(IpAddr, u8, bool)> {
        for ip in &plan.forget {
            // An add still in flight lands later: keep owning it, so the
            // reconcile after its result deletes it.
            if self.inflight.contains_key(ip) {
                continue;
            }
            self.owned.remove(ip);
            self.confirmed.remove(ip);
            self.removed.remove(ip);
        }
        for ip in &plan.present {
            self.owned.entry(*ip).or_insert(want[ip]);
            self.confirmed.insert(*ip);
        }
        let mut jobs = Vec::new();
        for &(ip, prefix) in &plan.del {
            if self.inflight.contains_key(&ip) {
                continue;
            }
            if self.removed.contains(&ip) && !want.contains_key(&ip) {
                self.remove_failures += 1;
                self.last_error = Some(format!("VIP {ip}/{prefix} still present after its removal"));
                warn!("{name}: VIP {ip}/{prefix} would not go; removing again");
            }
            jobs.push((ip, prefix, false));
        }
        for &(ip, prefix) in &plan.add {
            if self.inflight.contains_key(&ip) && !plan.del.iter().any(|d| d.0 == ip) {
                continue;
            }
            if self.confirmed.contains(&ip) && !have.contains_key(&ip) {
                self.readded += 1;
                self.announce = Some(self.announce.unwrap_or(0).max(repeat));
                warn!("{name}: VIP {ip}/{prefix} was removed behind our back; re-adding");
            }
            self.owned.insert(ip, prefix);
            jobs.push((ip, prefix, true));
        }
        jobs
    }
}

impl Daemon {
    /// Interfaces we need facts of: those of the instances and tracked ones.
    fn watched_interfaces(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for i in &self.cfg.instances {
            names.push(i.interface.clone());
            names.extend(i.vmac.as_ref().map(|v| v.ifname.clone()));
            names.extend(i.track_interface.iter().map(|t| t.interface.clone()));
        }
        names.sort();
        names.dedup();
        names
    }

    /// Read the facts now (start-up, reload), awaiting netlink.
    pub(super) async fn refresh_now(&mut self) {
        let names = self.watched_interfaces();
        let res = read_facts(&self.links.nl, &names).await;
        self.store_facts(
            res.into_iter()
                .map(|(n, r)| (n, r.map_err(|e| e.to_string())))
                .collect(),
        );
    }

    /// A link or address event: ask the worker for fresh facts (at most one
    /// request in flight; events meanwhile make one more).
    pub(super) fn request_refresh(&mut self) {
        if self.links.refresh_inflight {
            self.links.refresh_dirty = true;
            return;
        }
        self.links.refresh_inflight = true;
        let _ = self.links.jobs.send(Job::Refresh(self.watched_interfaces()));
    }

    pub(super) async fn on_netlink_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Facts(res) => {
                self.links.refresh_inflight = false;
                if std::mem::take(&mut self.links.refresh_dirty) {
                    self.request_refresh();
                }
                self.store_facts(res);
                self.on_facts_changed().await;
            }
            Reply::Vip {
                inst,
                ip,
                prefix,
                add,
                result,
            } => self.on_vip_result(&inst, ip, prefix, add, result).await,
        }
    }

    fn store_facts(&mut self, res: Vec<(String, Result<Option<IfFacts>, String>)>) {
        let names = self.watched_interfaces();
        self.links.ifaces.retain(|k, _| names.contains(k));
        for (name, r) in res {
            let facts = match r {
                Ok(f) => f,
                Err(e) => {
                    warn!("reading interface {name}: {e}");
                    continue;
                }
            };
            let entry = self.links.ifaces.entry(name.clone()).or_default();
            if let Some(f) = &facts {
                if entry.packet.is_none() || entry.packet_index != f.index {
                    match PacketSender::open(f.index) {
                        Ok(p) => {
                            entry.packet = Some(p);
                            entry.packet_index = f.index;
                        }
                        Err(e) => warn!("AF_PACKET socket on {name}: {e}"),
                    }
                }
            }
            entry.facts = facts;
        }
    }

    /// Level-triggered: after fresh facts, recompute each instance's link,
    /// source and tracked priority, act on what changed, then make the
    /// interface hold exactly what the state says.
    pub(super) async fn on_facts_changed(&mut self) {
        self.sync_vmacs(false).await;
        self.ensure_sockets().await;
        let now = self.clock.now();
        let vips = self.configured_vips();
        for i in 0..self.insts.list.len() {
            let mut actions = Vec::new();
            let (name, ifname) = {
                let x = &self.insts.list[i];
                (x.cfg.name.clone(), x.cfg.interface.clone())
            };
            let up = self.links.is_up(&ifname);
            let src = self.source_of(i, &vips);
            let x = &mut self.insts.list[i];
            if up != x.link_up {
                x.link_up = up;
                info!("{name}: interface {ifname} is {}", if up { "up" } else { "down" });
                actions.extend(x.router.handle(now, if up { Input::LinkUp } else { Input::LinkDown }));
            }
            if src != x.src {
                match src {
                    Some(a) => info!("{name}: source address {a}"),
                    None => warn!("{name}: no usable source address on {ifname} (a VIP is never the source)"),
                }
                x.src = src;
                actions.extend(x.router.handle(now, Input::LocalAddr(src)));
            }
            actions.extend(self.retrack(i, now, "tracked interface"));
            self.exec(i, actions).await;
            self.reconcile_vips(i);
        }
    }

    /// Every VIP configured on any instance (never a source address).
    pub(super) fn configured_vips(&self) -> BTreeSet<IpAddr> {
        self.cfg
            .instances
            .iter()
            .flat_map(|i| i.vips.iter().map(|n| n.ip()))
            .collect()
    }

    /// Instance `i`'s source address, `None` without a usable one or a socket.
    pub(super) fn source_of(&self, i: usize, vips: &BTreeSet<IpAddr>) -> Option<IpAddr> {
        let x = &self.insts.list[i];
        if !self
            .links
            .sockets
            .contains_key(&(x.cfg.rx_interface().to_string(), x.family))
        {
            return None;
        }
        source_for(&x.cfg, self.links.facts(&x.cfg.interface), vips)
    }

    /// Open (or reopen after an interface was recreated) one raw socket per
    /// (interface, family) in use; close the ones no longer needed.
    pub(super) async fn ensure_sockets(&mut self) {
        let mut wanted: Vec<(String, Family)> = self
            .insts
            .list
            .iter()
            .map(|i| (i.cfg.rx_interface().to_string(), i.family))
            .collect();
        wanted.sort_by(|a, b| (&a.0, a.1 as u8).cmp(&(&b.0, b.1 as u8)));
        wanted.dedup();
        self.links.sockets.retain(|k, _| wanted.contains(k));
        for (name, fam) in wanted {
            if self.foreign_vmac(&name) {
                self.links.sockets.remove(&(name, fam));
                continue;
            }
            let Some(index) = self.links.facts(&name).map(|f| f.index) else {
                self.links.sockets.remove(&(name, fam));
                continue;
            };
            if self.links.sockets.get(&(name.clone(), fam)).map(|s| s.ifindex) == Some(index) {
                continue;
            }
            if fam == Family::V4 {
                self.links.promote_secondaries(&name, index).await;
            }
            match VrrpSocket::open(&name, index, fam) {
                Ok(sock) => {
                    let sock = Arc::new(sock);
                    let task = tokio::spawn(reader(sock.clone(), name.clone(), fam, self.ev_tx.clone()));
                    self.links.sockets.insert(
                        (name, fam),
                        SockEntry {
                            sock,
                            ifindex: index,
                            task,
                        },
                    );
                }
                Err(e) => error!("VRRP socket on {name} ({fam:?}): {e}"),
            }
        }
    }

    /// Gratuitous ARP / unsolicited NA for `vips` of instance `i`, `count` times.
    pub(super) fn announce(&mut self, i: usize, vips: &[IpAddr], count: u32) {
        let inst = &self.insts.list[i];
        let Some(iface) = self.links.ifaces.get(inst.cfg.vip_interface()) else {
            return;
        };
        let (Some(p), Some(f)) = (iface.packet.as_ref(), iface.facts.as_ref()) else {
            return;
        };
        let mut first = true;
        for _ in 0..count.max(1) {
            for vip in vips {
                let frame = match vip {
                    IpAddr::V4(v4) => crate::vrrp::announce::garp_frame(f.mac, *v4),
                    IpAddr::V6(v6) => {
                        let Some(ll) = f.link_local_v6.first() else { continue };
                        crate::vrrp::announce::unsolicited_na_frame(f.mac, *ll, *v6, false)
                    }
                };
                match p.send(&frame) {
                    Err(e) => debug!("{}: announce {vip}: {e}", inst.cfg.name),
                    Ok(_) if std::mem::take(&mut first) => self.obs.announced(&inst.cfg.name, self.clock.now()),
                    Ok(_) => {}
                }
            }
        }
    }

    /// The core asked to announce (the VIPs it names are the instance's):
    /// an announcement must follow the addresses, so `reconcile_vips` sends
    /// it once every VIP is in place, at once if they are.
    pub(super) fn request_announce(&mut self, i: usize, count: u32) {
        let b = &mut self.insts.list[i].vips;
        b.announce = Some(b.announce.unwrap_or(0).max(count));
        self.reconcile_vips(i);
    }

    /// Make the interface hold exactly what instance `i`'s state says: its
    /// VIPs (with the configured prefix) while master, none of ours otherwise.
    /// Deletes use the prefix the kernel reports. Idempotent; called after
    /// every state change, fact change, VIP result and retry deadline.
    pub(super) fn reconcile_vips(&mut self, i: usize) {
        let now = std::time::Instant::now();
        let repeat = self.insts.list[i].cfg.router.garp_master_repeat;
        let x = &mut self.insts.list[i];
        let want: BTreeMap<IpAddr, u8> = if x.router.state() == State::Master {
            x.cfg.vips.iter().map(|n| (n.ip(), n.prefix())).collect()
        } else {
            BTreeMap::new()
        };
        let Some(facts) = self
            .links
            .ifaces
            .get(x.cfg.vip_interface())
            .and_then(|f| f.facts.as_ref())
        else {
            // No interface: its addresses went with it.
            x.vips.owned.clear();
            x.vips.confirmed.clear();
            return;
        };
        let ifindex = facts.index;
        let plan = plan_vips(&want, &x.vips.owned, &facts.addrs);
        // After a failure, no new requests until the retry deadline.
        if x.vips.retry_at.is_none_or(|t| now >= t) {
            x.vips.retry_at = None;
            let jobs = x.vips.book(&plan, &want, &facts.addrs, &x.cfg.name, repeat);
            for (ip, prefix, add) in jobs {
                *x.vips.inflight.entry(ip).or_insert(0) += 1;
                let _ = self.links.jobs.send(Job::Vip {
                    inst: x.cfg.name.clone(),
                    ifindex,
                    ip,
                    prefix,
                    add,
                });
            }
        }
        let b = &mut x.vips;
        // Announce once every wanted VIP is in place.
        let all_in = !want.is_empty()
            && want
                .keys()
                .all(|v| facts.addrs.contains_key(v) && !b.inflight.contains_key(v))
            && plan.add.is_empty();
        if all_in {
            self.obs.vips_in_place(&x.cfg.name, self.clock.now());
            if let Some(count) = x.vips.announce.take() {
                let vips: Vec<IpAddr> = want.keys().copied().collect();
                self.announce(i, &vips, count);
            }
        } else if want.is_empty() {
            b.announce = None;
        }
    }

    async fn on_vip_result(&mut self, inst: &str, ip: IpAddr, prefix: u8, add: bool, result: Result<(), String>) {
        let Some(i) = self.insts.position(inst) else {
            return;
        };
        let ifname = self.insts.list[i].cfg.vip_interface().to_string();
        let b = &mut self.insts.list[i].vips;
        if let Some(n) = b.inflight.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                b.inflight.remove(&ip);
            }
        }
        match result {
            Ok(()) => {
                b.backoff = Duration::ZERO;
                // Keep our view current until the kernel's event arrives.
                if let Some(f) = self.links.ifaces.get_mut(&ifname).and_then(|f| f.facts.as_mut()) {
                    if add {
                        f.addrs.insert(ip, prefix);
                    } else if f.addrs.get(&ip) == Some(&prefix) {
                        f.addrs.remove(&ip);
                    }
                }
                if !add {
                    b.removed.insert(ip);
                }
            }
            Err(e) => {
                let what = if add { "adding" } else { "removing" };
                if add {
                    b.add_failures += 1;
                } else {
                    b.remove_failures += 1;
                }
                b.backoff = (b.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
                b.retry_at = Some(std::time::Instant::now() + b.backoff);
                b.last_error = Some(format!("{what} {ip}/{prefix}: {e}"));
                error!("{inst}: {what} VIP {ip}/{prefix}: {e} (retry in {:?})", b.backoff);
            }
        }
        self.reconcile_vips(i);
    }

    /// The earliest VIP retry deadline of any instance.
    pub(super) fn next_vip_retry(&self) -> Option<std::time::Instant> {
        self.insts.list.iter().filter_map(|x| x.vips.retry_at).min()
    }

    pub(super) fn on_vip_retry(&mut self) {
        let now = std::time::Instant::now();
        for i in 0..self.insts.list.len() {
            if self.insts.list[i].vips.retry_at.is_some_and(|t| t <= now) {
                self.reconcile_vips(i);
            }
        }
    }

    /// Leaving: delete every VIP we hold and wait for the kernel (bounded), so
    /// that no address outlives the daemon. Uses the kernel's prefix.
    pub(super) async fn release_all_vips(&mut self) {
        for round in 0..3 {
            self.refresh_now().await;
            let mut pending = Vec::new();
            for x in &self.insts.list {
                let Some(f) = self.links.facts(x.cfg.vip_interface()) else {
                    continue;
                };
                for ip in x.vips.owned.keys() {
                    if let Some(&p) = f.addrs.get(ip) {
                        pending.push((x.cfg.name.clone(), f.index, *ip, p));
                    }
                }
            }
            if pending.is_empty() {
                return;
            }
            for (name, index, ip, p) in pending {
                if round > 0 {
                    warn!("{name}: VIP {ip}/{p} still present; removing again");
                }
                if let Err(e) = self.links.nl.del_address(index, ip, p).await {
                    error!("{name}: removing VIP {ip}/{p}: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Master then backup within one netlink round trip: the add is still in
    /// flight when the VIP is no longer wanted. The book must keep owning it
    /// (found in `scripts/bench-failover`: the VIP stayed on a backup for good,
    /// two holders, when the add's result came back after the address was
    /// "forgotten").
    #[test]
    fn an_address_with_a_request_in_flight_is_not_forgotten() {
        let vip: IpAddr = "192.0.2.100".parse().unwrap();
        let mut b = VipBook::default();
        let want: BTreeMap<IpAddr, u8> = [(vip, 24)].into();
        let none = BTreeMap::new();
        // Master: add (in flight).
        let plan = plan_vips(&want, &b.owned, &none);
        let jobs = b.book(&plan, &want, &none, "VI_1", 5);
        assert_eq!(jobs, vec![(vip, 24, true)]);
        b.inflight.insert(vip, 1);
        // Backup before the add's result: nothing wanted, the kernel has nothing yet.
        let plan = plan_vips(&none, &b.owned, &none);
        let _ = b.book(&plan, &none, &none, "VI_1", 5);
        assert!(b.owned.contains_key(&vip), "forgotten while its add was in flight");
        // The add lands: the next plan deletes it.
        b.inflight.clear();
        let have: BTreeMap<IpAddr, u8> = [(vip, 24)].into();
        let plan = plan_vips(&none, &b.owned, &have);
        assert_eq!(b.book(&plan, &none, &have, "VI_1", 5), vec![(vip, 24, false)]);
    }
}
