//! Interop with a real keepalived (Debian package, 2.2.7) as a VRRP peer in the
//! same namespaces: one master is elected, handover works in both directions
//! by priority and on stop, for v3 (IPv4, IPv6) and v2, and keepalived never
//! complains about our packets (checksum, TTL, interval, authentication).
//! Unicast too: keepalived with `unicast_src_ip` / `unicast_peer` against
//! vipd's `unicast_peer`, both directions, with no multicast advert on the
//! wire.
#![allow(non_snake_case)]

mod common;
use common::*;
use std::time::Duration;

const VIPD: &str = env!("CARGO_BIN_EXE_vipd");
const VIPCTL: &str = env!("CARGO_BIN_EXE_vipctl");

#[derive(Clone, Copy)]
enum Flavour {
    V3v4,
    V3v6,
    V2,
    /// VRRPv3 over IPv4 with unicast adverts on both sides.
    V3v4Unicast,
}

impl Flavour {
    fn vip(self) -> &'static str {
        match self {
            Flavour::V3v6 => "2001:db8::100",
            _ => "192.0.2.100",
        }
    }
    fn vip_cidr(self) -> &'static str {
        match self {
            Flavour::V3v6 => "2001:db8::100/64",
            _ => "192.0.2.100/24",
        }
    }
}

struct Pair {
    lab: Lab,
    vns: String,
    kns: String,
    fl: Flavour,
}

fn pair(tag: &str, fl: Flavour) -> Pair {
    let mut lab = Lab::new(tag);
    let vns = lab.add_host("vipd", &["192.0.2.1/24", "2001:db8::1/64"]);
    let kns = lab.add_host("ka", &["192.0.2.2/24", "2001:db8::2/64"]);
    Pair { lab, vns, kns, fl }
}

impl Pair {
    fn sock(&self) -> String {
        self.lab.dir.join("vipd.sock").display().to_string()
    }
    fn start_vipd(&mut self, prio: u8) {
        let (version, extra) = match self.fl {
            Flavour::V2 => (2, "authentication = { auth_type = \"PASS\", auth_pass = \"s3cret\" }\n"),
            Flavour::V3v4Unicast => (3, "unicast_src_ip = \"192.0.2.1\"\nunicast_peer = [\"192.0.2.2\"]\n"),
            _ => (3, ""),
        };
        let cfg = format!(
            "[global]\ncontrol_socket = \"{}\"\n[vrrp_instance.VI_1]\ninterface = \"eth0\"\nversion = {version}\nvirtual_router_id = 51\npriority = {prio}\nadvert_int = 1\nvirtual_ipaddress = [\"{}\"]\n{extra}",
            self.sock(),
            self.fl.vip_cidr()
        );
        let path = self.lab.dir.join("vipd.toml");
        std::fs::write(&path, cfg).unwrap();
        let ns = self.vns.clone();
        self.lab.spawn(
            "vipd",
            &ns,
            &[VIPD, "-c", &path.display().to_string(), "--log", "debug"],
        );
    }
    fn start_ka(&mut self, prio: u8) {
        let (version, auth) = match self.fl {
            Flavour::V2 => (
                2,
                "    authentication {\n        auth_type PASS\n        auth_pass s3cret\n    }\n",
            ),
            Flavour::V3v4Unicast => (
                3,
                "    unicast_src_ip 192.0.2.2\n    unicast_peer {\n        192.0.2.1\n    }\n",
            ),
            _ => (3, ""),
        };
        let conf = format!(
            "global_defs {{\n    router_id ka\n    vrrp_version {version}\n    script_user root\n    enable_script_security\n}}\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    priority {prio}\n    advert_int 1\n\
             {auth}    virtual_ipaddress {{\n        {}\n    }}\n}}\n",
            self.fl.vip_cidr()
        );
        let ns = self.kns.clone();
        self.lab.spawn_keepalived("ka", &ns, &conf, &[]);
    }
    fn holds(&self, ns: &str) -> bool {
        self.lab.has_addr(ns, self.fl.vip())
    }
    fn vipd_state(&self) -> Option<String> {
        let out = run(&[
            "ip",
            "netns",
            "exec",
            &self.vns,
            VIPCTL,
            "--socket",
            &self.sock(),
            "status",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some(v["instances"][0]["state"].as_str()?.to_string())
    }
    fn wait_holder(&self, vipd_holds: bool, limit: Duration) {
        let what = if vipd_holds {
            "vipd alone holds the VIP"
        } else {
            "keepalived alone holds the VIP"
        };
        poll_until(what, limit, Duration::from_millis(20), || {
            let (v, k) = (self.holds(&self.vns), self.holds(&self.kns));
            (v == vipd_holds && k != vipd_holds).then_some(())
        });
    }
    /// keepalived must never complain about our packets.
    fn assert_ka_happy(&self) {
        let log = self.lab.log("ka").to_lowercase();
        for bad in [
            "checksum",
            "ttl",
            "interval mismatch",
            "advertisement interval",
            "auth",
            "invalid",
            "malformed",
        ] {
            let offending: Vec<&str> = log.lines().filter(|l| l.contains(bad)).collect();
            // keepalived prints its own config dump with "auth" words at start-up; only flag receive errors.
            let offending: Vec<&&str> = offending
                .iter()
                .filter(|l| l.contains("received") || l.contains("invalid") || l.contains("bad"))
                .collect();
            assert!(offending.is_empty(), "keepalived complained ({bad}): {offending:?}");
        }
    }
}

fn run_interop(tag: &str, fl: Flavour) {
    let _g = netns_lock();
    // 1. vipd higher priority: vipd master, keepalived backup.
    let mut p = pair(tag, fl);
    // Unicast: watch VRRP on the bridge side of vipd's link during the whole
    // run: adverts both ways between the two addresses, none to the group.
    let unicast = matches!(fl, Flavour::V3v4Unicast);
    if unicast {
        let port = p.lab.bridge_port("vipd");
        let br = p.lab.bridge_ns.clone();
        p.lab
            .spawn("tcpdump", &br, &["tcpdump", "-n", "-l", "-i", &port, "ip proto 112"]);
        poll_until(
            "tcpdump listens",
            Duration::from_secs(5),
            Duration::from_millis(20),
            || p.lab.log("tcpdump").contains("listening on").then_some(()),
        );
    }
    p.start_ka(100);
    p.start_vipd(150);
    p.wait_holder(true, Duration::from_secs(15));
    poll_until(
        "keepalived enters BACKUP",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || p.lab.log("ka").contains("Entering BACKUP STATE").then_some(()),
    );
    // 2. vipd stops (priority 0): keepalived takes over quickly.
    let st = p
        .lab
        .signal("vipd", libc::SIGTERM, Duration::from_secs(5))
        .expect("vipd exits");
    assert!(st.success());
    p.wait_holder(false, Duration::from_secs(3));
    // 3. vipd comes back with the higher priority and preempts.
    p.start_vipd(150);
    p.wait_holder(true, Duration::from_secs(15));
    // 4. Reverse: keepalived restarted with a higher priority preempts vipd.
    p.lab.signal("ka", libc::SIGTERM, Duration::from_secs(10));
    p.start_ka(200);
    p.wait_holder(false, Duration::from_secs(15));
    poll_until(
        "vipd backup under keepalived",
        Duration::from_secs(5),
        Duration::from_millis(50),
        || (p.vipd_state().as_deref() == Some("backup")).then_some(()),
    );
    // 5. keepalived stops: vipd takes over after Skew_Time, far below master-down.
    let t = std::time::Instant::now();
    p.lab.signal("ka", libc::SIGTERM, Duration::from_secs(10));
    p.wait_holder(true, Duration::from_secs(10));
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "takeover after keepalived stop took {:?}",
        t.elapsed()
    );
    p.start_ka(100);
    std::thread::sleep(Duration::from_secs(2));
    p.wait_holder(true, Duration::from_secs(5));
    p.assert_ka_happy();
    if unicast {
        p.lab.signal("tcpdump", libc::SIGINT, Duration::from_secs(5));
        let dump = p.lab.log("tcpdump");
        let group: Vec<&str> = dump.lines().filter(|l| l.contains("224.0.0.18")).collect();
        assert!(group.is_empty(), "multicast adverts in unicast mode: {group:?}");
        for dir in ["192.0.2.1 > 192.0.2.2", "192.0.2.2 > 192.0.2.1"] {
            assert!(dump.contains(dir), "no unicast advert {dir}:\n{dump}");
        }
    }
}

#[test]
fn keepalived_interop_v3_ipv4__RX5_TX1_TX2() {
    run_interop("kv3", Flavour::V3v4);
}

#[test]
fn keepalived_interop_v3_ipv6__RX9_TX3() {
    run_interop("kv6", Flavour::V3v6);
}

#[test]
fn keepalived_interop_v2_with_password__RX10_RX11() {
    run_interop("kv2", Flavour::V2);
}

#[test]
fn keepalived_interop_v3_ipv4_unicast__RX14() {
    run_interop("kvu", Flavour::V3v4Unicast);
}
