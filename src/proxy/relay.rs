//! SHELL: the byte relay between a client and its backend connection.
//!
//! Both directions run in one task on shared `&TcpStream`s (no split, no
//! locks). A direction starts by copying through the worker thread's one
//! copy buffer, borrowed only between readiness and the write that follows
//! (an idle stream holds no buffer at all; only bytes the destination
//! cannot take at once are kept, in a buffer of their exact size); once a read
//! fills the buffer (a bulk transfer, not request/response traffic) it
//! switches to splice(2) through a pipe, so the payload never enters user
//! space (HAProxy's `splice-auto` idea). Short-lived request/response
//! connections thus never pay for a pipe. The first error in either direction
//! ends both; a clean end-of-stream half-closes the other side and the other
//! direction goes on until it ends too.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::balance::BackendStats;

/// Copy buffer per direction. A read that fills it switches to splice.
const COPY_BUF: usize = 16 * 1024;
/// Pipe capacity asked for once splicing (the kernel default is 64 KiB).
const PIPE_SIZE: i32 = 256 * 1024;
/// The fallback copy's buffer (no pipe could be had).
const BULK_BUF: usize = 4 * COPY_BUF;

thread_local! {
    /// The data-plane worker's copy buffer: every relay on this thread reads
    /// into it and writes out of it without an await in between.
    static BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; BULK_BUF].into_boxed_slice());
}

/// Which way bytes go, for the per-backend byte counters.
#[derive(Clone, Copy)]
enum Dir {
    /// Client to backend (`bytes_in`).
    Up,
    /// Backend to client (`bytes_out`).
    Down,
}

/// Milliseconds since `start` of the last byte relayed, for the idle timeout.
pub(crate) struct Activity {
    start: std::time::Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
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
    pub(crate) fn idle_for(&self) -> std::time::Duration {
        let now = self.start.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// What one direction reports back: its counters, the shared idle clock and
/// the flag telling whether the other direction has already ended.
struct Way<'a> {
    stats: &'a BackendStats,
    activity: &'a Activity,
    dir: Dir,
    ended: &'a AtomicBool,
}

impl Way<'_> {
    /// `n` bytes went through.
    fn moved(&self, n: usize) {
        match self.dir {
            Dir::Up => self.stats.add_bytes_in(n as u64),
            Dir::Down => self.stats.add_bytes_out(n as u64),
        }
        self.activity.touch();
    }

    /// End of stream: pass the FIN on, unless the other direction has already
    /// ended (both sockets are about to be closed, and close sends the FIN:
    /// one syscall less per connection).
    fn end_of_stream(&self, dst: &TcpStream) -> io::Result<()> {
        if self.ended.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        match socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write) {
            // The peer already went away entirely: nothing left to tell it.
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            r => r,
        }
    }
}

/// Relay both directions until both ended cleanly or one failed.
pub(crate) async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    stats: &BackendStats,
    activity: &Activity,
) -> io::Result<()> {
    let ended = AtomicBool::new(false);
    let way = |dir| Way {
        stats,
        activity,
        dir,
        ended: &ended,
    };
    let up = one_way(client, backend, way(Dir::Up));
    let down = one_way(backend, client, way(Dir::Down));
    tokio::try_join!(up, down).map(|_| ())
}

async fn one_way(src: &TcpStream, dst: &TcpStream, way: Way<'_>) -> io::Result<()> {
    if copy(src, dst, &way, COPY_BUF, true).await? == Copied::Ended {
        return Ok(());
    }
    // Bulk transfer: go zero-copy for the rest of this direction (or copy
    // with a larger buffer if no pipe can be had).
    match Pipe::new() {
        Ok(pipe) => splice_loop(src, dst, &pipe, &way).await,
        Err(_) => copy(src, dst, &way, BULK_BUF, false).await.map(|_| ()),
    }
}

#[derive(PartialEq)]
enum Copied {
    /// End of stream, passed on.
    Ended,
    /// A read filled the buffer (only when asked to stop there).
    Bulk,
}

/// What one read through the worker's buffer did.
enum Step {
    /// Spurious readiness: nothing to read.
    Again,
    Eof,
    /// `n` bytes read; `rest`: the tail the destination did not take at once.
    Read {
        n: usize,
        rest: Option<Vec<u8>>,
    },
}

/// Copy through the worker's buffer until end of stream, or until a read
/// fills `size` bytes if `stop_when_full`.
async fn copy(
    src: &TcpStream,
    dst: &TcpStream,
    way: &Way<'_>,
    size: usize,
    stop_when_full: bool,
) -> io::Result<Copied> {
    loop {
        src.readable().await?;
        // No await while the buffer is borrowed: other relays on this
        // thread use it between our awaits.
        let step = BUF.with_borrow_mut(|buf| -> io::Result<Step> {
            let buf = &mut buf[..size.min(BULK_BUF)];
            let n = match src.try_read(buf) {
                Ok(0) => return Ok(Step::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Step::Again),
                Err(e) => return Err(e),
            };
            let mut done = 0;
            while done < n {
                match dst.try_write(&buf[done..n]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(m) => done += m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(Step::Read {
                n,
                rest: (done < n).then(|| buf[done..n].to_vec()),
            })
        })?;
        let n = match step {
            Step::Again => continue,
            Step::Eof => {
                way.end_of_stream(dst)?;
                return Ok(Copied::Ended);
            }
            Step::Read { n, rest } => {
                if let Some(rest) = rest {
                    write_all(dst, &rest).await?;
                }
                n
            }
        };
        way.moved(n);
        if stop_when_full && n == size {
            return Ok(Copied::Bulk);
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

async fn splice_loop(src: &TcpStream, dst: &TcpStream, pipe: &Pipe, way: &Way<'_>) -> io::Result<()> {
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
            return way.end_of_stream(dst);
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
        way.moved(n);
    }
}
