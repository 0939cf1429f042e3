//! SHELL: the daemon's wiring. One event loop owns every VRRP router; it turns
//! the clock, raw-socket receives, netlink events, control requests and signals
//! into core inputs and carries out the actions the cores return.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

use crate::config::{self, Config, Instance};
use crate::control::{self, Envelope, InstanceStatus, Request, Response, Status};
use crate::net::announce::PacketSender;
use crate::net::netlink::{self, Changed, IfFacts, Netlink};
use crate::net::vrrp_socket::{Family, VrrpSocket};
use crate::time::Instant;
use crate::vrrp::router::Router;
use crate::vrrp::{wire, Action, Discard, Input, Received, RxError, State};

/// Maps the process's monotonic clock onto the cores' integer-microsecond time.
#[derive(Clone, Copy)]
struct Clock {
    base: std::time::Instant,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant(u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX))
    }
}

enum Event {
    Rx {
        ifname: String,
        family: Family,
        result: Result<Received, Discard>,
    },
}

struct SockEntry {
    sock: Arc<VrrpSocket>,
    ifindex: u32,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SockEntry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Default)]
struct Iface {
    facts: Option<IfFacts>,
    packet: Option<PacketSender>,
    packet_index: u32,
}

struct Inst {
    cfg: Instance,
    router: Router,
    family: Family,
    src: Option<IpAddr>,
    link_up: bool,
    /// True between our AddVips and RemoveVips: the VIPs should be on the interface.
    holding: bool,
    vips_readded: u64,
    effective_priority: u8,
    master_tx: watch::Sender<bool>,
}

/// Rate limit for per-reason receive-error logs: one line per key per window.
struct LogLimiter {
    window: Duration,
    seen: HashMap<String, (std::time::Instant, u64)>,
}

impl LogLimiter {
    /// Returns `Some(suppressed_since_last)` when a line may be logged now.
    fn allow(&mut self, key: String) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.seen.get_mut(&key) {
            Some((last, suppressed)) if now.duration_since(*last) < self.window => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let n = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(n)
            }
            None => {
                if self.seen.len() > 4096 {
                    self.seen.clear();
                }
                self.seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

pub struct Daemon {
    path: PathBuf,
    cfg: Config,
    clock: Clock,
    started: std::time::Instant,
    nl: Netlink,
    ifaces: BTreeMap<String, Iface>,
    sockets: BTreeMap<(String, Family), SockEntry>,
    insts: Vec<Inst>,
    ev_tx: mpsc::UnboundedSender<Event>,
    interface_discards: BTreeMap<String, u64>,
    control_errors: Arc<AtomicU64>,
    reloads: u64,
    reload_failures: u64,
    limiter: LogLimiter,
    balancer: Option<crate::proxy::Balancer>,
    mastership: HashMap<String, watch::Receiver<bool>>,
    /// (family, vrid) -> candidate instance indexes, a cache for the receive
    /// path (250 instances: no linear scan per advert). Every hit is checked
    /// against the instance itself; a miss rebuilds it, so it is never wrong.
    rx_index: HashMap<(Family, u8), Vec<usize>>,
}

fn family_of(inst: &Instance) -> Family {
    inst.router.vips.first().map(Family::of).unwrap_or(Family::V4)
}

/// The address we send adverts from and break ties with (TX3).
fn source_for(inst: &Instance, facts: Option<&IfFacts>) -> Option<IpAddr> {
    if let Some(src) = inst.unicast_src_ip {
        return Some(src);
    }
    let facts = facts?;
    match family_of(inst) {
        Family::V4 => facts
            .primary_v4
            .iter()
            .find(|a| !inst.router.vips.contains(&IpAddr::V4(**a)))
            .map(|a| IpAddr::V4(*a)),
        Family::V6 => facts.link_local_v6.first().map(|a| IpAddr::V6(*a)),
    }
}

/// Effective priority from the tracked interfaces (keepalived track_interface
/// with weight): each tracked interface that is down adds its weight.
fn tracked_priority(inst: &Instance, ifaces: &BTreeMap<String, Iface>) -> u8 {
    let base = inst.router.priority;
    if base == 255 || inst.track_interface.is_empty() {
        return base;
    }
    let mut p = i32::from(base);
    for t in &inst.track_interface {
        let up = ifaces
            .get(&t.interface)
            .and_then(|i| i.facts.as_ref())
            .map(|f| f.up)
            .unwrap_or(false);
        if !up {
            p += t.weight;
        }
    }
    p.clamp(1, 254) as u8
}

/// Tell systemd (Type=notify) something, if we run under it.
fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name).and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), Path::new(&path))
    };
    if let Err(e) = res {
        warn!("sd_notify {msg}: {e}");
    }
}

impl Daemon {
    /// Start everything: netlink watch, stale VIP cleanup, sockets, control
    /// socket, balancer, routers. Returns once the first state of every
    /// instance is decided.
    pub async fn run(path: PathBuf, cfg: Config) -> Result<(), String> {
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let (nl_tx, mut nl_rx) = mpsc::unbounded_channel::<Changed>();
        // Subscribe before the first dump (linux-notes: nothing falls in between).
        netlink::watch(nl_tx).map_err(|e| format!("netlink subscribe: {e}"))?;
        let nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
        let control_path = cfg.global.control_socket.clone();
        let listener =
            control::bind(&control_path).map_err(|e| format!("control socket {}: {e}", control_path.display()))?;
        let (ctl_tx, mut ctl_rx) = mpsc::channel::<Envelope>(64);
        let control_errors = Arc::new(AtomicU64::new(0));
        if let Some(addr) = cfg.global.metrics {
            let tx = ctl_tx.clone();
            tokio::spawn(async move {
                if let Err(e) = control::metrics::serve(addr, tx).await {
                    error!("metrics endpoint {addr}: {e}");
                }
            });
        }
        tokio::spawn(control::serve(listener, ctl_tx, control_errors.clone()));

        let mut d = Daemon {
            path,
            cfg: cfg.clone(),
            clock: Clock {
                base: std::time::Instant::now(),
            },
            started: std::time::Instant::now(),
            nl,
            ifaces: BTreeMap::new(),
            sockets: BTreeMap::new(),
            insts: Vec::new(),
            ev_tx,
            interface_discards: RxError::ALL.iter().map(|r| (r.name().to_string(), 0)).collect(),
            control_errors,
            reloads: 0,
            reload_failures: 0,
            limiter: LogLimiter {
                window: Duration::from_secs(10),
                seen: HashMap::new(),
            },
            balancer: None,
            mastership: HashMap::new(),
            rx_index: HashMap::new(),
        };
        d.refresh_ifaces().await;
        for inst in cfg.instances.clone() {
            d.add_instance(inst, true).await;
        }
        d.ensure_sockets();
        d.start_balancer().await?;
        info!(
            "vipd started: {} instance(s), {} virtual server(s)",
            d.insts.len(),
            d.cfg.servers.len()
        );
        sd_notify("READY=1");

        let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
        let mut sighup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
        let mut timer = crate::net::timer::PreciseTimer::new().map_err(|e| format!("timerfd: {e}"))?;
        // The deadline the timerfd is armed for. Re-arming costs a syscall, and
        // a backup's earliest deadline moves later with nearly every advert:
        // only re-arm when the deadline moved earlier (or the timer is spent);
        // an early wake just finds nothing due and re-arms.
        let mut armed: Option<Instant> = None;
        // After an advert only the instances it reached can have new
        // deadlines: look at those, not at all of them (None = look at all).
        let mut touched: Option<Vec<usize>> = None;
        loop {
            let now = d.clock.now();
            let stale = armed.is_none_or(|a| a <= now);
            let rearm = match touched.take().filter(|_| !stale) {
                // Only these moved, and the armed timer is still ahead: an
                // earlier deadline among them is the only reason to re-arm.
                Some(list) => {
                    let deadline = list.iter().filter_map(|&i| d.insts.get(i)?.router.poll_at()).min();
                    (deadline.is_some() && deadline < armed).then_some(deadline)
                }
                None => {
                    let deadline = d.insts.iter().filter_map(|i| i.router.poll_at()).min();
                    (deadline.is_some() && (stale || deadline < armed) || deadline.is_none() && armed.is_some())
                        .then_some(deadline)
                }
            };
            if let Some(deadline) = rearm {
                let after = deadline.map(|t| Duration::from_micros(t.0.saturating_sub(now.0)));
                timer.set(after).map_err(|e| format!("timerfd: {e}"))?;
                armed = deadline;
            }
            tokio::select! {
                biased;
                _ = sigterm.recv() => { d.shutdown("SIGTERM").await; return Ok(()); }
                _ = sigint.recv() => { d.shutdown("SIGINT").await; return Ok(()); }
                _ = sighup.recv() => { let _ = d.reload().await; }
                Some(ev) = ev_rx.recv() => {
                    let mut hit = Vec::new();
                    hit.extend(d.on_event(ev).await);
                    // Drain what is already queued before looking at timers again.
                    for _ in 0..256 {
                        match ev_rx.try_recv() { Ok(ev) => hit.extend(d.on_event(ev).await), Err(_) => break }
                    }
                    touched = Some(hit);
                }
                Some(_c) = nl_rx.recv() => {
                    while nl_rx.try_recv().is_ok() {}
                    d.on_netlink_change().await;
                }
                Some((req, reply)) = ctl_rx.recv() => {
                    let resp = d.on_request(req).await;
                    let _ = reply.send(resp);
                }
                r = timer.wait() => {
                    armed = None;
                    if let Err(e) = r { warn!("timer: {e}"); }
                    d.on_timers().await;
                }
            }
        }
    }

    async fn start_balancer(&mut self) -> Result<(), String> {
        if self.cfg.servers.is_empty() {
            return Ok(());
        }
        let b = crate::proxy::Balancer::start(&self.cfg.servers, &self.mastership)
            .await
            .map_err(|e| format!("balancer: {e}"))?;
        self.balancer = Some(b);
        Ok(())
    }

    async fn refresh_ifaces(&mut self) {
        let mut names: Vec<String> = self.cfg.instances.iter().map(|i| i.interface.clone()).collect();
        for i in &self.cfg.instances {
            names.extend(i.track_interface.iter().map(|t| t.interface.clone()));
        }
        names.sort();
        names.dedup();
        self.ifaces.retain(|k, _| names.contains(k));
        for name in names {
            let facts = match self.nl.facts(&name).await {
                Ok(f) => f,
                Err(e) => {
                    warn!("reading interface {name}: {e}");
                    None
                }
            };
            let entry = self.ifaces.entry(name.clone()).or_default();
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

    /// Open (or reopen after an interface was recreated) one raw socket per
    /// (interface, family) in use; close the ones no longer needed.
    fn ensure_sockets(&mut self) {
        let mut wanted: Vec<(String, Family)> =
            self.insts.iter().map(|i| (i.cfg.interface.clone(), i.family)).collect();
        wanted.sort();
        wanted.dedup();
        self.sockets.retain(|k, _| wanted.contains(k));
        for (name, fam) in wanted {
            let Some(index) = self.ifaces.get(&name).and_then(|i| i.facts.as_ref()).map(|f| f.index) else {
                self.sockets.remove(&(name, fam));
                continue;
            };
            if self.sockets.get(&(name.clone(), fam)).map(|s| s.ifindex) == Some(index) {
                continue;
            }
            match VrrpSocket::open(&name, index, fam) {
                Ok(sock) => {
                    let sock = Arc::new(sock);
                    let task = tokio::spawn(reader(sock.clone(), name.clone(), fam, self.ev_tx.clone()));
                    self.sockets.insert(
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

    /// Create a router for `inst`, remove stale VIPs (EX1) and start it.
    async fn add_instance(&mut self, inst: Instance, startup_cleanup: bool) {
        let facts = self.ifaces.get(&inst.interface).and_then(|i| i.facts.clone());
        if startup_cleanup {
            if let Some(f) = &facts {
                for net in &inst.vips {
                    if f.addrs.contains(&net.ip()) {
                        info!("{}: removing stale VIP {} left by an earlier run", inst.name, net);
                        if let Err(e) = self.nl.del_address(f.index, net.ip(), net.prefix()).await {
                            warn!("{}: removing stale VIP {}: {e}", inst.name, net);
                        }
                    }
                }
            }
        }
        let src = source_for(&inst, facts.as_ref());
        let link_up = facts.as_ref().map(|f| f.up).unwrap_or(false);
        let (master_tx, master_rx) = watch::channel(false);
        self.mastership.insert(inst.name.clone(), master_rx);
        let router = Router::new(inst.router.clone(), src);
        let family = family_of(&inst);
        let effective_priority = tracked_priority(&inst, &self.ifaces);
        if facts.is_none() {
            warn!(
                "{}: interface {} does not exist (fault until it appears)",
                inst.name, inst.interface
            );
        }
        self.insts.push(Inst {
            cfg: inst,
            router,
            family,
            src,
            link_up,
            holding: false,
            vips_readded: 0,
            effective_priority,
            master_tx,
        });
        let i = self.insts.len() - 1;
        let now = self.clock.now();
        let mut actions = Vec::new();
        if effective_priority != self.insts[i].cfg.router.priority {
            actions.extend(self.insts[i].router.handle(now, Input::SetPriority(effective_priority)));
        }
        actions.extend(self.insts[i].router.handle(now, Input::Startup));
        if !link_up {
            actions.extend(self.insts[i].router.handle(now, Input::LinkDown));
        }
        self.exec(i, actions).await;
    }

    async fn on_timers(&mut self) {
        let now = self.clock.now();
        for i in 0..self.insts.len() {
            if self.insts[i].router.poll_at().is_some_and(|t| t <= now) {
                let actions = self.insts[i].router.handle(now, Input::Tick);
                self.exec(i, actions).await;
            }
        }
    }

    /// The instance a packet received on `ifname` belongs to.
    fn find_instance(&mut self, ifname: &str, family: Family, vrid: Option<u8>) -> Option<usize> {
        let vrid = vrid?;
        let matches = |insts: &[Inst], i: usize| {
            insts
                .get(i)
                .is_some_and(|x| x.cfg.interface == ifname && x.family == family && x.cfg.router.vrid == vrid)
        };
        if let Some(list) = self.rx_index.get(&(family, vrid)) {
            if let Some(&i) = list.iter().find(|&&i| matches(&self.insts, i)) {
                return Some(i);
            }
        }
        // Miss (or stale after a reload): rebuild, then look once more.
        self.rx_index.clear();
        for (i, x) in self.insts.iter().enumerate() {
            self.rx_index.entry((x.family, x.cfg.router.vrid)).or_default().push(i);
        }
        self.rx_index
            .get(&(family, vrid))?
            .iter()
            .copied()
            .find(|&i| matches(&self.insts, i))
    }

    /// Handle one event; returns the instance it reached, if any.
    async fn on_event(&mut self, ev: Event) -> Option<usize> {
        match ev {
            Event::Rx { ifname, family, result } => {
                let vrid = match &result {
                    Ok(r) => Some(r.advert.vrid),
                    Err(d) => d.vrid,
                };
                let target = self.find_instance(&ifname, family, vrid);
                match (target, result) {
                    (Some(i), result) => {
                        let now = self.clock.now();
                        let actions = self.insts[i].router.handle(now, Input::Advert(result));
                        self.exec(i, actions).await;
                        return Some(i);
                    }
                    (None, Ok(r)) => self.count_interface(
                        &ifname,
                        &Discard {
                            reason: RxError::UnknownVrid,
                            vrid,
                            src: Some(r.src),
                        },
                    ),
                    (None, Err(d)) => {
                        let d = if d.vrid.is_some() {
                            Discard {
                                reason: RxError::UnknownVrid,
                                ..d
                            }
                        } else {
                            d
                        };
                        self.count_interface(&ifname, &d)
                    }
                }
                None
            }
        }
    }

    fn count_interface(&mut self, ifname: &str, d: &Discard) {
        *self.interface_discards.entry(d.reason.name().to_string()).or_insert(0) += 1;
        if let Some(suppressed) = self.limiter.allow(format!("{ifname}/{}", d.reason.name())) {
            let from = d.src.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
            let vrid = d.vrid.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
            warn!(
                "{ifname}: discarded VRRP packet from {from} (vrid {vrid}): {} [{suppressed} similar suppressed]",
                d.reason
            );
        }
    }

    /// Level-triggered: re-read every interface we use and act on what changed.
    async fn on_netlink_change(&mut self) {
        self.refresh_ifaces().await;
        self.ensure_sockets();
        let now = self.clock.now();
        for i in 0..self.insts.len() {
            let facts = self
                .ifaces
                .get(&self.insts[i].cfg.interface)
                .and_then(|f| f.facts.clone());
            let mut actions = Vec::new();
            let up = facts.as_ref().map(|f| f.up).unwrap_or(false);
            if up != self.insts[i].link_up {
                self.insts[i].link_up = up;
                info!(
                    "{}: interface {} is {}",
                    self.insts[i].cfg.name,
                    self.insts[i].cfg.interface,
                    if up { "up" } else { "down" }
                );
                actions.extend(
                    self.insts[i]
                        .router
                        .handle(now, if up { Input::LinkUp } else { Input::LinkDown }),
                );
            }
            let src = source_for(&self.insts[i].cfg, facts.as_ref());
            if src != self.insts[i].src {
                self.insts[i].src = src;
                actions.extend(self.insts[i].router.handle(now, Input::LocalAddr(src)));
            }
            let prio = tracked_priority(&self.insts[i].cfg, &self.ifaces);
            if prio != self.insts[i].effective_priority {
                info!(
                    "{}: tracked interfaces change priority {} -> {}",
                    self.insts[i].cfg.name, self.insts[i].effective_priority, prio
                );
                self.insts[i].effective_priority = prio;
                actions.extend(self.insts[i].router.handle(now, Input::SetPriority(prio)));
            }
            self.exec(i, actions).await;
            // EX2: a VIP deleted behind our back while we hold it is put back.
            if self.insts[i].holding {
                if let Some(f) = &facts {
                    let missing: Vec<ipnetwork::IpNetwork> = self.insts[i]
                        .cfg
                        .vips
                        .iter()
                        .filter(|n| !f.addrs.contains(&n.ip()))
                        .copied()
                        .collect();
                    for net in missing {
                        warn!(
                            "{}: VIP {} was removed behind our back; re-adding",
                            self.insts[i].cfg.name, net
                        );
                        self.insts[i].vips_readded += 1;
                        if let Err(e) = self.nl.add_address(f.index, net.ip(), net.prefix()).await {
                            error!("{}: re-adding VIP {}: {e}", self.insts[i].cfg.name, net);
                        }
                        let count = self.insts[i].cfg.router.garp_master_repeat;
                        self.announce(i, &[net.ip()], count);
                    }
                }
            }
        }
    }

    fn announce(&mut self, i: usize, vips: &[IpAddr], count: u32) {
        let inst = &self.insts[i];
        let Some(iface) = self.ifaces.get(&inst.cfg.interface) else {
            return;
        };
        let (Some(p), Some(f)) = (iface.packet.as_ref(), iface.facts.as_ref()) else {
            return;
        };
        for _ in 0..count.max(1) {
            for vip in vips {
                let frame = match vip {
                    IpAddr::V4(v4) => crate::vrrp::announce::garp_frame(f.mac, *v4),
                    IpAddr::V6(v6) => {
                        let Some(ll) = f.link_local_v6.first() else { continue };
                        crate::vrrp::announce::unsolicited_na_frame(f.mac, *ll, *v6, false)
                    }
                };
                if let Err(e) = p.send(&frame) {
                    debug!("{}: announce {vip}: {e}", inst.cfg.name);
                }
            }
        }
    }

    /// Carry out a router's actions, in order.
    async fn exec(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { advert, checksum_form } => {
                    let inst = &self.insts[i];
                    let Some(src) = inst.src else {
                        if self.limiter.allow(format!("{}/nosrc", inst.cfg.name)).is_some() {
                            warn!(
                                "{}: no source address on {}; advert not sent",
                                inst.cfg.name, inst.cfg.interface
                            );
                        }
                        continue;
                    };
                    let Some(sock) = self.sockets.get(&(inst.cfg.interface.clone(), inst.family)) else {
                        continue;
                    };
                    let dsts: Vec<IpAddr> = if inst.cfg.router.unicast_peers.is_empty() {
                        vec![match inst.family {
                            Family::V4 => IpAddr::V4(wire::GROUP_V4),
                            Family::V6 => IpAddr::V6(wire::GROUP_V6),
                        }]
                    } else {
                        inst.cfg.router.unicast_peers.clone()
                    };
                    for dst in dsts {
                        let bytes = wire::emit(&advert, src, dst, checksum_form);
                        if let Err(e) = sock.sock.send(&bytes, src, dst) {
                            if self.limiter.allow(format!("{}/send", inst.cfg.name)).is_some() {
                                warn!("{}: sending advert to {dst}: {e}", inst.cfg.name);
                            }
                        }
                    }
                }
                Action::AddVips(vips) => {
                    self.insts[i].holding = true;
                    self.set_vips(i, vips, true).await;
                }
                Action::RemoveVips(vips) => {
                    self.insts[i].holding = false;
                    self.set_vips(i, vips, false).await;
                }
                Action::Announce { vips, count } => self.announce(i, &vips, count),
                Action::StateChange { from, to, reason } => {
                    let inst = &self.insts[i];
                    info!(
                        instance = %inst.cfg.name,
                        vrid = inst.cfg.router.vrid,
                        "{}: {} -> {} ({reason})",
                        inst.cfg.name,
                        from.name(),
                        to.name()
                    );
                    let _ = inst.master_tx.send(to == State::Master);
                    if let Some(script) = inst.cfg.notify.clone() {
                        let args = [
                            "INSTANCE".to_string(),
                            inst.cfg.name.clone(),
                            to.name().to_uppercase(),
                            inst.effective_priority.to_string(),
                        ];
                        tokio::spawn(run_notify(script, args));
                    }
                }
                Action::Discarded(d) => {
                    let name = self.insts[i].cfg.name.clone();
                    if let Some(suppressed) = self.limiter.allow(format!("{name}/{}", d.reason.name())) {
                        let from = d.src.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
                        warn!(
                            "{name}: discarded VRRP packet from {from}: {} [{suppressed} similar suppressed]",
                            d.reason
                        );
                    }
                }
                Action::IntervalAdopted {
                    configured,
                    adopted,
                    from,
                } => {
                    warn!(
                        "{}: master {from} advertises every {} µs, configured {} µs; adopting the master's interval",
                        self.insts[i].cfg.name,
                        adopted.to_micros().0,
                        configured.to_micros().0
                    );
                }
            }
        }
    }

    /// Add (or remove) VIPs of instance `i` on its interface through netlink.
    async fn set_vips(&mut self, i: usize, vips: Vec<IpAddr>, add: bool) {
        let Some(index) = self
            .ifaces
            .get(&self.insts[i].cfg.interface)
            .and_then(|f| f.facts.as_ref())
            .map(|f| f.index)
        else {
            return;
        };
        for vip in vips {
            let prefix = self.prefix_of(i, vip);
            let res = if add {
                self.nl.add_address(index, vip, prefix).await
            } else {
                self.nl.del_address(index, vip, prefix).await
            };
            if let Err(e) = res {
                let what = if add { "adding" } else { "removing" };
                error!("{}: {what} VIP {vip}/{prefix}: {e}", self.insts[i].cfg.name);
            }
        }
    }

    fn prefix_of(&self, i: usize, vip: IpAddr) -> u8 {
        self.insts[i]
            .cfg
            .vips
            .iter()
            .find(|n| n.ip() == vip)
            .map(|n| n.prefix())
            .unwrap_or(match vip {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            })
    }

    async fn shutdown(&mut self, why: &str) {
        info!("{why}: leaving (priority 0 adverts, releasing VIPs)");
        sd_notify("STOPPING=1");
        let now = self.clock.now();
        for i in 0..self.insts.len() {
            let actions = self.insts[i].router.handle(now, Input::Shutdown);
            self.exec(i, actions).await;
        }
        if let Some(b) = self.balancer.take() {
            b.shutdown(Duration::from_secs(2)).await;
        }
        let _ = std::fs::remove_file(&self.cfg.global.control_socket);
    }

    /// SIGHUP / `vipctl reload`: a config that fails validation is refused and
    /// the old one keeps running; unchanged instances are not touched (EX4).
    async fn reload(&mut self) -> Result<String, String> {
        let new = match config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                self.reload_failures += 1;
                let msg = format!("reload refused, keeping the running config: {e}");
                error!("{msg}");
                return Err(msg);
            }
        };
        sd_notify("RELOADING=1");
        self.reloads += 1;
        if new.global.control_socket != self.cfg.global.control_socket {
            warn!(
                "control_socket change needs a restart; keeping {}",
                self.cfg.global.control_socket.display()
            );
        }
        let (mut kept, mut changed, mut added, mut removed) = (0, 0, 0, 0);
        // Removed or incompatibly changed instances leave first.
        let now = self.clock.now();
        let mut i = 0;
        while i < self.insts.len() {
            let name = self.insts[i].cfg.name.clone();
            let keep = new.instances.iter().find(|n| n.name == name).filter(|n| {
                n.interface == self.insts[i].cfg.interface
                    && n.router.vrid == self.insts[i].cfg.router.vrid
                    && n.router.version == self.insts[i].cfg.router.version
                    && family_of(n) == self.insts[i].family
                    && n.unicast_src_ip == self.insts[i].cfg.unicast_src_ip
            });
            if keep.is_none() {
                let actions = self.insts[i].router.handle(now, Input::Shutdown);
                self.exec(i, actions).await;
                self.mastership.remove(&name);
                self.insts.remove(i);
                removed += 1;
            } else {
                i += 1;
            }
        }
        self.cfg = new.clone();
        self.refresh_ifaces().await;
        for n in &new.instances {
            if let Some(i) = self.insts.iter().position(|x| x.cfg.name == n.name) {
                if self.insts[i].cfg == *n {
                    kept += 1;
                    continue;
                }
                changed += 1;
                let old_vips = self.insts[i].cfg.vips.clone();
                self.insts[i].cfg = n.clone();
                let actions = self.insts[i].router.handle(now, Input::Config(n.router.clone()));
                // Prefix changes of VIPs we hold: re-add with the new prefix.
                let _ = old_vips;
                self.exec(i, actions).await;
                let prio = tracked_priority(n, &self.ifaces);
                if prio != self.insts[i].effective_priority {
                    self.insts[i].effective_priority = prio;
                    let actions = self.insts[i].router.handle(now, Input::SetPriority(prio));
                    self.exec(i, actions).await;
                }
            } else {
                added += 1;
                self.add_instance(n.clone(), true).await;
            }
        }
        self.ensure_sockets();
        let mut msg =
            format!("reloaded: {kept} instance(s) unchanged, {changed} changed, {added} added, {removed} removed");
        if let Some(b) = self.balancer.as_mut() {
            if let Err(e) = b.reload(&new.servers, &self.mastership).await {
                msg.push_str(&format!("; balancer reload failed: {e}"));
            }
        } else if let Err(e) = self.start_balancer().await {
            msg.push_str(&format!("; {e}"));
        }
        info!("{msg}");
        sd_notify("READY=1");
        Ok(msg)
    }

    async fn on_request(&mut self, req: Request) -> Response {
        match req {
            Request::Status {} => Response {
                ok: true,
                error: None,
                status: Some(self.status()),
                message: None,
            },
            Request::Reload {} => match self.reload().await {
                Ok(m) => Response::message(m),
                Err(e) => Response::error(e),
            },
            Request::Backend {
                virtual_server,
                address,
                state,
            } => {
                let admin = match state.as_str() {
                    "ready" => config::Admin::Ready,
                    "drain" => config::Admin::Drain,
                    "maint" => config::Admin::Maint,
                    other => {
                        self.control_errors.fetch_add(1, Ordering::Relaxed);
                        return Response::error(format!("unknown backend state {other:?}: use ready, drain or maint"));
                    }
                };
                let addr: std::net::SocketAddr = match address.parse() {
                    Ok(a) => a,
                    Err(_) => {
                        self.control_errors.fetch_add(1, Ordering::Relaxed);
                        return Response::error(format!("{address:?} is not an address:port"));
                    }
                };
                let Some(b) = self.balancer.as_ref() else {
                    return Response::error("no virtual servers configured");
                };
                match b.set_admin(&virtual_server, addr, admin) {
                    Ok(()) => Response::message(format!("{virtual_server} {addr}: {state}")),
                    Err(e) => {
                        self.control_errors.fetch_add(1, Ordering::Relaxed);
                        Response::error(e.to_string())
                    }
                }
            }
        }
    }

    fn status(&self) -> Status {
        Status {
            router_id: self.cfg.global.router_id.clone(),
            config_file: self.path.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            reloads: self.reloads,
            reload_failures: self.reload_failures,
            interface_discards: self.interface_discards.clone(),
            control_errors: self.control_errors.load(Ordering::Relaxed),
            instances: self
                .insts
                .iter()
                .map(|i| InstanceStatus {
                    interface: i.cfg.interface.clone(),
                    source: i.src,
                    link_up: i.link_up,
                    vips_readded: i.vips_readded,
                    router: i.router.status(),
                })
                .collect(),
            virtual_servers: self
                .balancer
                .as_ref()
                .map(|b| {
                    b.status()
                        .into_iter()
                        .filter_map(|v| serde_json::to_value(v).ok())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

async fn run_notify(script: PathBuf, args: [String; 4]) {
    let child = tokio::process::Command::new(&script)
        .args(&args)
        .kill_on_drop(true)
        .spawn();
    match child {
        Ok(mut c) => match tokio::time::timeout(Duration::from_secs(30), c.wait()).await {
            Ok(Ok(st)) if !st.success() => warn!("notify {} exited with {st}", script.display()),
            Ok(Err(e)) => warn!("notify {}: {e}", script.display()),
            Err(_) => warn!("notify {} took more than 30 s; killed", script.display()),
            _ => {}
        },
        Err(e) => warn!("notify {}: {e}", script.display()),
    }
}

/// Receive task of one raw socket: decode each packet and hand the result
/// (errors included) to the main loop.
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
        if tx
            .send(Event::Rx {
                ifname: ifname.clone(),
                family,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}
