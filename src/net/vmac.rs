//! SHELL: the virtual-MAC macvlan of a `use_vmac` instance, through rtnetlink:
//! create it (mode private, MAC 00:00:5e:00:0{1,2}:VRID, as keepalived does),
//! set the per-interface IPv4 settings keepalived sets (net/inet_conf.rs), give
//! an IPv6 one its base's link-local address, and delete it again, restoring
//! what we changed on the base interface.
//!
//! keepalived (vrrp_if_config.c) sets, and so do we:
//!   macvlan: arp_ignore=1, accept_local=1, rp_filter=0, promote_secondaries=1,
//!            IPv6 addr_gen_mode=none (no MAC-derived link-local, RFC 9568 §7.4);
//!   base:    arp_ignore=1, arp_filter=1 (restored when its last macvlan goes);
//! and, beyond keepalived, arp_announce=2 on the base (its documentation
//! recommends it for VMAC set-ups): replies to clients leave through the base
//! (its subnet route comes first), and with arp_announce 0 the base's ARP
//! request for the client would carry the VIP as sender with the base's MAC,
//! teaching the client the wrong MAC for the VIP.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoKind, LinkAttribute, LinkInfo, LinkMessage, MacVlanMode,
};
use rtnetlink::{LinkMacVlan, LinkUnspec};
use tracing::{info, warn};

use super::inet_conf::{
    DEVCONF_ACCEPT_LOCAL, DEVCONF_ARPFILTER, DEVCONF_ARP_ANNOUNCE, DEVCONF_ARP_IGNORE, DEVCONF_PROMOTE_SECONDARIES,
    DEVCONF_RP_FILTER,
};
use super::netlink::Netlink;

/// What one macvlan should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmacSpec {
    pub ifname: String,
    pub base: String,
    pub base_index: u32,
    pub mac: [u8; 6],
    /// IPv6 instance: the macvlan gets `link_local` (the base's), so adverts
    /// can leave from it with that source.
    pub ipv6: bool,
    pub link_local: Option<Ipv6Addr>,
}

/// An existing link as we need to judge it.
#[derive(Clone, Debug, Default)]
struct LinkView {
    index: u32,
    macvlan: bool,
    mac: Vec<u8>,
    base_index: Option<u32>,
    arp_ignore: Option<i32>,
    arp_filter: Option<i32>,
    arp_announce: Option<i32>,
}

fn nl_err(e: rtnetlink::Error) -> io::Error {
    io::Error::other(e.to_string())
}

fn view(l: &LinkMessage) -> LinkView {
    let mut v = LinkView {
        index: l.header.index,
        ..Default::default()
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::Address(m) => v.mac = m.clone(),
            LinkAttribute::Link(i) => v.base_index = Some(*i),
            LinkAttribute::LinkInfo(infos) => {
                v.macvlan = infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::MacVlan)));
            }
            LinkAttribute::AfSpecUnspec(specs) => {
                for s in specs {
                    if let AfSpecUnspec::Inet(inet) = s {
                        for x in inet {
                            if let AfSpecInet::DevConf(c) = x {
                                v.arp_ignore = Some(c.arp_ignore);
                                v.arp_filter = Some(c.arpfilter);
                                v.arp_announce = Some(c.arp_announce);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    v
}

impl Netlink {
    async fn link_view(&self, name: &str) -> io::Result<Option<LinkView>> {
        let mut links = self.handle().link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(Some(l)) => Ok(Some(view(&l))),
            Ok(None) => Ok(None),
            Err(rtnetlink::Error::NetlinkError(m)) if m.code.map(|c| -c.get()) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl_err(e)),
        }
    }

    /// arp_ignore, arp_filter and arp_announce of interface `name`, read through netlink.
    pub async fn arp_conf(&self, name: &str) -> io::Result<Option<ArpConf>> {
        Ok(self.link_view(name).await?.and_then(|v| {
            Some(ArpConf {
                ignore: v.arp_ignore?,
                filter: v.arp_filter?,
                announce: v.arp_announce?,
            })
        }))
    }

    /// Delete the macvlan `name` if it exists and is a macvlan (never another
    /// kind of interface). Returns whether one was deleted.
    pub async fn delete_vmac(&self, name: &str) -> io::Result<bool> {
        match self.link_view(name).await? {
            Some(v) if v.macvlan => {
                self.handle().link().del(v.index).execute().await.map_err(nl_err)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Make the macvlan of `spec` exist as specified, up, with keepalived's
    /// settings; a macvlan of that name with another MAC or base is replaced
    /// (`fresh`: any existing one is, as at start-up). Returns its index.
    pub async fn ensure_vmac(&self, spec: &VmacSpec, fresh: bool) -> io::Result<u32> {
        if let Some(v) = self.link_view(&spec.ifname).await? {
            if !v.macvlan {
                return Err(io::Error::other(format!(
                    "{} exists and is not a macvlan; refusing to touch it",
                    spec.ifname
                )));
            }
            let matches = v.mac == spec.mac && v.base_index == Some(spec.base_index);
            if matches && !fresh {
                return Ok(v.index);
            }
            info!(
                "{}: removing the stale macvlan (left by an earlier run or changed)",
                spec.ifname
            );
            self.handle().link().del(v.index).execute().await.map_err(nl_err)?;
        }
        let msg = LinkMacVlan::new(&spec.ifname, spec.base_index, MacVlanMode::Private)
            .address(spec.mac.to_vec())
            .build();
        let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
        self.handle()
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| ctx("creating the macvlan", nl_err(e)))?;
        let v = self
            .link_view(&spec.ifname)
            .await?
            .ok_or_else(|| io::Error::other(format!("{} vanished after its creation", spec.ifname)))?;
        // No MAC-derived link-local address (RFC 9568 §7.4), set before the link goes up.
        let gen = LinkUnspec::new_with_index(v.index)
            .append_extra_attribute(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![
                AfSpecInet6::AddrGenMode(In6AddrGenMode::None),
            ])]))
            .build();
        self.handle()
            .link()
            .set(gen)
            .execute()
            .await
            .map_err(|e| ctx("setting addr_gen_mode none", nl_err(e)))?;
        if !spec.ipv6 {
            self.set_inet_conf(
                v.index,
                &[
                    (DEVCONF_ARP_IGNORE, 1),
                    (DEVCONF_ACCEPT_LOCAL, 1),
                    (DEVCONF_RP_FILTER, 0),
                    (DEVCONF_PROMOTE_SECONDARIES, 1),
                ],
            )
            .await
            .map_err(|e| ctx("setting arp_ignore, accept_local, rp_filter, promote_secondaries", e))?;
        }
        if let (true, Some(ll)) = (spec.ipv6, spec.link_local) {
            self.add_address(v.index, IpAddr::V6(ll), 64).await?;
        }
        let up = LinkUnspec::new_with_index(v.index).up().build();
        self.handle().link().set(up).execute().await.map_err(nl_err)?;
        Ok(v.index)
    }
}

/// A base interface's ARP settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpConf {
    pub ignore: i32,
    pub filter: i32,
    pub announce: i32,
}

impl ArpConf {
    /// What a base carrying macvlans needs.
    pub const VMAC_BASE: ArpConf = ArpConf {
        ignore: 1,
        filter: 1,
        announce: 2,
    };

    fn entries(self) -> [(u16, u32); 3] {
        [
            (DEVCONF_ARP_IGNORE, self.ignore as u32),
            (DEVCONF_ARPFILTER, self.filter as u32),
            (DEVCONF_ARP_ANNOUNCE, self.announce as u32),
        ]
    }
}

/// The macvlans we made and the base settings we changed for them.
#[derive(Default)]
pub struct VmacTable {
    /// macvlan name -> its base interface.
    pub made: BTreeMap<String, String>,
    /// base interface -> (index, its settings before we changed them).
    saved: BTreeMap<String, (u32, ArpConf)>,
}

impl VmacTable {
    /// Create (or keep) the macvlan of `spec`; on an IPv4 one set the base's
    /// ARP settings to [`ArpConf::VMAC_BASE`], remembering the old ones once.
    pub async fn ensure(&mut self, nl: &Netlink, spec: &VmacSpec, fresh: bool) -> io::Result<u32> {
        let index = nl
            .ensure_vmac(spec, fresh && !self.made.contains_key(&spec.ifname))
            .await?;
        if !self.made.contains_key(&spec.ifname) {
            info!(
                "{}: macvlan on {} with MAC {}",
                spec.ifname,
                spec.base,
                fmt_mac(spec.mac)
            );
        }
        self.made.insert(spec.ifname.clone(), spec.base.clone());
        // (A base recreated under the same name has a new index and the kernel's defaults again.)
        let stale = self.saved.get(&spec.base).map(|s| s.0) != Some(spec.base_index);
        if !spec.ipv6 && stale {
            match nl.arp_conf(&spec.base).await? {
                Some(old) => {
                    if old != ArpConf::VMAC_BASE {
                        nl.set_inet_conf(spec.base_index, &ArpConf::VMAC_BASE.entries()).await?;
                    }
                    self.saved.insert(spec.base.clone(), (spec.base_index, old));
                }
                None => warn!("{}: cannot read arp_ignore / arp_filter / arp_announce", spec.base),
            }
        }
        Ok(index)
    }

    /// Delete macvlan `name` (ours) and, when it was the last on its base,
    /// restore the base's arp settings.
    pub async fn remove(&mut self, nl: &Netlink, name: &str) {
        let Some(base) = self.made.remove(name) else { return };
        match nl.delete_vmac(name).await {
            Ok(_) => info!("{name}: macvlan deleted"),
            Err(e) => warn!("{name}: deleting the macvlan: {e}"),
        }
        if self.made.values().any(|b| *b == base) {
            return;
        }
        if let Some((index, old)) = self.saved.remove(&base) {
            if let Err(e) = nl.set_inet_conf(index, &old.entries()).await {
                warn!("{base}: restoring {old:?}: {e}");
            }
        }
    }

    /// Delete every macvlan we made (exit).
    pub async fn remove_all(&mut self, nl: &Netlink) {
        let names: Vec<String> = self.made.keys().cloned().collect();
        for n in names {
            self.remove(nl, &n).await;
        }
    }
}

pub fn fmt_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_printed_like_ip_link() {
        assert_eq!(fmt_mac([0, 0, 0x5e, 0, 1, 51]), "00:00:5e:00:01:33");
    }
}
