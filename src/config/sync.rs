//! Validation of `[vrrp_sync_group.NAME]` (keepalived's sync groups): members
//! that change state together, group notify scripts and group tracking.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use super::notify::{Notify, RawNotify};
use super::track::{InstanceTracking, RawRef, TrackRef, Tracking};
use super::{raw, ConfigError, Cx, Instance, TrackInterface, R};

/// A sync group as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawSyncGroup {
    pub group: Spanned<Vec<Spanned<String>>>,
    /// Tracked by every member (keepalived's group `track_interface`,
    /// `track_script`, `track_file`, `track_process`).
    pub track_interface: Option<Vec<Spanned<raw::Track>>>,
    pub track_script: Option<Vec<Spanned<RawRef>>>,
    pub track_file: Option<Vec<Spanned<RawRef>>>,
    pub track_process: Option<Vec<Spanned<RawRef>>>,
    /// keepalived: keep the members' own tracking weights (else they must be 0).
    pub sync_group_tracking_weight: Option<Spanned<bool>>,
    pub notify: Option<Spanned<super::notify::NotifyCommand>>,
    pub notify_master: Option<Spanned<super::notify::NotifyCommand>>,
    pub notify_backup: Option<Spanned<super::notify::NotifyCommand>>,
    pub notify_fault: Option<Spanned<super::notify::NotifyCommand>>,
    pub notify_stop: Option<Spanned<super::notify::NotifyCommand>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncGroup {
    pub name: String,
    /// Instance names, as listed.
    pub members: Vec<String>,
    pub notify: Notify,
}

impl Cx<'_> {
    /// Every sync group; marks each member's `sync_group` and gives it the
    /// group's tracked interfaces. One error per group; a group naming an
    /// instance that failed validation is not checked.
    pub(super) fn sync_groups(
        &self,
        raw: Option<&BTreeMap<String, Spanned<RawSyncGroup>>>,
        instances: &mut [Instance],
        failed: &[String],
        track: &Tracking,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<SyncGroup> {
        let mut out = Vec::new();
        for (name, sp) in raw.into_iter().flatten() {
            if sp
                .get_ref()
                .group
                .get_ref()
                .iter()
                .any(|m| failed.contains(m.get_ref()))
            {
                continue;
            }
            match self.sync_group(name, sp, instances, track) {
                Ok(g) => out.push(g),
                Err(e) => errors.push(e),
            }
        }
        out
    }

    fn sync_group(
        &self,
        name: &str,
        sp: &Spanned<RawSyncGroup>,
        instances: &mut [Instance],
        tracking: &Tracking,
    ) -> R<SyncGroup> {
        let k = |key: &str| format!("vrrp_sync_group.{name}.{key}");
        let r = sp.get_ref();
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            return Err(self.err(
                sp,
                &format!("vrrp_sync_group.{name}"),
                "sync group names use 1-64 of A-Z a-z 0-9 _ - .",
            ));
        }
        let mut members: Vec<String> = Vec::new();
        for m in r.group.get_ref() {
            let mname = m.get_ref();
            let Some(inst) = instances.iter().find(|i| i.name == *mname) else {
                return Err(self.err(m, &k("group"), format!("{mname:?} is not a vrrp_instance")));
            };
            if members.contains(mname) {
                return Err(self.err(m, &k("group"), format!("{mname} is listed twice")));
            }
            if let Some(other) = &inst.sync_group {
                return Err(self.err(
                    m,
                    &k("group"),
                    format!(
                        "{mname} is already a member of vrrp_sync_group.{other} (an instance belongs to one group)"
                    ),
                ));
            }
            self.member_rules(name, m, inst, r)?;
            members.push(mname.clone());
        }
        if members.len() < 2 {
            return Err(self.err(
                &r.group,
                &k("group"),
                "a sync group needs at least two instances (keepalived ignores a smaller group; put its notify keys on the instance)",
            ));
        }
        let first = instances
            .iter()
            .find(|i| i.name == members[0])
            .map(|i| i.router.preempt);
        for m in r.group.get_ref() {
            let preempt = instances
                .iter()
                .find(|i| i.name == *m.get_ref())
                .map(|i| i.router.preempt);
            if preempt != first {
                return Err(self.err(
                    m,
                    &k("group"),
                    format!(
                        "{} mixes preempt and nopreempt in one group: the group becomes master only when every member can, so set the same on all",
                        m.get_ref()
                    ),
                ));
            }
        }
        let track = self.group_track(name, r)?;
        let refs = self.group_refs(name, r, tracking)?;
        for inst in instances.iter_mut().filter(|i| members.contains(&i.name)) {
            inst.sync_group = Some(name.to_string());
            for t in &track {
                if !inst.track_interface.iter().any(|x| x.interface == t.interface) {
                    inst.track_interface.push(t.clone());
                }
            }
            let add = |mine: &mut Vec<TrackRef>, group: &[TrackRef]| {
                for t in group {
                    if !mine.iter().any(|x| x.name == t.name) {
                        mine.push(t.clone());
                    }
                }
            };
            add(&mut inst.track.scripts, &refs.scripts);
            add(&mut inst.track.files, &refs.files);
            add(&mut inst.track.processes, &refs.processes);
        }
        let notify = self.notify_scripts(
            &format!("vrrp_sync_group.{name}"),
            RawNotify {
                notify: r.notify.as_ref(),
                master: r.notify_master.as_ref(),
                backup: r.notify_backup.as_ref(),
                fault: r.notify_fault.as_ref(),
                stop: r.notify_stop.as_ref(),
            },
        )?;
        Ok(SyncGroup {
            name: name.to_string(),
            members,
            notify,
        })
    }

    /// What a member may not be: an address owner (it starts as master on its
    /// own), or carry tracking weights (keepalived forces them to 0 in a group
    /// unless `sync_group_tracking_weight`; vipd says so instead).
    fn member_rules(&self, group: &str, m: &Spanned<String>, inst: &Instance, r: &RawSyncGroup) -> R<()> {
        let key = format!("vrrp_sync_group.{group}.group");
        if inst.router.priority == 255 {
            return Err(self.err(
                m,
                &key,
                format!(
                    "{} has priority 255 (address owner, master at once on its own): not allowed in a sync group",
                    inst.name
                ),
            ));
        }
        let keep_weights = r.sync_group_tracking_weight.as_ref().is_some_and(|s| *s.get_ref());
        let t = &inst.track;
        let weighted = [
            ("track_script", &t.scripts),
            ("track_file", &t.files),
            ("track_process", &t.processes),
        ]
        .into_iter()
        .flat_map(|(k, l)| l.iter().map(move |x| (k, x)))
        .find(|(_, x)| x.weight != 0);
        if let Some((k, x)) = weighted.filter(|_| !keep_weights) {
            return Err(self.err(
                m,
                &key,
                format!(
                    "{} has {k} {} with weight {}: members of a sync group track with weight 0 (FAULT while failing, as keepalived forces); set weight = 0 or sync_group_tracking_weight = true",
                    inst.name, x.name, x.weight
                ),
            ));
        }
        if let Some(t) = inst
            .track_interface
            .iter()
            .find(|t| t.weight != 0)
            .filter(|_| !keep_weights)
        {
            return Err(self.err(
                m,
                &key,
                format!(
                    "{} tracks {} with weight {}: members of a sync group track with weight 0 (FAULT while down, as keepalived forces); set weight = 0 or sync_group_tracking_weight = true",
                    inst.name, t.interface, t.weight
                ),
            ));
        }
        Ok(())
    }

    /// The group's `track_script`, `track_file` and `track_process`: named
    /// trackers that exist, each once; the weight defaults to the tracker's.
    fn group_refs(&self, name: &str, r: &RawSyncGroup, t: &Tracking) -> R<InstanceTracking> {
        let refs = |list: &Option<Vec<Spanned<RawRef>>>,
                    key: &str,
                    table: &str,
                    lim: i64,
                    default: &dyn Fn(&str) -> Option<(i32, bool)>|
         -> R<Vec<TrackRef>> {
            let k = format!("vrrp_sync_group.{name}.{key}");
            let mut out: Vec<TrackRef> = Vec::new();
            for e in list.iter().flatten() {
                let e = e.get_ref();
                let n = e.name.get_ref();
                let Some((dw, drev)) = default(n) else {
                    return Err(self.err(&e.name, &format!("{k}.name"), format!("no [{table}.{n}] is configured")));
                };
                if out.iter().any(|x| &x.name == n) {
                    return Err(self.err(&e.name, &format!("{k}.name"), format!("{n:?} is tracked twice")));
                }
                let weight = match &e.weight {
                    None => dw,
                    Some(w) => self.int_in(w, &format!("{k}.weight"), -lim, lim, "")? as i32,
                };
                out.push(TrackRef {
                    name: n.clone(),
                    weight,
                    reverse: e.reverse.unwrap_or(drev),
                });
            }
            Ok(out)
        };
        Ok(InstanceTracking {
            scripts: refs(&r.track_script, "track_script", "vrrp_script", 253, &|n| {
                t.scripts.get(n).map(|s| (s.weight, s.reverse))
            })?,
            files: refs(&r.track_file, "track_file", "vrrp_track_file", 254, &|n| {
                t.files.get(n).map(|s| (s.weight, s.reverse))
            })?,
            processes: refs(&r.track_process, "track_process", "vrrp_track_process", 254, &|n| {
                t.processes.get(n).map(|s| (s.weight, s.reverse))
            })?,
            virtual_servers: Vec::new(),
        })
    }

    /// The group's `track_interface`, with keepalived's weights.
    fn group_track(&self, name: &str, r: &RawSyncGroup) -> R<Vec<TrackInterface>> {
        let mut out = Vec::new();
        for t in r.track_interface.iter().flatten() {
            let tr = t.get_ref();
            let weight = match &tr.weight {
                Some(w) => self.int_in(
                    w,
                    &format!("vrrp_sync_group.{name}.track_interface.weight"),
                    -254,
                    254,
                    "",
                )? as i32,
                None => 0,
            };
            out.push(TrackInterface {
                interface: tr.interface.get_ref().clone(),
                weight,
                reverse: tr.reverse.unwrap_or(false),
            });
        }
        Ok(out)
    }
}
