//! Namespace tests (root) of notify scripts and sync groups: every notify path
//! (MASTER, BACKUP, FAULT, STOP on SIGTERM) with exact argv lines and order, a
//! backlog that collapses to the newest state, a timeout that kills the
//! script's process group, and a sync group whose members move together.
#![allow(non_snake_case)]

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const VIP: &str = "192.0.2.100";
const VIP2: &str = "192.0.2.101";

struct Nodes {
    lab: Lab,
}

impl Nodes {
    fn new(tag: &str, n: usize) -> Nodes {
        let mut lab = Lab::new(tag);
        for i in 1..=n {
            lab.add_host(&format!("fe{i}"), &[&format!("192.0.2.{i}/24")]);
        }
        Nodes { lab }
    }
    fn path(&self, file: &str) -> PathBuf {
        self.lab.dir.join(file)
    }
    fn p(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }
    fn sock(&self, node: &str) -> String {
        self.p(&format!("{node}.sock"))
    }
    /// `node`'s config: a [global] with its socket plus `body`.
    fn write_cfg(&self, node: &str, global: &str, body: &str) {
        let text = format!(
            "[global]\nrouter_id = \"{node}\"\ncontrol_socket = \"{}\"\n{global}\n{body}\n",
            self.sock(node)
        );
        std::fs::write(self.path(&format!("{node}.toml")), text).expect("write config");
    }
    fn start(&mut self, node: &str) {
        let ns = self.lab.ns(node);
        let cfg = self.p(&format!("{node}.toml"));
        self.lab.spawn(node, &ns, &[VIPD, "-c", &cfg, "--log", "debug"]);
    }
    /// An executable shell script in the lab directory.
    fn script(&self, name: &str, body: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
        sh(&["chmod", "755", &p.display().to_string()]);
        p.display().to_string()
    }
    fn status(&self, node: &str) -> Option<Value> {
        vipctl_status(&self.lab.ns(node), &self.sock(node))
    }
    fn state(&self, node: &str, inst: &str) -> Option<String> {
        let st = self.status(node)?;
        let list = st["instances"].as_array()?;
        let i = list.iter().find(|i| i["name"] == inst)?;
        Some(i["state"].as_str()?.to_string())
    }
    fn wait_state(&self, node: &str, inst: &str, want: &str) {
        poll_until(
            &format!("{node} {inst} {want}"),
            Duration::from_secs(10),
            Duration::from_millis(20),
            || (self.state(node, inst).as_deref() == Some(want)).then_some(()),
        );
    }
    fn holders(&self, vip: &str) -> Vec<String> {
        (1..=3)
            .map(|i| format!("fe{i}"))
            .filter(|n| self.lab.has_addr(&self.lab.ns(n), vip))
            .collect()
    }
    fn wait_holder(&self, vips: &[&str], who: &str) {
        poll_until(
            &format!("{who} alone holds {vips:?}"),
            Duration::from_secs(10),
            Duration::from_millis(10),
            || vips.iter().all(|v| self.holders(v) == [who]).then_some(()),
        );
    }
    /// Add a veth pair `dev`/`dev`p inside `node` (a link to track), up.
    fn tracked_link(&self, node: &str, dev: &str) {
        let ns = self.lab.ns(node);
        let peer = format!("{dev}p");
        sh(&[
            "ip", "-n", &ns, "link", "add", dev, "type", "veth", "peer", "name", &peer,
        ]);
        sh(&["ip", "-n", &ns, "link", "set", &peer, "up"]);
        sh(&["ip", "-n", &ns, "link", "set", dev, "up"]);
    }
    fn set_tracked(&self, node: &str, dev: &str, up: bool) {
        sh(&[
            "ip",
            "-n",
            &self.lab.ns(node),
            "link",
            "set",
            dev,
            if up { "up" } else { "down" },
        ]);
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Wait until `file` holds exactly `want` (lines), bounded.
fn wait_lines(file: &Path, want: &[&str]) {
    let (_, _) = poll_until(
        &format!("{} to read {want:?} (has {:?})", file.display(), lines(file)),
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            let have = lines(file);
            if have.len() > want.len() || have.iter().zip(want).any(|(h, w)| h != w) {
                panic!("{} has {have:?}, expected {want:?}", file.display());
            }
            (have.len() == want.len()).then_some(())
        },
    );
}

fn inst(name: &str, vrid: u8, prio: u8, vip: &str, extra: &str) -> String {
    format!(
        "[vrrp_instance.{name}]\ninterface = \"eth0\"\nvirtual_router_id = {vrid}\npriority = {prio}\nadvert_int = 0.1\nvirtual_ipaddress = [\"{vip}/24\"]\n{extra}\n"
    )
}

/// Every instance path with keepalived's arguments, in transition order:
/// the state's own script (its own arguments only), then the generic one
/// with INSTANCE NAME STATE PRIORITY; STOP on SIGTERM after the VIP is gone.
#[test]
fn notify_every_state_in_order_with_keepalived_arguments() {
    let _g = netns_lock();
    let mut n = Nodes::new("nfy", 2);
    let out = n.path("fe1.lines");
    let o = out.display().to_string();
    let rec = n.script("rec.sh", "out=$1; shift; printf '%s\\n' \"$*\" >> \"$out\"");
    let stop = n.script(
        "stop.sh",
        &format!("if ip -o addr show | grep -q ' {VIP}/'; then echo 'own stop with-vip'; else echo 'own stop no-vip'; fi >> {o}"),
    );
    n.tracked_link("fe1", "trk");
    let scripts = format!(
        "notify = [\"{rec}\", \"{o}\"]\nnotify_master = \"{rec} {o} 'own master'\"\nnotify_backup = [\"{rec}\", \"{o}\", \"own backup\"]\nnotify_fault = \"{rec} {o} own fault\"\nnotify_stop = \"{stop}\"\ntrack_interface = [{{ interface = \"trk\" }}]"
    );
    n.write_cfg("fe1", "", &inst("VI_1", 51, 150, VIP, &scripts));
    n.write_cfg("fe2", "", &inst("VI_1", 51, 100, VIP, ""));
    n.start("fe1");
    n.wait_holder(&[VIP], "fe1");
    n.start("fe2");
    let mut want = vec![
        "own backup",
        "INSTANCE VI_1 BACKUP 150",
        "own master",
        "INSTANCE VI_1 MASTER 150",
    ];
    wait_lines(&out, &want);
    n.wait_state("fe2", "VI_1", "backup");
    // FAULT: the tracked link goes down (weight 0).
    n.set_tracked("fe1", "trk", false);
    want.extend(["own fault", "INSTANCE VI_1 FAULT 150"]);
    wait_lines(&out, &want);
    n.wait_holder(&[VIP], "fe2");
    // Back: BACKUP, then MASTER (preempt).
    n.set_tracked("fe1", "trk", true);
    want.extend([
        "own backup",
        "INSTANCE VI_1 BACKUP 150",
        "own master",
        "INSTANCE VI_1 MASTER 150",
    ]);
    wait_lines(&out, &want);
    n.wait_holder(&[VIP], "fe1");
    // SIGTERM: STOP runs after the VIP was released, before vipd exits.
    let st = n
        .lab
        .signal("fe1", libc::SIGTERM, Duration::from_secs(10))
        .expect("vipd exits on SIGTERM");
    assert!(st.success(), "exit status {st:?}");
    want.extend(["own stop no-vip", "INSTANCE VI_1 STOP 150"]);
    let have = lines(&out);
    assert_eq!(have, want, "STOP lines must be written before vipd exits");
}

/// Scripts of one instance run one at a time; while one runs, a backlog
/// collapses to the newest state: the running one finishes, then only the
/// latest pending one runs (never a stale state last).
#[test]
fn notify_backlog_collapses_to_the_newest_state() {
    let _g = netns_lock();
    let mut n = Nodes::new("nfb", 1);
    let out = n.path("fe1.lines");
    let o = out.display().to_string();
    // Slow: 4 s per notification.
    let slow = n.script(
        "slow.sh",
        &format!("echo \"begin $3\" >> {o}; sleep 4; echo \"end $3\" >> {o}"),
    );
    n.tracked_link("fe1", "trk");
    let extra = format!("notify = \"{slow}\"\ntrack_interface = [{{ interface = \"trk\" }}]");
    n.write_cfg("fe1", "", &inst("VI_1", 51, 150, VIP, &extra));
    n.start("fe1");
    wait_lines(&out, &["begin BACKUP"]);
    let begun = Instant::now();
    // While BACKUP's script runs: MASTER, FAULT, BACKUP, MASTER.
    n.wait_state("fe1", "VI_1", "master");
    n.set_tracked("fe1", "trk", false);
    n.wait_state("fe1", "VI_1", "fault");
    n.set_tracked("fe1", "trk", true);
    n.wait_state("fe1", "VI_1", "master");
    assert!(
        begun.elapsed() < Duration::from_millis(4000),
        "the flaps took {:?}, longer than the running script",
        begun.elapsed()
    );
    assert_eq!(lines(&out), ["begin BACKUP"], "one script at a time");
    wait_lines(&out, &["begin BACKUP", "end BACKUP", "begin MASTER", "end MASTER"]);
    let st = n.status("fe1").expect("status");
    assert!(
        st["instances"][0]["counters"]["transitions"].as_u64() >= Some(5),
        "{st}"
    );
}

/// A script still running at `notify_script_timeout` is killed with its whole
/// process group: a child it started to write later never writes.
#[test]
fn notify_timeout_kills_the_process_group() {
    let _g = netns_lock();
    let mut n = Nodes::new("nft", 1);
    let out = n.path("fe1.lines");
    let o = out.display().to_string();
    let hang = n.script(
        "hang.sh",
        &format!("echo \"begin $3\" >> {o}; (sleep 2; echo late >> {o}) & sleep 60"),
    );
    let extra = format!("notify = \"{hang}\"");
    n.write_cfg("fe1", "notify_script_timeout = 1", &inst("VI_1", 51, 150, VIP, &extra));
    n.start("fe1");
    wait_lines(&out, &["begin BACKUP"]);
    let begun = Instant::now();
    // The timeout is logged, then the next state's script runs.
    poll_until(
        "timeout logged",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            n.lab
                .log("fe1")
                .contains("timed out (process group killed)")
                .then_some(())
        },
    );
    wait_lines(&out, &["begin BACKUP", "begin MASTER"]);
    // Past the moment the first script's child would have written.
    // Past the moments both killed scripts' children would have written (2 s
    // after each began; the second began about 1 s after the first).
    poll_until(
        "3.5 s after the first script began",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || (begun.elapsed() > Duration::from_millis(3500)).then_some(()),
    );
    assert_eq!(
        lines(&out),
        ["begin BACKUP", "begin MASTER"],
        "the child of a killed script wrote"
    );
    let pids = sh(&["ip", "netns", "pids", &n.lab.ns("fe1")]);
    let vipd = n.lab.pid("fe1").expect("vipd runs");
    // Both scripts' groups were killed: vipd is alone in its namespace.
    assert_eq!(pids.trim(), vipd.to_string(), "leftover processes");
}

/// Two instances in a sync group on two nodes: a tracked link of one member
/// fails on the master node, and both members move to the other node; the
/// group notify scripts report GROUP NAME STATE 0.
#[test]
fn sync_group_members_move_together() {
    let _g = netns_lock();
    let mut n = Nodes::new("syn", 2);
    let rec = n.script("rec.sh", "out=$1; shift; printf '%s\\n' \"$*\" >> \"$out\"");
    n.tracked_link("fe1", "trk");
    for (node, prio) in [("fe1", 150), ("fe2", 100)] {
        let o = n.p(&format!("{node}.group"));
        let track = if node == "fe1" {
            "track_interface = [{ interface = \"trk\" }]"
        } else {
            ""
        };
        let body = format!(
            "{}{}[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\nnotify = [\"{rec}\", \"{o}\"]\n",
            inst("VI_1", 51, prio, VIP, track),
            inst("VI_2", 52, prio, VIP2, ""),
        );
        n.write_cfg(node, "", &body);
    }
    n.start("fe1");
    n.wait_holder(&[VIP, VIP2], "fe1");
    n.start("fe2");
    n.wait_state("fe2", "VI_2", "backup");
    let (g1, g2) = (n.path("fe1.group"), n.path("fe2.group"));
    wait_lines(&g1, &["GROUP G BACKUP 0", "GROUP G MASTER 0"]);
    wait_lines(&g2, &["GROUP G BACKUP 0"]);
    let st = n.status("fe1").expect("status");
    assert_eq!(st["instances"][0]["sync_group"], "G", "{st}");
    // One member's link fails on fe1: both move to fe2.
    n.set_tracked("fe1", "trk", false);
    n.wait_holder(&[VIP, VIP2], "fe2");
    n.wait_state("fe1", "VI_2", "fault");
    let st = n.status("fe1").expect("status");
    let vi2 = st["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "VI_2")
        .unwrap()
        .clone();
    assert_eq!(
        vi2["last_transition"]["reason"], "sync group G: VI_1 is in fault",
        "{vi2}"
    );
    wait_lines(&g1, &["GROUP G BACKUP 0", "GROUP G MASTER 0", "GROUP G FAULT 0"]);
    wait_lines(&g2, &["GROUP G BACKUP 0", "GROUP G MASTER 0"]);
    // Back: fe1 preempts with both; fe2's members go back to BACKUP together.
    n.set_tracked("fe1", "trk", true);
    n.wait_holder(&[VIP, VIP2], "fe1");
    wait_lines(
        &g1,
        &[
            "GROUP G BACKUP 0",
            "GROUP G MASTER 0",
            "GROUP G FAULT 0",
            "GROUP G BACKUP 0",
            "GROUP G MASTER 0",
        ],
    );
    wait_lines(&g2, &["GROUP G BACKUP 0", "GROUP G MASTER 0", "GROUP G BACKUP 0"]);
    // STOP for the group too on SIGTERM.
    n.lab
        .signal("fe2", libc::SIGTERM, Duration::from_secs(10))
        .expect("vipd exits");
    assert_eq!(lines(&g2).last().map(String::as_str), Some("GROUP G STOP 0"));
}

/// `script_user`: the script runs as that user and group, with a clean
/// environment (PATH only: nothing of vipd's own environment leaks).
#[test]
fn notify_runs_as_script_user_with_a_clean_environment() {
    let _g = netns_lock();
    let mut n = Nodes::new("nfu", 1);
    let out = n.path("fe1.lines");
    let o = out.display().to_string();
    std::fs::write(&out, "").expect("create output");
    sh(&["chmod", "666", &o]);
    let who = n.script(
        "who.sh",
        &format!(
            "echo \"$3 $(id -u) $(id -g) $(env | grep -c -e ^HOME= -e ^CARGO -e ^RUST) $(env | grep ^PATH=)\" >> {o}"
        ),
    );
    // A script's own user (keepalived `notify_master SCRIPT USER`) wins over script_user.
    let own = n.script("own.sh", &format!("echo \"own $(id -u) $(id -g)\" >> {o}"));
    let extra = format!("notify = \"{who}\"\nnotify_master = {{ script = \"{own}\", user = \"root\" }}");
    n.write_cfg("fe1", "script_user = \"nobody\"", &inst("VI_1", 51, 150, VIP, &extra));
    n.start("fe1");
    let path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    let nobody = sh(&["id", "-u", "nobody"]).trim().to_string();
    let group = sh(&["id", "-g", "nobody"]).trim().to_string();
    wait_lines(
        &out,
        &[
            &format!("BACKUP {nobody} {group} 0 {path}"),
            "own 0 0",
            &format!("MASTER {nobody} {group} 0 {path}"),
        ],
    );
}

/// keepalived's `track_script` on a sync group: every member tracks it; the
/// script fails on the master node and both members move to the other node,
/// and back when it succeeds again.
#[test]
fn sync_group_track_script_moves_both_members() {
    let _g = netns_lock();
    let mut n = Nodes::new("sgt", 2);
    let ok = n.p("ok");
    std::fs::write(&ok, "").expect("create ok file");
    for (node, prio) in [("fe1", 150), ("fe2", 100)] {
        let body = format!(
            "[vrrp_script.chk]\nscript = [\"/usr/bin/test\", \"-e\", \"{ok}\"]\ninterval = 0.2\nfall = 1\nrise = 1\n\n{}{}[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\n{}\n",
            inst("VI_1", 51, prio, VIP, ""),
            inst("VI_2", 52, prio, VIP2, ""),
            if node == "fe1" { "track_script = [{ name = \"chk\" }]" } else { "" },
        );
        n.write_cfg(node, "", &body);
    }
    n.start("fe1");
    n.wait_holder(&[VIP, VIP2], "fe1");
    n.start("fe2");
    n.wait_state("fe2", "VI_2", "backup");
    std::fs::remove_file(&ok).expect("remove ok file");
    n.wait_holder(&[VIP, VIP2], "fe2");
    n.wait_state("fe1", "VI_1", "fault");
    n.wait_state("fe1", "VI_2", "fault");
    std::fs::write(&ok, "").expect("create ok file");
    n.wait_holder(&[VIP, VIP2], "fe1");
}

/// A planned handover of a sync group moves the whole group: `vipctl demote`
/// of one member on the master node demotes every member there (the peer's
/// members wait for their whole group), `--wait` answers once the successor
/// holds them all; `promote` of one member brings the group back (preempt);
/// SIGTERM of the node hands every member over, no VIP left unheld.
#[test]
fn sync_group_demote_promote_and_sigterm_move_the_whole_group() {
    let _g = netns_lock();
    let mut n = Nodes::new("sgd", 2);
    for (node, prio) in [("fe1", 150), ("fe2", 100)] {
        let body = format!(
            "{}{}[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\n",
            inst("VI_1", 51, prio, VIP, ""),
            inst("VI_2", 52, prio, VIP2, ""),
        );
        n.write_cfg(node, "", &body);
    }
    n.start("fe1");
    n.wait_holder(&[VIP, VIP2], "fe1");
    n.start("fe2");
    n.wait_state("fe2", "VI_1", "backup");
    n.wait_state("fe2", "VI_2", "backup");
    let ctl = |args: &[&str]| {
        let (ns, sock) = (n.lab.ns("fe1"), n.sock("fe1"));
        let mut argv = vec!["ip", "netns", "exec", &ns, VIPCTL, "--socket", &sock];
        argv.extend_from_slice(args);
        let t = Instant::now();
        let out = run(&argv);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text, t.elapsed())
    };
    // Demote one member: both hand over, make-before-break.
    let (code, text, took) = ctl(&["demote", "VI_1", "--wait"]);
    eprintln!("demote --wait took {took:?}: {text}");
    assert_eq!(code, Some(0), "{text}");
    for vi in ["VI_1", "VI_2"] {
        assert!(
            text.contains(&format!("{vi}: handed over to 192.0.2.2")),
            "{vi} missing: {text}"
        );
    }
    assert!(took < Duration::from_secs(3), "demote --wait took {took:?}");
    // When --wait answers, the successor holds every member's VIP, alone.
    assert_eq!(
        (n.holders(VIP), n.holders(VIP2)),
        (vec!["fe2".to_string()], vec!["fe2".to_string()])
    );
    n.wait_state("fe1", "VI_1", "backup");
    n.wait_state("fe1", "VI_2", "backup");
    let st = n.status("fe1").expect("status");
    for k in 0..2 {
        assert_eq!(st["instances"][k]["demoted"], true, "{st}");
    }
    // Promote one member: the group comes back (preempt).
    let (code, text, _) = ctl(&["promote", "VI_1"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("VI_2: promoted"), "{text}");
    n.wait_holder(&[VIP, VIP2], "fe1");
    n.wait_state("fe2", "VI_1", "backup");
    n.wait_state("fe2", "VI_2", "backup");
    // SIGTERM with every member master: each is handed over before vipd exits.
    let st = n
        .lab
        .signal("fe1", libc::SIGTERM, Duration::from_secs(10))
        .expect("vipd exits on SIGTERM");
    assert!(st.success(), "exit status {st:?}");
    assert_eq!(
        (n.holders(VIP), n.holders(VIP2)),
        (vec!["fe2".to_string()], vec!["fe2".to_string()])
    );
    let log = n.lab.log("fe1");
    for vi in ["VI_1", "VI_2"] {
        assert!(log.contains(&format!("{vi}: handed over to 192.0.2.2")), "{vi}: {log}");
    }
}
