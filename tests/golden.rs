//! Golden transcripts of the pure state machine: each case folder under
//! tests/golden/ holds `steps.txt` (a config line and numbered input steps
//! at virtual times in µs) and `expected.txt` (the actions and the state
//! after each step). Each case is its own `#[test]` named after its folder
//! (listed in `golden_cases!`; a folder missing from the list fails
//! `every_case_folder_is_listed`). `VIPD_REGEN_GOLDEN=1 cargo test --test
//! golden [CASE]` rewrites the expected files; otherwise any difference fails
//! with the first differing line.
//!
//! steps.txt DSL (one per line, `#` comments):
//!   config prio=100 int=100 ver=3 preempt=true delay=0 vips=192.0.2.100 local=192.0.2.2|none peers=A,B allowed=A,B auth=pw garp=5 garp_delay=5000000
//!          refresh=0 refresh_repeat=1 lower_prio_repeat=N (garp_master_refresh µs, its repeat, garp_lower_prio_repeat)
//!   T startup | shutdown | tick | linkdown | linkup | prio N | localaddr A|none
//!   T demote TIMEOUT_US | promote | leave TIMEOUT_US
//!   T advert src=A prio=N [int=N] [ver=2|3] [vrid=N] [form=ph|mo] [auth=pw] [addrs=A,B (default 192.0.2.100)]
//!   T discard REASON [vrid=N]
//!   T config KEY=VALUE ... (same keys as the config line, applied to it)

use std::fmt::Write;
use std::net::IpAddr;
use std::path::Path;

use vipd::time::{Instant, Micros};
use vipd::vrrp::router::Router;
use vipd::vrrp::{
    Action, Advert, Auth, Centis, ChecksumForm, Discard, Input, Interval, Received, RouterConfig, RxError, Secs,
    Version,
};

fn kv(words: &[&str]) -> Vec<(String, String)> {
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn auth(pw: &str) -> Auth {
    if pw.is_empty() {
        return Auth::None;
    }
    let mut b = [0u8; 8];
    b[..pw.len()].copy_from_slice(pw.as_bytes());
    Auth::Simple(b)
}

fn interval(ver: Version, n: u32) -> Interval {
    match ver {
        Version::V3 => Interval::V3(Centis::new(n as u16).expect("interval")),
        Version::V2 => Interval::V2(Secs::new(n as u8).expect("interval")),
    }
}

fn apply_config(c: &mut RouterConfig, local: &mut Option<IpAddr>, pairs: &[(String, String)]) {
    let mut int_n = None;
    for (k, v) in pairs {
        match k.as_str() {
            "prio" => c.priority = v.parse().unwrap(),
            "ver" => c.version = if v == "2" { Version::V2 } else { Version::V3 },
            "int" => int_n = Some(v.parse::<u32>().unwrap()),
            "preempt" => c.preempt = v == "true",
            "delay" => c.preempt_delay = Micros(v.parse().unwrap()),
            "vips" => c.vips = v.split(',').map(|a| a.parse().unwrap()).collect(),
            "local" => *local = (v != "none").then(|| v.parse().unwrap()),
            "allowed" => {
                c.allowed_peers = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|a| a.parse().unwrap())
                    .collect()
            }
            "peers" => {
                c.unicast_peers = v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|a| a.parse().unwrap())
                    .collect()
            }
            "auth" => c.auth = auth(v),
            "garp" => c.garp_master_repeat = v.parse().unwrap(),
            "garp_delay" => c.garp_master_delay = Micros(v.parse().unwrap()),
            "vrid" => c.vrid = v.parse().unwrap(),
            "refresh" => c.announce.refresh = Micros(v.parse().unwrap()),
            "refresh_repeat" => c.announce.refresh_repeat = v.parse().unwrap(),
            "lower_prio_repeat" => c.announce.lower_prio_repeat = Some(v.parse().unwrap()),
            other => panic!("unknown config key {other}"),
        }
    }
    if let Some(n) = int_n {
        c.advert_interval = interval(c.version, n);
    } else if matches!((c.version, c.advert_interval), (Version::V2, Interval::V3(_))) {
        c.advert_interval = interval(Version::V2, 1);
    }
}

fn base_config() -> RouterConfig {
    RouterConfig {
        name: "VI_1".into(),
        vrid: 51,
        priority: 100,
        version: Version::V3,
        advert_interval: Interval::V3(Centis::new(100).unwrap()),
        preempt: true,
        preempt_delay: Micros::ZERO,
        vips: vec!["192.0.2.100".parse().unwrap()],
        unicast_peers: vec![],
        allowed_peers: vec![],
        auth: Auth::None,
        checksum_form: ChecksumForm::PseudoHeader,
        garp_master_repeat: 5,
        garp_master_delay: Micros(5_000_000),
        announce: Default::default(),
    }
}

fn reason(s: &str) -> RxError {
    RxError::ALL
        .iter()
        .find(|r| r.name() == s)
        .cloned()
        .unwrap_or_else(|| panic!("unknown reason {s}"))
}

fn fmt_interval(i: Interval) -> String {
    match i {
        Interval::V3(c) => format!("{}cs", c.get()),
        Interval::V2(s) => format!("{}s", s.get()),
    }
}

fn fmt_ips(v: &[IpAddr]) -> String {
    v.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")
}

fn fmt_action(a: &Action) -> String {
    match a {
        Action::SendAdvert { advert, checksum_form } => format!(
            "send_advert v{} vrid={} prio={} int={} addrs={} form={:?}",
            advert.version.number(),
            advert.vrid,
            advert.priority,
            fmt_interval(advert.interval),
            fmt_ips(&advert.addrs),
            checksum_form
        ),
        Action::AddVips(v) => format!("add_vips {}", fmt_ips(v)),
        Action::RemoveVips(v) => format!("remove_vips {}", fmt_ips(v)),
        Action::Announce { vips, count } => format!("announce {} x{count}", fmt_ips(vips)),
        Action::StateChange { from, to, reason } => format!("state {} -> {} ({reason})", from.name(), to.name()),
        Action::Discarded(d) => format!("discarded {}", d.reason.name()),
        Action::AddressListMismatch { from, advertised } => {
            format!("address_list_mismatch from={from} advertised={}", fmt_ips(advertised))
        }
        Action::ForeignOwner { from } => format!("foreign_owner from={from}"),
        Action::HandedOver(o) => format!(
            "handed_over leave={} successor={} successor_after={} released_after={}",
            o.leave,
            o.successor.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            o.successor_after.map(|m| m.0.to_string()).unwrap_or_else(|| "-".into()),
            o.released_after.map(|m| m.0.to_string()).unwrap_or_else(|| "-".into()),
        ),
        Action::IntervalAdopted {
            configured,
            adopted,
            from,
        } => {
            format!(
                "interval_adopted configured={} adopted={} from={from}",
                fmt_interval(*configured),
                fmt_interval(*adopted)
            )
        }
    }
}

fn run_case(dir: &Path) -> String {
    let steps = std::fs::read_to_string(dir.join("steps.txt")).expect("steps.txt");
    let mut out = String::new();
    let mut cfg = base_config();
    let mut local: Option<IpAddr> = Some("192.0.2.2".parse().unwrap());
    let mut router: Option<Router> = None;
    for (n, line) in steps.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == "config" && router.is_none() {
            apply_config(&mut cfg, &mut local, &kv(&words[1..]));
            let _ = writeln!(out, "{line}");
            continue;
        }
        let r = router.get_or_insert_with(|| Router::new(cfg.clone(), local));
        let t = Instant(words[0].parse().unwrap_or_else(|_| panic!("line {}: time", n + 1)));
        let input = match words[1] {
            "startup" => Input::Startup,
            "shutdown" => Input::Shutdown,
            "tick" => Input::Tick,
            "linkdown" => Input::LinkDown,
            "linkup" => Input::LinkUp,
            "prio" => Input::SetPriority(words[2].parse().unwrap()),
            "localaddr" => Input::LocalAddr((words[2] != "none").then(|| words[2].parse().unwrap())),
            "trackfault" => Input::TrackFault(Some(words[2].to_string())),
            "trackok" => Input::TrackFault(None),
            "demote" => Input::Demote {
                timeout: Micros(words[2].parse().unwrap()),
            },
            "promote" => Input::Promote,
            "leave" => Input::Leave {
                timeout: Micros(words[2].parse().unwrap()),
            },
            "discard" => {
                let p = kv(&words[3..]);
                let vrid = p.iter().find(|(k, _)| k == "vrid").map(|(_, v)| v.parse().unwrap());
                Input::Advert(Err(Discard {
                    reason: reason(words[2]),
                    vrid,
                    src: Some("192.0.2.9".parse().unwrap()),
                }))
            }
            "advert" => {
                let p = kv(&words[2..]);
                let get = |k: &str| p.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
                let ver = if get("ver").as_deref() == Some("2") {
                    Version::V2
                } else {
                    Version::V3
                };
                let int_n: u32 = get("int").map(|v| v.parse().unwrap()).unwrap_or(match ver {
                    Version::V3 => 100,
                    Version::V2 => 1,
                });
                let src: IpAddr = get("src").expect("src").parse().unwrap();
                Input::Advert(Ok(Received {
                    src,
                    dst: "224.0.0.18".parse().unwrap(),
                    ttl: 255,
                    checksum_form: if get("form").as_deref() == Some("mo") {
                        ChecksumForm::MessageOnly
                    } else {
                        ChecksumForm::PseudoHeader
                    },
                    advert: Advert {
                        version: ver,
                        vrid: get("vrid").map(|v| v.parse().unwrap()).unwrap_or(51),
                        priority: get("prio").expect("prio").parse().unwrap(),
                        interval: interval(ver, int_n),
                        addrs: get("addrs")
                            .unwrap_or_else(|| "192.0.2.100".into())
                            .split(',')
                            .map(|a| a.parse().unwrap())
                            .collect(),
                        auth: auth(&get("auth").unwrap_or_default()),
                    },
                }))
            }
            "config" => {
                let mut c = r.config().clone();
                let mut l = local;
                apply_config(&mut c, &mut l, &kv(&words[2..]));
                Input::Config(c)
            }
            other => panic!("line {}: unknown input {other}", n + 1),
        };
        let actions = r.handle(t, input);
        let _ = writeln!(out, "#{} t={} {}", n + 1, t.0, words[1..].join(" "));
        for a in &actions {
            let _ = writeln!(out, "  {}", fmt_action(a));
        }
        let st = r.status();
        let _ = write!(
            out,
            "  => state={} prio={} master={} poll_at={}",
            st.state.name(),
            st.effective_priority,
            st.master_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
            r.poll_at().map(|p| p.0.to_string()).unwrap_or_else(|| "-".into())
        );
        // Only when set, so the older transcripts stay as they were.
        if st.demoted {
            let _ = write!(out, " demoted");
        }
        if r.handing_over() {
            let _ = write!(out, " handing_over");
        }
        let _ = writeln!(out);
    }
    if let Some(r) = &router {
        let c = &r.status().counters;
        let d: Vec<String> = c
            .discards
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}={n}"))
            .collect();
        let _ = write!(
            out,
            "counters sent={} received={} prio0_sent={} prio0_received={} transitions={} became_master={} discards=[{}]",
            c.adverts_sent,
            c.adverts_received,
            c.priority_zero_sent,
            c.priority_zero_received,
            c.transitions,
            c.became_master,
            d.join(" ")
        );
        // Newer counters only when set, so the older transcripts stay as they were.
        if c.address_list_mismatch > 0 {
            let _ = write!(out, " address_list_mismatch={}", c.address_list_mismatch);
        }
        if c.foreign_owner_adverts > 0 {
            let _ = write!(out, " foreign_owner_adverts={}", c.foreign_owner_adverts);
        }
        let _ = writeln!(out);
    }
    out
}

fn golden_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Run one case folder; with `VIPD_REGEN_GOLDEN` set, rewrite its expected file.
fn check_case(name: &str) {
    let dir = golden_root().join(name);
    assert!(
        dir.join("steps.txt").is_file(),
        "{name}: no steps.txt in {}",
        dir.display()
    );
    let got = run_case(&dir);
    let exp_path = dir.join("expected.txt");
    if std::env::var_os("VIPD_REGEN_GOLDEN").is_some() {
        std::fs::write(&exp_path, &got).unwrap();
        return;
    }
    let exp = std::fs::read_to_string(&exp_path).unwrap_or_default();
    if exp != got {
        let first = exp
            .lines()
            .zip(got.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}:\n  expected: {a}\n  got:      {b}", i + 1))
            .unwrap_or_else(|| "length differs".into());
        panic!("golden mismatch in {name} (VIPD_REGEN_GOLDEN=1 to regenerate):\n{first}");
    }
}

/// One `#[test]` per case: the identifier is the folder name with `-` as `_`.
macro_rules! golden_cases {
    ($($case:ident,)*) => {
        const CASES: &[&str] = &[$(stringify!($case)),*];
        $(
            #[test]
            #[allow(non_snake_case)]
            fn $case() {
                check_case(&stringify!($case).replace('_', "-"));
            }
        )*
    };
}

golden_cases! {
    EX3_second_garp_burst,
    EX3_garp_master_refresh,
    RX_address_list_mismatch_counted_not_discarded,
    RX1_decode_discards_pass_through,
    RX10_v2_interval_mismatch,
    RX10_v3_backup_adopts_interval,
    RX11_v2_auth_mismatch,
    RX13_own_address,
    RX14_allowed_peers_multicast,
    RX14_allowed_peers_with_unicast_peers,
    RX14_not_a_peer,
    RX3_version_mismatch,
    RX5_checksum_form_learnt,
    RX6_unknown_vrid,
    SM_config_change_while_master,
    SM1_owner_starts_as_master,
    SM10_equal_priority_higher_address,
    SM10_higher_priority_makes_master_backup,
    SM11_lower_priority_reassert,
    SM11_lower_priority_reannounce_once_per_interval,
    SM11_garp_lower_prio_repeat,
    SM14_tracked_weight_zero_fault_and_recovery,
    SM12_shutdown_backup,
    SM12_shutdown_master_sends_priority_zero,
    SM13_backup_never_adds_vips,
    SM14_link_down_and_up,
    SM14_link_down_before_startup,
    SM14_master_without_source_address_goes_fault,
    SM2_backup_startup,
    SM2_no_source_address_startup_is_fault,
    SM3_skew_master_down_priority_200,
    SM4_master_down_timer_takeover,
    SM5_priority_zero_skew,
    SM6_lower_priority_ignored_with_preempt,
    SM6_preempt_off_resets_timer,
    SM7_preempt_delay,
    SM8_advert_timer,
    SM9_master_hears_priority_zero,
    TX4_non_owner_never_advertises_255,
    TX4_peer_255_not_owning_our_vips_counted,
    TX4_priority_zero_only_when_leaving,
    SM12_leave_keeps_vips_until_the_successor_advertises,
    SM12_leave_without_successor_releases_at_the_timeout,
    SM12_leave_of_a_backup_is_immediate,
    SM12_demote_hands_over_then_backup_at_priority_1,
    SM12_demote_without_successor_stays_master,
    SM12_promote_cancels_a_pending_demote,
    SM12_demoted_backup_never_preempts_until_promoted,
    SM12_link_down_during_handover_cuts_it_short,
    SM12_demote_pauses_garp_refresh_and_resumes_when_it_fails,
    SM12_leave_hold_is_20_ms_at_fast_adverts,
}

#[test]
fn every_case_folder_is_listed() {
    let listed: Vec<String> = CASES.iter().map(|c| c.replace('_', "-")).collect();
    let mut unlisted: Vec<String> = std::fs::read_dir(golden_root())
        .expect("tests/golden")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !listed.contains(n))
        .collect();
    unlisted.sort();
    assert!(
        unlisted.is_empty(),
        "golden case folders not listed in golden_cases! (they would never run): {unlisted:?}"
    );
    assert!(listed.len() >= 20, "expected the golden cases, found {}", listed.len());
}
