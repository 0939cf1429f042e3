//! SHELL: `vrrp_track_process`: count the running processes that match, by a
//! scan of /proc every `interval` (keepalived listens on the proc connector
//! instead; a scan needs no extra privilege). Under the unit's
//! `ProtectProc=invisible` only vipd's own user's processes are visible.

use std::path::Path;

use tracing::warn;

use super::{Report, Sink};
use crate::config::{ParamMatch, TrackProcess};

/// Does a process with `comm` and `cmdline` (argv) match `tp`?
pub fn matches(tp: &TrackProcess, comm: &str, argv: &[String]) -> bool {
    if tp.param_match.is_none() && !tp.full_command {
        return comm == tp.process;
    }
    let Some((prog, args)) = argv.split_first() else {
        return false;
    };
    if tp.full_command {
        // The whole command line, words joined by spaces.
        let mut want = vec![tp.process.clone()];
        want.extend(tp.params.iter().cloned());
        return argv.join(" ") == want.join(" ");
    }
    if *prog != tp.process {
        return false;
    }
    let p = &tp.params;
    match tp.param_match.unwrap_or(ParamMatch::Exact) {
        ParamMatch::Exact => args == p.as_slice(),
        ParamMatch::Partial => args.len() >= p.len() && args[..p.len()] == p[..],
        ParamMatch::Initial => {
            if args.len() < p.len() {
                return false;
            }
            match p.split_last() {
                None => true,
                Some((last, head)) => args[..head.len()] == *head && args[head.len()].starts_with(last.as_str()),
            }
        }
    }
}

/// How many live (not zombie, not kernel-thread) processes under `proc` match.
pub fn count(tp: &TrackProcess, proc: &Path) -> std::io::Result<u32> {
    let mut n = 0;
    let need_cmdline = tp.param_match.is_some() || tp.full_command;
    for e in std::fs::read_dir(proc)?.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        let dir = proc.join(pid);
        // comm and state from /proc/PID/stat: "pid (comm) S ...".
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[l + 1..r];
        let state = stat[r + 1..].split_whitespace().next().unwrap_or("");
        if state == "Z" || state == "X" {
            continue;
        }
        let argv: Vec<String> = if need_cmdline {
            let Ok(raw) = std::fs::read(dir.join("cmdline")) else {
                continue;
            };
            if raw.is_empty() {
                continue; // kernel thread
            }
            raw.split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        } else {
            Vec::new()
        };
        if matches(tp, comm, &argv) {
            n += 1;
        }
    }
    Ok(n)
}

/// Report the count every `interval`.
pub async fn watch(tp: TrackProcess, sink: Sink) {
    let mut tick = tokio::time::interval(tp.interval.to_duration());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tick.tick().await;
        let tp2 = tp.clone();
        let n = tokio::task::spawn_blocking(move || count(&tp2, Path::new("/proc"))).await;
        match n {
            Ok(Ok(count)) => sink(Report::Process {
                name: tp.name.clone(),
                count,
            }),
            Ok(Err(e)) if !warned => {
                warned = true;
                warn!("track process {}: reading /proc: {e}", tp.name);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Micros;

    fn tp(process: &str, params: &[&str], pm: Option<ParamMatch>, full: bool) -> TrackProcess {
        TrackProcess {
            name: "t".into(),
            process: process.into(),
            params: params.iter().map(|s| s.to_string()).collect(),
            param_match: pm,
            full_command: full,
            quorum: 1,
            quorum_max: u32::MAX,
            weight: 1,
            fork_delay: Micros::ZERO,
            terminate_delay: Micros::ZERO,
            interval: Micros::from_millis(200),
            reverse: false,
        }
    }

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_and_parameters_match_like_keepalived() {
        // By name only: exact, no "pgrep ssh matches sshd".
        assert!(matches(&tp("sshd", &[], None, false), "sshd", &[]));
        assert!(!matches(&tp("ssh", &[], None, false), "sshd", &[]));
        let argv = v(&[
            "/usr/sbin/haproxy",
            "-f",
            "/etc/haproxy/haproxy.cfg",
            "-p",
            "/run/h.pid",
        ]);
        let exact = tp(
            "/usr/sbin/haproxy",
            &["-f", "/etc/haproxy/haproxy.cfg"],
            Some(ParamMatch::Exact),
            false,
        );
        assert!(!matches(&exact, "haproxy", &argv));
        let partial = tp(
            "/usr/sbin/haproxy",
            &["-f", "/etc/haproxy/haproxy.cfg"],
            Some(ParamMatch::Partial),
            false,
        );
        assert!(matches(&partial, "haproxy", &argv));
        let initial = tp(
            "/usr/sbin/haproxy",
            &["-f", "/etc/haproxy/"],
            Some(ParamMatch::Initial),
            false,
        );
        assert!(matches(&initial, "haproxy", &argv));
        let full = tp(
            "/usr/sbin/haproxy",
            &["-f", "/etc/haproxy/haproxy.cfg", "-p", "/run/h.pid"],
            None,
            true,
        );
        assert!(matches(&full, "haproxy", &argv));
        // No parameters, param_match set: must have none.
        assert!(!matches(
            &tp("/usr/sbin/haproxy", &[], Some(ParamMatch::Exact), false),
            "haproxy",
            &argv
        ));
    }

    #[test]
    fn counts_this_test_process() {
        let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
        let n = count(&tp(comm.trim(), &[], None, false), Path::new("/proc")).unwrap();
        assert!(n >= 1);
        assert_eq!(
            count(&tp("no-such-proc-x", &[], None, false), Path::new("/proc")).unwrap(),
            0
        );
    }
}
