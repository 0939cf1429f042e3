//! TCP: accept on the VIP while master (within the connection caps), pick a
//! backend from the snapshot, connect with redispatch on failure, relay with
//! half-close and idle timeout; an aborted stream ends with a RST.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::limits::{self, GlobalSlot};
use super::relay::{relay, Activity};
use super::{freebind_socket, lost_master, wait_master, Shared};
use crate::balance::{BackendId, Health, HealthEvent};
use crate::config::OnMarkedDown;
use crate::control::proto::StreamCounts;

/// Backend sockets: unacknowledged data older than this aborts the stream
/// (TCP_USER_TIMEOUT), so a stream to a black hole fails in seconds, not at
/// the idle timeout.
const BACKEND_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Backend keepalive: first probe after this much silence, then every
/// `KEEPALIVE_INTERVAL`, `KEEPALIVE_PROBES` unanswered probes end the stream
/// (about 60 s for an idle stream to a vanished backend).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_PROBES: u32 = 3;

/// Live counters behind [`StreamCounts`].
#[derive(Default)]
pub(crate) struct Counters {
    at_cap: AtomicU64,
    no_backend: AtomicU64,
    local_errors: AtomicU64,
    fd_exhausted: AtomicU64,
    first_byte: AtomicU64,
    aborted: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> StreamCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamCounts {
            rejected_at_cap: g(&self.at_cap),
            rejected_no_backend: g(&self.no_backend),
            local_connect_errors: g(&self.local_errors),
            rejected_fd_exhausted: g(&self.fd_exhausted),
            first_byte_timeouts: g(&self.first_byte),
            aborted: g(&self.aborted),
        }
    }
}

fn bump(shared: &Shared, which: &AtomicU64, rejected: bool) {
    which.fetch_add(1, Ordering::Relaxed);
    if rejected {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
    }
}

/// One listener of a virtual server. Every data-plane worker runs one, with
/// SO_REUSEPORT, so the kernel spreads connections over the workers and each
/// connection lives on one thread. Worker 0 also closes the proxied
/// connections when mastership is lost.
pub(crate) async fn serve(shared: Arc<Shared>, mut master: Option<watch::Receiver<bool>>, worker: usize) {
    limits::hold_reserve_fd();
    loop {
        if !wait_master(&mut master).await {
            shared.serving.store(false, Ordering::Relaxed);
            return;
        }
        let listen = shared.cfg.load().listen;
        let listener = match freebind_socket(listen, socket2::Type::STREAM)
            .and_then(|s| {
                // Accepted sockets inherit these: no setsockopt per client.
                s.set_tcp_nodelay(true)?;
                s.set_keepalive(true)?;
                s.listen(1024)?;
                Ok(s)
            })
            .and_then(|s| TcpListener::from_std(std::net::TcpListener::from(s)))
        {
            Ok(l) => l,
            Err(e) => {
                warn!(
                    "virtual_server {}: cannot listen on {listen}: {e}; retrying",
                    shared.table.name()
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        shared.serving.store(true, Ordering::Relaxed);
        if worker == 0 {
            info!(
                "virtual_server {}: accepting on {listen} (at most {} connections)",
                shared.table.name(),
                cap(&shared)
            );
        }
        let mut fd_errors = 0u32;
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((client, peer)) => {
                        fd_errors = 0;
                        admit(&shared, client, peer);
                    }
                    Err(e) if limits::is_fd_exhaustion(&e) => {
                        // Out of fds: shed one pending client with the
                        // reserve fd (it learns now, not after a backlog
                        // timeout), then back off instead of spinning.
                        if limits::shed_one(&listener) {
                            bump(&shared, &shared.counts.fd_exhausted, true);
                        }
                        if fd_errors == 0 {
                            warn!("virtual_server {}: accept: {e}; shedding new clients until fds free up", shared.table.name());
                        }
                        tokio::time::sleep(limits::accept_backoff(fd_errors)).await;
                        fd_errors = fd_errors.saturating_add(1);
                    }
                    Err(e) => { debug!("accept: {e}"); tokio::time::sleep(Duration::from_millis(10)).await; }
                },
                _ = lost_master(&mut master) => break,
            }
        }
        drop(listener);
        shared.serving.store(false, Ordering::Relaxed);
        if worker == 0 {
            let n = shared.active.load(Ordering::Relaxed);
            info!(
                "virtual_server {}: no longer master; closed the listener and {n} connection(s)",
                shared.table.name()
            );
            shared.close_all.send_modify(|g| *g += 1);
        }
    }
}

/// This virtual server's cap: `max_connections`, or the process-wide cap
/// derived from the fd limit (which applies in any case).
fn cap(shared: &Shared) -> u64 {
    let global = limits::global_cap();
    shared
        .cfg
        .load()
        .max_connections
        .map_or(global, |m| u64::from(m).min(global))
}

/// Under both caps: spawn the stream's task. Over a cap: reset the client at
/// once (no task, no allocation) and count it.
fn admit(shared: &Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    let max = shared.cfg.load().max_connections.map_or(u64::MAX, u64::from);
    let n = shared.active.fetch_add(1, Ordering::Relaxed);
    let active = Active(shared.clone());
    let slot = if n < max { GlobalSlot::try_take() } else { None };
    let Some(slot) = slot else {
        drop(active);
        limits::abort_close(SockRef::from(&client));
        bump(shared, &shared.counts.at_cap, true);
        debug!(
            "virtual_server {}: {peer} refused at the connection cap",
            shared.table.name()
        );
        return;
    };
    tokio::spawn(handle(shared.clone(), client, peer, active, slot));
}

/// One stream counted in the virtual server's `active`; released on drop.
struct Active(Arc<Shared>);
impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Options for a backend socket: no Nagle, keepalive, user timeout.
fn tune_backend(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let r = SockRef::from(s);
    let ka = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    let _ = r.set_tcp_keepalive(&ka);
    let _ = r.set_tcp_user_timeout(Some(BACKEND_USER_TIMEOUT));
}

async fn handle(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr, _active: Active, _slot: GlobalSlot) {
    let cfg = shared.cfg.load_full();
    let mut close_all = shared.close_all.subscribe();
    // Lazy connect: a silent client ties up no backend connection.
    if let Some(t) = cfg.limits.client_first_byte_timeout {
        let mut one = [0u8; 1];
        tokio::select! {
            // peek, not readable(): a new socket may report readiness before any byte.
            r = tokio::time::timeout(t.to_duration(), client.peek(&mut one)) => match r {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    bump(&shared, &shared.counts.first_byte, false);
                    debug!("virtual_server {}: {peer} sent nothing in {:?}; closed", cfg.name, t.to_duration());
                    return;
                }
            },
            _ = close_all.changed() => {
                limits::abort_close(SockRef::from(&client));
                return;
            }
        }
    }
    let connect_timeout = cfg.connect_timeout.to_duration();
    // Pick and connect; a connect the backend refuses or does not answer is a
    // passive health failure and the client is redispatched to another
    // backend before any byte was relayed. A local failure (out of fds or
    // ports) is ours: the client is refused, no backend is blamed.
    let mut exclude: Vec<BackendId> = Vec::new();
    let mut chosen = None;
    for _ in 0..=cfg.retries {
        let snap = shared.table.load();
        let Some(e) = snap.pick_entry(peer, &exclude) else {
            break;
        };
        let (id, addr, stats) = (e.id, e.address, e.stats.clone());
        drop(snap);
        match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                chosen = Some((addr, stats, s));
                break;
            }
            Ok(Err(e)) if limits::is_local_connect_error(&e) => {
                bump(&shared, &shared.counts.local_errors, true);
                limits::abort_close(SockRef::from(&client));
                warn_local(&shared, addr, &e);
                return;
            }
            Ok(Err(e)) => {
                shared.passive_failure(
                    id,
                    &format!("connect failed: {}", crate::check::probe::io_error_detail(&e)),
                );
                exclude.push(id);
            }
            Err(_) => {
                shared.passive_failure(id, &format!("connect timeout after {} ms", connect_timeout.as_millis()));
                exclude.push(id);
            }
        }
    }
    let Some((addr, stats, backend)) = chosen else {
        bump(&shared, &shared.counts.no_backend, true);
        limits::abort_close(SockRef::from(&client));
        debug!("virtual_server {}: no backend for {peer}", cfg.name);
        return;
    };
    let _conn = stats.open();
    let mut close_backend = shared.backend_closer(addr);
    // The client socket inherited TCP_NODELAY and SO_KEEPALIVE from the listener.
    tune_backend(&backend);
    let idle = cfg.idle_timeout.to_duration();
    let activity = Activity::new();
    let both = relay(&client, &backend, &stats, &activity);
    let idle_watch = async {
        loop {
            let since = activity.idle_for();
            if since >= idle {
                return;
            }
            tokio::time::sleep(idle - since).await;
        }
    };
    // Graceful ends (both directions done, idle) close with a FIN after the
    // kernel sent what it holds; an abort resets both sides, so a client
    // whose bytes may not have been delivered knows to resend.
    let abort = tokio::select! {
        r = both => match r {
            Ok(()) => None,
            Err(e) => Some(format!("relay error: {e}")),
        },
        _ = close_all.changed() => Some("not master or shutting down".to_string()),
        _ = close_backend.changed() => Some("backend in maintenance or marked down".to_string()),
        _ = idle_watch => {
            debug!("closing {peer} <-> {addr}: idle");
            None
        }
    };
    if let Some(why) = abort {
        debug!("resetting {peer} <-> {addr}: {why}");
        limits::abort_close(SockRef::from(&client));
        limits::abort_close(SockRef::from(&backend));
        bump(&shared, &shared.counts.aborted, false);
    }
}

/// Log a local connect failure, at most once a second per process (a burst
/// of EMFILE must not become a burst of log lines).
fn warn_local(shared: &Shared, addr: SocketAddr, e: &std::io::Error) {
    static LAST: AtomicU64 = AtomicU64::new(u64::MAX);
    let now = shared.clock.now().as_micros() / 1_000_000;
    if LAST.swap(now, Ordering::Relaxed) != now {
        let vs = shared.table.name();
        warn!("virtual_server {vs}: connect to {addr} failed locally ({e}); client refused, backend not blamed");
    }
}

/// A sender for the checker's health events: a backend its checks mark
/// down has its established streams reset when the virtual server says
/// `on_marked_down = "shutdown"`. The task ends with the checker.
pub(crate) fn marked_down_events(shared: &Arc<Shared>) -> mpsc::UnboundedSender<HealthEvent> {
    let (tx, mut rx) = mpsc::unbounded_channel::<HealthEvent>();
    let weak: Weak<Shared> = Arc::downgrade(shared);
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let Some(shared) = weak.upgrade() else { return };
            if ev.to == Health::Down && shared.cfg.load().limits.on_marked_down == OnMarkedDown::Shutdown {
                info!(
                    "virtual_server {}: backend {} marked down; resetting its streams (on_marked_down = \"shutdown\")",
                    shared.table.name(),
                    ev.address
                );
                shared.close_backend(ev.address);
            }
        }
    });
    tx
}
