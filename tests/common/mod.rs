//! Shared harness for namespace integration tests (root only).
//!
//! * `netns_lock()` serialises every namespace test across all test binaries
//!   (flock on a file in /tmp), so the 2-core CI machine runs one at a time.
//! * `Lab` owns uniquely named namespaces (prefix + PID + counter), a bridge
//!   namespace and veth links; its `Drop` kills every process it started (by
//!   PID) and deletes every namespace, also when the test panics.
//! * `poll_until` is the only way to wait: bounded in time, never a bare sleep.
#![allow(dead_code)]

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `vipctl --socket SOCK status --json` run inside `ns`: the status, or `None`
/// when no daemon answers. Exit 0 is all fine and 1 an instance in FAULT or a
/// virtual server without a healthy backend (both still a status); 2 is no daemon.
pub fn vipctl_status(ns: &str, sock: &str) -> Option<serde_json::Value> {
    let out = run(&[
        "ip",
        "netns",
        "exec",
        ns,
        env!("CARGO_BIN_EXE_vipctl"),
        "--socket",
        sock,
        "status",
        "--json",
    ]);
    if !matches!(out.status.code(), Some(0 | 1)) {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Parse config `text` (named `t.toml`); it must be refused with an error
/// that starts with `t.toml:LINE:` and mentions every one of `needles`.
pub fn bad_config(text: &str, line: usize, needles: &[&str]) {
    let err = vipd::config::parse(text, "t.toml")
        .expect_err(&format!("accepted:\n{text}"))
        .to_string();
    assert!(
        err.starts_with(&format!("t.toml:{line}:")),
        "wrong line in {err:?} (want {line})\n{text}"
    );
    for n in needles {
        assert!(err.contains(n), "{err:?} does not mention {n:?}");
    }
}

/// Fails the test clearly when not root (CI always has root).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "namespace tests need root (CI runs as root)");
}

/// Exclusive lock held for the life of the guard; serialises namespace tests.
pub struct NetnsLock(File);

pub fn netns_lock() -> NetnsLock {
    require_root();
    let f = File::create("/tmp/vipd-netns-tests.lock").expect("create lock file");
    // SAFETY: flock on a valid, owned file descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(rc, 0, "flock failed");
    NetnsLock(f)
}

/// Run a command, return its output; panics with stderr if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "command {:?} failed: {}{}",
        args,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command, return its output whatever the status.
pub fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", args))
}

/// Poll `f` every `every` until it returns `Some`, or panic after `limit`
/// with `what` in the message. Returns the value and the time it took.
pub fn poll_until<T>(what: &str, limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return (v, start.elapsed());
        }
        if start.elapsed() > limit {
            panic!("timed out after {:?} waiting for: {what}", limit);
        }
        std::thread::sleep(every);
    }
}

/// A test topology: namespaces joined by veth pairs to a bridge namespace.
pub struct Lab {
    pub prefix: String,
    /// All namespaces we created (deleted on drop).
    namespaces: Vec<String>,
    /// Processes we started (killed by PID on drop).
    children: Vec<(String, Child)>,
    pub bridge_ns: String,
    pub dir: PathBuf,
}

impl Lab {
    /// `tag` is a short test name (≤ 4 chars keeps interface names short).
    pub fn new(tag: &str) -> Lab {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("vt{}{}{}", tag, std::process::id() % 100000, n);
        let dir = std::env::temp_dir().join(format!("{prefix}.d"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir lab dir");
        let bridge_ns = format!("{prefix}-br");
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            bridge_ns: bridge_ns.clone(),
            dir,
        };
        lab.add_ns_raw(&bridge_ns);
        sh(&[
            "ip",
            "-n",
            &bridge_ns,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ]);
        // No multicast snooping: VRRP multicast must reach every port at once.
        sh(&[
            "ip",
            "-n",
            &bridge_ns,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        sh(&["ip", "-n", &bridge_ns, "link", "set", "br0", "up"]);
        lab
    }

    fn add_ns_raw(&mut self, name: &str) {
        let _ = run(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name]);
        self.namespaces.push(name.to_string());
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
    }

    /// Full namespace name for a host called `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{}", self.prefix, host)
    }

    /// Create host namespace `host` with interface `eth0` on the bridge,
    /// holding `addrs` (e.g. "192.0.2.1/24", "2001:db8::1/64"). Returns the ns name.
    pub fn add_host(&mut self, host: &str, addrs: &[&str]) -> String {
        let ns = self.ns(host);
        self.add_ns_raw(&ns);
        let idx = self.namespaces.len();
        let peer = format!("p{}", idx);
        // Create the pair inside the bridge namespace, move one end into the host.
        sh(&[
            "ip",
            "-n",
            &self.bridge_ns,
            "link",
            "add",
            &peer,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        sh(&["ip", "-n", &self.bridge_ns, "link", "set", &peer, "master", "br0"]);
        sh(&["ip", "-n", &self.bridge_ns, "link", "set", &peer, "up"]);
        // IPv6: no DAD delays on test addresses, keep link-local addresses.
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.default.accept_dad=0",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.eth0.accept_dad=0",
        ]);
        for a in addrs {
            if a.contains(':') {
                sh(&["ip", "-n", &ns, "addr", "add", a, "dev", "eth0", "nodad"]);
            } else {
                sh(&["ip", "-n", &ns, "addr", "add", a, "dev", "eth0"]);
            }
        }
        sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    /// Name of the bridge-side port of `host` (for cutting its link).
    pub fn bridge_port(&self, host: &str) -> String {
        let ns = self.ns(host);
        let idx = self.namespaces.iter().position(|n| *n == ns).expect("unknown host") + 1;
        format!("p{}", idx)
    }

    /// Cut or restore the host's link at the bridge (carrier loss on its eth0).
    pub fn set_link(&self, host: &str, up: bool) {
        let port = self.bridge_port(host);
        sh(&[
            "ip",
            "-n",
            &self.bridge_ns,
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ]);
    }

    /// Start `argv` inside namespace `ns`; stdout+stderr go to `DIR/<label>.log`.
    /// Returns the PID. The lab kills it on drop.
    pub fn spawn(&mut self, label: &str, ns: &str, argv: &[&str]) -> u32 {
        let log = self.dir.join(format!("{label}.log"));
        let f = File::options().create(true).append(true).open(&log).expect("open log");
        let f2 = f.try_clone().expect("dup log");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?}: {e}"));
        let pid = child.id();
        self.children.push((label.to_string(), child));
        pid
    }

    /// Start keepalived (VRRP only, in the foreground, logging to
    /// `DIR/<label>.log`) in `ns` with `conf` written to `DIR/<label>.conf`;
    /// `extra` goes before `--use-file` (e.g. `["-i", "node1"]`). Returns the PID.
    pub fn spawn_keepalived(&mut self, label: &str, ns: &str, conf: &str, extra: &[&str]) -> u32 {
        let path = |f: &str| self.dir.join(f).display().to_string();
        let (file, pid, vrrp_pid) = (
            path(&format!("{label}.conf")),
            path(&format!("{label}.pid")),
            path(&format!("{label}-vrrp.pid")),
        );
        std::fs::write(&file, conf).expect("write keepalived.conf");
        let mut argv = vec!["keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp"];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["--use-file", &file, "--pid", &pid, "--vrrp_pid", &vrrp_pid]);
        self.spawn(label, ns, &argv)
    }

    /// Send `sig` to a child we started (by label), and reap it if it exits
    /// within `wait`. Returns the exit status if it ended.
    pub fn signal(&mut self, label: &str, sig: i32, wait: Duration) -> Option<std::process::ExitStatus> {
        let pos = self.children.iter().position(|(l, _)| l == label)?;
        let pid = self.children[pos].1.id() as i32;
        // SAFETY: kill(2) on a PID we spawned and have not reaped yet.
        unsafe {
            libc::kill(pid, sig);
        }
        let start = Instant::now();
        loop {
            if let Ok(Some(st)) = self.children[pos].1.try_wait() {
                self.children.remove(pos);
                return Some(st);
            }
            if start.elapsed() > wait {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// PID of a child we started and have not reaped.
    pub fn pid(&self, label: &str) -> Option<u32> {
        self.children.iter().find(|(l, _)| l == label).map(|(_, c)| c.id())
    }

    /// Contents of a child's log.
    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{label}.log"))).unwrap_or_default()
    }

    /// Does `ns` hold `addr` (without prefix) on any interface?
    pub fn has_addr(&self, ns: &str, addr: &str) -> bool {
        let out = run(&["ip", "-n", ns, "-o", "addr", "show"]);
        let s = String::from_utf8_lossy(&out.stdout);
        s.split_whitespace().any(|w| w.split('/').next() == Some(addr))
    }

    /// Print every child's log (call before panicking in a failing test).
    pub fn dump_logs(&self) {
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().map(|x| x == "log").unwrap_or(false) {
                    eprintln!(
                        "===== {} =====\n{}",
                        p.display(),
                        std::fs::read_to_string(&p).unwrap_or_default()
                    );
                }
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for (_, child) in self.children.iter_mut() {
            // SAFETY: kill(2) on a PID we spawned; SIGKILL cannot be caught.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGKILL);
            }
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            // Anything left inside (e.g. a daemon's own children) dies with the namespace's last process.
            run(&["ip", "netns", "pids", ns])
                .stdout
                .split(|b| *b == b'\n')
                .filter_map(|l| std::str::from_utf8(l).ok()?.trim().parse::<i32>().ok())
                .for_each(|pid| {
                    // SAFETY: kill(2) on a process living only in our own test namespace.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                });
            let _ = run(&["ip", "netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
