//! use_vmac on the wire: vipd's macvlan (00:00:5e:00:0{1,2}:VRID) against
//! vipd itself, FRR 8.4's vrrpd (which always sends from a macvlan) and
//! keepalived 2.2.7 with use_vmac, in namespaces. Handover both ways for
//! VRRPv3 IPv4 and IPv6; after each one a client on the LAN reaches the VIP
//! with the neighbour entry it already had (the MAC moves with the VIP);
//! vipd's macvlan is gone and the base's arp settings are restored after it
//! stops.
#![allow(non_snake_case)]

mod common;
use common::*;
use std::path::PathBuf;
use std::time::Duration;

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");
const FRR: &str = "/usr/lib/frr";

#[derive(Clone, Copy, PartialEq)]
enum Fam {
    V4,
    V6,
}

impl Fam {
    fn vip(self) -> &'static str {
        match self {
            Fam::V4 => "192.0.2.100",
            Fam::V6 => "2001:db8::100",
        }
    }
    fn vip_cidr(self) -> &'static str {
        match self {
            Fam::V4 => "192.0.2.100/24",
            Fam::V6 => "2001:db8::100/64",
        }
    }
    fn vmac(self) -> &'static str {
        match self {
            Fam::V4 => "00:00:5e:00:01:33",
            Fam::V6 => "00:00:5e:00:02:33",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Fam::V4 => "v4",
            Fam::V6 => "v6",
        }
    }
}

/// vipd on host "vipd" (.1), the peer on host "peer" (.2), a client (.3).
struct Net {
    lab: Lab,
    vns: String,
    pns: String,
    cns: String,
    fam: Fam,
}

fn net(tag: &str, fam: Fam) -> Net {
    let mut lab = Lab::new(tag);
    let vns = lab.add_host("vipd", &["192.0.2.1/24", "2001:db8::1/64"]);
    let pns = lab.add_host("peer", &["192.0.2.2/24", "2001:db8::2/64"]);
    let cns = lab.add_host("cl", &["192.0.2.3/24", "2001:db8::3/64"]);
    Net {
        lab,
        vns,
        pns,
        cns,
        fam,
    }
}

impl Net {
    fn sock(&self, host: &str) -> String {
        self.lab.dir.join(format!("{host}.sock")).display().to_string()
    }

    /// vipd with use_vmac on host `ns` ("vipd" or "peer").
    fn start_vipd(&mut self, label: &str, host: &str, prio: u8) {
        self.start_vipd_with(label, host, prio, "");
    }

    fn start_vipd_with(&mut self, label: &str, host: &str, prio: u8, extra: &str) {
        let cfg = format!(
            "[global]\ncontrol_socket = \"{}\"\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\n\
             priority = {prio}\nadvert_int = 1\nuse_vmac = true\nvirtual_ipaddress = [\"{}\"]\n{extra}",
            self.sock(host),
            self.fam.vip_cidr()
        );
        let path = self.lab.dir.join(format!("{label}.toml"));
        std::fs::write(&path, cfg).unwrap();
        let ns = self.lab.ns(host);
        self.lab
            .spawn(label, &ns, &[VIPD, "-c", &path.display().to_string(), "--log", "debug"]);
    }

    fn vipd_state(&self, host: &str) -> Option<String> {
        let ns = self.lab.ns(host);
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            VIPCTL,
            "--socket",
            &self.sock(host),
            "status",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v["instances"][0]["state"].as_str()?.to_string())
    }

    fn wait_vipd(&self, host: &str, state: &str, limit: Duration) -> Duration {
        poll_until(
            &format!("vipd on {host} in {state}"),
            limit,
            Duration::from_millis(20),
            || (self.vipd_state(host).as_deref() == Some(state)).then_some(()),
        )
        .1
    }

    /// The MAC the client's neighbour table holds for the VIP, if any.
    fn client_mac(&self) -> Option<String> {
        let out = sh(&["ip", "-n", &self.cns, "neigh", "show", self.fam.vip()]);
        let words: Vec<&str> = out.split_whitespace().collect();
        let i = words.iter().position(|w| *w == "lladdr")?;
        words.get(i + 1).map(|s| s.to_string())
    }

    /// The client reaches the VIP (bounded retries: the first ping may race an announcement).
    fn client_reaches_vip(&self) {
        poll_until(
            "client pings the VIP",
            Duration::from_secs(5),
            Duration::from_millis(100),
            || {
                run(&["ip", "netns", "exec", &self.cns, "ping", "-c1", "-W1", self.fam.vip()])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }

    /// The client reaches the VIP through the virtual MAC; with `same`, the
    /// entry it had before was not replaced (no new resolution was needed).
    fn client_uses_vmac(&self) {
        self.client_reaches_vip();
        let links = |ns: &str| sh(&["ip", "-n", ns, "-br", "link"]);
        assert_eq!(
            self.client_mac().as_deref(),
            Some(self.fam.vmac()),
            "client's neighbour entry; vipd host:\n{}peer:\n{}",
            links(&self.vns),
            links(&self.pns)
        );
    }

    fn link_exists(&self, ns: &str, name: &str) -> bool {
        run(&["ip", "-n", ns, "link", "show", name]).status.success()
    }

    fn sysctl(&self, ns: &str, key: &str) -> String {
        sh(&["ip", "netns", "exec", ns, "sysctl", "-n", key]).trim().to_string()
    }
}

// ---------------------------------------------------------------- FRR vrrpd

impl Net {
    fn frr_dir(&self) -> PathBuf {
        self.lab.dir.join("frr")
    }

    /// FRR's documented set-up: a macvlan (mode bridge) with the virtual MAC
    /// and the VIP on it, created beforehand (vrrpd never creates one), and
    /// arp_ignore=1 and arp_announce=2 on the base (FRR leaves them to the
    /// operator: without the first the base answers ARP for the VIP kept on
    /// the protodown macvlan, without the second its ARP requests name the VIP
    /// with the base's MAC; vipd sets both itself).
    fn frr_prepare(&self) {
        let ns = &self.pns;
        let mv = format!("vrrp{}-51", if self.fam == Fam::V4 { 4 } else { 6 });
        sh(&[
            "ip", "-n", ns, "link", "add", &mv, "link", "eth0", "type", "macvlan", "mode", "bridge",
        ]);
        sh(&["ip", "-n", ns, "link", "set", &mv, "addrgenmode", "random"]);
        sh(&["ip", "-n", ns, "link", "set", &mv, "address", self.fam.vmac()]);
        let mut add = vec!["ip", "-n", ns, "addr", "add", self.fam.vip_cidr(), "dev", &mv];
        if self.fam == Fam::V6 {
            add.push("nodad");
        }
        sh(&add);
        sh(&["ip", "-n", ns, "link", "set", &mv, "up"]);
        for kv in ["net.ipv4.conf.eth0.arp_ignore=1", "net.ipv4.conf.eth0.arp_announce=2"] {
            sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", kv]);
        }
        let dir = self.frr_dir();
        std::fs::create_dir_all(&dir).unwrap();
        sh(&["chown", "frr:frr", &dir.display().to_string()]);
        std::fs::write(dir.join("zebra.conf"), "hostname peer\n").unwrap();
        sh(&["chown", "frr:frr", &dir.join("zebra.conf").display().to_string()]);
    }

    fn start_frr(&mut self, prio: u8) {
        let dir = self.frr_dir();
        let d = |f: &str| dir.join(f).display().to_string();
        let ip = if self.fam == Fam::V4 { "ip" } else { "ipv6" };
        std::fs::write(
            dir.join("vrrpd.conf"),
            format!(
                "hostname peer\ninterface eth0\n vrrp 51 version 3\n vrrp 51 priority {prio}\n\
                 vrrp 51 advertisement-interval 1000\n vrrp 51 {ip} {}\n",
                self.fam.vip()
            ),
        )
        .unwrap();
        sh(&["chown", "frr:frr", &d("vrrpd.conf")]);
        let ns = self.pns.clone();
        if self.lab.pid("zebra").is_none() {
            let _ = std::fs::remove_file(dir.join("zserv.api"));
            self.lab.spawn(
                "zebra",
                &ns,
                &[
                    &format!("{FRR}/zebra"),
                    "-f",
                    &d("zebra.conf"),
                    "-i",
                    &d("zebra.pid"),
                    "-z",
                    &d("zserv.api"),
                    "--vty_socket",
                    &d(""),
                    "-P",
                    "0",
                    "--log",
                    &format!("file:{}", d("zebra.log")),
                ],
            );
            poll_until(
                "zebra's zserv socket",
                Duration::from_secs(10),
                Duration::from_millis(50),
                || dir.join("zserv.api").exists().then_some(()),
            );
        }
        self.lab.spawn(
            "vrrpd",
            &ns,
            &[
                &format!("{FRR}/vrrpd"),
                "-f",
                &d("vrrpd.conf"),
                "-i",
                &d("vrrpd.pid"),
                "-z",
                &d("zserv.api"),
                "--vty_socket",
                &d(""),
                "-P",
                "0",
                "--log",
                &format!("file:{}", d("vrrpd.log")),
            ],
        );
    }

    /// vrrpd's state for our family ("Master", "Backup", "Initialize").
    fn frr_state(&self) -> Option<String> {
        let dir = self.frr_dir().display().to_string();
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.pns,
            "vtysh",
            "--vty_socket",
            &dir,
            "-c",
            "show vrrp 51 json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v[0][self.fam.key()]["status"].as_str()?.to_string())
    }

    fn wait_frr(&self, state: &str, limit: Duration) -> Duration {
        poll_until(
            &format!("FRR vrrpd in {state}"),
            limit,
            Duration::from_millis(20),
            || (self.frr_state().as_deref() == Some(state)).then_some(()),
        )
        .1
    }
}

fn frr_interop(tag: &str, fam: Fam) {
    let _g = netns_lock();
    let mut n = net(tag, fam);
    n.frr_prepare();
    // 1. vipd (150) against FRR (100): vipd master, FRR backup.
    n.start_frr(100);
    n.wait_frr("Master", Duration::from_secs(10));
    n.start_vipd("vipd", "vipd", 150);
    n.wait_vipd("vipd", "master", Duration::from_secs(10));
    n.wait_frr("Backup", Duration::from_secs(5));
    assert!(n.link_exists(&n.vns, "vrrp.51"), "vipd's macvlan");
    n.client_uses_vmac();
    // 2. vipd stops (priority 0): FRR takes over; the client keeps its entry.
    let st = n
        .lab
        .signal("vipd", libc::SIGTERM, Duration::from_secs(5))
        .expect("vipd exits");
    assert!(st.success());
    let took = n.wait_frr("Master", Duration::from_secs(5));
    n.client_uses_vmac();
    assert!(!n.link_exists(&n.vns, "vrrp.51"), "vipd deleted its macvlan");
    if fam == Fam::V4 {
        assert_eq!(
            n.sysctl(&n.vns, "net.ipv4.conf.eth0.arp_ignore"),
            "0",
            "arp_ignore restored"
        );
        assert_eq!(
            n.sysctl(&n.vns, "net.ipv4.conf.eth0.arp_filter"),
            "0",
            "arp_filter restored"
        );
        assert_eq!(
            n.sysctl(&n.vns, "net.ipv4.conf.eth0.arp_announce"),
            "0",
            "arp_announce restored"
        );
    }
    // 3. vipd (50) under FRR: backup.
    n.start_vipd("vipd2", "vipd", 50);
    n.wait_vipd("vipd", "backup", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(n.frr_state().as_deref(), Some("Master"), "FRR stays master");
    assert_eq!(n.vipd_state("vipd").as_deref(), Some("backup"));
    // 4. FRR stops: vipd takes over; the client keeps its entry.
    n.lab.signal("vrrpd", libc::SIGTERM, Duration::from_secs(10));
    let back = n.wait_vipd("vipd", "master", Duration::from_secs(6));
    n.client_uses_vmac();
    eprintln!("{tag}: FRR took over {took:?} after vipd's SIGTERM, vipd {back:?} after FRR's");
}

#[test]
fn frr_vmac_interop_v3_ipv4() {
    frr_interop("fv4", Fam::V4);
}

#[test]
fn frr_vmac_interop_v3_ipv6() {
    frr_interop("fv6", Fam::V6);
}

// ------------------------------------------------------ keepalived use_vmac

impl Net {
    /// keepalived sets arp_ignore / arp_filter on the base but not
    /// arp_announce (its documentation on VMAC asks the operator to tune ARP):
    /// without arp_announce=2 this run showed the client learning the base's
    /// MAC for the VIP from keepalived's host as master. vipd sets it itself.
    fn start_ka(&mut self, prio: u8) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.pns,
            "sysctl",
            "-qw",
            "net.ipv4.conf.eth0.arp_announce=2",
        ]);
        let conf = format!(
            "global_defs {{\n    router_id ka\n    vrrp_version 3\n    script_user root\n    enable_script_security\n}}\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    use_vmac\n    virtual_router_id 51\n    priority {prio}\n    advert_int 1\n\
             virtual_ipaddress {{\n        {}\n    }}\n}}\n",
            self.fam.vip_cidr()
        );
        let ns = self.pns.clone();
        self.lab.spawn_keepalived("ka", &ns, &conf, &[]);
    }

    fn ka_holds(&self) -> bool {
        self.lab.has_addr(&self.pns, self.fam.vip())
    }
}

fn keepalived_vmac_interop(tag: &str, fam: Fam) {
    let _g = netns_lock();
    let mut n = net(tag, fam);
    // 1. vipd (150) against keepalived (100), both with use_vmac.
    n.start_ka(100);
    n.start_vipd("vipd", "vipd", 150);
    n.wait_vipd("vipd", "master", Duration::from_secs(15));
    poll_until(
        "keepalived enters BACKUP",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || n.lab.log("ka").contains("Entering BACKUP STATE").then_some(()),
    );
    assert!(!n.ka_holds(), "keepalived holds the VIP as backup");
    n.client_uses_vmac();
    // 2. vipd stops: keepalived takes over; the client keeps its entry.
    let st = n
        .lab
        .signal("vipd", libc::SIGTERM, Duration::from_secs(5))
        .expect("vipd exits");
    assert!(st.success());
    poll_until(
        "keepalived holds the VIP",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || n.ka_holds().then_some(()),
    );
    n.client_uses_vmac();
    // 3. vipd (50) under keepalived: backup.
    n.start_vipd("vipd2", "vipd", 50);
    n.wait_vipd("vipd", "backup", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert!(n.ka_holds(), "keepalived stays master");
    assert_eq!(n.vipd_state("vipd").as_deref(), Some("backup"));
    // 4. keepalived stops: vipd takes over; the client keeps its entry.
    n.lab.signal("ka", libc::SIGTERM, Duration::from_secs(10));
    n.wait_vipd("vipd", "master", Duration::from_secs(6));
    n.client_uses_vmac();
}

#[test]
fn keepalived_vmac_interop_v3_ipv4() {
    keepalived_vmac_interop("kmv4", Fam::V4);
}

#[test]
fn keepalived_vmac_interop_v3_ipv6() {
    keepalived_vmac_interop("kmv6", Fam::V6);
}

// ------------------------------------------------------------ vipd and vipd

/// Two vipd with use_vmac, one with vmac_xmit_base; a macvlan left by a
/// crashed run (wrong MAC, a VIP on it) is replaced at start-up.
#[test]
fn vipd_vmac_pair_xmit_base_and_stale_macvlan() {
    let _g = netns_lock();
    let mut n = net("vmp", Fam::V4);
    let ns = n.vns.clone();
    sh(&[
        "ip", "-n", &ns, "link", "add", "vrrp.51", "link", "eth0", "type", "macvlan", "mode", "bridge",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns,
        "link",
        "set",
        "vrrp.51",
        "address",
        "02:00:00:00:00:99",
    ]);
    sh(&["ip", "-n", &ns, "addr", "add", "192.0.2.100/24", "dev", "vrrp.51"]);
    sh(&["ip", "-n", &ns, "link", "set", "vrrp.51", "up"]);
    n.start_vipd_with("peer", "peer", 100, "vmac_xmit_base = true\n");
    n.start_vipd("vipd", "vipd", 150);
    n.wait_vipd("vipd", "master", Duration::from_secs(10));
    n.wait_vipd("peer", "backup", Duration::from_secs(5));
    let link = sh(&["ip", "-n", &ns, "-d", "link", "show", "vrrp.51"]);
    assert!(
        link.contains("00:00:5e:00:01:33") && link.contains("macvlan mode private"),
        "{link}"
    );
    n.client_uses_vmac();
    // A crash leaves the macvlan and its VIP behind; the peer takes over.
    n.lab.signal("vipd", libc::SIGKILL, Duration::from_secs(5));
    n.wait_vipd("peer", "master", Duration::from_secs(6));
    n.client_uses_vmac();
    assert!(n.link_exists(&ns, "vrrp.51"));
    // Restarted below the peer: the stale macvlan is replaced (no VIP on the
    // new one), and the peer's adverts, sent from its base, keep it backup.
    n.start_vipd("vipd2", "vipd", 50);
    n.wait_vipd("vipd", "backup", Duration::from_secs(10));
    assert!(
        !n.lab.has_addr(&ns, "192.0.2.100"),
        "stale VIP removed with the stale macvlan"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(n.vipd_state("vipd").as_deref(), Some("backup"));
    assert_eq!(n.vipd_state("peer").as_deref(), Some("master"));
    n.client_uses_vmac();
}

/// garp_master_refresh on the wire: with one GARP at master entry, no
/// second burst and a refresh every second of 2 frames, a client sees the
/// virtual MAC announced again and again (without the refresh: once).
#[test]
fn vipd_vmac_garp_master_refresh_on_the_wire() {
    let _g = netns_lock();
    let mut n = net("vmr", Fam::V4);
    let cns = n.cns.clone();
    n.lab.spawn(
        "tcpdump",
        &cns,
        &[
            "tcpdump",
            "-n",
            "-l",
            "-e",
            "-i",
            "eth0",
            "arp and ether src 00:00:5e:00:01:33",
        ],
    );
    poll_until(
        "tcpdump listens",
        Duration::from_secs(5),
        Duration::from_millis(20),
        || n.lab.log("tcpdump").contains("listening on").then_some(()),
    );
    n.start_vipd_with(
        "vipd",
        "vipd",
        150,
        "garp_master_repeat = 1\ngarp_master_delay = 0\ngarp_master_refresh = 1\ngarp_master_refresh_repeat = 2\n",
    );
    n.wait_vipd("vipd", "master", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(3500));
    n.lab.signal("tcpdump", libc::SIGINT, Duration::from_secs(5));
    let dump = n.lab.log("tcpdump");
    let garps = dump
        .lines()
        .filter(|l| l.contains("who-has 192.0.2.100") && l.contains("tell 192.0.2.100"))
        .count();
    // 1 at entry + 2 per refresh, 3 refreshes in 3.5 s (generous bounds).
    assert!((5..=11).contains(&garps), "{garps} GARPs from the virtual MAC:\n{dump}");
}

/// An interface with the macvlan's name that is not a macvlan is never
/// touched, and the instance stays in FAULT (no master without its VIPs).
#[test]
fn vipd_vmac_name_taken_by_another_interface_is_fault() {
    let _g = netns_lock();
    let mut n = net("vmt", Fam::V4);
    let ns = n.vns.clone();
    sh(&["ip", "-n", &ns, "link", "add", "vrrp.51", "type", "bridge"]);
    sh(&["ip", "-n", &ns, "link", "set", "vrrp.51", "up"]);
    n.start_vipd("vipd", "vipd", 150);
    n.wait_vipd("vipd", "fault", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(n.vipd_state("vipd").as_deref(), Some("fault"));
    let link = sh(&["ip", "-n", &ns, "-d", "link", "show", "vrrp.51"]);
    assert!(link.contains("bridge"), "{link}");
    assert!(!n.lab.has_addr(&ns, "192.0.2.100"));
    assert!(n.lab.log("vipd").contains("not a macvlan"), "{}", n.lab.log("vipd"));
    n.lab
        .signal("vipd", libc::SIGTERM, Duration::from_secs(5))
        .expect("vipd exits");
    assert!(n.link_exists(&ns, "vrrp.51"), "the bridge survives vipd's exit");
}

/// Reload turning use_vmac off and on again: the instance leaves and comes
/// back, the VIP moves between the macvlan and the base, the macvlan goes
/// and comes, and the base's ARP settings follow.
#[test]
fn vipd_vmac_reload_off_and_on() {
    let _g = netns_lock();
    let mut n = net("vml", Fam::V4);
    let ns = n.vns.clone();
    n.start_vipd("vipd", "vipd", 150);
    n.wait_vipd("vipd", "master", Duration::from_secs(10));
    let on = std::fs::read_to_string(n.lab.dir.join("vipd.toml")).unwrap();
    let reload = |n: &Net, text: &str| {
        std::fs::write(n.lab.dir.join("vipd.toml"), text).unwrap();
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &n.vns,
            VIPCTL,
            "--socket",
            &n.sock("vipd"),
            "reload",
        ]);
        assert!(out.status.success(), "reload: {}", String::from_utf8_lossy(&out.stderr));
    };
    let holds_on = |n: &Net, dev: &str| {
        let out = sh(&["ip", "-n", &n.vns, "-o", "addr", "show", "dev", dev]);
        out.contains("192.0.2.100/24")
    };
    reload(&n, &on.replace("use_vmac = true\n", ""));
    poll_until(
        "the VIP on eth0, no macvlan",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (holds_on(&n, "eth0") && !n.link_exists(&ns, "vrrp.51")).then_some(()),
    );
    assert_eq!(n.sysctl(&ns, "net.ipv4.conf.eth0.arp_ignore"), "0");
    n.client_reaches_vip();
    reload(&n, &on);
    poll_until(
        "the VIP on the macvlan again",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (n.link_exists(&ns, "vrrp.51") && holds_on(&n, "vrrp.51") && !holds_on(&n, "eth0")).then_some(()),
    );
    assert_eq!(n.sysctl(&ns, "net.ipv4.conf.eth0.arp_ignore"), "1");
    n.wait_vipd("vipd", "master", Duration::from_secs(10));
    sh(&["ip", "-n", &n.cns, "neigh", "flush", "all"]);
    n.client_uses_vmac();
}
