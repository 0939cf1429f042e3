//! Namespace tests of UDP virtual servers under faults (root): a black-holed
//! backend, drain, a flood of forged sources, a second binder on the VIP
//! port, and the per-virtual-server drop counters.
//! Topology: client 192.0.2.50 — node fe1 (VIP 192.0.2.100, 198.51.100.1) —
//! backends 198.51.100.11-13 running scripts/backend.py (UDP echo on 6000).

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const BACKEND: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/backend.py");
const VIP: &str = "192.0.2.100";

struct Udp {
    lab: Lab,
}

/// One front node, a client, three backends; vipd started with `extra` keys
/// in the UDP virtual server. vipd inherits the test's fd limit (20 000 on
/// our machines): the flow table's own cap is what must bound its fds.
fn udp_lab(tag: &str, extra: &str) -> Udp {
    let mut lab = Lab::new(tag);
    let fe = lab.add_host("fe1", &["192.0.2.1/24", "198.51.100.1/24"]);
    lab.add_host("client", &["192.0.2.50/24"]);
    for i in 1..=3 {
        let a = format!("198.51.100.1{i}/24");
        let ns = lab.add_host(&format!("be{i}"), &[&a]);
        let name = format!("be{i}");
        lab.spawn(&name, &ns, &["python3", BACKEND, &name, "6000", "8686"]);
    }
    // Forged sources arrive on eth0 with no route back: accept them anyway.
    for k in ["all", "default", "eth0"] {
        sh(&[
            "ip",
            "netns",
            "exec",
            &fe,
            "sysctl",
            "-qw",
            &format!("net.ipv4.conf.{k}.rp_filter=0"),
        ]);
    }
    let sock = lab.dir.join("fe1.sock").display().to_string();
    let cfg = format!(
        "[global]\ncontrol_socket = \"{sock}\"\n\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 150\nadvert_int = 0.1\nvirtual_ipaddress = [\"{VIP}/24\"]\n\n[virtual_server.syslog]\nlisten = \"{VIP}:6000\"\nprotocol = \"udp\"\nlb_algo = \"rr\"\nvrrp_instance = \"VI_1\"\ncheck = {{ type = \"tcp\", port = 6000, interval = \"300ms\", timeout = \"200ms\", rise = 1, fall = 2 }}\nreal_server = [\n  {{ address = \"198.51.100.11:6000\" }},\n  {{ address = \"198.51.100.12:6000\" }},\n  {{ address = \"198.51.100.13:6000\" }},\n]\n{extra}\n"
    );
    let path = lab.dir.join("fe1.toml");
    std::fs::write(&path, cfg).expect("write config");
    lab.spawn("fe1", &fe, &[VIPD, "-c", &path.display().to_string(), "--log", "info"]);
    let u = Udp { lab };
    poll_until(
        "vipd serving with all backends up",
        Duration::from_secs(15),
        Duration::from_millis(50),
        || {
            let st = u.status()?;
            let vs = &st["virtual_servers"][0];
            let bs = vs["backends"].as_array()?;
            (vs["serving"] == true && bs.len() == 3 && bs.iter().all(|b| b["health"] == "up")).then_some(())
        },
    );
    u
}

impl Udp {
    fn vipctl(&self, args: &[&str]) -> std::process::Output {
        let ns = self.lab.ns("fe1");
        let sock = self.lab.dir.join("fe1.sock").display().to_string();
        let mut argv = vec!["ip", "netns", "exec", &ns, VIPCTL, "--socket", &sock];
        argv.extend_from_slice(args);
        run(&argv)
    }
    fn status(&self) -> Option<Value> {
        serde_json::from_slice(&self.vipctl(&["status", "--json"]).stdout).ok()
    }
    fn vs_counter(&self, key: &str) -> u64 {
        self.status()
            .and_then(|s| s["virtual_servers"][0][key].as_u64())
            .unwrap_or(0)
    }
    fn health(&self, addr: &str) -> String {
        self.status()
            .and_then(|s| {
                s["virtual_servers"][0]["backends"]
                    .as_array()?
                    .iter()
                    .find(|b| b["address"] == addr)
                    .map(|b| b["health"].as_str().unwrap_or("").to_string())
            })
            .unwrap_or_default()
    }
    /// `n` one-datagram flows from fresh client sockets: who answered each.
    fn one_shot_flows(&self, n: usize) -> Vec<String> {
        let script = format!(
            "import socket\nfor i in range({n}):\n    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(1.0)\n    u.sendto(b'm', ('{VIP}', 6000))\n    try:\n        print(u.recv(200).decode().split(':')[0])\n    except OSError:\n        print('none')\n    u.close()\n"
        );
        sh(&["ip", "netns", "exec", &self.lab.ns("client"), "python3", "-c", &script])
            .lines()
            .map(str::to_string)
            .collect()
    }
    /// A syslog-like sender (a lab process): one fixed source port, a datagram
    /// every 50 ms for `secs`, each answer logged as "<seq> <backend>".
    fn start_sender(&mut self, secs: u32) {
        let script = format!(
            "import socket, time\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0', 5514)); u.settimeout(0.05)\nend = time.time() + {secs}\ni = 0\nwhile time.time() < end:\n    u.sendto(b'%d' % i, ('{VIP}', 6000)); i += 1\n    try:\n        d = u.recv(200).decode()\n        print(d.split(': ')[1], d.split(':')[0], flush=True)\n    except OSError:\n        pass\n    time.sleep(0.05)\n"
        );
        let ns = self.lab.ns("client");
        self.lab.spawn("sender", &ns, &["python3", "-u", "-c", &script]);
    }
    /// The sender's answers so far: (seq, backend).
    fn answers(&self) -> Vec<(u64, String)> {
        self.lab
            .log("sender")
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                Some((w.next()?.parse().ok()?, w.next()?.to_string()))
            })
            .collect()
    }
    /// Wait for `n` more answers than `after`, return all answers.
    fn more_answers(&self, after: usize, n: usize, limit: Duration) -> Vec<(u64, String)> {
        poll_until(
            &format!("{n} more answers to the sender"),
            limit,
            Duration::from_millis(20),
            || {
                let a = self.answers();
                (a.len() >= after + n).then_some(a)
            },
        )
        .0
    }
    fn vipd_pid(&self) -> u32 {
        // `ip netns exec` execs vipd: same PID.
        self.lab.pid("fe1").expect("vipd running")
    }
}

fn be_addr(name: &str) -> String {
    format!("198.51.100.1{}:6000", &name[2..])
}

/// Drain keeps a sender's flow where it is (as IPVS and HAProxy do) while new
/// flows avoid the drained backend; once active checks mark it down (black
/// hole: packets dropped, no ICMP), the same sender's flow moves to a healthy
/// backend within a few check intervals.
#[test]
fn drain_keeps_the_flow_and_a_black_hole_moves_it() {
    let _g = netns_lock();
    let mut u = udp_lab("ubh", "");
    u.start_sender(45);
    let a = u.more_answers(0, 3, Duration::from_secs(10));
    let who = a.last().unwrap().1.clone();
    let addr = be_addr(&who);

    let o = u.vipctl(&["backend", "drain", "syslog", &addr]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let n = u.answers().len();
    let a = u.more_answers(n, 10, Duration::from_secs(10));
    assert!(
        a[n..].iter().all(|(_, b)| *b == who),
        "drain keeps the existing flow on {who}: {:?}",
        &a[n..]
    );
    let fresh = u.one_shot_flows(6);
    assert!(
        fresh.iter().all(|b| *b != who && b != "none"),
        "new flows avoid the drained {who}: {fresh:?}"
    );

    // Black hole: the backend drops everything (its checks time out), no ICMP.
    let be_ns = u.lab.ns(&who);
    let rules = "add table inet bh\nadd chain inet bh in { type filter hook input priority 0; policy drop; }\n";
    let rules_path = u.lab.dir.join("bh.nft");
    std::fs::write(&rules_path, rules).expect("rules");
    sh(&[
        "ip",
        "netns",
        "exec",
        &be_ns,
        "nft",
        "-f",
        &rules_path.display().to_string(),
    ]);
    poll_until(
        &format!("{addr} down"),
        Duration::from_secs(10),
        Duration::from_millis(20),
        || (u.health(&addr) == "down").then_some(()),
    );
    let n = u.answers().len();
    let a = u.more_answers(n, 5, Duration::from_secs(5));
    assert!(
        a[n..].iter().all(|(_, b)| *b != who),
        "the sender's flow left the black-holed {who}: {:?}",
        &a[n..]
    );
}

/// 30 000 forged sources (raw IP_HDRINCL datagrams from 203.0.113.0/24, each
/// sent twice) do not stop an established sender, and vipd's open fds stay
/// under the flow table's cap (`udp_max_flows = 2000`) plus a margin, its RSS
/// under a fixed bound.
#[test]
fn forged_source_flood_keeps_the_sender_and_bounds_fds() {
    let _g = netns_lock();
    let mut u = udp_lab("ufl", "udp_max_flows = 2000\n");
    let pid = u.vipd_pid();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let rss_kb = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    u.start_sender(50);
    u.more_answers(0, 5, Duration::from_secs(10));
    let (fd0, rss0) = (fds(), rss_kb());
    let flood = format!(
        "import socket, struct, time\ns = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)\ns.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)\ndst = socket.inet_aton('{VIP}')\nn = 0\nfor rnd in range(2):\n  for port in range(20000, 20000 + 120):\n    for host in range(1, 251):\n        src = socket.inet_aton('203.0.113.%d' % host)\n        payload = b'forged'\n        udp = struct.pack('!HHHH', port, 6000, 8 + len(payload), 0) + payload\n        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)\n        try:\n            s.sendto(ip + udp, ('{VIP}', 0)); n += 1\n        except OSError:\n            time.sleep(0.001)\n        if n % 200 == 0:\n            time.sleep(0.005)\nprint(n)\n"
    );
    let client = u.lab.ns("client");
    let mut max_fd = 0;
    let mut max_rss = 0;
    let n_before = u.answers().len();
    let out = std::thread::scope(|s| {
        let h = s.spawn(|| sh(&["ip", "netns", "exec", &client, "python3", "-c", &flood]));
        while !h.is_finished() {
            max_fd = max_fd.max(fds());
            max_rss = max_rss.max(rss_kb());
            std::thread::sleep(Duration::from_millis(50));
        }
        h.join().expect("flood thread")
    });
    let sent: u64 = out.trim().parse().expect("flood count");
    assert!(sent >= 50_000, "flood sent {sent}");
    // The sender is still answered after the flood.
    let n = u.answers().len();
    u.more_answers(n, 10, Duration::from_secs(10));
    for _ in 0..20 {
        max_fd = max_fd.max(fds());
        max_rss = max_rss.max(rss_kb());
        std::thread::sleep(Duration::from_millis(50));
    }
    let seqs: Vec<u64> = u.answers()[n_before..].iter().map(|(s, _)| *s).collect();
    let gap = seqs.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    eprintln!("fds {fd0} -> max {max_fd}; RSS {rss0} KiB -> max {max_rss} KiB; sender's longest gap {gap} datagrams");
    assert!(max_fd < 2000 + 256, "fds bounded by the flow cap: max {max_fd}");
    assert!(max_rss < rss0 + 64 * 1024, "RSS bounded: {rss0} KiB -> {max_rss} KiB");
    // 40 datagrams = 2 s without an answer at most.
    assert!(
        gap <= 40,
        "the established sender kept flowing: longest gap {gap} datagrams"
    );
    assert!(u.vs_counter("udp_flows_evicted") > 0, "evictions are counted");
}

/// The VIP socket is exclusive (no SO_REUSEADDR: a second binder with
/// SO_REUSEADDR gets EADDRINUSE), `udp_rcvbuf` sets its receive buffer, and
/// the counters move: kernel drops while vipd is stopped, datagrams dropped
/// with no backend.
#[test]
fn vip_socket_is_exclusive_and_drops_are_counted() {
    let _g = netns_lock();
    let mut u = udp_lab("uex", "udp_rcvbuf = 65536\n");
    let fe = u.lab.ns("fe1");
    let bind = format!(
        "import socket, errno\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ntry:\n    s.bind(('{VIP}', 6000)); print('bound')\nexcept OSError as e:\n    print('EADDRINUSE' if e.errno == errno.EADDRINUSE else 'other %s' % e)\n"
    );
    let out = sh(&["ip", "netns", "exec", &fe, "python3", "-c", &bind]);
    assert_eq!(out.trim(), "EADDRINUSE", "a second binder must not share the VIP port");

    // ss shows the socket's receive buffer (the kernel doubles the request).
    let ss = sh(&[
        "ip",
        "netns",
        "exec",
        &fe,
        "ss",
        "-Huanm",
        "src",
        &format!("{VIP}:6000"),
    ]);
    let rb = ss
        .split([',', '(', ')'])
        .find_map(|w| w.strip_prefix("rb")?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!((65_536..=262_144).contains(&rb), "udp_rcvbuf applied: {ss}");

    // Kernel drops: stop vipd, overrun its 64 KiB buffer, resume. The kernel
    // reports a socket's drop count on datagrams queued after the drops, and
    // each worker has its own VIP socket (the client's address picks one):
    // the same client socket sends the burst and, once vipd runs again, more.
    let pid = u.vipd_pid() as i32;
    // SAFETY: kill(2) on vipd, which this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let go = u.lab.dir.join("go");
    let burst = format!(
        "import os, socket, time\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(3000):\n    u.sendto(b'x' * 200, ('{VIP}', 6000))\nprint('burst', flush=True)\nfor _ in range(200):\n    if os.path.exists('{go}'): break\n    time.sleep(0.05)\nfor i in range(20):\n    u.sendto(b'y', ('{VIP}', 6000)); time.sleep(0.05)\nprint('done', flush=True)\n",
        go = go.display()
    );
    let client = u.lab.ns("client");
    u.lab.spawn("burst", &client, &["python3", "-u", "-c", &burst]);
    poll_until(
        "the burst sent",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || u.lab.log("burst").contains("burst").then_some(()),
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    std::fs::write(&go, b"go").expect("go file");
    poll_until(
        "kernel drops counted",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (u.vs_counter("udp_kernel_drops") > 0).then_some(()),
    );

    // No backend: every datagram dropped is counted.
    for i in 1..=3 {
        let o = u.vipctl(&["backend", "maint", "syslog", &format!("198.51.100.1{i}:6000")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let before = u.vs_counter("udp_dropped_no_backend");
    let answers = u.one_shot_flows(5);
    assert!(answers.iter().all(|a| a == "none"), "{answers:?}");
    poll_until(
        "no-backend drops counted",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (u.vs_counter("udp_dropped_no_backend") >= before + 5).then_some(()),
    );
}
