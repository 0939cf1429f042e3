//! `watch` over the real control socket with a stand-in daemon (no root):
//! several vipctl watchers get the snapshot and then every event in order and
//! exit 0 on `stopping`; a watcher that does not read is told how many events
//! it lost instead of holding anyone up; watchers have their own cap so that
//! one-shot commands still get through. One test: the event bus is per process.

#[path = "control/support.rs"]
mod support;

use std::time::Duration;

use serde_json::Value;
use support::{sample_status, TempDir};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use vipd::balance::Health;
use vipd::control::events::{bus, CAPACITY, MAX_WATCHERS};
use vipd::control::proto::WatchEvent;
use vipd::control::{self, Envelope, Request, Response};
use vipd::vrrp::State;

/// A daemon loop that answers `watch` as vipd does: mark the bus, then the status.
fn daemon() -> mpsc::Sender<Envelope> {
    let (tx, mut rx) = mpsc::channel::<Envelope>(64);
    tokio::spawn(async move {
        while let Some((req, answer)) = rx.recv().await {
            let resp = match req {
                Request::Watch { marker } => {
                    bus().mark(marker);
                    Response::status(sample_status())
                }
                Request::Status {} => Response::status(sample_status()),
                other => Response::message(format!("{} done", other.cmd())),
            };
            let _ = answer.send(resp);
        }
    });
    tx
}

fn transition(n: u32) -> WatchEvent {
    WatchEvent::Transition {
        instance: format!("VI_{n}"),
        vrid: 51,
        from: State::Backup,
        to: State::Master,
        reason: "master down timer".into(),
        priority: 100,
    }
}

/// Connect a raw watcher and read its snapshot line.
async fn raw_watcher(sock: &std::path::Path) -> BufReader<tokio::net::UnixStream> {
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    s.write_all(b"{\"cmd\":\"watch\"}\n").await.unwrap();
    let mut rd = BufReader::new(s);
    let mut line = String::new();
    rd.read_line(&mut line).await.unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "snapshot", "{line}");
    rd
}

async fn wait_watchers(n: usize) {
    for _ in 0..500 {
        if bus().watchers() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} watchers, expected {n}", bus().watchers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_get_every_event_in_order_and_end_with_the_daemon() {
    let dir = TempDir::new("ctl-watch");
    let sock = dir.path().join("vipd.sock");
    let listener = control::bind(&sock).unwrap();
    let counters = listener.counters();
    let server = tokio::spawn(control::serve(listener, daemon(), Default::default()));

    // A client that never reads: it must lag, not stall anyone.
    let mut slow = raw_watcher(&sock).await;
    // Three vipctl watchers.
    let mut kids = Vec::new();
    for _ in 0..3 {
        kids.push(
            tokio::process::Command::new(env!("CARGO_BIN_EXE_vipctl"))
                .arg("--socket")
                .arg(&sock)
                .args(["watch", "--json"])
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap(),
        );
    }
    wait_watchers(4).await;
    // Give each vipctl time to be past its snapshot (events before its
    // marker belong to the snapshot and are not sent).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Up to the cap, then a clear refusal; one-shot commands still pass.
    let mut extra = Vec::new();
    for _ in 4..MAX_WATCHERS {
        extra.push(raw_watcher(&sock).await);
    }
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    s.write_all(b"{\"cmd\":\"watch\"}\n").await.unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).await.unwrap();
    assert!(line.contains("too many watchers (8 at most)"), "{line}");
    assert_eq!(counters.snapshot().refused, 1, "a refused watcher is counted");
    let st = tokio::task::spawn_blocking({
        let sock = sock.clone();
        move || control::call(&sock, &Request::Status {}, Duration::from_secs(5))
    })
    .await
    .unwrap()
    .unwrap();
    assert!(st.ok && st.status.is_some());
    drop(extra);
    wait_watchers(4).await;

    // The events: far more than the bus holds, so the silent client lags.
    let total = CAPACITY as u32 * 4;
    for n in 0..total {
        bus().publish(transition(n));
        if n % 256 == 0 {
            tokio::task::yield_now().await;
        }
    }
    bus().publish(WatchEvent::Backend {
        virtual_server: "ingest".into(),
        address: "198.51.100.11:6000".parse().unwrap(),
        from: Health::Up,
        to: Health::Down,
        reason: "check failed 1/1: connection refused".into(),
    });
    bus().publish(WatchEvent::Stopping {
        reason: "SIGTERM".into(),
    });

    let published = std::time::Instant::now();
    for kid in kids {
        let out = tokio::time::timeout(Duration::from_secs(30), kid.wait_with_output())
            .await
            .expect("vipctl watch ends after stopping")
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["event"], "snapshot");
        // Either every transition in order, or a lagged line that says how
        // many were lost: never a silent gap.
        let mut next = 0u64;
        for l in &lines[1..lines.len() - 2] {
            match l["event"].as_str() {
                Some("transition") => {
                    let n: u64 = l["instance"].as_str().unwrap()[3..].parse().unwrap();
                    assert_eq!(n, next, "out of order");
                    next += 1;
                }
                Some("lagged") => next += l["dropped"].as_u64().unwrap(),
                e => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(next, u64::from(total));
        let lost: u64 = lines.iter().filter_map(|l| l["dropped"].as_u64()).sum();
        eprintln!(
            "vipctl watcher: {} of {total} events, {lost} reported lost",
            total as u64 - lost
        );
        assert_eq!(lines[lines.len() - 2]["event"], "backend");
        assert_eq!(lines[lines.len() - 1]["event"], "stopping");
    }

    eprintln!("three vipctl watchers done {:?} after the burst", published.elapsed());
    // The silent client finds a lagged line among what it reads at last.
    let mut lagged = 0;
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(Duration::from_secs(10), slow.read_line(&mut line))
            .await
            .expect("the slow watcher gets to the end")
            .unwrap();
        if n == 0 {
            break;
        }
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["event"] == "lagged" {
            lagged += v["dropped"].as_u64().unwrap();
        }
        if v["event"] == "stopping" {
            break;
        }
    }
    eprintln!("client that did not read: {lagged} of {total} events reported lost");
    assert!(lagged > 0, "a client that did not read must have lagged");
    server.abort();
}
