//! PURE: sync groups (keepalived's `vrrp_sync_group`). Members change state
//! together: one member in FAULT takes the others to FAULT; a member that
//! leaves MASTER for BACKUP (it heard a higher priority) takes the other
//! masters to BACKUP; the group becomes MASTER only when every member can (a
//! member whose master-down timer fired waits, as keepalived's does, until the
//! last one's fires). `evaluate` looks at the members and returns the inputs
//! for their routers; it does no I/O and reads no clock.

use serde::{Deserialize, Serialize};

use super::State;
use crate::time::Instant;

/// What a sync group tells one of its members' routers (`Input::Sync`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Member of a group (`true`): a backup whose master-down timer fires
    /// waits for `Master` instead of taking over. `false`: on its own again.
    Join(bool),
    /// FAULT while `Some(why)`: another member is in fault.
    Fault(Option<String>),
    /// Every member can be master: take over now (only a waiting backup does).
    Master(String),
    /// Another member went back to BACKUP: leave MASTER (only a master does).
    Backup(String),
}

/// One member as the group sees it (`Router::sync_view`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemberView {
    pub state: Option<State>,
    /// In FAULT (or would be) for a reason of its own: link, source address, tracking.
    pub own_fault: bool,
    /// Held in FAULT by the group.
    pub sync_fault: bool,
    /// A backup whose master-down timer fired, waiting for the group.
    pub wants_master: bool,
    /// A master handing over (demote, SIGTERM): it leaves MASTER by itself
    /// once its successor advertises; the group does not cut that short.
    #[serde(default)]
    pub handing_over: bool,
}

/// The router's side of group membership (held by `Router`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    pub joined: bool,
    pub fault: Option<String>,
    pub wants_master: bool,
}

/// The group's state and when it last changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    /// `Initialize` until every member has started.
    pub state: State,
    /// Microseconds on the core's clock of the last change.
    pub since_us: u64,
}

/// What `evaluate` decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// (member position, input for its router), in order.
    pub commands: Vec<(usize, Command)>,
    /// The group's state changed (from, to): run the group's notify scripts.
    pub changed: Option<(State, State)>,
}

impl Group {
    pub fn new(name: &str) -> Group {
        Group {
            name: name.to_string(),
            state: State::Initialize,
            since_us: 0,
        }
    }

    /// Look at the members (`names[k]`, `views[k]`) and decide. Level-triggered:
    /// call it after anything happened to a member, and again after the
    /// commands were carried out, until it returns no command.
    pub fn evaluate(&mut self, now: Instant, names: &[&str], views: &[MemberView]) -> Decision {
        let mut d = Decision::default();
        let faulted: Vec<usize> = (0..views.len()).filter(|&k| views[k].own_fault).collect();
        if let Some(&first) = faulted.first() {
            let why = format!("sync group {}: {} is in fault", self.name, names[first]);
            for (k, v) in views.iter().enumerate() {
                if !v.own_fault && !v.sync_fault {
                    d.commands.push((k, Command::Fault(Some(why.clone()))));
                }
            }
        } else {
            for (k, v) in views.iter().enumerate() {
                if v.sync_fault {
                    d.commands.push((k, Command::Fault(None)));
                }
            }
        }
        if d.commands.is_empty() && faulted.is_empty() {
            let is = |k: usize, s: State| views[k].state == Some(s);
            let settled = (0..views.len()).all(|k| is(k, State::Master) || is(k, State::Backup));
            let backup_staying = (0..views.len()).find(|&k| is(k, State::Backup) && !views[k].wants_master);
            match backup_staying {
                Some(b) if settled => {
                    let why = format!("sync group {}: {} is backup", self.name, names[b]);
                    for k in (0..views.len()).filter(|&k| is(k, State::Master) && !views[k].handing_over) {
                        d.commands.push((k, Command::Backup(why.clone())));
                    }
                }
                None if settled && views.iter().any(|v| v.wants_master) => {
                    let why = format!("sync group {}: every member can be master", self.name);
                    for k in (0..views.len()).filter(|&k| is(k, State::Backup) && views[k].wants_master) {
                        d.commands.push((k, Command::Master(why.clone())));
                    }
                }
                _ => {}
            }
        }
        if let Some(to) = self.derived(views) {
            if to != self.state {
                d.changed = Some((self.state, to));
                self.state = to;
                self.since_us = now.as_micros();
            }
        }
        d
    }

    /// FAULT if a member faults on its own; MASTER when all are masters;
    /// BACKUP when all are backups or masters (mixed: on its way to BACKUP);
    /// `None` (no change) while members start, stop or leave a group fault.
    fn derived(&self, views: &[MemberView]) -> Option<State> {
        if views.iter().any(|v| v.own_fault) {
            return Some(State::Fault);
        }
        if views.iter().all(|v| v.state == Some(State::Master)) {
            return Some(State::Master);
        }
        if views
            .iter()
            .all(|v| matches!(v.state, Some(State::Master | State::Backup)))
        {
            return Some(State::Backup);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(state: State) -> MemberView {
        MemberView {
            state: Some(state),
            ..MemberView::default()
        }
    }
    const NAMES: [&str; 2] = ["VI_1", "VI_2"];
    const T: Instant = Instant::ZERO;

    #[test]
    fn one_member_in_fault_takes_the_others_to_fault_and_back() {
        let mut g = Group::new("G");
        g.evaluate(T, &NAMES, &[v(State::Master), v(State::Master)]);
        assert_eq!(g.state, State::Master);
        let a = MemberView {
            own_fault: true,
            ..v(State::Fault)
        };
        let d = g.evaluate(T, &NAMES, &[a, v(State::Master)]);
        assert_eq!(
            d.commands,
            vec![(1, Command::Fault(Some("sync group G: VI_1 is in fault".into())))]
        );
        assert_eq!(d.changed, Some((State::Master, State::Fault)));
        // Held by the group: nothing more to do.
        let b = MemberView {
            sync_fault: true,
            ..v(State::Fault)
        };
        assert_eq!(g.evaluate(T, &NAMES, &[a, b]), Decision::default());
        // VI_1 recovers: the group releases VI_2; the group stays FAULT until both are back.
        let d = g.evaluate(T, &NAMES, &[v(State::Backup), b]);
        assert_eq!(d.commands, vec![(1, Command::Fault(None))]);
        assert_eq!(d.changed, None);
        let d = g.evaluate(T, &NAMES, &[v(State::Backup), v(State::Backup)]);
        assert_eq!(d.changed, Some((State::Fault, State::Backup)));
    }

    #[test]
    fn a_member_going_backup_takes_the_masters_with_it() {
        let mut g = Group::new("G");
        g.evaluate(T, &NAMES, &[v(State::Master), v(State::Master)]);
        let d = g.evaluate(T, &NAMES, &[v(State::Backup), v(State::Master)]);
        assert_eq!(
            d.commands,
            vec![(1, Command::Backup("sync group G: VI_1 is backup".into()))]
        );
        assert_eq!(d.changed, Some((State::Master, State::Backup)));
    }

    #[test]
    fn a_master_handing_over_is_not_cut_short_by_the_group() {
        let mut g = Group::new("G");
        g.evaluate(T, &NAMES, &[v(State::Master), v(State::Master)]);
        // A group demote: VI_1 handed over first; VI_2 still waits for its
        // successor and keeps its VIPs until then (make-before-break).
        let leaving = MemberView {
            handing_over: true,
            ..v(State::Master)
        };
        let d = g.evaluate(T, &NAMES, &[v(State::Backup), leaving]);
        assert!(d.commands.is_empty(), "{d:?}");
        // Its demote failed (no successor): still master, now taken to BACKUP.
        let d = g.evaluate(T, &NAMES, &[v(State::Backup), v(State::Master)]);
        assert_eq!(
            d.commands,
            vec![(1, Command::Backup("sync group G: VI_1 is backup".into()))]
        );
    }

    #[test]
    fn master_only_when_every_member_can() {
        let mut g = Group::new("G");
        let want = MemberView {
            wants_master: true,
            ..v(State::Backup)
        };
        // The first timer fired: it waits for the other.
        let d = g.evaluate(T, &NAMES, &[want, v(State::Backup)]);
        assert!(d.commands.is_empty());
        assert_eq!(d.changed, Some((State::Initialize, State::Backup)));
        // Both fired: both take over.
        let d = g.evaluate(T, &NAMES, &[want, want]);
        let why = "sync group G: every member can be master".to_string();
        assert_eq!(
            d.commands,
            vec![(0, Command::Master(why.clone())), (1, Command::Master(why))]
        );
        // A member already master (the group is forming) does not hold the other back.
        let d = g.evaluate(T, &NAMES, &[v(State::Master), want]);
        assert_eq!(d.commands.len(), 1);
        // A member still starting holds the group.
        let d = g.evaluate(T, &NAMES, &[want, MemberView::default()]);
        assert!(d.commands.is_empty());
    }
}
