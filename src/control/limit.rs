//! Admission for the control socket and the metrics listener: a cap on
//! concurrent clients, eviction of the oldest silent client, counters, and the
//! back-off after accept errors (EMFILE) so a full fd table is not a busy loop.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::proto::ClientStats;

/// Counters of one endpoint, shared with whoever builds the status.
#[derive(Debug, Default)]
pub struct ClientCounters {
    pub refused: AtomicU64,
    pub aborted: AtomicU64,
    pub accept_errors: AtomicU64,
    /// Requests refused for want of permission (control socket only).
    pub denied: AtomicU64,
}

impl ClientCounters {
    pub fn snapshot(&self) -> ClientStats {
        ClientStats {
            refused: self.refused.load(Ordering::Relaxed),
            aborted: self.aborted.load(Ordering::Relaxed),
            accept_errors: self.accept_errors.load(Ordering::Relaxed),
        }
    }
    pub(crate) fn abort(&self) {
        self.aborted.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long the accept loop waits for an evicted client to give back its slot.
const EVICT_WAIT: Duration = Duration::from_millis(200);

/// At most `max` clients at once. A new client that finds every slot taken
/// evicts the oldest client that has not finished sending its request (a
/// silent client costs an fd and nothing else; one that is talking is served);
/// if all of them are talking, the new client is refused.
pub(crate) struct Gate {
    slots: Arc<Semaphore>,
    /// Clients still reading their request, oldest first, with their eviction trigger.
    silent: Mutex<VecDeque<(u64, oneshot::Sender<()>)>>,
    next_id: AtomicU64,
    pub counters: Arc<ClientCounters>,
}

/// One admitted client's slot; dropping it frees the slot.
pub(crate) struct Ticket {
    _permit: OwnedSemaphorePermit,
    id: u64,
    gate: Arc<Gate>,
    evicted: Option<oneshot::Receiver<()>>,
}

impl Gate {
    pub fn new(max: usize, counters: Arc<ClientCounters>) -> Arc<Gate> {
        Arc::new(Gate {
            slots: Arc::new(Semaphore::new(max)),
            silent: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            counters,
        })
    }

    /// A slot for a new client, or `None` (counted as refused).
    pub async fn admit(self: &Arc<Self>) -> Option<Ticket> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) if self.evict_oldest() => tokio::time::timeout(EVICT_WAIT, self.slots.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        let Some(permit) = permit else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.queue().push_back((id, tx));
        Some(Ticket {
            _permit: permit,
            id,
            gate: self.clone(),
            evicted: Some(rx),
        })
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, oneshot::Sender<()>)>> {
        // A poisoned queue only means a panic elsewhere; its content is still valid.
        self.silent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn evict_oldest(&self) -> bool {
        match self.queue().pop_front() {
            Some((_, tx)) => {
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }

    fn forget(&self, id: u64) {
        self.queue().retain(|(i, _)| *i != id);
    }
}

impl Ticket {
    /// Run `read` (receiving the request) while this client may be evicted
    /// for a newer one; `None` if it was (counted as aborted). After this the
    /// client is talking and keeps its slot.
    pub async fn while_silent<F: Future>(&mut self, read: F) -> Option<F::Output> {
        let evicted = self.evicted.take()?;
        let out = tokio::select! {
            out = read => Some(out),
            _ = evicted => {
                self.gate.counters.abort();
                None
            }
        };
        self.gate.forget(self.id);
        out
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.forget(self.id);
    }
}

/// Turn away a client at once: write `answer` if the socket takes it now,
/// then keep the socket open until the client closes or 250 ms pass, reading
/// and discarding what it sends, so that a request written after our answer
/// neither fails (EPIPE) nor resets the connection and loses the answer. The
/// accept loop never waits: the lingering runs in its own short task.
pub(crate) fn refuse<S>(s: S, answer: &[u8])
where
    S: TryIo + tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let _ = s.try_write(answer);
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut s = s;
        let mut sink = [0u8; 4096];
        let drain = async {
            for _ in 0..64 {
                match s.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(250), drain).await;
    });
}

/// The non-blocking calls [`refuse`] needs, for TCP and unix streams.
pub(crate) trait TryIo {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize>;
}

impl TryIo for tokio::net::TcpStream {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        tokio::net::TcpStream::try_write(self, buf)
    }
}

impl TryIo for tokio::net::UnixStream {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        tokio::net::UnixStream::try_write(self, buf)
    }
}

/// Sleep after accept errors: 10 ms doubling to 1 s, reset by a success.
pub(crate) struct AcceptBackoff {
    delay: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> AcceptBackoff {
        AcceptBackoff { delay: Self::FIRST }
    }
    pub fn success(&mut self) {
        self.delay = Self::FIRST;
    }
    /// Count the error, log it at the first of a series, and sleep.
    pub async fn failed(&mut self, what: &str, e: &std::io::Error, counters: &ClientCounters) {
        counters.accept_errors.fetch_add(1, Ordering::Relaxed);
        if self.delay == Self::FIRST {
            tracing::warn!("{what}: accept: {e}; backing off");
        }
        tokio::time::sleep(self.next_delay()).await;
    }
    /// The sleep due now; the next one doubles, up to `MAX`.
    fn next_delay(&mut self) -> Duration {
        let d = self.delay;
        self.delay = (self.delay * 2).min(Self::MAX);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_gate_evicts_the_oldest_silent_client_then_refuses() {
        let gate = Gate::new(2, Arc::default());
        let mut a = gate.admit().await.unwrap();
        let silent_a = tokio::spawn(async move { a.while_silent(std::future::pending::<()>()).await });
        let mut b = gate.admit().await.unwrap();
        // b has spoken: it may no longer be evicted.
        assert_eq!(b.while_silent(async { 1 }).await, Some(1));
        // c evicts a, the oldest silent one, and takes its slot.
        let mut c = gate.admit().await.unwrap();
        assert_eq!(silent_a.await.unwrap(), None);
        assert_eq!(c.while_silent(async { 2 }).await, Some(2));
        // Both slots talking: refused.
        assert!(gate.admit().await.is_none());
        let s = gate.counters.snapshot();
        assert_eq!((s.refused, s.aborted), (1, 1));
        drop(b);
        assert!(gate.admit().await.is_some());
    }

    #[test]
    fn backoff_doubles_up_to_a_second_and_resets() {
        let mut b = AcceptBackoff::new();
        let ms: Vec<u128> = (0..10).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        b.success();
        assert_eq!(b.next_delay(), AcceptBackoff::FIRST);
    }

    #[tokio::test]
    async fn accept_errors_are_counted() {
        let c = ClientCounters::default();
        let mut b = AcceptBackoff::new();
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        b.failed("test", &e, &c).await;
        b.failed("test", &e, &c).await;
        assert_eq!(c.snapshot().accept_errors, 2);
    }
}
