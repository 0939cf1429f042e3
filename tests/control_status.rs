//! The status contract: the JSON `vipctl status --json` and the metrics read is
//! pinned field by field (`tests/control/status.json`), and so are the text of
//! `vipctl status` and the metrics page rendered from it. A renamed, removed or
//! added field fails here. After an intended change: `VIPD_BLESS=1 cargo test
//! --test control_status` rewrites the expected files; review their diff.

#[path = "control/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::{backup_status, fake_daemon, sample_status, TempDir};
use vipd::control::observe::Observer;
use vipd::control::{self, metrics, Status};
use vipd::time::Instant;
use vipd::vrrp::{Action, Reason, State};

fn expected(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control").join(name)
}

/// Compare `actual` with the checked-in file (or rewrite it under VIPD_BLESS=1).
fn check_pinned(name: &str, actual: &str) {
    let path = expected(name);
    if std::env::var_os("VIPD_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write expected file");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if want != actual {
        let first = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output at line {}:\n  expected: {:?}\n  actual:   {:?}\nfull output:\n{actual}",
            path.display(),
            first + 1,
            want.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

/// Every JSON path (a.b[0].c) whose value differs between the two, for a readable failure.
fn diff_paths(at: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (va, vb) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                if !x.contains_key(k) || !y.contains_key(k) {
                    out.push(format!("{at}.{k}: present in only one"));
                } else {
                    diff_paths(&format!("{at}.{k}"), va, vb, out);
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_paths(&format!("{at}[{i}]"), va, vb, out);
            }
        }
        _ if a != b => out.push(format!("{at}: {a} != {b}")),
        _ => {}
    }
}

#[test]
fn status_json_shape_is_pinned() {
    let actual = serde_json::to_value(sample_status()).unwrap();
    if std::env::var_os("VIPD_BLESS").is_some() {
        // Written in field order, compared as JSON values (order-free).
        let text = serde_json::to_string_pretty(&sample_status()).unwrap() + "\n";
        return check_pinned("status.json", &text);
    }
    let path = expected("status.json");
    let want: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut diffs = Vec::new();
    diff_paths("status", &want, &actual, &mut diffs);
    assert!(diffs.is_empty(), "{} vs Status:\n{}", path.display(), diffs.join("\n"));
}

#[test]
fn pinned_json_reads_back_into_the_same_status() {
    let text = std::fs::read_to_string(expected("status.json")).unwrap();
    let st: Status = serde_json::from_str(&text).unwrap();
    assert_eq!(st, sample_status());
    // And writing it again gives the same document (no field dropped or added).
    let again = serde_json::to_value(&st).unwrap();
    assert_eq!(again, serde_json::from_str::<Value>(&text).unwrap());
}

/// An observer's book with a failover of VI_1, a stretch without master for
/// VI_6, health checks, and entries of an instance and a backend the status
/// no longer has (not shown).
fn sample_observer() -> Observer {
    let o = Observer::default();
    let change = |from, to, reason| Action::StateChange { from, to, reason };
    let up = change(State::Initialize, State::Backup, Reason::Startup);
    o.on_actions("VI_1", &[up], false, Instant(0));
    let master = change(State::Backup, State::Master, Reason::MasterDownTimer);
    o.on_actions("VI_1", &[master], true, Instant(3_600_000));
    o.vips_in_place("VI_1", Instant(3_602_000));
    o.announced("VI_1", Instant(3_602_300));
    let fault = change(State::Initialize, State::Fault, Reason::NoSourceAddress);
    o.on_actions("VI_6", &[fault], false, Instant(0));
    o.on_actions("VI_6", &[], true, Instant(2_500_000));
    o.on_actions(
        "VI_gone",
        &[change(State::Initialize, State::Backup, Reason::Startup)],
        true,
        Instant(0),
    );
    let b1 = "198.51.100.11:6000".parse().unwrap();
    o.check_done("ingest", b1, true, 800);
    o.check_done("ingest", b1, true, 1_200);
    o.check_done("ingest", "198.51.100.12:6000".parse().unwrap(), false, 1_000_000);
    o.check_done("ingest", "198.51.100.99:6000".parse().unwrap(), true, 100);
    o
}

#[test]
fn metrics_page_is_pinned() {
    let page = metrics::render_with(&sample_status(), &sample_observer().snapshot());
    check_pinned("metrics.txt", &page);
}

/// Run vipctl against a control socket served by a stand-in daemon that
/// answers with the sample status; it must exit with `code`.
async fn vipctl(args: &[&str], code: i32) -> std::process::Output {
    vipctl_with(sample_status(), args, code).await
}

async fn vipctl_with(st: Status, args: &[&str], code: i32) -> std::process::Output {
    let dir = TempDir::new("ctl-status");
    let sock = dir.path().join("vipd.sock");
    let listener = control::bind(&sock).unwrap();
    let server = tokio::spawn(control::serve(listener, fake_daemon(st), Default::default()));
    let mut argv: Vec<String> = vec![
        "--socket".into(),
        sock.display().to_string(),
        "--timeout".into(),
        "10".into(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_vipctl"))
            .args(&argv)
            .output(),
    )
    .await
    .expect("vipctl finishes")
    .expect("run vipctl");
    server.abort();
    assert_eq!(
        out.status.code(),
        Some(code),
        "vipctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The sample has an instance in FAULT and a UDP virtual server with no
/// backend serving: `status` says so and exits 1, in both forms.
#[tokio::test]
async fn vipctl_status_text_is_pinned() {
    let out = vipctl(&["status"], 1).await;
    check_pinned("status.txt", &String::from_utf8(out.stdout).unwrap());
}

#[tokio::test]
async fn vipctl_status_json_is_the_status() {
    let out = vipctl(&["status", "--json"], 1).await;
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, serde_json::to_value(sample_status()).unwrap());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("instance VI_6 is in FAULT (no source address)"), "{err}");
    assert!(err.contains("virtual server syslog has no healthy backend"), "{err}");
}

/// Exit status 0 only when every instance is out of FAULT and every virtual
/// server has a backend that takes new connections; each alone makes it 1.
#[tokio::test]
async fn vipctl_status_exit_code_follows_the_health() {
    let mut fine = sample_status();
    fine.instances.remove(1);
    fine.virtual_servers[1].backends[0].serving = true;
    vipctl_with(fine.clone(), &["status"], 0).await;
    vipctl_with(fine.clone(), &["status", "--json"], 0).await;
    let mut no_backend = fine.clone();
    for b in &mut no_backend.virtual_servers[0].backends {
        b.serving = false;
    }
    let out = vipctl_with(no_backend, &["status"], 1).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PROBLEM: virtual server ingest has no healthy backend (1 of 3 up"),
        "{text}"
    );
    let mut fault = fine;
    fault.instances[0].router.state = vipd::vrrp::State::Fault;
    vipctl_with(fault, &["status", "--json"], 1).await;
}

/// No daemon: exit 2, distinct from "the daemon reports a problem".
#[test]
fn vipctl_without_a_daemon_exits_2() {
    let dir = TempDir::new("ctl-none");
    for cmd in [&["status"][..], &["status", "--json"], &["explain", "VI_1"], &["watch"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vipctl"))
            .arg("--socket")
            .arg(dir.path().join("none.sock"))
            .args(cmd)
            .output()
            .expect("run vipctl");
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
            "{cmd:?}"
        );
    }
}

#[tokio::test]
async fn vipctl_explain_text_is_pinned() {
    let out = vipctl_with(backup_status(), &["explain", "VI_1"], 0).await;
    let text = String::from_utf8(out.stdout).unwrap();
    // The time of day depends on the wall clock: everything else is pinned.
    let cut = text.find(" (at ").expect("time of the last transition");
    let end = cut + text[cut..].find(')').unwrap();
    let stable = format!("{}{}", &text[..cut], &text[end + 1..]);
    check_pinned("explain.txt", &stable);
    let out = vipctl_with(backup_status(), &["explain", "VI_1", "--json"], 0).await;
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got, serde_json::to_value(&backup_status().instances[0]).unwrap());
    let out = vipctl_with(backup_status(), &["explain", "nope"], 1).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no instance \"nope\" (running: VI_1, VI_6)"), "{err}");
}
