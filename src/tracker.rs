//! Waiting for the closes that outlive their connections: [`CloseTracker`].
//!
//! A graceful close finished in a background task (after hyper dropped the connection,
//! after `poll_shutdown` returned) is not one of the connection futures that
//! `axum::serve(..).with_graceful_shutdown(..)` waits for. When the runtime shuts
//! down, such tasks are dropped, and a socket dropped with unread input sends RST: the
//! tail of a response is lost. A tracker counts those closes so that a server can wait
//! for them, and caps how many may linger at once.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;

use tokio::sync::Notify;

/// Counts pending graceful closes and lets a server wait until they have ended.
///
/// Every [`GracefulListener`](crate::GracefulListener) has one
/// ([`tracker`](crate::GracefulListener::tracker)) and tracks the close of every
/// connection it accepted, whether it runs in `poll_shutdown` or in the background
/// after a drop; so do [`GracefulCloseLayer`](crate::GracefulCloseLayer) and any
/// [`GracefulIo`](crate::GracefulIo) made [`tracked`](crate::GracefulIo::tracked).
/// A close counts from the moment it starts until the socket is closed.
///
/// ```no_run
/// use std::time::Duration;
/// use tokio_graceful_close::{CloseOptions, GracefulListener};
///
/// # async fn dox(app: axum::Router, signal: std::future::Ready<()>) -> std::io::Result<()> {
/// let tcp = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// let listener = GracefulListener::new(tcp, CloseOptions::new(Duration::from_secs(10)));
/// let closes = listener.tracker();
/// axum::serve(listener, app).with_graceful_shutdown(signal).await?;
/// closes.wait().await; // every response delivered or its close timed out
/// # Ok(())
/// # }
/// ```
///
/// Without the last line, returning from `main` drops the runtime and with it every
/// close still running: their sockets are closed plainly, and those with unread input
/// send RST.
///
/// # Lingering cap
///
/// Closes that wait on their peer hold a descriptor each: a client that uploads and
/// never reads or closes holds one until the deadline. A close *lingers* once the peer
/// acknowledged everything we sent and our FIN, while it still drains the peer's input
/// towards its EOF. A tracker lets at most [`max_lingering`](Self::max_lingering) closes
/// linger at once (default [`DEFAULT_MAX_LINGERING`](Self::DEFAULT_MAX_LINGERING));
/// past it, the one lingering longest is ended early, as nginx reclaims lingering
/// connections when it runs short. It is closed at once (the peer holds all we sent, so
/// nothing of ours is lost) and fails with
/// [`CloseErrorKind::Evicted`](crate::CloseErrorKind::Evicted).
///
/// A close still delivering (our data or FIN not yet acknowledged) never lingers and is
/// never ended by the cap: a response in flight is bounded by its own deadline only.
#[derive(Clone, Default)]
pub struct CloseTracker {
    inner: Arc<Inner>,
}

struct Inner {
    /// Closes started and not ended.
    pending: AtomicUsize,
    /// Woken when `pending` reaches 0.
    idle: Notify,
    max_lingering: AtomicUsize,
    /// The lingering closes.
    queue: Mutex<Queue>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            max_lingering: AtomicUsize::new(CloseTracker::DEFAULT_MAX_LINGERING),
            queue: Mutex::new(Queue::default()),
        }
    }
}

/// The lingering closes, the longest lingering first. Ended ones are skipped lazily.
#[derive(Default)]
struct Queue {
    slots: VecDeque<Arc<Slot>>,
    /// Slots in `slots` neither ended nor evicted.
    live: usize,
}

/// One running close, as the tracker sees it.
#[derive(Default)]
pub(crate) struct Slot {
    evicted: AtomicBool,
    ended: AtomicBool,
    /// In the queue of lingering closes.
    lingering: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl CloseTracker {
    /// Default cap on closes lingering at once per tracker.
    pub const DEFAULT_MAX_LINGERING: usize = 1024;

    /// A tracker with nothing pending and the default lingering cap.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the cap on closes lingering at once (at least 1); the one lingering longest
    /// is ended early past it. Applies to every holder of this tracker, from the next
    /// close that starts lingering.
    pub fn set_max_lingering(&self, max: usize) {
        self.inner
            .max_lingering
            .store(max.max(1), Ordering::Relaxed);
    }

    /// The cap on closes lingering at once.
    pub fn max_lingering(&self) -> usize {
        self.inner.max_lingering.load(Ordering::Relaxed)
    }

    /// Closes started and not yet ended.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// Resolves once no tracked close is pending (at once if none is).
    ///
    /// Closes that start after it resolved are not waited for: call it once the
    /// connections are gone, e.g. after `axum::serve(..).with_graceful_shutdown(..)`
    /// returned.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            loop {
                let notified = inner.idle.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if inner.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        }
    }

    /// Registers a close that starts now; it ends when the token is dropped.
    pub(crate) fn start(&self) -> Token {
        self.inner.pending.fetch_add(1, Ordering::AcqRel);
        Token {
            tracker: self.clone(),
            slot: Arc::new(Slot::default()),
        }
    }
}

impl fmt::Debug for CloseTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseTracker")
            .field("pending", &self.pending())
            .field("max_lingering", &self.max_lingering())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running close registered with a [`CloseTracker`]; dropping it ends the close.
pub(crate) struct Token {
    tracker: CloseTracker,
    slot: Arc<Slot>,
}

impl Token {
    /// The close lingers from now on (everything we sent is acknowledged, the drain goes
    /// on): it joins the queue of lingering closes, which the cap may end early. Ends
    /// the longest lingering past the cap.
    pub(crate) fn lingering(&self) {
        let inner = &self.tracker.inner;
        let max = self.tracker.max_lingering();
        let mut evict = Vec::new();
        {
            let mut q = lock(&inner.queue);
            if self.slot.lingering.swap(true, Ordering::AcqRel) {
                return;
            }
            q.slots.push_back(self.slot.clone());
            q.live += 1;
            while q.live > max {
                let Some(old) = q.slots.pop_front() else {
                    break;
                };
                if old.ended.load(Ordering::Acquire) || old.evicted.load(Ordering::Acquire) {
                    continue;
                }
                old.evicted.store(true, Ordering::Release);
                q.live -= 1;
                evict.push(old);
            }
            // Ended slots stay until they reach the front; drop them before they pile up.
            if q.slots.len() > 2 * q.live + 64 {
                q.slots.retain(|s| {
                    !s.ended.load(Ordering::Acquire) && !s.evicted.load(Ordering::Acquire)
                });
            }
        }
        for old in evict {
            tracing::info!(
                target: crate::TARGET,
                max_lingering = max,
                "lingering close evicted: the tracker's cap was reached"
            );
            if let Some(w) = lock(&old.waker).take() {
                w.wake();
            }
        }
    }

    /// Whether the tracker ended this close early; registers `waker` to be woken when it
    /// does.
    pub(crate) fn evicted(&self, waker: &Waker) -> bool {
        if self.slot.evicted.load(Ordering::Acquire) {
            return true;
        }
        let mut w = lock(&self.slot.waker);
        match &*w {
            Some(old) if old.will_wake(waker) => {}
            _ => *w = Some(waker.clone()),
        }
        drop(w);
        // An eviction between the first check and the registration found no waker.
        self.slot.evicted.load(Ordering::Acquire)
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        self.slot.ended.store(true, Ordering::Release);
        if self.slot.lingering.load(Ordering::Acquire) && !self.slot.evicted.load(Ordering::Acquire)
        {
            let mut q = lock(&self.tracker.inner.queue);
            if !self.slot.evicted.load(Ordering::Acquire) {
                q.live -= 1;
            }
        }
        let inner = &self.tracker.inner;
        if inner.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            inner.idle.notify_waiters();
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("evicted", &self.slot.evicted.load(Ordering::Relaxed))
            .finish()
    }
}
