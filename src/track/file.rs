//! SHELL: `vrrp_track_file`: read an integer from a file whenever it changes
//! (inotify on its directory, so that a file replaced by rename or created
//! later is seen too; no polling).

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tracing::{info, warn};

use super::{Report, Sink};
use crate::config::TrackFile;

/// keepalived `init_file`: write the value when the file is missing (or
/// always with `overwrite`). Errors are logged: the file then reads as 0.
pub fn init_file(tf: &TrackFile) {
    let Some(v) = tf.init_file else { return };
    if tf.overwrite || !tf.path.exists() {
        match std::fs::write(&tf.path, format!("{v}\n")) {
            Ok(()) => info!("track file {}: wrote {v} to {}", tf.name, tf.path.display()),
            Err(e) => warn!("track file {}: init_file {}: {e}", tf.name, tf.path.display()),
        }
    }
}

/// The value in a file's text: the first word as an integer; an empty file
/// is 0. `Err` says why the text is not a number.
pub fn parse_value(text: &str) -> Result<i64, String> {
    match text.split_whitespace().next() {
        None => Ok(0),
        Some(w) => w.parse::<i64>().map_err(|_| format!("{w:?} is not an integer")),
    }
}

/// Read the file: (value, detail). A missing, unreadable or malformed file
/// reads as 0 (keepalived does the same), and the detail says why.
pub fn read(tf: &TrackFile) -> (i64, String) {
    match std::fs::read_to_string(&tf.path) {
        Ok(text) => match parse_value(&text) {
            Ok(v) => (v, format!("{} holds {v}", tf.path.display())),
            Err(e) => (0, format!("{}: {e}; reading as 0", tf.path.display())),
        },
        Err(e) => (0, format!("{}: {e}; reading as 0", tf.path.display())),
    }
}

/// The inotify descriptor, for tokio's readiness.
struct Ino(Inotify);

impl AsRawFd for Ino {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Report the value now and after every change of the file.
pub async fn watch(tf: TrackFile, sink: Sink) {
    let report = |sink: &Sink| {
        let (value, detail) = read(&tf);
        sink(Report::File {
            name: tf.name.clone(),
            value,
            detail,
        });
    };
    let (Some(dir), Some(fname)) = (tf.path.parent(), tf.path.file_name()) else {
        return;
    };
    let ino = match Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC) {
        Ok(i) => i,
        Err(e) => {
            warn!("track file {}: inotify: {e}; reading once only", tf.name);
            report(&sink);
            return;
        }
    };
    let mask = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MODIFY
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_MOVED_FROM
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_DELETE;
    if let Err(e) = ino.add_watch(dir, mask) {
        warn!(
            "track file {}: cannot watch {}: {e}; reading once only",
            tf.name,
            dir.display()
        );
        report(&sink);
        return;
    }
    report(&sink);
    // SAFETY: the inotify descriptor is owned by `Ino` and lives exactly as long as the AsyncFd.
    let fd = match unsafe { AsyncFd::register(Ino(ino)) }.map_err(|e| e.into_parts().1) {
        Ok(fd) => fd,
        Err(e) => {
            warn!("track file {}: {e}", tf.name);
            return;
        }
    };
    loop {
        let mut guard = match fd.readable().await {
            Ok(g) => g,
            Err(e) => {
                warn!("track file {}: {e}", tf.name);
                return;
            }
        };
        let events = match guard.get_inner().0.read_events() {
            Ok(ev) => ev,
            Err(nix::errno::Errno::EAGAIN) => {
                guard.clear_ready();
                continue;
            }
            Err(e) => {
                warn!("track file {}: reading inotify events: {e}", tf.name);
                return;
            }
        };
        if events.iter().any(|e| e.name.as_deref() == Some(OsStr::new(fname))) {
            report(&sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_like_keepalived() {
        assert_eq!(parse_value("5\n"), Ok(5));
        assert_eq!(parse_value("  -12  extra"), Ok(-12));
        assert_eq!(parse_value(""), Ok(0));
        assert!(parse_value("abc").is_err());
    }
}
