//! SHELL: the L4 data plane on the virtual IP. One runtime per virtual server:
//! a listener (IP_FREEBIND, so it binds before the VIP arrives) that accepts
//! only while the tied VRRP instance is master, a relay per connection (TCP)
//! or per client flow (UDP), and the health checker feeding the pure
//! forwarding table in `balance`, whose immutable snapshot is read lock-free
//! on every new connection.

mod relay;
mod tcp;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::balance::{self, BackendSpec, HealthPolicy, TableHandle, TableSpec};
use crate::check::{self, CheckSpec, ProbeKind};
use crate::config::{self, Admin, CheckKind, LbAlgo, Protocol, VirtualServer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError(pub String);

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProxyError {}

pub use crate::control::proto::VirtualServerStatus;

/// State shared between a virtual server's tasks.
pub(crate) struct Shared {
    pub cfg: ArcSwap<VirtualServer>,
    pub table: TableHandle,
    pub clock: check::Clock,
    pub serving: AtomicBool,
    pub active: AtomicU64,
    pub rejected: AtomicU64,
    /// Bumped to close every proxied connection (mastership lost, shutdown).
    pub close_all: watch::Sender<u64>,
    /// Bumped per backend to close its connections (maint).
    pub close_backend: Mutex<HashMap<SocketAddr, watch::Sender<u64>>>,
}

impl Shared {
    pub fn backend_closer(&self, addr: SocketAddr) -> watch::Receiver<u64> {
        let mut m = self.close_backend.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(addr).or_insert_with(|| watch::channel(0).0).subscribe()
    }
    pub fn close_backend(&self, addr: SocketAddr) {
        let m = self.close_backend.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = m.get(&addr) {
            tx.send_modify(|g| *g += 1);
        }
    }
    pub fn passive_failure(&self, id: balance::BackendId, detail: &str) {
        if let Some(ev) = self.table.passive_failure(id, detail, self.clock.now()) {
            check::log_health_event(&self.table.name(), &ev);
        }
    }
}

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

pub struct Balancer {
    servers: Vec<(String, Vs)>,
    clock: check::Clock,
    workers: Workers,
}

fn to_balance_admin(a: Admin) -> balance::Admin {
    match a {
        Admin::Ready => balance::Admin::Ready,
        Admin::Drain => balance::Admin::Drain,
        Admin::Maint => balance::Admin::Maint,
    }
}

fn to_algo(a: LbAlgo) -> balance::LbAlgo {
    match a {
        LbAlgo::Rr => balance::LbAlgo::Rr,
        LbAlgo::Wrr => balance::LbAlgo::Wrr,
        LbAlgo::Lc => balance::LbAlgo::Lc,
        LbAlgo::Sh => balance::LbAlgo::Sh,
        LbAlgo::Maglev => balance::LbAlgo::Maglev,
    }
}

/// The pure table's view of a `virtual_server` block.
pub fn table_spec(vs: &VirtualServer) -> TableSpec {
    TableSpec {
        name: vs.name.clone(),
        algo: to_algo(vs.lb_algo),
        health: vs.check.as_ref().map(|c| HealthPolicy {
            rise: c.rise,
            fall: c.fall,
        }),
        backends: vs
            .real_servers
            .iter()
            .map(|r| BackendSpec {
                address: r.address,
                weight: r.weight,
                backup: r.backup,
                priority: r.priority,
                admin: to_balance_admin(r.admin),
            })
            .collect(),
    }
}

/// The checker's view of a `check` block.
pub fn check_spec(c: &config::Check) -> CheckSpec {
    let kind = match &c.kind {
        CheckKind::Tcp { port } => ProbeKind::Tcp { port: *port },
        CheckKind::Http {
            port,
            path,
            expect_status,
            host,
        } => ProbeKind::Http {
            port: *port,
            path: path.clone(),
            expect_status: *expect_status,
            host: host.clone(),
        },
        CheckKind::Exec { command } => ProbeKind::Exec {
            command: command.clone(),
        },
    };
    CheckSpec {
        kind,
        interval: c.interval,
        timeout: c.timeout,
        rise: c.rise,
        fall: c.fall,
    }
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
    ) -> Result<Balancer, ProxyError> {
        let mut b = Balancer {
            servers: Vec::new(),
            clock: check::Clock::new(),
            workers: Workers::start(worker_count())?,
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
        let table = balance::Table::new(table_spec(vs), self.clock.now())
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
        });
        let master = master_rx(vs, mastership)?;
        let checker = vs
            .check
            .as_ref()
            .map(|c| check::spawn_checker(table, check_spec(c), self.clock, None));
        let listeners = match vs.protocol {
            Protocol::Tcp => self
                .workers
                .handles
                .iter()
                .enumerate()
                .map(|(i, h)| h.spawn(tcp::serve(shared.clone(), master.clone(), i)))
                .collect(),
            Protocol::Udp => self
                .workers
                .handles
                .iter()
                .take(1)
                .map(|h| h.spawn(udp::serve(shared.clone(), master.clone())))
                .collect(),
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
                VirtualServerStatus {
                    name: cfg.name.clone(),
                    listen: cfg.listen,
                    protocol: cfg.protocol,
                    lb_algo: cfg.lb_algo,
                    vrrp_instance: cfg.vrrp_instance.clone(),
                    serving: vs.shared.serving.load(Ordering::Relaxed),
                    active_connections: vs.shared.active.load(Ordering::Relaxed),
                    rejected_connections: vs.shared.rejected.load(Ordering::Relaxed),
                    backends: vs.shared.table.status(),
                }
            })
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
            .set_admin(backend, to_balance_admin(admin))
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
                        .reconcile(table_spec(vs), self.clock.now())
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
                        rt.checker = vs
                            .check
                            .as_ref()
                            .map(|c| check::spawn_checker(rt.shared.table.clone(), check_spec(c), self.clock, None));
                    }
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

/// Wait until this node may serve (no VRRP tie, or the instance is master).
/// Returns false if the mastership channel closed (instance removed).
pub(crate) async fn wait_master(master: &mut Option<watch::Receiver<bool>>) -> bool {
    match master {
        None => true,
        Some(rx) => rx.wait_for(|m| *m).await.is_ok(),
    }
}

/// Resolves when mastership is lost (never, without a VRRP tie).
pub(crate) async fn lost_master(master: &mut Option<watch::Receiver<bool>>) {
    match master {
        None => std::future::pending::<()>().await,
        Some(rx) => {
            let _ = rx.wait_for(|m| !*m).await;
        }
    }
}

/// A listening socket with SO_REUSEADDR (SO_REUSEPORT for TCP) and IP_FREEBIND (binds before the VIP exists).
pub(crate) fn freebind_socket(addr: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol as P, Socket};
    let domain = if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let proto = if ty == socket2::Type::STREAM { P::TCP } else { P::UDP };
    let s = Socket::new(domain, ty, Some(proto))?;
    s.set_reuse_address(true)?;
    if ty == socket2::Type::STREAM {
        // One listener per data-plane worker; the kernel spreads connections.
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv4() {
        s.set_freebind_v4(true)?;
    } else {
        s.set_freebind_v6(true)?;
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}
