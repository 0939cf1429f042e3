//! Namespace tests (root) of what `vipctl explain`, `watch` and `status` tell
//! an operator about real vipd processes: the master a backup sees and its
//! Master_Down countdown, a failover and a backend health change followed by
//! three watchers at once until vipd stops, and `status` exiting 1 on FAULT
//! and on a virtual server without a healthy backend.

mod common;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/backend.py");
const VIP: &str = "192.0.2.100";

struct Net {
    lab: Lab,
}

impl Net {
    /// `fronts` nodes fe1.. (192.0.2.N and 198.51.100.N) and a backend be1
    /// (198.51.100.11) answering health checks on 8686.
    fn new(tag: &str, fronts: usize) -> Net {
        let mut lab = Lab::new(tag);
        for i in 1..=fronts {
            let a = format!("192.0.2.{i}/24");
            let b = format!("198.51.100.{i}/24");
            lab.add_host(&format!("fe{i}"), &[&a, &b]);
        }
        let ns = lab.add_host("be1", &["198.51.100.11/24"]);
        lab.spawn("be1", &ns, &["python3", BACKEND, "be1", "6000", "8686"]);
        Net { lab }
    }
    fn sock(&self, fe: &str) -> String {
        self.lab.dir.join(format!("{fe}.sock")).display().to_string()
    }
    /// Start vipd on `fe`: VI_1 at `prio` with 1 s adverts (a Master_Down
    /// countdown long enough to watch), `extra` instance lines, and a
    /// virtual server with be1 as its only backend.
    fn start(&mut self, fe: &str, prio: u8, extra: &str) {
        let cfg = format!(
            "[global]\nrouter_id = \"{fe}\"\ncontrol_socket = \"{}\"\n\n\
             [vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 61\npriority = {prio}\n\
             advert_int = 1\nvirtual_ipaddress = [\"{VIP}/24\"]\n{extra}\n\n\
             [virtual_server.web]\nlisten = \"{VIP}:6000\"\nprotocol = \"tcp\"\nlb_algo = \"rr\"\n\
             vrrp_instance = \"VI_1\"\n\
             check = {{ type = \"http\", port = 8686, path = \"/health\", interval = \"200ms\", timeout = \"150ms\", rise = 1, fall = 1 }}\n\
             real_server = [{{ address = \"198.51.100.11:6000\" }}]\n",
            self.sock(fe)
        );
        let path = self.lab.dir.join(format!("{fe}.toml"));
        std::fs::write(&path, cfg).expect("write config");
        let ns = self.lab.ns(fe);
        self.lab
            .spawn(fe, &ns, &[VIPD, "-c", &path.display().to_string(), "--log", "debug"]);
    }
    fn vipctl(&self, fe: &str, args: &[&str]) -> std::process::Output {
        let ns = self.lab.ns(fe);
        let sock = self.sock(fe);
        let mut argv = vec!["ip", "netns", "exec", &ns, VIPCTL, "--socket", &sock];
        argv.extend_from_slice(args);
        run(&argv)
    }
    /// `status --json` whatever its exit code (1 = a problem, still a status).
    fn status(&self, fe: &str) -> Option<Value> {
        serde_json::from_slice(&self.vipctl(fe, &["status", "--json"]).stdout).ok()
    }
    fn explain(&self, fe: &str) -> Option<Value> {
        serde_json::from_slice(&self.vipctl(fe, &["explain", "VI_1", "--json"]).stdout).ok()
    }
    fn wait_state(&self, fe: &str, state: &str, limit: Duration) {
        poll_until(
            &format!("VI_1 on {fe} is {state}"),
            limit,
            Duration::from_millis(50),
            || {
                let st = self.status(fe)?;
                (st["instances"][0]["state"] == state).then_some(())
            },
        );
    }
    fn wait_backend(&self, fe: &str, health: &str, limit: Duration) {
        poll_until(
            &format!("be1 is {health} on {fe}"),
            limit,
            Duration::from_millis(50),
            || {
                let st = self.status(fe)?;
                (st["virtual_servers"][0]["backends"][0]["health"] == health).then_some(())
            },
        );
    }
    /// Exit code of `vipctl status` (text form) and its output.
    fn status_code(&self, fe: &str) -> (Option<i32>, String) {
        let out = self.vipctl(fe, &["status"]);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn events(log: &str) -> Vec<Value> {
    log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

#[test]
fn explain_on_a_backup_shows_the_master_and_a_counting_down_master_down() {
    let _g = netns_lock();
    let mut n = Net::new("exw", 2);
    n.start("fe1", 150, "");
    n.start("fe2", 100, "");
    n.wait_state("fe1", "master", Duration::from_secs(15));
    n.wait_state("fe2", "backup", Duration::from_secs(15));
    // Wait until fe2 has heard fe1 (an advert accepted since it started).
    poll_until(
        "fe2 has heard fe1",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let e = n.explain("fe2")?;
            (e["master_addr"] == "192.0.2.1" && e["master_advert_age_us"].is_u64()).then_some(())
        },
    );
    let e = n.explain("fe2").expect("explain --json");
    assert_eq!(e["master_priority"], 150, "{e}");
    assert_eq!(e["master_advert_interval_us"], 1_000_000, "{e}");
    assert_eq!(e["master_checksum_form"], "pseudo_header", "{e}");
    // priority 100, 1 s: 3 s + Skew_Time (156/256 s) = 3 609 375 µs.
    assert_eq!(e["master_down_interval_us"], 3_609_375, "{e}");
    assert!(e["master_advert_age_us"].as_u64().unwrap() < 1_500_000, "{e}");
    // The countdown is live: it lies within the interval and goes down between
    // two looks that fall within one advert period.
    let mut fell = false;
    let mut samples = Vec::new();
    for _ in 0..20 {
        let a = n.explain("fe2").expect("explain")["master_down_in_us"]
            .as_u64()
            .expect("a backup has a Master_Down countdown");
        std::thread::sleep(Duration::from_millis(100));
        let b = n.explain("fe2").expect("explain")["master_down_in_us"]
            .as_u64()
            .expect("countdown");
        // Within the interval, and never run out while fe1 advertises every
        // second (about 2.6 s left just before each advert; no tighter bound
        // on a loaded machine).
        assert!(a <= 3_609_375 && b <= 3_609_375, "{a} {b}");
        assert!(a > 0 && b > 0, "{a} {b}");
        samples.push((a, b));
        if b < a && a - b >= 80_000 {
            fell = true;
            break;
        }
    }
    assert!(fell, "Master_Down never counted down: {samples:?}");
    // The human form says the same.
    let out = n.vipctl("fe2", &["explain", "VI_1"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("VI_1 (vrid 61 on eth0): BACKUP"), "{text}");
    assert!(
        text.contains("master seen: 192.0.2.1 priority 150, every 1s, checksum pseudo_header"),
        "{text}"
    );
    assert!(text.contains("higher than ours (100)"), "{text}");
    assert!(text.contains("Master_Down timer: fires in "), "{text}");
    assert!(text.contains("last transition: init -> backup (startup)"), "{text}");
    // The master explains itself too, without a countdown.
    let text = String::from_utf8_lossy(&n.vipctl("fe1", &["explain", "VI_1"]).stdout).into_owned();
    assert!(text.starts_with("VI_1 (vrid 61 on eth0): MASTER"), "{text}");
    assert!(!text.contains("Master_Down timer"), "{text}");
}

#[test]
fn three_watchers_follow_a_failover_and_a_backend_change_until_vipd_stops() {
    let _g = netns_lock();
    let mut n = Net::new("wat", 2);
    n.start("fe1", 150, "");
    n.start("fe2", 100, "");
    n.wait_state("fe1", "master", Duration::from_secs(15));
    n.wait_state("fe2", "backup", Duration::from_secs(15));
    n.wait_backend("fe2", "up", Duration::from_secs(10));
    let (ns, sock) = (n.lab.ns("fe2"), n.sock("fe2"));
    for w in ["w1", "w2", "w3"] {
        n.lab.spawn(w, &ns, &[VIPCTL, "--socket", &sock, "watch", "--json"]);
    }
    poll_until(
        "every watcher has its snapshot",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            ["w1", "w2", "w3"]
                .iter()
                .all(|w| events(&n.lab.log(w)).first().is_some_and(|e| e["event"] == "snapshot"))
                .then_some(())
        },
    );
    let snap = &events(&n.lab.log("w1"))[0];
    assert_eq!(snap["status"]["instances"][0]["state"], "backup", "{snap}");
    // The master crashes: fe2 takes over after Master_Down_Interval.
    n.lab.signal("fe1", libc::SIGKILL, Duration::from_secs(5));
    n.wait_state("fe2", "master", Duration::from_secs(10));
    // Then its only backend dies: the check marks it down.
    n.lab.signal("be1", libc::SIGKILL, Duration::from_secs(5));
    n.wait_backend("fe2", "down", Duration::from_secs(10));
    assert_eq!(n.status_code("fe2").0, Some(1), "no healthy backend: status exits 1");
    let t0 = Instant::now();
    let st = n.lab.signal("fe2", libc::SIGTERM, Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()), "vipd exits 0 on SIGTERM: {st:?}");
    for w in ["w1", "w2", "w3"] {
        // Each watcher ends by itself, with exit 0, soon after vipd.
        let st = n.lab.signal(w, 0, Duration::from_secs(5));
        assert!(st.is_some_and(|s| s.code() == Some(0)), "{w} ended with {st:?}");
        let ev = events(&n.lab.log(w));
        let pos = |f: &dyn Fn(&Value) -> bool| ev.iter().position(f);
        let failover = pos(&|e| e["event"] == "transition" && e["from"] == "backup" && e["to"] == "master")
            .unwrap_or_else(|| panic!("{w}: no failover in {ev:?}"));
        assert_eq!(ev[failover]["instance"], "VI_1");
        assert_eq!(ev[failover]["reason"], "master down timer");
        let down = pos(&|e| e["event"] == "backend" && e["address"] == "198.51.100.11:6000" && e["to"] == "down")
            .unwrap_or_else(|| panic!("{w}: no backend change in {ev:?}"));
        assert!(failover < down, "{w}: out of order: {ev:?}");
        assert_eq!(ev[down]["virtual_server"], "web");
        let last = ev.last().unwrap();
        assert_eq!(last["event"], "stopping", "{w}: {ev:?}");
        assert_eq!(last["reason"], "SIGTERM");
        // Nothing is reported twice.
        let failovers = ev
            .iter()
            .filter(|e| e["event"] == "transition" && e["to"] == "master")
            .count();
        assert_eq!(failovers, 1, "{w}: {ev:?}");
        // And the human form of the same stream reads.
        assert!(ev.iter().all(|e| e["unix_ms"].as_u64().is_some()), "{w}: {ev:?}");
    }
    assert!(t0.elapsed() < Duration::from_secs(15));
}

#[test]
fn status_exits_1_on_fault_and_without_a_healthy_backend() {
    let _g = netns_lock();
    let mut n = Net::new("ex1", 1);
    let ns = n.lab.ns("fe1");
    // Two veth pairs inside fe1 to track: trk0 with weight 0 (down = FAULT),
    // trk2 with weight -20 (down = priority 130).
    for (a, b) in [("trk0", "trk1"), ("trk2", "trk3")] {
        sh(&["ip", "-n", &ns, "link", "add", a, "type", "veth", "peer", "name", b]);
        sh(&["ip", "-n", &ns, "link", "set", b, "up"]);
        sh(&["ip", "-n", &ns, "link", "set", a, "up"]);
    }
    n.start(
        "fe1",
        150,
        "track_interface = [{ interface = \"trk0\" }, { interface = \"trk2\", weight = -20 }]",
    );
    n.wait_state("fe1", "master", Duration::from_secs(15));
    n.wait_backend("fe1", "up", Duration::from_secs(10));
    let (code, text) = n.status_code("fe1");
    assert_eq!(code, Some(0), "all fine: {text}");
    assert!(!text.contains("PROBLEM"), "{text}");
    let sock = n.sock("fe1");
    n.lab.spawn("w", &ns, &[VIPCTL, "--socket", &sock, "watch", "--json"]);
    poll_until(
        "the watcher has its snapshot",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || (!events(&n.lab.log("w")).is_empty()).then_some(()),
    );
    // A weighted tracker: a priority change, seen by explain and watch.
    sh(&["ip", "-n", &ns, "link", "set", "trk2", "down"]);
    poll_until(
        "priority 130",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (n.explain("fe1")?["effective_priority"] == 130).then_some(()),
    );
    let text = String::from_utf8_lossy(&n.vipctl("fe1", &["explain", "VI_1"]).stdout).into_owned();
    assert!(text.contains("priority: 130 (base 150, trackers -20)"), "{text}");
    // Each tracker on its own line: kind, name, weight, state, what it adds.
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no tracker {name} in {text}"))
    };
    assert_eq!(line("trk2"), ["interface", "trk2", "-20", "down", "-20"], "{text}");
    assert_eq!(line("trk0"), ["interface", "trk0", "0", "up", "+0"], "{text}");
    assert_eq!(n.status_code("fe1").0, Some(0), "a lower priority is no problem");
    // A weight-0 tracker: FAULT.
    sh(&["ip", "-n", &ns, "link", "set", "trk0", "down"]);
    n.wait_state("fe1", "fault", Duration::from_secs(10));
    let (code, text) = n.status_code("fe1");
    assert_eq!(code, Some(1), "FAULT: {text}");
    assert!(
        text.contains("PROBLEM: instance VI_1 is in FAULT (tracked interface trk0 failed)"),
        "{text}"
    );
    assert_eq!(n.vipctl("fe1", &["status", "--json"]).status.code(), Some(1));
    let text = String::from_utf8_lossy(&n.vipctl("fe1", &["explain", "VI_1"]).stdout).into_owned();
    assert!(text.contains("why: tracked interface trk0 failed"), "{text}");
    let ev = events(&n.lab.log("w"));
    let prio = ev
        .iter()
        .position(|e| e["event"] == "priority" && e["from"] == 150 && e["to"] == 130 && e["base"] == 150)
        .unwrap_or_else(|| panic!("no priority event in {ev:?}"));
    let fault = ev
        .iter()
        .position(|e| e["event"] == "transition" && e["to"] == "fault")
        .unwrap_or_else(|| panic!("no fault transition in {ev:?}"));
    assert!(prio < fault, "{ev:?}");
    assert_eq!(ev[fault]["reason"], "tracked interface trk0 failed");
    sh(&["ip", "-n", &ns, "link", "set", "trk0", "up"]);
    n.wait_state("fe1", "master", Duration::from_secs(10));
    assert_eq!(n.status_code("fe1").0, Some(0));
    n.lab.signal("be1", libc::SIGKILL, Duration::from_secs(5));
    n.wait_backend("fe1", "down", Duration::from_secs(10));
    let (code, text) = n.status_code("fe1");
    assert_eq!(code, Some(1), "no healthy backend: {text}");
    assert!(
        text.contains("PROBLEM: virtual server web has no healthy backend (0 of 1 up"),
        "{text}"
    );
    // A daemon that is gone is another code.
    n.lab.signal("fe1", libc::SIGTERM, Duration::from_secs(10));
    assert_eq!(n.status_code("fe1").0, Some(2));
    let st = n.lab.signal("w", 0, Duration::from_secs(5));
    assert!(st.is_some_and(|s| s.code() == Some(0)), "watcher ended with {st:?}");
}
