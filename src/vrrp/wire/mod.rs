//! VRRP v2/v3 wire codec, smoltcp style.
//!
//! * [`Packet`] is a zero-copy view of a VRRP message (v2: RFC 3768 §5.1,
//!   v3: RFC 9568 §5.1) over any `T: AsRef<[u8]>`, with setters when
//!   `T: AsMut<[u8]>`. Offsets live in the private `field` module.
//! * [`Ipv4Packet`] is a minimal view of an IPv4 header (IHL and total length
//!   honoured), enough to decode what an IPv4 raw socket delivers.
//! * [`decode_ipv4`] / [`decode_ipv6`] validate in RFC 9568 §7.1 order and
//!   return [`Received`] or a [`Discard`] naming the ledger reason (RX1..RX9).
//! * [`emit`] / [`try_emit`] build the VRRP message (no IP header: the kernel
//!   adds it) with its checksum.
//!
//! Decoding never panics, whatever the input (proptest and `fuzz/` check it).
//!
//! Layout: `packet` (the VRRP view, field offsets), `ipv4` (the IPv4 header
//! view), `checksum` (RFC 1071), `emit` (TX); this file holds the RX pipeline
//! and the constants shared by all of them.

use std::net::{IpAddr, Ipv6Addr};

use super::{Advert, Auth, Centis, ChecksumForm, Discard, Interval, Received, RxError, Secs, Version};

pub mod checksum;
mod emit;
mod ipv4;
mod packet;

pub use emit::{buffer_len, emit, try_emit, EmitError};
use ipv4::ip_field;
pub use ipv4::Ipv4Packet;
use packet::field;
pub use packet::Packet;

/// IP protocol number of VRRP.
pub const PROTOCOL: u8 = 112;
/// IPv4 multicast group 224.0.0.18.
pub const GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 18);
/// IPv6 multicast group ff02::12.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// The only VRRP message type (RX4).
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Fixed part of a VRRP message (both versions).
pub const HEADER_LEN: usize = 8;
/// v2 authentication data that follows the addresses.
pub const AUTH_DATA_LEN: usize = 8;
/// v2 auth type 0: no authentication.
pub const AUTH_TYPE_NONE: u8 = 0;
/// v2 auth type 1: simple text password.
pub const AUTH_TYPE_SIMPLE: u8 = 1;
/// The count field is 8 bits.
pub const MAX_ADDRS: usize = 255;
/// TTL / hop limit every VRRP packet must carry (RX1, TX1).
pub const TTL: u8 = 255;

/// Address family of a VRRP address list (taken from the carrying IP header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// Bytes per address in the list.
    pub fn addr_len(self) -> usize {
        match self {
            Family::V4 => 4,
            Family::V6 => 16,
        }
    }

    /// The VRRP multicast group of this family.
    pub fn group(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(GROUP_V4),
            Family::V6 => IpAddr::V6(GROUP_V6),
        }
    }
}

fn discard(reason: RxError, vrid: Option<u8>, src: Option<IpAddr>) -> Discard {
    Discard { reason, vrid, src }
}

/// Decode a whole IPv4 packet (IP header included, as an IPv4 raw socket
/// delivers it). Honours IHL and total length, checks TTL = 255.
///
/// Order: IP header lengths (`BadIpHeaderLength`; the source is reported
/// whenever the 20 fixed bytes are there), protocol 112 (`NotVrrp`), TTL
/// (RX1), then the VRRP checks of [`decode_ipv6`]'s list.
pub fn decode_ipv4(packet: &[u8]) -> Result<Received, Discard> {
    let ip = Ipv4Packet::new_unchecked(packet);
    let src = (packet.len() >= ip_field::MIN_HEADER_LEN).then(|| IpAddr::V4(ip.src_addr()));
    if let Err(reason) = ip.check_len() {
        // The VRRP VRID if the fixed header is there and IHL points at something readable.
        // Not IPv4 at all (`NotVrrp`): nothing is reported.
        let (vrid, src) = match (&reason, src) {
            (RxError::BadIpHeaderLength, Some(src)) => (
                packet
                    .get(ip.header_len().max(ip_field::MIN_HEADER_LEN) + field::VRID)
                    .copied(),
                Some(src),
            ),
            _ => (None, None),
        };
        return Err(discard(reason, vrid, src));
    }
    let payload = ip.payload();
    let vrid = payload.get(field::VRID).copied();
    if ip.protocol() != PROTOCOL {
        return Err(discard(RxError::NotVrrp, vrid, src));
    }
    decode_vrrp(IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()), ip.ttl(), payload)
}

/// Decode a VRRP message carried in IPv6 (an IPv6 raw socket delivers no IP
/// header: source, destination and hop limit come from recvmsg).
///
/// Checks, in order: hop limit 255 (RX1); fixed header present (RX2
/// `TooShort`); version 3 (RX3 `BadVersion`, v2 ⇒ `FamilyMismatch`, RX9);
/// type 1 (RX4); every counted address present (RX2 `TooShort`); checksum
/// with the RFC 8200 pseudo-header (RX5); count ≥ 1 and equal to the length
/// (RX7); interval ≠ 0 (RX8); source link-local (RX9). Reserved bits are
/// ignored (RX12). The *first address* of the list is deliberately not
/// required to be link-local: keepalived 2.2.7 sends the VIPs in configured
/// order, so a global VIP configured first comes first (captured:
/// tests/vectors/keepalived-v3-ipv6.hex sends 2001:db8::100 before
/// fe80::100; keepalived-v3-ipv6-llfirst.hex shows it does not reorder).
pub fn decode_ipv6(src: Ipv6Addr, dst: Ipv6Addr, hop_limit: u8, payload: &[u8]) -> Result<Received, Discard> {
    decode_vrrp(IpAddr::V6(src), IpAddr::V6(dst), hop_limit, payload)
}

/// Shared VRRP checks; `src`/`dst` are of one family, the list's family.
fn decode_vrrp(src: IpAddr, dst: IpAddr, ttl: u8, payload: &[u8]) -> Result<Received, Discard> {
    let family = Family::of(src);
    let vrid = payload.get(field::VRID).copied();
    let fail = |reason: RxError| discard(reason, vrid, Some(src));

    // RX1
    if ttl != TTL {
        return Err(fail(RxError::BadTtl));
    }
    // RX2 (fixed part)
    let packet = Packet::new_checked(payload).map_err(fail)?;
    // RX3
    let version = match (packet.version(), family) {
        (3, _) => Version::V3,
        (2, Family::V4) => Version::V2,
        (2, Family::V6) => return Err(fail(RxError::FamilyMismatch)),
        _ => return Err(fail(RxError::BadVersion)),
    };
    // RX4
    if packet.msg_type() != TYPE_ADVERTISEMENT {
        return Err(fail(RxError::BadType));
    }
    // RX2 (addresses and v2 auth data)
    packet.check_addrs(family).map_err(fail)?;
    // RX5
    let checksum_form = match (version, family) {
        (Version::V2, _) => ChecksumForm::MessageOnly,
        (Version::V3, Family::V6) => ChecksumForm::PseudoHeader,
        // A message that verifies in both forms (pseudo-header summing to
        // ones'-complement zero, ~1 in 65535) is reported as PseudoHeader.
        (Version::V3, Family::V4) => {
            if packet.verify_checksum(src, dst, ChecksumForm::PseudoHeader) {
                ChecksumForm::PseudoHeader
            } else {
                ChecksumForm::MessageOnly
            }
        }
    };
    if !packet.verify_checksum(src, dst, checksum_form) {
        return Err(fail(RxError::BadChecksum));
    }
    // RX7
    if packet.addr_count() == 0 {
        return Err(fail(RxError::AddrCountZero));
    }
    if payload.len() != packet.message_len(family) {
        return Err(fail(RxError::AddrCountMismatch));
    }
    // RX8 (RX12: reserved bits already masked by the getter)
    let interval = match version {
        Version::V3 => Centis::new(packet.max_adver_int()).map(Interval::V3),
        Version::V2 => Secs::new(packet.adver_int()).map(Interval::V2),
    }
    .ok_or_else(|| fail(RxError::IntervalZero))?;
    // RX9
    if let IpAddr::V6(s) = src {
        if !is_link_local(s) {
            return Err(fail(RxError::SourceNotLinkLocal));
        }
    }
    let auth = match version {
        // Other auth types (2 = IP AH, long deprecated) decode as None; the
        // router compares types (RX11) and can count the mismatch.
        Version::V2 if packet.auth_type() == AUTH_TYPE_SIMPLE => {
            packet.auth_data(family).map(Auth::Simple).unwrap_or(Auth::None)
        }
        _ => Auth::None,
    };
    Ok(Received {
        src,
        dst,
        ttl,
        checksum_form,
        advert: Advert {
            version,
            vrid: packet.vrid(),
            priority: packet.priority(),
            interval,
            addrs: packet.addrs(family),
            auth,
        },
    })
}

/// fe80::/10.
pub fn is_link_local(addr: Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
/// Pinned vectors and builders shared by the codec tests of every submodule.
mod fixtures {
    pub(super) use super::*;
    pub(super) use std::net::Ipv4Addr;

    // ---- pinned vectors (VRRP messages captured from keepalived 2.2.7, see tests/vectors/) ----
    // VID 51, priority 100, 1 s, from 192.0.2.1 to 224.0.0.18.
    pub(super) static V2_BYTES: [u8; 24] = [
        0x21, 0x33, 0x64, 0x02, 0x00, 0x01, 0xf5, 0xfe, 0xc0, 0x00, 0x02, 0x64, 0xc0, 0x00, 0x02, 0x65, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    pub(super) static V2_PASS_BYTES: [u8; 20] = [
        0x21, 0x33, 0x64, 0x01, 0x01, 0x01, 0x7b, 0x19, 0xc0, 0x00, 0x02, 0x64, b's', b'e', b'c', b'r', b'e', b't',
        0x00, 0x00,
    ];
    pub(super) static V3_V4_PSEUDO_BYTES: [u8; 16] = [
        0x31, 0x33, 0x64, 0x02, 0x00, 0x64, 0x43, 0x07, 0xc0, 0x00, 0x02, 0x64, 0xc0, 0x00, 0x02, 0x65,
    ];
    // Same advert, RFC 9568 message-only checksum (computed independently with python3: 0xe59b).
    pub(super) static V3_V4_MSGONLY_BYTES: [u8; 16] = [
        0x31, 0x33, 0x64, 0x02, 0x00, 0x64, 0xe5, 0x9b, 0xc0, 0x00, 0x02, 0x64, 0xc0, 0x00, 0x02, 0x65,
    ];
    // From fe80::ff:fe00:1 to ff02::12: 2001:db8::100 (global, first!) and fe80::100.
    pub(super) static V3_V6_BYTES: [u8; 40] = [
        0x31, 0x33, 0x64, 0x02, 0x00, 0x64, 0x3e, 0xfd, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        0x00, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
    ];

    pub(super) const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    pub(super) const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);

    pub(super) fn v4(a: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, a))
    }

    pub(super) fn advert_v2(auth: Auth) -> Advert {
        let addrs = if auth == Auth::None {
            vec![v4(100), v4(101)]
        } else {
            vec![v4(100)]
        };
        Advert {
            version: Version::V2,
            vrid: 51,
            priority: 100,
            interval: Interval::V2(Secs::new(1).unwrap()),
            addrs,
            auth,
        }
    }

    pub(super) fn advert_v3_v4() -> Advert {
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval: Interval::V3(Centis::new(100).unwrap()),
            addrs: vec![v4(100), v4(101)],
            auth: Auth::None,
        }
    }

    pub(super) fn advert_v3_v6() -> Advert {
        Advert {
            version: Version::V3,
            vrid: 51,
            priority: 100,
            interval: Interval::V3(Centis::new(100).unwrap()),
            addrs: vec!["2001:db8::100".parse().unwrap(), "fe80::100".parse().unwrap()],
            auth: Auth::None,
        }
    }

    pub(super) const PASS: Auth = Auth::Simple(*b"secret\0\0");

    /// IPv4 packet: header of `ihl` words (options zero), given TTL/protocol, then `vrrp`.
    pub(super) fn ipv4_with(ihl: u8, ttl: u8, protocol: u8, vrrp: &[u8]) -> Vec<u8> {
        let hl = usize::from(ihl) * 4;
        let mut p = vec![0u8; hl];
        p[0] = 0x40 | ihl;
        p[1] = 0xc0;
        p[2..4].copy_from_slice(&u16::try_from(hl + vrrp.len()).unwrap().to_be_bytes());
        p[8] = ttl;
        p[9] = protocol;
        p[12..16].copy_from_slice(&SRC4.octets());
        p[16..20].copy_from_slice(&GROUP_V4.octets());
        p.extend_from_slice(vrrp);
        p
    }

    pub(super) fn ipv4(vrrp: &[u8]) -> Vec<u8> {
        ipv4_with(5, 255, PROTOCOL, vrrp)
    }

    pub(super) fn decode6(vrrp: &[u8]) -> Result<Received, Discard> {
        decode_ipv6(SRC6, GROUP_V6, 255, vrrp)
    }

    /// Recompute the checksum of a (mutated) message in `form`.
    pub(super) fn refill(bytes: &[u8], src: IpAddr, dst: IpAddr, form: ChecksumForm) -> Vec<u8> {
        let mut p = Packet::new_unchecked(bytes.to_vec());
        p.fill_checksum(src, dst, form);
        p.into_inner()
    }

    pub(super) fn refill4(bytes: &[u8]) -> Vec<u8> {
        refill(
            bytes,
            IpAddr::V4(SRC4),
            IpAddr::V4(GROUP_V4),
            ChecksumForm::PseudoHeader,
        )
    }

    pub(super) fn refill6(bytes: &[u8]) -> Vec<u8> {
        refill(
            bytes,
            IpAddr::V6(SRC6),
            IpAddr::V6(GROUP_V6),
            ChecksumForm::PseudoHeader,
        )
    }

    pub(super) fn reason(r: Result<Received, Discard>) -> RxError {
        r.expect_err("must be discarded").reason
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::fixtures::*;

    #[test]
    fn parse_v2() {
        let r = decode_ipv4(&ipv4(&V2_BYTES)).unwrap();
        assert_eq!(r.advert, advert_v2(Auth::None));
        assert_eq!((r.src, r.dst, r.ttl), (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4), 255));
        assert_eq!(r.checksum_form, ChecksumForm::MessageOnly);
        let r = decode_ipv4(&ipv4(&V2_PASS_BYTES)).unwrap();
        assert_eq!(r.advert, advert_v2(PASS));
    }

    #[test]
    fn parse_v2_unknown_auth_type_is_none() {
        let mut b = V2_BYTES.to_vec();
        b[4] = 2; // IP AH
        let r = decode_ipv4(&ipv4(&refill4(&b))).unwrap();
        assert_eq!(r.advert.auth, Auth::None);
    }

    #[test]
    fn parse_v3_ipv4_both_forms() {
        let r = decode_ipv4(&ipv4(&V3_V4_PSEUDO_BYTES)).unwrap();
        assert_eq!(
            (r.advert.clone(), r.checksum_form),
            (advert_v3_v4(), ChecksumForm::PseudoHeader)
        );
        let r = decode_ipv4(&ipv4(&V3_V4_MSGONLY_BYTES)).unwrap();
        assert_eq!((r.advert, r.checksum_form), (advert_v3_v4(), ChecksumForm::MessageOnly));
    }

    #[test]
    fn parse_and_emit_v3_ipv6() {
        let r = decode6(&V3_V6_BYTES).unwrap();
        assert_eq!(r.advert, advert_v3_v6());
        assert_eq!(r.checksum_form, ChecksumForm::PseudoHeader);
        assert_eq!((r.src, r.dst, r.ttl), (IpAddr::V6(SRC6), IpAddr::V6(GROUP_V6), 255));
        for form in [ChecksumForm::PseudoHeader, ChecksumForm::MessageOnly] {
            let out = emit(&advert_v3_v6(), IpAddr::V6(SRC6), IpAddr::V6(GROUP_V6), form);
            assert_eq!(out, V3_V6_BYTES, "IPv6 always uses the pseudo-header");
        }
        assert_eq!(buffer_len(&advert_v3_v6()), 40);
    }

    #[test]
    fn ipv4_header_with_options_is_honoured__RX2() {
        let p = ipv4_with(6, 255, PROTOCOL, &V3_V4_PSEUDO_BYTES);
        let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
        assert_eq!((ip.header_len(), ip.payload().len()), (24, 16));
        assert_eq!(decode_ipv4(&p).unwrap().advert, advert_v3_v4());
        let p = ipv4_with(15, 255, PROTOCOL, &V3_V4_PSEUDO_BYTES);
        assert_eq!(decode_ipv4(&p).unwrap().advert, advert_v3_v4());
    }

    #[test]
    fn ipv4_trailing_padding_is_tolerated__RX2() {
        let mut p = ipv4(&V2_BYTES);
        p.extend_from_slice(&[0xee; 18]);
        assert_eq!(decode_ipv4(&p).unwrap().advert, advert_v2(Auth::None));
    }

    #[test]
    fn rx_ipv4_bad_header_length_is_discarded__RX2() {
        let good = ipv4(&V2_BYTES);
        let mut ihl4 = good.clone();
        ihl4[0] = 0x44;
        let mut total_long = good.clone();
        total_long[2..4].copy_from_slice(&(good.len() as u16 + 1).to_be_bytes());
        let mut total_short = good.clone();
        total_short[2..4].copy_from_slice(&19u16.to_be_bytes());
        let mut ihl_beyond = good[..30].to_vec();
        ihl_beyond[0] = 0x4f;
        ihl_beyond[2..4].copy_from_slice(&30u16.to_be_bytes());
        for p in [ihl4, total_long, total_short, ihl_beyond] {
            let d = decode_ipv4(&p).unwrap_err();
            assert_eq!(d.reason, RxError::BadIpHeaderLength);
            assert_eq!(d.src, Some(IpAddr::V4(SRC4)));
        }
        let d = decode_ipv4(&good[..19]).unwrap_err();
        assert_eq!((d.reason, d.src, d.vrid), (RxError::BadIpHeaderLength, None, None));
        assert_eq!(reason(decode_ipv4(&[])), RxError::BadIpHeaderLength);
    }

    #[test]
    fn rx_not_ipv4_or_not_protocol_112_is_not_vrrp() {
        assert_eq!(reason(decode_ipv4(&ipv4_with(5, 255, 17, &V2_BYTES))), RxError::NotVrrp);
        let mut p = ipv4(&V2_BYTES);
        p[0] = 0x65;
        assert_eq!(
            decode_ipv4(&p).unwrap_err(),
            Discard {
                reason: RxError::NotVrrp,
                vrid: None,
                src: None
            }
        );
    }

    #[test]
    fn rx_ttl_not_255_is_discarded__RX1() {
        for ttl in [0, 1, 64, 254] {
            let d = decode_ipv4(&ipv4_with(5, ttl, PROTOCOL, &V2_BYTES)).unwrap_err();
            assert_eq!(
                d,
                Discard {
                    reason: RxError::BadTtl,
                    vrid: Some(51),
                    src: Some(IpAddr::V4(SRC4))
                }
            );
            let d = decode_ipv6(SRC6, GROUP_V6, ttl, &V3_V6_BYTES).unwrap_err();
            assert_eq!(
                d,
                Discard {
                    reason: RxError::BadTtl,
                    vrid: Some(51),
                    src: Some(IpAddr::V6(SRC6))
                }
            );
        }
    }

    #[test]
    fn rx_truncated_packet_is_too_short__RX2() {
        // Fixed header incomplete.
        for n in 0..HEADER_LEN {
            let d = decode_ipv4(&ipv4(&V2_BYTES[..n])).unwrap_err();
            assert_eq!(
                (d.reason, d.vrid),
                (RxError::TooShort, V2_BYTES.get(1).copied().filter(|_| n > 1))
            );
            assert_eq!(reason(decode6(&V3_V6_BYTES[..n])), RxError::TooShort);
        }
        // Addresses (or v2 auth data) incomplete.
        for n in HEADER_LEN..V2_BYTES.len() {
            assert_eq!(
                reason(decode_ipv4(&ipv4(&V2_BYTES[..n]))),
                RxError::TooShort,
                "v2 len {n}"
            );
        }
        for n in HEADER_LEN..V3_V4_PSEUDO_BYTES.len() {
            assert_eq!(reason(decode_ipv4(&ipv4(&V3_V4_PSEUDO_BYTES[..n]))), RxError::TooShort);
        }
        for n in HEADER_LEN..V3_V6_BYTES.len() {
            assert_eq!(reason(decode6(&V3_V6_BYTES[..n])), RxError::TooShort);
        }
    }

    #[test]
    fn rx_version_not_2_or_3_is_discarded__RX3() {
        for v in [0u8, 1, 4, 15] {
            let mut b = V3_V4_PSEUDO_BYTES.to_vec();
            b[0] = (v << 4) | 1;
            assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::BadVersion);
            let mut b = V3_V6_BYTES.to_vec();
            b[0] = (v << 4) | 1;
            assert_eq!(reason(decode6(&refill6(&b))), RxError::BadVersion);
        }
    }

    #[test]
    fn rx_v2_over_ipv6_is_family_mismatch__RX9() {
        // A well-formed v2 message with one IPv6 address and auth data.
        let mut b = vec![0x21, 51, 100, 1, 0, 1, 0, 0];
        b.extend_from_slice(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100).octets());
        b.extend_from_slice(&[0; 8]);
        let b = refill6(&b);
        let d = decode6(&b).unwrap_err();
        assert_eq!((d.reason, d.vrid), (RxError::FamilyMismatch, Some(51)));
    }

    #[test]
    fn rx_type_not_1_is_discarded__RX4() {
        for t in [0u8, 2, 15] {
            let mut b = V3_V4_PSEUDO_BYTES.to_vec();
            b[0] = 0x30 | t;
            assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::BadType);
            let mut b = V2_BYTES.to_vec();
            b[0] = 0x20 | t;
            assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::BadType);
        }
    }

    #[test]
    fn rx_bad_checksum_v2_is_discarded__RX5() {
        let mut b = V2_BYTES.to_vec();
        b[7] ^= 1;
        assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::BadChecksum);
        // A v2 message checksummed with a pseudo-header does not verify.
        let mut p = Packet::new_unchecked(V2_BYTES.to_vec());
        p.set_checksum(0);
        let pseudo = checksum::pseudo_header_v4(SRC4, GROUP_V4, PROTOCOL, 24);
        let c = checksum::compute(pseudo, p.into_inner().as_slice());
        let mut b = V2_BYTES.to_vec();
        b[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::BadChecksum);
    }

    #[test]
    fn rx_bad_checksum_v3_ipv4_in_neither_form_is_discarded__RX5() {
        for good in [V3_V4_PSEUDO_BYTES, V3_V4_MSGONLY_BYTES] {
            let mut b = good.to_vec();
            b[6] ^= 0x80;
            assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::BadChecksum);
            // Payload corruption too.
            let mut b = good.to_vec();
            b[15] ^= 1;
            assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::BadChecksum);
        }
        // Pseudo-header form computed for another source does not verify.
        let mut ip = ipv4(&V3_V4_PSEUDO_BYTES);
        ip[15] = 2;
        assert_eq!(reason(decode_ipv4(&ip)), RxError::BadChecksum);
    }

    #[test]
    fn rx_v3_ipv4_accepts_pseudo_header_and_message_only_forms__RX5() {
        assert_eq!(
            decode_ipv4(&ipv4(&V3_V4_PSEUDO_BYTES)).unwrap().checksum_form,
            ChecksumForm::PseudoHeader
        );
        assert_eq!(
            decode_ipv4(&ipv4(&V3_V4_MSGONLY_BYTES)).unwrap().checksum_form,
            ChecksumForm::MessageOnly
        );
    }

    #[test]
    fn rx_bad_checksum_v3_ipv6_is_discarded__RX5() {
        let mut b = V3_V6_BYTES.to_vec();
        b[39] ^= 1;
        assert_eq!(reason(decode6(&b)), RxError::BadChecksum);
        // Message-only form is not accepted over IPv6.
        let b = refill(
            &V3_V6_BYTES,
            IpAddr::V6(SRC6),
            IpAddr::V4(GROUP_V4),
            ChecksumForm::MessageOnly,
        );
        assert_ne!(b, V3_V6_BYTES);
        assert_eq!(reason(decode6(&b)), RxError::BadChecksum);
        // Pseudo-header with another destination does not verify.
        let other = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
        assert_eq!(
            reason(decode_ipv6(SRC6, other, 255, &V3_V6_BYTES)),
            RxError::BadChecksum
        );
    }

    #[test]
    fn rx_addr_count_zero_is_discarded__RX7() {
        let b = refill4(&[0x31, 51, 100, 0, 0, 100, 0, 0]);
        assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::AddrCountZero);
        let b = refill4(&[0x21, 51, 100, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(reason(decode_ipv4(&ipv4(&b))), RxError::AddrCountZero);
        let b = refill6(&[0x31, 51, 100, 0, 0, 100, 0, 0]);
        assert_eq!(reason(decode6(&b)), RxError::AddrCountZero);
    }

    #[test]
    fn rx_addr_count_not_matching_length_is_discarded__RX7() {
        // Count 1 but two addresses present.
        let mut b = V3_V4_PSEUDO_BYTES.to_vec();
        b[3] = 1;
        let d = decode_ipv4(&ipv4(&refill4(&b))).unwrap_err();
        assert_eq!((d.reason, d.vrid), (RxError::AddrCountMismatch, Some(51)));
        let mut b = V3_V6_BYTES.to_vec();
        b[3] = 1;
        assert_eq!(reason(decode6(&refill6(&b))), RxError::AddrCountMismatch);
        // v2 with trailing bytes inside the IP total length.
        let mut b = V2_BYTES.to_vec();
        b.extend_from_slice(&[0; 4]);
        assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::AddrCountMismatch);
    }

    #[test]
    fn rx_interval_zero_is_discarded__RX8() {
        let mut b = V3_V4_PSEUDO_BYTES.to_vec();
        b[4..6].copy_from_slice(&[0xf0, 0x00]); // reserved bits set, interval 0
        assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::IntervalZero);
        let mut b = V2_BYTES.to_vec();
        b[5] = 0;
        assert_eq!(reason(decode_ipv4(&ipv4(&refill4(&b)))), RxError::IntervalZero);
        let mut b = V3_V6_BYTES.to_vec();
        b[5] = 0;
        assert_eq!(reason(decode6(&refill6(&b))), RxError::IntervalZero);
    }

    #[test]
    fn rx_ipv6_source_not_link_local_is_discarded__RX9() {
        let global = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        let b = refill(
            &V3_V6_BYTES,
            IpAddr::V6(global),
            IpAddr::V6(GROUP_V6),
            ChecksumForm::PseudoHeader,
        );
        let d = decode_ipv6(global, GROUP_V6, 255, &b).unwrap_err();
        assert_eq!(
            d,
            Discard {
                reason: RxError::SourceNotLinkLocal,
                vrid: Some(51),
                src: Some(IpAddr::V6(global))
            }
        );
        // fe80::/10 covers febf::.
        let edge = Ipv6Addr::new(0xfebf, 0, 0, 0, 0, 0, 0, 1);
        let b = refill(
            &V3_V6_BYTES,
            IpAddr::V6(edge),
            IpAddr::V6(GROUP_V6),
            ChecksumForm::PseudoHeader,
        );
        assert!(decode_ipv6(edge, GROUP_V6, 255, &b).is_ok());
    }

    #[test]
    fn rx_ipv6_first_address_global_is_accepted__RX9() {
        // keepalived 2.2.7 sends 2001:db8::100 before fe80::100 (its configured order).
        let r = decode6(&V3_V6_BYTES).unwrap();
        assert!(!is_link_local(match r.advert.addrs[0] {
            IpAddr::V6(a) => a,
            IpAddr::V4(_) => unreachable!(),
        }));
    }

    #[test]
    fn rx_reserved_bits_are_ignored__RX12() {
        let mut b = V3_V4_PSEUDO_BYTES.to_vec();
        b[4] |= 0xf0;
        let r = decode_ipv4(&ipv4(&refill4(&b))).unwrap();
        assert_eq!(r.advert, advert_v3_v4());
        let mut b = V3_V6_BYTES.to_vec();
        b[4] |= 0xa0;
        assert_eq!(decode6(&refill6(&b)).unwrap().advert, advert_v3_v6());
    }

    #[test]
    fn discard_reports_vrid_and_source() {
        let mut b = V2_BYTES.to_vec();
        b[1] = 77;
        let d = decode_ipv4(&ipv4(&b)).unwrap_err();
        assert_eq!(
            d,
            Discard {
                reason: RxError::BadChecksum,
                vrid: Some(77),
                src: Some(IpAddr::V4(SRC4))
            }
        );
        let d = decode6(&[0x31]).unwrap_err();
        assert_eq!((d.vrid, d.src), (None, Some(IpAddr::V6(SRC6))));
    }
}
