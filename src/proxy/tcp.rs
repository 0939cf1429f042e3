//! TCP: accept on the VIP while master, pick a backend from the snapshot,
//! connect with redispatch on failure, relay with half-close and idle timeout.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::relay::{relay, Activity};
use super::{freebind_socket, lost_master, wait_master, Shared};
use crate::balance::BackendId;

/// One listener of a virtual server. Every data-plane worker runs one, with
/// SO_REUSEPORT, so the kernel spreads connections over the workers and each
/// connection lives on one thread. Worker 0 also closes the proxied
/// connections when mastership is lost.
pub(crate) async fn serve(shared: Arc<Shared>, mut master: Option<watch::Receiver<bool>>, worker: usize) {
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
            info!("virtual_server {}: accepting on {listen}", shared.table.name());
        }
        loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok((client, peer)) => { tokio::spawn(handle(shared.clone(), client, peer)); }
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

struct Active<'a>(&'a AtomicU64);
impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(shared: Arc<Shared>, client: TcpStream, peer: SocketAddr) {
    let cfg = shared.cfg.load_full();
    let n = shared.active.fetch_add(1, Ordering::Relaxed);
    let _active = Active(&shared.active);
    if cfg.max_connections.is_some_and(|m| n >= u64::from(m)) {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut close_all = shared.close_all.subscribe();
    let connect_timeout = cfg.connect_timeout.to_duration();
    // Pick and connect; a failed connect is a passive health failure and the
    // client is redispatched to another backend before any byte was relayed.
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
                chosen = Some((id, addr, stats, s));
                break;
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
    let Some((_id, addr, stats, backend)) = chosen else {
        shared.rejected.fetch_add(1, Ordering::Relaxed);
        debug!("virtual_server {}: no backend for {peer}", cfg.name);
        return;
    };
    let _conn = stats.open();
    let mut close_backend = shared.backend_closer(addr);
    // The client socket inherited TCP_NODELAY and SO_KEEPALIVE from the listener.
    let _ = backend.set_nodelay(true);
    let _ = socket2::SockRef::from(&backend).set_keepalive(true);
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
    tokio::select! {
        r = both => { if let Err(e) = r { debug!("relay {peer} <-> {addr}: {e}"); } }
        _ = close_all.changed() => debug!("closing {peer} <-> {addr}: not master or shutting down"),
        _ = close_backend.changed() => debug!("closing {peer} <-> {addr}: backend in maintenance"),
        _ = idle_watch => debug!("closing {peer} <-> {addr}: idle"),
    }
}
