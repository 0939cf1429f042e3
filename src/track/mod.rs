//! SHELL: the runners behind tracking (`vrrp_script`, `vrrp_track_file`,
//! `vrrp_track_process`, `track_virtual_server`) and the one way vipd runs a
//! user's script (`spawn`). Runners report to the daemon through a sink; the
//! pure `state` decides what the reports mean; `daemon::facts::tracked`
//! turns the signals into an effective priority.

pub mod file;
pub mod process;
pub mod spawn;
pub mod state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::warn;

use crate::balance::{Health, TableHandle};
use crate::config::{Config, Instance, TrackFile, TrackProcess, VrrpScript};
use crate::time::Instant;
use spawn::{Outcome, Script};
use state::{Change, FileState, ProcessState, ScriptState, Signal, Tracked};

/// One tracker of an instance in `vipctl status --json` (`trackers`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerStatus {
    /// "interface", "script", "file", "process" or "virtual_server".
    pub kind: String,
    pub name: String,
    /// The weight in force for this instance.
    pub weight: i32,
    /// "up", "down" or "unknown" (no result yet).
    pub state: String,
    /// What it adds to the base priority now (ignored for an owner).
    pub contribution: i32,
    /// Faults the instance now (weight 0 and down).
    pub fault: bool,
    /// A tracked file's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<i64>,
}

/// What a runner found.
#[derive(Clone, Debug)]
pub enum Report {
    Script {
        name: String,
        outcome: Outcome,
    },
    File {
        name: String,
        value: i64,
        detail: String,
    },
    Process {
        name: String,
        count: u32,
    },
    VirtualServer {
        name: String,
        healthy: u32,
        unknown: u32,
        total: u32,
    },
}

/// Where runners send reports (the daemon wraps its event channel).
pub type Sink = Arc<dyn Fn(Report) + Send + Sync>;

/// A change of a tracker's state, for the log and the instances that follow it.
#[derive(Clone, Debug)]
pub struct Changed {
    pub kind: &'static str,
    pub name: String,
    pub change: Change,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct VsHealth {
    healthy: u32,
    unknown: u32,
    total: u32,
}

/// Every tracker's state and runner.
#[derive(Default)]
pub struct Trackers {
    scripts: BTreeMap<String, (VrrpScript, ScriptState)>,
    files: BTreeMap<String, (TrackFile, FileState)>,
    processes: BTreeMap<String, (TrackProcess, ProcessState)>,
    vs: BTreeMap<String, VsHealth>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Trackers {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Trackers {
    /// Stop every runner (a running script's group is killed).
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    /// (Re)start the runners `cfg`'s instances need (a tracker nobody follows
    /// does not run, as in keepalived). A tracker whose config is unchanged
    /// keeps its state; `tables` are the balancer's virtual servers.
    pub fn reconcile(&mut self, cfg: &Config, tables: Vec<(String, TableHandle)>, sink: Sink, now: Instant) {
        self.stop();
        let used = |f: &dyn Fn(&Instance) -> Vec<String>| -> Vec<String> {
            let mut v: Vec<String> = cfg.instances.iter().flat_map(f).collect();
            v.sort();
            v.dedup();
            v
        };
        let scripts = used(&|i| i.track.scripts.iter().map(|t| t.name.clone()).collect());
        let files = used(&|i| i.track.files.iter().map(|t| t.name.clone()).collect());
        let procs = used(&|i| i.track.processes.iter().map(|t| t.name.clone()).collect());
        let vss = used(&|i| i.track.virtual_servers.iter().map(|t| t.name.clone()).collect());

        let mut old = std::mem::take(&mut self.scripts);
        for name in scripts {
            let Some(sc) = cfg.track.scripts.get(&name) else {
                continue;
            };
            let st = match old.remove(&name) {
                Some((c, st)) if c == *sc => st,
                _ => ScriptState::new(sc.rise, sc.fall, sc.init_fail, now),
            };
            self.tasks.push(tokio::spawn(run_script(sc.clone(), sink.clone())));
            self.scripts.insert(name, (sc.clone(), st));
        }
        let mut old = std::mem::take(&mut self.files);
        for name in files {
            let Some(tf) = cfg.track.files.get(&name) else { continue };
            let st = match old.remove(&name) {
                Some((c, st)) if c == *tf => st,
                _ => {
                    file::init_file(tf);
                    FileState::default()
                }
            };
            self.tasks.push(tokio::spawn(file::watch(tf.clone(), sink.clone())));
            self.files.insert(name, (tf.clone(), st));
        }
        let mut old = std::mem::take(&mut self.processes);
        for name in procs {
            let Some(tp) = cfg.track.processes.get(&name) else {
                continue;
            };
            let st = match old.remove(&name) {
                Some((c, st)) if c == *tp => st,
                _ => ProcessState::new(tp.quorum, tp.quorum_max, tp.fork_delay, tp.terminate_delay),
            };
            self.tasks.push(tokio::spawn(process::watch(tp.clone(), sink.clone())));
            self.processes.insert(name, (tp.clone(), st));
        }
        let tables: Vec<(String, TableHandle)> = tables.into_iter().filter(|(n, _)| vss.contains(n)).collect();
        self.vs.retain(|n, _| vss.contains(n));
        if !tables.is_empty() {
            self.tasks.push(tokio::spawn(watch_virtual_servers(tables, sink)));
        }
    }

    /// Apply a runner's report at `now`; returns the tracker's state change.
    pub fn apply(&mut self, r: Report, now: Instant) -> Option<Changed> {
        match r {
            Report::Script { name, outcome } => {
                let (_, st) = self.scripts.get_mut(&name)?;
                let change = st.record(outcome.success(), &outcome.to_string(), now);
                if !outcome.success() && change.is_none() {
                    let (_, fails) = st.consecutive();
                    tracing::debug!("script {name}: {outcome} ({fails} in a row)");
                }
                Some(Changed {
                    kind: "script",
                    name,
                    change: change?,
                })
            }
            Report::File { name, value, detail } => {
                let (_, st) = self.files.get_mut(&name)?;
                let change = st.observe(value, &detail)?;
                Some(Changed {
                    kind: "file",
                    name,
                    change,
                })
            }
            Report::Process { name, count } => {
                let (_, st) = self.processes.get_mut(&name)?;
                let change = st.observe(count, now)?;
                Some(Changed {
                    kind: "process",
                    name,
                    change,
                })
            }
            Report::VirtualServer {
                name,
                healthy,
                unknown,
                total,
            } => {
                let new = VsHealth {
                    healthy,
                    unknown,
                    total,
                };
                let old = self.vs.insert(name.clone(), new);
                if old == Some(new) {
                    return None;
                }
                // The signal depends on each instance's quorum: report the count.
                let old = old.unwrap_or_default();
                Some(Changed {
                    kind: "virtual_server",
                    name,
                    change: Change {
                        from: Signal::Value(i64::from(old.healthy)),
                        to: Signal::Value(i64::from(healthy)),
                        reason: format!("{healthy} of {total} backends healthy ({unknown} not checked yet)"),
                    },
                })
            }
        }
    }

    /// Does instance `inst` follow tracker `kind`/`name`?
    pub fn follows(inst: &Instance, kind: &str, name: &str) -> bool {
        let t = &inst.track;
        match kind {
            "script" => t.scripts.iter().any(|x| x.name == name),
            "file" => t.files.iter().any(|x| x.name == name),
            "process" => t.processes.iter().any(|x| x.name == name),
            "virtual_server" => t.virtual_servers.iter().any(|x| x.name == name),
            _ => false,
        }
    }

    /// The trackers `inst` follows (interfaces aside), with what they say now.
    pub fn inputs(&self, inst: &Instance) -> Vec<Tracked> {
        let t = &inst.track;
        let mut v = Vec::new();
        for r in &t.scripts {
            let signal = self
                .scripts
                .get(&r.name)
                .map(|(_, s)| s.signal())
                .unwrap_or(Signal::Unknown);
            v.push(Tracked {
                kind: "script",
                name: r.name.clone(),
                weight: r.weight,
                reverse: r.reverse,
                signal,
            });
        }
        for r in &t.files {
            let signal = self
                .files
                .get(&r.name)
                .map(|(_, s)| s.signal())
                .unwrap_or(Signal::Unknown);
            v.push(Tracked {
                kind: "file",
                name: r.name.clone(),
                weight: r.weight,
                reverse: r.reverse,
                signal,
            });
        }
        for r in &t.processes {
            let signal = self
                .processes
                .get(&r.name)
                .map(|(_, s)| s.signal())
                .unwrap_or(Signal::Unknown);
            v.push(Tracked {
                kind: "process",
                name: r.name.clone(),
                weight: r.weight,
                reverse: r.reverse,
                signal,
            });
        }
        for r in &t.virtual_servers {
            let signal = match self.vs.get(&r.name) {
                None => Signal::Unknown,
                Some(h) if h.healthy >= r.quorum => Signal::Up,
                // Not decided while backends that could make the quorum are unchecked.
                Some(h) if h.healthy + h.unknown >= r.quorum => Signal::Unknown,
                Some(_) => Signal::Down,
            };
            v.push(Tracked {
                kind: "virtual_server",
                name: r.name.clone(),
                weight: r.weight,
                reverse: false,
                signal,
            });
        }
        v
    }
}

/// Run a `vrrp_script` every `interval` (from start to start; a run that
/// overruns delays the next, never overlaps it).
async fn run_script(sc: VrrpScript, sink: Sink) {
    let script = Script::new(sc.argv.clone(), sc.timeout.to_duration()).run_as(sc.run_as.clone());
    let interval = sc.interval.to_duration();
    let mut last_error: Option<String> = None;
    loop {
        let start = tokio::time::Instant::now();
        let outcome = script.run().await;
        // A script that cannot start is logged once per distinct error, not every interval.
        match &outcome {
            Outcome::SpawnFailed(e) if last_error.as_ref() != Some(e) => {
                warn!("script {}: cannot run: {e}", sc.name);
                last_error = Some(e.clone());
            }
            Outcome::SpawnFailed(_) => {}
            _ => last_error = None,
        }
        sink(Report::Script {
            name: sc.name.clone(),
            outcome,
        });
        tokio::time::sleep_until(start + interval).await;
    }
}

/// Poll the tracked virtual servers' health (a mutex read per table every
/// 100 ms, off the VRRP loop); report a change of the counts.
async fn watch_virtual_servers(tables: Vec<(String, TableHandle)>, sink: Sink) {
    let mut last: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (name, t) in &tables {
            let now = {
                let g = t.lock();
                let ids = g.backends();
                let mut c = (0, 0, ids.len() as u32);
                for (id, _) in ids {
                    match g.health(id) {
                        Some(Health::Up) => c.0 += 1,
                        Some(Health::Unknown) => c.1 += 1,
                        _ => {}
                    }
                }
                c
            };
            if last.get(name) != Some(&now) {
                last.insert(name.clone(), now);
                sink(Report::VirtualServer {
                    name: name.clone(),
                    healthy: now.0,
                    unknown: now.1,
                    total: now.2,
                });
            }
        }
    }
}
