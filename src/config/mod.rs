//! The TOML configuration model (keepalived-like names, see
//! `shared/design/vision.md`): loading, parsing, errors and the shared
//! validation helpers. Every error names the file, line, column and key and
//! says what is allowed. Unknown keys are errors.
//!
//! Validation lives by what it validates: `instance.rs` (`vrrp_instance`),
//! `server.rs` (`virtual_server`), `check.rs` (its `check` block), `notify.rs`
//! (notify scripts), `sync.rs` (`vrrp_sync_group`); `specs.rs`
//! turns the validated model into the pure cores' specs.

mod check;
mod diag;
mod instance;
mod notify;
mod raw;
mod server;
mod specs;
mod sync;
mod track;
mod vmac;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use crate::time::Micros;
use raw::NumOrStr;

pub use check::{Check, CheckKind};
pub use diag::{did_you_mean, parse_all, render};
pub use instance::{Instance, TrackInterface};
pub use notify::{Notify, NotifyState, NotifyUsers, DEFAULT_NOTIFY_TIMEOUT};
pub use server::{Admin, LbAlgo, OnMarkedDown, Protocol, RealServer, StreamLimits, VirtualServer};
pub use specs::{passive_policy, table_spec};
pub use sync::SyncGroup;
pub use track::{
    script_security, InstanceTracking, ParamMatch, TrackFile, TrackProcess, TrackRef, TrackVs, Tracking, VrrpScript,
};
pub use vmac::Vmac;

/// The control socket when `global.control_socket` is not set, and `vipctl`'s default.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/vipd/vipd.sock";

/// A configuration error: `FILE:LINE:COL: KEY: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// Dotted key path, e.g. `vrrp_instance.VI_1.priority` (empty if unknown).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}: {}",
                self.file, self.line, self.col, self.key, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub global: Global,
    /// Sorted by name.
    pub instances: Vec<Instance>,
    /// Sorted by name.
    pub servers: Vec<VirtualServer>,
    /// Named trackers (`vrrp_script`, `vrrp_track_file`, `vrrp_track_process`).
    #[serde(default)]
    pub track: Tracking,
    /// `[vrrp_sync_group.NAME]`, sorted by name.
    #[serde(default)]
    pub sync_groups: Vec<SyncGroup>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Global {
    pub router_id: String,
    pub control_socket: PathBuf,
    pub metrics: Option<SocketAddr>,
    /// Default user of scripts (keepalived `script_user`); `None` = as vipd runs.
    #[serde(default)]
    pub script_user: Option<crate::track::spawn::RunAs>,
    /// Refuse root scripts that a non-root user could change.
    #[serde(default)]
    pub enable_script_security: bool,
    /// A notify script still running after this is killed with its process group.
    #[serde(default = "default_notify_timeout")]
    pub notify_script_timeout: Micros,
}

fn default_notify_timeout() -> Micros {
    DEFAULT_NOTIFY_TIMEOUT
}

/// Load and validate a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        col: 0,
        key: String::new(),
        message: format!("cannot read: {e}"),
    })?;
    parse(&text, &file)
}

/// Parse and validate configuration text; `file` names it in errors. The
/// first error only; [`parse_all`] finds them all.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    parse_all(text, file).map_err(|mut errs| errs.swap_remove(0))
}

/// Load a file and report every error in it (`vipd --check`): the config, or
/// the errors rendered for a human (line, caret, "did you mean").
pub fn check_file(path: &Path) -> Result<Config, String> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("error: {file}: cannot read: {e}\n"))?;
    parse_all(&text, &file).map_err(|errs| render(&errs, &text))
}

/// Parse a duration: "250ms", "1s", "1.5s", "2m", "100us", or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Micros, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000f64)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1f64)
    } else if let Some(n) = s.strip_suffix("µs") {
        (n, 1f64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000f64)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000_000f64)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000_000f64)
    } else {
        (s, 1_000_000f64)
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        format!("{s:?} is not a duration (use e.g. \"250ms\", \"1s\", \"1.5s\", \"2m\" or a number of seconds)")
    })?;
    seconds_like(v, mult, s)
}

fn seconds_like(v: f64, mult: f64, shown: &str) -> Result<Micros, String> {
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{shown:?} must be a non-negative duration"));
    }
    let us = (v * mult).round();
    if us > 1e15 {
        return Err(format!("{shown:?} is too long"));
    }
    Ok(Micros(us as u64))
}

/// The default `router_id`: the host name from gethostname(2) (the unit's
/// `ProcSubset=pid` hides /proc/sys/kernel/hostname, which made every node
/// "vipd").
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vipd".into())
}

/// The validation context: the text (for line/column) and the file name.
struct Cx<'a> {
    text: &'a str,
    file: &'a str,
}

type R<T> = Result<T, ConfigError>;

impl Cx<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let upto = &self.text[..offset.min(self.text.len())];
        let line = upto.matches('\n').count() + 1;
        let col = upto.rfind('\n').map(|p| upto.len() - p).unwrap_or(upto.len() + 1);
        (line, col)
    }
    fn err_at(&self, offset: usize, key: &str, message: impl Into<String>) -> ConfigError {
        let (line, col) = self.line_col(offset);
        ConfigError {
            file: self.file.to_string(),
            line,
            col,
            key: key.to_string(),
            message: message.into(),
        }
    }
    fn err<T>(&self, sp: &Spanned<T>, key: &str, message: impl Into<String>) -> ConfigError {
        self.err_at(sp.span().start, key, message)
    }

    fn int_in(&self, v: &Spanned<i64>, key: &str, lo: i64, hi: i64, note: &str) -> R<i64> {
        let n = *v.get_ref();
        if n < lo || n > hi {
            return Err(self.err(v, key, format!("{n} is out of range, allowed {lo}..={hi}{note}")));
        }
        Ok(n)
    }

    fn duration(&self, v: &Spanned<NumOrStr>, key: &str) -> R<Micros> {
        let r = match v.get_ref() {
            NumOrStr::Int(n) => seconds_like(*n as f64, 1_000_000f64, &n.to_string()),
            NumOrStr::Float(f) => seconds_like(*f, 1_000_000f64, &f.to_string()),
            NumOrStr::Str(s) => parse_duration(s),
        };
        r.map_err(|m| self.err(v, key, m))
    }

    /// Validate block by block, collecting one error per block (global, each
    /// instance, the cross-instance checks, each virtual server). A virtual
    /// server tied to an instance that failed is not checked against it.
    fn build_all(&self, raw: raw::File) -> Result<Config, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let global = self.global(raw.global.as_ref()).map_err(|e| errors.push(e)).ok();
        let mut track_failed = global.is_none();
        let track = match &global {
            Some(g) => self.tracking(&raw, g).unwrap_or_else(|e| {
                errors.push(e);
                track_failed = true;
                Tracking::default()
            }),
            None => Tracking::default(),
        };
        let mut instances = Vec::new();
        let mut failed = Vec::new();
        for (name, inst) in raw.vrrp_instance.iter().flatten() {
            match self.instance(name, inst) {
                Ok(mut i) => {
                    // Tracker names are only checked against trackers that validated.
                    if !track_failed {
                        match self.instance_tracking(name, inst.get_ref(), &raw, &track) {
                            Ok(t) => i.track = t,
                            Err(e) => errors.push(e),
                        }
                    }
                    instances.push(i)
                }
                Err(e) => {
                    errors.push(e);
                    failed.push(name.clone());
                }
            }
        }
        if let Err(e) = self.cross_check_instances(&raw, &instances) {
            errors.push(e);
        }
        if let Err(e) = self.cross_check_vmacs(&raw, &mut instances) {
            errors.push(e);
        }
        let sync_groups = self.sync_groups(
            raw.vrrp_sync_group.as_ref(),
            &mut instances,
            &failed,
            &track,
            &mut errors,
        );
        let mut servers: Vec<VirtualServer> = Vec::new();
        for (name, vs) in raw.virtual_server.iter().flatten() {
            let tied = vs.get_ref().vrrp_instance.as_ref().map(|v| v.get_ref());
            if tied.is_some_and(|t| failed.contains(t)) {
                continue;
            }
            let s = match self.server(name, vs, &instances) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if let Some(o) = servers
                .iter()
                .find(|o| o.listen == s.listen && o.protocol == s.protocol)
            {
                errors.push(self.err(
                    &vs.get_ref().listen,
                    &format!("virtual_server.{name}.listen"),
                    format!(
                        "{} is already the listen address of virtual_server.{}",
                        s.listen, o.name
                    ),
                ));
                continue;
            }
            servers.push(s);
        }
        match global {
            Some(global) if errors.is_empty() => Ok(Config {
                global,
                instances,
                servers,
                track,
                sync_groups,
            }),
            _ => Err(errors),
        }
    }

    fn global(&self, raw: Option<&Spanned<raw::Global>>) -> R<Global> {
        let Some(g) = raw else {
            return Ok(Global {
                router_id: hostname(),
                control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
                metrics: None,
                script_user: None,
                enable_script_security: false,
                notify_script_timeout: DEFAULT_NOTIFY_TIMEOUT,
            });
        };
        let g = g.get_ref();
        let scripts = self.script_globals(g.script_user.as_ref(), g.enable_script_security.as_ref())?;
        let metrics = match &g.metrics {
            None => None,
            Some(m) => Some(m.get_ref().parse::<SocketAddr>().map_err(|_| {
                self.err(
                    m,
                    "global.metrics",
                    format!("{:?} is not an address:port like \"127.0.0.1:9650\"", m.get_ref()),
                )
            })?),
        };
        let control_socket = match &g.control_socket {
            None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
            Some(p) => {
                let path = PathBuf::from(p.get_ref());
                if !path.is_absolute() {
                    return Err(self.err(p, "global.control_socket", "must be an absolute path"));
                }
                path
            }
        };
        Ok(Global {
            router_id: g
                .router_id
                .as_ref()
                .map(|r| r.get_ref().clone())
                .unwrap_or_else(hostname),
            control_socket,
            metrics,
            script_user: scripts.script_user,
            enable_script_security: scripts.enable_script_security,
            notify_script_timeout: self.notify_timeout(g.notify_script_timeout.as_ref())?,
        })
    }
}

/// Byte offset where a spanned value starts.
fn off<T>(s: &Spanned<T>) -> usize {
    s.span().start
}
