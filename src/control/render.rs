//! The human forms vipctl prints: `status` tables, `explain` of one instance,
//! `watch` lines, and the health verdict behind `status`'s exit code. Pure
//! functions of the status (and of the wall clock passed in), so they are tested
//! without a daemon; `tests/control_status.rs` pins the status text.

use std::fmt::Write;

use comfy_table::{presets, CellAlignment, Table};

use super::proto::{InstanceStatus, Status, VirtualServerStatus, WatchEvent, WatchLine};
use crate::vrrp::State;

/// A duration in microseconds as people read it: `850µs`, `12ms`, `3.6s`,
/// `4m12s`, `3h04m`, `2d03h`.
pub fn human_us(us: u64) -> String {
    const S: u64 = 1_000_000;
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..S => format!("{}ms", us / 1_000),
        S..60_000_000 => format!("{:.1}s", us as f64 / 1e6),
        _ => {
            let s = us / S;
            match s {
                0..3600 => format!("{}m{:02}s", s / 60, s % 60),
                3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
                _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
            }
        }
    }
}

/// An advert interval: whole seconds as `1s`, else milliseconds.
pub fn interval(us: u64) -> String {
    if us % 1_000_000 == 0 {
        format!("{}s", us / 1_000_000)
    } else {
        format!("{}ms", us / 1000)
    }
}

/// Bytes with a binary unit: `4096` -> `4.0KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1}{}", UNITS[u])
}

/// Wall-clock time of day (UTC) of `unix_ms`: `21:04:05.123Z`.
pub fn time_of_day(unix_ms: u64) -> String {
    let ms = unix_ms % 1000;
    let s = (unix_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}.{ms:03}Z", s / 3600, (s % 3600) / 60, s % 60)
}

/// An enum as the JSON status names it (e.g. `wrr`, `maint`, `up`).
fn wire_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

fn or_dash(v: Option<&str>) -> &str {
    v.unwrap_or("-")
}

/// Borderless table with two spaces between columns and each line indented.
fn table(header: &[&str], right: &[usize]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.to_vec());
    for (i, _) in header.iter().enumerate() {
        if let Some(c) = t.column_mut(i) {
            c.set_padding((0, 2));
            if right.contains(&i) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
    }
    t
}

fn push_table(o: &mut String, t: &Table, indent: &str) {
    for line in t.lines() {
        let _ = writeln!(o, "{indent}{}", line.trim_end());
    }
}

/// What makes `vipctl status` exit 1: instances in FAULT and virtual servers
/// without a backend that takes new connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn of(st: &Status) -> Verdict {
        let mut problems = Vec::new();
        for i in &st.instances {
            if i.router.state == State::Fault {
                let why = i.router.last_transition.as_ref().map(|t| t.reason.as_str());
                problems.push(format!("instance {} is in FAULT ({})", i.router.name, or_dash(why)));
            }
        }
        for vs in &st.virtual_servers {
            if !vs.backends.iter().any(|b| b.serving) {
                let up = vs
                    .backends
                    .iter()
                    .filter(|b| b.health == crate::balance::Health::Up)
                    .count();
                problems.push(format!(
                    "virtual server {} has no healthy backend ({} of {} up, none ready to serve)",
                    vs.name,
                    up,
                    vs.backends.len()
                ));
            }
        }
        Verdict { problems }
    }
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// `vipctl status`.
pub fn status(st: &Status) -> String {
    let mut o = String::new();
    let version = if st.version.is_empty() { "?" } else { &st.version };
    let _ = writeln!(
        o,
        "vipd {version} on {}  up {}  config {}  reloads {} (failed {})",
        st.router_id,
        human_us(st.uptime_s.saturating_mul(1_000_000)),
        st.config_file.display(),
        st.reloads,
        st.reload_failures
    );
    let discards: Vec<String> = st
        .interface_discards
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    if !discards.is_empty() || st.control_errors > 0 {
        let _ = writeln!(
            o,
            "  packets for no instance: {}  bad control requests: {}",
            if discards.is_empty() {
                "0".to_string()
            } else {
                discards.join(" ")
            },
            st.control_errors
        );
    }
    let _ = writeln!(o, "\nVRRP instances:");
    let mut t = table(
        &[
            "NAME", "VRID", "IFACE", "STATE", "PRIO", "MASTER", "ADVERT", "CHANGED", "VIPS",
        ],
        &[1, 4, 6, 7],
    );
    for i in &st.instances {
        t.add_row(instance_row(i));
    }
    push_table(&mut o, &t, "  ");
    let _ = writeln!(o);
    for i in &st.instances {
        instance_detail(&mut o, i);
    }
    if !st.virtual_servers.is_empty() {
        let _ = writeln!(o, "\nVirtual servers:");
        for vs in &st.virtual_servers {
            virtual_server(&mut o, vs);
        }
    }
    let verdict = Verdict::of(st);
    if !verdict.ok() {
        let _ = writeln!(o);
        for p in &verdict.problems {
            let _ = writeln!(o, "PROBLEM: {p}");
        }
    }
    o
}

fn priority(i: &InstanceStatus) -> String {
    let r = &i.router;
    if r.base_priority == r.effective_priority {
        format!("{}", r.base_priority)
    } else {
        format!("{}/{}", r.effective_priority, r.base_priority)
    }
}

fn master(i: &InstanceStatus) -> String {
    match (i.router.master_addr, i.router.master_priority) {
        (Some(a), Some(p)) => format!("{a} ({p})"),
        (Some(a), None) => a.to_string(),
        _ => "-".to_string(),
    }
}

fn instance_row(i: &InstanceStatus) -> Vec<String> {
    let r = &i.router;
    let vips: Vec<String> = r.vips.iter().map(|v| v.to_string()).collect();
    let changed = match i.explain.last_transition_age_us {
        Some(a) => format!("{} ago", human_us(a)),
        None => "-".to_string(),
    };
    vec![
        r.name.clone(),
        r.vrid.to_string(),
        i.interface.clone(),
        r.state.name().to_string(),
        priority(i),
        master(i),
        interval(r.master_adver_interval_us),
        changed,
        vips.join(" "),
    ]
}

/// The non-zero discard counters as `reason=N reason=N`.
fn discard_reasons(c: &crate::vrrp::router::Counters) -> String {
    let parts: Vec<String> = c
        .discards
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    parts.join(" ")
}

fn instance_detail(o: &mut String, i: &InstanceStatus) {
    let r = &i.router;
    let c = &r.counters;
    let discards: u64 = c.discards.values().sum();
    let mut line = format!(
        "  {}: adverts sent {} received {}  transitions {}  discarded {}",
        r.name, c.adverts_sent, c.adverts_received, c.transitions, discards
    );
    if discards > 0 {
        let _ = write!(line, " ({})", discard_reasons(c));
    }
    if !i.link_up {
        line.push_str("  LINK DOWN");
    }
    if r.demoted {
        line.push_str("  DEMOTED (vipctl promote)");
    }
    if let Some(g) = &i.sync_group {
        let _ = write!(line, "  sync group {g}");
    }
    let _ = writeln!(o, "{line}");
    if let Some(t) = &r.last_transition {
        let ago = i
            .explain
            .last_transition_age_us
            .map(|a| format!(", {} ago", human_us(a)))
            .unwrap_or_default();
        let _ = writeln!(o, "      last {} -> {} ({}){ago}", t.from.name(), t.to.name(), t.reason);
    }
    if !i.trackers.is_empty() {
        let parts: Vec<String> = i
            .trackers
            .iter()
            .map(|t| {
                let mut s = format!("{} {} {}", t.kind, t.name, t.state);
                if let Some(v) = t.value {
                    let _ = write!(s, "={v}");
                }
                match (t.fault, t.contribution) {
                    (true, _) => s.push_str(" FAULT"),
                    (false, 0) => {}
                    (false, c) => {
                        let _ = write!(s, " {c:+}");
                    }
                }
                s
            })
            .collect();
        let _ = writeln!(o, "      tracking: {}", parts.join(", "));
    }
    let _ = writeln!(
        o,
        "      VIPs re-added {}  add errors {}  remove errors {}  last error: {}",
        i.vips_readded,
        i.vip_add_failures,
        i.vip_remove_failures,
        or_dash(i.vip_last_error.as_deref())
    );
}

fn virtual_server(o: &mut String, vs: &VirtualServerStatus) {
    let _ = writeln!(
        o,
        "  {} {} {} {}  vrrp {}  serving {}  active {}  rejected {}",
        vs.name,
        wire_name(&vs.protocol),
        vs.listen,
        wire_name(&vs.lb_algo),
        or_dash(vs.vrrp_instance.as_deref()),
        if vs.serving { "yes" } else { "no" },
        vs.active_connections,
        vs.rejected_connections
    );
    let s = &vs.streams;
    match vs.protocol {
        crate::config::Protocol::Tcp => {
            let _ = writeln!(
                o,
                "      refused: at cap {}  no backend {}  local connect errors {}  out of fds {}  first-byte timeouts {}  reset {}",
                s.rejected_at_cap,
                s.rejected_no_backend,
                s.local_connect_errors,
                s.rejected_fd_exhausted,
                s.first_byte_timeouts,
                s.aborted
            );
        }
        crate::config::Protocol::Udp => {
            let _ = writeln!(
                o,
                "      datagrams dropped: no backend {}  kernel {}  send errors {}  flows evicted {}",
                vs.udp_dropped_no_backend, vs.udp_kernel_drops, vs.udp_send_errors, vs.udp_flows_evicted
            );
        }
    }
    if vs.passive_ejections_suppressed > 0 {
        let _ = writeln!(
            o,
            "      passive ejections held back by max_ejection_percent: {}",
            vs.passive_ejections_suppressed
        );
    }
    let mut t = table(
        &[
            "BACKEND",
            "WEIGHT",
            "ADMIN",
            "HEALTH",
            "ACTIVE",
            "TOTAL",
            "IN",
            "OUT",
            "FAILED",
            "LAST CHANGE",
        ],
        &[1, 4, 5, 6, 7, 8],
    );
    for b in &vs.backends {
        t.add_row(vec![
            b.address.to_string(),
            b.weight.to_string(),
            wire_name(&b.admin),
            wire_name(&b.health),
            b.active_connections.to_string(),
            b.total_connections.to_string(),
            human_bytes(b.bytes_in),
            human_bytes(b.bytes_out),
            b.failed_connects.to_string(),
            or_dash(b.last_change.as_deref()).to_string(),
        ]);
    }
    push_table(o, &t, "      ");
}

/// Why an instance is in its state, in one sentence.
fn why(i: &InstanceStatus) -> String {
    let r = &i.router;
    let e = &i.explain;
    let last = r.last_transition.as_ref().map(|t| t.reason.as_str()).unwrap_or("-");
    match r.state {
        State::Master if r.effective_priority == 255 => {
            "address owner (priority 255): master whenever it can be".into()
        }
        State::Master => format!(
            "became master ({last}); no advert with a higher priority (or an equal one from a higher address) since"
        ),
        State::Backup if r.demoted => "demoted by `vipctl demote`: priority 1 until `vipctl promote`".into(),
        State::Backup => match (r.master_addr, r.master_priority) {
            (Some(a), Some(0)) => format!("master {a} is leaving (priority 0): taking over after Skew_Time"),
            (Some(a), Some(p)) if p > r.effective_priority => {
                format!(
                    "master {a} advertises priority {p}, higher than ours ({})",
                    r.effective_priority
                )
            }
            (Some(a), Some(p)) if p == r.effective_priority => {
                format!("master {a} advertises our priority ({p}) and its address is higher (tie-break)")
            }
            (Some(a), Some(p)) if e.preempt_in_us.is_some() => format!(
                "master {a} advertises priority {p}, lower than ours ({}): preempt_delay is still running",
                r.effective_priority
            ),
            (Some(a), Some(p)) => format!(
                "master {a} advertises priority {p}, lower than ours ({}): preempt is off, or it will be preempted",
                r.effective_priority
            ),
            _ => "no master heard yet: master once Master_Down_Interval passes in silence".into(),
        },
        State::Fault if !i.link_up => format!("interface {} is down ({last})", i.interface),
        State::Fault if i.source.is_none() => format!("no source address on {} ({last})", i.interface),
        State::Fault => last.to_string(),
        State::Initialize => "starting or stopping (not taking part in elections)".into(),
    }
}

/// Each tracker of an instance: what it is, its weight, its state and what
/// it adds to the base priority now.
fn trackers(o: &mut String, i: &InstanceStatus) {
    if i.trackers.is_empty() {
        return;
    }
    let mut t = table(&["TRACKS", "NAME", "WEIGHT", "STATE", "ADDS", ""], &[2, 4]);
    for k in &i.trackers {
        let note = match (k.fault, k.value) {
            // keepalived's `reverse` with weight 0 faults while up.
            (true, _) if k.state == "up" => "FAULT (weight 0, reverse, and up)".to_string(),
            (true, _) => "FAULT (weight 0 and down)".to_string(),
            (false, Some(v)) => format!("value {v}"),
            (false, None) => String::new(),
        };
        t.add_row(vec![
            k.kind.clone(),
            k.name.clone(),
            k.weight.to_string(),
            k.state.clone(),
            format!("{:+}", k.contribution),
            note,
        ]);
    }
    push_table(o, &t, "    ");
}

/// `vipctl explain INSTANCE`: `wall_ms` is now, for the time of the last transition.
pub fn explain(i: &InstanceStatus, wall_ms: u64) -> String {
    let r = &i.router;
    let e = &i.explain;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} (vrid {} on {}): {}",
        r.name,
        r.vrid,
        i.interface,
        r.state.name().to_uppercase()
    );
    let _ = writeln!(o, "  why: {}", why(i));
    if let Some(g) = &i.sync_group {
        let _ = writeln!(o, "  sync group: {g} (its members change state together)");
    }
    let _ = writeln!(
        o,
        "  priority: {} (base {}, trackers {:+})",
        r.effective_priority,
        r.base_priority,
        i32::from(r.effective_priority) - i32::from(r.base_priority)
    );
    trackers(&mut o, i);
    let src = i.source.map(|s| s.to_string());
    let _ = writeln!(
        o,
        "  link {}  source {}  advert interval {} (in use {})  we send checksum {}",
        if i.link_up { "up" } else { "DOWN" },
        or_dash(src.as_deref()),
        interval(r.advert_interval_us),
        interval(r.master_adver_interval_us),
        e.checksum_form_sent
            .as_ref()
            .map(wire_name)
            .unwrap_or_else(|| "-".into())
    );
    match (r.master_addr, r.master_priority) {
        (Some(a), p) if r.state == State::Backup => {
            let mut line = format!("  master seen: {a}");
            if let Some(p) = p {
                let _ = write!(line, " priority {p}");
            }
            if let Some(iv) = e.master_advert_interval_us {
                let _ = write!(line, ", every {}", interval(iv));
            }
            if let Some(f) = &e.master_checksum_form {
                let _ = write!(line, ", checksum {}", wire_name(f));
            }
            if let Some(age) = e.master_advert_age_us {
                let _ = write!(line, ", last advert {} ago", human_us(age));
            }
            let _ = writeln!(o, "{line}");
        }
        (Some(_), _) if r.state == State::Master => {
            let _ = writeln!(o, "  master seen: us");
        }
        _ => {
            let _ = writeln!(o, "  master seen: none");
        }
    }
    if let Some(left) = e.master_down_in_us {
        let of = e
            .master_down_interval_us
            .map(|m| format!(" (Master_Down_Interval {})", human_us(m)))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "  Master_Down timer: fires in {}{of} unless an advert resets it",
            human_us(left)
        );
    }
    if let Some(left) = e.preempt_in_us {
        let _ = writeln!(o, "  preempt_delay: {} left before we may preempt", human_us(left));
    }
    match (&r.last_transition, e.last_transition_age_us) {
        (Some(t), age) => {
            let when = age
                .map(|a| {
                    let at = wall_ms.saturating_sub(a / 1000);
                    format!(", {} ago (at {})", human_us(a), time_of_day(at))
                })
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  last transition: {} -> {} ({}){when}",
                t.from.name(),
                t.to.name(),
                t.reason
            );
        }
        (None, _) => {
            let _ = writeln!(o, "  last transition: none");
        }
    }
    let c = &r.counters;
    let total: u64 = c.discards.values().sum();
    let mut line = format!(
        "  adverts sent {} received {}  discarded {total}",
        c.adverts_sent, c.adverts_received
    );
    if total > 0 {
        let _ = write!(line, " ({})", discard_reasons(c));
    }
    let _ = writeln!(o, "{line}");
    if let Some(d) = &e.last_discard {
        let from = d.src.map(|s| s.to_string());
        let _ = writeln!(
            o,
            "  last discard: {} from {}, {} ago",
            d.reason,
            or_dash(from.as_deref()),
            human_us(d.age_us)
        );
    }
    let vips: Vec<String> = r.vips.iter().map(|v| v.to_string()).collect();
    let _ = writeln!(o, "  VIPs: {}", vips.join(" "));
    o
}

/// One `vipctl watch` line in human form.
pub fn watch_line(l: &WatchLine) -> String {
    let t = time_of_day(l.unix_ms);
    match &l.event {
        WatchEvent::Snapshot { status } => {
            let mut o = format!("{t} snapshot: vipd {} on {}", status.version, status.router_id);
            for i in &status.instances {
                let _ = write!(
                    o,
                    "\n{t}   {} {} priority {}",
                    i.router.name,
                    i.router.state.name(),
                    priority(i)
                );
            }
            for vs in &status.virtual_servers {
                let up = vs
                    .backends
                    .iter()
                    .filter(|b| b.health == crate::balance::Health::Up)
                    .count();
                let _ = write!(o, "\n{t}   {} {} of {} backends up", vs.name, up, vs.backends.len());
            }
            o
        }
        WatchEvent::Transition {
            instance,
            from,
            to,
            reason,
            priority,
            ..
        } => format!(
            "{t} {instance} {} -> {} ({reason}), priority {priority}",
            from.name(),
            to.name()
        ),
        WatchEvent::Priority {
            instance,
            from,
            to,
            base,
            ..
        } => format!("{t} {instance} priority {from} -> {to} (base {base})"),
        WatchEvent::Backend {
            virtual_server,
            address,
            from,
            to,
            reason,
        } => format!(
            "{t} {virtual_server} backend {address} {} -> {}: {reason}",
            wire_name(from),
            wire_name(to)
        ),
        WatchEvent::Lagged { dropped } => format!("{t} lagged, {dropped} events dropped"),
        WatchEvent::Stopping { reason } => format!("{t} vipd stopping ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        let cases = [
            (0, "0µs"),
            (850, "850µs"),
            (12_345, "12ms"),
            (3_609_375, "3.6s"),
            (252_000_000, "4m12s"),
            (3_600_000_000, "1h00m"),
            (11_040_000_000, "3h04m"),
            (183_600_000_000, "2d03h"),
        ];
        for (us, want) in cases {
            assert_eq!(human_us(us), want, "{us}");
        }
        assert_eq!(interval(100_000), "100ms");
        assert_eq!(interval(2_000_000), "2s");
        assert_eq!(human_bytes(600), "600B");
        assert_eq!(human_bytes(4096), "4.0KiB");
        assert_eq!(human_bytes(123_456_789), "117.7MiB");
        assert_eq!(time_of_day(1_764_795_845_123), "21:04:05.123Z");
    }

    #[test]
    fn watch_lines_read_as_one_line_each() {
        let at = |event| WatchLine {
            unix_ms: 1_764_795_845_123,
            event,
        };
        let lines = [
            (
                WatchEvent::Transition {
                    instance: "VI_1".into(),
                    vrid: 51,
                    from: State::Backup,
                    to: State::Master,
                    reason: "master down timer".into(),
                    priority: 100,
                },
                "21:04:05.123Z VI_1 backup -> master (master down timer), priority 100",
            ),
            (
                WatchEvent::Priority {
                    instance: "VI_1".into(),
                    vrid: 51,
                    from: 150,
                    to: 130,
                    base: 150,
                },
                "21:04:05.123Z VI_1 priority 150 -> 130 (base 150)",
            ),
            (
                WatchEvent::Backend {
                    virtual_server: "web".into(),
                    address: "[2001:db8::11]:80".parse().unwrap(),
                    from: crate::balance::Health::Up,
                    to: crate::balance::Health::Down,
                    reason: "check failed 2/2: connection refused".into(),
                },
                "21:04:05.123Z web backend [2001:db8::11]:80 up -> down: check failed 2/2: connection refused",
            ),
            (
                WatchEvent::Lagged { dropped: 12 },
                "21:04:05.123Z lagged, 12 events dropped",
            ),
            (
                WatchEvent::Stopping {
                    reason: "SIGTERM".into(),
                },
                "21:04:05.123Z vipd stopping (SIGTERM)",
            ),
        ];
        for (event, want) in lines {
            let line = at(event);
            assert_eq!(watch_line(&line), want);
            // And the JSON form reads back.
            let json = serde_json::to_string(&line).unwrap();
            assert_eq!(serde_json::from_str::<WatchLine>(&json).unwrap(), line, "{json}");
        }
        let json = serde_json::to_string(&at(WatchEvent::Lagged { dropped: 3 })).unwrap();
        assert_eq!(json, r#"{"unix_ms":1764795845123,"event":"lagged","dropped":3}"#);
    }
}
