//! SHELL: the control socket. Line-delimited JSON over a unix socket (types in
//! `proto`): one request line, one response line (`watch`: a stream, see `watch`).
//! Mode 0660, one vipd per socket (flock on `<socket>.lock`), at most `MAX_CLIENTS`
//! clients, `CLIENT_TIMEOUT` each way; group `vipd` when it exists, changes only
//! from root, the daemon or that group (`access`).

pub mod access;
pub mod events;
pub mod limit;
pub mod metrics;
pub mod observe;
pub mod proto;
pub mod render;
pub mod watch;

use std::fs::File;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

pub use limit::ClientCounters;
pub use proto::{
    parse_request, ClientStats, InstanceStatus, Request, RequestError, Response, Status, VirtualServerStatus,
    MAX_REQUEST,
};

pub const MAX_CLIENTS: usize = 16;
/// Time a client has to send its request, and again to take the answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request on its way to the daemon's main loop, with the channel for the answer.
pub type Envelope = (Request, oneshot::Sender<Response>);

/// The bound control socket and the single-instance lock that goes with it.
/// Dropping it (or the task of [`serve`], which owns it) releases the lock.
pub struct ControlListener {
    listener: UnixListener,
    counters: Arc<ClientCounters>,
    policy: access::Policy,
    _lock: Flock<File>,
}

impl ControlListener {
    /// Refused, aborted and failed-accept counts, for the status.
    pub fn counters(&self) -> Arc<ClientCounters> {
        self.counters.clone()
    }
}

/// The lock file beside a control socket: `<socket>.lock`.
pub fn lock_path(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Bind the control socket with mode 0660, as the only vipd using it.
///
/// First an exclusive `flock` on `<socket>.lock` (kept for the listener's
/// life; the file itself is never removed, removing it would let a second
/// vipd lock a new inode): of two vipd started at once, one wins. Then, in
/// case the owner predates the lock, a connect to the existing socket: if
/// something answers, refuse; if not, the file is stale and is replaced.
pub fn bind(path: &Path) -> io::Result<ControlListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let lock = take_lock(path)?;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another vipd is running: {} answers connections (stop it, or set another control_socket)",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    let admin_gid = access::set_socket_group(path)?;
    let policy = access::Policy {
        daemon_uid: nix::unistd::geteuid().as_raw(),
        admin_gid,
        admin_group: access::group_name(admin_gid),
    };
    Ok(ControlListener {
        listener,
        counters: Arc::default(),
        policy,
        _lock: lock,
    })
}

fn take_lock(socket: &Path) -> io::Result<Flock<File>> {
    let lp = lock_path(socket);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&lp)
        .map_err(|e| io::Error::new(e.kind(), format!("lock file {}: {e}", lp.display())))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "another vipd is running: it holds {} (control socket {})",
                    lp.display(),
                    socket.display()
                ),
            )
        } else {
            io::Error::new(io::Error::from(errno).kind(), format!("lock {}: {errno}", lp.display()))
        }
    })
}

/// Serve the control socket forever, forwarding requests to `tx`.
/// `errors` counts bad requests (shown in status); the listener's
/// [`ClientCounters`] count clients turned away or cut off.
pub async fn serve(listener: ControlListener, tx: mpsc::Sender<Envelope>, errors: Arc<AtomicU64>) {
    let gate = limit::Gate::new(MAX_CLIENTS, listener.counters.clone());
    let mut backoff = limit::AcceptBackoff::new();
    loop {
        let stream = match listener.listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                backoff.failed("control socket", &e, &listener.counters).await;
                continue;
            }
        };
        backoff.success();
        let Some(ticket) = gate.admit().await else {
            limit::refuse(stream, &response_line(&Response::error("too many control clients")));
            continue;
        };
        let tx = tx.clone();
        let errors = errors.clone();
        let counters = listener.counters.clone();
        let policy = listener.policy.clone();
        tokio::spawn(async move {
            let peer = access::peer_of(&stream);
            let who = Who { peer, policy };
            if let Err(e) = handle_client(stream, ticket, tx, &errors, &counters, &who).await {
                tracing::debug!("control client: {e}");
            }
        });
    }
}

/// A client's credentials and the rule they are judged by.
struct Who {
    peer: Option<access::Peer>,
    policy: access::Policy,
}

async fn handle_client(
    stream: UnixStream,
    mut ticket: limit::Ticket,
    tx: mpsc::Sender<Envelope>,
    errors: &AtomicU64,
    counters: &ClientCounters,
    who: &Who,
) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd.take(MAX_REQUEST as u64 + 1));
    let mut line = Vec::new();
    let read = tokio::time::timeout(CLIENT_TIMEOUT, rd.read_until(b'\n', &mut line));
    let n = match ticket.while_silent(read).await {
        None => return Ok(()),
        Some(Ok(r)) => r?,
        Some(Err(_)) => {
            counters.abort();
            return write_line(&mut wr, &Response::error("timed out waiting for the request"), counters).await;
        }
    };
    if n == 0 {
        return Ok(());
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    let resp = match parse_request(&line) {
        Err(e) => {
            errors.fetch_add(1, Ordering::Relaxed);
            Response::error(e.to_string())
        }
        Ok(req) => match who.policy.check(who.peer.as_ref(), &req) {
            Err(msg) => {
                // Counted, and logged at debug only: any local user can connect.
                counters.denied.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("control socket: {msg}");
                Response::error(msg)
            }
            // A view like status, but a stream: the connection is the watcher's now.
            Ok(()) if matches!(req, Request::Watch { .. }) => return watch::serve(rd, wr, tx, counters).await,
            Ok(()) => {
                let (otx, orx) = oneshot::channel();
                if tx.send((req, otx)).await.is_err() {
                    Response::error("daemon is shutting down")
                } else {
                    orx.await.unwrap_or_else(|_| Response::error("daemon is shutting down"))
                }
            }
        },
    };
    write_line(&mut wr, &resp, counters).await
}

fn response_line(resp: &Response) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(resp).unwrap_or_else(|e| {
        // Serializing our own types cannot fail; answer something valid if it does.
        serde_json::to_vec(&Response::error(format!("cannot encode the response: {e}"))).unwrap_or_default()
    });
    bytes.push(b'\n');
    bytes
}

/// Write one response line within [`CLIENT_TIMEOUT`] (a client that does not read is cut off).
async fn write_line(
    wr: &mut tokio::net::unix::OwnedWriteHalf,
    resp: &Response,
    counters: &ClientCounters,
) -> io::Result<()> {
    match tokio::time::timeout(CLIENT_TIMEOUT, wr.write_all(&response_line(resp))).await {
        Ok(r) => r,
        Err(_) => {
            counters.abort();
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client did not read its answer",
            ))
        }
    }
}

/// Blocking client used by vipctl: send one request, read one response.
pub fn call(socket: &Path, req: &Request, timeout: Duration) -> Result<Response, String> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e} (is vipd running?)", socket.display()))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("write to {}: {e}", socket.display()))?;
    let mut rd = std::io::BufReader::new(s);
    let mut out = String::new();
    rd.read_line(&mut out)
        .map_err(|e| format!("read from {}: {e}", socket.display()))?;
    serde_json::from_str(&out).map_err(|e| format!("bad response from daemon: {e}"))
}
