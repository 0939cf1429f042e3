//! Helpers shared by the `control_*` tests: a temporary directory removed on
//! drop, a stand-in daemon answering control requests, and a full sample status.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::mpsc;
use vipd::balance::{Admin, BackendId, BackendStatus, Health};
// Where the virtual server's protocol and algorithm types live (config today).
use vipd::config::{LbAlgo, Protocol};
use vipd::control::proto::{InstanceExplain, LastDiscard, StreamCounts};
use vipd::control::{Envelope, InstanceStatus, Request, Response, Status, VirtualServerStatus};
use vipd::time::Instant;
use vipd::vrrp::router::{Counters, LastTransition, RouterStatus};
use vipd::vrrp::{ChecksumForm, State};

static N: AtomicU32 = AtomicU32::new(0);

/// A fresh directory under the system temp dir, removed with its content on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("vipd-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A backup of VI_1 as `vipctl explain` sees it: a master heard, the
/// Master_Down timer running, preempt_delay pending.
pub fn backup_status() -> Status {
    let mut st = sample_status();
    let i = &mut st.instances[0];
    i.source = Some(ip("192.0.2.2"));
    let tracker = |kind: &str, name: &str, weight: i32, state: &str, value: Option<i64>| vipd::track::TrackerStatus {
        kind: kind.into(),
        name: name.into(),
        weight,
        state: state.into(),
        contribution: 0,
        fault: false,
        value,
    };
    i.trackers = vec![
        tracker("interface", "eth1", 0, "up", None),
        tracker("script", "chk_nginx", -20, "up", None),
        tracker("file", "prio_file", 1, "up", Some(0)),
    ];
    let r = &mut i.router;
    r.state = State::Backup;
    r.base_priority = 100;
    r.effective_priority = 100;
    r.master_addr = Some(ip("192.0.2.1"));
    r.master_priority = Some(150);
    r.advert_interval_us = 100_000;
    r.master_adver_interval_us = 100_000;
    r.last_transition = Some(LastTransition {
        from: State::Initialize,
        to: State::Backup,
        reason: "startup".into(),
        at_us: 1_000,
    });
    i.explain = InstanceExplain {
        master_down_in_us: Some(287_000),
        master_down_interval_us: Some(360_937),
        preempt_in_us: Some(4_500_000),
        master_advert_age_us: Some(73_000),
        master_advert_interval_us: Some(100_000),
        master_checksum_form: Some(ChecksumForm::PseudoHeader),
        checksum_form_sent: Some(ChecksumForm::PseudoHeader),
        last_transition_age_us: Some(252_000_000),
        last_discard: Some(LastDiscard {
            reason: "bad_ttl".into(),
            src: Some(ip("192.0.2.99")),
            age_us: 12_000_000,
        }),
    };
    st
}

/// Stands in for the daemon's main loop: answers `status` with `st`, anything else with a message.
pub fn fake_daemon(st: Status) -> mpsc::Sender<Envelope> {
    let (tx, mut rx) = mpsc::channel::<Envelope>(64);
    tokio::spawn(async move {
        while let Some((req, answer)) = rx.recv().await {
            let resp = match req {
                Request::Status {} => Response::status(st.clone()),
                other => Response::message(format!("{} done", other.cmd())),
            };
            let _ = answer.send(resp);
        }
    });
    tx
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn discards(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

#[allow(clippy::too_many_arguments)]
fn backend(
    id: u32,
    addr: &str,
    admin: Admin,
    health: Health,
    serving: bool,
    counts: [u64; 5],
    last_check: Option<(bool, &str, u64)>,
    last_change: Option<(&str, u64)>,
) -> BackendStatus {
    BackendStatus {
        id: BackendId(id),
        address: sa(addr),
        weight: 1 + id,
        admin,
        health,
        backup: id == 3,
        priority: if id == 3 { 1 } else { 0 },
        serving,
        active_connections: counts[0],
        total_connections: counts[1],
        bytes_in: counts[2],
        bytes_out: counts[3],
        failed_connects: counts[4],
        consecutive_successes: if health == Health::Up { 12 } else { 0 },
        consecutive_failures: if health == Health::Down { 3 } else { 0 },
        last_check_ok: last_check.map(|c| c.0),
        last_check: last_check.map(|c| c.1.to_string()),
        last_check_at: last_check.map(|c| Instant(c.2)),
        last_change: last_change.map(|c| c.0.to_string()),
        last_change_at: last_change.map(|c| Instant(c.1)),
    }
}

/// A status with every kind of value: a master and a faulted IPv6 backup,
/// a TCP and a UDP virtual server, backends up, down, unknown, drained.
pub fn sample_status() -> Status {
    let v4 = InstanceStatus {
        interface: "eth0".into(),
        source: Some(ip("192.0.2.1")),
        link_up: true,
        vips_readded: 0,
        vip_add_failures: 0,
        vip_remove_failures: 0,
        vip_last_error: None,
        trackers: Vec::new(),
        sync_group: None,
        router: RouterStatus {
            name: "VI_1".into(),
            vrid: 51,
            state: State::Master,
            base_priority: 150,
            effective_priority: 150,
            master_addr: Some(ip("192.0.2.1")),
            master_priority: Some(150),
            advert_interval_us: 1_000_000,
            master_adver_interval_us: 1_000_000,
            vips: vec![ip("192.0.2.100"), ip("192.0.2.101")],
            counters: Counters {
                adverts_sent: 1200,
                adverts_received: 3,
                priority_zero_sent: 0,
                priority_zero_received: 1,
                transitions: 2,
                became_master: 1,
                address_list_mismatch: 5,
                foreign_owner_adverts: 1,
                lower_priority_reannounced: 2,
                discards: discards(&[("bad_checksum", 0), ("bad_ttl", 4), ("wrong_vrid", 2)]),
            },
            last_transition: Some(LastTransition {
                from: State::Backup,
                to: State::Master,
                reason: "master down timer".into(),
                at_us: 3_609_375,
            }),
            demoted: false,
        },
        explain: InstanceExplain {
            checksum_form_sent: Some(ChecksumForm::PseudoHeader),
            last_transition_age_us: Some(3_596_390_625),
            last_discard: Some(LastDiscard {
                reason: "bad_ttl".into(),
                src: Some(ip("192.0.2.99")),
                age_us: 12_000_000,
            }),
            ..InstanceExplain::default()
        },
    };
    let v6 = InstanceStatus {
        interface: "eth1".into(),
        source: None,
        link_up: false,
        vips_readded: 2,
        vip_add_failures: 3,
        vip_remove_failures: 1,
        vip_last_error: Some("add 2001:db8::100/64 on eth1: No such device (os error 19)".into()),
        trackers: Vec::new(),
        sync_group: None,
        router: RouterStatus {
            name: "VI_6".into(),
            vrid: 52,
            state: State::Fault,
            base_priority: 100,
            effective_priority: 80,
            master_addr: Some(ip("fe80::1")),
            master_priority: None,
            advert_interval_us: 100_000,
            master_adver_interval_us: 250_000,
            vips: vec![ip("2001:db8::100")],
            counters: Counters {
                discards: discards(&[("bad_checksum", 0), ("bad_ttl", 0)]),
                ..Counters::default()
            },
            last_transition: Some(LastTransition {
                from: State::Backup,
                to: State::Fault,
                reason: "no source address".into(),
                at_us: 12_500_000,
            }),
            demoted: false,
        },
        explain: InstanceExplain {
            last_transition_age_us: Some(3_587_500_000),
            ..InstanceExplain::default()
        },
    };
    let tcp = VirtualServerStatus {
        name: "ingest".into(),
        listen: sa("192.0.2.100:6000"),
        protocol: Protocol::Tcp,
        lb_algo: LbAlgo::Wrr,
        vrrp_instance: Some("VI_1".into()),
        serving: true,
        active_connections: 7,
        rejected_connections: 1,
        streams: StreamCounts {
            rejected_at_cap: 1,
            aborted: 2,
            ..StreamCounts::default()
        },
        passive_ejections_suppressed: 0,
        backends: vec![
            backend(
                1,
                "198.51.100.11:6000",
                Admin::Ready,
                Health::Up,
                true,
                [4, 1000, 123_456_789, 4096, 0],
                Some((true, "connected in 1 ms", 9_000_000)),
                Some(("up after 2 successes", 2_000_000)),
            ),
            backend(
                2,
                "198.51.100.12:6000",
                Admin::Drain,
                Health::Down,
                false,
                [3, 20, 10, 0, 5],
                Some((false, "timeout after 1 s", 9_100_000)),
                Some(("down after 3 failures: timeout after 1 s", 8_000_000)),
            ),
            backend(
                3,
                "[2001:db8::13]:6000",
                Admin::Maint,
                Health::Unknown,
                false,
                [0, 0, 0, 0, 0],
                None,
                None,
            ),
        ],
        udp_dropped_no_backend: 0,
        udp_kernel_drops: 0,
        udp_send_errors: 0,
        udp_flows_evicted: 0,
    };
    let udp = VirtualServerStatus {
        name: "syslog".into(),
        listen: sa("[2001:db8::100]:514"),
        protocol: Protocol::Udp,
        lb_algo: LbAlgo::Maglev,
        vrrp_instance: None,
        serving: false,
        active_connections: 0,
        rejected_connections: 0,
        streams: StreamCounts::default(),
        passive_ejections_suppressed: 0,
        backends: vec![backend(
            4,
            "198.51.100.21:514",
            Admin::Ready,
            Health::Up,
            false,
            [0, 3, 600, 0, 0],
            Some((true, "ok", 5)),
            Some(("up", 5)),
        )],
        udp_dropped_no_backend: 11,
        udp_kernel_drops: 12,
        udp_send_errors: 13,
        udp_flows_evicted: 14,
    };
    Status {
        // Not the crate version: the pinned file must not change with each release.
        version: "0.0.0-pinned".into(),
        router_id: "fe1".into(),
        config_file: PathBuf::from("/etc/vipd/vipd.toml"),
        uptime_s: 3600,
        reloads: 2,
        reload_failures: 1,
        interface_discards: discards(&[("too_short", 1), ("bad_ttl", 0)]),
        control_errors: 3,
        control_clients_refused: 4,
        control_clients_aborted: 5,
        control_accept_errors: 6,
        control_requests_denied: 15,
        metrics_clients_refused: 7,
        metrics_clients_aborted: 8,
        metrics_accept_errors: 9,
        instances: vec![v4, v6],
        virtual_servers: vec![tcp, udp],
    }
}
