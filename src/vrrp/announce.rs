//! Gratuitous ARP and unsolicited Neighbour Advertisement frames (pure: the
//! shell sends them through an AF_PACKET socket bound to the interface).
//!
//! Both match, byte for byte, what keepalived 2.2.7 sends (see
//! tests/vectors/keepalived-*-announce.hex and tests/wire_vectors.rs).
use std::net::{Ipv4Addr, Ipv6Addr};

use super::wire::checksum;

/// Ethernet broadcast.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// Ethernet multicast address of ff02::1 (all nodes).
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
/// ff02::1.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// ARP target hardware address of a gratuitous ARP. keepalived 2.2.7 sends
/// ff:ff:ff:ff:ff:ff here (captured; RFC 5227 would use zeros, and
/// receivers ignore the field in a request), so we do the same.
pub const GARP_TARGET_MAC: [u8; 6] = [0xff; 6];
/// Length of a gratuitous ARP frame (no padding: the NIC pads to 60).
pub const GARP_FRAME_LEN: usize = 42;
/// Length of an unsolicited NA frame: Ethernet 14 + IPv6 40 + ICMPv6 32.
pub const NA_FRAME_LEN: usize = 86;

const ETH_HEADER_LEN: usize = 14;
const IPV6_HEADER_LEN: usize = 40;
const ICMPV6_NA_LEN: u16 = 32;
const NEXT_HEADER_ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
const NA_FLAG_ROUTER: u8 = 0x80;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LL_ADDR: u8 = 2;
const ARP_HTYPE_ETHERNET: u16 = 1;
const ARP_PTYPE_IPV4: u16 = 0x0800;
const ARP_OP_REQUEST: u16 = 1;

fn ethernet(frame: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
}

/// Complete Ethernet frame (42 bytes) of a gratuitous ARP for `vip` from `mac`:
/// to ff:ff:ff:ff:ff:ff, ARP request, sender = target IP = `vip`, sender MAC = `mac`,
/// target MAC [`GARP_TARGET_MAC`].
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(GARP_FRAME_LEN);
    ethernet(&mut f, BROADCAST_MAC, mac, ETHERTYPE_ARP);
    f.extend_from_slice(&ARP_HTYPE_ETHERNET.to_be_bytes());
    f.extend_from_slice(&ARP_PTYPE_IPV4.to_be_bytes());
    f.push(6); // hardware address length
    f.push(4); // protocol address length
    f.extend_from_slice(&ARP_OP_REQUEST.to_be_bytes());
    f.extend_from_slice(&mac);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&GARP_TARGET_MAC);
    f.extend_from_slice(&vip.octets());
    f
}

/// Complete Ethernet frame of an unsolicited NA for `vip` to ff02::1, hop
/// limit 255, Override flag (and Router if `router`), target link-layer
/// address option = `mac`, IPv6 source `src` (our link-local address).
/// (keepalived 2.2.7 uses the VIP itself as the source; pass it as `src` to
/// reproduce its frame.)
pub fn unsolicited_na_frame(mac: [u8; 6], src: Ipv6Addr, vip: Ipv6Addr, router: bool) -> Vec<u8> {
    let mut f = Vec::with_capacity(NA_FRAME_LEN);
    ethernet(&mut f, ALL_NODES_MAC, mac, ETHERTYPE_IPV6);
    // IPv6 header: version 6, traffic class 0, flow label 0.
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&ICMPV6_NA_LEN.to_be_bytes());
    f.push(NEXT_HEADER_ICMPV6);
    f.push(255); // hop limit (RFC 4861 §7.1.2)
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    // ICMPv6 Neighbor Advertisement.
    let icmp_start = f.len();
    f.extend_from_slice(&[ICMPV6_NEIGHBOR_ADVERT, 0, 0, 0]);
    let flags = NA_FLAG_OVERRIDE | if router { NA_FLAG_ROUTER } else { 0 };
    f.extend_from_slice(&[flags, 0, 0, 0]);
    f.extend_from_slice(&vip.octets());
    f.extend_from_slice(&[OPT_TARGET_LL_ADDR, 1]);
    f.extend_from_slice(&mac);
    let pseudo = checksum::pseudo_header_v6(src, ALL_NODES, NEXT_HEADER_ICMPV6, u32::from(ICMPV6_NA_LEN));
    let sum = checksum::compute(pseudo, &f[icmp_start..]);
    f[icmp_start + 2..icmp_start + 4].copy_from_slice(&sum.to_be_bytes());
    debug_assert_eq!(f.len(), ETH_HEADER_LEN + IPV6_HEADER_LEN + usize::from(ICMPV6_NA_LEN));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    // Captured from keepalived 2.2.7 (tests/vectors/keepalived-v3-ipv4-announce.hex).
    static GARP_BYTES: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, // ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // htype, ptype, hlen, plen, op
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc0, 0x00, 0x02, 0x64, // sender
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x64, // target
    ];

    fn ip6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn garp_frame_matches_pinned_bytes() {
        let f = garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 100));
        assert_eq!(f, GARP_BYTES);
        assert_eq!(f.len(), GARP_FRAME_LEN);
    }

    #[test]
    fn unsolicited_na_layout_and_checksum() {
        let src = ip6("fe80::ff:fe00:1");
        let vip = ip6("2001:db8::100");
        for router in [false, true] {
            let f = unsolicited_na_frame(MAC, src, vip, router);
            assert_eq!(f.len(), NA_FRAME_LEN);
            assert_eq!(&f[0..6], &ALL_NODES_MAC);
            assert_eq!(&f[6..12], &MAC);
            assert_eq!(&f[12..14], &[0x86, 0xdd]);
            assert_eq!(&f[14..22], &[0x60, 0, 0, 0, 0, 32, 58, 255]);
            assert_eq!(&f[22..38], &src.octets());
            assert_eq!(&f[38..54], &ALL_NODES.octets());
            let icmp = &f[54..];
            assert_eq!((icmp[0], icmp[1]), (136, 0));
            assert_eq!(icmp[4], if router { 0xa0 } else { 0x20 });
            assert_eq!(&icmp[5..8], &[0, 0, 0]);
            assert_eq!(&icmp[8..24], &vip.octets());
            assert_eq!(&icmp[24..26], &[2, 1]);
            assert_eq!(&icmp[26..32], &MAC);
            // Independent check: the whole message with the pseudo-header re-sums to 0xffff.
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&src.octets());
            pseudo.extend_from_slice(&ALL_NODES.octets());
            pseudo.extend_from_slice(&32u32.to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 58]);
            pseudo.extend_from_slice(icmp);
            let mut acc: u32 = pseudo.chunks(2).map(|w| u32::from(w[0]) << 8 | u32::from(w[1])).sum();
            while acc > 0xffff {
                acc = (acc & 0xffff) + (acc >> 16);
            }
            assert_eq!(acc, 0xffff);
        }
    }

    #[test]
    fn unsolicited_na_matches_keepalived_pinned_bytes() {
        // keepalived 2.2.7 NA for 2001:db8::100 (tests/vectors/keepalived-v3-ipv6-announce.hex):
        // source is the VIP itself, Override only, checksum 0xf72c.
        let f = unsolicited_na_frame(MAC, ip6("2001:db8::100"), ip6("2001:db8::100"), false);
        assert_eq!(&f[56..58], &[0xf7, 0x2c]);
    }
}
