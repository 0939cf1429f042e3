//! SHELL: the L4 data plane on the virtual IP, and what its tasks share.
//!
//! Per virtual server: listeners (IP_FREEBIND, so they bind before the VIP
//! arrives) that accept only while the tied VRRP instance is master, a relay
//! per connection (`tcp`, `relay`) or per client flow (`udp`), and the health
//! checker feeding the pure forwarding table in `balance`, whose immutable
//! snapshot is read lock-free on every new connection. The listeners run on
//! a few data-plane worker threads shared by all virtual servers; `balancer`
//! starts, reloads and stops them.

mod balancer;
pub mod limits;
mod relay;
mod tcp;
mod udp;
mod udp_flows;

pub use balancer::Balancer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::balance::{self, TableHandle};
use crate::check;
use crate::clock::Clock;
use crate::config::VirtualServer;

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
    pub clock: Clock,
    pub serving: AtomicBool,
    pub active: AtomicU64,
    pub rejected: AtomicU64,
    /// Bumped to close every proxied connection (mastership lost, shutdown).
    pub close_all: watch::Sender<u64>,
    /// Bumped per backend to close its connections (maint).
    pub close_backend: Mutex<HashMap<SocketAddr, watch::Sender<u64>>>,
    /// UDP drop and eviction counters.
    pub udp: udp::UdpCounters,
    /// TCP refusals and resets by cause (issue 8).
    pub counts: tcp::Counters,
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

/// A listening socket with IP_FREEBIND (binds before the VIP exists) and
/// SO_REUSEPORT (one socket per data-plane worker; the kernel only lets
/// sockets of the same user join). TCP also gets SO_REUSEADDR; UDP does not:
/// it would let any local user bind the same VIP port and take datagrams.
pub(crate) fn freebind_socket(addr: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol as P, Socket};
    let domain = if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let proto = if ty == socket2::Type::STREAM { P::TCP } else { P::UDP };
    let s = Socket::new(domain, ty, Some(proto))?;
    if ty == socket2::Type::STREAM {
        s.set_reuse_address(true)?;
    }
    // One socket per data-plane worker; the kernel spreads connections (and
    // UDP flows, by their addresses, so a flow stays on one worker).
    s.set_reuse_port(true)?;
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
