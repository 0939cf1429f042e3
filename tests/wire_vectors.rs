//! Wire codec against real keepalived 2.2.7 and FRR vrrpd 8.4.4 captures (tests/vectors/, made by
//! tests/vectors/capture.sh and capture-frr.sh) plus property tests: decoding never panics and
//! emit → decode round-trips every valid advert.
#![allow(non_snake_case)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use proptest::prelude::*;
use vipd::vrrp::announce::{garp_frame, unsolicited_na_frame};
use vipd::vrrp::wire::{buffer_len, decode_ipv4, decode_ipv6, emit, try_emit, GROUP_V4, GROUP_V6};
use vipd::vrrp::{Advert, Auth, Centis, ChecksumForm, Interval, Secs, Version};

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1);

/// Packets of a vector file: '#' lines are comments, one hex packet per line.
fn vectors(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let packets: Vec<Vec<u8>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).expect("hex"))
                .collect()
        })
        .collect();
    assert!(!packets.is_empty(), "{name} holds no packet");
    packets
}

fn v4(a: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, a))
}

fn ip6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse().unwrap())
}

/// Split a captured IPv6 packet (no extension headers) as an IPv6 raw socket
/// plus recvmsg would: (src, dst, hop limit, payload).
fn split_ipv6(p: &[u8]) -> (Ipv6Addr, Ipv6Addr, u8, &[u8]) {
    assert_eq!(p[0] >> 4, 6);
    assert_eq!(p[6], 112, "next header VRRP, no extension headers");
    let len = usize::from(u16::from_be_bytes([p[4], p[5]]));
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(&p[8..24]).unwrap());
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&p[24..40]).unwrap());
    (src, dst, p[7], &p[40..40 + len])
}

fn advert(version: Version, interval: Interval, addrs: Vec<IpAddr>, auth: Auth) -> Advert {
    Advert {
        version,
        vrid: 51,
        priority: 100,
        interval,
        addrs,
        auth,
    }
}

/// Decode every IPv4 capture, check the fields, re-emit and compare with keepalived's VRRP bytes.
fn check_ipv4_capture(file: &str, expected: &Advert, form: ChecksumForm) {
    for packet in vectors(file) {
        // keepalived: IHL 5, TOS 0xc0, TTL 255 (TX1).
        assert_eq!((packet[0], packet[1], packet[8]), (0x45, 0xc0, 255));
        let r = decode_ipv4(&packet).unwrap_or_else(|d| panic!("{file}: discarded {d:?}"));
        assert_eq!(&r.advert, expected, "{file}");
        assert_eq!((r.src, r.dst, r.ttl), (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4), 255));
        assert_eq!(r.checksum_form, form, "{file}: checksum form keepalived uses");
        let ours = try_emit(&r.advert, r.src, r.dst, r.checksum_form).unwrap();
        assert_eq!(ours, &packet[20..], "{file}: emit reproduces keepalived's VRRP message");
        assert_eq!(buffer_len(&r.advert), ours.len());
    }
}

#[test]
fn keepalived_v2_no_auth_decodes_and_reemits_exactly() {
    let a = advert(
        Version::V2,
        Interval::V2(Secs::new(1).unwrap()),
        vec![v4(100), v4(101)],
        Auth::None,
    );
    check_ipv4_capture("keepalived-v2-noauth.hex", &a, ChecksumForm::MessageOnly);
}

#[test]
fn keepalived_v2_simple_password_decodes_and_reemits_exactly__RX11() {
    let a = advert(
        Version::V2,
        Interval::V2(Secs::new(1).unwrap()),
        vec![v4(100)],
        Auth::Simple(*b"secret\0\0"),
    );
    check_ipv4_capture("keepalived-v2-pass.hex", &a, ChecksumForm::MessageOnly);
}

#[test]
fn keepalived_v3_ipv4_uses_pseudo_header_checksum__RX5() {
    let a = advert(
        Version::V3,
        Interval::V3(Centis::new(100).unwrap()),
        vec![v4(100), v4(101)],
        Auth::None,
    );
    check_ipv4_capture("keepalived-v3-ipv4.hex", &a, ChecksumForm::PseudoHeader);
    // The same advert in the RFC 9568 message-only form is accepted too, and reported as such.
    let packet = &vectors("keepalived-v3-ipv4.hex")[0];
    let mut alt = packet[..20].to_vec();
    alt.extend(emit(
        &a,
        IpAddr::V4(SRC4),
        IpAddr::V4(GROUP_V4),
        ChecksumForm::MessageOnly,
    ));
    assert_ne!(alt, *packet);
    assert_eq!(decode_ipv4(&alt).unwrap().checksum_form, ChecksumForm::MessageOnly);
}

fn check_ipv6_capture(file: &str, addrs: Vec<IpAddr>) {
    let expected = advert(Version::V3, Interval::V3(Centis::new(100).unwrap()), addrs, Auth::None);
    for packet in vectors(file) {
        // Traffic class 0xc0 (TX1).
        assert_eq!(((packet[0] & 0x0f) << 4) | (packet[1] >> 4), 0xc0);
        let (src, dst, hop, payload) = split_ipv6(&packet);
        assert_eq!((src, dst, hop), (SRC6, GROUP_V6, 255));
        let r = decode_ipv6(src, dst, hop, payload).unwrap_or_else(|d| panic!("{file}: discarded {d:?}"));
        assert_eq!(r.advert, expected, "{file}");
        assert_eq!(r.checksum_form, ChecksumForm::PseudoHeader);
        for form in [ChecksumForm::PseudoHeader, ChecksumForm::MessageOnly] {
            assert_eq!(emit(&r.advert, r.src, r.dst, form), payload, "{file}");
        }
    }
}

/// keepalived 2.2.7 sends the VIPs in configured order and does not move a
/// link-local VIP to the front, so a global first address must be accepted.
#[test]
fn keepalived_v3_ipv6_global_first_address_is_accepted__RX9() {
    check_ipv6_capture("keepalived-v3-ipv6.hex", vec![ip6("2001:db8::100"), ip6("fe80::100")]);
}

#[test]
fn keepalived_v3_ipv6_link_local_first_keeps_configured_order__RX9() {
    check_ipv6_capture(
        "keepalived-v3-ipv6-llfirst.hex",
        vec![ip6("fe80::100"), ip6("2001:db8::100")],
    );
}

// ---- FRR vrrpd 8.4.4 captures (tests/vectors/capture-frr.sh) ----

/// Decode every FRR IPv4 capture: vrid 51, priority 100, the one VIP 192.0.2.100,
/// sent from the parent interface's address 192.0.2.1 (not the macvlan's VIP).
fn check_frr_ipv4_capture(file: &str, version: Version, interval: Interval, form: ChecksumForm) {
    let expected = advert(version, interval, vec![v4(100)], Auth::None);
    for packet in vectors(file) {
        // FRR: IHL 5, TOS 0xc0, TTL 255 (TX1); it sets DF and a varying IP id, unlike keepalived.
        assert_eq!((packet[0], packet[1], packet[8]), (0x45, 0xc0, 255), "{file}");
        let r = decode_ipv4(&packet).unwrap_or_else(|d| panic!("{file}: discarded {d:?}"));
        assert_eq!(r.advert, expected, "{file}");
        assert_eq!(
            (r.src, r.dst, r.ttl),
            (IpAddr::V4(SRC4), IpAddr::V4(GROUP_V4), 255),
            "{file}"
        );
        assert_eq!(r.checksum_form, form, "{file}: checksum form FRR uses");
        let ours = try_emit(&r.advert, r.src, r.dst, r.checksum_form).unwrap();
        assert_eq!(ours, &packet[20..], "{file}: emit reproduces FRR's VRRP message");
        assert_eq!(buffer_len(&r.advert), ours.len());
    }
}

#[test]
fn frr_v3_ipv4_decodes_with_pseudo_header_checksum_and_reemits_exactly() {
    check_frr_ipv4_capture(
        "frr-v3-ipv4.hex",
        Version::V3,
        Interval::V3(Centis::new(100).unwrap()),
        ChecksumForm::PseudoHeader,
    );
}

#[test]
fn frr_v2_ipv4_decodes_and_reemits_exactly() {
    // FRR's v2 advert: no authentication (type 0, zero auth data), interval in seconds.
    check_frr_ipv4_capture(
        "frr-v2-ipv4.hex",
        Version::V2,
        Interval::V2(Secs::new(1).unwrap()),
        ChecksumForm::MessageOnly,
    );
}

/// FRR sends IPv6 adverts from the link-local address of the macvlan that
/// carries the virtual MAC 00:00:5e:00:02:33 (set to fe80::200:5eff:fe00:233 by capture-frr.sh).
#[test]
fn frr_v3_ipv6_decodes_and_reemits_exactly() {
    let file = "frr-v3-ipv6.hex";
    let src6: Ipv6Addr = "fe80::200:5eff:fe00:233".parse().unwrap();
    let expected = advert(
        Version::V3,
        Interval::V3(Centis::new(100).unwrap()),
        vec![ip6("2001:db8::100")],
        Auth::None,
    );
    for packet in vectors(file) {
        // Traffic class 0xc0 (TX1).
        assert_eq!(((packet[0] & 0x0f) << 4) | (packet[1] >> 4), 0xc0);
        let (src, dst, hop, payload) = split_ipv6(&packet);
        assert_eq!((src, dst, hop), (src6, GROUP_V6, 255));
        let r = decode_ipv6(src, dst, hop, payload).unwrap_or_else(|d| panic!("{file}: discarded {d:?}"));
        assert_eq!(r.advert, expected, "{file}");
        assert_eq!(r.checksum_form, ChecksumForm::PseudoHeader);
        assert_eq!(emit(&r.advert, r.src, r.dst, r.checksum_form), payload, "{file}");
    }
}

#[test]
fn keepalived_captures_with_ttl_254_are_discarded__RX1() {
    let mut p = vectors("keepalived-v3-ipv4.hex").remove(0);
    p[8] = 254;
    assert_eq!(decode_ipv4(&p).unwrap_err().reason, vipd::vrrp::RxError::BadTtl);
}

#[test]
fn garp_matches_keepalived_capture() {
    for file in [
        "keepalived-v2-noauth-announce.hex",
        "keepalived-v2-pass-announce.hex",
        "keepalived-v3-ipv4-announce.hex",
    ] {
        let frame = vectors(file).remove(0);
        assert_eq!(garp_frame(MAC, Ipv4Addr::new(192, 0, 2, 100)), frame, "{file}");
    }
}

#[test]
fn unsolicited_na_matches_keepalived_capture() {
    // keepalived sends its NA from the VIP itself, without the Router flag.
    for (file, vip) in [
        ("keepalived-v3-ipv6-announce.hex", "2001:db8::100"),
        ("keepalived-v3-ipv6-llfirst-announce.hex", "fe80::100"),
    ] {
        let frame = vectors(file).remove(0);
        let vip: Ipv6Addr = vip.parse().unwrap();
        assert_eq!(unsolicited_na_frame(MAC, vip, vip, false), frame, "{file}");
    }
}

// ---- properties ----

fn arb_interval(version: Version) -> BoxedStrategy<Interval> {
    match version {
        Version::V3 => (Centis::MIN..=Centis::MAX)
            .prop_map(|c| Interval::V3(Centis::new(c).unwrap()))
            .boxed(),
        Version::V2 => (1u8..=255).prop_map(|s| Interval::V2(Secs::new(s).unwrap())).boxed(),
    }
}

/// A valid advert and matching (src, dst, form) for any version/family.
fn arb_case() -> impl Strategy<Value = (Advert, IpAddr, IpAddr, ChecksumForm)> {
    let v4addrs = prop::collection::vec(any::<[u8; 4]>().prop_map(|o| IpAddr::V4(o.into())), 1..=255);
    let v6addrs = prop::collection::vec(any::<[u8; 16]>().prop_map(|o| IpAddr::V6(o.into())), 1..=255);
    let auth = prop_oneof![Just(Auth::None), any::<[u8; 8]>().prop_map(Auth::Simple)];
    let form = prop_oneof![Just(ChecksumForm::PseudoHeader), Just(ChecksumForm::MessageOnly)];
    let v4src = any::<[u8; 4]>().prop_map(|o| IpAddr::V4(o.into()));
    let v6src = any::<[u8; 8]>().prop_map(|t| {
        let mut o = [0u8; 16];
        o[0] = 0xfe;
        o[1] = 0x80 | (t[0] & 0x3f);
        o[8..].copy_from_slice(&t);
        IpAddr::V6(o.into())
    });
    let v2 = (
        any::<u8>(),
        any::<u8>(),
        arb_interval(Version::V2),
        v4addrs.clone(),
        auth,
        v4src.clone(),
    )
        .prop_map(|(vrid, priority, interval, addrs, auth, src)| {
            let a = Advert {
                version: Version::V2,
                vrid,
                priority,
                interval,
                addrs,
                auth,
            };
            (a, src, IpAddr::V4(GROUP_V4), ChecksumForm::MessageOnly)
        });
    let v3v4 = (
        any::<u8>(),
        any::<u8>(),
        arb_interval(Version::V3),
        v4addrs,
        form.clone(),
        v4src,
    )
        .prop_map(|(vrid, priority, interval, addrs, form, src)| {
            let a = Advert {
                version: Version::V3,
                vrid,
                priority,
                interval,
                addrs,
                auth: Auth::None,
            };
            (a, src, IpAddr::V4(GROUP_V4), form)
        });
    let v3v6 = (any::<u8>(), any::<u8>(), arb_interval(Version::V3), v6addrs, v6src).prop_map(
        |(vrid, priority, interval, addrs, src)| {
            let a = Advert {
                version: Version::V3,
                vrid,
                priority,
                interval,
                addrs,
                auth: Auth::None,
            };
            (a, src, IpAddr::V6(GROUP_V6), ChecksumForm::PseudoHeader)
        },
    );
    prop_oneof![v2, v3v4, v3v6]
}

fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, vrrp: &[u8]) -> Vec<u8> {
    let mut p = vec![0x45, 0xc0, 0, 0, 0, 0, 0, 0, 255, 112, 0, 0];
    p[2..4].copy_from_slice(&u16::try_from(20 + vrrp.len()).unwrap().to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(vrrp);
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..1200), hop in any::<u8>()) {
        let _ = decode_ipv4(&bytes);
        let _ = decode_ipv6(SRC6, GROUP_V6, hop, &bytes);
    }

    /// Arbitrary bytes behind a plausible IPv4 header, so the VRRP checks are reached.
    #[test]
    fn decode_never_panics_behind_valid_ip_header(vrrp in prop::collection::vec(any::<u8>(), 0..600), ver in 0u8..16) {
        let mut vrrp = vrrp;
        if let Some(b) = vrrp.first_mut() {
            *b = (ver << 4) | (*b & 0x0f);
        }
        let _ = decode_ipv4(&ipv4_packet(SRC4, GROUP_V4, &vrrp));
    }

    #[test]
    fn emit_then_decode_round_trips((advert, src, dst, form) in arb_case()) {
        let bytes = try_emit(&advert, src, dst, form).unwrap();
        prop_assert_eq!(bytes.len(), buffer_len(&advert));
        let r = match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => decode_ipv4(&ipv4_packet(s, d, &bytes)),
            (IpAddr::V6(s), IpAddr::V6(d)) => decode_ipv6(s, d, 255, &bytes),
            _ => unreachable!(),
        };
        let r = r.map_err(|d| TestCaseError::fail(format!("discarded: {d:?}")))?;
        let expected_form = if advert.version == Version::V2 { ChecksumForm::MessageOnly } else { form };
        // Both v3/IPv4 forms give the same bytes when the pseudo-header sums to
        // ones'-complement zero (about 1 in 65535 sources): then PseudoHeader is reported.
        let same_bytes = try_emit(&advert, src, dst, r.checksum_form).as_ref() == Ok(&bytes);
        prop_assert!(r.checksum_form == expected_form || same_bytes);
        prop_assert_eq!(r.advert, advert);
    }

    /// Lenient emit never panics, whatever the mix of families, versions and intervals.
    #[test]
    fn emit_never_panics(
        (advert, _, _, form) in arb_case(),
        extra in prop::collection::vec(any::<[u8; 16]>().prop_map(|o| IpAddr::V6(o.into())), 0..4),
        src6 in any::<bool>(),
        dst6 in any::<bool>(),
    ) {
        let mut advert = advert;
        advert.addrs.extend(extra);
        let src = if src6 { IpAddr::V6(SRC6) } else { IpAddr::V4(SRC4) };
        let dst = if dst6 { IpAddr::V6(GROUP_V6) } else { IpAddr::V4(GROUP_V4) };
        let out = emit(&advert, src, dst, form);
        prop_assert!(out.len() >= 8);
    }
}
