//! SHELL: the data plane's resource budget: RLIMIT_NOFILE raised at start,
//! connection caps derived from the fd budget, the reserve fd that lets a
//! listener at EMFILE accept-and-close instead of spinning, and the
//! classification of connect errors as local (ours) or the backend's.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// File descriptors kept out of the connection budget: VRRP sockets, netlink,
/// the control and metrics sockets, health-check probes (one per backend in
/// flight), listeners, log files, the reserve fd.
pub const FD_RESERVE: u64 = 256;

/// Raise RLIMIT_NOFILE's soft limit to the hard limit (systemd starts
/// services with a soft limit of 1024 whatever the hard limit). Returns
/// (soft, hard) after the change. Does nothing when they are already equal,
/// so a unit with `LimitNOFILE=N` (both set) needs no setrlimit call
/// (which `SystemCallFilter=~@resources` would forbid).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let (soft, hard) = nofile_limit()?;
    if soft >= hard {
        return Ok((soft, hard));
    }
    let lim = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit with a valid, initialised struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    nofile_limit()
}

/// Current (soft, hard) RLIMIT_NOFILE.
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a valid struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Proxied TCP streams the fd budget `soft` allows: each costs two fds
/// (client and backend), after the reserve. At least 1.
pub fn connection_budget(soft: u64) -> u64 {
    (soft.saturating_sub(FD_RESERVE) / 2).max(1)
}

/// Streams proxied right now by every virtual server of this process.
static GLOBAL_ACTIVE: AtomicU64 = AtomicU64::new(0);
static GLOBAL_CAP: OnceLock<u64> = OnceLock::new();

/// The process-wide cap on proxied TCP streams, from the soft fd limit seen
/// at first use (after [`raise_nofile_limit`]).
pub fn global_cap() -> u64 {
    *GLOBAL_CAP.get_or_init(|| {
        let soft = nofile_limit().map(|l| l.0).unwrap_or(1024);
        let cap = connection_budget(soft);
        tracing::info!(
            "fd limit {soft}: up to {cap} proxied TCP connections (2 fds each, {FD_RESERVE} kept in reserve)"
        );
        cap
    })
}

/// One proxied stream counted against the global cap; released on drop.
pub struct GlobalSlot(());

impl GlobalSlot {
    /// A slot, or None when the global cap is reached.
    pub fn try_take() -> Option<GlobalSlot> {
        let cap = global_cap();
        let prev = GLOBAL_ACTIVE.fetch_add(1, Ordering::Relaxed);
        if prev >= cap {
            GLOBAL_ACTIVE.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(GlobalSlot(()))
    }
}

impl Drop for GlobalSlot {
    fn drop(&mut self) {
        GLOBAL_ACTIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The reserve fd (/dev/null), opened at start: at EMFILE a listener closes
/// it to accept the pending client and close it at once (the client learns
/// now instead of timing out in the backlog), then opens it again.
static RESERVE: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Open the reserve fd if it is not held (at start, and after each use).
pub fn hold_reserve_fd() {
    let mut r = RESERVE.lock().unwrap_or_else(|p| p.into_inner());
    if r.is_none() {
        *r = File::open("/dev/null").ok().map(OwnedFd::from);
    }
}

/// Is this an fd-exhaustion error (EMFILE, ENFILE)?
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Out of fds on `listener`: free the reserve fd, accept one pending client
/// and reset it, take the reserve back. Returns whether a client was shed.
pub fn shed_one(listener: &impl AsRawFd) -> bool {
    let mut r = RESERVE.lock().unwrap_or_else(|p| p.into_inner());
    drop(r.take());
    // SAFETY: accept4 on a listening socket we own; null address pointers are allowed.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    let shed = fd >= 0;
    if shed {
        // SAFETY: accept4 returned a new fd that nothing else owns.
        let s = unsafe { OwnedFd::from_raw_fd(fd) };
        abort_close(socket2::SockRef::from(&s));
    }
    *r = File::open("/dev/null").ok().map(OwnedFd::from);
    shed
}

/// Back-off after the n-th consecutive fd-exhaustion error on accept:
/// 10 ms doubling to 100 ms (a listener at EMFILE must not spin).
pub fn accept_backoff(consecutive: u32) -> Duration {
    Duration::from_millis((10u64 << consecutive.min(4)).min(100))
}

/// Make the coming close(2) of this socket send a RST instead of a FIN
/// (SO_LINGER 0): the peer learns the stream was aborted, not completed.
pub fn abort_close(s: socket2::SockRef<'_>) {
    let _ = s.set_linger(Some(Duration::ZERO));
}

/// Is a failed connect our own fault (no fd, no local port, no memory), not
/// the backend's? Such a failure must never count against the backend.
/// (A full conntrack table drops the SYN silently: it shows as a timeout and
/// cannot be told apart here.)
pub fn is_local_connect_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE)
            | Some(libc::ENFILE)
            | Some(libc::EADDRNOTAVAIL)
            | Some(libc::EADDRINUSE)
            | Some(libc::ENOBUFS)
            | Some(libc::ENOMEM)
            | Some(libc::EAGAIN)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_keeps_the_reserve_and_counts_two_fds_per_stream() {
        assert_eq!(connection_budget(1024), (1024 - FD_RESERVE) / 2);
        assert_eq!(connection_budget(20_000), (20_000 - FD_RESERVE) / 2);
        assert_eq!(connection_budget(10), 1);
    }

    #[test]
    fn backoff_grows_to_100ms() {
        assert_eq!(accept_backoff(0), Duration::from_millis(10));
        assert_eq!(accept_backoff(1), Duration::from_millis(20));
        assert_eq!(accept_backoff(3), Duration::from_millis(80));
        assert_eq!(accept_backoff(4), Duration::from_millis(100));
        assert_eq!(accept_backoff(40), Duration::from_millis(100));
    }

    #[test]
    fn local_errors_are_told_from_backend_errors() {
        for e in [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
            libc::ENOMEM,
        ] {
            assert!(is_local_connect_error(&io::Error::from_raw_os_error(e)), "{e}");
        }
        for e in [
            libc::ECONNREFUSED,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::ETIMEDOUT,
        ] {
            assert!(!is_local_connect_error(&io::Error::from_raw_os_error(e)), "{e}");
        }
    }

    #[test]
    fn raising_is_idempotent() {
        let (s, h) = raise_nofile_limit().expect("rlimit");
        assert_eq!(s, h);
        assert_eq!(raise_nofile_limit().expect("rlimit"), (s, h));
    }
}
