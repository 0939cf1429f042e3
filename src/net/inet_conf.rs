//! SHELL: per-interface IPv4 settings (`net.ipv4.conf.<if>.*`) read and written
//! through rtnetlink (IFLA_AF_SPEC / AF_INET / IFLA_INET_CONF), not /proc/sys,
//! which `ProtectKernelTunables=yes` makes read-only. Used by `use_vmac` and
//! for `promote_secondaries` on every VRRP interface.

use std::io;

use futures::TryStreamExt;
use netlink_packet_core::DefaultNla;
use netlink_packet_route::link::{AfSpecInet, AfSpecUnspec, LinkAttribute};
use rtnetlink::LinkUnspec;

use super::netlink::Netlink;

/// IFLA_INET_CONF inside IFLA_AF_SPEC / AF_INET, and the kernel's
/// IPV4_DEVCONF_* indices we touch (include/uapi/linux/ip.h).
const IFLA_INET_CONF: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
pub const DEVCONF_RP_FILTER: u16 = 8;
pub const DEVCONF_ARPFILTER: u16 = 13;
pub const DEVCONF_ARP_ANNOUNCE: u16 = 18;
pub const DEVCONF_ARP_IGNORE: u16 = 19;
pub const DEVCONF_PROMOTE_SECONDARIES: u16 = 20;
pub const DEVCONF_ACCEPT_LOCAL: u16 = 23;

/// IFLA_AF_SPEC { AF_INET { IFLA_INET_CONF { index: value, ... } } }: only
/// the entries named (the crate's own request type drops zero values, and
/// rp_filter=0 is one we need).
fn inet_conf(entries: &[(u16, u32)]) -> LinkAttribute {
    let mut nested = Vec::with_capacity(entries.len() * 8);
    for &(kind, val) in entries {
        nested.extend_from_slice(&8u16.to_ne_bytes());
        nested.extend_from_slice(&kind.to_ne_bytes());
        nested.extend_from_slice(&val.to_ne_bytes());
    }
    LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![AfSpecInet::Other(DefaultNla::new(
        IFLA_INET_CONF | NLA_F_NESTED,
        nested,
    ))])])
}

impl Netlink {
    /// Set IPv4 per-interface settings of `index` (RTM_SETLINK, IFLA_INET_CONF).
    pub async fn set_inet_conf(&self, index: u32, entries: &[(u16, u32)]) -> io::Result<()> {
        let msg = LinkUnspec::new_with_index(index)
            .append_extra_attribute(inet_conf(entries))
            .build();
        self.handle()
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// `promote_secondaries` of interface `index` (RTM_GETLINK); None if the
    /// kernel's answer carries no IPv4 settings.
    pub async fn promote_secondaries(&self, index: u32) -> io::Result<Option<i32>> {
        let mut links = self.handle().link().get().match_index(index).execute();
        let link = links
            .try_next()
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
            .ok_or_else(|| io::Error::other(format!("no interface with index {index}")))?;
        for a in &link.attributes {
            if let LinkAttribute::AfSpecUnspec(specs) = a {
                for s in specs {
                    if let AfSpecUnspec::Inet(inet) = s {
                        for x in inet {
                            if let AfSpecInet::DevConf(c) = x {
                                return Ok(Some(c.promote_secondaries));
                            }
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;

    #[test]
    fn inet_conf_nests_only_the_named_entries_zero_included() {
        let attr = inet_conf(&[(DEVCONF_RP_FILTER, 0), (DEVCONF_ARP_IGNORE, 1)]);
        let mut buf = vec![0u8; attr.buffer_len()];
        attr.emit(&mut buf);
        // IFLA_AF_SPEC(26) { AF_INET(2) { IFLA_INET_CONF|NESTED { 8: 0, 19: 1 } } }
        let ne = |v: u16| v.to_ne_bytes();
        let mut want = Vec::new();
        want.extend_from_slice(&ne(4 + 4 + 4 + 16));
        want.extend_from_slice(&ne(26 | NLA_F_NESTED));
        want.extend_from_slice(&ne(4 + 4 + 16));
        want.extend_from_slice(&ne(2 | NLA_F_NESTED));
        want.extend_from_slice(&ne(4 + 16));
        want.extend_from_slice(&ne(IFLA_INET_CONF | NLA_F_NESTED));
        for (k, v) in [(8u16, 0u32), (19, 1)] {
            want.extend_from_slice(&ne(8));
            want.extend_from_slice(&ne(k));
            want.extend_from_slice(&v.to_ne_bytes());
        }
        // The outer flags are the crate's business; compare lengths, types
        // without NLA_F_NESTED, and the payload.
        let strip = |b: &[u8]| -> Vec<u8> {
            let mut b = b.to_vec();
            for off in [2usize, 6, 10] {
                let t = u16::from_ne_bytes([b[off], b[off + 1]]) & !NLA_F_NESTED;
                b[off..off + 2].copy_from_slice(&t.to_ne_bytes());
            }
            b
        };
        assert_eq!(strip(&buf), strip(&want));
    }
}
