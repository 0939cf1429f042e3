//! Tracking configuration (keepalived 2.2 semantics): the `[vrrp_script]`,
//! `[vrrp_track_file]` and `[vrrp_track_process]` tables, an instance's
//! `track_script` / `track_file` / `track_process` / `track_virtual_server`
//! lists, and `[global] script_user` / `enable_script_security`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use super::raw::{self, NumOrStr};
use super::{Cx, R};
use crate::time::Micros;
use crate::track::spawn::{split_command, RunAs, CLEAN_PATH};

// ---- as written -------------------------------------------------------------

/// A command: an argv array, or a keepalived-style string split like keepalived.
#[derive(Clone, Debug)]
pub enum Command {
    Str(String),
    Argv(Vec<String>),
}

/// By hand, so a wrong type says what a command is (an untagged enum only
/// says that no variant matched).
impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a command: \"/path arg\" or [\"/path\", \"arg\"]")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Command, E> {
                Ok(Command::Str(s.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Command::Argv(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `init_file = true` (write 0) or `init_file = VALUE`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub enum InitFile {
    Bool(bool),
    Int(i64),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawScript {
    pub script: Spanned<Command>,
    pub interval: Option<Spanned<NumOrStr>>,
    pub timeout: Option<Spanned<NumOrStr>>,
    pub weight: Option<Spanned<i64>>,
    pub rise: Option<Spanned<i64>>,
    pub fall: Option<Spanned<i64>>,
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub init_fail: Option<bool>,
    /// keepalived `weight W reverse`.
    pub reverse: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub file: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    pub init_file: Option<Spanned<InitFile>>,
    pub init_file_overwrite: Option<bool>,
    pub reverse: Option<bool>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub process: Spanned<Command>,
    pub param_match: Option<Spanned<String>>,
    pub full_command: Option<bool>,
    pub quorum: Option<Spanned<i64>>,
    pub quorum_max: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
    pub delay: Option<Spanned<NumOrStr>>,
    pub fork_delay: Option<Spanned<NumOrStr>>,
    pub terminate_delay: Option<Spanned<NumOrStr>>,
    /// vipd: how often /proc is scanned (keepalived uses the proc connector).
    pub interval: Option<Spanned<NumOrStr>>,
    pub reverse: Option<bool>,
}

/// `{ name = "chk", weight = -20 }` in an instance's `track_script`,
/// `track_file` or `track_process`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawRef {
    pub name: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
    /// Overrides the tracker's own `reverse` (keepalived `reverse` / `noreverse`).
    pub reverse: Option<bool>,
}

/// `{ name = "web", quorum = 2, weight = -50 }` in `track_virtual_server`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawVsRef {
    pub name: Spanned<String>,
    pub quorum: Option<Spanned<i64>>,
    pub weight: Option<Spanned<i64>>,
}

// ---- validated --------------------------------------------------------------

/// The named trackers of the configuration (sorted by name).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracking {
    pub scripts: BTreeMap<String, VrrpScript>,
    pub files: BTreeMap<String, TrackFile>,
    pub processes: BTreeMap<String, TrackProcess>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpScript {
    pub name: String,
    pub argv: Vec<String>,
    pub interval: Micros,
    pub timeout: Micros,
    /// Default weight for instances that do not set one (keepalived: 0).
    pub weight: i32,
    pub rise: u32,
    pub fall: u32,
    /// `None` = as vipd runs (no `user`, no `global.script_user`).
    pub run_as: Option<RunAs>,
    pub init_fail: bool,
    /// Default `reverse` for instances that do not set one (keepalived `weight W reverse`).
    pub reverse: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackFile {
    pub name: String,
    pub path: PathBuf,
    /// Default weight (keepalived: 1).
    pub weight: i32,
    /// Written at start-up when the file is missing (or always with `overwrite`).
    pub init_file: Option<i64>,
    pub overwrite: bool,
    /// Default `reverse`: the share is value x weight x -1.
    pub reverse: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamMatch {
    /// Exactly the configured parameters.
    Exact,
    /// The first n parameters match exactly (more may follow).
    Partial,
    /// Like partial, and the last configured parameter may be a prefix.
    Initial,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackProcess {
    pub name: String,
    /// Matched against /proc/PID/comm (15 characters), or argv[0] of
    /// /proc/PID/cmdline with parameters or `full_command`.
    pub process: String,
    pub params: Vec<String>,
    /// `None` = parameters not matched (only the name).
    pub param_match: Option<ParamMatch>,
    pub full_command: bool,
    pub quorum: u32,
    pub quorum_max: u32,
    /// Default weight (keepalived: 1).
    pub weight: i32,
    pub fork_delay: Micros,
    pub terminate_delay: Micros,
    pub interval: Micros,
    /// Default `reverse`.
    pub reverse: bool,
}

/// One tracker an instance follows, with the weight in force for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackRef {
    pub name: String,
    pub weight: i32,
    /// keepalived `reverse`: the weight's adjustment goes the other way
    /// (and weight 0 faults while up), see `daemon::facts`.
    #[serde(default)]
    pub reverse: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackVs {
    pub name: String,
    pub quorum: u32,
    pub weight: i32,
}

/// What an instance tracks besides interfaces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceTracking {
    pub scripts: Vec<TrackRef>,
    pub files: Vec<TrackRef>,
    pub processes: Vec<TrackRef>,
    pub virtual_servers: Vec<TrackVs>,
}

impl InstanceTracking {
    pub fn is_empty(&self) -> bool {
        self.scripts.is_empty() && self.files.is_empty() && self.processes.is_empty() && self.virtual_servers.is_empty()
    }
}

/// `[global]` keys about scripts.
pub(super) struct ScriptGlobals {
    pub script_user: Option<RunAs>,
    pub enable_script_security: bool,
}

// ---- validation -------------------------------------------------------------

fn tkey(table: &str, name: &str, key: &str) -> String {
    format!("{table}.{name}.{key}")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

impl Cx<'_> {
    /// `global.script_user` ("user" or "user group") and `enable_script_security`.
    pub(super) fn script_globals(
        &self,
        user: Option<&Spanned<String>>,
        security: Option<&Spanned<bool>>,
    ) -> R<ScriptGlobals> {
        let script_user = match user {
            None => None,
            Some(u) => Some(self.run_as(u, None, "global.script_user")?),
        };
        Ok(ScriptGlobals {
            script_user,
            enable_script_security: security.map(|s| *s.get_ref()).unwrap_or(false),
        })
    }

    /// "user" or "user group" (keepalived), plus an optional separate group.
    pub(super) fn run_as(&self, user: &Spanned<String>, group: Option<&Spanned<String>>, key: &str) -> R<RunAs> {
        let words: Vec<&str> = user.get_ref().split_whitespace().collect();
        let (u, g) = match (words.as_slice(), group) {
            ([u], None) => (*u, None),
            ([u], Some(g)) => (*u, Some(g.get_ref().as_str())),
            ([u, g], None) => (*u, Some(*g)),
            ([_, _], Some(g)) => return Err(self.err(g, key, "the group is given twice (in user and in group)")),
            _ => return Err(self.err(user, key, "expected \"USER\" or \"USER GROUP\"")),
        };
        RunAs::lookup(u, g).map_err(|e| self.err(user, key, e))
    }

    fn command(&self, c: &Spanned<Command>, key: &str) -> R<Vec<String>> {
        let argv = match c.get_ref() {
            Command::Str(s) => split_command(s).map_err(|e| self.err(c, key, e))?,
            Command::Argv(v) => v.clone(),
        };
        match argv.first() {
            None => Err(self.err(c, key, "empty command")),
            Some(p) if p.is_empty() => Err(self.err(c, key, "the program name is empty")),
            Some(_) => Ok(argv),
        }
    }

    fn weight(&self, w: Option<&Spanned<i64>>, key: &str, lim: i64, default: i32) -> R<i32> {
        match w {
            None => Ok(default),
            Some(w) => Ok(self.int_in(w, key, -lim, lim, "")? as i32),
        }
    }

    /// Every named tracker of the file.
    pub(super) fn tracking(&self, raw: &raw::File, g: &super::Global) -> R<Tracking> {
        let mut t = Tracking::default();
        for (name, sp) in raw.vrrp_script.iter().flatten() {
            t.scripts.insert(name.clone(), self.vrrp_script(name, sp, g)?);
        }
        for (name, sp) in raw.vrrp_track_file.iter().flatten() {
            t.files.insert(name.clone(), self.track_file(name, sp)?);
        }
        for (name, sp) in raw.vrrp_track_process.iter().flatten() {
            t.processes.insert(name.clone(), self.track_process(name, sp)?);
        }
        Ok(t)
    }

    fn vrrp_script(&self, name: &str, sp: &Spanned<RawScript>, g: &super::Global) -> R<VrrpScript> {
        let k = |key: &str| tkey("vrrp_script", name, key);
        if !valid_name(name) {
            return Err(self.err(
                sp,
                &format!("vrrp_script.{name}"),
                "names use 1-64 of A-Z a-z 0-9 _ - .",
            ));
        }
        let r = sp.get_ref();
        let argv = self.command(&r.script, &k("script"))?;
        let interval = match &r.interval {
            None => Micros::from_secs(1),
            Some(v) => self.duration(v, &k("interval"))?,
        };
        if interval < Micros(10_000) {
            let at = r.interval.as_ref().map(|v| v.span().start).unwrap_or(0);
            return Err(self.err_at(at, &k("interval"), "must be at least 10ms"));
        }
        // keepalived: the timeout defaults to the interval.
        let timeout = match &r.timeout {
            None => interval,
            Some(v) => self.duration(v, &k("timeout"))?,
        };
        if timeout < Micros(1_000) {
            let at = r.timeout.as_ref().map(|v| v.span().start).unwrap_or(0);
            return Err(self.err_at(at, &k("timeout"), "must be at least 1ms"));
        }
        let weight = self.weight(r.weight.as_ref(), &k("weight"), 253, 0)?;
        let rise = match &r.rise {
            None => 1,
            Some(v) => self.int_in(v, &k("rise"), 1, 1000, "")? as u32,
        };
        let fall = match &r.fall {
            None => 1,
            Some(v) => self.int_in(v, &k("fall"), 1, 1000, "")? as u32,
        };
        let run_as = match (&r.user, &r.group) {
            (Some(u), grp) => Some(self.run_as(u, grp.as_ref(), &k("user"))?),
            (None, Some(grp)) => return Err(self.err(grp, &k("group"), "group needs user")),
            (None, None) => g.script_user.clone(),
        };
        if g.enable_script_security && run_as.as_ref().is_none_or(|r| r.is_root()) {
            script_security(&argv[0]).map_err(|e| self.err(&r.script, &k("script"), e))?;
        }
        Ok(VrrpScript {
            name: name.to_string(),
            argv,
            interval,
            timeout,
            weight,
            rise,
            fall,
            run_as,
            init_fail: r.init_fail.unwrap_or(false),
            reverse: r.reverse.unwrap_or(false),
        })
    }

    fn track_file(&self, name: &str, sp: &Spanned<RawFile>) -> R<TrackFile> {
        let k = |key: &str| tkey("vrrp_track_file", name, key);
        if !valid_name(name) {
            return Err(self.err(
                sp,
                &format!("vrrp_track_file.{name}"),
                "names use 1-64 of A-Z a-z 0-9 _ - .",
            ));
        }
        let r = sp.get_ref();
        let path = PathBuf::from(r.file.get_ref());
        if !path.is_absolute() || path.file_name().is_none() {
            return Err(self.err(&r.file, &k("file"), "must be an absolute path to a file"));
        }
        let weight = self.weight(r.weight.as_ref(), &k("weight"), 254, 1)?;
        let init_file = match r.init_file.as_ref().map(|v| v.get_ref()) {
            None | Some(InitFile::Bool(false)) => None,
            Some(InitFile::Bool(true)) => Some(0),
            Some(InitFile::Int(n)) => Some(*n),
        };
        if r.init_file_overwrite.unwrap_or(false) && init_file.is_none() {
            let at = sp.span().start;
            return Err(self.err_at(at, &k("init_file_overwrite"), "needs init_file"));
        }
        Ok(TrackFile {
            name: name.to_string(),
            path,
            weight,
            init_file,
            overwrite: r.init_file_overwrite.unwrap_or(false),
            reverse: r.reverse.unwrap_or(false),
        })
    }

    fn track_process(&self, name: &str, sp: &Spanned<RawProcess>) -> R<TrackProcess> {
        let k = |key: &str| tkey("vrrp_track_process", name, key);
        if !valid_name(name) {
            return Err(self.err(
                sp,
                &format!("vrrp_track_process.{name}"),
                "names use 1-64 of A-Z a-z 0-9 _ - .",
            ));
        }
        let r = sp.get_ref();
        let mut argv = self.command(&r.process, &k("process"))?;
        let process = argv.remove(0);
        let full_command = r.full_command.unwrap_or(false);
        let param_match = match &r.param_match {
            None if argv.is_empty() => None,
            None => Some(ParamMatch::Exact),
            Some(p) => Some(match p.get_ref().as_str() {
                "exact" => ParamMatch::Exact,
                "partial" => ParamMatch::Partial,
                "initial" => ParamMatch::Initial,
                other => {
                    return Err(self.err(
                        p,
                        &k("param_match"),
                        format!("{other:?} is not a match mode, allowed \"exact\", \"partial\" or \"initial\""),
                    ))
                }
            }),
        };
        if param_match.is_none() && !full_command && process.len() > 15 {
            return Err(self.err(
                &r.process,
                &k("process"),
                format!(
                    "{process:?} is longer than a process name can be (15 characters); set full_command = true to match the command line"
                ),
            ));
        }
        let quorum = match &r.quorum {
            None => 1,
            Some(v) => self.int_in(v, &k("quorum"), 1, 65535, "")? as u32,
        };
        let quorum_max = match &r.quorum_max {
            None => u32::MAX,
            Some(v) => self.int_in(v, &k("quorum_max"), 0, 65535, "")? as u32,
        };
        if quorum_max < quorum {
            let at = r.quorum_max.as_ref().map(|v| v.span().start).unwrap_or(0);
            return Err(self.err_at(
                at,
                &k("quorum_max"),
                format!("{quorum_max} is below quorum ({quorum}): the process could never be up"),
            ));
        }
        let weight = self.weight(r.weight.as_ref(), &k("weight"), 254, 1)?;
        let delay = match &r.delay {
            None => Micros::ZERO,
            Some(v) => self.duration(v, &k("delay"))?,
        };
        let fork_delay = match &r.fork_delay {
            None => delay,
            Some(v) => self.duration(v, &k("fork_delay"))?,
        };
        let terminate_delay = match &r.terminate_delay {
            None => delay,
            Some(v) => self.duration(v, &k("terminate_delay"))?,
        };
        let interval = match &r.interval {
            None => Micros::from_millis(200),
            Some(v) => self.duration(v, &k("interval"))?,
        };
        if interval < Micros(10_000) {
            let at = r.interval.as_ref().map(|v| v.span().start).unwrap_or(0);
            return Err(self.err_at(at, &k("interval"), "must be at least 10ms"));
        }
        Ok(TrackProcess {
            name: name.to_string(),
            process,
            params: argv,
            param_match,
            full_command,
            quorum,
            quorum_max,
            weight,
            fork_delay,
            terminate_delay,
            interval,
            reverse: r.reverse.unwrap_or(false),
        })
    }

    /// An instance's `track_script`, `track_file`, `track_process` and
    /// `track_virtual_server`: names must exist, each at most once.
    pub(super) fn instance_tracking(
        &self,
        name: &str,
        r: &raw::Instance,
        raw: &raw::File,
        t: &Tracking,
    ) -> R<InstanceTracking> {
        let k = |key: &str| format!("vrrp_instance.{name}.{key}");
        let refs = |list: Option<&Vec<Spanned<RawRef>>>,
                    key: &str,
                    table: &str,
                    lim: i64,
                    default: &dyn Fn(&str) -> Option<(i32, bool)>|
         -> R<Vec<TrackRef>> {
            let mut out: Vec<TrackRef> = Vec::new();
            for e in list.into_iter().flatten() {
                let e = e.get_ref();
                let n = e.name.get_ref();
                let Some((dw, drev)) = default(n) else {
                    return Err(self.err(
                        &e.name,
                        &k(&format!("{key}.name")),
                        format!("no [{table}.{n}] is configured"),
                    ));
                };
                if out.iter().any(|x| &x.name == n) {
                    return Err(self.err(&e.name, &k(&format!("{key}.name")), format!("{n:?} is tracked twice")));
                }
                let weight = self.weight(e.weight.as_ref(), &k(&format!("{key}.weight")), lim, dw)?;
                out.push(TrackRef {
                    name: n.clone(),
                    weight,
                    reverse: e.reverse.unwrap_or(drev),
                });
            }
            Ok(out)
        };
        let scripts = refs(r.track_script.as_ref(), "track_script", "vrrp_script", 253, &|n| {
            t.scripts.get(n).map(|s| (s.weight, s.reverse))
        })?;
        let files = refs(r.track_file.as_ref(), "track_file", "vrrp_track_file", 254, &|n| {
            t.files.get(n).map(|s| (s.weight, s.reverse))
        })?;
        let processes = refs(
            r.track_process.as_ref(),
            "track_process",
            "vrrp_track_process",
            254,
            &|n| t.processes.get(n).map(|s| (s.weight, s.reverse)),
        )?;
        let mut virtual_servers: Vec<TrackVs> = Vec::new();
        let mut seen = BTreeSet::new();
        for e in r.track_virtual_server.iter().flatten() {
            let e = e.get_ref();
            let n = e.name.get_ref();
            let key = k("track_virtual_server.name");
            let Some(vs) = raw.virtual_server.as_ref().and_then(|m| m.get(n)) else {
                return Err(self.err(&e.name, &key, format!("no [virtual_server.{n}] is configured")));
            };
            if !seen.insert(n.clone()) {
                return Err(self.err(&e.name, &key, format!("{n:?} is tracked twice")));
            }
            let backends = vs.get_ref().real_server.get_ref().len() as i64;
            let quorum = match &e.quorum {
                None => 1,
                Some(q) => self.int_in(
                    q,
                    &k("track_virtual_server.quorum"),
                    1,
                    backends.max(1),
                    &format!(" (virtual_server.{n} has {backends} real servers)"),
                )? as u32,
            };
            let weight = self.weight(e.weight.as_ref(), &k("track_virtual_server.weight"), 253, 0)?;
            virtual_servers.push(TrackVs {
                name: n.clone(),
                quorum,
                weight,
            });
        }
        Ok(InstanceTracking {
            scripts,
            files,
            processes,
            virtual_servers,
        })
    }
}

/// keepalived's `enable_script_security` for a script run as root: the
/// program (found in the clean PATH when not absolute) and every directory
/// above it must not be writable by anyone but root.
pub fn script_security(prog: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let path = if prog.contains('/') {
        PathBuf::from(prog)
    } else {
        CLEAN_PATH
            .split(':')
            .map(|d| Path::new(d).join(prog))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("{prog:?} is not found in {CLEAN_PATH} (enable_script_security)"))?
    };
    let path = path
        .canonicalize()
        .map_err(|e| format!("{}: {e} (enable_script_security)", path.display()))?;
    let mut cur: Option<&Path> = Some(&path);
    while let Some(p) = cur {
        let m = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let writable_by_others = m.mode() & 0o022 != 0 && !(m.is_dir() && m.mode() & 0o1000 != 0 && p != path);
        if m.uid() != 0 || writable_by_others {
            return Err(format!(
                "{} is writable by a non-root user; refusing to run {} as root (enable_script_security)",
                p.display(),
                path.display()
            ));
        }
        cur = p.parent();
    }
    Ok(())
}
