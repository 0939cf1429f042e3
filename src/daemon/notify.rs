//! SHELL: the notify scripts (config/notify.rs). One queue task per instance
//! and per sync group runs its scripts one at a time in transition order; a
//! backlog collapses to the newest state. Each script runs without a shell, in
//! its own process group, with a clean environment, as its own `user` or else
//! `script_user` when set, and a timeout kills the group. On exit the STOP notifications run (bounded).

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::Daemon;
use crate::config::{script_security, Notify, NotifyState};
use crate::track::spawn::{Outcome, RunAs, Script};
use crate::vrrp::State;

/// How long vipd waits for the STOP notifications when it exits.
pub const STOP_BUDGET: Duration = Duration::from_secs(5);

/// One notification: the scripts of one state change, run in order.
#[derive(Clone, Debug)]
struct Job {
    seq: u64,
    /// "INSTANCE VI_1 MASTER", for logs.
    what: String,
    /// Each script with its user (`None`: as vipd).
    commands: Vec<(Vec<String>, Option<RunAs>)>,
    timeout: Duration,
    /// `enable_script_security`: a root script a non-root user could change does not run.
    security: bool,
}

/// The queue of one instance or group.
struct Queue {
    tx: watch::Sender<Option<Job>>,
    /// The seq of the last job finished.
    done: watch::Receiver<u64>,
    seq: u64,
    task: JoinHandle<()>,
}

impl Queue {
    fn start() -> Queue {
        let (tx, rx) = watch::channel::<Option<Job>>(None);
        let (done_tx, done) = watch::channel(0u64);
        let task = tokio::spawn(worker(rx, done_tx));
        Queue { tx, done, seq: 0, task }
    }
}

/// Runs the latest pending job after the running one: a backlog collapses,
/// the newest state wins. Ends when the queue is dropped and nothing is pending.
async fn worker(mut rx: watch::Receiver<Option<Job>>, done: watch::Sender<u64>) {
    while rx.changed().await.is_ok() {
        let Some(job) = rx.borrow_and_update().clone() else {
            continue;
        };
        for (argv, user) in &job.commands {
            let as_root = user.as_ref().is_none_or(|u| u.is_root());
            if job.security && as_root {
                if let Err(e) = script_security(&argv[0]) {
                    warn!("notify {}: {} not run: {e}", job.what, argv[0]);
                    continue;
                }
            }
            let outcome = Script::new(argv.clone(), job.timeout).run_as(user.clone()).run().await;
            match outcome {
                Outcome::Exited(0) => info!("notify {}: {} ok", job.what, argv[0]),
                o => warn!("notify {}: {}: {o}", job.what, argv[0]),
            }
        }
        let _ = done.send(job.seq);
    }
}

/// Every queue of the daemon, by ("INSTANCE" | "GROUP", name).
#[derive(Default)]
pub(super) struct Notifier {
    queues: HashMap<(&'static str, String), Queue>,
}

impl Notifier {
    fn send(
        &mut self,
        kind: &'static str,
        name: &str,
        state: NotifyState,
        commands: Vec<(Vec<String>, Option<RunAs>)>,
        cfg: &crate::config::Global,
    ) {
        if commands.is_empty() {
            return;
        }
        let q = self.queues.entry((kind, name.to_string())).or_insert_with(Queue::start);
        q.seq += 1;
        let job = Job {
            seq: q.seq,
            what: format!("{kind} {name} {}", state.name()),
            // A script's own user, else the global script_user.
            commands: commands
                .into_iter()
                .map(|(argv, user)| (argv, user.or_else(|| cfg.script_user.clone())))
                .collect(),
            timeout: Duration::from_micros(cfg.notify_script_timeout.0),
            security: cfg.enable_script_security,
        };
        q.tx.send_replace(Some(job));
    }

    /// Wait until every queue has run what was sent, at most until
    /// `deadline`; then kill what still runs.
    async fn drain(&mut self, deadline: tokio::time::Instant) {
        for q in self.queues.values_mut() {
            let want = q.seq;
            let _ = tokio::time::timeout_at(deadline, q.done.wait_for(|d| *d >= want)).await;
        }
        for (_, q) in self.queues.drain() {
            if !q.task.is_finished() && *q.done.borrow() < q.seq {
                warn!(
                    "notify: STOP scripts still running after {} s; killed",
                    STOP_BUDGET.as_secs()
                );
            }
            q.task.abort();
        }
    }
}

/// keepalived's state word for a VRRP state (`None`: Initialize, which vipd
/// reports as STOP from the exit and reload paths only).
pub(super) fn notify_state(s: State) -> Option<NotifyState> {
    match s {
        State::Master => Some(NotifyState::Master),
        State::Backup => Some(NotifyState::Backup),
        State::Fault => Some(NotifyState::Fault),
        State::Initialize => None,
    }
}

impl Daemon {
    /// Instance `i` entered `to`: queue its scripts.
    pub(super) fn notify_instance(&mut self, i: usize, to: State) {
        let Some(state) = notify_state(to) else {
            return;
        };
        let x = &self.insts.list[i];
        let commands = x
            .cfg
            .notify
            .commands_as("INSTANCE", &x.cfg.name, state, x.effective_priority);
        let name = x.cfg.name.clone();
        self.notifier.send("INSTANCE", &name, state, commands, &self.cfg.global);
    }

    /// Sync group `name` entered `state` (keepalived passes priority 0).
    pub(super) fn notify_group(&mut self, name: &str, notify: &Notify, state: NotifyState) {
        let commands = notify.commands_as("GROUP", name, state, 0);
        self.notifier.send("GROUP", name, state, commands, &self.cfg.global);
    }

    /// An instance removed by a reload (its VIPs released): STOP, not
    /// awaited. Its queue stays: an instance re-created under the same name
    /// by the same reload runs its scripts after this one.
    pub(super) fn notify_removed(&mut self, cfg: &crate::config::Instance, priority: u8) {
        let commands = cfg
            .notify
            .commands_as("INSTANCE", &cfg.name, NotifyState::Stop, priority);
        self.notifier
            .send("INSTANCE", &cfg.name, NotifyState::Stop, commands, &self.cfg.global);
    }

    /// Exit, after the VIPs are released: the STOP notifications of every
    /// instance and sync group, waited for at most [`STOP_BUDGET`] in total.
    pub(super) async fn notify_stop_all(&mut self) {
        let deadline = tokio::time::Instant::now() + STOP_BUDGET;
        for i in 0..self.insts.list.len() {
            let x = &self.insts.list[i];
            let commands = x
                .cfg
                .notify
                .commands_as("INSTANCE", &x.cfg.name, NotifyState::Stop, x.effective_priority);
            let name = x.cfg.name.clone();
            self.notifier
                .send("INSTANCE", &name, NotifyState::Stop, commands, &self.cfg.global);
        }
        for g in self.cfg.sync_groups.clone() {
            self.notify_group(&g.name, &g.notify, NotifyState::Stop);
        }
        self.notifier.drain(deadline).await;
    }
}
