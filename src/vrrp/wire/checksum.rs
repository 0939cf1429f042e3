//! Internet checksum (RFC 1071) helpers and the pseudo-header sums of IPv4
//! and IPv6 (RFC 8200 §8.1) that VRRP checksums include.

use std::net::{Ipv4Addr, Ipv6Addr};

/// One's complement sum of `data` as big-endian 16-bit words (odd tail
/// padded with zero), not yet folded. u64 cannot overflow for any slice.
pub fn sum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut acc: u64 = chunks
        .by_ref()
        .map(|w| u64::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Fold a sum to 16 bits with end-around carry.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// IPv4 pseudo-header (src, dst, zero, protocol, length) sum.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
    sum(&src.octets()) + sum(&dst.octets()) + u64::from(protocol) + u64::from(length)
}

/// RFC 8200 §8.1 pseudo-header (src, dst, u32 upper-layer length, 3 zero bytes, next header) sum.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u64 {
    sum(&src.octets()) + sum(&dst.octets()) + sum(&length.to_be_bytes()) + u64::from(next_header)
}

/// The checksum to store: complement of the folded sum of `pseudo` and
/// `data` (whose checksum field must be zero).
pub fn compute(pseudo: u64, data: &[u8]) -> u16 {
    !fold(pseudo + sum(data))
}

/// True if `data` (checksum field included) verifies with `pseudo`.
pub fn verify(pseudo: u64, data: &[u8]) -> bool {
    fold(pseudo + sum(data)) == 0xffff
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::super::checksum;

    #[test]
    fn checksum_odd_length_and_fold() {
        assert_eq!(checksum::sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
        assert_eq!(checksum::fold(0x1_fffe), 0xffff);
        assert_eq!(checksum::fold(0x2_0001), 0x0003);
    }
}
