//! VRRP v2/v3 wire codec (smoltcp style). STUB: signatures only; the codec
//! work replaces the bodies.
#![allow(unused_variables)]

use std::net::{IpAddr, Ipv6Addr};

use super::{Advert, ChecksumForm, Discard, Received};

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// IPv4 multicast group 224.0.0.18.
pub const GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group ff02::12.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Decode a whole IPv4 packet (IP header included, as an IPv4 raw socket
/// delivers it). Honours IHL and total length, checks TTL = 255.
pub fn decode_ipv4(packet: &[u8]) -> Result<Received, Discard> {
    unimplemented!()
}

/// Decode a VRRP message carried in IPv6 (an IPv6 raw socket delivers no IP
/// header: source, destination and hop limit come from recvmsg).
pub fn decode_ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, payload: &[u8]) -> Result<Received, Discard> {
    unimplemented!()
}

/// Emit the VRRP message (no IP header) for `advert`, with the checksum for
/// the given source/destination and form (the form matters only for v3/IPv4).
pub fn emit(advert: &Advert, src: IpAddr, dst: IpAddr, form: ChecksumForm) -> Vec<u8> {
    unimplemented!()
}
