//! Feeds arbitrary bytes to both decoders; any panic is a bug. When a packet
//! is accepted, re-emitting its advert must decode to the same advert.
#![no_main]

use std::net::{IpAddr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use vipd::vrrp::wire::{decode_ipv4, decode_ipv6, emit, GROUP_V6};

const SRC6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode_ipv4(data) {
        let bytes = emit(&r.advert, r.src, r.dst, r.checksum_form);
        assert!(bytes.len() >= 8);
    }
    // First byte picks the hop limit so the TTL check is not always hit.
    let (hop, payload) = match data.split_first() {
        Some((h, rest)) if *h & 1 == 0 => (255, rest),
        Some((h, rest)) => (*h, rest),
        None => (255, data),
    };
    if let Ok(r) = decode_ipv6(SRC6, GROUP_V6, hop, payload) {
        let bytes = emit(&r.advert, IpAddr::V6(SRC6), IpAddr::V6(GROUP_V6), r.checksum_form);
        let again = decode_ipv6(SRC6, GROUP_V6, 255, &bytes).expect("re-emitted advert decodes");
        assert_eq!(again.advert, r.advert);
    }
});
