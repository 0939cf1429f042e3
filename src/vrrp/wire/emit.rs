//! TX: build a VRRP message (no IP header: the kernel adds it) with its
//! checksum, leniently (`emit`) or strictly (`try_emit`).

use std::net::IpAddr;

use super::{
    Family, Packet, AUTH_DATA_LEN, AUTH_TYPE_NONE, AUTH_TYPE_SIMPLE, HEADER_LEN, MAX_ADDRS, TYPE_ADVERTISEMENT,
};
use crate::vrrp::{Advert, Auth, Centis, ChecksumForm, Interval, Version};

/// Why [`try_emit`] refused an advert (all are programming errors of the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EmitError {
    /// Source and destination are of different families.
    MixedFamilies,
    /// An address in the list is not of the source's family.
    AddrFamily,
    /// v2 only runs over IPv4.
    V2OverIpv6,
    /// No address in the list (receivers discard it, RX7).
    NoAddresses,
    /// More than 255 addresses.
    TooManyAddresses,
    /// `Interval::V2` in a v3 advert or the reverse.
    IntervalVersion,
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EmitError::MixedFamilies => "source and destination of different families",
            EmitError::AddrFamily => "address of the wrong family in the list",
            EmitError::V2OverIpv6 => "VRRPv2 over IPv6",
            EmitError::NoAddresses => "empty address list",
            EmitError::TooManyAddresses => "more than 255 addresses",
            EmitError::IntervalVersion => "interval unit does not match the version",
        })
    }
}

impl std::error::Error for EmitError {}

/// Family of the list: that of its first address (IPv4 if empty).
fn list_family(advert: &Advert) -> Family {
    advert.addrs.first().map_or(Family::V4, |a| Family::of(*a))
}

/// Length of the message [`emit`] produces for `advert` when the source is
/// of the family of its first address (always so for a valid advert):
/// 8 + addresses × 4|16 (+ 8 for v2). Addresses of another family than the
/// first, and any beyond 255, are not counted (as `emit` skips them).
pub fn buffer_len(advert: &Advert) -> usize {
    let family = list_family(advert);
    let count = advert
        .addrs
        .iter()
        .filter(|a| Family::of(**a) == family)
        .take(MAX_ADDRS)
        .count();
    let auth = if advert.version == Version::V2 {
        AUTH_DATA_LEN
    } else {
        0
    };
    HEADER_LEN + count * family.addr_len() + auth
}

/// Strict emit: the VRRP message for `advert`, or why it cannot be sent.
pub fn try_emit(advert: &Advert, src: IpAddr, dst: IpAddr, form: ChecksumForm) -> Result<Vec<u8>, EmitError> {
    let family = Family::of(src);
    if Family::of(dst) != family {
        return Err(EmitError::MixedFamilies);
    }
    if advert.version == Version::V2 && family == Family::V6 {
        return Err(EmitError::V2OverIpv6);
    }
    if advert.addrs.iter().any(|a| Family::of(*a) != family) {
        return Err(EmitError::AddrFamily);
    }
    if advert.addrs.is_empty() {
        return Err(EmitError::NoAddresses);
    }
    if advert.addrs.len() > MAX_ADDRS {
        return Err(EmitError::TooManyAddresses);
    }
    match (advert.version, advert.interval) {
        (Version::V3, Interval::V3(_)) | (Version::V2, Interval::V2(_)) => {}
        _ => return Err(EmitError::IntervalVersion),
    }
    Ok(emit(advert, src, dst, form))
}

/// Emit the VRRP message (no IP header) for `advert`, with the checksum for
/// the given source/destination and form (the form matters only for v3/IPv4).
///
/// Never panics. For a valid advert (see [`try_emit`]) the result is exact;
/// otherwise it is lenient and documented: the list family is `src`'s and
/// addresses of the other family are skipped; at most 255 addresses; a `dst`
/// of the other family is replaced by the VRRP group of `src`'s family for
/// the pseudo-header; an interval of the other version is converted
/// (v2 s → v3 s×100 cs capped at 4095; v3 cs → v2 cs/100 s within 1..=255).
/// The version field is always `advert.version`; reserved bits are zero (RX12).
pub fn emit(advert: &Advert, src: IpAddr, dst: IpAddr, form: ChecksumForm) -> Vec<u8> {
    let family = Family::of(src);
    let dst = if Family::of(dst) == family { dst } else { family.group() };
    let addrs: Vec<IpAddr> = advert
        .addrs
        .iter()
        .copied()
        .filter(|a| Family::of(*a) == family)
        .take(MAX_ADDRS)
        .collect();
    let auth_len = if advert.version == Version::V2 {
        AUTH_DATA_LEN
    } else {
        0
    };
    let mut packet = Packet::new_unchecked(vec![0u8; HEADER_LEN + addrs.len() * family.addr_len() + auth_len]);
    packet.set_version_type(advert.version.number(), TYPE_ADVERTISEMENT);
    packet.set_vrid(advert.vrid);
    packet.set_priority(advert.priority);
    // At most MAX_ADDRS (255) by construction.
    packet.set_addr_count(u8::try_from(addrs.len()).unwrap_or(u8::MAX));
    match advert.version {
        Version::V3 => {
            let centis = match advert.interval {
                Interval::V3(c) => c.get(),
                Interval::V2(s) => (u16::from(s.get()) * 100).min(Centis::MAX),
            };
            packet.set_max_adver_int(centis);
        }
        Version::V2 => {
            let (auth_type, _) = auth_fields(advert.auth);
            packet.set_auth_type(auth_type);
            let secs = match advert.interval {
                Interval::V2(s) => s.get(),
                Interval::V3(c) => u8::try_from((c.get() / 100).max(1)).unwrap_or(u8::MAX),
            };
            packet.set_adver_int(secs);
        }
    }
    for (i, addr) in addrs.iter().enumerate() {
        packet.set_addr(i, *addr);
    }
    if advert.version == Version::V2 {
        let (_, data) = auth_fields(advert.auth);
        packet.set_auth_data(family, data);
    }
    packet.fill_checksum(src, dst, form);
    packet.into_inner()
}

fn auth_fields(auth: Auth) -> (u8, [u8; AUTH_DATA_LEN]) {
    match auth {
        Auth::None => (AUTH_TYPE_NONE, [0; AUTH_DATA_LEN]),
        Auth::Simple(data) => (AUTH_TYPE_SIMPLE, data),
    }
}

#[cfg(test)]
#[allow(non_snake_case)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;

    #[test]
    fn emit_v2() {
        let (s, d) = (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4));
        for form in [ChecksumForm::PseudoHeader, ChecksumForm::MessageOnly] {
            assert_eq!(
                emit(&advert_v2(Auth::None), s, d, form),
                V2_BYTES,
                "v2 ignores the form"
            );
            assert_eq!(try_emit(&advert_v2(PASS), s, d, form).unwrap(), V2_PASS_BYTES);
        }
        assert_eq!(buffer_len(&advert_v2(Auth::None)), V2_BYTES.len());
        assert_eq!(buffer_len(&advert_v2(PASS)), V2_PASS_BYTES.len());
    }

    #[test]
    fn emit_v3_ipv4_both_forms() {
        let (s, d) = (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4));
        assert_eq!(
            emit(&advert_v3_v4(), s, d, ChecksumForm::PseudoHeader),
            V3_V4_PSEUDO_BYTES
        );
        assert_eq!(
            emit(&advert_v3_v4(), s, d, ChecksumForm::MessageOnly),
            V3_V4_MSGONLY_BYTES
        );
        assert_eq!(buffer_len(&advert_v3_v4()), 16);
    }

    #[test]
    fn tx_reserved_bits_are_zero__RX12() {
        let mut a = advert_v3_v4();
        a.interval = Interval::V3(Centis::new(Centis::MAX).unwrap());
        let out = emit(&a, IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4), ChecksumForm::PseudoHeader);
        assert_eq!(&out[4..6], &[0x0f, 0xff]);
        let mut p = Packet::new_unchecked(vec![0xffu8; 8]);
        p.set_max_adver_int(0xffff);
        assert_eq!(p.reserved(), 0);
    }

    #[test]
    fn try_emit_rejects_programming_errors() {
        let (s4, d4) = (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4));
        let (s6, d6) = (IpAddr::V6(SRC6), IpAddr::V6(GROUP_V6));
        let f = ChecksumForm::PseudoHeader;
        assert_eq!(try_emit(&advert_v3_v4(), s4, d6, f), Err(EmitError::MixedFamilies));
        assert_eq!(try_emit(&advert_v3_v4(), s6, d6, f), Err(EmitError::AddrFamily));
        assert_eq!(try_emit(&advert_v2(Auth::None), s6, d6, f), Err(EmitError::V2OverIpv6));
        let mut a = advert_v3_v4();
        a.addrs.clear();
        assert_eq!(try_emit(&a, s4, d4, f), Err(EmitError::NoAddresses));
        a.addrs = vec![v4(1); 256];
        assert_eq!(try_emit(&a, s4, d4, f), Err(EmitError::TooManyAddresses));
        let mut a = advert_v3_v4();
        a.interval = Interval::V2(Secs::new(1).unwrap());
        assert_eq!(try_emit(&a, s4, d4, f), Err(EmitError::IntervalVersion));
        assert_eq!(try_emit(&advert_v3_v6(), s6, d6, f).unwrap(), V3_V6_BYTES);
    }

    #[test]
    fn emit_is_lenient_and_never_panics() {
        let (s4, d4) = (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4));
        let f = ChecksumForm::PseudoHeader;
        // Wrong-family addresses are skipped.
        let mut a = advert_v3_v4();
        a.addrs.insert(1, IpAddr::V6(SRC6));
        assert_eq!(emit(&a, s4, d4, f), V3_V4_PSEUDO_BYTES);
        // Wrong-family destination: the group of the source's family is used.
        assert_eq!(emit(&advert_v3_v4(), s4, IpAddr::V6(GROUP_V6), f), V3_V4_PSEUDO_BYTES);
        // Interval of the other version is converted.
        let mut a = advert_v3_v4();
        a.interval = Interval::V2(Secs::new(1).unwrap());
        assert_eq!(emit(&a, s4, d4, f), V3_V4_PSEUDO_BYTES);
        let mut a = advert_v2(Auth::None);
        a.interval = Interval::V3(Centis::new(150).unwrap());
        assert_eq!(emit(&a, s4, d4, f), V2_BYTES);
        a.interval = Interval::V3(Centis::new(5).unwrap());
        assert_eq!(emit(&a, s4, d4, f)[5], 1, "rounded up to 1 s");
        // 300 addresses: capped at 255, and buffer_len agrees.
        let mut a = advert_v3_v4();
        a.addrs = vec![v4(9); 300];
        let out = emit(&a, s4, d4, f);
        assert_eq!((out[3], out.len(), buffer_len(&a)), (255, 8 + 255 * 4, 8 + 255 * 4));
        assert_eq!(decode_ipv4(&ipv4(&out)).unwrap().advert.addrs.len(), 255);
        // Empty list: a count-0 message, which receivers discard.
        a.addrs.clear();
        assert_eq!(emit(&a, s4, d4, f).len(), 8);
    }
}
