//! Validation of a virtual server's `check` block: timing, thresholds and the
//! probe (`tcp`, `http`, `exec`) with the keys each type allows.

use serde_spanned::Spanned;

use super::raw::{self, StatusSpec};
use super::{off, Cx, R};
use crate::time::Micros;

/// A validated `check` block is exactly what the checker runs: one definition,
/// named here as the configuration names it.
pub use crate::check::{CheckSpec as Check, ProbeKind as CheckKind};

/// The dotted key of a field of the check of virtual server `name`.
fn keys(name: &str) -> impl Fn(&str) -> String + '_ {
    move |key| format!("virtual_server.{name}.check.{key}")
}

impl Cx<'_> {
    pub(super) fn check(&self, name: &str, sp: &Spanned<raw::Check>) -> R<Check> {
        let k = keys(name);
        let c = sp.get_ref();
        let interval = match &c.interval {
            None => Micros::from_secs(2),
            Some(d) => self.duration(d, &k("interval"))?,
        };
        if interval < Micros::from_millis(10) || interval > Micros::from_secs(3600) {
            return Err(self.err_at(
                c.interval.as_ref().map(off).unwrap_or(off(&c.kind)),
                &k("interval"),
                "allowed from 10ms to 3600s",
            ));
        }
        let timeout = match &c.timeout {
            None => Micros::from_secs(1).min(interval),
            Some(d) => {
                let t = self.duration(d, &k("timeout"))?;
                if t.0 == 0 || t > interval {
                    return Err(self.err(
                        d,
                        &k("timeout"),
                        format!(
                            "must be more than 0 and at most the interval ({} ms)",
                            interval.0 / 1000
                        ),
                    ));
                }
                t
            }
        };
        let rise = match &c.rise {
            None => 2,
            Some(v) => self.int_in(v, &k("rise"), 1, 100, "")? as u32,
        };
        let fall = match &c.fall {
            None => 3,
            Some(v) => self.int_in(v, &k("fall"), 1, 100, "")? as u32,
        };
        Ok(Check {
            kind: self.check_kind(name, sp)?,
            interval,
            timeout,
            rise,
            fall,
        })
    }

    /// `type` and the keys that belong to it.
    fn check_kind(&self, name: &str, sp: &Spanned<raw::Check>) -> R<CheckKind> {
        let k = keys(name);
        let c = sp.get_ref();
        let port = match &c.port {
            None => None,
            Some(p) => Some(self.int_in(p, &k("port"), 1, 65535, "")? as u16),
        };
        let kind_s = c.kind.get_ref().as_str();
        let only = |present: bool, key: &str, kinds: &str| -> R<()> {
            if present {
                return Err(self.err_at(
                    sp.span().start,
                    &k(key),
                    format!("only for check type {kinds} (this check is {kind_s:?})"),
                ));
            }
            Ok(())
        };
        match kind_s {
            "tcp" => {
                only(c.path.is_some(), "path", "\"http\"")?;
                only(c.expect_status.is_some(), "expect_status", "\"http\"")?;
                only(c.host.is_some(), "host", "\"http\"")?;
                only(c.command.is_some(), "command", "\"exec\"")?;
                Ok(CheckKind::Tcp { port })
            }
            "http" => {
                only(c.command.is_some(), "command", "\"exec\"")?;
                let path = match &c.path {
                    None => "/".to_string(),
                    Some(p) => {
                        if !p.get_ref().starts_with('/') || p.get_ref().contains(char::is_whitespace) {
                            return Err(self.err(p, &k("path"), "must start with '/' and contain no spaces"));
                        }
                        p.get_ref().clone()
                    }
                };
                let expect_status = match &c.expect_status {
                    None => (200, 299),
                    Some(e) => self.expect_status(name, e)?,
                };
                Ok(CheckKind::Http {
                    port,
                    path,
                    expect_status,
                    host: c.host.as_ref().map(|h| h.get_ref().clone()),
                })
            }
            "exec" => {
                only(c.path.is_some(), "path", "\"http\"")?;
                only(c.expect_status.is_some(), "expect_status", "\"http\"")?;
                only(c.port.is_some(), "port", "\"tcp\" or \"http\"")?;
                let Some(cmd) = &c.command else {
                    return Err(self.err_at(
                        sp.span().start,
                        &k("command"),
                        "an exec check needs command = [\"/absolute/path\", \"{address}\", ...]",
                    ));
                };
                let v = cmd.get_ref();
                if v.is_empty() || !v[0].starts_with('/') {
                    return Err(self.err(
                        cmd,
                        &k("command"),
                        "must be a non-empty list whose first element is an absolute path",
                    ));
                }
                Ok(CheckKind::Exec { command: v.clone() })
            }
            o => Err(self.err(
                &c.kind,
                &k("type"),
                format!("{o:?}: allowed \"tcp\", \"http\" or \"exec\""),
            )),
        }
    }

    /// `expect_status`: 200, "2xx" or [200, 399], within 100..=599.
    fn expect_status(&self, name: &str, e: &Spanned<StatusSpec>) -> R<(u16, u16)> {
        let bad = || {
            self.err(
                e,
                &keys(name)("expect_status"),
                "allowed: a status like 200, a class like \"2xx\", or a range [200, 399] within 100..=599",
            )
        };
        let (lo, hi) = match e.get_ref() {
            StatusSpec::One(n) => (*n, *n),
            StatusSpec::Str(s) => {
                let s = s.trim();
                if s.len() == 3 && s.ends_with("xx") {
                    let d = s[..1].parse::<i64>().map_err(|_| bad())?;
                    (d * 100, d * 100 + 99)
                } else {
                    let n = s.parse::<i64>().map_err(|_| bad())?;
                    (n, n)
                }
            }
            StatusSpec::Range(v) if v.len() == 2 => (v[0], v[1]),
            StatusSpec::Range(_) => return Err(bad()),
        };
        if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
            return Err(bad());
        }
        Ok((lo as u16, hi as u16))
    }
}
