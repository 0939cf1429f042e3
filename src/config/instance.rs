//! Validation of a `vrrp_instance` block into an [`Instance`] (the VRRP
//! router's config, VIPs, tracking, notify) and the checks across instances.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use super::{off, raw, Cx, R};
use crate::time::Micros;
use crate::vrrp::{Auth, Centis, ChecksumForm, Interval, RouterConfig, Secs, Version};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInterface {
    pub interface: String,
    /// keepalived's rules: 0 (the default) = FAULT while down; positive =
    /// added while up; negative = added (subtracted) while down.
    pub weight: i32,
    /// Swap up and down (keepalived `reverse`).
    #[serde(default)]
    pub reverse: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub interface: String,
    pub router: RouterConfig,
    /// VIPs with their prefix length (bare address = /32 or /128).
    pub vips: Vec<IpNetwork>,
    pub unicast_src_ip: Option<IpAddr>,
    pub track_interface: Vec<TrackInterface>,
    /// `use_vmac` (src/config/vmac.rs): the macvlan with the virtual MAC.
    #[serde(default)]
    pub vmac: Option<super::vmac::Vmac>,
    /// Scripts, files, processes and virtual servers tracked (config/track.rs).
    #[serde(default)]
    pub track: super::InstanceTracking,
    /// Notify scripts (config/notify.rs).
    #[serde(default)]
    pub notify: super::notify::Notify,
    /// The `vrrp_sync_group` this instance belongs to (config/sync.rs).
    #[serde(default)]
    pub sync_group: Option<String>,
}

/// The dotted key of a field of instance `name`.
fn keys(name: &str) -> impl Fn(&str) -> String + '_ {
    move |key| format!("vrrp_instance.{name}.{key}")
}

impl Cx<'_> {
    pub(super) fn instance(&self, name: &str, sp: &Spanned<raw::Instance>) -> R<Instance> {
        let k = keys(name);
        let r = sp.get_ref();
        let interface = self.name_and_interface(name, sp)?;
        let vrid = self.int_in(&r.virtual_router_id, &k("virtual_router_id"), 1, 255, "")? as u8;
        let priority = match &r.priority {
            Some(p) => self.int_in(p, &k("priority"), 1, 255, " (255 = address owner)")? as u8,
            None => 100,
        };
        let version = match &r.version {
            None => Version::V3,
            Some(v) => match v.get_ref() {
                3 => Version::V3,
                2 => Version::V2,
                n => return Err(self.err(v, &k("version"), format!("{n} is not a VRRP version, allowed 2 or 3"))),
            },
        };
        let advert_interval = self.advert_interval(name, r, version)?;
        let (preempt, preempt_delay) = self.preempt(name, r)?;
        let vips = self.vips(name, r, version)?;
        let v4 = vips[0].is_ipv4();
        let (unicast_src_ip, unicast_peers) = self.unicast(name, r, v4)?;
        let allowed_peers = self.peer_list(name, "allowed_peers", r.allowed_peers.as_deref(), v4)?;
        let auth = self.auth(name, r, version)?;
        let checksum_form = self.checksum_form(name, r, version, v4)?;
        let (garp_master_repeat, garp_master_delay) = self.garp(name, r)?;
        let track_interface = self.track_interface(name, r)?;
        let notify = self.notify(name, r)?;
        let vmac = self.vmac(name, r, &interface, vrid)?;
        let announce = self.announce(name, r)?;
        let router = RouterConfig {
            name: name.to_string(),
            vrid,
            priority,
            version,
            advert_interval,
            preempt,
            preempt_delay,
            vips: vips.iter().map(|n| n.ip()).collect(),
            unicast_peers,
            allowed_peers,
            auth,
            checksum_form,
            garp_master_repeat,
            garp_master_delay,
            announce,
        };
        Ok(Instance {
            name: name.to_string(),
            interface,
            router,
            vips,
            unicast_src_ip,
            track_interface,
            notify,
            vmac,
            track: Default::default(),
            sync_group: None,
        })
    }

    /// The instance's name and `interface`; returns the interface.
    fn name_and_interface(&self, name: &str, sp: &Spanned<raw::Instance>) -> R<String> {
        let r = sp.get_ref();
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            return Err(self.err(
                sp,
                &format!("vrrp_instance.{name}"),
                "instance names use 1-64 of A-Z a-z 0-9 _ - .",
            ));
        }
        let interface = r.interface.get_ref().clone();
        if interface.is_empty()
            || interface.len() > 15
            || interface.contains('/')
            || interface.contains(char::is_whitespace)
        {
            return Err(self.err(
                &r.interface,
                &keys(name)("interface"),
                format!("{interface:?} is not an interface name (1-15 characters)"),
            ));
        }
        Ok(interface)
    }

    /// `notify`, `notify_master`, `notify_backup`, `notify_fault`, `notify_stop`.
    fn notify(&self, name: &str, r: &raw::Instance) -> R<super::notify::Notify> {
        self.notify_scripts(
            &format!("vrrp_instance.{name}"),
            super::notify::RawNotify {
                notify: r.notify.as_ref(),
                master: r.notify_master.as_ref(),
                backup: r.notify_backup.as_ref(),
                fault: r.notify_fault.as_ref(),
                stop: r.notify_stop.as_ref(),
            },
        )
    }

    /// `advert_int`: centiseconds for VRRPv3, whole seconds for VRRPv2.
    fn advert_interval(&self, name: &str, r: &raw::Instance, version: Version) -> R<Interval> {
        let k = keys(name);
        let advert_us = match &r.advert_int {
            None => Micros::from_secs(1),
            Some(a) => self.duration(a, &k("advert_int"))?,
        };
        let at = r.advert_int.as_ref().map(off).unwrap_or(off(&r.virtual_router_id));
        match version {
            Version::V3 => {
                let ok = advert_us.0 % 10_000 == 0;
                let cs = advert_us.0 / 10_000;
                match (ok, u16::try_from(cs).ok().and_then(Centis::new)) {
                    (true, Some(c)) => Ok(Interval::V3(c)),
                    _ => Err(self.err_at(
                        at,
                        &k("advert_int"),
                        format!(
                            "{} µs is not allowed for VRRPv3: use a multiple of 10 ms from 10ms to 40.95s",
                            advert_us.0
                        ),
                    )),
                }
            }
            Version::V2 => {
                let ok = advert_us.0 % 1_000_000 == 0;
                match (ok, u8::try_from(advert_us.0 / 1_000_000).ok().and_then(Secs::new)) {
                    (true, Some(s)) => Ok(Interval::V2(s)),
                    _ => Err(self.err_at(
                        at,
                        &k("advert_int"),
                        format!(
                            "{} µs is not allowed for VRRPv2: use whole seconds from 1 to 255",
                            advert_us.0
                        ),
                    )),
                }
            }
        }
    }

    /// `preempt` / `nopreempt` and `preempt_delay`.
    fn preempt(&self, name: &str, r: &raw::Instance) -> R<(bool, Micros)> {
        let k = keys(name);
        let preempt = match (&r.preempt, &r.nopreempt) {
            (Some(p), Some(n)) if *p.get_ref() == *n.get_ref() => {
                return Err(self.err(n, &k("nopreempt"), "contradicts preempt; set only one of them"));
            }
            (Some(p), _) => *p.get_ref(),
            (None, Some(n)) => !*n.get_ref(),
            (None, None) => true,
        };
        let preempt_delay = match &r.preempt_delay {
            None => Micros::ZERO,
            Some(d) => {
                let v = self.duration(d, &k("preempt_delay"))?;
                if v > Micros::from_secs(1000) {
                    return Err(self.err(d, &k("preempt_delay"), "at most 1000s"));
                }
                v
            }
        };
        Ok((preempt, preempt_delay))
    }

    /// `virtual_ipaddress`: 1 to 255 distinct addresses of one family.
    fn vips(&self, name: &str, r: &raw::Instance, version: Version) -> R<Vec<IpNetwork>> {
        let k = keys(name);
        if r.virtual_ipaddress.get_ref().is_empty() {
            return Err(self.err(
                &r.virtual_ipaddress,
                &k("virtual_ipaddress"),
                "needs at least one address",
            ));
        }
        let mut vips: Vec<IpNetwork> = Vec::new();
        for v in r.virtual_ipaddress.get_ref() {
            let s = v.get_ref();
            let net = if s.contains('/') {
                s.parse::<IpNetwork>().ok()
            } else {
                s.parse::<IpAddr>()
                    .ok()
                    .and_then(|a| IpNetwork::new(a, if a.is_ipv4() { 32 } else { 128 }).ok())
            };
            let Some(net) = net else {
                return Err(self.err(
                    v,
                    &k("virtual_ipaddress"),
                    format!("{s:?} is not an address or address/prefix"),
                ));
            };
            if vips.first().is_some_and(|f| f.is_ipv4() != net.is_ipv4()) {
                return Err(self.err(
                    v,
                    &k("virtual_ipaddress"),
                    format!(
                        "{s} mixes address families; use one family per instance (a second instance for the other)"
                    ),
                ));
            }
            if version == Version::V2 && net.is_ipv6() {
                return Err(self.err(
                    v,
                    &k("virtual_ipaddress"),
                    format!("{s}: VRRPv2 carries IPv4 only; use version = 3"),
                ));
            }
            if vips.iter().any(|x| x.ip() == net.ip()) {
                return Err(self.err(v, &k("virtual_ipaddress"), format!("{s} is listed twice")));
            }
            vips.push(net);
        }
        if vips.len() > 255 {
            return Err(self.err(
                &r.virtual_ipaddress,
                &k("virtual_ipaddress"),
                "at most 255 addresses per instance",
            ));
        }
        Ok(vips)
    }

    /// `unicast_src_ip` and `unicast_peer`, of the VIPs' family.
    fn unicast(&self, name: &str, r: &raw::Instance, v4: bool) -> R<(Option<IpAddr>, Vec<IpAddr>)> {
        let k = keys(name);
        let fam_ok = |a: &IpAddr| a.is_ipv4() == v4;
        let unicast_src_ip = match &r.unicast_src_ip {
            None => None,
            Some(s) => {
                let a: IpAddr = s.get_ref().parse().map_err(|_| {
                    self.err(
                        s,
                        &k("unicast_src_ip"),
                        format!("{:?} is not an IP address", s.get_ref()),
                    )
                })?;
                if !fam_ok(&a) {
                    return Err(self.err(s, &k("unicast_src_ip"), "must be of the VIPs' address family"));
                }
                Some(a)
            }
        };
        let unicast_peers = self.peer_list(name, "unicast_peer", r.unicast_peer.as_deref(), v4)?;
        Ok((unicast_src_ip, unicast_peers))
    }

    /// A list of peer addresses (`unicast_peer`, `allowed_peers`) of the VIPs' family.
    fn peer_list(&self, name: &str, key: &str, list: Option<&[Spanned<String>]>, v4: bool) -> R<Vec<IpAddr>> {
        let k = keys(name);
        let mut out = Vec::new();
        for p in list.unwrap_or_default() {
            let a: IpAddr = p
                .get_ref()
                .parse()
                .map_err(|_| self.err(p, &k(key), format!("{:?} is not an IP address", p.get_ref())))?;
            if a.is_ipv4() != v4 {
                return Err(self.err(p, &k(key), format!("{a} is not of the VIPs' address family")));
            }
            out.push(a);
        }
        Ok(out)
    }

    /// `authentication` (VRRPv2 simple password only).
    fn auth(&self, name: &str, r: &raw::Instance, version: Version) -> R<Auth> {
        let k = keys(name);
        let Some(a) = &r.authentication else {
            return Ok(Auth::None);
        };
        if version != Version::V2 {
            return Err(self.err(
                a,
                &k("authentication"),
                "only VRRPv2 has authentication (RFC 9568 removed it)",
            ));
        }
        let ar = a.get_ref();
        if !ar.auth_type.get_ref().eq_ignore_ascii_case("PASS") {
            return Err(self.err(&ar.auth_type, &k("authentication.auth_type"), "allowed: \"PASS\""));
        }
        let pass = ar.auth_pass.get_ref().as_bytes();
        if pass.is_empty() || pass.len() > 8 {
            return Err(self.err(&ar.auth_pass, &k("authentication.auth_pass"), "must be 1 to 8 bytes"));
        }
        let mut b = [0u8; 8];
        b[..pass.len()].copy_from_slice(pass);
        Ok(Auth::Simple(b))
    }

    /// `checksum_form` (VRRPv3 over IPv4 only).
    fn checksum_form(&self, name: &str, r: &raw::Instance, version: Version, v4: bool) -> R<ChecksumForm> {
        let k = keys(name);
        let Some(c) = &r.checksum_form else {
            return Ok(ChecksumForm::PseudoHeader);
        };
        if version != Version::V3 || !v4 {
            return Err(self.err(c, &k("checksum_form"), "only applies to VRRPv3 over IPv4"));
        }
        match c.get_ref().as_str() {
            "pseudo_header" => Ok(ChecksumForm::PseudoHeader),
            "message_only" => Ok(ChecksumForm::MessageOnly),
            o => Err(self.err(
                c,
                &k("checksum_form"),
                format!("{o:?}: allowed \"pseudo_header\" or \"message_only\""),
            )),
        }
    }

    /// `garp_master_repeat` and `garp_master_delay`.
    fn garp(&self, name: &str, r: &raw::Instance) -> R<(u32, Micros)> {
        let k = keys(name);
        let repeat = match &r.garp_master_repeat {
            None => 5,
            Some(g) => self.int_in(g, &k("garp_master_repeat"), 1, 100, "")? as u32,
        };
        let delay = match &r.garp_master_delay {
            None => Micros::from_secs(5),
            Some(d) => {
                let v = self.duration(d, &k("garp_master_delay"))?;
                if v > Micros::from_secs(3600) {
                    return Err(self.err(d, &k("garp_master_delay"), "at most 3600s (0 = no second burst)"));
                }
                v
            }
        };
        Ok((repeat, delay))
    }

    /// `track_interface`, with keepalived's weights: absent or 0 = FAULT
    /// while the interface is down.
    fn track_interface(&self, name: &str, r: &raw::Instance) -> R<Vec<TrackInterface>> {
        let k = keys(name);
        let mut track = Vec::new();
        for t in r.track_interface.iter().flatten() {
            let tr = t.get_ref();
            let weight = match &tr.weight {
                Some(w) => self.int_in(w, &k("track_interface.weight"), -254, 254, "")? as i32,
                None => 0,
            };
            track.push(TrackInterface {
                interface: tr.interface.get_ref().clone(),
                weight,
                reverse: tr.reverse.unwrap_or(false),
            });
        }
        Ok(track)
    }

    /// Across instances: one VRID per interface and family, no VIP twice.
    pub(super) fn cross_check_instances(&self, raw: &raw::File, instances: &[Instance]) -> R<()> {
        let start_of = |name: &str| {
            raw.vrrp_instance
                .as_ref()
                .and_then(|m| m.get(name))
                .map(|s| s.span().start)
                .unwrap_or(0)
        };
        for (a_i, a) in instances.iter().enumerate() {
            for b in &instances[a_i + 1..] {
                let same_family = a.vips[0].is_ipv4() == b.vips[0].is_ipv4();
                if a.interface == b.interface && a.router.vrid == b.router.vrid && same_family {
                    return Err(self.err_at(
                        start_of(&b.name),
                        &format!("vrrp_instance.{}.virtual_router_id", b.name),
                        format!(
                            "VRID {} on {} is already used by vrrp_instance.{} (one VRID per interface and address family)",
                            b.router.vrid, b.interface, a.name
                        ),
                    ));
                }
                for v in &b.vips {
                    if a.vips.iter().any(|x| x.ip() == v.ip()) {
                        return Err(self.err_at(
                            start_of(&b.name),
                            &format!("vrrp_instance.{}.virtual_ipaddress", b.name),
                            format!("{} is also a VIP of vrrp_instance.{}", v.ip(), a.name),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
