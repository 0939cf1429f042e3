//! SHELL: who may do what on the control socket. The socket is 0660 with the
//! group `vipd` when that group exists (else the daemon's group); reading the
//! status is open to every client that can connect, a change (reload, backend
//! state, ...) needs uid 0, the daemon's uid or membership of the socket's
//! group, judged from the peer's credentials (SO_PEERCRED, SO_PEERGROUPS).

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use super::proto::Request;

/// The group that owns the control socket when it exists (`root:vipd 0660`).
pub const CONTROL_GROUP: &str = "vipd";

/// The credentials of a connected client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (empty when the kernel could not tell).
    pub groups: Vec<u32>,
}

/// Who may change the daemon: its own uid, root, and the socket's group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub daemon_uid: u32,
    pub admin_gid: u32,
    /// `NAME (gid N)`, looked up once at bind: no NSS lookup per refusal on
    /// the event loop's thread.
    pub admin_group: String,
}

/// Requests that only read; everything else changes the daemon.
pub fn read_only(req: &Request) -> bool {
    matches!(req, Request::Status {} | Request::Watch { .. })
}

impl Policy {
    pub fn may_change(&self, p: &Peer) -> bool {
        p.uid == 0 || p.uid == self.daemon_uid || p.gid == self.admin_gid || p.groups.contains(&self.admin_gid)
    }

    /// `Err(message)` when `peer` may not send `req`.
    pub fn check(&self, peer: Option<&Peer>, req: &Request) -> Result<(), String> {
        if read_only(req) {
            return Ok(());
        }
        match peer {
            Some(p) if self.may_change(p) => Ok(()),
            Some(p) => Err(format!(
                "permission denied: `{}` changes the daemon and needs uid 0, uid {} (the daemon) or group {} \
                 (the control socket's group); you are uid {} gid {}",
                req.cmd(),
                self.daemon_uid,
                self.admin_group,
                p.uid,
                p.gid
            )),
            None => Err(format!(
                "permission denied: `{}` needs the peer's credentials, which the kernel did not give",
                req.cmd()
            )),
        }
    }
}

/// `NAME (gid N)`, or `gid N` when the group has no name.
pub fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => format!("{} (gid {gid})", g.name),
        _ => format!("gid {gid}"),
    }
}

/// Give the bound socket to the `vipd` group if it exists and is not already
/// ours; returns the socket's group (the admin group of the [`Policy`]).
pub fn set_socket_group(path: &Path) -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(Some(g)) = nix::unistd::Group::from_name(CONTROL_GROUP) {
        let current = std::fs::metadata(path)?.gid();
        if current != g.gid.as_raw() {
            if let Err(e) = nix::unistd::chown(path, None, Some(g.gid)) {
                tracing::warn!(
                    "control socket {}: cannot give it to group {CONTROL_GROUP}: {e}",
                    path.display()
                );
            }
        }
    }
    Ok(std::fs::metadata(path)?.gid())
}

/// The peer's uid, gid and supplementary groups.
pub fn peer_of(stream: &tokio::net::UnixStream) -> Option<Peer> {
    let cred = stream.peer_cred().ok()?;
    Some(Peer {
        uid: cred.uid(),
        gid: cred.gid(),
        groups: peer_groups(stream.as_raw_fd()),
    })
}

/// SO_PEERGROUPS (Linux 4.13): the supplementary groups the peer had at connect.
fn peer_groups(fd: std::os::fd::RawFd) -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 256];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `groups`, which holds that many.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return groups;
        }
        // ERANGE: `len` now says how much room it needs (bounded: NGROUPS_MAX is 65536).
        if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= 65536 {
            groups.resize(n, 0);
            continue;
        }
        return Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    fn policy() -> Policy {
        Policy {
            daemon_uid: 990,
            admin_gid: 990,
            admin_group: "vipd (gid 990)".into(),
        }
    }

    #[test]
    fn status_is_open_changes_need_root_daemon_or_group() {
        let reload = Request::Reload {};
        let p = policy();
        let stranger = peer(1000, 1000, &[100]);
        assert!(p.check(Some(&stranger), &Request::Status {}).is_ok());
        assert!(p.check(None, &Request::Status {}).is_ok());
        // watch is a view too: anyone who may read the status may follow it.
        assert!(p.check(Some(&stranger), &Request::Watch { marker: 0 }).is_ok());
        let err = p.check(Some(&stranger), &reload).unwrap_err();
        assert!(err.contains("permission denied: `reload`"), "{err}");
        assert!(err.contains("you are uid 1000 gid 1000"), "{err}");
        assert!(err.contains("or group vipd (gid 990)"), "{err}");
        assert!(p.check(None, &reload).is_err());
        for ok in [
            peer(0, 0, &[]),
            peer(990, 990, &[]),
            peer(1000, 990, &[]),
            peer(1000, 1000, &[27, 990]),
        ] {
            assert!(p.check(Some(&ok), &reload).is_ok(), "{ok:?}");
        }
    }
}
