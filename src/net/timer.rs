//! A microsecond-precise one-shot timer for the event loop (timerfd on
//! CLOCK_MONOTONIC). tokio's timer wheel rounds deadlines up to whole
//! milliseconds; VRRP's master-down and skew deadlines are computed in
//! microseconds by the core, so the shell waits on a timerfd instead.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;

struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct PreciseTimer {
    fd: AsyncFd<Fd>,
    armed: bool,
}

impl PreciseTimer {
    pub fn new() -> io::Result<PreciseTimer> {
        let t = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        // SAFETY: the timerfd is owned by `Fd` and lives exactly as long as the AsyncFd.
        let fd = unsafe { AsyncFd::register(Fd(t)) }.map_err(|e| e.into_parts().1)?;
        Ok(PreciseTimer { fd, armed: false })
    }

    /// Arm to fire `after` from now (at once for zero), or disarm with `None`.
    pub fn set(&mut self, after: Option<Duration>) -> io::Result<()> {
        let res = match after {
            Some(d) => {
                // A zero it_value disarms a timerfd: fire after 1 ns instead.
                let d = d.max(Duration::from_nanos(1));
                self.armed = true;
                self.fd.get_ref().0.set(
                    Expiration::OneShot(TimeSpec::from_duration(d)),
                    TimerSetTimeFlags::empty(),
                )
            }
            None => {
                self.armed = false;
                self.fd.get_ref().0.unset()
            }
        };
        res.map_err(|e| io::Error::from_raw_os_error(e as i32))
    }

    /// Resolves when the armed deadline passes; pending forever when disarmed.
    pub async fn wait(&self) -> io::Result<()> {
        if !self.armed {
            return std::future::pending().await;
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 8];
            let fd = self.fd.get_ref().as_raw_fd();
            match guard.try_io(|_| {
                // SAFETY: read(2) of 8 bytes into a live buffer from our timerfd.
                let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, 8) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}
