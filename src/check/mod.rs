//! SHELL: asynchronous health probes (`probe`) and the per-virtual-server
//! checker task that feeds their results into the balancer's hysteresis.

pub mod probe;

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::{JoinHandle, JoinSet};

use crate::balance::{BackendId, Health, HealthEvent, HealthPolicy, TableHandle};
use crate::clock::Clock;
use crate::control::observe::Observer;
use crate::time::Micros;

/// Outcome of one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub ok: bool,
    /// "connected", "connection refused", "http 503", "timeout after 500ms", "exit status 1".
    pub detail: String,
}

/// What to probe: the `type` of a `check` block (the config names it `CheckKind`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// Connect to the backend address, or to `port` on the backend IP.
    Tcp { port: Option<u16> },
    /// GET `path`, status within `expect_status` (inclusive), optional Host header.
    Http {
        port: Option<u16>,
        path: String,
        expect_status: (u16, u16),
        host: Option<String>,
    },
    /// Run argv (no shell); "{address}", "{ip}", "{port}" are substituted. Exit 0 = ok.
    Exec { command: Vec<String> },
}

/// A virtual server's validated `check` block (the config names it `Check`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub kind: ProbeKind,
    pub interval: Micros,
    pub timeout: Micros,
    pub rise: u32,
    pub fall: u32,
}

impl CheckSpec {
    /// The hysteresis thresholds for [`crate::balance::TableSpec::health`].
    pub fn policy(&self) -> HealthPolicy {
        HealthPolicy {
            rise: self.rise,
            fall: self.fall,
        }
    }
}

/// Log a health transition of a backend of virtual server `server` (and tell
/// `vipctl watch`: every transition passes here):
/// `backend 198.51.100.11:6000 of ingest is DOWN: check failed 2/2: connection refused`.
pub fn log_health_event(server: &str, ev: &HealthEvent) {
    crate::control::events::bus().backend_health(server, ev);
    match ev.to {
        Health::Up => tracing::info!(
            virtual_server = server, backend = %ev.address, from = %ev.from,
            "backend {} of {} is {}: {}", ev.address, server, ev.to, ev.reason
        ),
        _ => tracing::warn!(
            virtual_server = server, backend = %ev.address, from = %ev.from,
            "backend {} of {} is {}: {}", ev.address, server, ev.to, ev.reason
        ),
    }
}

/// Spawn the checker of one virtual server. Every `interval` it probes each
/// backend of the table (re-read on every wake, so reloads are followed);
/// backend `i` of `n` starts at offset `i*interval/n`. Probes run
/// concurrently, at most one in flight per backend (a round is skipped while
/// the previous probe still runs). Each result goes to
/// [`crate::balance::Table::apply_check`]; each transition is logged and sent
/// on `events` if given. Abort the handle to stop (e.g. when the check spec
/// changes on reload; health state lives in the table and survives).
pub fn spawn_checker(
    table: TableHandle,
    spec: CheckSpec,
    clock: Clock,
    events: Option<UnboundedSender<HealthEvent>>,
) -> JoinHandle<()> {
    spawn_observed_checker(table, spec, clock, events, None)
}

/// [`spawn_checker`] that also reports each probe's latency to `obs` (the metrics page).
pub fn spawn_observed_checker(
    table: TableHandle,
    spec: CheckSpec,
    clock: Clock,
    events: Option<UnboundedSender<HealthEvent>>,
    obs: Option<Observer>,
) -> JoinHandle<()> {
    tokio::spawn(run_checker(table, spec, clock, events, obs))
}

/// Longest check interval/timeout honoured (longer values are clamped).
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);

async fn run_checker(
    table: TableHandle,
    spec: CheckSpec,
    clock: Clock,
    events: Option<UnboundedSender<HealthEvent>>,
    obs: Option<Observer>,
) {
    // Clamped so that no timer arithmetic below can overflow.
    let interval = spec
        .interval
        .to_duration()
        .clamp(Duration::from_millis(1), MAX_INTERVAL);
    let timeout = spec.timeout.to_duration().clamp(Duration::from_millis(1), MAX_INTERVAL);
    let mut due: HashMap<BackendId, (SocketAddr, tokio::time::Instant)> = HashMap::new();
    let mut in_flight: HashSet<BackendId> = HashSet::new();
    let mut task_ids: HashMap<tokio::task::Id, BackendId> = HashMap::new();
    let mut probes: JoinSet<(BackendId, SocketAddr, CheckResult, u64)> = JoinSet::new();
    loop {
        let backends = table.lock().backends();
        let now = tokio::time::Instant::now();
        let n = u32::try_from(backends.len()).unwrap_or(u32::MAX).max(1);
        due.retain(|id, _| backends.iter().any(|(b, _)| b == id));
        for (i, (id, addr)) in backends.iter().enumerate() {
            let entry = due
                .entry(*id)
                .or_insert_with(|| (*addr, now + interval / n * u32::try_from(i).unwrap_or(0)));
            entry.0 = *addr;
        }
        for (id, (addr, at)) in due.iter_mut() {
            if *at > now {
                continue;
            }
            *at += interval;
            if *at <= now {
                // We fell behind (suspended, overloaded): do not burst.
                *at = now + interval;
            }
            if in_flight.insert(*id) {
                let (id, addr, kind) = (*id, *addr, spec.kind.clone());
                let task = probes.spawn(async move {
                    let t0 = clock.now();
                    let r = probe::run(&kind, addr, timeout).await;
                    (id, addr, r, clock.now().0.saturating_sub(t0.0))
                });
                task_ids.insert(task.id(), id);
            }
        }
        let next = due.values().map(|d| d.1).min().unwrap_or(now + interval);
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            Some(done) = probes.join_next_with_id(), if !probes.is_empty() => {
                let task = match &done {
                    Ok((task, _)) => *task,
                    Err(e) => e.id(),
                };
                if let Some(id) = task_ids.remove(&task) {
                    in_flight.remove(&id);
                }
                let Ok((_, (id, addr, result, took))) = done else { continue };
                let ev = {
                    let mut t = table.lock();
                    if let Some(o) = &obs {
                        o.check_done(t.name(), addr, result.ok, took);
                    }
                    t.apply_check(id, result.ok, &result.detail, clock.now()).map(|ev| (t.name().to_string(), ev))
                };
                if let Some((name, ev)) = ev {
                    log_health_event(&name, &ev);
                    if let Some(tx) = &events {
                        let _ = tx.send(ev);
                    }
                }
            }
        }
    }
}
