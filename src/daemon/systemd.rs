//! SHELL: talking to the service manager (sd_notify: READY, STATUS lines with
//! the instance summary, WATCHDOG pings from the protocol loop).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::warn;

/// Tell systemd (Type=notify) something, if we run under it.
pub fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name).and_then(|a| sock.send_to_addr(msg.as_bytes(), &a))
    } else {
        sock.send_to(msg.as_bytes(), Path::new(&path))
    };
    if let Err(e) = res {
        warn!("sd_notify {msg}: {e}");
    }
}

/// The service watchdog (`WatchdogSec=`): systemd sets WATCHDOG_USEC (and
/// WATCHDOG_PID); the event loop pings at half that period from its own
/// iterations, so a loop that hangs stops the pings and systemd restarts us.
#[derive(Debug)]
pub struct Watchdog {
    every: Duration,
    next: tokio::time::Instant,
}

impl Watchdog {
    /// From the environment; `None` when systemd asked for no watchdog (or
    /// asked another process: WATCHDOG_PID names someone else).
    pub fn from_env() -> Option<Watchdog> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.trim().parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        if usec == 0 {
            return None;
        }
        let every = Duration::from_micros(usec / 2).max(Duration::from_millis(1));
        Some(Watchdog {
            every,
            next: tokio::time::Instant::now(),
        })
    }

    /// When the loop must wake to ping, at the latest.
    pub fn deadline(&self) -> tokio::time::Instant {
        self.next
    }

    /// Ping if the period has passed (called on every loop iteration: cheap).
    pub fn tick(&mut self) {
        let now = tokio::time::Instant::now();
        if now >= self.next {
            sd_notify("WATCHDOG=1");
            self.next = now + self.every;
        }
    }
}

/// Sleep until the watchdog's next ping (never, without a watchdog).
pub async fn watchdog_due(wd: &Option<Watchdog>) {
    match wd {
        Some(w) => tokio::time::sleep_until(w.deadline()).await,
        None => std::future::pending().await,
    }
}

/// Instances (and virtual servers) listed one by one up to this many; beyond,
/// counted, so the line stays readable in `systemctl status`.
const LIST_AT_MOST: usize = 4;

/// The one-line summary `systemctl status vipd` shows (STATUS=), e.g.
/// `VI_1 MASTER prio 150; ingest 2/3 backends up`, or with many instances
/// `250 instances: 120 MASTER, 130 BACKUP; ...`.
pub fn status_line(st: &crate::control::Status) -> String {
    let mut parts: Vec<String> = Vec::new();
    if st.instances.len() <= LIST_AT_MOST {
        parts.extend(st.instances.iter().map(|i| {
            format!(
                "{} {} prio {}",
                i.router.name,
                i.router.state.name().to_uppercase(),
                i.router.effective_priority
            )
        }));
    } else {
        let mut by_state: Vec<(&str, usize)> = Vec::new();
        for i in &st.instances {
            let name = i.router.state.name();
            match by_state.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => by_state.push((name, 1)),
            }
        }
        by_state.sort();
        let counts: Vec<String> = by_state
            .iter()
            .map(|(n, c)| format!("{c} {}", n.to_uppercase()))
            .collect();
        parts.push(format!("{} instances: {}", st.instances.len(), counts.join(", ")));
    }
    let up = |vs: &crate::control::VirtualServerStatus| {
        vs.backends
            .iter()
            .filter(|b| b.health == crate::balance::Health::Up)
            .count()
    };
    if st.virtual_servers.len() <= LIST_AT_MOST {
        for vs in &st.virtual_servers {
            parts.push(format!("{} {}/{} backends up", vs.name, up(vs), vs.backends.len()));
        }
    } else {
        let total: usize = st.virtual_servers.iter().map(|v| v.backends.len()).sum();
        let healthy: usize = st.virtual_servers.iter().map(up).sum();
        parts.push(format!(
            "{} virtual servers: {healthy}/{total} backends up",
            st.virtual_servers.len()
        ));
    }
    if parts.is_empty() {
        return "no instances".to_string();
    }
    // sd_notify messages are newline-separated assignments: keep it one line.
    parts.join("; ").replace('\n', " ")
}

/// Set when the summary may have changed; the event loop sends one STATUS=
/// per turn at most (a start-up or a reload that moves 250 instances sends one).
static STATUS_DIRTY: AtomicBool = AtomicBool::new(false);

impl super::Daemon {
    /// The summary changed (start, transition, reload): STATUS= goes out from
    /// the event loop's next turn.
    pub(super) fn notify_status(&self) {
        STATUS_DIRTY.store(true, Ordering::Relaxed);
    }

    /// Called by the event loop on every turn: send STATUS= if it changed.
    pub(super) fn flush_status(&self) {
        if STATUS_DIRTY.swap(false, Ordering::Relaxed) && std::env::var_os("NOTIFY_SOCKET").is_some() {
            sd_notify(&format!("STATUS={}", status_line(&self.status())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Status;

    /// The pinned status of tests/control: two instances, two virtual servers.
    fn pinned() -> Status {
        serde_json::from_str(include_str!("../../tests/control/status.json")).expect("pinned status")
    }

    #[test]
    fn status_line_lists_few_and_counts_many() {
        let mut st = pinned();
        assert_eq!(
            status_line(&st),
            "VI_1 MASTER prio 150; VI_6 FAULT prio 80; ingest 1/3 backends up; syslog 1/1 backends up"
        );
        let (i, vs) = (st.instances[0].clone(), st.virtual_servers[0].clone());
        st.instances.extend(std::iter::repeat_n(i, 4));
        st.virtual_servers.extend(std::iter::repeat_n(vs, 3));
        assert_eq!(
            status_line(&st),
            "6 instances: 1 FAULT, 5 MASTER; 5 virtual servers: 5/13 backends up"
        );
        assert_eq!(status_line(&Status::default()), "no instances");
    }
}
