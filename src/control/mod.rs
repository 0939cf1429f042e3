//! SHELL: the control socket. Line-delimited JSON over a unix socket: one
//! request line (at most `MAX_REQUEST` bytes), one response line. The socket
//! file is created with mode 0660; at most `MAX_CLIENTS` connections are served
//! at once and each has `CLIENT_TIMEOUT` to send its request.

pub mod metrics;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::vrrp::router::RouterStatus;

pub const MAX_REQUEST: usize = 64 * 1024;
pub const MAX_CLIENTS: usize = 16;
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// A request to the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Everything `vipctl status` shows.
    Status {},
    /// Change a backend's admin state: `state` is ready, drain or maint.
    Backend {
        virtual_server: String,
        address: String,
        state: String,
    },
    /// Reload the configuration file (as SIGHUP does), answering with the outcome.
    Reload {},
}

/// One VRRP instance as the daemon reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub interface: String,
    /// Source address used for adverts (primary IPv4 or link-local IPv6).
    pub source: Option<std::net::IpAddr>,
    pub link_up: bool,
    /// VIPs deleted behind our back while master and re-added (EX2).
    pub vips_readded: u64,
    /// Netlink refused to add a VIP (retried with backoff).
    #[serde(default)]
    pub vip_add_failures: u64,
    /// A VIP removal failed, or the VIP was still there after it.
    #[serde(default)]
    pub vip_remove_failures: u64,
    /// The last VIP install or removal error, if any.
    #[serde(default)]
    pub vip_last_error: Option<String>,
    #[serde(flatten)]
    pub router: RouterStatus,
}

/// The daemon's whole status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub router_id: String,
    pub config_file: PathBuf,
    pub uptime_s: u64,
    pub reloads: u64,
    pub reload_failures: u64,
    /// Receive errors not attributable to any instance (per reason).
    pub interface_discards: std::collections::BTreeMap<String, u64>,
    pub control_errors: u64,
    pub instances: Vec<InstanceStatus>,
    /// Virtual servers of the balancer (see `proxy::VirtualServerStatus`).
    pub virtual_servers: Vec<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Response {
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            status: None,
            message: None,
        }
    }
    pub fn message(msg: impl Into<String>) -> Response {
        Response {
            ok: true,
            error: None,
            status: None,
            message: Some(msg.into()),
        }
    }
}

/// A request on its way to the daemon's main loop, with the channel for the answer.
pub type Envelope = (Request, oneshot::Sender<Response>);

/// Parse one request line; errors name what was wrong.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_REQUEST {
        return Err(format!("request larger than {MAX_REQUEST} bytes"));
    }
    serde_json::from_slice::<Request>(line).map_err(|e| format!("bad request: {e}"))
}

/// Bind the control socket (removing a stale socket file) with mode 0660.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serve the control socket forever, forwarding requests to `tx`.
/// `errors` counts bad requests (shown in status).
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<Envelope>, errors: Arc<AtomicU64>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            errors.fetch_add(1, Ordering::Relaxed);
            let mut s = stream;
            let _ = write_response(&mut s, &Response::error("too many control clients")).await;
            continue;
        };
        let tx = tx.clone();
        let errors = errors.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = handle_client(stream, tx, &errors).await {
                tracing::debug!("control client: {e}");
            }
        });
    }
}

async fn handle_client(stream: UnixStream, tx: mpsc::Sender<Envelope>, errors: &AtomicU64) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd.take(MAX_REQUEST as u64 + 1));
    let mut line = Vec::new();
    let n = match tokio::time::timeout(CLIENT_TIMEOUT, rd.read_until(b'\n', &mut line)).await {
        Ok(r) => r?,
        Err(_) => {
            errors.fetch_add(1, Ordering::Relaxed);
            return write_half(&mut wr, &Response::error("timed out waiting for the request")).await;
        }
    };
    if n == 0 {
        return Ok(());
    }
    if line.len() > MAX_REQUEST {
        errors.fetch_add(1, Ordering::Relaxed);
        return write_half(
            &mut wr,
            &Response::error(format!("request larger than {MAX_REQUEST} bytes")),
        )
        .await;
    }
    let resp = match parse_request(line.trim_ascii()) {
        Err(e) => {
            errors.fetch_add(1, Ordering::Relaxed);
            Response::error(e)
        }
        Ok(req) => {
            let (otx, orx) = oneshot::channel();
            if tx.send((req, otx)).await.is_err() {
                Response::error("daemon is shutting down")
            } else {
                orx.await.unwrap_or_else(|_| Response::error("daemon is shutting down"))
            }
        }
    };
    write_half(&mut wr, &resp).await
}

async fn write_half(wr: &mut tokio::net::unix::OwnedWriteHalf, resp: &Response) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(resp).map_err(io::Error::other)?;
    bytes.push(b'\n');
    wr.write_all(&bytes).await
}

async fn write_response(s: &mut UnixStream, resp: &Response) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(resp).map_err(io::Error::other)?;
    bytes.push(b'\n');
    s.write_all(&bytes).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_and_rejects_bad_ones() {
        assert_eq!(parse_request(br#"{"cmd":"status"}"#), Ok(Request::Status {}));
        assert!(parse_request(br#"{"cmd":"explode"}"#)
            .unwrap_err()
            .contains("unknown variant"));
        assert!(parse_request(br#"{"cmd":"status","x":1}"#).is_err());
        assert!(parse_request(b"not json").unwrap_err().starts_with("bad request"));
        let big = vec![b' '; MAX_REQUEST + 1];
        assert!(parse_request(&big).unwrap_err().contains("larger"));
        assert_eq!(
            parse_request(
                br#"{"cmd":"backend","virtual_server":"ingest","address":"198.51.100.11:6000","state":"drain"}"#
            ),
            Ok(Request::Backend {
                virtual_server: "ingest".into(),
                address: "198.51.100.11:6000".into(),
                state: "drain".into()
            })
        );
    }
}
