//! Notify scripts as keepalived users write them: `notify`, `notify_master`,
//! `notify_backup`, `notify_fault`, `notify_stop` (on instances and sync
//! groups) and `[global] notify_script_timeout` (`script_user` is
//! config/track.rs's). A script is an argv array, or a string split as
//! keepalived splits it (`track::spawn::split_command`), or a table
//! `{ script, user, group }` to run it as another user (keepalived's
//! `notify_master "/path args" USER [GROUP]`).

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use super::track::Command;
use super::{Cx, R};
use crate::time::Micros;
use crate::track::spawn::{split_command, RunAs};

/// A notify key as written: a command (string or argv), or
/// `{ script = COMMAND, user = "USER [GROUP]", group = "GROUP" }`.
#[derive(Debug)]
pub enum NotifyCommand {
    Cmd(Command),
    Table(RawNotifyTable),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawNotifyTable {
    pub script: Spanned<Command>,
    /// As `vrrp_script.user`: "USER" or "USER GROUP".
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
}

/// By hand, so a wrong type says what a notify script may be.
impl<'de> Deserialize<'de> for NotifyCommand {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NotifyCommand;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a command: \"/path arg\", [\"/path\", \"arg\"] or { script = ..., user = \"USER\" }")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<NotifyCommand, E> {
                Ok(NotifyCommand::Cmd(Command::Str(s.to_string())))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NotifyCommand, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(NotifyCommand::Cmd(Command::Argv(out)))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> Result<NotifyCommand, M::Error> {
                let t = RawNotifyTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(NotifyCommand::Table(t))
            }
        }
        d.deserialize_any(V)
    }
}

/// The five notify keys of an instance or a sync group, as written.
pub(super) struct RawNotify<'a> {
    pub notify: Option<&'a Spanned<NotifyCommand>>,
    pub master: Option<&'a Spanned<NotifyCommand>>,
    pub backup: Option<&'a Spanned<NotifyCommand>>,
    pub fault: Option<&'a Spanned<NotifyCommand>>,
    pub stop: Option<&'a Spanned<NotifyCommand>>,
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
    /// The user of each script written `{ script, user }`; the others run as
    /// `global.script_user` (or as vipd).
    #[serde(default)]
    pub users: NotifyUsers,
}

/// Per-script users (`None`: `global.script_user`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyUsers {
    pub notify: Option<RunAs>,
    pub master: Option<RunAs>,
    pub backup: Option<RunAs>,
    pub fault: Option<RunAs>,
    pub stop: Option<RunAs>,
}

impl Notify {
    pub fn is_empty(&self) -> bool {
        *self == Notify::default()
    }

    /// What to run for `state`, in keepalived's order: the state's own script,
    /// then the generic one with `kind NAME STATE PRIORITY` appended.
    pub fn commands(&self, kind: &str, name: &str, state: NotifyState, priority: u8) -> Vec<Vec<String>> {
        self.commands_as(kind, name, state, priority)
            .into_iter()
            .map(|(argv, _)| argv)
            .collect()
    }

    /// [`Notify::commands`], each with its own user (`None`: the default).
    pub fn commands_as(
        &self,
        kind: &str,
        name: &str,
        state: NotifyState,
        priority: u8,
    ) -> Vec<(Vec<String>, Option<RunAs>)> {
        let u = &self.users;
        let (own, user) = match state {
            NotifyState::Master => (&self.master, &u.master),
            NotifyState::Backup => (&self.backup, &u.backup),
            NotifyState::Fault => (&self.fault, &u.fault),
            NotifyState::Stop => (&self.stop, &u.stop),
        };
        let mut out: Vec<(Vec<String>, Option<RunAs>)> = own.iter().map(|a| (a.clone(), user.clone())).collect();
        if let Some(g) = &self.notify {
            let mut argv = g.clone();
            argv.extend([
                kind.to_string(),
                name.to_string(),
                state.name().to_string(),
                priority.to_string(),
            ]);
            out.push((argv, u.notify.clone()));
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
        type One = (Option<Vec<String>>, Option<RunAs>);
        let one = |c: Option<&Spanned<NotifyCommand>>, key: &str| -> R<One> {
            let key = format!("{prefix}.{key}");
            let Some(c) = c else {
                return Ok((None, None));
            };
            match c.get_ref() {
                NotifyCommand::Cmd(cmd) => {
                    // Re-wrap with the outer span, so errors point at the key.
                    let sp = Spanned::new(c.span(), cmd.clone());
                    Ok((Some(self.notify_command(&sp, &key)?), None))
                }
                NotifyCommand::Table(t) => {
                    let argv = self.notify_command(&t.script, &format!("{key}.script"))?;
                    let user = match (&t.user, &t.group) {
                        (Some(u), g) => Some(self.run_as(u, g.as_ref(), &format!("{key}.user"))?),
                        (None, Some(g)) => return Err(self.err(g, &format!("{key}.group"), "group needs user")),
                        (None, None) => None,
                    };
                    Ok((Some(argv), user))
                }
            }
        };
        let (notify, u_notify) = one(r.notify, "notify")?;
        let (master, u_master) = one(r.master, "notify_master")?;
        let (backup, u_backup) = one(r.backup, "notify_backup")?;
        let (fault, u_fault) = one(r.fault, "notify_fault")?;
        let (stop, u_stop) = one(r.stop, "notify_stop")?;
        Ok(Notify {
            notify,
            master,
            backup,
            fault,
            stop,
            users: NotifyUsers {
                notify: u_notify,
                master: u_master,
                backup: u_backup,
                fault: u_fault,
                stop: u_stop,
            },
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
