//! rtnetlink: interface facts (index, MAC, carrier, addresses), VIP add /
//! remove, and a watcher for link and address events.
//!
//! The watcher subscribes to the link and address groups first and the daemon
//! dumps current state after, so nothing falls between the two. Events are
//! level-triggered: any event for an interface makes the daemon re-read that
//! interface's facts and act on what changed.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::mpsc;

/// What we know about one interface right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IfFacts {
    pub index: u32,
    pub mac: [u8; 6],
    /// Administratively up and carrier present (IFF_UP and IFF_LOWER_UP).
    pub up: bool,
    /// IPv4 addresses in kernel order, with their secondary flag.
    pub v4: Vec<V4Addr>,
    /// Link-local IPv6 addresses.
    pub link_local_v6: Vec<Ipv6Addr>,
    /// Every address on the interface with the prefix length the kernel reports
    /// (a delete must name that prefix: linux-notes.md).
    pub addrs: BTreeMap<IpAddr, u8>,
}

/// One IPv4 address of an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V4Addr {
    pub addr: Ipv4Addr,
    /// IFA_F_SECONDARY: in the subnet of another (primary) address.
    pub secondary: bool,
}

/// A handle on the netlink route socket (requests).
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

fn nl_err(e: rtnetlink::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Is this the "already exists" / "no such address" answer of the kernel?
fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    if let rtnetlink::Error::NetlinkError(m) = e {
        m.code.map(|c| -c.get())
    } else {
        None
    }
}

impl Netlink {
    /// Open the request socket (its connection task is spawned on the current runtime).
    pub fn open() -> io::Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The request handle, for the other netlink users of `net` (`vmac`).
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Facts about interface `name`, or `None` if it does not exist.
    pub async fn facts(&self, name: &str) -> io::Result<Option<IfFacts>> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        let link = match links.try_next().await {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(None),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => return Ok(None),
            Err(e) => return Err(nl_err(e)),
        };
        let mut f = IfFacts {
            index: link.header.index,
            ..Default::default()
        };
        let flags = link.header.flags;
        f.up = flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp);
        for a in &link.attributes {
            if let LinkAttribute::Address(mac) = a {
                if mac.len() == 6 {
                    f.mac.copy_from_slice(mac);
                }
            }
        }
        let mut addrs = self.handle.address().get().set_link_index_filter(f.index).execute();
        while let Some(msg) = addrs.try_next().await.map_err(nl_err)? {
            if msg.header.index != f.index {
                continue;
            }
            let Some(ip) = address_of(&msg) else { continue };
            f.addrs.insert(ip, msg.header.prefix_len);
            match ip {
                IpAddr::V4(addr) => f.v4.push(V4Addr {
                    addr,
                    secondary: msg.header.flags.contains(AddressHeaderFlags::Secondary),
                }),
                IpAddr::V6(v6) => {
                    if crate::vrrp::wire::is_link_local(v6) {
                        f.link_local_v6.push(v6);
                    }
                }
            }
        }
        Ok(Some(f))
    }

    /// Add `ip/prefix` on `index`. IPv6 VIPs get IFA_F_NODAD so they are usable
    /// at once. Already present is not an error.
    pub async fn add_address(&self, index: u32, ip: IpAddr, prefix: u8) -> io::Result<()> {
        let mut req = self.handle.address().add(index, ip, prefix);
        if ip.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(nl_err(e)),
        }
    }

    /// Remove `ip/prefix` from `index`. Already absent is not an error.
    pub async fn del_address(&self, index: u32, ip: IpAddr, prefix: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = prefix;
        msg.header.family = match ip {
            IpAddr::V4(_) => netlink_packet_route::AddressFamily::Inet,
            IpAddr::V6(_) => netlink_packet_route::AddressFamily::Inet6,
        };
        msg.attributes.push(AddressAttribute::Local(ip));
        msg.attributes.push(AddressAttribute::Address(ip));
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    errno_of(&e),
                    Some(libc::EADDRNOTAVAIL) | Some(libc::ENOENT) | Some(libc::ENODEV)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(nl_err(e)),
        }
    }
}

fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    // IFA_LOCAL is the interface's own address for IPv4 (IFA_ADDRESS may be the peer on p2p links).
    let mut addr = None;
    for a in &msg.attributes {
        match a {
            AddressAttribute::Local(ip) => return Some(*ip),
            AddressAttribute::Address(ip) => addr = Some(*ip),
            _ => {}
        }
    }
    addr
}

/// Facts of each named interface (`None` = it does not exist), read in one go.
pub async fn read_facts(nl: &Netlink, names: &[String]) -> Vec<(String, io::Result<Option<IfFacts>>)> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push((name.clone(), nl.facts(name).await));
    }
    out
}

/// A link or address changed on interface `index` (0 = unknown: re-read all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changed(pub u32);

/// Subscribe to link and address events; each event is forwarded as
/// `Changed(ifindex)`. Call before the first `facts()` dump.
pub fn watch(tx: mpsc::UnboundedSender<Changed>) -> io::Result<()> {
    let (conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
    ])?;
    tokio::spawn(conn);
    tokio::spawn(async move {
        while let Some((msg, _)) = messages.next().await {
            let idx = match msg.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l))
                | NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => l.header.index,
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(a))
                | NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(a)) => a.header.index,
                _ => 0,
            };
            if tx.send(Changed(idx)).is_err() {
                break;
            }
        }
    });
    Ok(())
}
