//! Namespace tests of the planned handover (docs/handover.md): SIGTERM and
//! `vipctl demote --wait` lose no probe of a client's 1 ms UDP stream to the
//! VIP, the old master releases only after the new one holds the VIP; `vipd
//! --release` after a kill -9 hands over after Skew_Time, not Master_Down.
#![allow(non_snake_case)]

mod common;
use common::*;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const VIP: &str = "192.0.2.100";

/// UDP echo bound (IP_FREEBIND) to VIP:7001 on every node: whoever holds the
/// VIP answers, with its name after the 8-byte sequence number.
const RESPONDER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 15, 1)
s.bind((sys.argv[1], 7001))
name = sys.argv[2].encode()
while True:
    d, a = s.recvfrom(64)
    try: s.sendto(d[:8] + name, a)
    except OSError: pass
"#;

/// One datagram every 1 ms until the stop file appears (bounded by the
/// duration), then 300 ms for late answers. Prints sent, lost (with the
/// send times of the lost ones), and who answered first and last.
const PROBE: &str = r#"
import socket, sys, time, json, os, select, struct
host, dur, stop_file = sys.argv[1], float(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)
t0 = time.monotonic(); sent = {}; got = {}; n = 0; nxt = t0; stop_at = None; order = []
while n < 200000:
    now = time.monotonic()
    if stop_at is None and (now - t0 >= dur or (n % 50 == 0 and os.path.exists(stop_file))):
        stop_at = now + 0.3
    if stop_at is not None and now >= stop_at:
        break
    if stop_at is None and now >= nxt:
        try: s.sendto(struct.pack("!Q", n), (host, 7001))
        except OSError: pass
        sent[n] = now - t0; n += 1; nxt += 0.001
        if nxt < now: nxt = now + 0.001
    wake = stop_at if stop_at is not None else nxt
    r, _, _ = select.select([s], [], [], max(0.0, wake - time.monotonic()))
    for _ in range(64):
        try: d = s.recv(64)
        except OSError: break
        if len(d) >= 8:
            q = struct.unpack("!Q", d[:8])[0]
            if q not in got:
                who = d[8:].decode(errors="replace"); got[q] = who
                if not order or order[-1][1] != who: order.append((round(sent.get(q, 0) * 1000, 1), who))
lost = sorted(set(sent) - set(got))
print(json.dumps({"sent": n, "lost": len(lost), "lost_at_ms": [round(sent[q] * 1000, 1) for q in lost[:50]], "changes": order}))
"#;

struct Pair {
    lab: Lab,
}

impl Pair {
    /// fe1 (priority 150) and fe2 (100) with `advert_int`, a responder on
    /// each, a client; `nodes` vipd daemons started (fe1 first to master).
    fn new(tag: &str, advert_int: &str, nodes: &[&str]) -> Pair {
        let mut lab = Lab::new(tag);
        for (n, a) in [("fe1", "192.0.2.1/24"), ("fe2", "192.0.2.2/24")] {
            let ns = lab.add_host(n, &[a]);
            lab.spawn(&format!("resp-{n}"), &ns, &["python3", "-u", "-c", RESPONDER, VIP, n]);
        }
        lab.add_host("client", &["192.0.2.50/24"]);
        let p = Pair { lab };
        for (n, prio) in [("fe1", 150), ("fe2", 100)] {
            let text = format!(
                "[global]\nrouter_id = \"{n}\"\ncontrol_socket = \"{}\"\n\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\n\
                 virtual_router_id = 51\npriority = {prio}\nadvert_int = {advert_int}\nvirtual_ipaddress = [\"{VIP}/24\"]\n",
                p.sock(n)
            );
            std::fs::write(p.cfg(n), text).expect("write config");
        }
        let mut p = p;
        for n in nodes {
            p.start(n);
            if *n == "fe1" {
                p.wait_holder("fe1");
            }
        }
        p
    }
    fn sock(&self, n: &str) -> String {
        self.lab.dir.join(format!("{n}.sock")).display().to_string()
    }
    fn cfg(&self, n: &str) -> String {
        self.lab.dir.join(format!("{n}.toml")).display().to_string()
    }
    fn start(&mut self, n: &str) {
        let (ns, cfg) = (self.lab.ns(n), self.cfg(n));
        self.lab.spawn(n, &ns, &[VIPD, "-c", &cfg, "--log", "debug"]);
    }
    fn holders(&self) -> Vec<&'static str> {
        ["fe1", "fe2"]
            .into_iter()
            .filter(|n| self.lab.has_addr(&self.lab.ns(n), VIP))
            .collect()
    }
    fn wait_holder(&self, who: &str) {
        poll_until(
            &format!("{who} alone holds {VIP}"),
            Duration::from_secs(15),
            Duration::from_millis(10),
            || (self.holders() == [who]).then_some(()),
        );
    }
    fn vipctl(&self, n: &str, args: &[&str]) -> std::process::Output {
        let ns = self.lab.ns(n);
        let sock = self.sock(n);
        let mut argv = vec!["ip", "netns", "exec", &ns, VIPCTL, "--socket", &sock];
        argv.extend_from_slice(args);
        run(&argv)
    }
    fn status(&self, n: &str) -> Value {
        poll_until(
            &format!("vipctl status on {n}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let out = self.vipctl(n, &["status", "--json"]);
                // 0: all fine, 1: FAULT or no healthy backend (still a status); 2: no daemon.
                matches!(out.status.code(), Some(0 | 1))
                    .then(|| serde_json::from_slice(&out.stdout).ok())
                    .flatten()
            },
        )
        .0
    }
    fn wait_state(&self, n: &str, state: &str) {
        poll_until(
            &format!("{n} {state}"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || (self.status(n)["instances"][0]["state"] == state).then_some(()),
        );
    }
    /// Start the UDP probe; returns (stop file, output file).
    fn probe(&mut self, dur: f64) -> (std::path::PathBuf, std::path::PathBuf) {
        let stop = self.lab.dir.join("probe.stop");
        let _ = std::fs::remove_file(&stop);
        let ns = self.lab.ns("client");
        let (d, s) = (dur.to_string(), stop.display().to_string());
        self.lab
            .spawn("probe", &ns, &["python3", "-u", "-c", PROBE, VIP, &d, &s]);
        (stop, self.lab.dir.join("probe.log"))
    }
    fn probe_result(&mut self, stop: &std::path::Path, out: &std::path::Path) -> Value {
        std::fs::write(stop, b"").expect("stop file");
        let (v, _) = poll_until(
            "probe result",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let text = std::fs::read_to_string(out).ok()?;
                serde_json::from_str::<Value>(text.lines().last()?).ok()
            },
        );
        v
    }
}

/// Samples the VIP holders (one `ip addr` per node per round) until stopped,
/// into `seen`: (rounds, rounds with no holder after the first, fe2 seen).
fn watch_holders(p: &Pair, stop: Arc<AtomicBool>, seen: Arc<Mutex<(u32, u32, bool)>>) {
    let mut any = false;
    while !stop.load(Ordering::Relaxed) {
        let h = p.holders();
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += 1;
        if h.is_empty() && any {
            s.1 += 1;
        }
        if h.contains(&"fe2") {
            s.2 = true;
        }
        any |= !h.is_empty();
    }
}

fn assert_no_loss(r: &Value, what: &str) {
    let sent = r["sent"].as_u64().unwrap_or(0);
    assert!(sent > 300, "{what}: the probe sent only {sent} datagrams: {r}");
    assert_eq!(r["lost"].as_u64(), Some(0), "{what}: probes lost: {r}");
    let changes = r["changes"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = changes.iter().filter_map(|c| c[1].as_str()).collect();
    assert_eq!(names, ["fe1", "fe2"], "{what}: answered by fe1, then fe2 only: {r}");
}

#[test]
fn sigterm_of_the_master_hands_over_without_losing_a_probe__SM12() {
    let _g = netns_lock();
    let mut p = Pair::new("hot", "0.1", &["fe1", "fe2"]);
    p.wait_state("fe2", "backup");
    let (stop, out) = p.probe(15.0);
    std::thread::sleep(Duration::from_millis(700));
    let seen = Arc::new(Mutex::new((0u32, 0u32, false)));
    let done = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let st = std::thread::scope(|sc| {
        sc.spawn(|| watch_holders(&p, done.clone(), seen.clone()));
        let pid = p.lab.pid("fe1").expect("fe1 running") as i32;
        // SAFETY: kill(2) on the vipd we spawned.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let st = poll_until("fe1 exits", Duration::from_secs(8), Duration::from_millis(5), || {
            (!std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z ")))
            .then_some(())
        });
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
        st
    });
    let took = t.elapsed();
    let r = p.probe_result(&stop, &out);
    let ex = p
        .lab
        .signal("fe1", 0, Duration::from_secs(1))
        .or_else(|| p.lab.signal("fe1", libc::SIGKILL, Duration::from_secs(2)));
    assert!(ex.is_some_and(|e| e.success()), "fe1 exit status {ex:?}");
    assert_no_loss(&r, "SIGTERM");
    assert_eq!(p.holders(), ["fe2"], "only fe2 holds the VIP after the exit");
    let (rounds, empty, fe2_seen) = *seen.lock().unwrap_or_else(|e| e.into_inner());
    assert!(fe2_seen, "fe2 was seen holding the VIP");
    assert_eq!(
        empty, 0,
        "a moment with no VIP holder in {rounds} samples: released before the successor held it"
    );
    // Skew_Time(100) at 0.1 s is 61 ms; the hold 100 ms; the exit well under a second.
    assert!(
        st.1 < Duration::from_secs(3),
        "SIGTERM exit took {:?} (handover {took:?})",
        st.1
    );
    assert!(
        p.lab.log("fe1").contains("handed over to 192.0.2.2"),
        "{}",
        p.lab.log("fe1")
    );
}

#[test]
fn demote_wait_hands_over_without_losing_a_probe_and_promote_takes_back__SM12() {
    let _g = netns_lock();
    let mut p = Pair::new("hod", "0.1", &["fe1", "fe2"]);
    p.wait_state("fe2", "backup");
    let (stop, out) = p.probe(15.0);
    std::thread::sleep(Duration::from_millis(700));
    let seen = Arc::new(Mutex::new((0u32, 0u32, false)));
    let done = Arc::new(AtomicBool::new(false));
    let o = std::thread::scope(|sc| {
        sc.spawn(|| watch_holders(&p, done.clone(), seen.clone()));
        let o = p.vipctl("fe1", &["--timeout", "3", "demote", "VI_1", "--wait"]);
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
        o
    });
    let r = p.probe_result(&stop, &out);
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "demote --wait failed: {text}");
    assert!(text.contains("handed over to 192.0.2.2"), "{text}");
    assert_no_loss(&r, "demote");
    let (rounds, empty, fe2_seen) = *seen.lock().unwrap_or_else(|e| e.into_inner());
    assert!(fe2_seen);
    assert_eq!(empty, 0, "a moment with no VIP holder in {rounds} samples");
    assert_eq!(p.holders(), ["fe2"]);
    let st = p.status("fe1");
    let i = &st["instances"][0];
    assert_eq!(
        (i["state"].as_str(), i["demoted"].as_bool()),
        (Some("backup"), Some(true)),
        "{i}"
    );
    assert_eq!(i["effective_priority"], 1);
    // Demoted: it stays backup (no preempt) until promoted.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(p.holders(), ["fe2"], "a demoted node must not preempt");
    let o = p.vipctl("fe1", &["promote", "VI_1"]);
    assert!(o.status.success(), "{o:?}");
    p.wait_holder("fe1");
    let st = p.status("fe1");
    assert_eq!(st["instances"][0]["demoted"], false);
    assert_eq!(st["instances"][0]["effective_priority"], 150);
}

#[test]
fn demote_without_a_successor_fails_and_stays_master__SM12() {
    let _g = netns_lock();
    let p = Pair::new("hos", "0.1", &["fe1"]);
    let t = Instant::now();
    let o = p.vipctl("fe1", &["--timeout", "0.5", "demote", "VI_1", "--wait"]);
    let text = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "demote with nobody to take over must fail");
    assert!(text.contains("still master"), "{text}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "bounded by --timeout: {:?}",
        t.elapsed()
    );
    assert_eq!(p.holders(), ["fe1"], "the VIP stays");
    let st = p.status("fe1");
    assert_eq!(st["instances"][0]["state"], "master");
    assert_eq!(st["instances"][0]["demoted"], false);
    // And SIGTERM alone still exits within its bound (3 intervals + 100 ms).
    let mut p = p;
    let t = Instant::now();
    let ex = p.lab.signal("fe1", libc::SIGTERM, Duration::from_secs(5));
    assert!(ex.is_some_and(|e| e.success()), "{ex:?}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "single-node SIGTERM took {:?}",
        t.elapsed()
    );
    assert!(p.holders().is_empty(), "VIP released at exit");
}

#[test]
fn kill9_then_release_hands_over_after_skew_time__SM5() {
    let _g = netns_lock();
    // 1 s adverts: Skew_Time(100) = 609 ms, Master_Down_Interval = 3609 ms.
    let mut p = Pair::new("hok", "1", &["fe1", "fe2"]);
    p.wait_state("fe2", "backup");
    let (stop, out) = p.probe(20.0);
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    p.lab
        .signal("fe1", libc::SIGKILL, Duration::from_secs(5))
        .expect("fe1 killed");
    assert_eq!(p.holders(), ["fe1"], "kill -9 leaves the VIP behind");
    let (ns, cfg) = (p.lab.ns("fe1"), p.cfg("fe1"));
    let o = run(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "env",
        "SERVICE_RESULT=signal",
        VIPD,
        "--release",
        "-c",
        &cfg,
    ]);
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("192.0.2.2 advertised as master"), "{text}");
    assert_eq!(p.holders(), ["fe2"], "fe2 holds the VIP, fe1 released it: {text}");
    assert!(
        took < Duration::from_millis(2500),
        "takeover after {took:?}: Skew_Time is 609 ms, Master_Down 3609 ms"
    );
    let r = p.probe_result(&stop, &out);
    // The responder on fe1 outlived vipd: the VIP was held until fe2 had it.
    assert_eq!(r["lost"].as_u64(), Some(0), "{r}");
}

#[test]
fn release_after_a_clean_stop_does_nothing() {
    let dir = std::env::temp_dir().join(format!("vipd-rel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = dir.join("vipd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\ncontrol_socket = \"{}/s\"\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\n\
             priority = 100\nvirtual_ipaddress = [\"{VIP}/24\"]\n",
            dir.display()
        ),
    )
    .expect("write");
    let o = std::process::Command::new(VIPD)
        .args(["--release", "-c"])
        .arg(&cfg)
        .env("SERVICE_RESULT", "success")
        .output()
        .expect("run vipd");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("clean stop"), "{o:?}");
}
