//! vipd without root (root needed to set up the namespaces): run as `nobody`
//! with only CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE (ambient, as
//! the unit's User=vipd does), two nodes fail over, the balancer serving port 80
//! on the VIP from the master; the watchdog pings from
//! the protocol loop at the rate systemd asked; STATUS= follows the state; the
//! control socket lets anyone who can connect read and only root, the daemon
//! or its group change; `--log-format json` carries instance, vrid and state.
mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/backend.py");
const VIP: &str = "192.0.2.100";
const NOBODY: u32 = 65534;
/// CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
const CAPS: &str = "0000000000003400";

/// `setpriv` as the unit's User= and AmbientCapabilities= would run us.
fn as_nobody() -> Vec<String> {
    let caps = "+net_admin,+net_raw,+net_bind_service";
    vec![
        "setpriv".into(),
        "--reuid=nobody".into(),
        "--regid=nogroup".into(),
        "--init-groups".into(),
        format!("--inh-caps={caps}"),
        format!("--ambient-caps={caps}"),
        format!("--bounding-set=-all,{caps}"),
    ]
}

struct Nodes {
    lab: Lab,
    run: PathBuf,
    /// TOML appended to every node's config (a virtual server).
    extra: String,
}

fn nodes(tag: &str, n: usize) -> Nodes {
    let mut lab = Lab::new(tag);
    for i in 1..=n {
        lab.add_host(&format!("fe{i}"), &[&format!("192.0.2.{i}/24")]);
    }
    lab.add_host("client", &["192.0.2.50/24"]);
    // Where the daemons (uid nobody) create their control sockets, as /run/vipd.
    let run = lab.dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::os::unix::fs::chown(&run, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o750)).unwrap();
    // Others (uid daemon below) must reach the socket through the lab directory.
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    Nodes {
        lab,
        run,
        extra: String::new(),
    }
}

impl Nodes {
    fn sock(&self, node: &str) -> String {
        self.run.join(format!("{node}.sock")).display().to_string()
    }
    fn write_cfg(&self, node: &str, prio: u8) -> String {
        let path = self.lab.dir.join(format!("{node}.toml"));
        std::fs::write(
            &path,
            format!(
                "[global]\nrouter_id = \"{node}\"\ncontrol_socket = \"{}\"\n\n[vrrp_instance.VI_1]\n\
                 interface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\nadvert_int = 0.1\n\
                 virtual_ipaddress = [\"{VIP}/24\"]\n{}",
                self.sock(node),
                self.extra
            ),
        )
        .unwrap();
        path.display().to_string()
    }
    /// Start `node` as nobody; `env` goes before setpriv (NOTIFY_SOCKET...).
    fn start(&mut self, node: &str, prio: u8, env: &[String], extra: &[&str]) -> u32 {
        let cfg = self.write_cfg(node, prio);
        let mut argv: Vec<String> = vec!["env".into()];
        argv.extend(env.iter().cloned());
        argv.extend(as_nobody());
        argv.extend([VIPD.into(), "-c".into(), cfg, "--log".into(), "debug".into()]);
        argv.extend(extra.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ns = self.lab.ns(node);
        self.lab.spawn(node, &ns, &argv)
    }
    fn holders(&self) -> Vec<String> {
        ["fe1", "fe2"]
            .into_iter()
            .filter(|n| self.lab.has_addr(&self.lab.ns(n), VIP))
            .map(String::from)
            .collect()
    }
    fn wait_holder(&self, who: &str, limit: Duration) {
        poll_until(
            &format!("{who} alone holds {VIP}"),
            limit,
            Duration::from_millis(10),
            || (self.holders() == [who]).then_some(()),
        );
    }
    fn status(&self, node: &str) -> Option<Value> {
        let out = run(&[VIPCTL, "--socket", &self.sock(node), "status", "--json"]);
        // 0: all fine, 1: FAULT or no healthy backend (still a status); 2: no daemon.
        matches!(out.status.code(), Some(0 | 1))
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }
}

/// The uid, ambient and effective capabilities of a process.
fn creds(pid: u32) -> (String, String, String) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    (field("Uid:"), field("CapEff:"), field("CapAmb:"))
}

/// A NOTIFY_SOCKET the daemon (uid nobody) may write to.
fn notify_socket(dir: &Path, name: &str) -> (UnixDatagram, String) {
    let path = dir.join(name);
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    (sock, format!("NOTIFY_SOCKET={}", path.display()))
}

/// Every notify message that arrives within `span`.
fn collect(sock: &UnixDatagram, span: Duration) -> Vec<(Instant, String)> {
    let mut got = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < span {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    }
    got
}

/// Read notify messages until one satisfies `f`, within `limit`.
fn wait_for(sock: &UnixDatagram, limit: Duration, what: &str, f: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while start.elapsed() < limit {
        if let Ok(n) = sock.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if f(&m) {
                return m;
            }
            seen.push(m);
        }
    }
    panic!("no notify message {what} within {limit:?}; got {seen:?}");
}

#[test]
fn nonroot_nodes_fail_over_with_watchdog_and_status() {
    let _g = netns_lock();
    let mut n = nodes("nr", 2);
    // The balancer too: a privileged port (CAP_NET_BIND_SERVICE) on the VIP.
    let be = n.lab.add_host("be1", &["192.0.2.60/24"]);
    n.lab.spawn("be1", &be, &["python3", BACKEND, "be1", "6000", "8686"]);
    n.extra = "\n[virtual_server.web]\nlisten = \"192.0.2.100:80\"\nvrrp_instance = \"VI_1\"\n\
               check = { type = \"tcp\", interval = \"200ms\", rise = 1, fall = 2 }\n\
               real_server = [{ address = \"192.0.2.60:6000\" }]\n"
        .to_string();
    let (fe2_notify, fe2_env) = notify_socket(&n.lab.dir, "fe2.notify");
    // Ping every 200 ms: systemd's WATCHDOG_USEC / 2.
    n.start("fe1", 150, &[], &[]);
    n.start("fe2", 100, &[fe2_env, "WATCHDOG_USEC=400000".into()], &[]);
    n.wait_holder("fe1", Duration::from_secs(10));
    for node in ["fe1", "fe2"] {
        let pid = n.lab.pid(node).expect("running");
        let (uid, eff, amb) = creds(pid);
        assert_eq!(
            (uid.as_str(), eff.as_str(), amb.as_str()),
            ("65534", CAPS, CAPS),
            "{node} runs as nobody with the three capabilities only"
        );
        let meta = std::fs::metadata(n.sock(node)).expect("control socket");
        assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (NOBODY, 0o660));
    }
    let st = n.status("fe2").expect("root reads fe2's status");
    assert_eq!(st["instances"][0]["state"], "backup");
    let served = fetch_vip(&n, Duration::from_secs(10));
    assert!(served.starts_with("be1 via 192.0.2.1"), "{served}");
    // STATUS= carries the summary; WATCHDOG=1 comes at the rate asked.
    wait_for(&fe2_notify, Duration::from_secs(5), "STATUS backup", |m| {
        m.starts_with("STATUS=VI_1 BACKUP prio 100; web ")
    });
    let msgs = collect(&fe2_notify, Duration::from_secs(3));
    let pings: Vec<Instant> = msgs
        .iter()
        .filter(|(_, m)| m == "WATCHDOG=1")
        .map(|(t, _)| *t)
        .collect();
    // 15 expected; generous bounds for a loaded 2-core machine, still far from
    // "no pings" (a loop that never pings) and from a ping per event.
    assert!(
        (8..=20).contains(&pings.len()),
        "{} WATCHDOG=1 in 3 s at a 200 ms period: {msgs:?}",
        pings.len()
    );
    let worst = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(worst < Duration::from_millis(800), "a gap of {worst:?} between pings");
    // A planned stop as nobody: priority 0, VIP removed by netlink, exit 0.
    let st = n
        .lab
        .signal("fe1", libc::SIGTERM, Duration::from_secs(10))
        .expect("fe1 exits");
    assert!(st.success(), "fe1 exit status {st:?}");
    n.wait_holder("fe2", Duration::from_secs(5));
    wait_for(&fe2_notify, Duration::from_secs(5), "STATUS master", |m| {
        m == "STATUS=VI_1 MASTER prio 100; web 1/1 backends up"
    });
    let served = fetch_vip(&n, Duration::from_secs(10));
    assert!(served.starts_with("be1 via 192.0.2.2"), "{served}");
    // promote_secondaries: set through rtnetlink with CAP_NET_ADMIN, restored on exit.
    assert!(
        n.lab.log("fe1").contains("eth0: promote_secondaries set (was 0)"),
        "{}",
        n.lab.log("fe1")
    );
    let ps = sh(&[
        "ip",
        "netns",
        "exec",
        &n.lab.ns("fe1"),
        "cat",
        "/proc/sys/net/ipv4/conf/eth0/promote_secondaries",
    ]);
    assert_eq!(ps.trim(), "0", "restored by fe1 on exit");
    let log = n.lab.log("fe1") + &n.lab.log("fe2");
    for bad in [
        "Operation not permitted",
        "Permission denied",
        "cannot raise the fd limit",
    ] {
        assert!(!log.contains(bad), "{bad:?} in the logs:\n{log}");
    }
}

/// One answer of the backend through VIP:80 from the client ("be1 via FRONT").
fn fetch_vip(n: &Nodes, limit: Duration) -> String {
    let get =
        "import socket\ns = socket.create_connection(('192.0.2.100', 80), 2)\nprint(s.recv(200).decode().strip())";
    let client = n.lab.ns("client");
    let (line, _) = poll_until(
        "an answer through 192.0.2.100:80",
        limit,
        Duration::from_millis(100),
        || {
            let out = run(&["ip", "netns", "exec", &client, "python3", "-c", get]);
            let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (out.status.success() && !line.is_empty()).then_some(line)
        },
    );
    line
}

/// Run vipctl as uid `daemon` (not nobody, not root), with `groups` as its
/// supplementary groups.
fn vipctl_as_daemon(sock: &str, groups: &str, args: &[&str]) -> std::process::Output {
    let g = if groups.is_empty() {
        "--clear-groups".to_string()
    } else {
        format!("--groups={groups}")
    };
    let mut argv = vec![
        "setpriv",
        "--reuid=daemon",
        "--regid=daemon",
        &g,
        VIPCTL,
        "--socket",
        sock,
    ];
    argv.extend_from_slice(args);
    run(&argv)
}

#[test]
fn control_socket_changes_need_root_the_daemon_or_its_group_and_json_logs() {
    let _g = netns_lock();
    let mut n = nodes("nrc", 1);
    n.start("fe1", 150, &[], &["--log-format", "json"]);
    poll_until(
        "fe1 holds the VIP",
        Duration::from_secs(10),
        Duration::from_millis(10),
        || n.lab.has_addr(&n.lab.ns("fe1"), VIP).then_some(()),
    );
    let sock = n.sock("fe1");
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // 0660 nobody:nogroup: another user cannot even connect.
    let out = vipctl_as_daemon(&sock, "", &["status"]);
    assert!(
        !out.status.success() && stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    // Opened to everyone (as an operator may for monitoring): status reads,
    // a change is refused with a reason and counted.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = vipctl_as_daemon(&sock, "", &["status"]);
    assert!(out.status.success(), "status as uid daemon: {}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("VI_1"));
    let out = vipctl_as_daemon(&sock, "", &["reload"]);
    assert!(!out.status.success(), "reload as uid daemon must be refused");
    let err = stderr(&out);
    assert!(
        err.contains("permission denied: `reload` changes the daemon") && err.contains("you are uid 1 gid 1"),
        "{err}"
    );
    let out = vipctl_as_daemon(&sock, "", &["backend", "drain", "x", "198.51.100.1:80"]);
    assert!(
        stderr(&out).contains("permission denied: `backend`"),
        "{}",
        stderr(&out)
    );
    // A member of the socket's group (a supplementary group: SO_PEERGROUPS) may.
    let out = vipctl_as_daemon(&sock, "65534", &["reload"]);
    assert!(out.status.success(), "reload as a member of nogroup: {}", stderr(&out));
    let out = run(&[VIPCTL, "--socket", &sock, "reload"]);
    assert!(out.status.success(), "reload as root: {}", stderr(&out));
    let st = n.status("fe1").expect("status");
    assert_eq!(st["control_requests_denied"], 2);
    assert_eq!(st["reloads"], 2);
    // --log-format json: one object per line, the transition with its fields.
    let log = n.lab.log("fe1");
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let t = lines
        .iter()
        .find(|v| v["state"] == "master")
        .unwrap_or_else(|| panic!("no transition with state=master in {log}"));
    assert_eq!(
        (t["instance"].as_str(), t["vrid"].as_u64(), t["level"].as_str()),
        (Some("VI_1"), Some(51), Some("INFO"))
    );
    assert!(t["message"].as_str().unwrap_or("").contains("-> master"), "{t}");
    assert!(t["timestamp"].is_string());
}

/// The fields of one journald native-protocol datagram: `KEY=value\n`, or
/// `KEY\n` + 64-bit little-endian length + value + `\n`.
fn journal_fields(mut b: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while let Some(nl) = b.iter().position(|&c| c == b'\n') {
        let line = &b[..nl];
        if let Some(eq) = line.iter().position(|&c| c == b'=') {
            let kv = (&line[..eq], &line[eq + 1..]);
            out.push((
                String::from_utf8_lossy(kv.0).into(),
                String::from_utf8_lossy(kv.1).into(),
            ));
            b = &b[nl + 1..];
        } else {
            let rest = &b[nl + 1..];
            let Some(len) = rest
                .get(..8)
                .map(|l| u64::from_le_bytes(l.try_into().unwrap()) as usize)
            else {
                break;
            };
            let Some(val) = rest.get(8..8 + len) else { break };
            out.push((
                String::from_utf8_lossy(line).into(),
                String::from_utf8_lossy(val).into(),
            ));
            b = rest.get(8 + len + 1..).unwrap_or(&[]);
        }
    }
    out
}

/// Under systemd (JOURNAL_STREAM names our stderr) vipd logs natively to the
/// journal with INSTANCE, VRID and STATE fields. The journal here is a socket
/// the test binds, mounted over /run/systemd/journal in vipd's own mount
/// namespace; the host's /run is not touched.
#[test]
fn journald_fields_when_stderr_is_the_journal() {
    let _g = netns_lock();
    let mut n = nodes("nrj", 1);
    let jdir = n.lab.dir.join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    let journal = UnixDatagram::bind(jdir.join("socket")).expect("bind the fake journal");
    std::fs::set_permissions(jdir.join("socket"), std::fs::Permissions::from_mode(0o666)).unwrap();
    journal.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    // vipd's stderr is the lab's log file: JOURNAL_STREAM names that file, as
    // systemd names the stream it connects to stderr.
    let log = n.lab.dir.join("fe1.log");
    std::fs::File::create(&log).unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("JOURNAL_STREAM={}:{}", meta.dev(), meta.ino());
    let cfg = n.write_cfg("fe1", 150);
    let mount = "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && \
                 mount --bind \"$0\" /run/systemd/journal && exec \"$@\"";
    let mut argv: Vec<String> = vec![
        "unshare".into(),
        "-m".into(),
        "sh".into(),
        "-c".into(),
        mount.into(),
        jdir.display().to_string(),
        "env".into(),
        stream,
    ];
    argv.extend(as_nobody());
    argv.extend([VIPD.into(), "-c".into(), cfg]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let ns = n.lab.ns("fe1");
    n.lab.spawn("fe1", &ns, &argv);
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    let mut seen = Vec::new();
    let entry = loop {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no journal entry with STATE=master in 10 s: {seen:?}\nstderr: {}",
            n.lab.log("fe1")
        );
        if let Ok(len) = journal.recv(&mut buf) {
            let e = journal_fields(&buf[..len]);
            if e.iter().any(|(k, v)| k == "STATE" && v == "master") {
                break e;
            }
            seen.push(e);
        }
    };
    let get = |key: &str| entry.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    assert_eq!(
        (get("INSTANCE"), get("VRID"), get("PRIORITY"), get("SYSLOG_IDENTIFIER")),
        (Some("VI_1"), Some("51"), Some("6"), Some("vipd")),
        "{entry:?}"
    );
    assert!(get("MESSAGE").unwrap_or("").contains("-> master"), "{entry:?}");
    // The journal got it, so stderr did not.
    assert!(!n.lab.log("fe1").contains("-> master"), "{}", n.lab.log("fe1"));
}

/// `promote_secondaries` of `ifname` in `node`'s namespace, read from outside vipd's mounts.
fn promote_secondaries(n: &Nodes, node: &str, ifname: &str) -> String {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/promote_secondaries");
    sh(&["ip", "netns", "exec", &n.lab.ns(node), "cat", &path])
        .trim()
        .to_string()
}

/// Under the unit (`ProtectKernelTunables=yes`) /proc/sys is read-only: vipd
/// still sets `promote_secondaries` on its interface (through rtnetlink) and
/// puts the old value back when it stops. Here /proc/sys is bound read-only in
/// vipd's own mount namespace, after checking that a write through it fails.
#[test]
fn promote_secondaries_set_and_restored_with_proc_sys_read_only() {
    let _g = netns_lock();
    let mut n = nodes("nrps", 1);
    assert_eq!(promote_secondaries(&n, "fe1", "eth0"), "0", "the kernel's default");
    let cfg = n.write_cfg("fe1", 150);
    let ro = "mount --bind -o ro /proc/sys /proc/sys && \
              ! (echo 1 > /proc/sys/net/ipv4/conf/eth0/promote_secondaries) 2>/dev/null && \
              exec \"$0\" \"$@\"";
    let mut argv: Vec<String> = vec![
        "unshare".into(),
        "--mount".into(),
        "--propagation".into(),
        "private".into(),
        "sh".into(),
        "-c".into(),
        ro.into(),
    ];
    argv.extend(as_nobody());
    argv.extend([VIPD.into(), "-c".into(), cfg, "--log".into(), "debug".into()]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let ns = n.lab.ns("fe1");
    n.lab.spawn("fe1", &ns, &argv);
    n.wait_holder("fe1", Duration::from_secs(10));
    poll_until(
        "promote_secondaries=1 on fe1's eth0",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || (promote_secondaries(&n, "fe1", "eth0") == "1").then_some(()),
    );
    let st = n
        .lab
        .signal("fe1", libc::SIGTERM, Duration::from_secs(10))
        .expect("fe1 exits");
    assert!(st.success(), "fe1 exit status {st:?}\n{}", n.lab.log("fe1"));
    assert_eq!(
        promote_secondaries(&n, "fe1", "eth0"),
        "0",
        "restored on exit\n{}",
        n.lab.log("fe1")
    );
    assert!(
        n.lab.log("fe1").contains("eth0: promote_secondaries set (was 0)"),
        "{}",
        n.lab.log("fe1")
    );
}
