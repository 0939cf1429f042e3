//! PURE: decisions the daemon takes from interface facts: the address an
//! instance sends adverts from (TX3) and its effective priority from tracked
//! interfaces. No I/O: the facts come from `net::netlink` via `links`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::config::Instance;
use crate::net::netlink::IfFacts;
use crate::vrrp::wire::Family;

/// The address family of an instance (one family per instance).
pub fn family_of(inst: &Instance) -> Family {
    inst.router.vips.first().map(|a| Family::of(*a)).unwrap_or(Family::V4)
}

/// The address we send adverts from and break ties with (TX3): the configured
/// unicast source, else any IPv4 address of the interface that is not a VIP
/// (primaries first, then secondaries: after a renumbering the real address
/// may come back as a secondary), or the first IPv6 link-local that is not a
/// VIP. `vips` holds every VIP configured on the interface (all instances):
/// a VIP is never the source. `None` = no usable source (the instance faults).
pub fn source_for(inst: &Instance, facts: Option<&IfFacts>, vips: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    if let Some(src) = inst.unicast_src_ip {
        return Some(src);
    }
    let facts = facts?;
    let usable = |a: &IpAddr| !vips.contains(a) && !inst.router.vips.contains(a);
    match family_of(inst) {
        Family::V4 => {
            let primaries = facts.v4.iter().filter(|a| !a.secondary);
            let secondaries = facts.v4.iter().filter(|a| a.secondary);
            primaries
                .chain(secondaries)
                .map(|a| IpAddr::V4(a.addr))
                .find(|a| usable(a))
        }
        Family::V6 => facts.link_local_v6.iter().map(|a| IpAddr::V6(*a)).find(|a| usable(a)),
    }
}

/// What the tracked interfaces make of an instance (keepalived's rules): the
/// effective priority (base + the weights of up interfaces with a positive
/// weight + the weights of down interfaces with a negative one, clamped to
/// 1..=254; the owner's 255 stays) and the first weight-0 interface that is
/// down (FAULT while there is one). `reverse` swaps up and down.
/// `is_up(name)` reports an interface's link state.
pub fn tracked(inst: &Instance, is_up: impl Fn(&str) -> bool) -> (u8, Option<String>) {
    let base = inst.router.priority;
    let mut p = i32::from(base);
    let mut fault = None;
    for t in &inst.track_interface {
        let up = is_up(&t.interface) != t.reverse;
        match t.weight {
            0 if !up => {
                fault.get_or_insert_with(|| format!("interface {}", t.interface));
            }
            w if w > 0 && up => p += w,
            w if w < 0 && !up => p += w,
            _ => {}
        }
    }
    let prio = if base == 255 { 255 } else { p.clamp(1, 254) as u8 };
    (prio, fault)
}

/// What the kernel must change so that the interface holds exactly `want`
/// (address -> prefix) of the addresses we are responsible for (`owned`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VipPlan {
    /// Delete with the prefix the kernel reports (a delete with another prefix fails).
    pub del: Vec<(IpAddr, u8)>,
    pub add: Vec<(IpAddr, u8)>,
    /// Wanted addresses that are in place.
    pub present: Vec<IpAddr>,
    /// Owned addresses that are gone and can be forgotten.
    pub forget: Vec<IpAddr>,
}

/// Compare what should be on the interface with what the kernel reports
/// (`have`: address -> prefix). A wanted address with another prefix is deleted
/// and re-added; an owned address that is no longer wanted is deleted.
pub fn plan_vips(want: &BTreeMap<IpAddr, u8>, owned: &BTreeMap<IpAddr, u8>, have: &BTreeMap<IpAddr, u8>) -> VipPlan {
    let mut plan = VipPlan::default();
    for (&ip, &p) in want {
        match have.get(&ip) {
            Some(&kp) if kp == p => plan.present.push(ip),
            Some(&kp) => {
                plan.del.push((ip, kp));
                plan.add.push((ip, p));
            }
            None => plan.add.push((ip, p)),
        }
    }
    for &ip in owned.keys() {
        if want.contains_key(&ip) {
            continue;
        }
        match have.get(&ip) {
            Some(&kp) => plan.del.push((ip, kp)),
            None => plan.forget.push(ip),
        }
    }
    plan
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::*;
    use crate::net::netlink::V4Addr;
    use std::net::Ipv4Addr;

    fn inst(vips: &[&str]) -> Instance {
        let text = format!(
            "[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 1\npriority = 100\nvirtual_ipaddress = [{}]\n",
            vips.iter().map(|v| format!("\"{v}\"")).collect::<Vec<_>>().join(", ")
        );
        crate::config::parse(&text, "t.toml")
            .expect("config")
            .instances
            .remove(0)
    }

    fn v4(a: [u8; 4], secondary: bool) -> V4Addr {
        V4Addr {
            addr: Ipv4Addr::from(a),
            secondary,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn source_skips_a_vip_that_became_primary__TX3() {
        let i = inst(&["192.0.2.100/24"]);
        // The real address came back as a secondary behind the VIP.
        let f = IfFacts {
            v4: vec![v4([192, 0, 2, 100], false), v4([192, 0, 2, 1], true)],
            ..Default::default()
        };
        let vips: BTreeSet<IpAddr> = [ip("192.0.2.100")].into();
        assert_eq!(source_for(&i, Some(&f), &vips), Some(ip("192.0.2.1")));
        // Only the VIP left: no usable source.
        let f = IfFacts {
            v4: vec![v4([192, 0, 2, 100], false)],
            ..Default::default()
        };
        assert_eq!(source_for(&i, Some(&f), &vips), None);
        // Another instance's VIP is not a source either.
        let f = IfFacts {
            v4: vec![v4([192, 0, 2, 101], false), v4([192, 0, 2, 2], true)],
            ..Default::default()
        };
        let vips: BTreeSet<IpAddr> = [ip("192.0.2.100"), ip("192.0.2.101")].into();
        assert_eq!(source_for(&i, Some(&f), &vips), Some(ip("192.0.2.2")));
        assert_eq!(source_for(&i, None, &vips), None);
    }

    #[test]
    fn tracked_interfaces_follow_keepalived_weights() {
        let text = "[vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 1\npriority = 100\nvirtual_ipaddress = [\"192.0.2.100/24\"]\ntrack_interface = [{ interface = \"f\" }, { interface = \"p\", weight = 20 }, { interface = \"n\", weight = -30 }, { interface = \"r\", weight = -5, reverse = true }]\n";
        let i = crate::config::parse(text, "t.toml")
            .expect("config")
            .instances
            .remove(0);
        let up = |set: &'static [&'static str]| move |n: &str| set.contains(&n);
        // All up: +20 for p; r is up, reversed = "down": -5.
        assert_eq!(tracked(&i, up(&["f", "p", "n", "r"])), (115, None));
        // n down: -30; p down: nothing; r down (reversed: up): nothing.
        assert_eq!(tracked(&i, up(&["f"])), (70, None));
        // f (weight 0) down: FAULT.
        assert_eq!(
            tracked(&i, up(&["p", "n", "r"])),
            (115, Some("interface f".to_string()))
        );
    }

    #[test]
    fn plan_readds_with_new_prefix_and_deletes_with_the_kernels() {
        let want: BTreeMap<IpAddr, u8> = [(ip("192.0.2.100"), 32)].into();
        let owned: BTreeMap<IpAddr, u8> = [(ip("192.0.2.100"), 24), (ip("192.0.2.101"), 24)].into();
        let have: BTreeMap<IpAddr, u8> =
            [(ip("192.0.2.1"), 24), (ip("192.0.2.100"), 24), (ip("192.0.2.101"), 24)].into();
        let p = plan_vips(&want, &owned, &have);
        assert_eq!(p.del, vec![(ip("192.0.2.100"), 24), (ip("192.0.2.101"), 24)]);
        assert_eq!(p.add, vec![(ip("192.0.2.100"), 32)]);
        assert!(p.present.is_empty());
        // Leaving: everything owned goes, with the kernel's prefix; gone ones are forgotten.
        let have: BTreeMap<IpAddr, u8> = [(ip("192.0.2.100"), 32)].into();
        let p = plan_vips(&BTreeMap::new(), &owned, &have);
        assert_eq!(p.del, vec![(ip("192.0.2.100"), 32)]);
        assert_eq!(p.forget, vec![ip("192.0.2.101")]);
        // Never touches an address we do not own.
        let p = plan_vips(&BTreeMap::new(), &BTreeMap::new(), &have);
        assert_eq!(p, VipPlan::default());
    }
}
