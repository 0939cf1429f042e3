//! Gratuitous ARP and unsolicited Neighbour Advertisement frames. STUB.
#![allow(unused_variables)]
use std::net::{Ipv4Addr, Ipv6Addr};

/// Complete Ethernet frame (42 bytes) of a gratuitous ARP for `vip` from `mac`.
pub fn garp_frame(mac: [u8; 6], vip: Ipv4Addr) -> Vec<u8> {
    unimplemented!()
}

/// Complete Ethernet frame of an unsolicited NA for `vip` to ff02::1, hop
/// limit 255, Override flag (and Router if `router`), target link-layer
/// address option = `mac`, IPv6 source `src` (our link-local address).
pub fn unsolicited_na_frame(mac: [u8; 6], src: Ipv6Addr, vip: Ipv6Addr, router: bool) -> Vec<u8> {
    unimplemented!()
}
