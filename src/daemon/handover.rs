//! SHELL: planned handover. `vipctl demote/promote`, the graceful exit on
//! SIGTERM (the routers hand over make-before-break, then the daemon stops),
//! and `vipd --release` (ExecStopPost= after a crash: priority 0 for the VIPs
//! a dead vipd left, released once a successor advertises). docs/handover.md.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use futures::future::join_all;
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::facts::{family_of, source_for};
use super::Daemon;
use crate::config::{Config, Instance};
use crate::control::{Request, Response};
use crate::net::netlink::Netlink;
use crate::net::vrrp_socket::{Family, VrrpSocket};
use crate::time::Micros;
use crate::vrrp::router::handover_hold;
// The longest handover wait is the core's `HANDOVER_MAX` (5 s): the unit's
// TimeoutStopSec=15 covers it, the STOP scripts (5 s) and the balancer's 2 s drain.
use crate::vrrp::{wire, Advert, HandoverOutcome, Input};

/// The daemon's handover book: `--wait` clients and the graceful exit.
#[derive(Default)]
pub(super) struct Book {
    /// `vipctl demote --wait` clients, answered when every instance they
    /// demoted (a sync group's members) has ended its handover.
    waiters: Vec<Waiter>,
    /// Set by the first SIGTERM / SIGINT: the signal's name.
    leaving: Option<String>,
}

/// One `demote --wait`: the instances still handing over, the lines of
/// those done, whether all succeeded.
struct Waiter {
    pending: Vec<String>,
    lines: Vec<String>,
    ok: bool,
    reply: oneshot::Sender<Response>,
}

/// How long this instance's master waits for a successor (the core's rule).
fn default_timeout(inst: &Instance) -> Micros {
    crate::vrrp::router::handover_timeout(inst.router.advert_interval.to_micros())
}

fn ms(m: Micros) -> String {
    format!("{:.1} ms", m.0 as f64 / 1000.0)
}

/// What a finished handover tells an operator.
fn describe(name: &str, o: &HandoverOutcome) -> String {
    match (o.successor, o.successor_after, o.released_after) {
        (Some(s), Some(after), Some(rel)) => format!(
            "{name}: handed over to {s}: it advertised as master {} after we started handing over; \
             our VIPs were released {} after the start (held until then: no gap)",
            ms(after),
            ms(rel)
        ),
        (None, _, Some(rel)) => {
            format!(
                "{name}: no successor advertised within {}; VIPs released anyway",
                ms(rel)
            )
        }
        (_, _, None) => format!("{name}: no successor took over; still master"),
        (Some(s), _, _) => format!("{name}: handed over to {s}"),
    }
}

impl Daemon {
    /// One control request: `demote --wait` is answered later (when the
    /// handover ends), every other one now.
    pub(super) async fn on_control(&mut self, req: Request, reply: oneshot::Sender<Response>) {
        if let Request::Demote {
            instance,
            wait: true,
            timeout_ms,
        } = &req
        {
            let name = instance.clone();
            let resp = self.demote(&name, *timeout_ms).await;
            let members = self.group_of(&name);
            // Each member's line follows as its handover ends.
            let head = self.group_text(&name, &members, "handing over", Vec::new());
            let pending: Vec<String> = members
                .into_iter()
                .filter(|&i| self.insts.list[i].router.handing_over())
                .map(|i| self.insts.list[i].cfg.name.clone())
                .collect();
            if resp.ok && !pending.is_empty() {
                self.handover.waiters.push(Waiter {
                    pending,
                    lines: [head].into_iter().filter(|h| !h.is_empty()).collect(),
                    ok: true,
                    reply,
                });
            } else {
                let _ = reply.send(resp);
            }
            return;
        }
        let resp = self.on_request(req).await;
        let _ = reply.send(resp);
    }

    /// `name` and the other members of its sync group (positions, in the
    /// group's order), or just `name`; empty when there is no such instance.
    fn group_of(&self, name: &str) -> Vec<usize> {
        let Some(i) = self.insts.position(name) else {
            return Vec::new();
        };
        let group = self.insts.list[i].cfg.sync_group.as_ref();
        let members = group.and_then(|g| self.cfg.sync_groups.iter().find(|s| &s.name == g));
        match members {
            Some(g) if g.members.iter().any(|m| m == name) => {
                g.members.iter().filter_map(|m| self.insts.position(m)).collect()
            }
            _ => vec![i],
        }
    }

    /// The lines of one request over a sync group: a header naming the
    /// members when there are several, then one line per member.
    fn group_text(&self, name: &str, members: &[usize], what: &str, lines: Vec<String>) -> String {
        if members.len() < 2 {
            return lines.join("\n");
        }
        let group = self.insts.list[members[0]].cfg.sync_group.clone().unwrap_or_default();
        let names: Vec<&str> = members.iter().map(|&i| self.insts.list[i].cfg.name.as_str()).collect();
        let mut text = format!(
            "{name} is in sync group {group}: {what} every member on this node ({})",
            names.join(", ")
        );
        for l in lines {
            text.push('\n');
            text.push_str(&l);
        }
        text
    }

    /// `vipctl demote`: priority 1 from now on; a master hands over first.
    /// A member of a sync group takes every member of its group on this node
    /// along (the peer's members take over only as a group, `vrrp/sync.rs`).
    pub(super) async fn demote(&mut self, name: &str, timeout_ms: Option<u64>) -> Response {
        let members = self.group_of(name);
        if members.is_empty() {
            return Response::error(format!("no vrrp_instance {name:?}"));
        }
        let mut lines = Vec::new();
        for &i in &members {
            lines.push(self.demote_one(i, timeout_ms).await);
        }
        Response::message(self.group_text(name, &members, "demoting", lines))
    }

    /// Demote instance `i`; the line to report.
    async fn demote_one(&mut self, i: usize, timeout_ms: Option<u64>) -> String {
        let name = self.insts.list[i].cfg.name.clone();
        let timeout = timeout_ms
            .map(Micros::from_millis)
            .unwrap_or_else(|| default_timeout(&self.insts.list[i].cfg));
        let now = self.clock.now();
        let x = &mut self.insts.list[i];
        let was = x.router.state();
        let actions = x.router.handle(now, Input::Demote { timeout });
        let msg = if x.router.handing_over() {
            format!(
                "{name}: demoting: priority 0 sent; the VIPs stay here until a successor advertises \
                 as master (at most {})",
                ms(timeout)
            )
        } else {
            format!("{name}: demoted ({}, priority 1 until `vipctl promote`)", was.name())
        };
        info!("{msg}");
        self.exec(i, actions).await;
        msg
    }

    /// `vipctl promote`: the configured priority again (every member of a
    /// sync group on this node, as `demote`).
    pub(super) async fn promote(&mut self, name: &str) -> Response {
        let members = self.group_of(name);
        if members.is_empty() {
            return Response::error(format!("no vrrp_instance {name:?}"));
        }
        let mut lines = Vec::new();
        for &i in &members {
            lines.push(self.promote_one(i).await);
        }
        Response::message(self.group_text(name, &members, "promoting", lines))
    }

    /// Promote instance `i`; the line to report.
    async fn promote_one(&mut self, i: usize) -> String {
        let name = self.insts.list[i].cfg.name.clone();
        let now = self.clock.now();
        let x = &mut self.insts.list[i];
        if !x.router.demoted() {
            return format!("{name}: not demoted");
        }
        let actions = x.router.handle(now, Input::Promote);
        self.exec(i, actions).await;
        let msg = format!(
            "{name}: promoted (priority {})",
            self.insts.list[i].router.status().effective_priority
        );
        info!("{msg}");
        msg
    }

    /// A router finished (or cut short) a handover: log it, answer `--wait`.
    pub(super) fn on_handed_over(&mut self, i: usize, o: &HandoverOutcome) {
        let name = self.insts.list[i].cfg.name.clone();
        let text = describe(&name, o);
        if o.successor.is_some() {
            info!("{text}");
        } else {
            warn!("{text}");
        }
        let ok = o.successor.is_some() && o.released_after.is_some();
        for w in self.handover.waiters.iter_mut() {
            if let Some(k) = w.pending.iter().position(|n| *n == name) {
                w.pending.remove(k);
                w.lines.push(text.clone());
                w.ok &= ok;
            }
        }
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.handover.waiters)
            .into_iter()
            .partition(|w| w.pending.is_empty());
        self.handover.waiters = rest;
        for w in done {
            let text = w.lines.join("\n");
            let _ = w.reply.send(if w.ok {
                Response::message(text)
            } else {
                Response::error(text)
            });
        }
    }

    /// SIGTERM / SIGINT: every master hands over (make-before-break), the
    /// others leave now. Returns true when the daemon must stop at once (a
    /// second signal while handing over).
    pub(super) async fn leave(&mut self, why: &str) -> bool {
        if self.handover.leaving.is_some() {
            warn!("{why} again: leaving now");
            return true;
        }
        info!("{why}: handing over (priority 0; VIPs kept until a successor advertises)");
        super::systemd::sd_notify("STOPPING=1");
        self.handover.leaving = Some(why.to_string());
        for i in 0..self.insts.list.len() {
            let timeout = default_timeout(&self.insts.list[i].cfg);
            self.input(i, Input::Leave { timeout }).await;
        }
        false
    }

    /// After a signal, once no router is handing over any more: its name.
    pub(super) fn left(&self) -> Option<String> {
        let why = self.handover.leaving.as_ref()?;
        (!self.insts.list.iter().any(|x| x.router.handing_over())).then(|| why.clone())
    }
}

/// `vipd --release -c FILE`: what ExecStopPost= runs. After an unclean exit
/// (`$SERVICE_RESULT` other than `success`, or unset when run by hand), for
/// each instance whose VIPs are on this host: priority-0 adverts, then the
/// VIPs are removed once another router advertises as master (plus
/// `handover_hold`), or after the instance's handover timeout.
pub async fn release_after_crash(cfg: &Config) -> Result<String, String> {
    if let Ok(r) = std::env::var("SERVICE_RESULT") {
        if r == "success" {
            return Ok("clean stop ($SERVICE_RESULT=success): nothing to release".into());
        }
    }
    let nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let all_vips: BTreeSet<IpAddr> = cfg
        .instances
        .iter()
        .flat_map(|i| i.router.vips.iter().copied())
        .collect();
    let jobs = cfg.instances.iter().map(|inst| release_one(&nl, inst, &all_vips));
    let lines: Vec<String> = join_all(jobs).await.into_iter().flatten().collect();
    if lines.is_empty() {
        return Ok("no VIP of ours on this host".into());
    }
    Ok(lines.join("\n"))
}

/// One instance of `--release`; `None` when none of its VIPs is here.
async fn release_one(nl: &Netlink, inst: &Instance, all_vips: &BTreeSet<IpAddr>) -> Option<String> {
    let name = &inst.name;
    let f = match nl.facts(&inst.interface).await {
        Ok(Some(f)) => f,
        Ok(None) => return None,
        Err(e) => return Some(format!("{name}: reading {}: {e}", inst.interface)),
    };
    // The VIPs live on the interface, or on the instance's macvlan (use_vmac).
    let mut homes = vec![f.clone()];
    if let Some(v) = &inst.vmac {
        if let Ok(Some(vf)) = nl.facts(&v.ifname).await {
            homes.push(vf);
        }
    }
    let held: Vec<(u32, IpAddr, u8)> = homes
        .iter()
        .flat_map(|h| {
            inst.router
                .vips
                .iter()
                .filter_map(|ip| h.addrs.get(ip).map(|p| (h.index, *ip, *p)))
        })
        .collect();
    if held.is_empty() {
        return None;
    }
    let started = std::time::Instant::now();
    let timeout = Duration::from_micros(default_timeout(inst).0);
    let src = source_for(inst, Some(&f), all_vips);
    let sock = VrrpSocket::open(&inst.interface, f.index, family_of(inst));
    let successor = match (src, sock) {
        (Some(src), Ok(sock)) => wait_for_successor(&sock, inst, src, timeout).await,
        (None, _) => {
            warn!("{name}: no source address on {}: no priority-0 advert", inst.interface);
            None
        }
        (_, Err(e)) => {
            warn!("{name}: raw socket on {}: {e}: no priority-0 advert", inst.interface);
            None
        }
    };
    if let Some((_, _, interval)) = successor {
        tokio::time::sleep(handover_hold(interval).to_duration()).await;
    }
    let mut errors = Vec::new();
    for (index, ip, p) in &held {
        if let Err(e) = nl.del_address(*index, *ip, *p).await {
            errors.push(format!("{ip}/{p}: {e}"));
        }
    }
    let vips: Vec<String> = held.iter().map(|(_, ip, p)| format!("{ip}/{p}")).collect();
    let who = match successor {
        Some((s, after, _)) => format!("{s} advertised as master after {:.1} ms", after.as_secs_f64() * 1e3),
        None => "no successor heard".to_string(),
    };
    let mut line = format!(
        "{name}: released {} after {:.1} ms ({who})",
        vips.join(", "),
        started.elapsed().as_secs_f64() * 1e3
    );
    if !errors.is_empty() {
        line.push_str(&format!("; removal failed: {}", errors.join(", ")));
    }
    Some(line)
}

/// Send priority 0 (again every interval) until another router advertises
/// for this VRID with a priority above 0; who, when, and its advert interval,
/// or `None` at `timeout`.
async fn wait_for_successor(
    sock: &VrrpSocket,
    inst: &Instance,
    src: IpAddr,
    timeout: Duration,
) -> Option<(IpAddr, Duration, Micros)> {
    let r = &inst.router;
    let advert = Advert {
        version: r.version,
        vrid: r.vrid,
        priority: 0,
        interval: r.advert_interval,
        addrs: r.vips.clone(),
        auth: r.auth,
    };
    let dsts: Vec<IpAddr> = if r.unicast_peers.is_empty() {
        vec![sock.family.group()]
    } else {
        r.unicast_peers.clone()
    };
    let send = || {
        for dst in &dsts {
            if let Err(e) = sock.send(&wire::emit(&advert, src, *dst, r.checksum_form), src, *dst) {
                warn!("{}: priority-0 advert to {dst}: {e}", inst.name);
            }
        }
    };
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let every = Duration::from_micros(r.advert_interval.to_micros().0);
    let mut next_send = started;
    let mut buf = vec![0u8; 2048];
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return None;
        }
        if now >= next_send {
            send();
            next_send = now + every;
        }
        let wake = next_send.min(deadline);
        let meta = match tokio::time::timeout_at(wake, sock.recv(&mut buf)).await {
            Ok(Ok(m)) => m,
            Ok(Err(_)) | Err(_) => continue,
        };
        let data = &buf[..meta.len.min(buf.len())];
        let got = match sock.family {
            Family::V4 => wire::decode_ipv4(data),
            Family::V6 => match (meta.src, meta.dst) {
                (Some(IpAddr::V6(s)), Some(IpAddr::V6(d))) => {
                    wire::decode_ipv6(s, d, meta.hop_limit.unwrap_or(0), data)
                }
                _ => continue,
            },
        };
        if let Ok(rx) = got {
            if rx.advert.vrid == r.vrid && rx.advert.priority > 0 && rx.src != src {
                return Some((rx.src, started.elapsed(), rx.advert.interval.to_micros()));
            }
        }
    }
}
