//! `vipctl import-keepalived`: keepalived's own samples convert and pass
//! `vipd --check`; each directive's conversion; include/glob/macro/conditional
//! reading; exit statuses; and a converted config failing over in namespaces.
#![allow(non_snake_case)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{netns_lock, poll_until, run, sh, Lab};
use vipd::keepalived::{import_text, vipd_has, Kind};

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const SAMPLES: &str = "/usr/share/doc/keepalived/samples";

/// A fresh temporary directory for one test.
fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vipd-import-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn import(args: &[&str]) -> Output {
    Command::new(VIPCTL)
        .arg("import-keepalived")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vipctl")
}

fn vipd_check(path: &Path) -> Output {
    Command::new(VIPD)
        .args(["--check", "-c"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run vipd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The converted TOML of `conf` without the two header lines, and whether
/// something was not converted.
fn conv(conf: &str) -> (String, bool) {
    let imp = import_text(conf, "k.conf", Path::new("/nonexistent"), "node1").expect("parses");
    let body: Vec<&str> = imp.toml.lines().skip(2).collect();
    (body.join("\n").trim().to_string() + "\n", imp.incomplete())
}

/// A full instance around `extra` keepalived lines.
fn inst(extra: &str) -> String {
    format!(
        "vrrp_instance VI_1 {{\n interface eth0\n virtual_router_id 51\n priority 100\n virtual_ipaddress {{\n  192.0.2.100/24\n }}\n{extra}\n}}\n"
    )
}

/// The instance's TOML around `extra` (the lines the directive converts to).
fn inst_toml(extra: &str) -> String {
    format!(
        "[vrrp_instance.VI_1]\nversion = 2  # keepalived's default (vipd's is 3)\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\nvirtual_ipaddress = [\n  \"192.0.2.100/24\",\n]\n{extra}"
    )
}

/// The converted text must also be a configuration vipd accepts.
fn assert_vipd_accepts(toml: &str) {
    if let Err(e) = vipd::config::parse(toml, "converted.toml") {
        panic!("vipd refuses the converted config: {e}\n{toml}");
    }
}

#[test]
fn every_keepalived_sample_converts_and_passes_vipd_check() {
    let dir = Path::new(SAMPLES);
    let mut samples: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{SAMPLES}: {e} (scripts/deps installs keepalived, which ships them)"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("keepalived.conf."))
        })
        .collect();
    samples.sort();
    assert!(
        samples.len() >= 20,
        "expected keepalived's samples, found {}",
        samples.len()
    );
    let out_dir = tmpdir("samples");
    for s in &samples {
        // conditional_conf is written for `-i high` and `-i low`: try both.
        for id in ["high", "low"] {
            let name = format!("{}.{id}.toml", s.file_name().unwrap().to_string_lossy());
            let out = out_dir.join(name);
            let r = import(&["-i", id, "-o", out.to_str().unwrap(), s.to_str().unwrap()]);
            let code = r.status.code();
            assert!(
                code == Some(0) || code == Some(3),
                "{}: exit {code:?}\n{}",
                s.display(),
                text(&r.stderr)
            );
            // Exit 3 lists on stderr what the comments in the file say.
            let listed = text(&r.stderr).matches(": not converted: ").count();
            let commented = std::fs::read_to_string(&out).unwrap().matches("not converted").count();
            assert_eq!(code == Some(3), listed > 0, "{}: {}", s.display(), text(&r.stderr));
            assert!(
                commented >= 1 || listed == 0,
                "{}: stderr lists what the file does not mark",
                s.display()
            );
            let c = vipd_check(&out);
            assert!(
                c.status.success(),
                "{}: vipd --check refuses the conversion: {}\n{}",
                s.display(),
                text(&c.stderr),
                std::fs::read_to_string(&out).unwrap_or_default()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn global_defs_router_id_and_what_is_not_converted() {
    let (t, nc) = conv("global_defs {\n router_id lb1\n smtp_server 192.0.2.9\n vrrp_version 3\n}\n");
    assert!(nc);
    assert!(t.starts_with("[global]\n"), "{t}");
    assert!(t.contains("router_id = \"lb1\"\n"), "{t}");
    assert!(
        t.contains("# not converted: smtp_server 192.0.2.9: vipd sends no e-mail"),
        "{t}"
    );
    // vrrp_version becomes each instance's version.
    let (t, _) = conv(&format!("global_defs {{\n vrrp_version 3\n}}\n{}", inst("")));
    assert!(t.contains("version = 3  # global_defs vrrp_version\n"), "{t}");
    assert_vipd_accepts(&t);
}

#[test]
fn instance_basic_keys_round_trip() {
    let (t, nc) = conv(&inst(
        " advert_int 2\n nopreempt\n preempt_delay 30\n garp_master_delay 10\n garp_master_repeat 3\n state BACKUP",
    ));
    assert!(!nc, "{t}");
    assert_eq!(
        t,
        inst_toml(
            "advert_int = 2\nnopreempt = true\npreempt_delay = 30\ngarp_master_delay = 10\ngarp_master_repeat = 3\n# state BACKUP: vipd always starts as BACKUP\n"
        )
    );
    assert_vipd_accepts(&t);
}

#[test]
fn state_master_is_explained_and_without_priority_means_owner() {
    let conf = "vrrp_instance VI_1 {\n state MASTER\n interface eth0\n virtual_router_id 7\n virtual_ipaddress {\n  192.0.2.1\n }\n}\n";
    let (t, nc) = conv(conf);
    assert!(!nc, "a note is not a failure to convert: {t}");
    assert!(
        t.contains("priority = 255  # keepalived: state MASTER without a priority is the address owner (255)"),
        "{t}"
    );
    assert!(
        t.contains("# state MASTER: keepalived's initial state. vipd elects by priority"),
        "{t}"
    );
    assert_vipd_accepts(&t);
}

#[test]
fn advert_int_is_rounded_to_what_the_version_carries() {
    let (t, _) = conv(&inst(" advert_int 0.5"));
    assert!(
        t.contains("advert_int = 1  # keepalived: 0.5; rounded to whole seconds in VRRPv2"),
        "{t}"
    );
    let (t, _) = conv(&inst(" version 3\n advert_int 0.125"));
    assert!(
        t.contains("advert_int = 0.13  # keepalived: 0.125; rounded to 10 ms steps in VRRPv3"),
        "{t}"
    );
    assert_vipd_accepts(&t);
}

#[test]
fn authentication_pass_and_ah() {
    let (t, nc) = conv(&inst(" authentication {\n  auth_type PASS\n  auth_pass secret\n }"));
    assert!(!nc);
    assert!(
        t.contains("authentication = { auth_type = \"PASS\", auth_pass = \"secret\" }\n"),
        "{t}"
    );
    assert_vipd_accepts(&t);
    let (t, _) = conv(&inst(" authentication {\n  auth_type PASS\n  auth_pass 0123456789\n }"));
    assert!(
        t.contains("auth_pass = \"01234567\" }  # keepalived sends only the first 8 bytes"),
        "{t}"
    );
    let (t, nc) = conv(&inst(" authentication {\n  auth_type AH\n  auth_pass x\n }"));
    assert!(
        nc && t.contains("# not converted: authentication { auth_type AH auth_pass x }: IPSEC-AH"),
        "{t}"
    );
}

#[test]
fn virtual_ipaddress_options_ranges_and_families() {
    let conf = "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 5\n virtual_ipaddress {\n  192.0.2.10/24 dev eth0 scope global\n  192.0.2.11/24 dev eth1 label eth1:1\n  192.0.2.20-22\n  2001:db8::1\n }\n}\n";
    let (t, nc) = conv(conf);
    assert!(nc);
    let want = "virtual_ipaddress = [\n  \"192.0.2.10/24\",\n  \"192.0.2.11/24\",  # not converted: dev eth1 (vipd adds an instance's addresses to its interface); label eth1:1 (vipd adds addresses without a label)\n  \"192.0.2.20\",\n  \"192.0.2.21\",\n  \"192.0.2.22\",\n  # not converted: 2001:db8::1: one address family per instance";
    assert!(t.contains(want), "{t}");
    assert_vipd_accepts(&t);
}

#[test]
fn unicast_and_track_interface() {
    let (t, nc) = conv(&inst(
        " unicast_src_ip 192.0.2.1\n unicast_peer {\n  192.0.2.2\n  192.0.2.3 min_ttl 255\n }\n track_interface {\n  eth1\n  eth2 weight -20\n }",
    ));
    assert!(nc, "min_ttl is not converted");
    assert!(t.contains("unicast_src_ip = \"192.0.2.1\"\nunicast_peer = [\n  \"192.0.2.2\",\n  \"192.0.2.3\",  # not converted: min_ttl 255 (vipd has no per-peer TTL limits)\n]\n"), "{t}");
    assert!(
        t.contains("track_interface = [\n  { interface = \"eth1\" },\n  { interface = \"eth2\", weight = -20 },\n]\n"),
        "{t}"
    );
    assert_vipd_accepts(&t);
}

#[test]
fn vrrp_script_and_track_script() {
    let conf = format!(
        "vrrp_script chk {{\n script \"/usr/bin/pgrep haproxy\"\n interval 2\n weight -20\n fall 2\n rise 1\n}}\n{}",
        inst(" track_script {\n  chk\n }")
    );
    let (t, nc) = conv(&conf);
    if vipd_has::TRACK_SCRIPT {
        assert!(!nc, "{t}");
        assert!(t.contains("[vrrp_script.chk]\nscript = \"/usr/bin/pgrep haproxy\"\ninterval = 2\nweight = -20\nfall = 2\nrise = 1\n"), "{t}");
        assert!(t.contains("track_script = [\n  { name = \"chk\" },\n]\n"), "{t}");
        assert_vipd_accepts(&t);
    } else {
        assert!(nc);
        assert!(t.contains("# not converted (vipd does not support vrrp_script yet): vrrp_script chk { script \"/usr/bin/pgrep haproxy\" interval 2 weight -20 fall 2 rise 1 }"), "{t}");
        assert!(
            t.contains("# not converted (vipd does not support track_script yet): track_script { chk }"),
            "{t}"
        );
    }
}

/// keepalived 2.2's `reverse`: on the definitions' `weight N reverse` and on
/// the instance's references (`noreverse` undoes a definition's).
#[test]
fn reverse_on_scripts_files_and_processes_converts() {
    let conf = format!(
        "vrrp_script chk {{\n script \"/bin/true\"\n weight -20 reverse\n}}\n\
         vrrp_track_file tf {{\n file /run/prio\n weight 3 reverse\n}}\n\
         vrrp_track_process tp {{\n process haproxy\n weight 10\n}}\n{}",
        inst(" track_script {\n  chk weight -30 noreverse\n }\n track_file {\n  tf\n }\n track_process {\n  tp weight 5 reverse\n }\n track_interface {\n  eth1 weight 7 reverse\n }")
    );
    let (t, nc) = conv(&conf);
    assert!(!nc, "{t}");
    assert!(
        t.contains("[vrrp_script.chk]\nscript = \"/bin/true\"\nweight = -20\nreverse = true\n"),
        "{t}"
    );
    assert!(
        t.contains("[vrrp_track_file.tf]\nfile = \"/run/prio\"\nweight = 3\nreverse = true\n"),
        "{t}"
    );
    assert!(
        t.contains("[vrrp_track_process.tp]\nprocess = [\"haproxy\"]\nweight = 10\n"),
        "{t}"
    );
    assert!(t.contains("{ name = \"chk\", weight = -30, reverse = false }"), "{t}");
    assert!(t.contains("{ name = \"tp\", weight = 5, reverse = true }"), "{t}");
    assert!(
        t.contains("{ interface = \"eth1\", weight = 7, reverse = true }"),
        "{t}"
    );
    assert_vipd_accepts(&t);
    let c = vipd::config::parse(&t, "converted.toml").expect("parses");
    assert!(c.track.scripts["chk"].reverse && c.track.files["tf"].reverse);
    let tr = &c.instances[0].track;
    assert!(!tr.scripts[0].reverse && tr.files[0].reverse && tr.processes[0].reverse);
    // Anything else after the weight is still refused, with the reason.
    let (t, nc) = conv("vrrp_script chk {\n script \"/bin/true\"\n weight -20 sideways\n}\n");
    assert!(nc && t.contains("allowed: weight N [reverse]"), "{t}");
}

/// keepalived's `notify_* "SCRIPT" USER [GROUP]` becomes `{ script, user, group }`.
#[test]
fn notify_scripts_with_a_user() {
    let (t, nc) = conv(&inst(
        " notify_master \"/usr/local/bin/vrrp.sh MASTER\" nobody\n notify \"/bin/n.sh\" nobody nogroup\n notify_stop /bin/s.sh",
    ));
    assert!(!nc, "{t}");
    assert!(
        t.contains("notify_master = { script = \"/usr/local/bin/vrrp.sh MASTER\", user = \"nobody\" }\n"),
        "{t}"
    );
    assert!(
        t.contains("notify = { script = \"/bin/n.sh\", user = \"nobody\", group = \"nogroup\" }\n"),
        "{t}"
    );
    assert!(t.contains("notify_stop = \"/bin/s.sh\"\n"), "{t}");
    assert_vipd_accepts(&t);
    let c = vipd::config::parse(&t, "converted.toml").expect("parses");
    let n = &c.instances[0].notify;
    assert_eq!(n.users.master.as_ref().map(|u| u.user.as_str()), Some("nobody"));
    assert_eq!(
        (n.users.notify.as_ref().map(|u| u.gid), n.users.stop.as_ref()),
        (Some(65534), None)
    );
    // keepalived's ":GROUP" (supplementary groups) is not converted, with the reason.
    let (t, nc) = conv(&inst(" notify_backup /bin/b.sh nobody :nogroup"));
    assert!(nc && t.contains("supplementary groups"), "{t}");
    // A sync group's notify scripts too.
    let conf = format!(
        "vrrp_sync_group G {{\n group {{\n  VI_1\n  VI_2\n }}\n notify_fault /bin/f.sh nobody\n}}\n{}{}",
        inst(""),
        inst("")
            .replace("VI_1", "VI_2")
            .replace("51", "52")
            .replace("192.0.2.100", "192.0.2.101")
    );
    let (t, nc) = conv(&conf);
    assert!(
        !nc && t.contains("notify_fault = { script = \"/bin/f.sh\", user = \"nobody\" }"),
        "{t}"
    );
    assert_vipd_accepts(&t);
}

#[test]
fn notify_scripts() {
    let (t, nc) = conv(&inst(" notify /etc/vipd/notify.sh"));
    assert!(!nc && t.contains("notify = \"/etc/vipd/notify.sh\"\n"), "{t}");
    assert_vipd_accepts(&t);
    let (t, nc) = conv(&inst(" notify_master \"/usr/local/bin/vrrp.sh MASTER\""));
    if vipd_has::NOTIFY_STATES {
        assert!(
            !nc && t.contains("notify_master = \"/usr/local/bin/vrrp.sh MASTER\"\n"),
            "{t}"
        );
        assert_vipd_accepts(&t);
    } else {
        assert!(nc && t.contains("# not converted (vipd does not support notify_master yet): notify_master \"/usr/local/bin/vrrp.sh MASTER\""), "{t}");
    }
    let (t, nc) = conv(&inst(" notify \"/bin/n.sh arg\""));
    assert!(nc || vipd_has::NOTIFY_ARGS, "{t}");
}

#[test]
fn vmac_garp_refresh_and_sync_groups_follow_vipd_support() {
    let cases = [
        (vipd_has::USE_VMAC, " use_vmac", "use_vmac = true\n", "use_vmac"),
        (
            vipd_has::GARP_REFRESH,
            " garp_master_refresh 60",
            "garp_master_refresh = 60\n",
            "garp_master_refresh",
        ),
    ];
    for (on, line, want, what) in cases {
        let (t, nc) = conv(&inst(line));
        if on {
            assert!(!nc && t.contains(want), "{t}");
            assert_vipd_accepts(&t);
        } else {
            assert!(
                nc && t.contains(&format!("# not converted (vipd does not support {what} yet)")),
                "{t}"
            );
        }
    }
    let second = inst("")
        .replace("VI_1", "VI_2")
        .replace(" 51", " 52")
        .replace("192.0.2.100", "192.0.2.101");
    let group = |members: &str| format!("vrrp_sync_group G {{\n group {{\n{members} }}\n}}\n");
    let (t, nc) = conv(&format!("{}{second}{}", inst(""), group("  VI_1\n  VI_2\n")));
    if vipd_has::SYNC_GROUP {
        assert!(
            !nc && t.contains("[vrrp_sync_group.G]\ngroup = [\"VI_1\", \"VI_2\"]\n"),
            "{t}"
        );
        assert_vipd_accepts(&t);
    } else {
        assert!(
            nc && t.contains(
                "# not converted (vipd does not support vrrp_sync_group yet): vrrp_sync_group G { group { VI_1 VI_2 } }"
            ),
            "{t}"
        );
    }
    // A group of one: keepalived ignores it, and so does the conversion.
    let (t, nc) = conv(&format!("{}{}", inst(""), group("  VI_1\n")));
    assert!(
        nc && t.contains("keepalived ignores it") && !t.contains("\n[vrrp_sync_group"),
        "{t}"
    );
    assert_vipd_accepts(&t);
}

#[test]
fn virtual_server_tcp_check_scheduler_and_vip_tie() {
    let conf = format!(
        "{}virtual_server 192.0.2.100 80 {{\n delay_loop 5\n lb_algo wlc\n lb_kind NAT\n protocol TCP\n sorry_server 198.51.100.9 80\n real_server 198.51.100.1 80 {{\n  weight 2\n  TCP_CHECK {{\n   connect_timeout 2\n   retry 2\n  }}\n }}\n real_server 198.51.100.2 80 {{\n  weight 1\n  TCP_CHECK {{\n   connect_timeout 2\n   retry 2\n  }}\n }}\n}}\n",
        inst("")
    );
    let (t, nc) = conv(&conf);
    assert!(!nc, "{t}");
    let want = "[virtual_server.vs_192_0_2_100_80]
listen = \"192.0.2.100:80\"
protocol = \"tcp\"
vrrp_instance = \"VI_1\"  # 192.0.2.100 is a VIP of VI_1: serve while it is master (keepalived's IPVS rules stay loaded, the VIP moves)
lb_algo = \"lc\"  # wlc: vipd's lc weighs least connections by weight
# lb_kind NAT: vipd proxies in user space; backends see vipd's address as the client's (no route back through the director needed)
check = { type = \"tcp\", interval = 5, timeout = 2, rise = 1, fall = 3 }  # keepalived: delay_loop = interval, connect_timeout = timeout, retry + 1 = fall, up after one success
real_server = [
  { address = \"198.51.100.9:80\", backup = true },  # sorry_server: a backup used while every other backend is down
  { address = \"198.51.100.1:80\", weight = 2 },
  { address = \"198.51.100.2:80\", weight = 1 },
]
";
    assert!(t.ends_with(want), "{t}");
    assert_vipd_accepts(&t);
}

#[test]
fn schedulers_map_to_vipd_algorithms() {
    for (ka, vipd) in [
        ("rr", "rr"),
        ("wrr", "wrr"),
        ("lc", "lc"),
        ("wlc", "lc"),
        ("sh", "sh"),
        ("mh", "maglev"),
    ] {
        let (t, nc) = conv(&format!(
            "virtual_server 192.0.2.1 80 {{\n lvs_sched {ka}\n real_server 198.51.100.1 80 {{\n }}\n}}\n"
        ));
        assert!(!nc, "{t}");
        assert!(t.contains(&format!("lb_algo = \"{vipd}\"")), "{ka}: {t}");
        assert_vipd_accepts(&t);
    }
    let (t, nc) =
        conv("virtual_server 192.0.2.1 80 {\n lb_algo lblc\n lb_kind DR\n real_server 198.51.100.1 80 {\n }\n}\n");
    assert!(nc);
    assert!(
        t.contains("# not converted: lb_algo lblc: vipd has rr, wrr, lc (weighted), sh and maglev"),
        "{t}"
    );
    assert!(
        t.contains("# not converted: lb_kind DR: vipd proxies in user space"),
        "{t}"
    );
    assert_vipd_accepts(&t);
}

#[test]
fn http_ssl_and_misc_checks() {
    let http = "virtual_server 192.0.2.1 8080 {\n virtualhost www.example.org\n real_server 198.51.100.1 8080 {\n  HTTP_GET {\n   url {\n    path /health\n    status_code 200-399\n   }\n   connect_port 8081\n   connect_timeout 3\n  }\n }\n}\n";
    let (t, nc) = conv(http);
    assert!(!nc, "{t}");
    assert!(t.contains("check = { type = \"http\", port = 8081, path = \"/health\", expect_status = [200, 399], host = \"www.example.org\", interval = 60, timeout = 3, rise = 1, fall = 2 }"), "{t}");
    assert_vipd_accepts(&t);
    let (t, nc) = conv(&http.replace("HTTP_GET", "SSL_GET"));
    assert!(nc);
    assert!(
        t.contains("check = { type = \"tcp\", port = 8081, interval = 60"),
        "{t}"
    );
    assert!(t.contains("# not converted: SSL_GET: vipd's checks have no TLS"), "{t}");
    assert_vipd_accepts(&t);
    let misc = "virtual_server 192.0.2.1 53 {\n protocol UDP\n delay_loop 10\n real_server 198.51.100.1 53 {\n  MISC_CHECK {\n   misc_path \"/usr/local/bin/check_dns 198.51.100.1\"\n   misc_timeout 4\n  }\n }\n real_server 198.51.100.2 53 {\n  MISC_CHECK {\n   misc_path \"/usr/local/bin/check_dns 198.51.100.2\"\n   misc_timeout 4\n  }\n }\n}\n";
    let (t, nc) = conv(misc);
    assert!(!nc, "{t}");
    assert!(
        t.contains("[virtual_server.vs_192_0_2_1_53_udp]\nlisten = \"192.0.2.1:53\"\nprotocol = \"udp\"\n"),
        "{t}"
    );
    assert!(t.contains("check = { type = \"exec\", command = [\"/usr/local/bin/check_dns\", \"{ip}\"], interval = 10, timeout = 4, rise = 1, fall = 1 }"), "{t}");
    assert_vipd_accepts(&t);
}

#[test]
fn ipvs_only_services_are_refused_with_a_reason() {
    let (t, nc) = conv("virtual_server fwmark 1 {\n real_server 198.51.100.1 80 {\n }\n}\nstatic_ipaddress {\n 192.0.2.5 dev eth0\n}\n");
    assert!(nc);
    assert!(t.contains("# not converted: virtual_server fwmark 1 { real_server 198.51.100.1 80 { } }: fwmark services are IPVS-only"), "{t}");
    assert!(
        t.contains("# not converted: static_ipaddress { 192.0.2.5 dev eth0 }: vipd manages only virtual addresses"),
        "{t}"
    );
    assert_vipd_accepts(&t);
}

#[test]
fn include_globs_relative_to_the_including_file() {
    let d = tmpdir("incl");
    std::fs::create_dir_all(d.join("conf.d/sub")).unwrap();
    std::fs::write(
        d.join("keepalived.conf"),
        "global_defs {\n router_id main\n}\ninclude conf.d/*.conf\ninclude missing/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        d.join("conf.d/b.conf"),
        inst("")
            .replace("VI_1", "VI_B")
            .replace("192.0.2.100", "192.0.2.102")
            .replace(" 51", " 52"),
    )
    .unwrap();
    // a.conf includes a path relative to itself (conf.d/), not to keepalived.conf.
    std::fs::write(d.join("conf.d/a.conf"), "include sub/{x,y}.inc\n").unwrap();
    std::fs::write(d.join("conf.d/sub/x.inc"), inst("")).unwrap();
    std::fs::write(d.join("conf.d/ignored.txt"), "garbage {\n").unwrap();
    let out = d.join("out.toml");
    let r = import(&["-o", out.to_str().unwrap(), d.join("keepalived.conf").to_str().unwrap()]);
    let t = std::fs::read_to_string(&out).unwrap();
    // missing/ matches nothing: listed, like keepalived's log line (sub/y.inc
    // missing is fine: the glob matched sub/x.inc).
    assert_eq!(r.status.code(), Some(3), "{}", text(&r.stderr));
    assert!(text(&r.stderr).contains("no file matched"), "{}", text(&r.stderr));
    let a = t.find("[vrrp_instance.VI_1]").expect("x.inc via a.conf");
    let b = t.find("[vrrp_instance.VI_B]").expect("b.conf");
    assert!(a < b, "files are read in sorted order: {t}");
    assert!(vipd_check(&out).status.success());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn macros_and_conditionals_as_keepalived_expands_them() {
    let conf = "$IF=eth0\n$VIP=192.0.2.100\n$ADDRS= \\\n  ${VIP}/24 \\\n  192.0.2.101/24\n@node1 $PRIO=150\n@^node1 $PRIO=100\nvrrp_instance VI_1 {\n interface $IF\n virtual_router_id 51\n priority $PRIO\n virtual_ipaddress {\n  $ADDRS\n }\n@node2 nopreempt\n}\n";
    let d = tmpdir("macro");
    let f = d.join("k.conf");
    std::fs::write(&f, conf).unwrap();
    for (id, prio, nopreempt) in [("node1", 150, false), ("node2", 100, true)] {
        let r = import(&["--config-id", id, f.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        let t = text(&r.stdout);
        assert!(t.contains("interface = \"eth0\"\n"), "{t}");
        assert!(t.contains(&format!("priority = {prio}\n")), "{id}: {t}");
        assert!(
            t.contains("virtual_ipaddress = [\n  \"192.0.2.100/24\",\n  \"192.0.2.101/24\",\n]"),
            "{t}"
        );
        assert_eq!(t.contains("nopreempt = true"), nopreempt, "{id}: {t}");
        assert_vipd_accepts(&t);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn exit_status_is_0_3_or_1_and_parse_errors_name_file_and_line() {
    let d = tmpdir("exit");
    let ok = d.join("ok.conf");
    std::fs::write(&ok, inst("")).unwrap();
    let r = import(&[ok.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(r.stderr.is_empty(), "{}", text(&r.stderr));
    let partial = d.join("partial.conf");
    std::fs::write(&partial, inst(" smtp_alert")).unwrap();
    let r = import(&[partial.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(3));
    let err = text(&r.stderr);
    assert!(
        err.contains(&format!(
            "{}:8: not converted: smtp_alert: vipd sends no e-mail",
            partial.display()
        )),
        "{err}"
    );
    assert!(text(&r.stdout).contains("# not converted: smtp_alert"));
    for (body, line, msg) in [
        (
            "vrrp_instance VI_1 {\n interface eth0\n",
            1,
            "block 'vrrp_instance' is not closed",
        ),
        ("global_defs {\n}\n}\n", 3, "extra '}'"),
        ("global_defs {\n router_id \"open\n}\n", 2, "unterminated quote"),
    ] {
        let bad = d.join("bad.conf");
        std::fs::write(&bad, body).unwrap();
        let out = d.join("never.toml");
        let r = import(&["-o", out.to_str().unwrap(), bad.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(1), "{body}");
        assert!(
            text(&r.stderr).contains(&format!("{}:{line}: {msg}", bad.display())),
            "{}",
            text(&r.stderr)
        );
        assert!(!out.exists(), "no output on a parse error");
    }
    let r = import(&[d.join("missing.conf").to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&d);
}

/// Notes (converted with a comment) are not failures; every finding is on
/// stderr and in the file.
#[test]
fn findings_are_in_file_order() {
    let imp = import_text(
        &inst(" smtp_alert\n state MASTER\n debug"),
        "k.conf",
        Path::new("/"),
        "h",
    )
    .unwrap();
    let kinds: Vec<(usize, Kind)> = imp.findings.iter().map(|f| (f.loc.line, f.kind)).collect();
    assert_eq!(
        kinds,
        [(8, Kind::NotConverted), (9, Kind::Note), (10, Kind::NotConverted)]
    );
}

// ---- a converted config runs: failover when the tracked thing dies ----

const VIP: &str = "192.0.2.100";

/// One keepalived.conf for both nodes (`@fe1`/`@fe2` lines), converted per
/// node with `-i`, run in two namespaces: fe1 is master; when what fe1
/// tracks dies (a process with vrrp_script/track_script where vipd has it,
/// else a link with track_interface), fe2 takes the VIP.
#[test]
fn converted_config_fails_over_when_the_tracked_thing_dies() {
    let _g = netns_lock();
    let mut lab = Lab::new("imp");
    let ns1 = lab.add_host("fe1", &["192.0.2.1/24"]);
    let ns2 = lab.add_host("fe2", &["192.0.2.2/24"]);
    let script = vipd_has::TRACK_SCRIPT;
    let pidfile = lab.dir.join("tracked.pid");
    let (track_def, track_use) = if script {
        lab.spawn("tracked", &ns1, &["sleep", "600"]);
        let pid = lab.pid("tracked").expect("tracked pid");
        std::fs::write(&pidfile, pid.to_string()).unwrap();
        (
            format!(
                "vrrp_script chk_tracked {{\n script \"/bin/kill -0 {pid}\"\n interval 0.2\n fall 1\n rise 1\n}}\n"
            ),
            // fe1 only: fe2 would see the same process die.
            "@fe1 track_script {\n@fe1  chk_tracked\n@fe1 }\n".to_string(),
        )
    } else {
        sh(&[
            "ip", "-n", &ns1, "link", "add", "trk", "type", "veth", "peer", "name", "trkp",
        ]);
        sh(&["ip", "-n", &ns1, "link", "set", "trkp", "up"]);
        sh(&["ip", "-n", &ns1, "link", "set", "trk", "up"]);
        (String::new(), "@fe1 track_interface {\n@fe1  trk\n@fe1 }\n".to_string())
    };
    let conf = format!(
        "! one file for both nodes\nglobal_defs {{\n@fe1 router_id fe1\n@fe2 router_id fe2\n}}\n{track_def}vrrp_instance VI_1 {{\n state BACKUP\n interface eth0\n virtual_router_id 51\n version 3\n advert_int 0.1\n@fe1 priority 150\n@fe2 priority 100\n virtual_ipaddress {{\n  {VIP}/24\n }}\n {track_use}}}\n"
    );
    let kconf = lab.dir.join("keepalived.conf");
    std::fs::write(&kconf, conf).unwrap();
    for node in ["fe1", "fe2"] {
        let out = lab.dir.join(format!("{node}.toml"));
        let r = import(&["-i", node, "-o", out.to_str().unwrap(), kconf.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        // Each vipd needs its own control socket in the shared /run.
        let t = std::fs::read_to_string(&out).unwrap().replacen(
            "[global]\n",
            &format!(
                "[global]\ncontrol_socket = \"{}\"\n",
                lab.dir.join(format!("{node}.sock")).display()
            ),
            1,
        );
        std::fs::write(&out, t).unwrap();
        assert!(vipd_check(&out).status.success());
    }
    for (node, ns) in [("fe1", &ns1), ("fe2", &ns2)] {
        let cfg = lab.dir.join(format!("{node}.toml")).display().to_string();
        lab.spawn(node, ns, &[VIPD, "-c", &cfg, "--log", "debug"]);
    }
    let holder = |lab: &Lab| -> Option<&'static str> {
        match (lab.has_addr(&ns1, VIP), lab.has_addr(&ns2, VIP)) {
            (true, false) => Some("fe1"),
            (false, true) => Some("fe2"),
            _ => None,
        }
    };
    let wait = |lab: &Lab, who: &str| {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            poll_until(
                &format!("{who} alone holds {VIP}"),
                Duration::from_secs(15),
                Duration::from_millis(20),
                || (holder(lab) == Some(who)).then_some(()),
            )
        }));
        if r.is_err() {
            lab.dump_logs();
            panic!("{who} never held {VIP} alone");
        }
    };
    wait(&lab, "fe1");
    if script {
        lab.signal("tracked", libc::SIGKILL, Duration::from_secs(5));
    } else {
        sh(&["ip", "-n", &ns1, "link", "set", "trk", "down"]);
    }
    wait(&lab, "fe2");
    let st = run(&[
        "ip",
        "netns",
        "exec",
        &ns1,
        VIPCTL,
        "--socket",
        lab.dir.join("fe1.sock").to_str().unwrap(),
        "status",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
    assert_eq!(v["instances"][0]["state"], "fault", "{}", text(&st.stdout));
}

#[test]
fn ipv6_instances_run_vrrpv3_as_in_keepalived() {
    let conf =
        "vrrp_instance V6 {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n  2001:db8::100/64\n }\n}\n";
    let (t, nc) = conv(conf);
    assert!(!nc, "{t}");
    assert!(
        t.contains("version = 3  # keepalived runs IPv6 instances as VRRPv3\n"),
        "{t}"
    );
    assert_vipd_accepts(&t);
    let (t, _) = conv(&conf.replace(" interface eth0\n", " interface eth0\n version 2\n"));
    assert!(
        t.contains("version = 3  # keepalived runs IPv6 instances as VRRPv3\n"),
        "{t}"
    );
    assert!(t.contains("# version 2: IPv6 needs VRRPv3"), "{t}");
    assert_vipd_accepts(&t);
}

#[test]
fn a_virtual_server_without_usable_backends_is_not_converted() {
    let (t, nc) = conv("virtual_server 192.0.2.1 80 {\n lb_algo rr\n real_server 198.51.100.1 0 {\n }\n}\n");
    assert!(nc);
    assert!(!t.contains("[virtual_server"), "{t}");
    assert!(t.contains("# not converted: the virtual server itself"), "{t}");
    assert_vipd_accepts(&t);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    /// Any text, however broken, gives a conversion or a parse error, never a
    /// panic; and a conversion is TOML that vipd's own parser reads as TOML.
    #[test]
    fn arbitrary_input_never_panics(
        parts in proptest::collection::vec(proptest::sample::select(vec![
            "vrrp_instance", "VI_1", "{", "}", "\n", " ", "\"", "#", "!", "$A=", "$A", "${A}", "@h ", "@^h ",
            "~SEQ(i,1,3)", "$i", "include", "/nonexistent/*", "virtual_ipaddress", "192.0.2.1", "192.0.2.1-300",
            "interface", "eth0", "virtual_router_id", "51", "priority", "-1", "state", "MASTER", "\\",
            "virtual_server", "real_server", "80", "HTTP_GET", "url", "path", "é", "track_script",
            "vrrp_script", "weight", "authentication", "auth_pass", "é\u{301}", "MISC_CHECK", "misc_path", "\u{1}", "\r", "\u{7f}", "\t",
        ]), 0..60)
    ) {
        let text: String = parts.concat();
        if let Ok(imp) = import_text(&text, "p.conf", Path::new("/nonexistent"), "h") {
            if let Err(e) = imp.toml.parse::<toml::Table>() {
                panic!("not TOML: {e}\n--- input\n{text}\n--- output\n{}", imp.toml);
            }
        }
    }
}

#[test]
fn clashes_vipd_refuses_are_not_converted() {
    // Same VRID on the same interface and family: the second instance.
    let second = inst("").replace("VI_1", "VI_2").replace("192.0.2.100", "192.0.2.101");
    let (t, nc) = conv(&format!("{}{second}", inst("")));
    assert!(nc);
    assert!(t.contains("# not converted: vrrp_instance VI_2 {"), "{t}");
    assert!(t.contains("VRID 51 on eth0 is already vrrp_instance VI_1"), "{t}");
    assert_vipd_accepts(&t);
    // Every address already taken: the instance as a whole; a virtual
    // server on the address is tied to the instance that holds it.
    let dup = inst("").replace("VI_1", "VI_2").replace(" 51", " 52");
    let vs = "virtual_server 192.0.2.100 80 {\n real_server 198.51.100.1 80 {\n }\n}\n";
    let (t, nc) = conv(&format!("{vs}{}{dup}", inst("")));
    assert!(nc);
    assert!(t.contains("# not converted: vrrp_instance VI_2 as a whole"), "{t}");
    assert!(t.contains("# not converted: 192.0.2.100: already a VIP of VI_1"), "{t}");
    assert!(!t.contains("[vrrp_instance.VI_2]"), "{t}");
    assert!(t.contains("vrrp_instance = \"VI_1\""), "{t}");
    assert_vipd_accepts(&t);
    // An instance that is not converted is not a virtual server's tie.
    let (t, _) = conv(&format!("{vs}{}", inst("").replace(" interface eth0\n", "")));
    assert!(!t.contains("vrrp_instance = "), "{t}");
    assert_vipd_accepts(&t);
}

/// What vipd's own validator refuses is commented out with vipd's reason,
/// so the output always passes `vipd --check`.
#[test]
fn what_vipd_refuses_is_commented_with_its_reason() {
    let (t, nc) = conv(&inst(" version 3\n advert_int 50"));
    assert!(nc);
    assert!(
        t.contains("# not converted: advert_int = 50: vipd refuses it: vrrp_instance.VI_1.advert_int:"),
        "{t}"
    );
    assert_vipd_accepts(&t);
    // A required key refused: the instance as a whole.
    let (t, nc) = conv(&inst("").replace("virtual_router_id 51", "virtual_router_id 300"));
    assert!(nc);
    assert!(
        t.contains("# not converted: [vrrp_instance.VI_1] as a whole: vipd refuses it"),
        "{t}"
    );
    assert!(!t.contains("\n[vrrp_instance"), "{t}");
    assert_vipd_accepts(&t);
}

/// The reader against keepalived itself: one file with an include glob,
/// definitions (one multiline), `~SEQ` and `@` conditionals; keepalived runs
/// it in a namespace and installs its VIPs; the importer must list exactly
/// those addresses.
#[test]
fn keepalived_installs_the_addresses_the_importer_reads() {
    let _g = netns_lock();
    let mut lab = Lab::new("imk");
    let ns = lab.add_host("ka", &["192.0.2.1/24"]);
    let d = lab.dir.clone();
    std::fs::create_dir_all(d.join("conf.d")).unwrap();
    std::fs::write(
        d.join("keepalived.conf"),
        "global_defs {\n router_id ka\n vrrp_version 3\n}\n$IF=eth0\n$NET=192.0.2\ninclude conf.d/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        d.join("conf.d/vi.conf"),
        "$MORE= \\\n  ${NET}.30/24 \\\n  ${NET}.31/24\n\
         vrrp_instance VI_1 {\n state MASTER\n interface $IF\n virtual_router_id 51\n advert_int 0.1\n\
         virtual_ipaddress {\n  ${NET}.20/24 ! a comment\n  $MORE\n~SEQ(i, 40, 2, 44)  ${NET}.${i}/24\n  $NET.99/24\n\
         @node1  ${NET}.50/24\n@^node1  ${NET}.60/24\n@node2  ${NET}.70/24\n }\n}\n",
    )
    .unwrap();
    let conf = d.join("keepalived.conf");
    let r = import(&["-i", "node1", conf.to_str().unwrap()]);
    // `$NET.99`: a name ends at a space, tab, ',' or ')' (or use ${NET}), so
    // neither keepalived nor the importer expands it: not an address.
    assert_eq!(r.status.code(), Some(3), "{}", text(&r.stderr));
    assert!(
        text(&r.stderr).contains("not converted: $NET.99/24: not an address"),
        "{}",
        text(&r.stderr)
    );
    let toml = text(&r.stdout);
    let mut ours: Vec<String> = toml
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"')?.split('"').next().map(str::to_string))
        .filter(|a| a.starts_with("192.0.2."))
        .collect();
    ours.sort();
    assert_eq!(
        ours,
        [
            "192.0.2.20/24",
            "192.0.2.30/24",
            "192.0.2.31/24",
            "192.0.2.40/24",
            "192.0.2.42/24",
            "192.0.2.44/24",
            "192.0.2.50/24"
        ],
        "{toml}"
    );
    let p = |f: &str| d.join(f).display().to_string();
    let conf_s = conf.display().to_string();
    let argv = [
        "keepalived",
        "--dont-fork",
        "--log-console",
        "--vrrp",
        "-i",
        "node1",
        "--use-file",
        &conf_s,
        "--pid",
        &p("ka.pid"),
        "--vrrp_pid",
        &p("ka-vrrp.pid"),
    ];
    lab.spawn("ka", &ns, &argv);
    let theirs = || -> Vec<String> {
        let out = run(&["ip", "-n", &ns, "-o", "-4", "addr", "show", "dev", "eth0"]);
        let mut v: Vec<String> = text(&out.stdout)
            .lines()
            .filter_map(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "inet")
                    .nth(1)
                    .map(str::to_string)
            })
            .filter(|a| a != "192.0.2.1/24")
            .collect();
        v.sort();
        v
    };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_until(
            "keepalived holds every VIP",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || (theirs() == ours).then_some(()),
        )
    }));
    if r.is_err() {
        lab.dump_logs();
        panic!("keepalived installed {:?}, the importer read {:?}", theirs(), ours);
    }
}

#[test]
fn scripts_with_shell_syntax_are_flagged() {
    let (t, nc) = conv("vrrp_script chk {\n script \"</dev/tcp/127.0.0.1/80\"\n interval 1\n}\n");
    if vipd_has::TRACK_SCRIPT {
        assert!(!nc, "{t}");
        assert!(
            t.contains(
                "script = \"</dev/tcp/127.0.0.1/80\"  # shell syntax: keepalived 2 and vipd run it without a shell"
            ),
            "{t}"
        );
        assert_vipd_accepts(&t);
    }
}
