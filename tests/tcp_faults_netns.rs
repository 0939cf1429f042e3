//! Namespace tests of the TCP data plane under resource limits and faults
//! (issue 8): a client namespace, a vipd node holding the VIP, three backend
//! namespaces running a selector-based echo server that holds thousands of
//! streams. Each test fails on the data plane before issue 8.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const VIP: &str = "192.0.2.100";

/// Echo backend: every line comes back as "NAME: line"; a line "RST" makes it
/// reset the connection (SO_LINGER 0). One thread, epoll, fd limit raised.
const ECHO: &str = r#"
import resource, selectors, socket, struct, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
name, port = sys.argv[1].encode(), int(sys.argv[2])
sel = selectors.DefaultSelector()
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port)); srv.listen(4096); srv.setblocking(False)
sel.register(srv, selectors.EVENT_READ, None)
while True:
    for key, _ in sel.select():
        if key.data is None:
            try:
                while True:
                    c, _ = srv.accept(); c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, b"")
            except OSError:
                pass
            continue
        c = key.fileobj
        try:
            d = c.recv(65536)
        except OSError:
            d = b""
        if not d:
            sel.unregister(c); c.close(); continue
        if b"RST\n" in d:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sel.unregister(c); c.close(); continue
        lines = (key.data + d).split(b"\n")
        sel.modify(c, selectors.EVENT_READ, lines.pop())
        out = b"".join(name + b": " + l + b"\n" for l in lines)
        try:
            c.sendall(out)
        except OSError:
            pass
"#;

struct Node {
    lab: Lab,
}

const BACKENDS: [&str; 3] = ["198.51.100.11:6001", "198.51.100.12:6001", "198.51.100.13:6001"];

/// fe1 (the vipd node), a client, three echo backends.
fn node(tag: &str) -> Node {
    let mut lab = Lab::new(tag);
    lab.add_host("fe1", &["192.0.2.1/24", "198.51.100.1/24"]);
    lab.add_host("client", &["192.0.2.50/24"]);
    for i in 1..=3 {
        let ns = lab.add_host(&format!("be{i}"), &[&format!("198.51.100.1{i}/24")]);
        lab.spawn(
            &format!("be{i}"),
            &ns,
            &["python3", "-c", ECHO, &format!("be{i}"), "6001"],
        );
    }
    Node { lab }
}

impl Node {
    fn sock(&self) -> String {
        self.lab.dir.join("fe1.sock").display().to_string()
    }
    /// Start vipd on fe1 (under `prefix`, e.g. prlimit) with one TCP virtual
    /// server `echo` on VIP:6001 to the three backends, `extra` keys added.
    fn start(&mut self, prefix: &[&str], extra: &str) {
        let reals: Vec<String> = BACKENDS.iter().map(|a| format!("  {{ address = \"{a}\" }},")).collect();
        let cfg = format!(
            "[global]\ncontrol_socket = \"{}\"\n\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 150\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}/24\"]\n\n[virtual_server.echo]\nlisten = \"{VIP}:6001\"\nvrrp_instance = \"VI_1\"\nconnect_timeout = \"1s\"\n{extra}\nreal_server = [\n{}\n]\n",
            self.sock(),
            reals.join("\n")
        );
        let path = self.lab.dir.join("fe1.toml");
        std::fs::write(&path, cfg).unwrap();
        let ns = self.lab.ns("fe1");
        let path = path.display().to_string();
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.extend_from_slice(&[VIPD, "-c", &path, "--log", "info"]);
        self.lab.spawn("fe1", &ns, &argv);
    }
    fn status(&self) -> Option<Value> {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.lab.ns("fe1"),
            VIPCTL,
            "--socket",
            &self.sock(),
            "status",
            "--json",
        ]);
        serde_json::from_slice(&out.stdout).ok()
    }
    fn vs(&self) -> Value {
        self.status().expect("status")["virtual_servers"][0].clone()
    }
    fn vipctl(&self, args: &[&str]) -> std::process::Output {
        let ns = self.lab.ns("fe1");
        let sock = self.sock();
        let mut argv = vec!["ip", "netns", "exec", &ns, VIPCTL, "--socket", &sock];
        argv.extend_from_slice(args);
        run(&argv)
    }
    fn healths(&self) -> Vec<String> {
        self.status()
            .and_then(|st| {
                st["virtual_servers"][0]["backends"].as_array().map(|bs| {
                    bs.iter()
                        .map(|b| b["health"].as_str().unwrap_or("").to_string())
                        .collect()
                })
            })
            .unwrap_or_default()
    }
    fn wait_all_up(&self) {
        poll_until(
            "serving with all backends up",
            Duration::from_secs(15),
            Duration::from_millis(50),
            || {
                let st = self.status()?;
                let vs = &st["virtual_servers"][0];
                let h = self.healths();
                (vs["serving"] == true && h.len() == 3 && h.iter().all(|x| x == "up")).then_some(())
            },
        );
    }
    /// Run `script` in the client namespace as a lab process; returns when
    /// its log has a line starting with `until`.
    fn client(&mut self, label: &str, script: &str, until: &str, limit: Duration) -> String {
        let ns = self.lab.ns("client");
        self.lab.spawn(label, &ns, &["python3", "-u", "-c", script]);
        poll_until(
            &format!("client {label}: {until}"),
            limit,
            Duration::from_millis(50),
            || {
                let log = self.lab.log(label);
                log.lines().any(|l| l.starts_with(until)).then_some(log)
            },
        )
        .0
    }
    fn go(&self, name: &str) {
        std::fs::write(self.lab.dir.join(name), b"go").expect("go file");
    }
    fn go_path(&self, name: &str) -> String {
        self.lab.dir.join(name).display().to_string()
    }
}

/// A client holding `n` echo streams to VIP:6001 (each checked by one echo),
/// then making `fresh` new one-line connections, then checking every held
/// stream once more; prints HELD/NEW/ALIVE lines, waits for `go`, exits.
/// Bounded: stops opening streams after 40 s.
fn holder(n: usize, fresh: usize, go: &str) -> String {
    format!(
        r#"
import os, resource, socket, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
t0 = time.time()
held, failed = [], 0
for i in range({n}):
    if time.time() - t0 > 40: failed += 1; continue
    try:
        s = socket.create_connection(("{VIP}", 6001), timeout=2); s.settimeout(2)
        s.sendall(b"h%d\n" % i)
        if s.recv(100): held.append(s)
        else: failed += 1; s.close()
    except OSError:
        failed += 1
print("HELD", len(held), "FAILED", failed, flush=True)
ok = 0
for i in range({fresh}):
    try:
        s = socket.create_connection(("{VIP}", 6001), timeout=2); s.settimeout(2)
        s.sendall(b"n\n"); ok += bool(s.recv(100)); s.close()
    except OSError:
        pass
print("NEW", ok, flush=True)
alive = 0
for s in held:
    try:
        s.sendall(b"again\n"); alive += bool(s.recv(100))
    except OSError:
        pass
print("ALIVE", alive, flush=True)
for _ in range(1200):
    if os.path.exists("{go}"): break
    time.sleep(0.05)
"#
    )
}

fn field(log: &str, key: &str) -> i64 {
    log.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(key)).then(|| w.next().and_then(|x| x.parse().ok()))?
        })
        .unwrap_or(-1)
}

/// Issue 8, row 1: started as systemd starts a service (soft fd limit 1024),
/// vipd raises its limit and holds 1500 streams (3000 fds) while new
/// connections are served and no backend is ejected.
#[test]
fn soft_fd_limit_1024_holds_1500_streams_and_keeps_serving() {
    let _g = netns_lock();
    let mut n = node("tfd");
    n.start(
        &["prlimit", "--nofile=1024:4096"],
        "check = { type = \"tcp\", interval = \"500ms\", timeout = \"300ms\", rise = 1, fall = 2 }",
    );
    n.wait_all_up();
    let go = n.go_path("go");
    let log = n.client("hold", &holder(1500, 50, &go), "ALIVE", Duration::from_secs(90));
    let vs = n.vs();
    n.go("go");
    assert_eq!(field(&log, "HELD"), 1500, "{log}");
    assert_eq!(field(&log, "NEW"), 50, "{log}");
    assert_eq!(field(&log, "ALIVE"), 1500, "{log}");
    assert!(vs["active_connections"].as_u64().unwrap_or(0) >= 1500, "{vs}");
    assert_eq!(vs["rejected_connections"], 0, "{vs}");
    for b in vs["backends"].as_array().unwrap() {
        assert_eq!(b["health"], "up", "{b}");
        assert_eq!(b["failed_connects"], 0, "{b}");
    }
    assert!(n.lab.log("fe1").contains("proxied TCP connections"), "capacity logged");
}

/// Beyond `max_connections` new clients are reset at once and counted by
/// cause; the held streams and the service go on.
#[test]
fn connection_cap_refuses_counts_and_keeps_serving() {
    let _g = netns_lock();
    let mut n = node("tcap");
    n.start(
        &[],
        "max_connections = 20\ncheck = { type = \"tcp\", interval = \"500ms\", timeout = \"300ms\", rise = 1, fall = 2 }",
    );
    n.wait_all_up();
    let go = n.go_path("go");
    // 25 streams: 20 held, 5 refused; the 3 fresh ones are refused too.
    let log = n.client("hold", &holder(25, 3, &go), "ALIVE", Duration::from_secs(60));
    assert_eq!(field(&log, "HELD"), 20, "{log}");
    assert_eq!(field(&log, "NEW"), 0, "{log}");
    assert_eq!(field(&log, "ALIVE"), 20, "{log}");
    let vs = n.vs();
    assert_eq!(vs["rejected_connections"], 8, "{vs}");
    assert_eq!(vs["streams"]["rejected_at_cap"], 8, "{vs}");
    assert!(n.healths().iter().all(|h| h == "up"));
    // The holder leaves: the service takes new clients again.
    n.go("go");
    poll_until(
        "held streams closed",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (n.vs()["active_connections"] == 0).then_some(()),
    );
    let log = n.client(
        "again",
        &holder(5, 0, &n.go_path("go")),
        "ALIVE",
        Duration::from_secs(30),
    );
    assert_eq!(field(&log, "HELD"), 5, "{log}");
}

/// A connect that fails for a local reason (here: no local port left,
/// EADDRNOTAVAIL) refuses that client and is counted as a local error; no
/// backend is blamed or ejected.
#[test]
fn local_connect_error_is_not_a_backend_failure() {
    let _g = netns_lock();
    let mut n = node("tloc");
    // Ten local ports: at most ten streams per backend address.
    sh(&[
        "ip",
        "netns",
        "exec",
        &n.lab.ns("fe1"),
        "sysctl",
        "-qw",
        "net.ipv4.ip_local_port_range=40000 40009",
    ]);
    // An exec check (no network) keeps the active verdict out of the way.
    n.start(
        &[],
        "check = { type = \"exec\", command = [\"/bin/true\"], interval = \"500ms\", timeout = \"300ms\", rise = 1, fall = 2 }",
    );
    n.wait_all_up();
    let go = n.go_path("go");
    let log = n.client("hold", &holder(45, 0, &go), "ALIVE", Duration::from_secs(60));
    let held = field(&log, "HELD");
    assert!((27..=30).contains(&held), "about 10 per backend: {log}");
    let vs = n.vs();
    n.go("go");
    assert!(
        vs["streams"]["local_connect_errors"].as_u64().unwrap_or(0) >= 15,
        "{vs}"
    );
    for b in vs["backends"].as_array().unwrap() {
        assert_eq!(b["health"], "up", "{b}");
        assert_eq!(b["failed_connects"], 0, "{b}");
    }
}

/// A client holding one echo stream, then waiting (at most 20 s) for what
/// ends it: prints WHO (the backend), then RESET, EOF or TIMEOUT.
fn waiter(line: &str) -> String {
    format!(
        r#"
import socket
s = socket.create_connection(("{VIP}", 6001), timeout=3); s.settimeout(3)
s.sendall(b"hello\n")
print("WHO", s.recv(100).decode().split(":")[0], flush=True)
{line}
s.settimeout(20)
try:
    d = s.recv(100)
    print("EOF" if not d else "DATA", flush=True)
except ConnectionResetError:
    print("RESET", flush=True)
except socket.timeout:
    print("TIMEOUT", flush=True)
"#
    )
}

fn ending(log: &str) -> Option<String> {
    log.lines()
        .find(|l| matches!(*l, "RESET" | "EOF" | "DATA" | "TIMEOUT"))
        .map(str::to_string)
}

fn addr_of(who: &str) -> &'static str {
    match who {
        "be1" => BACKENDS[0],
        "be2" => BACKENDS[1],
        "be3" => BACKENDS[2],
        o => panic!("unknown backend {o:?}"),
    }
}

/// An aborted stream ends with a RST, not a FIN: on maint, and when the
/// backend resets its side.
#[test]
fn abort_resets_the_client_on_maint_and_on_backend_reset() {
    let _g = netns_lock();
    let mut n = node("trst");
    n.start(
        &[],
        "check = { type = \"tcp\", interval = \"500ms\", timeout = \"300ms\", rise = 1, fall = 2 }",
    );
    n.wait_all_up();
    // Maint: vipd aborts the stream.
    let log = n.client("maint", &waiter(""), "WHO", Duration::from_secs(10));
    let who = log.lines().find_map(|l| l.strip_prefix("WHO ")).unwrap().to_string();
    let o = n.vipctl(&["backend", "maint", "echo", addr_of(&who)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (end, took) = poll_until(
        "maint ends the stream",
        Duration::from_secs(25),
        Duration::from_millis(20),
        || ending(&n.lab.log("maint")),
    );
    assert_eq!(end, "RESET", "{}", n.lab.log("maint"));
    assert!(took < Duration::from_secs(5), "{took:?}");
    let o = n.vipctl(&["backend", "ready", "echo", addr_of(&who)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The backend resets its side: so does vipd to the client.
    n.client("brst", &waiter("s.sendall(b'RST\\n')"), "WHO", Duration::from_secs(10));
    let (end, _) = poll_until(
        "backend reset reaches the client",
        Duration::from_secs(25),
        Duration::from_millis(20),
        || ending(&n.lab.log("brst")),
    );
    assert_eq!(end, "RESET", "{}", n.lab.log("brst"));
    assert!(n.vs()["streams"]["aborted"].as_u64().unwrap_or(0) >= 2);
}

/// `on_marked_down = "shutdown"`: a backend black-holed mid-stream is marked
/// down by its checks and its streams are reset at once, instead of hanging
/// until the idle timeout.
#[test]
fn on_marked_down_shutdown_resets_streams_to_a_blackholed_backend() {
    let _g = netns_lock();
    let mut n = node("tmd");
    n.start(
        &[],
        "on_marked_down = \"shutdown\"\ncheck = { type = \"tcp\", interval = \"300ms\", timeout = \"200ms\", rise = 1, fall = 2 }",
    );
    n.wait_all_up();
    let log = n.client("stream", &waiter(""), "WHO", Duration::from_secs(10));
    let who = log.lines().find_map(|l| l.strip_prefix("WHO ")).unwrap().to_string();
    n.lab.set_link(&who, false);
    let (end, took) = poll_until(
        "the stream to the black hole ends",
        Duration::from_secs(25),
        Duration::from_millis(20),
        || ending(&n.lab.log("stream")),
    );
    assert_eq!(end, "RESET", "{}", n.lab.log("stream"));
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(n.lab.log("fe1").contains("resetting its streams"));
}

/// `client_first_byte_timeout`: the backend connection waits for the
/// client's first byte; a silent client is closed and never reaches a
/// backend; a talking one is served.
#[test]
fn silent_client_ties_up_no_backend_connection() {
    let _g = netns_lock();
    let mut n = node("tfb");
    n.start(
        &[],
        "client_first_byte_timeout = \"500ms\"\ncheck = { type = \"exec\", command = [\"/bin/true\"], interval = \"500ms\", timeout = \"300ms\", rise = 1, fall = 2 }",
    );
    n.wait_all_up();
    let script = format!(
        r#"
import socket, time
silent = [socket.create_connection(("{VIP}", 6001), timeout=3) for _ in range(5)]
t = time.time()
for s in silent:
    s.settimeout(5)
    try:
        print("SILENT", "EOF" if not s.recv(10) else "DATA", flush=True)
    except OSError as e:
        print("SILENT", type(e).__name__, flush=True)
print("WAITED", round(time.time() - t, 1), flush=True)
s = socket.create_connection(("{VIP}", 6001), timeout=3); s.settimeout(3)
s.sendall(b"hi\n"); print("TALK", s.recv(100).decode().split(":")[0], flush=True)
print("END", flush=True)
"#
    );
    let log = n.client("fb", &script, "END", Duration::from_secs(30));
    assert_eq!(log.lines().filter(|l| *l == "SILENT EOF").count(), 5, "{log}");
    assert!(log.contains("TALK be"), "{log}");
    let vs = n.vs();
    assert_eq!(vs["streams"]["first_byte_timeouts"], 5, "{vs}");
    let total: u64 = vs["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["total_connections"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 1, "only the talking client reached a backend: {vs}");
}
