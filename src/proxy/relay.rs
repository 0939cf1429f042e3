//! SHELL: the byte relay between a client and its backend connection.
//!
//! Both directions run in one task on shared `&TcpStream`s (no split, no
//! locks). A direction starts by copying through a small buffer; once a read
//! fills the buffer (a bulk transfer, not request/response traffic) it
//! switches to splice(2) through a pipe, so the payload never enters user
//! space (HAProxy's `splice-auto` idea). Short-lived request/response
//! connections thus never pay for a pipe. The first error in either direction
//! ends both; a clean end-of-stream half-closes the other side and the other
//! direction goes on until it ends too.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::balance::BackendStats;

/// Copy buffer per direction. A read that fills it switches to splice.
pub const COPY_BUF: usize = 16 * 1024;
/// Pipe capacity asked for once splicing (the kernel default is 64 KiB).
const PIPE_SIZE: i32 = 256 * 1024;

/// Which way bytes go, for the per-backend byte counters.
#[derive(Clone, Copy)]
pub enum Dir {
    /// Client to backend (`bytes_in`).
    Up,
    /// Backend to client (`bytes_out`).
    Down,
}

/// Milliseconds since `start` of the last byte relayed, for the idle timeout.
pub struct Activity {
    start: std::time::Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            start: std::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    /// Time since the last byte (never negative).
    pub fn idle_for(&self) -> std::time::Duration {
        let now = self.start.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// Relay both directions until both ended cleanly or one failed.
pub async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    stats: &BackendStats,
    activity: &Activity,
    allow_splice: bool,
) -> io::Result<()> {
    let ended = AtomicBool::new(false);
    let up = one_way(client, backend, stats, activity, Dir::Up, allow_splice, &ended);
    let down = one_way(backend, client, stats, activity, Dir::Down, allow_splice, &ended);
    tokio::try_join!(up, down).map(|_| ())
}

/// End of stream on one direction: pass the FIN on, unless the other
/// direction has already ended (both sockets are about to be closed, and
/// close sends the FIN: one syscall less per connection).
fn end_of_stream(dst: &TcpStream, ended: &AtomicBool) -> io::Result<()> {
    if ended.swap(true, Ordering::Relaxed) {
        return Ok(());
    }
    half_close(dst)
}

fn count(stats: &BackendStats, dir: Dir, n: usize) {
    match dir {
        Dir::Up => stats.add_bytes_in(n as u64),
        Dir::Down => stats.add_bytes_out(n as u64),
    }
}

fn half_close(dst: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write) {
        // The peer already went away entirely: nothing left to tell it.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
        r => r,
    }
}

async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    stats: &BackendStats,
    activity: &Activity,
    dir: Dir,
    allow_splice: bool,
    ended: &AtomicBool,
) -> io::Result<()> {
    let mut buf = vec![0u8; COPY_BUF];
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return end_of_stream(dst, ended);
        }
        write_all(dst, &buf[..n]).await?;
        count(stats, dir, n);
        activity.touch();
        if n == COPY_BUF && allow_splice {
            // Bulk transfer: go zero-copy for the rest of this direction.
            drop(buf);
            return match Pipe::new() {
                Ok(pipe) => splice_loop(src, dst, &pipe, stats, activity, dir, ended).await,
                Err(_) => copy_loop(src, dst, stats, activity, dir, ended).await,
            };
        }
    }
}

async fn write_all(dst: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        dst.writable().await?;
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The copy path with a larger buffer, if no pipe could be made.
async fn copy_loop(
    src: &TcpStream,
    dst: &TcpStream,
    stats: &BackendStats,
    activity: &Activity,
    dir: Dir,
    ended: &AtomicBool,
) -> io::Result<()> {
    let mut buf = vec![0u8; 4 * COPY_BUF];
    loop {
        src.readable().await?;
        let n = match src.try_read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return end_of_stream(dst, ended);
        }
        write_all(dst, &buf[..n]).await?;
        count(stats, dir, n);
        activity.touch();
    }
}

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let (r, w) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // Best effort: a bigger pipe means fewer splice calls per megabyte.
        let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        Ok(Pipe { r, w })
    }
}

const FLAGS: SpliceFFlags = SpliceFFlags::SPLICE_F_MOVE.union(SpliceFFlags::SPLICE_F_NONBLOCK);

async fn splice_loop(
    src: &TcpStream,
    dst: &TcpStream,
    pipe: &Pipe,
    stats: &BackendStats,
    activity: &Activity,
    dir: Dir,
    ended: &AtomicBool,
) -> io::Result<()> {
    loop {
        // Fill the (empty) pipe from the source socket. EAGAIN here can only
        // mean the socket has nothing: the pipe is empty.
        src.readable().await?;
        let n = match src.try_io(Interest::READABLE, || {
            splice(src.as_fd(), None, pipe.w.as_fd(), None, PIPE_SIZE as usize, FLAGS).map_err(io::Error::from)
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return end_of_stream(dst, ended);
        }
        // Drain the pipe into the destination socket. EAGAIN here means the
        // socket's send buffer is full: the pipe has data.
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(pipe.r.as_fd(), None, dst.as_fd(), None, left, FLAGS).map_err(io::Error::from)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
        count(stats, dir, n);
        activity.touch();
    }
}
