//! SHELL: sync groups in the daemon. Feeds the members' views to the pure
//! decision (`vrrp/sync.rs`), carries its inputs to the routers and runs the
//! group notify scripts.

use tracing::info;

use super::notify::notify_state;
use super::Daemon;
use crate::config::SyncGroup;
use crate::vrrp::sync::{Command, Group, MemberView};
use crate::vrrp::Input;

/// The configured groups with their state.
#[derive(Default)]
pub(super) struct SyncGroups {
    groups: Vec<(SyncGroup, Group)>,
    /// A member's router was touched since the last evaluation.
    pub dirty: bool,
}

impl Daemon {
    /// (Re)build the groups from the configuration (start-up, reload) and
    /// tell every router whether it is a member. A group kept across a
    /// reload keeps its state.
    pub(super) async fn sync_configure(&mut self) {
        let old = std::mem::take(&mut self.sync.groups);
        for g in &self.cfg.sync_groups {
            let state = old
                .iter()
                .find(|(o, _)| o.name == g.name)
                .map(|(_, s)| s.clone())
                .unwrap_or_else(|| Group::new(&g.name));
            self.sync.groups.push((g.clone(), state));
        }
        for i in 0..self.insts.list.len() {
            let joined = self.insts.list[i].cfg.sync_group.is_some();
            self.input(i, Input::Sync(Command::Join(joined))).await;
        }
        self.sync.dirty = true;
    }

    /// Evaluate every group until it settles; returns whether a router got
    /// an input (its deadlines may have moved).
    pub(super) async fn run_sync(&mut self) -> bool {
        if !std::mem::take(&mut self.sync.dirty) {
            return false;
        }
        let mut moved = false;
        for gi in 0..self.sync.groups.len() {
            // Each round moves members one step; a group of n settles in a few.
            for _ in 0..16 {
                if !self.sync_round(gi).await {
                    break;
                }
                moved = true;
            }
        }
        self.sync.dirty = false;
        moved
    }

    /// One evaluation of group `gi`; returns whether it sent any command.
    async fn sync_round(&mut self, gi: usize) -> bool {
        let now = self.clock.now();
        let members = self.sync.groups[gi].0.members.clone();
        let pos: Vec<Option<usize>> = members.iter().map(|m| self.insts.position(m)).collect();
        let views: Vec<MemberView> = pos
            .iter()
            .map(|p| p.map(|i| self.insts.list[i].router.sync_view()).unwrap_or_default())
            .collect();
        let names: Vec<&str> = members.iter().map(String::as_str).collect();
        let decision = self.sync.groups[gi].1.evaluate(now, &names, &views);
        if let Some((from, to)) = decision.changed {
            let g = self.sync.groups[gi].0.clone();
            info!("sync group {}: {} -> {}", g.name, from.name(), to.name());
            if let Some(state) = notify_state(to) {
                self.notify_group(&g.name, &g.notify, state);
            }
        }
        let sent = !decision.commands.is_empty();
        for (k, c) in decision.commands {
            if let Some(i) = pos[k] {
                self.input(i, Input::Sync(c)).await;
            }
        }
        sent
    }
}
