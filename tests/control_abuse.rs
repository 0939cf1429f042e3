//! The control socket and the metrics listener under abusive clients: idle
//! connections beyond the cap do not stop a real client (the oldest silent one
//! is evicted), a client that stays silent is cut off at the timeout, and when
//! every slot is busy with a client already talking, the next is refused at
//! once with a reason. Loopback (127.0.0.1) and a temp directory only.

#[path = "control/support.rs"]
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{fake_daemon, TempDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::mpsc;
use vipd::control::{self, metrics, Envelope, Request, Status};

const IDLE: usize = metrics::MAX_CLIENTS + 5;
const LIMIT: Duration = Duration::from_secs(20);

/// A daemon that takes requests and never answers (keeps every reply channel
/// open); counts the requests it got.
fn stuck_daemon() -> (mpsc::Sender<Envelope>, Arc<AtomicUsize>) {
    let (tx, mut rx) = mpsc::channel::<Envelope>(64);
    let got = Arc::new(AtomicUsize::new(0));
    let n = got.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(env) = rx.recv().await {
            held.push(env);
            n.fetch_add(1, Ordering::SeqCst);
        }
    });
    (tx, got)
}

async fn start_metrics(tx: mpsc::Sender<Envelope>) -> (SocketAddr, Arc<control::ClientCounters>) {
    let server = metrics::MetricsServer::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let counters = server.counters();
    tokio::spawn(server.run(tx));
    (addr, counters)
}

/// One HTTP GET, the whole answer (bounded in time).
async fn get(addr: SocketAddr, path: &str) -> String {
    tokio::time::timeout(LIMIT, async {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    })
    .await
    .expect("answer in time")
}

/// The first `n` of `conns` are closed and the rest open (the oldest go first).
fn oldest_closed<S: Peek>(conns: &[S], n: usize) -> bool {
    conns.iter().enumerate().all(|(i, c)| c.is_closed() == (i < n))
}

trait Peek {
    fn try_read_one(&self) -> std::io::Result<usize>;
    fn is_closed(&self) -> bool {
        !matches!(self.try_read_one(), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}
impl Peek for TcpStream {
    fn try_read_one(&self) -> std::io::Result<usize> {
        self.try_read(&mut [0u8; 1])
    }
}
impl Peek for UnixStream {
    fn try_read_one(&self) -> std::io::Result<usize> {
        self.try_read(&mut [0u8; 1])
    }
}

/// Poll `f` every 20 ms until it holds, at most `LIMIT`.
async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_keeps_answering_while_idle_clients_hold_connections() {
    let (addr, counters) = start_metrics(fake_daemon(Status::default())).await;
    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // The 5 beyond the cap each evicted the oldest silent one.
    wait_for("5 evictions", || counters.snapshot().aborted == 5).await;
    for round in 0..3 {
        let page = get(addr, "/metrics").await;
        assert!(page.starts_with("HTTP/1.1 200 OK"), "round {round}: {page}");
        assert!(page.contains("\nvipd_up 1\n"), "{page}");
    }
    // The first GET evicted one more idle client; later ones find the slot the
    // previous GET gave back (or evict one if they come before it is given back).
    let evicted = counters.snapshot().aborted as usize;
    assert!((6..=8).contains(&evicted), "{evicted}");
    wait_for("the evicted clients closed, oldest first", || {
        oldest_closed(&idle, evicted)
    })
    .await;
    assert_eq!(counters.snapshot().refused, 0);
    assert_eq!(counters.snapshot().accept_errors, 0);
}

#[tokio::test]
async fn metrics_refuses_at_once_when_every_slot_is_talking() {
    // The daemon never answers: every admitted GET waits (up to the timeout).
    let (tx, got) = stuck_daemon();
    let (addr, counters) = start_metrics(tx).await;
    let mut talking = Vec::new();
    for _ in 0..metrics::MAX_CLIENTS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        talking.push(s);
    }
    wait_for("every request read", || {
        got.load(Ordering::SeqCst) == metrics::MAX_CLIENTS
    })
    .await;
    // No silent client left to evict: the next is refused, at once, with a reason.
    let start = Instant::now();
    let page = get(addr, "/metrics").await;
    assert!(
        page.starts_with("HTTP/1.1 503") && page.contains("too many clients"),
        "{page}"
    );
    assert!(
        start.elapsed() < metrics::CLIENT_TIMEOUT,
        "refused at once, not after a timeout"
    );
    assert_eq!(counters.snapshot().refused, 1);
    assert_eq!(counters.snapshot().aborted, 0);
    // The stuck scrapes end at the timeout with a 503, not never.
    let mut s = talking.pop().unwrap();
    let mut out = String::new();
    tokio::time::timeout(LIMIT, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.starts_with("HTTP/1.1 503") && out.contains("did not answer"),
        "{out}"
    );
}

#[tokio::test]
async fn metrics_cuts_off_a_silent_client_at_the_timeout() {
    let (addr, counters) = start_metrics(fake_daemon(Status::default())).await;
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(LIMIT, s.read(&mut b))
        .await
        .expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "closed without an answer");
    let took = start.elapsed();
    assert!(took >= metrics::CLIENT_TIMEOUT - Duration::from_millis(100), "{took:?}");
    assert_eq!(counters.snapshot().aborted, 1);
}

async fn status_over(sock: &std::path::Path) -> Result<Status, String> {
    let sock = sock.to_path_buf();
    tokio::task::spawn_blocking(move || control::call(&sock, &Request::Status {}, Duration::from_secs(10)))
        .await
        .unwrap()
        .and_then(|r| r.status.ok_or(r.error.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_keeps_answering_while_idle_clients_hold_connections() {
    let dir = TempDir::new("ctl-abuse");
    let sock = dir.path().join("vipd.sock");
    let listener = control::bind(&sock).unwrap();
    let counters = listener.counters();
    tokio::spawn(control::serve(
        listener,
        fake_daemon(Status::default()),
        Default::default(),
    ));
    let mut idle = Vec::new();
    for _ in 0..control::MAX_CLIENTS + 5 {
        idle.push(UnixStream::connect(&sock).await.unwrap());
    }
    wait_for("5 evictions", || counters.snapshot().aborted == 5).await;
    for _ in 0..3 {
        let st = status_over(&sock).await.expect("status while idle clients hold on");
        assert_eq!(st.version, env!("CARGO_PKG_VERSION"));
    }
    let evicted = counters.snapshot().aborted as usize;
    assert!((6..=8).contains(&evicted), "{evicted}");
    wait_for("the evicted clients closed, oldest first", || {
        oldest_closed(&idle, evicted)
    })
    .await;
    assert_eq!(counters.snapshot().refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_refuses_at_once_when_every_slot_is_talking() {
    let dir = TempDir::new("ctl-abuse");
    let sock = dir.path().join("vipd.sock");
    let listener = control::bind(&sock).unwrap();
    let counters = listener.counters();
    let (tx, got) = stuck_daemon();
    tokio::spawn(control::serve(listener, tx, Default::default()));
    let mut talking = Vec::new();
    for _ in 0..control::MAX_CLIENTS {
        let mut s = UnixStream::connect(&sock).await.unwrap();
        s.write_all(b"{\"cmd\":\"status\"}\n").await.unwrap();
        talking.push(s);
    }
    wait_for("every request read", || {
        got.load(Ordering::SeqCst) == control::MAX_CLIENTS
    })
    .await;
    let start = Instant::now();
    let err = status_over(&sock).await.expect_err("refused");
    assert!(err.contains("too many control clients"), "{err}");
    assert!(start.elapsed() < control::CLIENT_TIMEOUT, "refused at once: {err}");
    assert_eq!(counters.snapshot().refused, 1);
}
