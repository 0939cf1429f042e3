//! Notify scripts as keepalived users write them: `notify`, `notify_master`,
//! `notify_backup`, `notify_fault`, `notify_stop` (on instances and sync
//! groups) and `[global] notify_script_timeout` (`script_user` is
//! config/track.rs's). A script is an argv array, or a string split as
//! keepalived splits it (`track::spawn::split_command`).

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use super::track::Command;
use super::{Cx, R};
use crate::time::Micros;
use crate::track::spawn::split_command;

/// The five notify keys of an instance or a sync group, as written.
pub(super) struct RawNotify<'a> {
    pub notify: Option<&'a Spanned<Command>>,
    pub master: Option<&'a Spanned<Command>>,
    pub backup: Option<&'a Spanned<Command>>,
    pub fault: Option<&'a Spanned<Command>>,
    pub stop: Option<&'a Spanned<Command>>,
}

/// The state a notification reports (keepalived's words, upper case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotifyState {
    Master,
    Backup,
    Fault,
    Stop,
}

impl NotifyState {
    pub fn name(self) -> &'static str {
        match self {
            NotifyState::Master => "MASTER",
            NotifyState::Backup => "BACKUP",
            NotifyState::Fault => "FAULT",
            NotifyState::Stop => "STOP",
        }
    }
}

/// Validated notify scripts (argv, argv[0] an absolute path).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// `notify`: called for every state with `INSTANCE|GROUP NAME STATE PRIORITY` appended.
    pub notify: Option<Vec<String>>,
    /// `notify_master` etc.: called with their own arguments only (as keepalived).
    pub master: Option<Vec<String>>,
    pub backup: Option<Vec<String>>,
    pub fault: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
}

impl Notify {
    pub fn is_empty(&self) -> bool {
        *self == Notify::default()
    }

    /// What to run for `state`, in keepalived's order: the state's own script,
    /// then the generic one with `kind NAME STATE PRIORITY` appended.
    pub fn commands(&self, kind: &str, name: &str, state: NotifyState, priority: u8) -> Vec<Vec<String>> {
        let own = match state {
            NotifyState::Master => &self.master,
            NotifyState::Backup => &self.backup,
            NotifyState::Fault => &self.fault,
            NotifyState::Stop => &self.stop,
        };
        let mut out: Vec<Vec<String>> = own.iter().cloned().collect();
        if let Some(g) = &self.notify {
            let mut argv = g.clone();
            argv.extend([
                kind.to_string(),
                name.to_string(),
                state.name().to_string(),
                priority.to_string(),
            ]);
            out.push(argv);
        }
        out
    }
}

impl Cx<'_> {
    /// One script: non-empty argv whose program is an absolute path.
    fn notify_command(&self, c: &Spanned<Command>, key: &str) -> R<Vec<String>> {
        let argv = match c.get_ref() {
            Command::Str(s) => split_command(s).map_err(|m| self.err(c, key, m))?,
            Command::Argv(l) => l.clone(),
        };
        let Some(prog) = argv.first() else {
            return Err(self.err(c, key, "is empty: give the script's absolute path (and its arguments)"));
        };
        if !prog.starts_with('/') {
            return Err(self.err(
                c,
                key,
                format!("{prog:?} must be an absolute path to an executable (scripts run without a shell)"),
            ));
        }
        if argv.iter().any(|a| a.contains('\0')) {
            return Err(self.err(c, key, "an argument contains a NUL byte"));
        }
        Ok(argv)
    }

    /// The five notify keys; `prefix` is the dotted key of the block.
    pub(super) fn notify_scripts(&self, prefix: &str, r: RawNotify<'_>) -> R<Notify> {
        let one = |c: Option<&Spanned<Command>>, key: &str| -> R<Option<Vec<String>>> {
            c.map(|c| self.notify_command(c, &format!("{prefix}.{key}")))
                .transpose()
        };
        Ok(Notify {
            notify: one(r.notify, "notify")?,
            master: one(r.master, "notify_master")?,
            backup: one(r.backup, "notify_backup")?,
            fault: one(r.fault, "notify_fault")?,
            stop: one(r.stop, "notify_stop")?,
        })
    }

    /// `[global] notify_script_timeout`: 1 s to 1000 s (keepalived's range
    /// for its script timeouts), default [`DEFAULT_NOTIFY_TIMEOUT`].
    pub(super) fn notify_timeout(&self, t: Option<&Spanned<super::raw::NumOrStr>>) -> R<Micros> {
        let Some(t) = t else {
            return Ok(DEFAULT_NOTIFY_TIMEOUT);
        };
        let v = self.duration(t, "global.notify_script_timeout")?;
        if v < Micros::from_secs(1) || v > Micros::from_secs(1000) {
            return Err(self.err(t, "global.notify_script_timeout", "allowed 1s to 1000s"));
        }
        Ok(v)
    }
}

/// How long a notify script may run before its process group is killed.
pub const DEFAULT_NOTIFY_TIMEOUT: Micros = Micros(30_000_000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_script_gets_four_arguments_after_its_own() {
        let n = Notify {
            notify: Some(vec!["/n".into(), "x".into()]),
            master: Some(vec!["/m".into(), "arg".into()]),
            ..Notify::default()
        };
        assert_eq!(
            n.commands("INSTANCE", "VI_1", NotifyState::Master, 150),
            vec![vec!["/m", "arg"], vec!["/n", "x", "INSTANCE", "VI_1", "MASTER", "150"]]
        );
        assert_eq!(
            n.commands("GROUP", "G", NotifyState::Stop, 0),
            vec![vec!["/n", "x", "GROUP", "G", "STOP", "0"]]
        );
    }
}
