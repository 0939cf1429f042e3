//! SHELL: UDP virtual servers (syslog, statsd). Design: per data-plane
//! worker, one VIP socket (SO_REUSEPORT, so the kernel keeps a client on one
//! worker; no SO_REUSEADDR; settable SO_RCVBUF; SO_RXQ_OVFL for kernel
//! drops) read with `recvmmsg` in batches, and a bounded flow table
//! (`udp_flows`: cap `udp_max_flows` split over the workers, LRU, one-shot
//! flows evicted first) mapping each client address to its backend and to
//! one connected socket toward it. That socket is what tells replies apart
//! (the backend answers to its local port), so fds are bounded by the cap,
//! not by the number of sources. A client's datagrams of one batch leave in
//! one `sendmmsg` (UDP GSO was tried: slower here, docs/benchmarks.md). Each
//! flow has one small task that waits for replies and reads them into the
//! worker thread's single 64 KiB buffer: no per-flow buffer. Flows re-pick
//! their backend when it goes down (active or passive checks), into maint or
//! out of the config; a drained backend keeps its flows (as IPVS and HAProxy
//! do) and gets no new ones. Every dropped datagram is counted per virtual
//! server.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::udp_flows::FlowTable;
use super::{freebind_socket, lost_master, wait_master, Shared};
use crate::balance::{Admin, BackendId, Health};

/// Datagrams read per `recvmmsg`.
const BATCH: usize = 32;
/// Largest datagram: a slot per batch entry (pages are touched only as used).
const SLOT: usize = 65_536;
/// Room for the SO_RXQ_OVFL control message of one datagram.
const CTRL: usize = 64;
/// Batches read per wake-up before other tasks (replies) get a turn.
const BATCHES_PER_WAKE: usize = 8;
/// Flows looked at per idle sweep.
const SWEEP_BUDGET: usize = 4096;

thread_local! {
    /// The worker thread's reply buffer (every flow's reply task borrows it
    /// between awaits, never across one).
    static REPLY_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; SLOT]);
}

/// Per-virtual-server UDP counters (also shown in the status).
#[derive(Default)]
pub(crate) struct UdpCounters {
    /// Datagrams dropped because no backend was available.
    pub no_backend: AtomicU64,
    /// Datagrams the kernel dropped on the VIP socket (receive queue full).
    pub kernel_drops: AtomicU64,
    /// Datagrams not sent (to a backend or back to a client), including
    /// local failures to open a flow's socket.
    pub send_errors: AtomicU64,
    /// Flows evicted at the `udp_max_flows` cap.
    pub flows_evicted: AtomicU64,
}

struct Flow {
    id: BackendId,
    /// Snapshot generation at which this flow's backend was last known fit.
    gen: u64,
    token: u64,
    sock: Arc<UdpSocket>,
    /// Milliseconds since the serve loop's epoch of the last reply.
    answered: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    conn: crate::balance::ConnGuard,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The backends whose existing flows stay: not down, not in maint, still
/// configured (drained ones keep theirs).
fn keep_set(shared: &Shared) -> Vec<BackendId> {
    shared
        .table
        .status()
        .iter()
        .filter(|b| b.health != Health::Down && b.admin != Admin::Maint)
        .map(|b| b.id)
        .collect()
}

/// The VIP socket: IP_FREEBIND, no SO_REUSEADDR, the configured receive
/// buffer (SO_RCVBUFFORCE when privileged), SO_RXQ_OVFL on.
fn vip_socket(listen: SocketAddr, rcvbuf: u32) -> std::io::Result<UdpSocket> {
    let s = freebind_socket(listen, socket2::Type::DGRAM)?;
    let fd = s.as_raw_fd();
    let val = rcvbuf.min(i32::MAX as u32) as libc::c_int;
    let set = |opt: libc::c_int, v: libc::c_int| {
        // SAFETY: setsockopt on a valid socket with a c_int option value.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE, val) != 0 {
        s.set_recv_buffer_size(rcvbuf as usize)?;
    }
    if set(libc::SO_RXQ_OVFL, 1) != 0 {
        warn!("udp {listen}: SO_RXQ_OVFL: {}", std::io::Error::last_os_error());
    }
    UdpSocket::from_std(std::net::UdpSocket::from(s))
}

/// Received datagrams of one batch (plain data, so the serve future stays Send).
struct Batch {
    bufs: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    ctrl: Vec<[u64; CTRL / 8]>,
    lens: Vec<usize>,
    from: Vec<Option<SocketAddr>>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            bufs: vec![0u8; BATCH * SLOT],
            // SAFETY: sockaddr_storage is plain data; all zeros is valid.
            addrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            ctrl: vec![[0u64; CTRL / 8]; BATCH],
            lens: vec![0; BATCH],
            from: vec![None; BATCH],
        }
    }
    fn data(&self, i: usize) -> &[u8] {
        &self.bufs[i * SLOT..i * SLOT + self.lens[i]]
    }

    /// One `recvmmsg` (non-blocking). Returns how many datagrams were read
    /// and the latest SO_RXQ_OVFL drop count seen.
    fn recv(&mut self, fd: libc::c_int) -> std::io::Result<(usize, Option<u32>)> {
        // SAFETY: zeroed iovec/mmsghdr are valid "empty" values; all are filled below.
        let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let base = self.bufs.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: i * SLOT + SLOT <= bufs.len(): the slot lies inside the buffer.
            iov[i].iov_base = unsafe { base.add(i * SLOT) }.cast();
            iov[i].iov_len = SLOT;
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = CTRL as _;
        }
        // SAFETY: every header points into buffers owned by `self` or this
        // frame, valid for the call; MSG_DONTWAIT: never blocks.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let n = n as usize;
        let mut ovfl = None;
        for (i, m) in hdrs.iter().enumerate().take(n) {
            let h = &m.msg_hdr;
            self.lens[i] = (m.msg_len as usize).min(SLOT);
            self.from[i] = sockaddr(&self.addrs[i]);
            if h.msg_flags & libc::MSG_TRUNC != 0 {
                // Larger than a slot cannot happen for UDP over IP (64 KiB max).
                self.from[i] = None;
            }
            // SAFETY: walking the control messages the kernel wrote into our
            // buffer, bounded by msg_controllen, with the libc CMSG macros.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(h);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                        let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>());
                        ovfl = Some(v);
                    }
                    c = libc::CMSG_NXTHDR(h, c);
                }
            }
        }
        Ok((n, ovfl))
    }
}

/// The address the kernel wrote into `ss` (IPv4 or IPv6).
fn sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: family AF_INET: the storage holds a sockaddr_in (and is large and aligned enough).
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: family AF_INET6: the storage holds a sockaddr_in6.
            let a = unsafe { &*(ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `sendmmsg` of batch entries `idx` on a connected socket. Returns how many
/// went out.
fn send_run(fd: libc::c_int, batch: &Batch, idx: &[usize]) -> std::io::Result<usize> {
    let k = idx.len().min(BATCH);
    // SAFETY: zeroed iovec/mmsghdr are valid "empty" values; filled below.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (j, &i) in idx.iter().take(k).enumerate() {
        let d = batch.data(i);
        iov[j].iov_base = d.as_ptr() as *mut libc::c_void;
        iov[j].iov_len = d.len();
        hdrs[j].msg_hdr.msg_iov = &mut iov[j];
        hdrs[j].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the headers point at `batch`'s data (read-only for the kernel)
    // and at `iov`, both alive for the call; the socket is connected so no
    // address is needed; MSG_DONTWAIT: never blocks.
    let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), k as libc::c_uint, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One data-plane worker's share of a UDP virtual server: its own VIP socket
/// (SO_REUSEPORT: the kernel keeps each client on one worker) and flow table
/// (`udp_max_flows / workers` flows).
pub(crate) async fn serve(shared: Arc<Shared>, mut master: Option<watch::Receiver<bool>>, workers: usize) {
    let mut batch = Batch::new();
    loop {
        if !wait_master(&mut master).await {
            shared.serving.store(false, Ordering::Relaxed);
            return;
        }
        let cfg = shared.cfg.load_full();
        let listen = cfg.listen;
        let front = match vip_socket(listen, cfg.udp_rcvbuf) {
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
        let mut st = Serve {
            flows: FlowTable::new((cfg.udp_max_flows as usize / workers.max(1)).max(16)),
            keep_gen: u64::MAX,
            keep: Vec::new(),
            next_token: 0,
            ended_flows: 0,
            epoch: tokio::time::Instant::now(),
            kdrops_seen: 0,
            active: 0,
            ended: mpsc::unbounded_channel(),
            shared: shared.clone(),
        };
        let mut close_all = shared.close_all.subscribe();
        let mut sweep = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                r = front.readable() => {
                    if r.is_err() {
                        break;
                    }
                    for _ in 0..BATCHES_PER_WAKE {
                        let r = front.try_io(Interest::READABLE, || batch.recv(front.as_raw_fd()));
                        match r {
                            Ok((0, _)) => break,
                            Ok((n, ovfl)) => {
                                if let Some(v) = ovfl.map(u64::from) {
                                    // Cumulative per socket: add what is new.
                                    if v > st.kdrops_seen {
                                        shared.udp.kernel_drops.fetch_add(v - st.kdrops_seen, Ordering::Relaxed);
                                        st.kdrops_seen = v;
                                    }
                                }
                                if st.forward(&shared, &front, &batch, n).await {
                                    // Let the ended flows' reply tasks be dropped
                                    // now, closing their sockets: fds stay bounded
                                    // by the cap even during a flood of new flows.
                                    tokio::task::yield_now().await;
                                }
                                if n < BATCH {
                                    break;
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                debug!("udp {listen}: recvmmsg: {e}");
                                break;
                            }
                        }
                    }
                }
                Some((client, token)) = st.ended.1.recv() => {
                    if st.flows.get(&client).is_some_and(|f| f.token == token) {
                        st.flows.remove(&client);
                    }
                }
                _ = sweep.tick(), if !st.flows.is_empty() => {
                    let idle = shared.cfg.load().idle_timeout.to_duration().as_millis() as u64;
                    let now = st.now_ms();
                    st.flows.expire(now, idle, SWEEP_BUDGET, |f| f.answered.load(Ordering::Relaxed));
                }
                _ = close_all.changed() => { st.flows.drain_all(); }
                _ = lost_master(&mut master) => break,
            }
            st.report_active(&shared);
        }
        st.flows.drain_all();
        st.report_active(&shared);
        shared.serving.store(false, Ordering::Relaxed);
        info!(
            "virtual_server {}: no longer master; udp socket closed",
            shared.table.name()
        );
    }
}

type Ended = (SocketAddr, u64);

struct Serve {
    flows: FlowTable<Flow>,
    /// Snapshot generation `keep` was computed for.
    keep_gen: u64,
    keep: Vec<BackendId>,
    next_token: u64,
    /// Flows removed by eviction or re-pick (to know when to yield).
    ended_flows: u64,
    epoch: tokio::time::Instant,
    /// The VIP socket's SO_RXQ_OVFL count already added to the counter.
    kdrops_seen: u64,
    /// This worker's flows as last added to `shared.active`.
    active: u64,
    /// Flows whose reply task ended: (client, token).
    ended: (mpsc::UnboundedSender<Ended>, mpsc::UnboundedReceiver<Ended>),
    /// To take this worker's flows out of `shared.active` when the serve
    /// task is aborted (shutdown waits for active flows to reach 0).
    shared: Arc<Shared>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.flows.drain_all();
        let shared = self.shared.clone();
        self.report_active(&shared);
    }
}

impl Serve {
    /// Workers share `shared.active`: each adds the change in its own count.
    fn report_active(&mut self, shared: &Shared) {
        let n = self.flows.len() as u64;
        if n > self.active {
            shared.active.fetch_add(n - self.active, Ordering::Relaxed);
        } else if n < self.active {
            shared.active.fetch_sub(self.active - n, Ordering::Relaxed);
        }
        self.active = n;
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Find the flow of `client` (re-picking if its backend may no longer
    /// keep it) or open one.
    fn flow_for(&mut self, shared: &Arc<Shared>, front: &Arc<UdpSocket>, client: SocketAddr, now: u64) -> Pick {
        let gen = shared.table.load().generation();
        if let Some(f) = self.flows.touch(&client, now) {
            if f.gen == gen {
                return Pick::Ok;
            }
            let id = f.id;
            if self.keep_gen != gen {
                self.keep = keep_set(shared);
                self.keep_gen = gen;
            }
            if self.keep.contains(&id) {
                if let Some(f) = self.flows.get_mut(&client) {
                    f.gen = gen;
                }
                return Pick::Ok;
            }
            // Its backend is down, in maint or gone: pick again.
            self.flows.remove(&client);
            self.ended_flows += 1;
        }
        let snap = shared.table.load();
        let Some(e) = snap.pick_entry(client, &[]) else {
            return Pick::NoBackend;
        };
        let (id, addr, stats) = (e.id, e.address, e.stats.clone());
        let gen = snap.generation();
        drop(snap);
        let sock = match connected_socket(addr) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                // A local failure (EMFILE, ENOBUFS...): never the backend's fault.
                debug!("udp flow {client} -> {addr}: {e}");
                return Pick::LocalError;
            }
        };
        self.next_token += 1;
        let token = self.next_token;
        let answered = Arc::new(AtomicU64::new(now));
        let task = tokio::spawn(replies(Reply {
            shared: shared.clone(),
            sock: sock.clone(),
            front: front.clone(),
            client,
            id,
            answered: answered.clone(),
            epoch: self.epoch,
            ended: self.ended.0.clone(),
            token,
            stats: stats.clone(),
        }));
        let flow = Flow {
            id,
            gen,
            token,
            sock,
            answered,
            task,
            conn: stats.open(),
        };
        if self.flows.insert(client, flow, now).is_some() {
            shared.udp.flows_evicted.fetch_add(1, Ordering::Relaxed);
            self.ended_flows += 1;
        }
        Pick::Ok
    }

    /// Send the batch's datagrams to their flows: a client's datagrams (in
    /// order) leave in one `sendmmsg`. True if flows were ended on the way.
    async fn forward(&mut self, shared: &Arc<Shared>, front: &Arc<UdpSocket>, batch: &Batch, n: usize) -> bool {
        let now = self.now_ms();
        let ended_before = self.ended_flows;
        let mut grouped: Vec<(SocketAddr, Vec<usize>)> = Vec::new();
        for i in 0..n {
            let Some(client) = batch.from[i] else { continue };
            match grouped.iter_mut().find(|(c, _)| *c == client) {
                Some((_, idx)) => idx.push(i),
                None => grouped.push((client, vec![i])),
            }
        }
        for (client, idx) in grouped {
            let count = idx.len() as u64;
            match self.flow_for(shared, front, client, now) {
                Pick::Ok => {}
                Pick::NoBackend => {
                    shared.udp.no_backend.fetch_add(count, Ordering::Relaxed);
                    continue;
                }
                Pick::LocalError => {
                    shared.udp.send_errors.fetch_add(count, Ordering::Relaxed);
                    continue;
                }
            }
            let Some(f) = self.flows.get(&client) else { continue };
            let (sock, stats) = (f.sock.clone(), f.conn.stats().clone());
            let mut idx = idx;
            flush(shared, client, &sock, &stats, batch, &mut idx).await;
        }
        self.ended_flows != ended_before
    }
}

/// Send batch entries `singles` (one flow's, in order) with `sendmmsg`, and empty it.
async fn flush(
    shared: &Shared,
    client: SocketAddr,
    sock: &UdpSocket,
    stats: &crate::balance::BackendStats,
    batch: &Batch,
    singles: &mut Vec<usize>,
) {
    let mut sent = 0;
    while sent < singles.len() {
        // Straight to the syscall (MSG_DONTWAIT): a new flow's socket has no
        // readiness recorded yet and must not wait for one.
        match with_room(sock, || send_run(sock.as_raw_fd(), batch, &singles[sent..])).await {
            Ok(k) => {
                stats.add_bytes_in(singles[sent..sent + k].iter().map(|&i| batch.lens[i] as u64).sum());
                sent += k;
            }
            Err(e) => {
                debug!("udp flow {client}: {e}");
                shared
                    .udp
                    .send_errors
                    .fetch_add((singles.len() - sent) as u64, Ordering::Relaxed);
                break;
            }
        }
    }
    singles.clear();
}

/// Run `f`; if the socket's send buffer is full, wait once (briefly) for room
/// and run it again.
async fn with_room<T>(sock: &UdpSocket, mut f: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    match f() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            let _ = tokio::time::timeout(Duration::from_millis(50), sock.writable()).await;
            f()
        }
        r => r,
    }
}

enum Pick {
    Ok,
    NoBackend,
    LocalError,
}

/// A socket connected to `backend`, from an ephemeral port.
fn connected_socket(backend: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if backend.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let s = std::net::UdpSocket::bind(bind)?;
    s.connect(backend)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// What a flow's reply task needs.
struct Reply {
    shared: Arc<Shared>,
    sock: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    id: BackendId,
    answered: Arc<AtomicU64>,
    epoch: tokio::time::Instant,
    ended: mpsc::UnboundedSender<Ended>,
    token: u64,
    stats: Arc<crate::balance::BackendStats>,
}

/// Replies read per wake-up before yielding.
const REPLIES_PER_WAKE: usize = 64;

/// A flow's reply path: backend → client through the VIP socket. Ends (and
/// tells the serve loop) when the backend refuses (ICMP port unreachable: a
/// passive health failure) or the socket fails; aborted when the flow goes.
async fn replies(r: Reply) {
    let to = socket2::SockAddr::from(r.client);
    loop {
        // ERROR too: an ICMP refusal only raises EPOLLERR on the socket.
        let Ok(ready) = r.sock.ready(Interest::READABLE | Interest::ERROR).await else {
            break;
        };
        // try_io takes one interest (a combined one never matches).
        let want = if ready.is_readable() {
            Interest::READABLE
        } else {
            Interest::ERROR
        };
        let res = REPLY_BUF.with(|b| {
            let mut b = b.borrow_mut();
            let front = socket2::SockRef::from(&*r.front);
            for _ in 0..REPLIES_PER_WAKE {
                let got = r.sock.try_io(want, || {
                    // SAFETY: recv into our buffer, at most its length; non-blocking.
                    let n =
                        unsafe { libc::recv(r.sock.as_raw_fd(), b.as_mut_ptr().cast(), b.len(), libc::MSG_DONTWAIT) };
                    if n < 0 {
                        Err(std::io::Error::last_os_error())
                    } else {
                        Ok(n as usize)
                    }
                });
                match got {
                    Ok(n) => {
                        r.answered
                            .store(r.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                        // Straight to the syscall: the VIP socket is non-blocking.
                        match front.send_to(&b[..n], &to) {
                            Ok(_) => r.stats.add_bytes_out(n as u64),
                            Err(e) => {
                                debug!("udp reply to {}: {e}", r.client);
                                r.shared.udp.send_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            }
            Ok(true)
        });
        match res {
            Ok(false) => {}
            Ok(true) => tokio::task::yield_now().await,
            Err(e) => {
                if e.kind() == std::io::ErrorKind::ConnectionRefused {
                    r.shared.passive_failure(r.id, "udp: port unreachable");
                } else {
                    debug!("udp flow {}: {e}", r.client);
                }
                break;
            }
        }
    }
    let _ = r.ended.send((r.client, r.token));
}
