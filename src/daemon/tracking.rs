//! SHELL: tracking in the daemon: starts the runners (`track::Trackers`),
//! applies their reports, and turns every tracker (interfaces included) into
//! the instance's effective priority and FAULT (`facts::tracked`), logging
//! each change with its cause.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::facts::{tracked, TrackOutcome};
use super::instances::Inst;
use super::Daemon;
use crate::time::Instant;
use crate::track::state::Signal;
use crate::track::{Report, Sink, TrackerStatus, Trackers};
use crate::vrrp::{Action, Input};

/// The sink runners report to, and the daemon's end of it.
pub(super) fn channel() -> (Sink, mpsc::UnboundedReceiver<Report>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sink: Sink = Arc::new(move |r| {
        let _ = tx.send(r);
    });
    (sink, rx)
}

fn show(s: Signal) -> String {
    match s {
        Signal::Unknown => "unknown".into(),
        Signal::Up => "up".into(),
        Signal::Down => "down".into(),
        Signal::Value(v) => v.to_string(),
    }
}

impl Daemon {
    /// (Re)start the runners for the current config and balancer.
    pub(super) fn start_trackers(&mut self) {
        let tables = self.balancer.as_ref().map(|b| b.tables()).unwrap_or_default();
        let now = self.clock.now();
        self.track.reconcile(&self.cfg, tables, self.track_sink.clone(), now);
    }

    /// What tracking makes of instance `x` now.
    pub(super) fn track_outcome(&self, x: &Inst) -> TrackOutcome {
        tracked(&x.cfg, |n| self.links.is_up(n), &self.track.inputs(&x.cfg))
    }

    /// Every tracker of instance `x`, for status.
    pub(super) fn trackers_of(&self, x: &Inst) -> Vec<TrackerStatus> {
        self.track_outcome(x).trackers
    }

    /// Re-derive instance `i`'s effective priority and tracker fault; log what
    /// changed with `cause`; return the router's actions.
    pub(super) fn retrack(&mut self, i: usize, now: Instant, cause: &str) -> Vec<Action> {
        let t = self.track_outcome(&self.insts.list[i]);
        let x = &mut self.insts.list[i];
        let name = &x.cfg.name;
        let mut actions = Vec::new();
        if t.priority != x.effective_priority {
            info!(
                instance = %name,
                "{name}: effective priority {} -> {} ({cause})",
                x.effective_priority,
                t.priority
            );
            x.effective_priority = t.priority;
            actions.extend(x.router.handle(now, Input::SetPriority(t.priority)));
        }
        if t.fault != x.track_fault {
            match &t.fault {
                Some(what) => warn!(instance = %name, "{name}: tracked {what} is down (weight 0: fault) ({cause})"),
                None => info!(instance = %name, "{name}: no weight-0 tracker is down any more ({cause})"),
            }
            x.track_fault = t.fault.clone();
            actions.extend(x.router.handle(now, Input::TrackFault(t.fault)));
        }
        actions
    }

    /// Re-derive every instance (after a reload).
    pub(super) async fn retrack_all(&mut self, cause: &str) {
        let now = self.clock.now();
        for i in 0..self.insts.list.len() {
            let actions = self.retrack(i, now, cause);
            self.exec(i, actions).await;
        }
    }

    /// A runner's report: update the tracker; when its state changed, log it
    /// and re-derive the instances that follow it.
    pub(super) async fn on_track(&mut self, r: Report) {
        let now = self.clock.now();
        let Some(ch) = self.track.apply(r, now) else {
            return;
        };
        let cause = format!("{} {}: {}", ch.kind, ch.name, ch.change.reason);
        info!(
            "tracked {} {}: {} -> {} ({})",
            ch.kind,
            ch.name,
            show(ch.change.from),
            show(ch.change.to),
            ch.change.reason
        );
        for i in 0..self.insts.list.len() {
            if Trackers::follows(&self.insts.list[i].cfg, ch.kind, &ch.name) {
                let actions = self.retrack(i, now, &cause);
                self.exec(i, actions).await;
            }
        }
    }
}
