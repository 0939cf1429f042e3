//! Configuration of the virtual-MAC keys (`use_vmac`, `vmac_xmit_base`) and
//! the announcement keys (`garp_master_refresh`, `garp_master_refresh_repeat`,
//! `garp_lower_prio_repeat`): defaults, keepalived's names, and a specific
//! error with file:line for each bad value.

use vipd::config::{self, Vmac};
use vipd::time::Micros;

mod common;
use common::bad_config as bad;

fn inst(name: &str, ifname: &str, vrid: u8, vip: &str, extra: &str) -> String {
    format!(
        "[vrrp_instance.{name}]\ninterface = \"{ifname}\"\nvirtual_router_id = {vrid}\nvirtual_ipaddress = [\"{vip}\"]\n{extra}"
    )
}

#[test]
fn use_vmac_names_and_defaults() {
    let c = config::parse(&inst("A", "eth0", 51, "192.0.2.100/24", ""), "t.toml").unwrap();
    assert_eq!(c.instances[0].vmac, None);
    assert_eq!(c.instances[0].vip_interface(), "eth0");
    let c = config::parse(&inst("A", "eth0", 51, "192.0.2.100/24", "use_vmac = true\n"), "t.toml").unwrap();
    let v = c.instances[0].vmac.clone().unwrap();
    assert_eq!((v.ifname.as_str(), v.xmit_base), ("vrrp.51", false));
    assert_eq!(c.instances[0].vip_interface(), "vrrp.51");
    assert_eq!(c.instances[0].tx_interface(), "vrrp.51");
    let c = config::parse(
        &inst(
            "A",
            "eth0",
            51,
            "192.0.2.100/24",
            "use_vmac = \"vip51\"\nvmac_xmit_base = true\n",
        ),
        "t.toml",
    )
    .unwrap();
    let i = &c.instances[0];
    assert_eq!(
        i.vmac.as_ref().map(|v| (v.ifname.as_str(), v.xmit_base)),
        Some(("vip51", true))
    );
    assert_eq!(
        (i.vip_interface(), i.tx_interface(), i.rx_interface()),
        ("vip51", "eth0", "vip51")
    );
    let c = config::parse(&inst("A", "eth0", 51, "192.0.2.100/24", "use_vmac = false\n"), "t.toml").unwrap();
    assert_eq!(c.instances[0].vmac, None);
    assert_eq!(Vmac::mac(51, true), [0, 0, 0x5e, 0, 1, 51]);
    assert_eq!(Vmac::mac(7, false), [0, 0, 0x5e, 0, 2, 7]);
}

#[test]
fn ipv6_instance_beside_an_ipv4_one_gets_vrrp6() {
    let text = inst("A", "eth0", 51, "192.0.2.100/24", "use_vmac = true\n")
        + &inst("B", "eth0", 51, "2001:db8::100/64", "use_vmac = true\n");
    let c = config::parse(&text, "t.toml").unwrap();
    let names: Vec<&str> = c.instances.iter().map(|i| i.vip_interface()).collect();
    assert_eq!(names, ["vrrp.51", "vrrp6.51"]);
    // Alone, an IPv6 instance keeps keepalived's vrrp.VRID.
    let c = config::parse(
        &inst("B", "eth0", 51, "2001:db8::100/64", "use_vmac = true\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.instances[0].vip_interface(), "vrrp.51");
}

#[test]
fn use_vmac_errors() {
    bad(
        &inst(
            "A",
            "eth0",
            51,
            "192.0.2.100/24",
            "use_vmac = \"this-name-is-too-long\"\n",
        ),
        5,
        &["vrrp_instance.A.use_vmac", "not an interface name"],
    );
    bad(
        &inst("A", "eth0", 51, "192.0.2.100/24", "use_vmac = \"eth0\"\n"),
        5,
        &["use_vmac", "own interface"],
    );
    bad(
        &inst("A", "eth0", 51, "192.0.2.100/24", "vmac_xmit_base = true\n"),
        5,
        &["vrrp_instance.A.vmac_xmit_base", "needs use_vmac"],
    );
    bad(
        &inst("A", "eth0", 51, "192.0.2.100/24", "use_vmac = 3\n"),
        5,
        &["use_vmac"],
    );
    // Two instances, one macvlan name.
    let text = inst("A", "eth0", 51, "192.0.2.100/24", "use_vmac = \"vm\"\n")
        + &inst("B", "eth1", 52, "192.0.2.101/24", "use_vmac = \"vm\"\n");
    bad(
        &text,
        10,
        &["vrrp_instance.B.use_vmac", "already used by vrrp_instance.A"],
    );
    // The same VRID on two interfaces: the default names clash.
    let text = inst("A", "eth0", 51, "192.0.2.100/24", "use_vmac = true\n")
        + &inst("B", "eth1", 51, "198.51.100.100/24", "use_vmac = true\n");
    bad(&text, 10, &["macvlan vrrp.51", "use_vmac = \"NAME\""]);
    // A macvlan named like another instance's interface.
    let text = inst("A", "eth0", 51, "192.0.2.100/24", "use_vmac = \"eth1\"\n")
        + &inst("B", "eth1", 52, "198.51.100.100/24", "");
    bad(&text, 5, &["eth1 is the interface of vrrp_instance.B"]);
}

#[test]
fn announcement_keys() {
    let c = config::parse(&inst("A", "eth0", 51, "192.0.2.100/24", ""), "t.toml").unwrap();
    let a = c.instances[0].router.announce;
    assert_eq!(
        (a.refresh, a.refresh_repeat, a.lower_prio_repeat),
        (Micros::ZERO, 1, None)
    );
    let c = config::parse(
        &inst(
            "A",
            "eth0",
            51,
            "192.0.2.100/24",
            "garp_master_refresh = 60\ngarp_master_refresh_repeat = 2\ngarp_lower_prio_repeat = 0\n",
        ),
        "t.toml",
    )
    .unwrap();
    let a = c.instances[0].router.announce;
    assert_eq!(
        (a.refresh, a.refresh_repeat, a.lower_prio_repeat),
        (Micros::from_secs(60), 2, Some(0))
    );
    let c = config::parse(
        &inst("A", "eth0", 51, "192.0.2.100/24", "garp_master_refresh = \"0\"\n"),
        "t.toml",
    )
    .unwrap();
    assert_eq!(c.instances[0].router.announce.refresh, Micros::ZERO);
    let k = |line: &str| inst("A", "eth0", 51, "192.0.2.100/24", line);
    bad(
        &k("garp_master_refresh = \"500ms\"\n"),
        5,
        &["vrrp_instance.A.garp_master_refresh", "at least 1s"],
    );
    bad(&k("garp_master_refresh = \"2d\"\n"), 5, &["garp_master_refresh"]);
    bad(
        &k("garp_master_refresh = 100000\n"),
        5,
        &["garp_master_refresh", "at most 86400s"],
    );
    bad(
        &k("garp_master_refresh_repeat = 0\n"),
        5,
        &["garp_master_refresh_repeat", "1..=100"],
    );
    bad(
        &k("garp_lower_prio_repeat = -1\n"),
        5,
        &["garp_lower_prio_repeat", "0..=100"],
    );
    bad(
        &k("garp_lower_prio_repeat = 101\n"),
        5,
        &["garp_lower_prio_repeat", "0..=100"],
    );
}
