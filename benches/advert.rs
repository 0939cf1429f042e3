//! Micro-benchmark of the per-advert hot path of a backup: decode one
//! keepalived-style VRRPv3/IPv4 packet, feed it to the state machine, and (as
//! a master would) emit one advert. `cargo bench --bench advert`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use vipd::time::{Instant, Micros};
use vipd::vrrp::router::Router;
use vipd::vrrp::{wire, Advert, Auth, Centis, ChecksumForm, Input, Interval, RouterConfig, Version};

fn cfg(prio: u8) -> RouterConfig {
    RouterConfig {
        name: "VI_1".into(),
        vrid: 51,
        priority: prio,
        version: Version::V3,
        advert_interval: Interval::V3(Centis::new(10).unwrap()),
        preempt: true,
        preempt_delay: Micros::ZERO,
        vips: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
        unicast_peers: vec![],
        allowed_peers: vec![],
        auth: Auth::None,
        checksum_form: ChecksumForm::PseudoHeader,
        garp_master_repeat: 5,
        garp_master_delay: Micros::from_secs(5),
        announce: Default::default(),
    }
}

fn packet() -> Vec<u8> {
    let src = Ipv4Addr::new(192, 0, 2, 1);
    let advert = Advert {
        version: Version::V3,
        vrid: 51,
        priority: 150,
        interval: Interval::V3(Centis::new(10).unwrap()),
        addrs: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
        auth: Auth::None,
    };
    let body = wire::emit(
        &advert,
        IpAddr::V4(src),
        IpAddr::V4(wire::GROUP_V4),
        ChecksumForm::PseudoHeader,
    );
    let mut p = vec![0x45, 0xc0, 0, 0, 0, 0, 0x40, 0, 255, 112, 0, 0];
    p[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&wire::GROUP_V4.octets());
    p.extend_from_slice(&body);
    p
}

fn bench(c: &mut Criterion) {
    let pkt = packet();
    let local_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
    let local = Some(local_ip);
    let mut backup = Router::new(cfg(100), local);
    backup.handle(Instant(0), Input::Startup);
    let mut t = 0u64;
    c.bench_function("advert: decode + handle (backup) + emit", |b| {
        b.iter(|| {
            t += 100_000;
            let rx = wire::decode_ipv4(black_box(&pkt));
            let actions = backup.handle(Instant(t), Input::Advert(rx));
            let advert = Advert {
                version: Version::V3,
                vrid: 51,
                priority: 100,
                interval: Interval::V3(Centis::new(10).unwrap()),
                addrs: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100))],
                auth: Auth::None,
            };
            let out = wire::emit(
                &advert,
                local_ip,
                IpAddr::V4(wire::GROUP_V4),
                ChecksumForm::PseudoHeader,
            );
            black_box((actions, out))
        })
    });
    c.bench_function("advert: decode only", |b| {
        b.iter(|| black_box(wire::decode_ipv4(black_box(&pkt))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
