//! UDP: per-client flows (syslog, statsd). Each client gets a connected socket
//! to its backend; replies are sent back from the VIP:port socket. Flows end
//! after the idle timeout; the flow table is capped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{freebind_socket, lost_master, wait_master, Shared};

/// Most concurrent client flows per virtual server.
pub const MAX_FLOWS: usize = 65_536;

struct Flow {
    sock: Arc<UdpSocket>,
    /// Milliseconds since `epoch` of the last datagram in either direction.
    last: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    _conn: crate::balance::ConnGuard,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn serve(shared: Arc<Shared>, mut master: Option<watch::Receiver<bool>>) {
    loop {
        if !wait_master(&mut master).await {
            shared.serving.store(false, Ordering::Relaxed);
            return;
        }
        let listen = shared.cfg.load().listen;
        let sock = match freebind_socket(listen, socket2::Type::DGRAM)
            .and_then(|s| UdpSocket::from_std(std::net::UdpSocket::from(s)))
        {
            Ok(s) => Arc::new(s),
            Err(e) => {
                warn!(
                    "virtual_server {}: cannot bind udp {listen}: {e}; retrying",
                    shared.table.name()
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        shared.serving.store(true, Ordering::Relaxed);
        info!("virtual_server {}: serving udp on {listen}", shared.table.name());
        let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<SocketAddr>();
        let mut buf = vec![0u8; 65_536];
        let mut close_all = shared.close_all.subscribe();
        let epoch = tokio::time::Instant::now();
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => {
                    let Ok((n, client)) = r else { continue };
                    if !flows.contains_key(&client) {
                        if flows.len() >= MAX_FLOWS {
                            shared.rejected.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        match open_flow(&shared, &sock, client, ended_tx.clone(), epoch).await {
                            Some(f) => { flows.insert(client, f); }
                            None => { shared.rejected.fetch_add(1, Ordering::Relaxed); continue; }
                        }
                    }
                    if let Some(f) = flows.get(&client) {
                        f.last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                        if let Err(e) = f.sock.send(&buf[..n]).await {
                            debug!("udp flow {client}: {e}");
                        } else {
                            f._conn.stats().add_bytes_in(n as u64);
                        }
                    }
                }
                Some(c) = ended_rx.recv() => { flows.remove(&c); }
                _ = close_all.changed() => { flows.clear(); }
                _ = lost_master(&mut master) => break,
            }
            shared.active.store(flows.len() as u64, Ordering::Relaxed);
        }
        flows.clear();
        shared.active.store(0, Ordering::Relaxed);
        shared.serving.store(false, Ordering::Relaxed);
        info!(
            "virtual_server {}: no longer master; udp socket closed",
            shared.table.name()
        );
    }
}

async fn open_flow(
    shared: &Arc<Shared>,
    front: &Arc<UdpSocket>,
    client: SocketAddr,
    ended: mpsc::UnboundedSender<SocketAddr>,
    epoch: tokio::time::Instant,
) -> Option<Flow> {
    let snap = shared.table.load();
    let e = snap.pick_entry(client, &[])?;
    let (id, addr, stats) = (e.id, e.address, e.stats.clone());
    drop(snap);
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = UdpSocket::bind(bind).await.ok()?;
    s.connect(addr).await.ok()?;
    let s = Arc::new(s);
    let conn = stats.open();
    let idle = shared.cfg.load().idle_timeout.to_duration();
    let last = Arc::new(std::sync::atomic::AtomicU64::new(epoch.elapsed().as_millis() as u64));
    let (rs, front, st, seen) = (s.clone(), front.clone(), stats.clone(), last.clone());
    let mut maint = shared.backend_closer(addr);
    let shared = shared.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let r = tokio::select! {
                r = tokio::time::timeout(idle, rs.recv(&mut buf)) => r,
                // Backend put in maintenance: end the flow; the client's next
                // datagram picks another backend.
                _ = maint.changed() => break,
            };
            match r {
                Ok(Ok(n)) => {
                    seen.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                    if front.send_to(&buf[..n], client).await.is_ok() {
                        st.add_bytes_out(n as u64);
                    }
                }
                // Idle in this direction: the flow lives on while the client still sends.
                Err(_) => {
                    let quiet = (epoch.elapsed().as_millis() as u64).saturating_sub(seen.load(Ordering::Relaxed));
                    if quiet >= idle.as_millis() as u64 {
                        break;
                    }
                }
                // Refused (ICMP port unreachable): a passive health failure; the
                // flow ends and the client's next datagram picks again.
                Ok(Err(e)) => {
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        shared.passive_failure(id, "udp: port unreachable");
                    }
                    break;
                }
            }
        }
        let _ = ended.send(client);
    });
    Some(Flow {
        sock: s,
        last,
        task,
        _conn: conn,
    })
}
