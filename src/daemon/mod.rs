//! SHELL: the daemon. One event loop owns every VRRP router; it turns the
//! clock, raw-socket receives, netlink results, control requests and signals
//! into core inputs. Start-up, the loop, the timer re-arm and shutdown live
//! here; each other concern has its own file:
//! `facts` (pure decisions from interface facts), `instances` (instance table,
//! receive index, action executor), `links` (netlink, sockets, VIP install and
//! repair), `reload` (reload, control requests, status), `notify` (notify
//! script queues), `sync` (sync groups), `systemd`.

mod events;
mod facts;
mod handover;
mod instances;
mod links;
mod notify;
mod reload;
mod sync;
mod systemd;
mod tracking;
mod vmac;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::control::limit::ClientCounters;
use crate::control::observe::{Observer, Stage};
use crate::control::{self, Envelope};
use crate::net::netlink::{self, Changed, Netlink};
use crate::net::vrrp_socket::Family;
use crate::time::Instant;
use crate::vrrp::{Discard, Input, Received, RxError};
pub use handover::release_after_crash;
use instances::Instances;
use links::{Links, Reply};
use systemd::sd_notify;

/// What reaches the event loop from the daemon's own tasks.
enum Event {
    /// A VRRP packet (decoded, or why it was discarded) from a receive task.
    Rx {
        ifname: String,
        family: Family,
        result: Result<Received, Discard>,
    },
    /// A result of the netlink worker.
    Netlink(Reply),
}

/// Rate limit for per-reason logs: one line per key per window.
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

/// Daemon-wide counters shown in status.
struct Stats {
    reloads: u64,
    reload_failures: u64,
    /// Packets no instance could take, per reason.
    interface_discards: BTreeMap<String, u64>,
    control_errors: Arc<AtomicU64>,
    clients: ClientCounts,
}

/// Client counters of the control socket and the metrics listener.
struct ClientCounts {
    control: Arc<ClientCounters>,
    metrics: Option<Arc<ClientCounters>>,
}

/// The signals the daemon acts on, installed before any VIP is added.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

pub struct Daemon {
    path: PathBuf,
    cfg: Config,
    clock: Clock,
    started: std::time::Instant,
    links: Links,
    insts: Instances,
    ev_tx: mpsc::UnboundedSender<Event>,
    stats: Stats,
    limiter: LogLimiter,
    balancer: Option<crate::proxy::Balancer>,
    mastership: HashMap<String, watch::Receiver<bool>>,
    /// Transitions, failover phases, time without master, readiness (metrics).
    obs: Observer,
    handover: handover::Book,
    /// Tracking runners and state (`tracking.rs`), and where runners report.
    track: crate::track::Trackers,
    track_sink: crate::track::Sink,
    notifier: notify::Notifier,
    sync: sync::SyncGroups,
    events: events::Publisher,
}

impl Daemon {
    /// Start everything (signals first, then netlink watch, stale VIP
    /// cleanup, sockets, control socket, balancer, routers) and run until
    /// SIGTERM / SIGINT.
    pub async fn run(path: PathBuf, cfg: Config) -> Result<(), String> {
        // Before any VIP is added: a signal during start-up must still lead to
        // a clean exit that releases what we added.
        let mut signals = Signals {
            term: signal(SignalKind::terminate()).map_err(|e| e.to_string())?,
            int: signal(SignalKind::interrupt()).map_err(|e| e.to_string())?,
            hup: signal(SignalKind::hangup()).map_err(|e| e.to_string())?,
        };
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let (nl_tx, nl_rx) = mpsc::unbounded_channel::<Changed>();
        // Subscribe before the first dump (linux-notes: nothing falls in between).
        netlink::watch(nl_tx).map_err(|e| format!("netlink subscribe: {e}"))?;
        let nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
        let control_path = cfg.global.control_socket.clone();
        let listener =
            control::bind(&control_path).map_err(|e| format!("control socket {}: {e}", control_path.display()))?;
        let (ctl_tx, ctl_rx) = mpsc::channel::<Envelope>(64);
        let control_errors = Arc::new(AtomicU64::new(0));
        let clock = Clock::new();
        let obs = Observer::new(clock);
        let mut clients = ClientCounts {
            control: listener.counters(),
            metrics: None,
        };
        if let Some(addr) = cfg.global.metrics {
            match control::metrics::MetricsServer::bind(addr).await {
                Ok(m) => {
                    clients.metrics = Some(m.counters());
                    tokio::spawn(m.with_observer(obs.clone()).run(ctl_tx.clone()));
                }
                Err(e) => error!("metrics endpoint {addr}: {e}"),
            }
        }
        tokio::spawn(control::serve(listener, ctl_tx, control_errors.clone()));

        let jobs = links::spawn_worker(nl.clone(), ev_tx.clone());
        let (track_sink, track_rx) = tracking::channel();
        let mut d = Daemon {
            path,
            cfg: cfg.clone(),
            clock,
            started: std::time::Instant::now(),
            links: Links::new(nl, jobs),
            insts: Instances::default(),
            ev_tx,
            stats: Stats {
                reloads: 0,
                reload_failures: 0,
                interface_discards: RxError::ALL.iter().map(|r| (r.name().to_string(), 0)).collect(),
                control_errors,
                clients,
            },
            limiter: LogLimiter {
                window: Duration::from_secs(10),
                seen: HashMap::new(),
            },
            balancer: None,
            mastership: HashMap::new(),
            obs,
            handover: handover::Book::default(),
            track: Default::default(),
            track_sink,
            notifier: notify::Notifier::default(),
            sync: sync::SyncGroups::default(),
            events: events::Publisher::default(),
        };
        d.refresh_now().await;
        d.sync_vmacs(true).await;
        for inst in cfg.instances.clone() {
            d.add_instance(inst, true).await;
        }
        d.sync_configure().await;
        let mut ev_rx = ev_rx;
        if let Err(e) = d.start_balancer().await {
            d.shutdown("start-up failed", &mut ev_rx).await;
            return Err(e);
        }
        d.start_trackers();
        info!(
            "vipd started: {} instance(s), {} virtual server(s)",
            d.insts.list.len(),
            d.cfg.servers.len()
        );
        sd_notify("READY=1");
        d.obs.set_stage(Stage::Ready);
        d.notify_status();
        d.event_loop(&mut signals, ev_rx, nl_rx, ctl_rx, track_rx).await
    }

    async fn event_loop(
        &mut self,
        signals: &mut Signals,
        mut ev_rx: mpsc::UnboundedReceiver<Event>,
        mut nl_rx: mpsc::UnboundedReceiver<Changed>,
        mut ctl_rx: mpsc::Receiver<Envelope>,
        mut track_rx: mpsc::UnboundedReceiver<crate::track::Report>,
    ) -> Result<(), String> {
        let mut timer = crate::net::timer::PreciseTimer::new().map_err(|e| format!("timerfd: {e}"))?;
        let mut armed: Option<Instant> = None;
        // After an advert only the instances it reached can have new
        // deadlines: look at those, not at all of them (None = look at all).
        let mut touched: Option<Vec<usize>> = None;
        let mut watchdog = systemd::Watchdog::from_env();
        loop {
            if let Some(w) = watchdog.as_mut() {
                w.tick();
            }
            self.flush_status();
            if let Some(why) = self.left() {
                self.shutdown(&why, &mut ev_rx).await;
                return Ok(());
            }
            if self.run_sync().await {
                touched = None;
            }
            let now = self.clock.now();
            if let Some(deadline) = self.rearm(now, armed, touched.take()) {
                let after = deadline.map(|t| Duration::from_micros(t.0.saturating_sub(now.0)));
                timer.set(after).map_err(|e| format!("timerfd: {e}"))?;
                armed = deadline;
            }
            let retry = self.next_vip_retry();
            tokio::select! {
                biased;
                // Make-before-break (handover.rs); a second signal stops at once.
                _ = signals.term.recv() => if self.leave("SIGTERM").await { self.shutdown("SIGTERM", &mut ev_rx).await; return Ok(()); },
                _ = signals.int.recv() => if self.leave("SIGINT").await { self.shutdown("SIGINT", &mut ev_rx).await; return Ok(()); },
                _ = signals.hup.recv() => { let _ = self.reload().await; }
                Some(ev) = ev_rx.recv() => {
                    let mut hit = Vec::new();
                    hit.extend(self.on_event(ev).await);
                    // Drain what is already queued before looking at timers again.
                    for _ in 0..256 {
                        match ev_rx.try_recv() { Ok(ev) => hit.extend(self.on_event(ev).await), Err(_) => break }
                    }
                    touched = Some(hit);
                }
                Some(_c) = nl_rx.recv() => {
                    while nl_rx.try_recv().is_ok() {}
                    self.request_refresh();
                }
                Some((req, reply)) = ctl_rx.recv() => self.on_control(req, reply).await,
                r = timer.wait() => {
                    armed = None;
                    if let Err(e) = r { warn!("timer: {e}"); }
                    self.on_timers().await;
                }
                _ = sleep_until(retry), if retry.is_some() => self.on_vip_retry(),
                Some(r) = track_rx.recv() => self.on_track(r).await,
                _ = systemd::watchdog_due(&watchdog) => {}
            }
        }
    }

    /// The deadline to arm the timerfd for, if it must be re-armed. Re-arming
    /// costs a syscall, and a backup's earliest deadline moves later with
    /// nearly every advert: only re-arm when the deadline moved earlier (or
    /// the timer is spent); an early wake finds nothing due and re-arms.
    fn rearm(&self, now: Instant, armed: Option<Instant>, touched: Option<Vec<usize>>) -> Option<Option<Instant>> {
        let stale = armed.is_none_or(|a| a <= now);
        match touched.filter(|_| !stale) {
            // Only these moved, and the armed timer is still ahead: an earlier
            // deadline among them is the only reason to re-arm.
            Some(list) => {
                let deadline = list
                    .iter()
                    .filter_map(|&i| self.insts.list.get(i)?.router.poll_at())
                    .min();
                (deadline.is_some() && deadline < armed).then_some(deadline)
            }
            None => {
                let deadline = self.insts.list.iter().filter_map(|i| i.router.poll_at()).min();
                let moved = deadline.is_some() && (stale || deadline < armed);
                (moved || deadline.is_none() && armed.is_some()).then_some(deadline)
            }
        }
    }

    /// Handle one event; returns the instance it reached, if any.
    async fn on_event(&mut self, ev: Event) -> Option<usize> {
        match ev {
            Event::Rx { ifname, family, result } => self.on_rx(&ifname, family, result).await,
            Event::Netlink(reply) => {
                self.on_netlink_reply(reply).await;
                None
            }
        }
    }

    async fn start_balancer(&mut self) -> Result<(), String> {
        if self.cfg.servers.is_empty() {
            return Ok(());
        }
        let b = crate::proxy::Balancer::start(&self.cfg.servers, &self.mastership, self.obs.clone())
            .await
            .map_err(|e| format!("balancer: {e}"))?;
        self.balancer = Some(b);
        Ok(())
    }

    /// Leave: priority-0 adverts, VIPs released (awaited and verified),
    /// proxied connections drained, sysctls restored.
    async fn shutdown(&mut self, why: &str, ev_rx: &mut mpsc::UnboundedReceiver<Event>) {
        info!("{why}: leaving (priority 0 adverts, releasing VIPs)");
        sd_notify("STOPPING=1");
        self.obs.set_stage(Stage::Stopping);
        self.track.stop();
        for i in 0..self.insts.list.len() {
            self.input(i, Input::Shutdown).await;
        }
        // Let the netlink worker finish what is queued (an add still in the
        // queue must not land after our final removal), bounded.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.insts.list.iter().any(|x| !x.vips.inflight.is_empty()) {
            match tokio::time::timeout_at(deadline, ev_rx.recv()).await {
                Ok(Some(Event::Netlink(reply))) => self.on_netlink_reply(reply).await,
                Ok(Some(Event::Rx { .. })) => {}
                Ok(None) | Err(_) => break,
            }
        }
        self.release_all_vips().await;
        self.remove_all_vmacs().await;
        // STOP notify scripts, after the VIPs are released (docs/notify-sync.md).
        self.notify_stop_all().await;
        if let Some(b) = self.balancer.take() {
            b.shutdown(Duration::from_secs(2)).await;
        }
        self.links.restore_sysctls().await;
        let _ = std::fs::remove_file(&self.cfg.global.control_socket);
        self.tell_watchers_stopping(why).await;
    }
}

async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
        None => std::future::pending().await,
    }
}
