//! Namespace tests of tracking (root): real vipd processes on a bridge, real
//! scripts, files, processes and backends. A tracked process dies and the
//! backup takes the VIP; a script that overruns its timeout has its whole
//! process group killed; `user` scripts do not run as root; a track file
//! moves the priority; a virtual server losing its quorum hands the VIP over.
//! Serialised by `netns_lock()`.

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const VIP: &str = "192.0.2.100";

struct Pair {
    lab: Lab,
    nodes: Vec<(String, String)>,
}

fn lab(tag: &str, nodes: &[&str], extra_hosts: &[(&str, &str)]) -> Pair {
    let mut lab = Lab::new(tag);
    let mut v = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let a = format!("192.0.2.{}/24", i + 1);
        let ns = lab.add_host(n, &[&a]);
        v.push((n.to_string(), ns));
    }
    for (h, a) in extra_hosts {
        lab.add_host(h, &[a]);
    }
    Pair { lab, nodes: v }
}

impl Pair {
    fn ns(&self, node: &str) -> String {
        self.lab.ns(node)
    }
    fn sock(&self, node: &str) -> String {
        self.lab.dir.join(format!("{node}.sock")).display().to_string()
    }
    fn path(&self, name: &str) -> PathBuf {
        self.lab.dir.join(name)
    }
    /// `node`'s config: `tables` (tracker tables) then VI_1 with `prio` and `inst` lines.
    fn write(&self, node: &str, prio: u8, tables: &str, inst: &str) -> String {
        let text = format!(
            "[global]\nrouter_id = \"{node}\"\ncontrol_socket = \"{}\"\n\n{tables}\n\
             [vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {prio}\n\
             advert_int = 0.1\nvirtual_ipaddress = [\"{VIP}/24\"]\n{inst}\n",
            self.sock(node)
        );
        let cfg = self.path(&format!("{node}.toml"));
        std::fs::write(&cfg, text).expect("write config");
        cfg.display().to_string()
    }
    fn start(&mut self, node: &str, prio: u8, tables: &str, inst: &str) {
        let cfg = self.write(node, prio, tables, inst);
        let ns = self.ns(node);
        self.lab.spawn(node, &ns, &[VIPD, "-c", &cfg, "--log", "debug"]);
    }
    /// Start `node` with `wrap` before vipd (e.g. setpriv dropping capabilities).
    fn start_wrapped(&mut self, node: &str, wrap: &[&str], tables: &str, inst: &str) {
        let cfg = self.write(node, 100, tables, inst);
        let ns = self.ns(node);
        let mut argv: Vec<&str> = wrap.to_vec();
        argv.extend([VIPD, "-c", &cfg, "--log", "debug"]);
        self.lab.spawn(node, &ns, &argv);
    }
    fn reload(&self, node: &str) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.ns(node),
            VIPCTL,
            "--socket",
            &self.sock(node),
            "reload",
        ]);
    }
    fn status(&self, node: &str) -> Option<Value> {
        vipctl_status(&self.ns(node), &self.sock(node))
    }
    fn instance(&self, node: &str) -> Option<Value> {
        Some(self.status(node)?["instances"][0].clone())
    }
    /// Wait until `f` holds for node's instance status (bounded).
    fn wait(&self, node: &str, what: &str, limit: Duration, f: impl Fn(&Value) -> bool) -> Value {
        poll_until(what, limit, Duration::from_millis(20), || {
            self.instance(node).filter(|i| f(i))
        })
        .0
    }
    fn holders(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, ns)| self.lab.has_addr(ns, VIP))
            .map(|(n, _)| n.clone())
            .collect()
    }
    fn wait_holder(&self, who: &str, limit: Duration) -> Duration {
        poll_until(
            &format!("{who} alone holds {VIP}"),
            limit,
            Duration::from_millis(10),
            || {
                let h = self.holders();
                (h.len() == 1 && h[0] == who).then_some(())
            },
        )
        .1
    }
    fn write_script(&self, name: &str, body: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p.display().to_string()
    }
}

fn tracker<'a>(inst: &'a Value, kind: &str, name: &str) -> &'a Value {
    inst["trackers"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["kind"] == kind && t["name"] == name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {inst}"))
}

fn pid_alive(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z")
}

#[test]
fn tracked_process_dies_and_the_backup_takes_the_vip() {
    let _g = netns_lock();
    let mut p = lab("trs", &["fe1", "fe2"], &[]);
    // The tracked process (any namespace will do: pids are global here).
    let ns1 = p.ns("fe1");
    let pid = p.lab.spawn("victim", &ns1, &["sleep", "600"]);
    let pidfile = p.path("victim.pid");
    std::fs::write(&pidfile, pid.to_string()).unwrap();
    let chk = p.write_script("chk.sh", &format!("kill -0 \"$(cat {})\"", pidfile.display()));
    let tables = format!("[vrrp_script.alive]\nscript = [\"{chk}\"]\ninterval = \"200ms\"\nfall = 2\nrise = 1\n");
    p.start(
        "fe1",
        150,
        &tables,
        "track_script = [{ name = \"alive\", weight = -100 }]",
    );
    p.start("fe2", 100, "", "");
    p.wait_holder("fe1", Duration::from_secs(10));
    let i = p.wait("fe1", "script up on fe1", Duration::from_secs(5), |i| {
        i["trackers"][0]["state"] == "up"
    });
    assert_eq!(i["effective_priority"], 150, "{i}");
    let t = tracker(&i, "script", "alive");
    assert_eq!(
        (t["weight"].as_i64(), t["contribution"].as_i64()),
        (Some(-100), Some(0)),
        "{t}"
    );

    p.lab.signal("victim", libc::SIGKILL, Duration::from_secs(2));
    let took = p.wait_holder("fe2", Duration::from_secs(10));
    // fall 2 x 200 ms + master-down of the backup (~0.36 s): well under 5 s.
    assert!(took < Duration::from_secs(5), "takeover took {took:?}");
    let i = p.wait("fe1", "fe1 lowered", Duration::from_secs(5), |i| {
        i["effective_priority"] == 50
    });
    let t = tracker(&i, "script", "alive");
    assert_eq!(
        (t["state"].as_str(), t["contribution"].as_i64()),
        (Some("down"), Some(-100)),
        "{t}"
    );
    assert_eq!(i["state"], "backup", "{i}");
    let log = p.lab.log("fe1");
    assert!(log.contains("effective priority 150 -> 50 (script alive"), "{log}");
}

#[test]
fn a_script_past_its_timeout_is_killed_with_its_group_and_faults() {
    let _g = netns_lock();
    let mut p = lab("trt", &["fe1"], &[]);
    let child_pid = p.path("child.pid");
    let slow = p.write_script(
        "slow.sh",
        &format!("sleep 60 &\necho $! > {}\nsleep 60", child_pid.display()),
    );
    let tables = format!("[vrrp_script.slow]\nscript = \"{slow}\"\ninterval = 1\ntimeout = \"300ms\"\n");
    p.start("fe1", 100, &tables, "track_script = [{ name = \"slow\" }]");
    // Weight 0: a failure (the timeout) is FAULT.
    let i = p.wait("fe1", "fe1 in fault", Duration::from_secs(10), |i| {
        i["state"] == "fault"
    });
    let t = tracker(&i, "script", "slow");
    assert_eq!(
        (t["state"].as_str(), t["fault"].as_bool()),
        (Some("down"), Some(true)),
        "{t}"
    );
    assert!(!p.lab.has_addr(&p.ns("fe1"), VIP));
    // The background child of the script was in its group: killed too.
    let (pid, _) = poll_until(
        "child pid written",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || std::fs::read_to_string(&child_pid).ok()?.trim().parse::<i32>().ok(),
    );
    poll_until(
        "the script's child is gone",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || (!pid_alive(pid)).then_some(()),
    );
    let log = p.lab.log("fe1");
    assert!(log.contains("timed out"), "{log}");
}

#[test]
fn a_script_with_a_user_does_not_run_as_root() {
    let _g = netns_lock();
    let mut p = lab("tru", &["fe1"], &[]);
    let out = p.path("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    // The lab dir must be searchable by nobody to reach the script and out/.
    std::fs::set_permissions(&p.lab.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uid_file = out.join("uid");
    let script = p.write_script("who.sh", &format!("id -u > {}", uid_file.display()));
    let tables = format!("[vrrp_script.who]\nscript = \"{script}\"\nuser = \"nobody\"\ninterval = \"200ms\"\n");
    p.start("fe1", 100, &tables, "track_script = [{ name = \"who\", weight = 10 }]");
    let (uid, _) = poll_until(
        "the script wrote its uid",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || std::fs::read_to_string(&uid_file).ok()?.trim().parse::<u32>().ok(),
    );
    assert_ne!(uid, 0, "a script with user = nobody ran as root");
    let nobody = run(&["id", "-u", "nobody"]);
    assert_eq!(uid.to_string(), String::from_utf8_lossy(&nobody.stdout).trim());
    // It succeeded: +10.
    p.wait("fe1", "priority 110", Duration::from_secs(5), |i| {
        i["effective_priority"] == 110
    });
}

#[test]
fn a_track_file_moves_the_priority_and_faults_below_minus_253() {
    let _g = netns_lock();
    let mut p = lab("trf", &["fe1"], &[]);
    let f = p.path("prio");
    let tables = format!(
        "[vrrp_track_file.prio]\nfile = \"{}\"\nweight = 10\ninit_file = 0\n",
        f.display()
    );
    p.start("fe1", 100, &tables, "track_file = [{ name = \"prio\" }]");
    p.wait("fe1", "master at 100", Duration::from_secs(10), |i| {
        i["state"] == "master" && i["effective_priority"] == 100
    });
    assert_eq!(std::fs::read_to_string(&f).unwrap().trim(), "0", "init_file wrote 0");
    std::fs::write(&f, "3\n").unwrap();
    let i = p.wait("fe1", "priority 130", Duration::from_secs(5), |i| {
        i["effective_priority"] == 130
    });
    let t = tracker(&i, "file", "prio");
    assert_eq!(
        (t["value"].as_i64(), t["contribution"].as_i64()),
        (Some(3), Some(30)),
        "{t}"
    );
    // Replaced by rename (how editors and config management write files).
    let tmp = p.path("prio.tmp");
    std::fs::write(&tmp, "-5\n").unwrap();
    std::fs::rename(&tmp, &f).unwrap();
    p.wait("fe1", "priority 50", Duration::from_secs(5), |i| {
        i["effective_priority"] == 50
    });
    // -30 x 10 = -300 < -253: FAULT.
    std::fs::write(&f, "-30\n").unwrap();
    p.wait("fe1", "fault", Duration::from_secs(5), |i| i["state"] == "fault");
    std::fs::write(&f, "0\n").unwrap();
    p.wait("fe1", "master again", Duration::from_secs(10), |i| {
        i["state"] == "master"
    });
}

/// keepalived's `reverse`: a reversed file lowers the priority by value x
/// weight; a reversed weight-0 script faults while it succeeds.
#[test]
fn reverse_turns_the_adjustment_around() {
    let _g = netns_lock();
    let mut p = lab("trv", &["fe1"], &[]);
    let f = p.path("prio");
    let flag = p.path("flag");
    let tables = format!(
        "[vrrp_track_file.prio]\nfile = \"{}\"\nweight = 10\nreverse = true\ninit_file = 0\n\
         [vrrp_script.flag]\nscript = [\"/usr/bin/test\", \"-e\", \"{}\"]\ninterval = \"100ms\"\n",
        f.display(),
        flag.display()
    );
    p.start(
        "fe1",
        100,
        &tables,
        "track_file = [{ name = \"prio\" }]\ntrack_script = [{ name = \"flag\", weight = 0, reverse = true }]",
    );
    p.wait("fe1", "master at 100", Duration::from_secs(10), |i| {
        i["state"] == "master" && i["effective_priority"] == 100
    });
    std::fs::write(&f, "3\n").unwrap();
    let i = p.wait("fe1", "priority 70", Duration::from_secs(5), |i| {
        i["effective_priority"] == 70
    });
    assert_eq!(tracker(&i, "file", "prio")["contribution"].as_i64(), Some(-30), "{i}");
    // The script succeeds: reversed weight 0 = FAULT; fails again: back.
    std::fs::write(&flag, "").unwrap();
    p.wait("fe1", "fault", Duration::from_secs(5), |i| i["state"] == "fault");
    std::fs::remove_file(&flag).unwrap();
    p.wait("fe1", "master again", Duration::from_secs(10), |i| {
        i["state"] == "master"
    });
}

#[test]
fn a_virtual_server_below_quorum_hands_the_vip_over() {
    let _g = netns_lock();
    let mut p = lab(
        "trv",
        &["fe1", "fe2"],
        &[("be1", "192.0.2.61/24"), ("be2", "192.0.2.62/24")],
    );
    for be in ["be1", "be2"] {
        let ns = p.lab.ns(be);
        p.lab
            .spawn(be, &ns, &["socat", "TCP-LISTEN:6001,fork,reuseaddr", "EXEC:/bin/cat"]);
    }
    let vs = |be: &str| {
        format!(
            "[virtual_server.echo]\nlisten = \"{VIP}:6001\"\nvrrp_instance = \"VI_1\"\n\
             check = {{ type = \"tcp\", interval = \"200ms\", timeout = \"150ms\", rise = 1, fall = 2 }}\n\
             real_server = [{{ address = \"{be}:6001\" }}]\n"
        )
    };
    let track = "track_virtual_server = [{ name = \"echo\", quorum = 1, weight = -100 }]";
    p.start("fe1", 150, &vs("192.0.2.61"), track);
    p.start("fe2", 100, &vs("192.0.2.62"), track);
    p.wait_holder("fe1", Duration::from_secs(10));
    let i = p.wait("fe1", "fe1's backend up", Duration::from_secs(10), |i| {
        i["trackers"][0]["state"] == "up"
    });
    assert_eq!(i["effective_priority"], 150);
    // fe1's only backend dies: quorum lost, 150 - 100 = 50 < 100.
    p.lab.signal("be1", libc::SIGKILL, Duration::from_secs(2));
    p.wait_holder("fe2", Duration::from_secs(10));
    let i = p.wait("fe1", "fe1 lowered", Duration::from_secs(5), |i| {
        i["effective_priority"] == 50
    });
    let t = tracker(&i, "virtual_server", "echo");
    assert_eq!(
        (t["state"].as_str(), t["contribution"].as_i64()),
        (Some("down"), Some(-100)),
        "{t}"
    );
    assert!(p
        .lab
        .log("fe1")
        .contains("virtual_server echo: 0 of 1 backends healthy"));
}

#[test]
fn a_tracked_process_below_quorum_faults_and_recovers() {
    let _g = netns_lock();
    let mut p = lab("trp", &["fe1"], &[]);
    // A process name nobody else on the machine uses: a copy of sleep.
    let name = format!("vtp{}", std::process::id() % 1_000_000);
    let bin = p.path(&name);
    std::fs::copy("/bin/sleep", &bin).unwrap();
    let bin = bin.display().to_string();
    let ns = p.ns("fe1");
    p.lab.spawn("w1", &ns, &[&bin, "600"]);
    p.lab.spawn("w2", &ns, &[&bin, "600"]);
    let tables = format!("[vrrp_track_process.workers]\nprocess = \"{name}\"\nquorum = 2\ninterval = \"100ms\"\n");
    p.start(
        "fe1",
        100,
        &tables,
        "track_process = [{ name = \"workers\", weight = 0 }]",
    );
    let i = p.wait("fe1", "master with quorum", Duration::from_secs(10), |i| {
        i["state"] == "master" && i["trackers"][0]["state"] == "up"
    });
    assert_eq!(i["effective_priority"], 100);
    // One of two gone: below quorum 2, weight 0 = FAULT.
    p.lab.signal("w1", libc::SIGKILL, Duration::from_secs(2));
    p.wait("fe1", "fault below quorum", Duration::from_secs(5), |i| {
        i["state"] == "fault"
    });
    assert!(p.lab.log("fe1").contains("1 matching process(es), quorum 2"));
    p.lab.spawn("w3", &ns, &[&bin, "600"]);
    p.wait("fe1", "master again", Duration::from_secs(10), |i| {
        i["state"] == "master"
    });
}

#[test]
fn trackers_follow_a_reload() {
    let _g = netns_lock();
    let mut p = lab("trr", &["fe1"], &[]);
    p.start("fe1", 100, "", "");
    p.wait("fe1", "master", Duration::from_secs(10), |i| i["state"] == "master");
    // Add a file tracker by reload: it starts at once.
    let f = p.path("prio");
    std::fs::write(&f, "2\n").unwrap();
    let tables = format!("[vrrp_track_file.prio]\nfile = \"{}\"\nweight = 5\n", f.display());
    p.write("fe1", 100, &tables, "track_file = [{ name = \"prio\" }]");
    p.reload("fe1");
    p.wait("fe1", "priority 110", Duration::from_secs(5), |i| {
        i["effective_priority"] == 110
    });
    // A reload that changes nothing keeps it; one that drops it restores the base.
    p.reload("fe1");
    std::fs::write(&f, "4\n").unwrap();
    p.wait("fe1", "priority 120", Duration::from_secs(5), |i| {
        i["effective_priority"] == 120
    });
    p.write("fe1", 100, "", "");
    p.reload("fe1");
    let i = p.wait("fe1", "back to 100", Duration::from_secs(5), |i| {
        i["effective_priority"] == 100
    });
    assert!(i.get("trackers").is_none(), "{i}");
}

#[test]
fn a_script_whose_user_cannot_be_set_does_not_run_at_all() {
    let _g = netns_lock();
    let mut p = lab("trn", &["fe1"], &[]);
    let out = p.path("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&p.lab.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uid_file = out.join("uid");
    let script = p.write_script("who.sh", &format!("id -u > {}", uid_file.display()));
    let tables = format!("[vrrp_script.who]\nscript = \"{script}\"\nuser = \"nobody\"\ninterval = \"200ms\"\n");
    // vipd without CAP_SETUID/CAP_SETGID (as under a unit that does not grant them).
    p.start_wrapped(
        "fe1",
        &["setpriv", "--bounding-set=-setuid,-setgid"],
        &tables,
        "track_script = [{ name = \"who\", weight = 10 }]",
    );
    let i = p.wait("fe1", "the script counted as failing", Duration::from_secs(10), |i| {
        i["trackers"][0]["state"] == "down"
    });
    assert_eq!(i["effective_priority"], 100, "{i}");
    assert!(!uid_file.exists(), "the script ran although its user could not be set");
    let log = p.lab.log("fe1");
    assert!(log.contains("script who: cannot run"), "{log}");
    // Logged once, not every 200 ms.
    std::thread::sleep(Duration::from_millis(600));
    let warns = |log: String| {
        log.lines()
            .filter(|l| l.contains("WARN") && l.contains("script who: cannot run"))
            .count()
    };
    assert_eq!(warns(p.lab.log("fe1")), 1);
    assert!(!uid_file.exists());
}
