//! The data plane's lifecycle: worker threads, and per virtual server its
//! listeners and checker; start, reload, shutdown, status and admin changes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{limits, tcp, udp, ProxyError, Shared, VirtualServerStatus};
use crate::balance::{self, Admin, TableHandle};
use crate::check;
use crate::clock::Clock;
use crate::config::{self, Protocol, VirtualServer};
use crate::control::observe::Observer;

struct Vs {
    shared: Arc<Shared>,
    /// One listener task per data-plane worker (TCP), or one (UDP).
    listeners: Vec<JoinHandle<()>>,
    checker: Option<JoinHandle<()>>,
    /// The mastership channel the listener follows (to notice a re-created instance).
    master: Option<watch::Receiver<bool>>,
}

impl Drop for Vs {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
        if let Some(c) = &self.checker {
            c.abort();
        }
    }
}

/// The data-plane threads: each runs a single-threaded tokio runtime, so a
/// connection's relay never hops between threads (no cross-thread wake-ups).
/// Dropping this stops them.
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Workers {
    fn start(n: usize) -> Result<Workers, ProxyError> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ProxyError(format!("data-plane runtime: {e}")))?;
            handles.push(rt.handle().clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            stops.push(tx);
            std::thread::Builder::new()
                .name(format!("vipd-dp{i}"))
                .spawn(move || {
                    let _ = rt.block_on(rx);
                })
                .map_err(|e| ProxyError(format!("data-plane thread: {e}")))?;
        }
        Ok(Workers { handles, _stop: stops })
    }
}

/// Data-plane worker threads: one per core, two at most (the VRRP loop and
/// health checks stay on the main thread).
fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().min(2))
        .unwrap_or(1)
}

/// Every virtual server of the configuration, on shared data-plane workers.
pub struct Balancer {
    servers: Vec<(String, Vs)>,
    clock: Clock,
    workers: Workers,
    /// Health-check latencies go here (the metrics page).
    obs: Observer,
}

fn master_rx(
    vs: &VirtualServer,
    mastership: &HashMap<String, watch::Receiver<bool>>,
) -> Result<Option<watch::Receiver<bool>>, ProxyError> {
    match &vs.vrrp_instance {
        None => Ok(None),
        Some(name) => mastership.get(name).cloned().map(Some).ok_or_else(|| {
            ProxyError(format!(
                "virtual_server.{}: vrrp_instance {name:?} is not running",
                vs.name
            ))
        }),
    }
}

impl Balancer {
    pub async fn start(
        servers: &[VirtualServer],
        mastership: &HashMap<String, watch::Receiver<bool>>,
        obs: Observer,
    ) -> Result<Balancer, ProxyError> {
        // Fix (and log) the connection budget from the fd limit now, after
        // main raised it, rather than at the first client.
        limits::global_cap();
        let mut b = Balancer {
            servers: Vec::new(),
            clock: Clock::new(),
            workers: Workers::start(worker_count())?,
            obs,
        };
        for vs in servers {
            let rt = b.start_vs(vs, mastership)?;
            b.servers.push((vs.name.clone(), rt));
        }
        Ok(b)
    }

    fn start_vs(
        &self,
        vs: &VirtualServer,
        mastership: &HashMap<String, watch::Receiver<bool>>,
    ) -> Result<Vs, ProxyError> {
        let table = balance::Table::new(config::table_spec(vs), self.clock.now())
            .map_err(|e| ProxyError(format!("virtual_server.{}: {e}", vs.name)))?;
        let table = TableHandle::new(table);
        let shared = Arc::new(Shared {
            cfg: ArcSwap::from_pointee(vs.clone()),
            table: table.clone(),
            clock: self.clock,
            serving: AtomicBool::new(false),
            active: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            close_all: watch::channel(0).0,
            close_backend: Mutex::new(HashMap::new()),
            udp: udp::UdpCounters::default(),
            counts: tcp::Counters::default(),
        });
        table.set_passive_policy(config::passive_policy(vs));
        let master = master_rx(vs, mastership)?;
        let checker = vs.check.as_ref().map(|c| {
            let ev = Some(tcp::marked_down_events(&shared));
            check::spawn_observed_checker(table, c.clone(), self.clock, ev, Some(self.obs.clone()))
        });
        let listeners = match vs.protocol {
            Protocol::Tcp => self
                .workers
                .handles
                .iter()
                .enumerate()
                .map(|(i, h)| h.spawn(tcp::serve(shared.clone(), master.clone(), i)))
                .collect(),
            Protocol::Udp => {
                let n = self.workers.handles.len();
                self.workers
                    .handles
                    .iter()
                    .map(|h| h.spawn(udp::serve(shared.clone(), master.clone(), n)))
                    .collect()
            }
        };
        info!(
            "virtual_server {}: {:?} {} ({} backends)",
            vs.name,
            vs.protocol,
            vs.listen,
            vs.real_servers.len()
        );
        Ok(Vs {
            shared,
            listeners,
            checker,
            master,
        })
    }

    pub fn status(&self) -> Vec<VirtualServerStatus> {
        self.servers
            .iter()
            .map(|(_, vs)| {
                let cfg = vs.shared.cfg.load();
                // Its own statement: the guard must be gone before `status()` locks again.
                let suppressed = vs.shared.table.lock().ejections_suppressed();
                VirtualServerStatus {
                    name: cfg.name.clone(),
                    listen: cfg.listen,
                    protocol: cfg.protocol,
                    lb_algo: cfg.lb_algo,
                    vrrp_instance: cfg.vrrp_instance.clone(),
                    serving: vs.shared.serving.load(Ordering::Relaxed),
                    active_connections: vs.shared.active.load(Ordering::Relaxed),
                    rejected_connections: vs.shared.rejected.load(Ordering::Relaxed),
                    streams: vs.shared.counts.snapshot(),
                    passive_ejections_suppressed: suppressed,
                    backends: vs.shared.table.status(),
                    udp_dropped_no_backend: vs.shared.udp.no_backend.load(Ordering::Relaxed),
                    udp_kernel_drops: vs.shared.udp.kernel_drops.load(Ordering::Relaxed),
                    udp_send_errors: vs.shared.udp.send_errors.load(Ordering::Relaxed),
                    udp_flows_evicted: vs.shared.udp.flows_evicted.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Each virtual server's table, by name (`track_virtual_server` reads health).
    pub fn tables(&self) -> Vec<(String, balance::TableHandle)> {
        self.servers
            .iter()
            .map(|(n, vs)| (n.clone(), vs.shared.table.clone()))
            .collect()
    }

    /// Change a backend's admin state: drain stops new connections, maint also
    /// closes its existing ones.
    pub fn set_admin(&self, vs: &str, backend: SocketAddr, admin: Admin) -> Result<(), ProxyError> {
        let Some((_, rt)) = self.servers.iter().find(|(n, _)| n == vs) else {
            let names: Vec<&str> = self.servers.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ProxyError(format!("no virtual_server {vs:?} (configured: {names:?})")));
        };
        rt.shared
            .table
            .set_admin(backend, admin)
            .map_err(|e| ProxyError(format!("{vs}: {e}")))?;
        info!("virtual_server {vs}: backend {backend} set to {admin:?}");
        if admin == Admin::Maint {
            rt.shared.close_backend(backend);
        }
        Ok(())
    }

    /// Apply a new set of virtual servers: unchanged listeners keep running and
    /// keep their connections; backends are reconciled (new ones start unknown,
    /// removed ones get no new connections while existing ones finish).
    pub async fn reload(
        &mut self,
        servers: &[VirtualServer],
        mastership: &HashMap<String, watch::Receiver<bool>>,
    ) -> Result<(), ProxyError> {
        let mut next = Vec::new();
        let mut old: Vec<(String, Vs)> = std::mem::take(&mut self.servers);
        for vs in servers {
            let pos = old.iter().position(|(n, _)| *n == vs.name);
            let reuse = pos.and_then(|p| {
                let cur = old[p].1.shared.cfg.load();
                let new_master = master_rx(vs, mastership).ok().flatten();
                let same_master = match (&old[p].1.master, &new_master) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.same_channel(b),
                    _ => false,
                };
                (cur.listen == vs.listen && cur.protocol == vs.protocol && same_master).then_some(p)
            });
            match reuse {
                Some(p) => {
                    let (name, mut rt) = old.remove(p);
                    let prev = rt.shared.cfg.load_full();
                    rt.shared
                        .table
                        .reconcile(config::table_spec(vs), self.clock.now())
                        .map_err(|e| ProxyError(format!("virtual_server.{}: {e}", vs.name)))?;
                    for r in &vs.real_servers {
                        if r.admin == Admin::Maint {
                            rt.shared.close_backend(r.address);
                        }
                    }
                    if prev.check != vs.check {
                        if let Some(c) = rt.checker.take() {
                            c.abort();
                        }
                        rt.checker = vs.check.as_ref().map(|c| {
                            let ev = tcp::marked_down_events(&rt.shared);
                            let obs = Some(self.obs.clone());
                            check::spawn_observed_checker(rt.shared.table.clone(), c.clone(), self.clock, Some(ev), obs)
                        });
                    }
                    rt.shared.table.set_passive_policy(config::passive_policy(vs));
                    rt.shared.cfg.store(Arc::new(vs.clone()));
                    next.push((name, rt));
                }
                None => {
                    if let Some(p) = pos {
                        let (_, rt) = old.remove(p);
                        rt.shared.close_all.send_modify(|g| *g += 1);
                    }
                    next.push((vs.name.clone(), self.start_vs(vs, mastership)?));
                }
            }
        }
        for (name, rt) in old {
            info!("virtual_server {name}: removed");
            rt.shared.close_all.send_modify(|g| *g += 1);
        }
        self.servers = next;
        Ok(())
    }

    /// Stop accepting, let connections finish for up to `drain`, then close them.
    pub async fn shutdown(self, drain: Duration) {
        for (_, rt) in &self.servers {
            for l in &rt.listeners {
                l.abort();
            }
        }
        let deadline = tokio::time::Instant::now() + drain;
        while tokio::time::Instant::now() < deadline
            && self
                .servers
                .iter()
                .any(|(_, rt)| rt.shared.active.load(Ordering::Relaxed) > 0)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (name, rt) in &self.servers {
            let left = rt.shared.active.load(Ordering::Relaxed);
            if left > 0 {
                warn!("virtual_server {name}: closing {left} connection(s) at shutdown");
            }
            rt.shared.close_all.send_modify(|g| *g += 1);
        }
    }
}
