//! `{"cmd":"watch"}`: the control connection becomes a stream of JSON lines, a
//! snapshot and then every event of the bus (`events`), until the client
//! leaves or vipd stops. Also the blocking client vipctl reads it with.
//!
//! Client limits: a watcher has sent its request, so the gate never evicts it
//! as "silent"; instead at most `events::MAX_WATCHERS` watch at once (half the
//! slots: one-shot commands always get through), and a watcher that does not
//! take a line within `WATCH_WRITE_TIMEOUT` is cut off (counted as aborted).

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::events::{self, Item};
use super::proto::{Request, Response, WatchEvent, WatchLine};
use super::{ClientCounters, Envelope};

/// How long a watcher may leave a line unread before it is cut off.
pub const WATCH_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve one watcher: `rd` is the rest of the client's input (watched only
/// for the client leaving), `wr` where the lines go.
pub(super) async fn serve<R: AsyncRead + Unpin>(
    mut rd: R,
    mut wr: OwnedWriteHalf,
    tx: mpsc::Sender<Envelope>,
    counters: &ClientCounters,
) -> io::Result<()> {
    let bus = events::bus();
    let Some(_slot) = bus.enter() else {
        // Counted with the clients refused for want of a slot.
        counters.refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let msg = format!("too many watchers ({} at most)", events::MAX_WATCHERS);
        return write(&mut wr, &response_bytes(&Response::error(msg)), counters).await;
    };
    let (marker, mut rx) = bus.subscribe();
    let (otx, orx) = oneshot::channel();
    let resp = if tx.send((Request::Watch { marker }, otx)).await.is_err() {
        Response::error("daemon is shutting down")
    } else {
        orx.await.unwrap_or_else(|_| Response::error("daemon is shutting down"))
    };
    let Some(status) = resp.status else {
        let resp = if resp.ok {
            Response::error("this daemon cannot watch")
        } else {
            resp
        };
        return write(&mut wr, &response_bytes(&resp), counters).await;
    };
    let snapshot = WatchLine::now(WatchEvent::Snapshot {
        status: Box::new(status),
    });
    write(&mut wr, &line_bytes(&snapshot), counters).await?;
    let mut after_marker = false;
    let mut sink = [0u8; 512];
    loop {
        tokio::select! {
            item = rx.recv() => {
                // What is already queued goes out in the same write (a burst
                // costs one syscall per batch, not per line).
                let mut out = Vec::new();
                let mut next = Some(item);
                let mut stop = false;
                let mut taken = 0;
                while let Some(item) = next.take() {
                    taken += 1;
                    match item {
                        Ok(Item::Marker(m)) => after_marker |= m == marker,
                        Ok(Item::Line(line)) if after_marker => {
                            push_line(&mut out, &line);
                            stop = matches!(line.event, WatchEvent::Stopping { .. });
                        }
                        Ok(Item::Line(_)) => {}
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            // Whether or not the marker was among the lost:
                            // what comes next is after the snapshot.
                            after_marker = true;
                            push_line(&mut out, &WatchLine::now(WatchEvent::Lagged { dropped: n }));
                        }
                        Err(broadcast::error::RecvError::Closed) => stop = true,
                    }
                    if stop || taken == BATCH {
                        break;
                    }
                    next = match rx.try_recv() {
                        Ok(item) => Some(Ok(item)),
                        Err(broadcast::error::TryRecvError::Lagged(n)) => {
                            Some(Err(broadcast::error::RecvError::Lagged(n)))
                        }
                        Err(_) => None,
                    };
                }
                if !out.is_empty() {
                    write(&mut wr, &out, counters).await?;
                }
                if stop {
                    return wr.shutdown().await;
                }
            }
            n = rd.read(&mut sink) => match n {
                // The client left (or sent more than a request may hold).
                Ok(0) | Err(_) => return Ok(()),
                Ok(_) => {}
            },
        }
    }
}

/// Most queued events written at once.
const BATCH: usize = 256;

fn push_line(out: &mut Vec<u8>, line: &WatchLine) {
    out.extend_from_slice(&line_bytes(line));
}

fn line_bytes(line: &WatchLine) -> Vec<u8> {
    let mut b = serde_json::to_vec(line).unwrap_or_default();
    b.push(b'\n');
    b
}

fn response_bytes(resp: &Response) -> Vec<u8> {
    let mut b = serde_json::to_vec(resp).unwrap_or_default();
    b.push(b'\n');
    b
}

async fn write(wr: &mut OwnedWriteHalf, bytes: &[u8], counters: &ClientCounters) -> io::Result<()> {
    match tokio::time::timeout(WATCH_WRITE_TIMEOUT, wr.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => {
            counters.abort();
            Err(io::Error::new(io::ErrorKind::TimedOut, "watcher did not read"))
        }
    }
}

/// What the watch client hands on: a line, or the end of a stream that had no
/// `stopping` line (a refusal or a bad line is `follow`'s error instead).
#[derive(Debug)]
pub enum Received {
    Line(Box<WatchLine>),
    /// The connection ended (vipd gone) without a `stopping` line.
    Closed,
}

/// Blocking watch client (vipctl): connects, asks, and hands each line to
/// `each` until it returns `false` or the stream ends. `timeout` bounds the
/// connect and the wait for the snapshot; later lines may be far apart.
pub fn follow(socket: &Path, timeout: Duration, mut each: impl FnMut(Received) -> bool) -> Result<(), String> {
    use std::io::{BufRead, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("cannot connect to {}: {e} (is vipd running?)", socket.display()))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut req = serde_json::to_vec(&Request::Watch { marker: 0 }).map_err(|e| e.to_string())?;
    req.push(b'\n');
    s.write_all(&req)
        .map_err(|e| format!("write to {}: {e}", socket.display()))?;
    let mut rd = std::io::BufReader::new(s);
    let mut first = true;
    loop {
        let mut text = String::new();
        let n = rd
            .read_line(&mut text)
            .map_err(|e| format!("read from {}: {e}", socket.display()))?;
        if n == 0 {
            if first {
                return Err("vipd closed the connection before the snapshot".into());
            }
            each(Received::Closed);
            return Ok(());
        }
        let line: WatchLine = match serde_json::from_str(&text) {
            Ok(l) => l,
            Err(e) => {
                return Err(match serde_json::from_str::<Response>(&text) {
                    Ok(r) if !r.ok => r.error.unwrap_or_else(|| "request failed".into()),
                    _ => format!("bad line from daemon: {e}"),
                })
            }
        };
        if first {
            first = false;
            rd.get_ref().set_read_timeout(None).map_err(|e| e.to_string())?;
        }
        if !each(Received::Line(Box::new(line))) {
            return Ok(());
        }
    }
}
