//! SHELL: what the daemon tells `vipctl watch` and `vipctl explain`: state and
//! priority changes onto the event bus (`control::events`), the watch snapshot,
//! the final `stopping` line, and an instance's live timers for its status.

use std::collections::HashMap;
use std::time::Duration;

use super::instances::Inst;
use super::Daemon;
use crate::control::events::bus;
use crate::control::proto::{InstanceExplain, LastDiscard, WatchEvent};
use crate::control::Response;
use crate::time::Instant;
use crate::vrrp::router::Router;
use crate::vrrp::{Action, State};

/// How long a stopping daemon lets its watchers take their last line.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// The effective priority last told to watchers, per instance name.
#[derive(Default)]
pub(super) struct Publisher {
    priority: HashMap<String, u8>,
}

impl Publisher {
    /// Before a router's actions are carried out (the router has already
    /// changed): publish its state changes and a new effective priority.
    pub fn note(&mut self, x: &Inst, actions: &[Action]) {
        let (vrid, priority) = (x.cfg.router.vrid, x.router.priority());
        // No allocation on the advert path: the name is cloned only once.
        let was = match self.priority.get_mut(&x.cfg.name) {
            Some(p) => Some(std::mem::replace(p, priority)),
            None => self.priority.insert(x.cfg.name.clone(), priority),
        };
        if !bus().watched() {
            return;
        }
        for a in actions {
            if let Action::StateChange { from, to, reason } = a {
                bus().publish(WatchEvent::Transition {
                    instance: x.cfg.name.clone(),
                    vrid,
                    from: *from,
                    to: *to,
                    reason: reason.to_string(),
                    priority,
                });
            }
        }
        if let Some(was) = was.filter(|&p| p != priority) {
            bus().publish(WatchEvent::Priority {
                instance: x.cfg.name.clone(),
                vrid,
                from: was,
                to: priority,
                base: x.cfg.router.priority,
            });
        }
    }
}

/// The explain part of an instance's status at `now`.
pub(super) fn explain(r: &Router, now: Instant) -> InstanceExplain {
    let left = |t: Instant| t.as_micros().saturating_sub(now.as_micros());
    let age = |t: Instant| now.as_micros().saturating_sub(t.as_micros());
    let backup = r.state() == State::Backup;
    let master_form = r.master_advert_form().filter(|_| backup);
    InstanceExplain {
        master_down_in_us: r.master_down_at().map(left),
        master_down_interval_us: backup.then(|| r.master_down_interval().0),
        preempt_in_us: r.preempt_at().map(left),
        master_advert_age_us: r.master_heard_at().filter(|_| backup).map(age),
        master_advert_interval_us: master_form.map(|(i, _)| i.to_micros().0),
        master_checksum_form: master_form.map(|(_, f)| f),
        checksum_form_sent: Some(r.tx_checksum_form()),
        last_transition_age_us: r.last_transition().map(|t| age(Instant(t.at_us))),
        last_discard: r.last_discard().map(|(d, at)| LastDiscard {
            reason: d.reason.name().to_string(),
            src: d.src,
            age_us: age(at),
        }),
    }
}

impl Daemon {
    /// `watch`: mark the bus where the snapshot is taken, then take it. An
    /// event published in between is both in the snapshot and sent after it
    /// (harmless), none is lost.
    pub(super) fn on_watch(&self, marker: u64) -> Response {
        bus().mark(marker);
        Response::status(self.status())
    }

    /// The last line for every watcher, once everything is released; wait
    /// (bounded) for them to take it.
    pub(super) async fn tell_watchers_stopping(&self, why: &str) {
        bus().publish(WatchEvent::Stopping {
            reason: why.to_string(),
        });
        bus().wait_for_watchers(STOP_GRACE).await;
    }
}
