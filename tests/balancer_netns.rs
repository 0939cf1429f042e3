//! Namespace integration tests of the L4 balancer (root): client namespace →
//! VIP on a real vipd node → three backend namespaces running real servers
//! (scripts/backend.py: TCP one-shot answer, TCP echo, UDP echo, HTTP /health).
#![allow(non_snake_case)]

mod common;
use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/backend.py");
const VIP: &str = "192.0.2.100";

struct Bal {
    lab: Lab,
    fronts: Vec<String>,
}

/// `fronts` front nodes (priorities 150, 100), a client, three backends.
fn bal(tag: &str, fronts: usize) -> Bal {
    let mut lab = Lab::new(tag);
    let mut names = Vec::new();
    for i in 1..=fronts {
        let a = format!("192.0.2.{i}/24");
        let b = format!("198.51.100.{i}/24");
        lab.add_host(&format!("fe{i}"), &[&a, &b]);
        names.push(format!("fe{i}"));
    }
    lab.add_host("client", &["192.0.2.50/24"]);
    for i in 1..=3 {
        let a = format!("198.51.100.1{i}/24");
        let ns = lab.add_host(&format!("be{i}"), &[&a]);
        let name = format!("be{i}");
        lab.spawn(&name, &ns, &["python3", BACKEND, &name, "6000", "8686"]);
    }
    Bal { lab, fronts: names }
}

impl Bal {
    fn sock(&self, fe: &str) -> String {
        self.lab.dir.join(format!("{fe}.sock")).display().to_string()
    }
    fn start(&mut self, fe: &str, prio: u8, servers: &str) {
        let cfg = format!(
            "[global]\ncontrol_socket = \"{}\"\n\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}/24\"]\n\n{servers}\n",
            self.sock(fe)
        );
        let path = self.lab.dir.join(format!("{fe}.toml"));
        std::fs::write(&path, cfg).unwrap();
        let ns = self.lab.ns(fe);
        self.lab
            .spawn(fe, &ns, &[VIPD, "-c", &path.display().to_string(), "--log", "debug"]);
    }
    fn status(&self, fe: &str) -> Option<Value> {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.lab.ns(fe),
            VIPCTL,
            "--socket",
            &self.sock(fe),
            "status",
            "--json",
        ]);
        serde_json::from_slice(&out.stdout).ok()
    }
    fn vipctl(&self, fe: &str, args: &[&str]) -> std::process::Output {
        let ns = self.lab.ns(fe);
        let sock = self.sock(fe);
        let mut argv = vec!["ip", "netns", "exec", &ns, VIPCTL, "--socket", &sock];
        argv.extend_from_slice(args);
        run(&argv)
    }
    /// Health of each backend of the first virtual server, by address.
    fn health(&self, fe: &str) -> Vec<(String, String)> {
        let Some(st) = self.status(fe) else { return vec![] };
        st["virtual_servers"][0]["backends"]
            .as_array()
            .map(|bs| {
                bs.iter()
                    .map(|b| {
                        (
                            b["address"].as_str().unwrap_or("").to_string(),
                            b["health"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    fn wait_health(&self, fe: &str, addr: &str, want: &str, limit: Duration) -> Duration {
        poll_until(
            &format!("{addr} {want} on {fe}"),
            limit,
            Duration::from_millis(20),
            || {
                self.health(fe)
                    .iter()
                    .any(|(a, h)| a == addr && h == want)
                    .then_some(())
            },
        )
        .1
    }
    /// Until `fe` accepts on the first virtual server and its first backend is up.
    fn wait_serving(&self, fe: &str) {
        poll_until(
            &format!("{fe} serving"),
            Duration::from_secs(10),
            Duration::from_millis(50),
            || {
                let st = self.status(fe)?;
                let vs = &st["virtual_servers"][0];
                (vs["serving"] == true && vs["backends"][0]["health"] == "up").then_some(())
            },
        );
    }
    fn wait_all_up(&self, fe: &str) {
        poll_until(
            "all backends up",
            Duration::from_secs(15),
            Duration::from_millis(50),
            || {
                let h = self.health(fe);
                (h.len() == 3 && h.iter().all(|(_, x)| x == "up")).then_some(())
            },
        );
    }
    /// `n` one-shot TCP connections from the client to VIP:port; each answer (or None).
    fn connect_many(&self, n: usize, port: u16) -> Vec<Option<String>> {
        let script = format!(
            "import socket, json\nout = []\nfor _ in range({n}):\n    try:\n        s = socket.create_connection(('{VIP}', {port}), timeout=3)\n        s.settimeout(3)\n        d = s.recv(200).decode().strip()\n        out.append(d or None)\n        s.close()\n    except OSError:\n        out.append(None)\nprint(json.dumps(out))\n"
        );
        let out = sh(&["ip", "netns", "exec", &self.lab.ns("client"), "python3", "-c", &script]);
        serde_json::from_str(out.trim()).expect("client output")
    }
}

fn tcp_server(algo: &str, extra: &str) -> String {
    format!(
        "[virtual_server.ingest]\nlisten = \"{VIP}:6000\"\nprotocol = \"tcp\"\nlb_algo = \"{algo}\"\nvrrp_instance = \"VI_1\"\nconnect_timeout = \"300ms\"\ncheck = {{ type = \"http\", port = 8686, path = \"/health\", interval = \"500ms\", timeout = \"300ms\", rise = 2, fall = 2 }}\nreal_server = [\n  {{ address = \"198.51.100.11:6000\" }},\n  {{ address = \"198.51.100.12:6000\" }},\n  {{ address = \"198.51.100.13:6000\" }},\n]\n{extra}\n"
    )
}

/// A client that sends a line every 100 ms on one kept connection to VIP:port
/// for `n` lines and prints each echoed line, then DONE (or CLOSED / ERROR).
fn stream_script(port: u16, n: usize) -> String {
    format!(
        "import socket, time\ns = socket.create_connection(('{VIP}', {port}), timeout=3)\ns.settimeout(3)\nf = s.makefile('rb')\nfor i in range({n}):\n    try:\n        s.sendall(b'l%d\\n' % i)\n        l = f.readline()\n    except OSError as e:\n        print('ERROR', e, flush=True); break\n    if not l:\n        print('CLOSED', flush=True); break\n    print(l.decode().strip(), flush=True)\n    time.sleep(0.1)\nprint('DONE', flush=True)\n"
    )
}

fn count(answers: &[Option<String>], who: &str) -> usize {
    answers
        .iter()
        .filter(|a| a.as_deref().is_some_and(|s| s.starts_with(who)))
        .count()
}

#[test]
fn rr_spreads_connections_evenly_and_status_shows_backends() {
    let _g = netns_lock();
    let mut b = bal("brr", 1);
    b.start("fe1", 150, &tcp_server("rr", ""));
    b.wait_all_up("fe1");
    let answers = b.connect_many(30, 6000);
    assert!(answers.iter().all(|a| a.is_some()), "failed connections: {answers:?}");
    for be in ["be1", "be2", "be3"] {
        assert_eq!(count(&answers, be), 10, "rr share of {be}: {answers:?}");
    }
    assert!(answers
        .iter()
        .all(|a| a.as_deref().unwrap_or("").ends_with("via 198.51.100.1")));
    let out = b.vipctl("fe1", &["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ingest tcp 192.0.2.100:6000 rr") && text.contains("198.51.100.12:6000"),
        "{text}"
    );
    let st = b.status("fe1").unwrap();
    let total: u64 = st["virtual_servers"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["total_connections"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 30);
}

#[test]
fn killed_backend_is_ejected_and_no_client_connection_fails() {
    let _g = netns_lock();
    let mut b = bal("bkl", 1);
    b.start("fe1", 150, &tcp_server("rr", ""));
    b.wait_all_up("fe1");
    let t = Instant::now();
    b.lab.signal("be2", libc::SIGKILL, Duration::from_secs(5));
    // Right away: connections to be2 are refused, the client is redispatched.
    let answers = b.connect_many(12, 6000);
    assert!(
        answers.iter().all(|a| a.is_some()),
        "a client saw the dead backend: {answers:?}"
    );
    assert_eq!(count(&answers, "be2"), 0);
    // Removed within interval × fall (1 s) plus margin; passive failures count at once.
    b.wait_health("fe1", "198.51.100.12:6000", "down", Duration::from_secs(5));
    assert!(t.elapsed() < Duration::from_secs(5));
    let answers = b.connect_many(12, 6000);
    assert!(answers.iter().all(|a| a.is_some()));
    assert_eq!(count(&answers, "be1"), 6);
    assert_eq!(count(&answers, "be3"), 6);
}

#[test]
fn blackholed_backend_is_ejected_by_check_timeout_and_returns_after_rise() {
    let _g = netns_lock();
    let mut b = bal("bbh", 1);
    b.start("fe1", 150, &tcp_server("rr", ""));
    b.wait_all_up("fe1");
    b.lab.set_link("be3", false);
    // 500 ms interval, 300 ms timeout, fall 2: about 1.3 s; allow generous slack.
    let took = b.wait_health("fe1", "198.51.100.13:6000", "down", Duration::from_secs(8));
    assert!(took < Duration::from_secs(8));
    let st = b.status("fe1").unwrap();
    let be3 = st["virtual_servers"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["address"] == "198.51.100.13:6000")
        .cloned()
        .unwrap();
    assert!(
        be3["last_change"].as_str().unwrap_or("").contains("timeout")
            || be3["last_check"].as_str().unwrap_or("").contains("timeout"),
        "{be3}"
    );
    let answers = b.connect_many(10, 6000);
    assert!(answers.iter().all(|a| a.is_some()), "{answers:?}");
    assert_eq!(count(&answers, "be3"), 0);
    // The link returns: back after `rise` (2) passed checks.
    b.lab.set_link("be3", true);
    b.wait_health("fe1", "198.51.100.13:6000", "up", Duration::from_secs(8));
    let answers = b.connect_many(30, 6000);
    assert!(count(&answers, "be3") >= 9, "{answers:?}");
}

#[test]
fn drain_keeps_open_stream_while_new_ones_go_elsewhere_and_maint_closes_it() {
    let _g = netns_lock();
    let mut b = bal("bdr", 1);
    let echo = format!(
        "[virtual_server.echo]\nlisten = \"{VIP}:6001\"\nlb_algo = \"rr\"\nvrrp_instance = \"VI_1\"\ncheck = {{ type = \"tcp\", interval = \"500ms\", timeout = \"300ms\", rise = 1, fall = 2 }}\nreal_server = [\n  {{ address = \"198.51.100.11:6001\" }},\n  {{ address = \"198.51.100.12:6001\" }},\n  {{ address = \"198.51.100.13:6001\" }},\n]\n"
    );
    b.start("fe1", 150, &echo);
    b.wait_all_up("fe1");
    // A long-lived stream: one line every 100 ms for at most 8 s, logging answers.
    let script = stream_script(6001, 80);
    let ns = b.lab.ns("client");
    b.lab.spawn("stream", &ns, &["python3", "-u", "-c", &script]);
    let (first, _) = poll_until(
        "stream answers",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let log = b.lab.log("stream");
            log.lines()
                .next()
                .map(|l| l.split(':').next().unwrap_or("").to_string())
        },
    );
    let idx = first.trim_start_matches("be").to_string();
    let addr = format!("198.51.100.1{idx}:6001");
    let out = b.vipctl("fe1", &["backend", "drain", "echo", &addr]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines_at_drain = b.lab.log("stream").lines().count();
    // New connections avoid the drained backend.
    let script2 = format!(
        "import socket\nfor _ in range(10):\n    s = socket.create_connection(('{VIP}', 6001), timeout=3); s.settimeout(3)\n    s.sendall(b'x\\n'); print(s.recv(100).decode().strip()); s.close()\n"
    );
    let out = sh(&["ip", "netns", "exec", &ns, "python3", "-c", &script2]);
    assert_eq!(out.lines().count(), 10, "{out}");
    assert!(
        !out.contains(&format!("{first}:")),
        "a new connection went to the drained {first}: {out}"
    );
    // The open stream kept flowing through the drain.
    poll_until(
        "stream continues after drain",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (b.lab.log("stream").lines().filter(|l| l.starts_with(&first)).count() > lines_at_drain + 3).then_some(()),
    );
    assert!(!b.lab.log("stream").contains("CLOSED") && !b.lab.log("stream").contains("ERROR"));
    // maint closes it.
    let out = b.vipctl("fe1", &["backend", "maint", "echo", &addr]);
    assert!(out.status.success());
    poll_until(
        "maint closes the stream",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            let log = b.lab.log("stream");
            (log.contains("CLOSED") || log.contains("ERROR")).then_some(())
        },
    );
    // Bad requests are clear errors.
    let out = b.vipctl("fe1", &["backend", "drain", "nope", &addr]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no virtual_server"));
}

#[test]
fn udp_flows_are_balanced_and_answered() {
    let _g = netns_lock();
    let mut b = bal("bud", 1);
    let udp = format!(
        "[virtual_server.syslog]\nlisten = \"{VIP}:6000\"\nprotocol = \"udp\"\nlb_algo = \"rr\"\nvrrp_instance = \"VI_1\"\ncheck = {{ type = \"tcp\", port = 6000, interval = \"500ms\", timeout = \"300ms\", rise = 1, fall = 2 }}\nreal_server = [\n  {{ address = \"198.51.100.11:6000\" }},\n  {{ address = \"198.51.100.12:6000\" }},\n  {{ address = \"198.51.100.13:6000\" }},\n]\n"
    );
    b.start("fe1", 150, &udp);
    b.wait_all_up("fe1");
    let script = format!(
        "import socket\nfor i in range(6):\n    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)\n    for k in range(3):\n        u.sendto(b'msg%d' % k, ('{VIP}', 6000))\n        print(u.recv(200).decode())\n    u.close()\n"
    );
    let out = sh(&["ip", "netns", "exec", &b.lab.ns("client"), "python3", "-c", &script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 18, "{out}");
    // One flow per client socket: the three datagrams of a flow hit one backend.
    for flow in lines.chunks(3) {
        let who = flow[0].split(':').next().unwrap();
        assert!(
            flow.iter().all(|l| l.starts_with(who)),
            "flow split across backends: {flow:?}"
        );
    }
    for be in ["be1", "be2", "be3"] {
        assert_eq!(lines.iter().filter(|l| l.starts_with(be)).count(), 6, "{out}");
    }
}

#[test]
fn vrrp_failover_moves_the_service_to_the_backup() {
    let _g = netns_lock();
    let mut b = bal("bfo", 2);
    let srv = tcp_server("rr", "");
    b.start("fe1", 150, &srv);
    b.start("fe2", 100, &srv);
    b.wait_all_up("fe1");
    b.wait_all_up("fe2");
    let answers = b.connect_many(6, 6000);
    assert!(
        answers
            .iter()
            .all(|a| a.as_deref().unwrap_or("").ends_with("via 198.51.100.1")),
        "{answers:?}"
    );
    let st = b.status("fe2").unwrap();
    assert_eq!(st["virtual_servers"][0]["serving"], false, "the backup must not accept");
    b.lab.signal("fe1", libc::SIGKILL, Duration::from_secs(5));
    b.lab.set_link("fe1", false);
    poll_until(
        "the backup answers on the VIP",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let a = b.connect_many(1, 6000);
            a[0].as_deref()
                .is_some_and(|s| s.ends_with("via 198.51.100.2"))
                .then_some(())
        },
    );
    let answers = b.connect_many(6, 6000);
    assert!(
        answers
            .iter()
            .all(|a| a.as_deref().unwrap_or("").ends_with("via 198.51.100.2")),
        "{answers:?}"
    );
    assert_eq!(b.status("fe2").unwrap()["virtual_servers"][0]["serving"], true);
    let _ = &b.fronts;
}

#[test]
fn reload_adds_and_removes_backends_without_touching_open_connections() {
    let _g = netns_lock();
    let mut b = bal("brl", 1);
    let echo = |backends: &[&str]| {
        let list: Vec<String> = backends.iter().map(|a| format!("  {{ address = \"{a}\" }},")).collect();
        format!(
            "[virtual_server.echo]\nlisten = \"{VIP}:6001\"\nlb_algo = \"rr\"\nvrrp_instance = \"VI_1\"\ncheck = {{ type = \"tcp\", interval = \"300ms\", timeout = \"200ms\", rise = 1, fall = 2 }}\nreal_server = [\n{}\n]\n",
            list.join("\n")
        )
    };
    b.start("fe1", 150, &echo(&["198.51.100.11:6001", "198.51.100.12:6001"]));
    poll_until(
        "two backends up",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let h = b.health("fe1");
            (h.len() == 2 && h.iter().all(|(_, x)| x == "up")).then_some(())
        },
    );
    let script = stream_script(6001, 60);
    let ns = b.lab.ns("client");
    b.lab.spawn("stream", &ns, &["python3", "-u", "-c", &script]);
    let (first, _) = poll_until(
        "stream answers",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            b.lab
                .log("stream")
                .lines()
                .next()
                .map(|l| l.split(':').next().unwrap_or("").to_string())
        },
    );
    // Keep the stream's backend, drop the other one, add be3.
    let keep = format!("198.51.100.1{}:6001", first.trim_start_matches("be"));
    let cfg_path = b.lab.dir.join("fe1.toml");
    let text = std::fs::read_to_string(&cfg_path).unwrap();
    let head = text.split("[virtual_server.echo]").next().unwrap().to_string();
    std::fs::write(&cfg_path, head + &echo(&[&keep, "198.51.100.13:6001"])).unwrap();
    let out = b.vipctl("fe1", &["reload"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    poll_until(
        "be3 added and up",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let h = b.health("fe1");
            (h.len() == 2 && h.iter().any(|(a, x)| a == "198.51.100.13:6001" && x == "up")).then_some(())
        },
    );
    // New connections: only the kept backend and be3.
    let script2 = format!(
        "import socket\nfor _ in range(8):\n    s = socket.create_connection(('{VIP}', 6001), timeout=3); s.settimeout(3)\n    s.sendall(b'x\\n'); print(s.recv(100).decode().strip()); s.close()\n"
    );
    let out = sh(&["ip", "netns", "exec", &ns, "python3", "-c", &script2]);
    assert_eq!(out.lines().count(), 8, "{out}");
    assert!(
        out.lines().all(|l| l.starts_with(&first) || l.starts_with("be3")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("be3")), "{out}");
    // The open stream ran to its end untouched.
    poll_until(
        "stream done",
        Duration::from_secs(15),
        Duration::from_millis(100),
        || b.lab.log("stream").contains("DONE").then_some(()),
    );
    let log = b.lab.log("stream");
    assert!(!log.contains("CLOSED") && !log.contains("ERROR"), "{log}");
    assert_eq!(log.lines().filter(|l| l.starts_with(&first)).count(), 60);
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let _g = netns_lock();
    let mut b = bal("bmt", 1);
    let srv = tcp_server("maglev", "");
    // Global metrics address inside the node's namespace.
    let cfg = format!(
        "[global]\ncontrol_socket = \"{}\"\nmetrics = \"127.0.0.1:9650\"\n\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 150\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}/24\"]\n\n{srv}\n",
        b.sock("fe1")
    );
    let path = b.lab.dir.join("fe1.toml");
    std::fs::write(&path, cfg).unwrap();
    let ns = b.lab.ns("fe1");
    b.lab.spawn("fe1", &ns, &[VIPD, "-c", &path.display().to_string()]);
    b.wait_all_up("fe1");
    let script = "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9650/metrics', timeout=3).read().decode())";
    let (text, _) = poll_until("metrics", Duration::from_secs(5), Duration::from_millis(50), || {
        let out = run(&["ip", "netns", "exec", &ns, "python3", "-c", script]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).to_string())
    });
    assert!(
        text.contains("vipd_vrrp_state{vrrp_instance=\"VI_1\",state=\"master\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("vipd_vrrp_discards_total{vrrp_instance=\"VI_1\",reason=\"bad_ttl\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("vipd_backend_up{virtual_server=\"ingest\",backend=\"198.51.100.11:6000\"} 1"),
        "{text}"
    );
    // maglev: one client address always lands on the same backend.
    let answers = b.connect_many(9, 6000);
    let first = answers[0].clone().unwrap();
    let who = first.split(' ').next().unwrap();
    assert_eq!(count(&answers, who), 9, "{answers:?}");
}

/// A node that loses mastership (a higher priority node preempts it) stops
/// accepting and closes its proxied connections promptly; clients reconnect
/// to the new master.
#[test]
fn losing_mastership_closes_proxied_connections() {
    let _g = netns_lock();
    let mut b = bal("bml", 2);
    let echo = format!(
        "[virtual_server.echo]\nlisten = \"{VIP}:6001\"\nvrrp_instance = \"VI_1\"\ncheck = {{ type = \"tcp\", interval = \"300ms\", timeout = \"200ms\", rise = 1, fall = 2 }}\nreal_server = [{{ address = \"198.51.100.11:6001\" }}]\n"
    );
    b.start("fe2", 100, &echo);
    b.wait_serving("fe2");
    let script = stream_script(6001, 100);
    let ns = b.lab.ns("client");
    b.lab.spawn("stream", &ns, &["python3", "-u", "-c", &script]);
    poll_until(
        "stream flows via fe2",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || b.lab.log("stream").lines().next().map(|_| ()),
    );
    // fe1 (priority 150) comes up and preempts fe2.
    b.start("fe1", 150, &echo);
    poll_until(
        "fe2 closes the stream after losing mastership",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let log = b.lab.log("stream");
            (log.contains("CLOSED") || log.contains("ERROR")).then_some(())
        },
    );
    let st = b.status("fe2").unwrap();
    assert_eq!(st["instances"][0]["state"], "backup");
    assert_eq!(st["virtual_servers"][0]["serving"], false);
    // The client reconnects and is served by the new master.
    poll_until(
        "new master serves",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let out = run(&["ip", "netns", "exec", &ns, "python3", "-c", &format!("import socket\ns=socket.create_connection(('{VIP}',6001),timeout=2);s.settimeout(2);s.sendall(b'x\\n');print(s.recv(100).decode())")]);
            String::from_utf8_lossy(&out.stdout).starts_with("be1: x").then_some(())
        },
    );
}

/// A bulk stream (8 MiB each way: past the copy buffer, so the relay splices)
/// arrives intact in both directions; the client's half-close reaches the
/// backend, whose close comes back after its last byte; the byte counters
/// match what was sent.
#[test]
fn bulk_stream_is_relayed_intact_both_ways_with_half_close() {
    let _g = netns_lock();
    let mut b = bal("bbk", 1);
    let echo = format!(
        "[virtual_server.echo]\nlisten = \"{VIP}:6001\"\nvrrp_instance = \"VI_1\"\ncheck = {{ type = \"tcp\", interval = \"300ms\", timeout = \"200ms\", rise = 1, fall = 2 }}\nreal_server = [{{ address = \"198.51.100.11:6001\" }}]\n"
    );
    b.start("fe1", 150, &echo);
    b.wait_serving("fe1");
    // 131072 lines of 64 bytes; the echo prefixes each with "be1: ".
    let script = format!(
        "import socket, threading, hashlib\n\
         lines = [(b'%063d' % i)[-63:] + b'\\n' for i in range(131072)]\n\
         data = b''.join(lines)\n\
         s = socket.create_connection(('{VIP}', 6001), timeout=20)\n\
         s.settimeout(20)\n\
         def send():\n    s.sendall(data)\n    s.shutdown(socket.SHUT_WR)\n\
         t = threading.Thread(target=send); t.start()\n\
         got = bytearray()\n\
         while True:\n    c = s.recv(1 << 16)\n    if not c: break\n    got += c\n\
         t.join()\n\
         want = b''.join(b'be1: ' + l for l in lines)\n\
         print(len(data), len(got), got == want)\n"
    );
    let out = sh(&["ip", "netns", "exec", &b.lab.ns("client"), "python3", "-c", &script]);
    let sent = 131072 * 64;
    let back = 131072 * (64 + 5);
    assert_eq!(
        out.trim(),
        format!("{sent} {back} True"),
        "client view: sent, received, intact"
    );
    // Counters: everything the client sent went in; everything back went out.
    let (bi, bo) = poll_until(
        "byte counters settle",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            let st = b.status("fe1")?;
            let be = &st["virtual_servers"][0]["backends"][0];
            let (bi, bo) = (be["bytes_in"].as_u64()?, be["bytes_out"].as_u64()?);
            (bi == sent && bo == back && be["active_connections"] == 0).then_some((bi, bo))
        },
    )
    .0;
    assert_eq!((bi, bo), (sent, back));
}

/// UDP: a backend that answers with ICMP port unreachable is counted as a
/// passive health failure per refused flow and taken out after `fall`, while
/// its (TCP) active check still passes; maint ends a running flow and the
/// client's next datagram goes to another backend.
#[test]
fn udp_refusals_are_passive_failures_and_maint_ends_flows() {
    let _g = netns_lock();
    let mut b = bal("bur", 1);
    let udp = format!(
        "[virtual_server.syslog]\nlisten = \"{VIP}:6000\"\nprotocol = \"udp\"\nlb_algo = \"rr\"\nvrrp_instance = \"VI_1\"\ncheck = {{ type = \"tcp\", port = 6000, interval = \"1s\", timeout = \"300ms\", rise = 5, fall = 2 }}\nreal_server = [\n  {{ address = \"198.51.100.11:6100\" }},\n  {{ address = \"198.51.100.12:6000\" }},\n  {{ address = \"198.51.100.13:6000\" }},\n]\n"
    );
    b.start("fe1", 150, &udp);
    b.wait_all_up("fe1");
    // Nothing listens on be1's UDP 6100: its flows are refused.
    let flows = |n: usize| {
        let script = format!(
            "import socket\nfor i in range({n}):\n    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(1.0)\n    u.sendto(b'm', ('{VIP}', 6000))\n    try:\n        print(u.recv(200).decode().split(':')[0])\n    except OSError:\n        print('none')\n    u.close()\n"
        );
        sh(&["ip", "netns", "exec", &b.lab.ns("client"), "python3", "-c", &script])
    };
    let first = flows(6);
    assert!(first.lines().any(|l| l == "none"), "be1 refused some flows: {first}");
    b.wait_health("fe1", "198.51.100.11:6100", "down", Duration::from_secs(5));
    let st = b.status("fe1").unwrap();
    let be1 = &st["virtual_servers"][0]["backends"][0];
    assert!(
        be1["last_change"].as_str().unwrap_or("").contains("port unreachable"),
        "{be1}"
    );
    let after = flows(6);
    assert!(
        after.lines().all(|l| l == "be2" || l == "be3"),
        "be1 out of rotation: {after}"
    );

    // Maint ends a live flow: the same client socket is then served elsewhere.
    // The client (a lab process: stopped with the lab) waits for a go file.
    let go = b.lab.dir.join("go");
    let script = format!(
        "import os, socket, time\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)\nu.sendto(b'a', ('{VIP}', 6000)); print(u.recv(200).decode().split(':')[0], flush=True)\nfor _ in range(200):\n    if os.path.exists('{go}'): break\n    time.sleep(0.05)\ntime.sleep(0.3)\nu.sendto(b'b', ('{VIP}', 6000)); print(u.recv(200).decode().split(':')[0], flush=True)\n",
        go = go.display()
    );
    let ns = b.lab.ns("client");
    b.lab.spawn("flow", &ns, &["python3", "-u", "-c", &script]);
    let answers = |n: usize| {
        poll_until(
            &format!("{n} answer(s) on the flow"),
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                let log = b.lab.log("flow");
                let lines: Vec<String> = log.lines().map(|l| l.trim().to_string()).collect();
                (lines.len() >= n).then_some(lines)
            },
        )
        .0
    };
    let who = answers(1)[0].clone();
    let addr = match who.as_str() {
        "be2" => "198.51.100.12:6000",
        "be3" => "198.51.100.13:6000",
        other => panic!("unexpected first backend {other:?}"),
    };
    let o = b.vipctl("fe1", &["backend", "maint", "syslog", addr]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(&go, b"go").expect("go file");
    let second = answers(2)[1].clone();
    let second = second.as_str();
    assert!(second == "be2" || second == "be3", "answered: {second:?}");
    assert_ne!(second, who, "the flow left the backend in maintenance");
}
