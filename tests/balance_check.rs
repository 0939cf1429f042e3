//! Health probes and the checker task against real local servers on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use vipd::balance::{BackendSpec, Health, HealthEvent, LbAlgo, Table, TableHandle, TableSpec};
use vipd::check::{probe, spawn_checker, CheckSpec, ProbeKind};
use vipd::clock::Clock;
use vipd::time::{Instant, Micros};

const T: Duration = Duration::from_millis(200);

/// A port on 127.0.0.1 with nothing listening (bound, then closed).
async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A tiny HTTP server: answers every request with `status` and a body of
/// `body_len` bytes (or never answers when `status` is 0), and reports each
/// request head on the returned channel.
async fn http_server(status: u16, body_len: usize) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                if status == 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let head = format!("HTTP/1.1 {status} X\r\ncontent-length: {body_len}\r\nconnection: close\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&vec![b'x'; body_len]).await;
            });
        }
    });
    (a, rx)
}

#[tokio::test]
async fn tcp_probe_connects_and_reports_refused() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let r = probe::tcp(up, T).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.detail, "connected");
    let r = probe::tcp(closed_port().await, T).await;
    assert!(!r.ok);
    assert_eq!(r.detail, "connection refused");
}

#[tokio::test]
async fn tcp_probe_uses_the_check_port() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let check_port = l.local_addr().unwrap().port();
    let backend = closed_port().await; // the service port itself is closed
    let r = probe::run(&ProbeKind::Tcp { port: Some(check_port) }, backend, T).await;
    assert!(r.ok, "{r:?}");
    let r = probe::run(&ProbeKind::Tcp { port: None }, backend, T).await;
    assert!(!r.ok, "{r:?}");
}

#[tokio::test]
async fn http_probe_status_in_range_with_host_and_path() {
    let (a, mut reqs) = http_server(204, 2).await;
    let kind = ProbeKind::Http {
        port: Some(a.port()),
        path: "/health?full=1".into(),
        expect_status: (200, 299),
        host: Some("collector.example".into()),
    };
    let backend = SocketAddr::from(([127, 0, 0, 1], 6000));
    let r = probe::run(&kind, backend, T).await;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.detail, "http 204");
    let head = reqs.recv().await.unwrap();
    assert!(head.starts_with("GET /health?full=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("host: collector.example\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn http_probe_default_host_is_the_address() {
    let (a, mut reqs) = http_server(200, 0).await;
    let r = probe::http(a, "/", (200, 200), None, T).await;
    assert!(r.ok, "{r:?}");
    let head = reqs.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.contains(&format!("host: {a}\r\n")), "{head}");
}

#[tokio::test]
async fn http_probe_fails_on_503_refused_and_silence() {
    let (a, _r) = http_server(503, 10).await;
    let r = probe::http(a, "/health", (200, 299), None, T).await;
    assert_eq!((r.ok, r.detail.as_str()), (false, "http 503"));

    let r = probe::http(closed_port().await, "/health", (200, 299), None, T).await;
    assert_eq!((r.ok, r.detail.as_str()), (false, "connection refused"));

    let (a, _r) = http_server(0, 0).await;
    let started = std::time::Instant::now();
    let r = probe::http(a, "/health", (200, 299), None, T).await;
    assert_eq!((r.ok, r.detail.as_str()), (false, "timeout after 200ms"));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn http_probe_reads_only_a_few_kb_of_a_huge_body() {
    let (a, _r) = http_server(200, 64 * 1024 * 1024).await;
    let r = probe::http(a, "/", (200, 299), None, Duration::from_secs(5)).await;
    assert!(r.ok, "{r:?}");
}

#[tokio::test]
async fn exec_probe_true_false_and_timeout_kill() {
    let target = SocketAddr::from(([127, 0, 0, 1], 6000));
    let argv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let r = probe::exec(&argv(&["/bin/true"]), target, T).await;
    assert_eq!((r.ok, r.detail.as_str()), (true, "exit status 0"));
    let r = probe::exec(&argv(&["/bin/false"]), target, T).await;
    assert_eq!((r.ok, r.detail.as_str()), (false, "exit status 1"));

    let started = std::time::Instant::now();
    let r = probe::exec(&argv(&["/bin/sleep", "5"]), target, T).await;
    let took = started.elapsed();
    assert_eq!((r.ok, r.detail.as_str()), (false, "timeout after 200ms"));
    assert!(took >= T && took < Duration::from_secs(2), "{took:?}");

    let r = probe::exec(&argv(&["/nonexistent/probe"]), target, T).await;
    assert!(!r.ok && r.detail.starts_with("cannot run /nonexistent/probe"), "{r:?}");
    let r = probe::exec(&[], target, T).await;
    assert_eq!((r.ok, r.detail.as_str()), (false, "empty command"));
}

#[tokio::test]
async fn exec_probe_kills_the_whole_process_group_on_timeout() {
    // sh forks a sleep child; both must be gone after the timeout.
    let target = SocketAddr::from(([127, 0, 0, 1], 6000));
    let dir = std::env::temp_dir().join(format!("vipd-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("child.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let argv = vec!["/bin/sh".to_string(), "-c".to_string(), script];
    let r = probe::exec(&argv, target, Duration::from_millis(300)).await;
    assert_eq!(r.detail, "timeout after 300ms");
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    // The grandchild was killed by SIGKILL to the group; once reaped by init it is gone.
    let gone = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !gone() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone(), "grandchild {pid} survived the timeout");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn exec_probe_substitutes_placeholders() {
    let target = SocketAddr::from(([127, 0, 0, 1], 6000));
    let argv: Vec<String> = [
        "/bin/sh",
        "-c",
        "test \"$0 $1 $2\" = '127.0.0.1:6000 127.0.0.1 6000'",
        "{address}",
        "{ip}",
        "{port}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = probe::exec(&argv, target, Duration::from_secs(2)).await;
    assert!(r.ok, "{r:?}");
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<HealthEvent>) -> HealthEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no health event within 10s")
        .unwrap()
}

#[tokio::test]
async fn checker_drives_hysteresis_end_to_end() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let down = closed_port().await;
    let check = CheckSpec {
        kind: ProbeKind::Tcp { port: None },
        interval: Micros::from_millis(50),
        timeout: Micros::from_millis(200),
        rise: 2,
        fall: 2,
    };
    let spec = TableSpec {
        name: "ingest".into(),
        algo: LbAlgo::Rr,
        health: Some(check.policy()),
        backends: vec![BackendSpec::new(up, 1), BackendSpec::new(down, 1)],
    };
    let handle = TableHandle::new(Table::new(spec, Instant::ZERO).unwrap());
    assert!(handle.load().pick(up, &[]).is_none(), "nothing serves before rise");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let checker = spawn_checker(handle.clone(), check, Clock::new(), Some(tx));

    let mut seen = Vec::new();
    for _ in 0..2 {
        let ev = next_event(&mut rx).await;
        seen.push((ev.address, ev.from, ev.to, ev.reason));
    }
    seen.sort_by_key(|s| s.0);
    let mut expected = vec![
        (
            up,
            Health::Unknown,
            Health::Up,
            "check passed 2/2: connected".to_string(),
        ),
        (
            down,
            Health::Unknown,
            Health::Down,
            "check failed 2/2: connection refused".to_string(),
        ),
    ];
    expected.sort_by_key(|s| s.0);
    assert_eq!(seen, expected);
    assert_eq!(handle.load().pick(up, &[]).map(|p| p.1), Some(up));

    // The live backend dies: DOWN after exactly `fall` failed checks.
    drop(listener);
    let ev = next_event(&mut rx).await;
    assert_eq!((ev.address, ev.to), (up, Health::Down));
    assert_eq!(ev.reason, "check failed 2/2: connection refused");
    assert!(handle.load().pick(up, &[]).is_none());
    let st = handle.status();
    assert_eq!(st[0].last_check.as_deref(), Some("connection refused"));
    assert!(st[0].consecutive_failures >= 2);
    checker.abort();
}

#[tokio::test]
async fn checker_spreads_probes_over_the_interval() {
    // 4 backends, interval 800ms: backend i is first probed at about i*200ms.
    let mut listeners = Vec::new();
    for _ in 0..4 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let check = CheckSpec {
        kind: ProbeKind::Tcp { port: None },
        interval: Micros::from_millis(800),
        timeout: Micros::from_millis(200),
        rise: 1,
        fall: 1,
    };
    let spec = TableSpec {
        name: "spread".into(),
        algo: LbAlgo::Rr,
        health: Some(check.policy()),
        backends: addrs.iter().map(|a| BackendSpec::new(*a, 1)).collect(),
    };
    let handle = TableHandle::new(Table::new(spec, Instant::ZERO).unwrap());
    let started = std::time::Instant::now();
    let checker = spawn_checker(handle.clone(), check, Clock::new(), None);
    let mut first = Vec::new();
    for l in &listeners {
        let accepted = tokio::time::timeout(Duration::from_secs(5), l.accept()).await;
        assert!(accepted.is_ok(), "no probe within 5s");
        first.push(started.elapsed());
    }
    checker.abort();
    eprintln!("first probe per backend: {first:?}");
    for (i, t) in first.iter().enumerate() {
        let offset = Duration::from_millis(200 * i as u64);
        // never early (timers do not fire early); late only by scheduling noise
        assert!(
            *t + Duration::from_millis(5) >= offset,
            "backend {i} probed at {t:?}, before {offset:?}"
        );
        assert!(
            *t < offset + Duration::from_millis(600),
            "backend {i} probed at {t:?}, long after {offset:?}"
        );
    }
}
