//! Configuration: every shipped example parses; every bad value is an error
//! naming file, line, key and what is allowed; `vipd --check` exit codes.

use std::net::IpAddr;
use vipd::config::{self, Admin, CheckKind, LbAlgo, Protocol};
use vipd::time::Micros;
use vipd::vrrp::{Centis, Interval, Version};

mod common;
use common::bad_config as bad;

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");

#[test]
fn every_example_config_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "toml") {
            config::load(&e.path()).unwrap_or_else(|err| panic!("{err}"));
            n += 1;
        }
    }
    assert!(n >= 9, "expected the example configs, found {n}");
}

#[test]
fn vision_example_parses_to_the_expected_values() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vipd.toml");
    let c = config::load(&path).unwrap();
    assert_eq!(c.global.router_id, "fe-1");
    assert_eq!(c.global.metrics, Some("127.0.0.1:9650".parse().unwrap()));
    let i = &c.instances[0];
    assert_eq!(i.name, "VI_INGEST");
    assert_eq!(i.interface, "eth0");
    assert_eq!(i.router.vrid, 51);
    assert_eq!(i.router.priority, 150);
    assert_eq!(i.router.version, Version::V3);
    assert_eq!(i.router.advert_interval, Interval::V3(Centis::new(100).unwrap()));
    assert!(i.router.preempt);
    assert_eq!(i.router.vips, vec!["192.0.2.100".parse::<IpAddr>().unwrap()]);
    assert_eq!(i.vips[0].prefix(), 24);
    assert_eq!(i.router.garp_master_repeat, 5);
    assert_eq!(i.router.garp_master_delay, Micros::from_secs(5));
    let s = &c.servers[0];
    assert_eq!(s.listen, "192.0.2.100:6000".parse().unwrap());
    assert_eq!(s.protocol, Protocol::Tcp);
    assert_eq!(s.lb_algo, LbAlgo::Rr);
    assert_eq!(s.vrrp_instance.as_deref(), Some("VI_INGEST"));
    let ch = s.check.as_ref().unwrap();
    assert_eq!(ch.kind, CheckKind::Tcp { port: None });
    assert_eq!(
        (ch.interval, ch.timeout, ch.rise, ch.fall),
        (Micros::from_secs(1), Micros::from_millis(500), 2, 2)
    );
    assert_eq!(s.real_servers.len(), 2);
    assert_eq!(s.real_servers[1].address, "198.51.100.12:6000".parse().unwrap());
    assert_eq!(s.real_servers[1].admin, Admin::Ready);
}

const BASE: &str =
    "[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n";

#[test]
fn vrrp_instance_values_out_of_range() {
    let v = |key: &str, val: &str| {
        format!("[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_ipaddress = [\"192.0.2.100/24\"]\nvirtual_router_id = 51\n{key} = {val}\n")
    };
    bad(
        &BASE.replace("= 51", "= 0"),
        3,
        &["vrrp_instance.VI_1.virtual_router_id", "1..=255"],
    );
    bad(&BASE.replace("= 51", "= 256"), 3, &["virtual_router_id", "1..=255"]);
    bad(&v("priority", "0"), 5, &["vrrp_instance.VI_1.priority", "1..=255"]);
    bad(&v("priority", "256"), 5, &["priority", "1..=255"]);
    bad(&v("version", "4"), 5, &["version", "2 or 3"]);
    bad(&v("advert_int", "0"), 5, &["advert_int", "10 ms"]);
    bad(&v("advert_int", "\"5ms\""), 5, &["advert_int", "10 ms"]);
    bad(&v("advert_int", "\"41s\""), 5, &["advert_int", "40.95s"]);
    bad(&v("advert_int", "1.005"), 5, &["advert_int", "multiple of 10 ms"]);
    bad(&v("advert_int", "\"fast\""), 5, &["advert_int", "not a duration"]);
    bad(
        &format!("{}version = 2\nadvert_int = 0.5\n", BASE),
        6,
        &["advert_int", "whole seconds"],
    );
    bad(&v("garp_master_repeat", "0"), 5, &["garp_master_repeat", "1..=100"]);
    bad(
        &v("allowed_peers", "[\"192.0.2.1\", \"peer-2\"]"),
        5,
        &["vrrp_instance.VI_1.allowed_peers", "not an IP address"],
    );
    bad(
        &v("allowed_peers", "[\"2001:db8::1\"]"),
        5,
        &["allowed_peers", "address family"],
    );
    let ok = vipd::config::parse(&v("allowed_peers", "[\"192.0.2.1\", \"192.0.2.2\"]"), "t.toml").expect("valid");
    assert_eq!(
        ok.instances[0].router.allowed_peers,
        vec![
            "192.0.2.1".parse::<std::net::IpAddr>().unwrap(),
            "192.0.2.2".parse().unwrap()
        ]
    );
}

#[test]
fn addresses_families_and_versions() {
    let vips = |list: &str| {
        format!("[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = {list}\n")
    };
    bad(
        &vips("[\"192.0.2.100/24\", \"2001:db8::1/64\"]"),
        4,
        &["virtual_ipaddress", "2001:db8::1/64", "one family"],
    );
    bad(&vips("[]"), 4, &["virtual_ipaddress", "at least one"]);
    bad(&vips("[\"192.0.2.300\"]"), 4, &["virtual_ipaddress", "192.0.2.300"]);
    bad(
        &format!("{}version = 2\n", vips("[\"2001:db8::1/64\"]")),
        4,
        &["VRRPv2 carries IPv4 only"],
    );
    bad(
        &format!("{BASE}unicast_peer = [\"2001:db8::2\"]\n"),
        5,
        &["unicast_peer", "family"],
    );
    bad(
        &format!("{BASE}authentication = {{ auth_type = \"PASS\", auth_pass = \"x\" }}\n"),
        5,
        &["authentication", "VRRPv2"],
    );
    bad(
        &format!("{BASE}version = 2\nadvert_int = 1\nauthentication = {{ auth_type = \"PASS\", auth_pass = \"123456789\" }}\n"),
        7,
        &["auth_pass", "1 to 8 bytes"],
    );
    bad(
        &format!("{BASE}preempt = true\nnopreempt = true\n"),
        6,
        &["nopreempt", "contradicts"],
    );
    bad(&format!("{BASE}[vrrp_instance.VI_2]\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.101/24\"]\n"), 5, &["VI_2", "already used by vrrp_instance.VI_1"]);
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    bad("[globl]\nrouter_id = \"x\"\n", 1, &["globl"]);
    bad(&format!("{BASE}prority = 100\n"), 5, &["prority"]);
    let srv = |body: &str| format!("{BASE}[virtual_server.s]\nlisten = \"192.0.2.100:80\"\n{body}\n");
    bad(
        &srv("real_server = [{ address = \"198.51.100.1:80\" }]\nlb = \"rr\""),
        8,
        &["lb"],
    );
    bad(
        &srv("real_server = [{ address = \"198.51.100.1:80\", wieght = 2 }]"),
        7,
        &["wieght"],
    );
    bad(
        &srv("check = { type = \"tcp\", intervall = \"1s\" }\nreal_server = [{ address = \"198.51.100.1:80\" }]"),
        7,
        &["intervall"],
    );
}

#[test]
fn virtual_server_errors() {
    let srv = |body: &str| format!("{BASE}[virtual_server.s]\n{body}\n");
    let rs = "real_server = [{ address = \"198.51.100.1:80\" }]";
    bad(
        &srv(&format!("listen = \"192.0.2.100\"\n{rs}")),
        6,
        &["virtual_server.s.listen", "address:port"],
    );
    bad(
        &srv("listen = \"192.0.2.100:80\"\nreal_server = [{ address = \"198.51.100.1\" }]"),
        7,
        &["real_server.address", "address:port"],
    );
    bad(
        &srv("listen = \"192.0.2.100:80\"\nreal_server = []"),
        7,
        &["real_server", "at least one"],
    );
    bad(
        &srv("listen = \"192.0.2.100:80\"\nreal_server = [{ address = \"198.51.100.1:80\" }, { address = \"198.51.100.1:80\" }]"),
        7,
        &["listed twice"],
    );
    bad(
        &srv(&format!("listen = \"192.0.2.100:80\"\nlb_algo = \"random\"\n{rs}")),
        7,
        &["lb_algo", "maglev"],
    );
    bad(
        &srv(&format!("listen = \"192.0.2.100:80\"\nprotocol = \"sctp\"\n{rs}")),
        7,
        &["protocol", "udp"],
    );
    bad(
        &srv(&format!("listen = \"192.0.2.100:80\"\nvrrp_instance = \"VI_9\"\n{rs}")),
        7,
        &["vrrp_instance", "VI_9", "VI_1"],
    );
    let chk = |c: &str| srv(&format!("listen = \"192.0.2.100:80\"\ncheck = {{ {c} }}\n{rs}"));
    bad(
        &chk("type = \"tcp\", interval = \"1s\", timeout = \"2s\""),
        7,
        &["check.timeout", "at most the interval"],
    );
    bad(&chk("type = \"tcp\", rise = 0"), 7, &["check.rise", "1..=100"]);
    bad(
        &chk("type = \"icmp\""),
        7,
        &["check.type", "\"tcp\", \"http\" or \"exec\""],
    );
    bad(
        &chk("type = \"http\", path = \"health\""),
        7,
        &["check.path", "start with '/'"],
    );
    bad(
        &chk("type = \"http\", expect_status = 700"),
        7,
        &["expect_status", "100..=599"],
    );
    bad(&chk("type = \"exec\""), 7, &["check.command"]);
    bad(
        &chk("type = \"exec\", command = [\"probe\"]"),
        7,
        &["check.command", "absolute path"],
    );
    bad(
        &srv("listen = \"192.0.2.100:80\"\nreal_server = [{ address = \"198.51.100.1:80\", weight = 70000 }]"),
        7,
        &["weight", "0..=65535"],
    );
}

#[test]
fn toml_syntax_errors_have_file_and_line() {
    bad(
        "[vrrp_instance.VI_1]\ninterface = \"eth0\nvirtual_router_id = 51\n",
        2,
        &[],
    );
}

#[test]
fn check_flag_exit_codes() {
    let dir = std::env::temp_dir().join(format!("vipd-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, BASE).unwrap();
    let out = std::process::Command::new(VIPD)
        .args(["--check", "-c"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 vrrp instance(s)"));
    let badf = dir.join("bad.toml");
    std::fs::write(&badf, BASE.replace("= 51", "= 0")).unwrap();
    let out = std::process::Command::new(VIPD)
        .args(["--check", "-c"])
        .arg(&badf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:") && err.contains("virtual_router_id"),
        "{err}"
    );
    let out = std::process::Command::new(VIPD)
        .args(["--check", "-c", "/nonexistent/vipd.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `router_id` defaults to the host name from gethostname(2) (under the unit's
/// `ProcSubset=pid`, /proc/sys/kernel/hostname is hidden).
#[test]
fn router_id_defaults_to_the_host_name() {
    let c = vipd::config::parse(BASE, "t.toml").expect("valid");
    let out = std::process::Command::new("uname").arg("-n").output().expect("uname");
    let host = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(c.global.router_id, host);
}

/// `VIPCTL_SOCKET` picks the control socket (as `--socket` does).
#[test]
fn vipctl_socket_from_the_environment() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vipctl"))
        .arg("status")
        .env("VIPCTL_SOCKET", "/nonexistent/vipd-test.sock")
        .output()
        .expect("vipctl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/vipd-test.sock"), "{err}");
}

/// `vipd --check` reports every error in the file, each with its line, the
/// offending text and a caret, and suggests the key a typo meant.
#[test]
fn check_reports_every_error_with_a_caret_and_a_suggestion() {
    let text = "[global]\nrouter_id = \"fe-1\"\n\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\nprioirty = 150\nvirtual_ipaddress = [\"192.0.2.100/24\"]\nadvert_intt = 1\n\n[vrrp_instance.VI_2]\ninterface = \"eth0\"\nvirtual_router_id = 300\nvirtual_ipaddress = [\"192.0.2.101/24\"]\n\n[virtual_server.web]\nlisten = \"192.0.2.100:80\"\nlb_algo = \"rrr\"\nreal_server = [{ address = \"198.51.100.1:80\" }]\n";
    let errs = config::parse_all(text, "t.toml").expect_err("four errors");
    let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![7, 9, 13, 18], "{errs:#?}");
    // The first error is still the one `parse` (reload, start-up) reports.
    assert_eq!(config::parse(text, "t.toml").unwrap_err(), errs[0]);
    let dir = std::env::temp_dir().join(format!("vipd-check-all-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("many.toml");
    std::fs::write(&f, text).unwrap();
    let out = std::process::Command::new(VIPD)
        .args(["--check", "-c"])
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "did you mean `priority`?",
        "did you mean `advert_int`?",
        "many.toml:7:1",
        "many.toml:13:",
        "many.toml:18:",
        " 7 | prioirty = 150\n   | ^^^^^^^^\n",
        "4 errors",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const TRACK_BASE: &str =
    "[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 1\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n";

#[test]
fn tracking_parses_with_keepalived_defaults() {
    let text = format!(
        "[global]\nscript_user = \"nobody\"\n\
         [vrrp_script.chk]\nscript = \"/bin/kill -0 'a b'\"\n\
         [vrrp_script.fast]\nscript = [\"/bin/true\"]\ninterval = \"250ms\"\ntimeout = 0.1\nrise = 2\nfall = 3\nweight = -20\nuser = \"root\"\n\
         [vrrp_track_file.f]\nfile = \"/run/vipd/prio\"\ninit_file = 5\n\
         [vrrp_track_process.p]\nprocess = \"haproxy -f /etc/h.cfg\"\nparam_match = \"partial\"\nquorum = 2\nquorum_max = 4\ndelay = 0.5\n\
         {TRACK_BASE}track_script = [{{ name = \"chk\" }}, {{ name = \"fast\", weight = 10 }}]\n\
         track_file = [{{ name = \"f\" }}]\ntrack_process = [{{ name = \"p\", weight = -30 }}]\n"
    );
    let c = config::parse(&text, "t.toml").unwrap();
    let chk = &c.track.scripts["chk"];
    assert_eq!(chk.argv, vec!["/bin/kill", "-0", "a b"]);
    // keepalived: interval 1 s, timeout = interval, rise = fall = 1, weight 0.
    assert_eq!(
        (chk.interval, chk.timeout, chk.rise, chk.fall, chk.weight),
        (Micros(1_000_000), Micros(1_000_000), 1, 1, 0)
    );
    // The global script_user is the default user; a script's own user wins.
    assert_eq!(chk.run_as.as_ref().unwrap().user, "nobody");
    let fast = &c.track.scripts["fast"];
    assert_eq!(
        (fast.interval, fast.timeout, fast.rise, fast.fall, fast.weight),
        (Micros(250_000), Micros(100_000), 2, 3, -20)
    );
    assert!(fast.run_as.as_ref().unwrap().is_root());
    // track_file / track_process weights default to 1 (keepalived).
    assert_eq!((c.track.files["f"].weight, c.track.files["f"].init_file), (1, Some(5)));
    let p = &c.track.processes["p"];
    assert_eq!(
        (p.process.as_str(), p.params.len(), p.quorum, p.quorum_max),
        ("haproxy", 2, 2, 4)
    );
    assert_eq!((p.fork_delay, p.terminate_delay), (Micros(500_000), Micros(500_000)));
    let t = &c.instances[0].track;
    assert_eq!(t.scripts.iter().map(|r| r.weight).collect::<Vec<_>>(), vec![0, 10]);
    assert_eq!((t.files[0].weight, t.processes[0].weight), (1, -30));
}

/// keepalived 2.2 `reverse`: on a tracker (its default) and on each
/// reference (overrides it either way).
#[test]
fn tracking_reverse() {
    let text = format!(
        "[vrrp_script.chk]\nscript = \"/bin/true\"\nweight = -20\nreverse = true\n\
         [vrrp_script.plain]\nscript = \"/bin/true\"\n\
         [vrrp_track_file.f]\nfile = \"/run/vipd/prio\"\nreverse = true\n\
         [vrrp_track_process.p]\nprocess = \"haproxy\"\nreverse = true\n\
         {TRACK_BASE}track_script = [{{ name = \"chk\" }}, {{ name = \"plain\", weight = 10, reverse = true }}]\n\
         track_file = [{{ name = \"f\", reverse = false }}]\ntrack_process = [{{ name = \"p\", weight = 3 }}]\n"
    );
    let c = config::parse(&text, "t.toml").unwrap();
    assert!(c.track.scripts["chk"].reverse && !c.track.scripts["plain"].reverse);
    let t = &c.instances[0].track;
    let got: Vec<(i32, bool)> = [&t.scripts[0], &t.scripts[1], &t.files[0], &t.processes[0]]
        .iter()
        .map(|r| (r.weight, r.reverse))
        .collect();
    assert_eq!(got, vec![(-20, true), (10, true), (1, false), (3, true)]);
    // A sync group's references carry it too.
    let g = format!(
        "[vrrp_script.chk]\nscript = \"/bin/true\"\nreverse = true\n[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\ntrack_script = [{{ name = \"chk\" }}]\n{TRACK_BASE}\
         [vrrp_instance.VI_2]\ninterface = \"eth0\"\nvirtual_router_id = 2\nvirtual_ipaddress = [\"192.0.2.101/24\"]\n"
    );
    let c = config::parse(&g, "t.toml").unwrap();
    assert!(c.instances[0].track.scripts[0].reverse);
    // Not a boolean: a specific error at the key.
    bad(
        &format!("[vrrp_script.chk]\nscript = \"/bin/true\"\n{TRACK_BASE}track_script = [{{ name = \"chk\", reverse = \"yes\" }}]\n"),
        7,
        &["reverse", "bool"],
    );
    bad(
        "[vrrp_track_file.f]\nfile = \"/run/p\"\nreverse = 1\n",
        3,
        &["reverse", "bool"],
    );
}

#[test]
fn tracking_errors() {
    let s = "[vrrp_script.chk]\nscript = \"/bin/true\"\n";
    // Unknown tracker names, twice tracked, weights out of range.
    bad(
        &format!("{s}{TRACK_BASE}track_script = [{{ name = \"nope\" }}]\n"),
        7,
        &["track_script.name", "no [vrrp_script.nope]"],
    );
    bad(
        &format!("{s}{TRACK_BASE}track_script = [{{ name = \"chk\" }}, {{ name = \"chk\" }}]\n"),
        7,
        &["tracked twice"],
    );
    bad(
        &format!("{s}{TRACK_BASE}track_script = [{{ name = \"chk\", weight = 254 }}]\n"),
        7,
        &["track_script.weight", "-253..=253"],
    );
    bad(
        &format!("{TRACK_BASE}track_file = [{{ name = \"x\" }}]\n"),
        5,
        &["no [vrrp_track_file.x]"],
    );
    bad(
        &format!("{TRACK_BASE}track_process = [{{ name = \"x\" }}]\n"),
        5,
        &["no [vrrp_track_process.x]"],
    );
    bad(
        &format!("{TRACK_BASE}track_virtual_server = [{{ name = \"web\" }}]\n"),
        5,
        &["no [virtual_server.web]"],
    );
    // Script values.
    bad(
        "[vrrp_script.c]\nscript = \"\"\n",
        2,
        &["vrrp_script.c.script", "empty command"],
    );
    bad("[vrrp_script.c]\nscript = \"/bin/x 'open\"\n", 2, &["unclosed"]);
    bad("[vrrp_script.c]\nscript = []\n", 2, &["empty command"]);
    bad(
        "[vrrp_script.c]\nscript = \"/bin/true\"\nweight = -300\n",
        3,
        &["vrrp_script.c.weight", "-253..=253"],
    );
    bad(
        "[vrrp_script.c]\nscript = \"/bin/true\"\nrise = 0\n",
        3,
        &["vrrp_script.c.rise"],
    );
    bad(
        "[vrrp_script.c]\nscript = \"/bin/true\"\nfall = 0\n",
        3,
        &["vrrp_script.c.fall"],
    );
    bad(
        "[vrrp_script.c]\nscript = \"/bin/true\"\ninterval = \"1ms\"\n",
        3,
        &["vrrp_script.c.interval", "at least 10ms"],
    );
    bad(
        "[vrrp_script.c]\nscript = \"/bin/true\"\ntimeout = \"soon\"\n",
        3,
        &["vrrp_script.c.timeout", "not a duration"],
    );
    bad(
        "[vrrp_script.c]\nscript = \"/bin/true\"\nuser = \"no-such-user-vipd\"\n",
        3,
        &["vrrp_script.c.user", "unknown user"],
    );
    bad(
        "[vrrp_script.c]\nscript = \"/bin/true\"\nuser = \"root no-such-group-vipd\"\n",
        3,
        &["unknown group"],
    );
    bad(
        "[vrrp_script.c]\nscript = \"/bin/true\"\ngroup = \"root\"\n",
        3,
        &["group needs user"],
    );
    bad(
        "[vrrp_script.c]\nscript = \"/bin/true\"\nshell = true\n",
        3,
        &["unknown field", "shell"],
    );
    bad(
        "[global]\nscript_user = \"no-such-user-vipd\"\n",
        2,
        &["global.script_user", "unknown user"],
    );
    bad("[vrrp_script.\"a b\"]\nscript = \"/bin/true\"\n", 1, &["names use"]);
    // Files and processes.
    bad(
        "[vrrp_track_file.f]\nfile = \"prio\"\n",
        2,
        &["vrrp_track_file.f.file", "absolute"],
    );
    bad(
        "[vrrp_track_file.f]\nfile = \"/run/p\"\nweight = 255\n",
        3,
        &["-254..=254"],
    );
    bad(
        "[vrrp_track_process.p]\nprocess = \"nginx\"\nquorum = 0\n",
        3,
        &["vrrp_track_process.p.quorum"],
    );
    bad(
        "[vrrp_track_process.p]\nprocess = \"nginx\"\nquorum = 3\nquorum_max = 2\n",
        4,
        &["quorum_max", "below quorum"],
    );
    bad(
        "[vrrp_track_process.p]\nprocess = \"nginx x\"\nparam_match = \"fuzzy\"\n",
        3,
        &["param_match", "\"initial\""],
    );
    bad(
        "[vrrp_track_process.p]\nprocess = \"a-very-long-process-name\"\n",
        2,
        &["15 characters", "full_command"],
    );
}

#[test]
fn track_virtual_server_quorum_is_checked_against_its_backends() {
    let vs = "[virtual_server.web]\nlisten = \"192.0.2.100:80\"\nreal_server = [{ address = \"198.51.100.1:80\" }, { address = \"198.51.100.2:80\" }]\n";
    let ok = format!("{vs}{TRACK_BASE}track_virtual_server = [{{ name = \"web\", quorum = 2, weight = -60 }}]\n");
    let c = config::parse(&ok, "t.toml").unwrap();
    let t = &c.instances[0].track.virtual_servers[0];
    assert_eq!((t.name.as_str(), t.quorum, t.weight), ("web", 2, -60));
    bad(
        &format!("{vs}{TRACK_BASE}track_virtual_server = [{{ name = \"web\", quorum = 3 }}]\n"),
        8,
        &["track_virtual_server.quorum", "1..=2", "2 real servers"],
    );
}

#[test]
fn script_security_refuses_root_scripts_others_can_change() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("vipd-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("chk.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o777)).unwrap();
    let text = format!(
        "[global]\nenable_script_security = true\n[vrrp_script.c]\nscript = \"{}\"\n",
        script.display()
    );
    bad(&text, 4, &["vrrp_script.c.script", "writable by a non-root user"]);
    // Not run as root: allowed.
    let as_nobody = format!("{text}user = \"nobody\"\n");
    config::parse(&as_nobody, "t.toml").unwrap();
    // Not found in the clean PATH.
    bad(
        "[global]\nenable_script_security = true\n[vrrp_script.c]\nscript = \"no-such-prog-vipd\"\n",
        4,
        &["not found"],
    );
    // A root-owned system program is fine.
    config::parse(
        "[global]\nenable_script_security = true\n[vrrp_script.c]\nscript = \"true\"\n",
        "t.toml",
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A notify script with its own user (keepalived `notify_master "/p a" USER
/// [GROUP]`): `{ script, user, group }`, validated like `vrrp_script.user`.
#[test]
fn notify_script_with_a_user() {
    let v = |key: &str, val: &str| format!("{BASE}{key} = {val}\n");
    let c = config::parse(
        &format!(
            "[global]\nscript_user = \"root\"\n{BASE}notify_master = {{ script = \"/bin/m 'a b'\", user = \"nobody\" }}\n\
             notify = {{ script = [\"/bin/n\"], user = \"nobody nogroup\" }}\nnotify_backup = \"/bin/b\"\n"
        ),
        "t.toml",
    )
    .unwrap();
    let n = &c.instances[0].notify;
    assert_eq!(n.master, Some(vec!["/bin/m".to_string(), "a b".to_string()]));
    let m = n.users.master.as_ref().unwrap();
    assert_eq!((m.user.as_str(), m.uid), ("nobody", 65534));
    assert_eq!(n.users.notify.as_ref().map(|u| u.gid), Some(65534));
    // The plain form keeps the default (global.script_user, applied when run).
    assert_eq!((n.backup.is_some(), n.users.backup.as_ref()), (true, None));
    // Each script of a state comes with its user, the generic one last.
    let cmds = n.commands_as("INSTANCE", "VI_1", config::NotifyState::Master, 100);
    assert_eq!(cmds.len(), 2);
    assert_eq!(cmds[0].1.as_ref().map(|u| u.user.as_str()), Some("nobody"));
    assert_eq!(cmds[1].0.last().map(|s| s.as_str()), Some("100"));
    // Errors, at the key inside the table.
    bad(
        &v("notify_master", "{ script = \"/bin/m\", user = \"no-such-user-vipd\" }"),
        5,
        &["vrrp_instance.VI_1.notify_master.user", "unknown user"],
    );
    bad(
        &v("notify_fault", "{ script = \"/bin/m\", group = \"nogroup\" }"),
        5,
        &["notify_fault.group", "group needs user"],
    );
    bad(
        &v("notify_stop", "{ script = \"m\", user = \"nobody\" }"),
        5,
        &["notify_stop.script", "absolute path"],
    );
    bad(&v("notify", "{ script = \"/bin/m\", usr = \"nobody\" }"), 5, &["usr"]);
    bad(&v("notify", "{ user = \"nobody\" }"), 5, &["script"]);
    // A sync group's notify scripts take it too.
    let g = format!(
        "[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\nnotify_stop = {{ script = \"/bin/s\", user = \"nobody\" }}\n{TRACK_BASE}\
         [vrrp_instance.VI_2]\ninterface = \"eth0\"\nvirtual_router_id = 2\nvirtual_ipaddress = [\"192.0.2.101/24\"]\n"
    );
    let c = config::parse(&g, "t.toml").unwrap();
    assert_eq!(c.sync_groups[0].notify.users.stop.as_ref().map(|u| u.uid), Some(65534));
}

/// Notify scripts (docs/notify-sync.md): argv arrays or keepalived-split
/// strings, absolute programs; `script_user` must exist; the timeout's range.
#[test]
fn notify_script_errors() {
    let v = |key: &str, val: &str| format!("{BASE}{key} = {val}\n");
    bad(
        &v("notify", "\"notify.sh\""),
        5,
        &["vrrp_instance.VI_1.notify", "absolute path"],
    );
    bad(
        &v("notify_master", "[]"),
        5,
        &["vrrp_instance.VI_1.notify_master", "empty"],
    );
    bad(
        &v("notify_backup", "\"/bin/x 'a b\""),
        5,
        &["notify_backup", "unclosed"],
    );
    bad(&v("notify_fault", "42"), 5, &["a command"]);
    bad(&v("notify_stopp", "\"/bin/x\""), 5, &["notify_stopp"]);
    let g = |body: &str| format!("[global]\n{body}\n{BASE}");
    bad(
        &g("script_user = \"no-such-user-vipd\""),
        2,
        &["global.script_user", "unknown user"],
    );
    bad(
        &g("script_user = \"root no-such-group-vipd\""),
        2,
        &["script_user", "unknown group"],
    );
    bad(&g("script_user = \"a b c\""), 2, &["script_user", "USER GROUP"]);
    bad(
        &g("notify_script_timeout = 0"),
        2,
        &["global.notify_script_timeout", "1s to 1000s"],
    );
    bad(
        &g("notify_script_timeout = \"20m\""),
        2,
        &["notify_script_timeout", "1s to 1000s"],
    );
    let ok = config::parse(
        &format!(
            "[global]\nscript_user = \"root\"\nnotify_script_timeout = \"5s\"\n{BASE}notify = \"/bin/n 'a b'\"\nnotify_stop = [\"/bin/s\", \"x y\"]\n"
        ),
        "t.toml",
    )
    .expect("valid");
    assert_eq!(ok.global.script_user.as_ref().map(|u| u.user.as_str()), Some("root"));
    assert_eq!(ok.global.notify_script_timeout, Micros::from_secs(5));
    let n = &ok.instances[0].notify;
    assert_eq!(n.notify, Some(vec!["/bin/n".to_string(), "a b".to_string()]));
    assert_eq!(n.stop, Some(vec!["/bin/s".to_string(), "x y".to_string()]));
    assert_eq!(
        config::parse(BASE, "t.toml").unwrap().global.notify_script_timeout,
        Micros::from_secs(30)
    );
}

/// `[vrrp_sync_group.NAME]`: unknown members, a member twice or in two
/// groups, fewer than two members, mixed preempt, an address owner, weighted
/// member tracking: each a specific error on the member's line.
#[test]
fn sync_group_errors() {
    let two = |a: &str, b: &str| {
        format!(
            "[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n{a}\n\
             [vrrp_instance.VI_2]\ninterface = \"eth0\"\nvirtual_router_id = 52\nvirtual_ipaddress = [\"192.0.2.101/24\"]\n{b}\n"
        )
    };
    let base = two("", "");
    // Lines: VI_1 1-5, VI_2 6-10, the group from 11.
    let grp = |body: &str| format!("{base}[vrrp_sync_group.G]\n{body}\n");
    bad(
        &grp("group = [\"VI_1\", \"VI_3\"]"),
        12,
        &["vrrp_sync_group.G.group", "\"VI_3\" is not a vrrp_instance"],
    );
    bad(&grp("group = [\"VI_1\", \"VI_1\"]"), 12, &["VI_1 is listed twice"]);
    bad(&grp("group = [\"VI_1\"]"), 12, &["at least two instances"]);
    bad(
        &format!("{base}[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\n[vrrp_sync_group.H]\ngroup = [\"VI_2\", \"VI_1\"]\n"),
        14,
        &["vrrp_sync_group.H.group", "VI_2 is already a member of vrrp_sync_group.G"],
    );
    bad(
        &grp("group = [\"VI_1\", \"VI_2\"]\ntrack_scrip = []"),
        13,
        &["track_scrip"],
    );
    let g2 = "[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\n";
    bad(
        &format!("{}{g2}", two("", "nopreempt = true")),
        12,
        &["mixes preempt and nopreempt"],
    );
    bad(
        &format!("{}{g2}", two("priority = 255", "")),
        12,
        &["VI_1 has priority 255", "not allowed in a sync group"],
    );
    bad(
        &format!(
            "{}{g2}",
            two("track_interface = [{ interface = \"eth1\", weight = -20 }]", "")
        ),
        12,
        &["VI_1 tracks eth1 with weight -20", "sync_group_tracking_weight"],
    );
    bad(
        &format!("{}{g2}notify_master = \"x\"\n", two("", "")),
        13,
        &["vrrp_sync_group.G.notify_master", "absolute path"],
    );
    // Accepted: weights kept on request; the group's track_interface reaches every member.
    let ok = config::parse(
        &format!(
            "{}{g2}sync_group_tracking_weight = true\ntrack_interface = [{{ interface = \"up0\" }}]\nnotify = \"/bin/g\"\n",
            two("track_interface = [{ interface = \"eth1\", weight = -20 }]", "")
        ),
        "t.toml",
    )
    .expect("valid");
    assert_eq!(ok.sync_groups[0].members, ["VI_1", "VI_2"]);
    assert_eq!(ok.sync_groups[0].notify.notify, Some(vec!["/bin/g".to_string()]));
    for i in &ok.instances {
        assert_eq!(i.sync_group.as_deref(), Some("G"));
        assert!(i.track_interface.iter().any(|t| t.interface == "up0" && t.weight == 0));
    }
}

/// A sync group's `track_script` / `track_file` / `track_process` reach every
/// member; an unknown tracker and a member's weighted tracker are errors.
#[test]
fn sync_group_tracking_errors() {
    let base = "[vrrp_script.chk]\nscript = \"/bin/true\"\n\
                [vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"192.0.2.100/24\"]\n\
                [vrrp_instance.VI_2]\ninterface = \"eth0\"\nvirtual_router_id = 52\nvirtual_ipaddress = [\"192.0.2.101/24\"]\n";
    // Lines: script 1-2, VI_1 3-6, VI_2 7-10, group 11-.
    let g = |body: &str| format!("{base}[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\n{body}\n");
    bad(
        &g("track_script = [{ name = \"nope\" }]"),
        13,
        &["vrrp_sync_group.G.track_script.name", "no [vrrp_script.nope]"],
    );
    bad(
        &g("track_script = [{ name = \"chk\" }, { name = \"chk\" }]"),
        13,
        &["tracked twice"],
    );
    bad(
        &g("track_script = [{ name = \"chk\", weight = 300 }]"),
        13,
        &["vrrp_sync_group.G.track_script.weight", "-253..=253"],
    );
    let weighted = base.replace(
        "virtual_router_id = 51\n",
        "virtual_router_id = 51\ntrack_script = [{ name = \"chk\", weight = -10 }]\n",
    );
    bad(
        &format!("{weighted}[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\n"),
        13,
        &[
            "VI_1 has track_script chk with weight -10",
            "sync_group_tracking_weight",
        ],
    );
    let ok = config::parse(&g("track_script = [{ name = \"chk\" }]"), "t.toml").expect("valid");
    for i in &ok.instances {
        assert_eq!(i.track.scripts.len(), 1, "{}", i.name);
        assert_eq!(
            (i.track.scripts[0].name.as_str(), i.track.scripts[0].weight),
            ("chk", 0)
        );
    }
}
