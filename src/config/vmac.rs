//! Validation of an instance's virtual-MAC keys (`use_vmac`, `vmac_xmit_base`)
//! and announcement keys (`garp_master_refresh`, `garp_master_refresh_repeat`,
//! `garp_lower_prio_repeat`), as keepalived names and bounds them.

use serde::{Deserialize, Serialize};

use super::{raw, Cx, Instance, R};
use crate::time::Micros;
use crate::vrrp::announce::AnnounceConfig;

/// `use_vmac = true` or `use_vmac = "NAME"`.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum BoolOrName {
    Bool(bool),
    Name(String),
}

/// A macvlan carrying the VRRP virtual MAC (RFC 9568 §7.3) on top of the
/// instance's interface: the VIPs live on it, the adverts leave from it
/// (unless `xmit_base`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vmac {
    /// The macvlan's name (keepalived's default: `vrrp.VRID`).
    pub ifname: String,
    /// `vmac_xmit_base`: adverts leave from the base interface (with its MAC).
    pub xmit_base: bool,
    /// Set by `use_vmac = true` (the name is ours to pick), not by a name.
    #[serde(default)]
    pub default_name: bool,
}

impl Vmac {
    /// 00:00:5e:00:01:VRID for IPv4, 00:00:5e:00:02:VRID for IPv6 (RFC 9568 §7.3).
    pub fn mac(vrid: u8, ipv4: bool) -> [u8; 6] {
        [0x00, 0x00, 0x5e, 0x00, if ipv4 { 0x01 } else { 0x02 }, vrid]
    }
}

impl Instance {
    /// The interface that carries the VIPs: the macvlan with `use_vmac`, else `interface`.
    pub fn vip_interface(&self) -> &str {
        self.vmac
            .as_ref()
            .map_or(self.interface.as_str(), |v| v.ifname.as_str())
    }

    /// The interface adverts are received on: the macvlan with `use_vmac`.
    /// (A multicast frame whose source MAC is one of the host's macvlans'
    /// reaches only that macvlan, never the base: a peer's advert from the
    /// shared virtual MAC would not be heard on the base. keepalived
    /// receives on the macvlan too.)
    pub fn rx_interface(&self) -> &str {
        self.vip_interface()
    }

    /// The interface adverts leave from: the macvlan unless `vmac_xmit_base`.
    pub fn tx_interface(&self) -> &str {
        match &self.vmac {
            Some(v) if !v.xmit_base => &v.ifname,
            _ => &self.interface,
        }
    }
}

fn keys(name: &str) -> impl Fn(&str) -> String + '_ {
    move |key| format!("vrrp_instance.{name}.{key}")
}

fn valid_ifname(s: &str) -> bool {
    !s.is_empty() && s.len() <= 15 && !s.contains('/') && !s.contains(char::is_whitespace) && s != "." && s != ".."
}

impl Cx<'_> {
    /// `use_vmac` and `vmac_xmit_base`.
    pub(super) fn vmac(&self, name: &str, r: &raw::Instance, interface: &str, vrid: u8) -> R<Option<Vmac>> {
        let k = keys(name);
        let vmac = match &r.use_vmac {
            None => None,
            Some(u) => {
                let (ifname, default_name) = match u.get_ref() {
                    BoolOrName::Bool(false) => return self.xmit_base_without_vmac(name, r),
                    BoolOrName::Bool(true) => (format!("vrrp.{vrid}"), true),
                    BoolOrName::Name(n) => (n.clone(), false),
                };
                if !valid_ifname(&ifname) {
                    return Err(self.err(
                        u,
                        &k("use_vmac"),
                        format!("{ifname:?} is not an interface name (1-15 characters, no '/' or spaces)"),
                    ));
                }
                if ifname == interface {
                    return Err(self.err(
                        u,
                        &k("use_vmac"),
                        format!("{ifname:?} is the instance's own interface; the macvlan needs a name of its own"),
                    ));
                }
                Some(Vmac {
                    ifname,
                    xmit_base: false,
                    default_name,
                })
            }
        };
        let Some(mut v) = vmac else {
            return self.xmit_base_without_vmac(name, r);
        };
        v.xmit_base = r.vmac_xmit_base.as_ref().is_some_and(|x| *x.get_ref());
        Ok(Some(v))
    }

    fn xmit_base_without_vmac(&self, name: &str, r: &raw::Instance) -> R<Option<Vmac>> {
        match &r.vmac_xmit_base {
            Some(x) if *x.get_ref() => Err(self.err(x, &keys(name)("vmac_xmit_base"), "needs use_vmac")),
            _ => Ok(None),
        }
    }

    /// `garp_master_refresh` (0 = off), `garp_master_refresh_repeat` (1..=100,
    /// default 1), `garp_lower_prio_repeat` (0..=100, default garp_master_repeat).
    pub(super) fn announce(&self, name: &str, r: &raw::Instance) -> R<AnnounceConfig> {
        let k = keys(name);
        let mut a = AnnounceConfig::default();
        if let Some(d) = &r.garp_master_refresh {
            let v = self.duration(d, &k("garp_master_refresh"))?;
            if v.0 != 0 && v < Micros::from_secs(1) {
                return Err(self.err(
                    d,
                    &k("garp_master_refresh"),
                    "at least 1s (0 = no periodic announcement)",
                ));
            }
            if v > Micros::from_secs(86_400) {
                return Err(self.err(
                    d,
                    &k("garp_master_refresh"),
                    "at most 86400s (0 = no periodic announcement)",
                ));
            }
            a.refresh = v;
        }
        if let Some(n) = &r.garp_master_refresh_repeat {
            a.refresh_repeat = self.int_in(n, &k("garp_master_refresh_repeat"), 1, 100, "")? as u32;
        }
        if let Some(n) = &r.garp_lower_prio_repeat {
            a.lower_prio_repeat =
                Some(self.int_in(n, &k("garp_lower_prio_repeat"), 0, 100, " (0 = no re-announcement)")? as u32);
        }
        Ok(a)
    }

    /// Across instances: every macvlan name is used once and is nobody's base
    /// interface. An IPv6 instance whose default name `vrrp.VRID` is taken by
    /// an IPv4 instance gets `vrrp6.VRID` (keepalived's second choice).
    pub(super) fn cross_check_vmacs(&self, raw: &raw::File, instances: &mut [Instance]) -> R<()> {
        let names: Vec<(String, bool)> = instances
            .iter()
            .map(|i| {
                (
                    i.vmac.as_ref().map(|v| v.ifname.clone()).unwrap_or_default(),
                    i.vips[0].is_ipv4(),
                )
            })
            .collect();
        for (i, inst) in instances.iter_mut().enumerate() {
            let Some(v) = inst.vmac.as_mut() else { continue };
            if v.default_name && !names[i].1 && names.iter().any(|(n, v4)| *v4 && *n == v.ifname) {
                v.ifname = format!("vrrp6.{}", inst.router.vrid);
            }
        }
        let at = |name: &str| {
            raw.vrrp_instance
                .as_ref()
                .and_then(|m| m.get(name))
                .and_then(|s| {
                    s.get_ref()
                        .use_vmac
                        .as_ref()
                        .map(|u| u.span().start)
                        .or(Some(s.span().start))
                })
                .unwrap_or(0)
        };
        for (a_i, a) in instances.iter().enumerate() {
            let Some(va) = &a.vmac else { continue };
            if let Some(b) = instances.iter().find(|b| b.interface == va.ifname) {
                return Err(self.err_at(
                    at(&a.name),
                    &keys(&a.name)("use_vmac"),
                    format!(
                        "{} is the interface of vrrp_instance.{}; name the macvlan differently",
                        va.ifname, b.name
                    ),
                ));
            }
            for b in &instances[a_i + 1..] {
                if b.vmac.as_ref().is_some_and(|vb| vb.ifname == va.ifname) {
                    return Err(self.err_at(
                        at(&b.name),
                        &keys(&b.name)("use_vmac"),
                        format!(
                            "macvlan {} is already used by vrrp_instance.{}; give one of them a name: use_vmac = \"NAME\"",
                            va.ifname, a.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
