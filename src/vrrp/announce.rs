//! Gratuitous ARP and unsolicited Neighbour Advertisement frames, built with
//! `pnet_packet`'s Ethernet, ARP and NDP builders (pure: the shell sends them
//! through an AF_PACKET socket bound to the interface), and the announcement
//! settings of an instance (keepalived's garp_* keys).
//!
//! Both frames match, byte for byte, what keepalived 2.2.7 sends (see
//! tests/vectors/keepalived-*-announce.hex and tests/wire_vectors.rs).
use std::net::{Ipv4Addr, Ipv6Addr};

use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, NdpOption, NdpOptionTypes, NeighborAdvertFlags};
use pnet_packet::icmpv6::{self, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::MutableIpv6Packet;
use serde::{Deserialize, Serialize};

use crate::time::Micros;

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
const ICMPV6_NA_LEN: usize = 32;

/// How an instance announces its VIPs beyond the bursts at master entry
/// (`garp_master_repeat` / `garp_master_delay` live in `RouterConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceConfig {
    /// keepalived `garp_master_refresh`: announce every this long while
    /// master (0 = never, keepalived's default).
    pub refresh: Micros,
    /// keepalived `garp_master_refresh_repeat`: frames per VIP at each refresh (default 1).
    pub refresh_repeat: u32,
    /// keepalived `garp_lower_prio_repeat`: frames per VIP when a master hears
    /// a lower priority (a healed split brain); `None` = `garp_master_repeat`,
    /// 0 = do not re-announce.
    pub lower_prio_repeat: Option<u32>,
}

impl Default for AnnounceConfig {
    fn default() -> Self {
        AnnounceConfig {
            refresh: Micros::ZERO,
            refresh_repeat: 1,
            lower_prio_repeat: None,
        }
    }
}

fn mac_addr(m: [u8; 6]) -> MacAddr {
    MacAddr::new(m[0], m[1], m[2], m[3], m[4], m[5])
}

/// Fill the Ethernet header of `frame` (its first 14 bytes).
fn ethernet(frame: &mut [u8], dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    if let Some(mut eth) = MutableEthernetPacket::new(frame) {
        eth.set_destination(mac_addr(dst));
        eth.set_source(mac_addr(src));
        eth.set_ethertype(pnet_packet::ethernet::EtherType(ethertype));
    }
}

/// Complete Ethernet frame (42 bytes) of a gratuitous ARP for `vip` from `mac`:
/// to ff:ff:ff:ff:ff:ff, ARP request, sender = target IP = `vip`, sender MAC = `mac`,
/// target MAC [`GARP_TARGET_MAC`].
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; GARP_FRAME_LEN];
    ethernet(&mut f, BROADCAST_MAC, mac, EtherTypes::Arp.0);
    if let Some(mut arp) = MutableArpPacket::new(&mut f[ETH_HEADER_LEN..]) {
        arp.set_hardware_type(ArpHardwareTypes::Ethernet);
        arp.set_protocol_type(EtherTypes::Ipv4);
        arp.set_hw_addr_len(6);
        arp.set_proto_addr_len(4);
        arp.set_operation(ArpOperations::Request);
        arp.set_sender_hw_addr(mac_addr(mac));
        arp.set_sender_proto_addr(vip);
        arp.set_target_hw_addr(mac_addr(GARP_TARGET_MAC));
        arp.set_target_proto_addr(vip);
    }
    f
}

/// Complete Ethernet frame of an unsolicited NA for `vip` to ff02::1, hop
/// limit 255, Override flag (and Router if `router`), target link-layer
/// address option = `mac`, IPv6 source `src` (our link-local address).
/// (keepalived 2.2.7 uses the VIP itself as the source; pass it as `src` to
/// reproduce its frame.)
pub fn unsolicited_na_frame(mac: [u8; 6], src: Ipv6Addr, vip: Ipv6Addr, router: bool) -> Vec<u8> {
    let mut f = vec![0u8; NA_FRAME_LEN];
    ethernet(&mut f, ALL_NODES_MAC, mac, EtherTypes::Ipv6.0);
    if let Some(mut ip) = MutableIpv6Packet::new(&mut f[ETH_HEADER_LEN..]) {
        ip.set_version(6);
        ip.set_payload_length(ICMPV6_NA_LEN as u16);
        ip.set_next_header(IpNextHeaderProtocols::Icmpv6);
        ip.set_hop_limit(255); // RFC 4861 §7.1.2
        ip.set_source(src);
        ip.set_destination(ALL_NODES);
    }
    let icmp = &mut f[ETH_HEADER_LEN + IPV6_HEADER_LEN..];
    if let Some(mut na) = MutableNeighborAdvertPacket::new(icmp) {
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_flags(NeighborAdvertFlags::Override | if router { NeighborAdvertFlags::Router } else { 0 });
        na.set_target_addr(vip);
        na.set_options(&[NdpOption {
            option_type: NdpOptionTypes::TargetLLAddr,
            length: 1, // in units of 8 bytes: type, length, 6-byte MAC
            data: mac.to_vec(),
        }]);
    }
    let sum = Icmpv6Packet::new(icmp).map(|p| icmpv6::checksum(&p, &src, &ALL_NODES));
    if let Some(mut na) = MutableNeighborAdvertPacket::new(icmp) {
        na.set_checksum(sum.unwrap_or(0));
    }
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
