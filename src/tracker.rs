//! Waiting for the closes that outlive their connections: [`CloseTracker`].
//!
//! A graceful close finished in a background task (after hyper dropped the connection,
//! after `poll_shutdown` returned) is not one of the connection futures that
//! `axum::serve(..).with_graceful_shutdown(..)` waits for. When the runtime shuts
//! down, such tasks are dropped, and a socket dropped with unread input sends RST: the
//! tail of a response is lost. A tracker counts the connections from the moment they
//! are wrapped until their close ended, so that a server can wait for them, and caps
//! how many closes may linger at once. Its `close()` / `wait()` protocol is tokio-util's
//! `TaskTracker`'s.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll, Waker};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Counts connections until their graceful close ended, and lets a server wait for
/// them.
///
/// Every adapter's [`CloseSettings`](crate::CloseSettings) has one
/// ([`tracker`](crate::CloseSettings::tracker)), and the adapter tracks every connection
/// it wraps until its close ended, whether that close ran from `poll_shutdown` and the
/// drop or from a drop alone (a TLS listener from the accept, through the handshake);
/// so does any [`GracefulIo`](crate::GracefulIo) made
/// [`tracked`](crate::GracefulIo::tracked).
///
/// Waiting works as with tokio-util's `TaskTracker`: [`close`](Self::close) the tracker
/// once no new connection will come (after `serve` returned), then
/// [`wait`](Self::wait) until it is closed and empty:
///
/// ```no_run
/// use std::time::Duration;
/// use tokio_graceful_close::axum::GracefulListener;
/// use tokio_graceful_close::{CloseOptions, CloseSettings, CloseTracker};
///
/// # async fn dox(app: axum::Router, signal: std::future::Ready<()>) -> std::io::Result<()> {
/// let tcp = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// let closes = CloseTracker::new();
/// let settings = CloseSettings::new(CloseOptions::new(Duration::from_secs(30))).tracked(&closes);
/// let listener = GracefulListener::new(tcp, settings);
/// axum::serve(listener, app).with_graceful_shutdown(signal).await?;
/// closes.close();
/// closes.wait().await; // every response delivered or its close timed out
/// # Ok(())
/// # }
/// ```
///
/// Without the last lines, returning from `main` drops the runtime and with it every
/// close still running: their sockets are closed plainly, and those with unread input
/// send RST.
///
/// A closed tracker still counts connections wrapped later (a TLS handshake that
/// finishes during the shutdown), and a `wait` polled meanwhile waits for them too. A
/// `wait` that already completed stays completed; a connection tracked after that is
/// not waited for by it (call `wait` again). [`reopen`](Self::reopen) makes `wait`
/// pending again until the next [`close`](Self::close).
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
    /// Connections tracked and not closed yet.
    pending: AtomicUsize,
    closed: AtomicBool,
    /// Woken when `pending` reaches 0, and when the tracker is closed.
    idle: Notify,
    max_lingering: AtomicUsize,
    /// The lingering closes.
    queue: Mutex<Queue>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            pending: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
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

    /// Connections tracked whose close has not ended yet.
    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// Closes the tracker: [`wait`](Self::wait) completes once it is closed and no
    /// connection is pending. Connections may still be tracked after it. Returns
    /// `true` if it was open.
    pub fn close(&self) -> bool {
        let was_open = !self.inner.closed.swap(true, Ordering::AcqRel);
        if was_open {
            self.inner.idle.notify_waiters();
        }
        was_open
    }

    /// Opens the tracker again; returns `true` if it was closed.
    pub fn reopen(&self) -> bool {
        self.inner.closed.swap(false, Ordering::AcqRel)
    }

    /// Whether the tracker is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    /// Waits until the tracker is [closed](Self::close) and no connection is pending.
    ///
    /// Equivalent to `async fn wait(&self)`. Cancel-safe.
    pub fn wait(&self) -> CloseTrackerWait<'_> {
        CloseTrackerWait {
            notified: self.inner.idle.notified(),
            inner: &self.inner,
        }
    }

    /// Counts a connection until the returned hold is dropped (or its close ends).
    pub(crate) fn hold(&self) -> Hold {
        self.inner.pending.fetch_add(1, Ordering::AcqRel);
        Hold {
            tracker: self.clone(),
        }
    }
}

impl Inner {
    fn done(&self) -> bool {
        self.closed.load(Ordering::Acquire) && self.pending.load(Ordering::Acquire) == 0
    }
}

pin_project_lite::pin_project! {
    /// Future of [`CloseTracker::wait`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct CloseTrackerWait<'a> {
        #[pin]
        notified: Notified<'a>,
        inner: &'a Inner,
    }
}

impl Future for CloseTrackerWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            // Registered before the look: a change after it wakes us.
            this.notified.as_mut().enable();
            if this.inner.done() {
                return Poll::Ready(());
            }
            ready!(this.notified.as_mut().poll(cx));
            this.notified.set(this.inner.idle.notified());
        }
    }
}

impl fmt::Debug for CloseTrackerWait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseTrackerWait")
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .field("pending", &self.inner.pending.load(Ordering::Relaxed))
            .finish()
    }
}

/// A tracked connection whose close has not ended; dropping it ends its count.
pub(crate) struct Hold {
    tracker: CloseTracker,
}

impl Hold {
    /// The connection's close starts: the token keeps the count and joins the cap's
    /// bookkeeping once the close lingers.
    pub(crate) fn start(self) -> Token {
        Token {
            slot: Arc::new(Slot::default()),
            hold: self,
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let inner = &self.tracker.inner;
        if inner.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            inner.idle.notify_waiters();
        }
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("Hold")
    }
}

impl fmt::Debug for CloseTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseTracker")
            .field("pending", &self.pending())
            .field("closed", &self.is_closed())
            .field("max_lingering", &self.max_lingering())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running close registered with a [`CloseTracker`]; dropping it ends the close.
/// (Fields drop in order: the cap's bookkeeping first, then the count.)
pub(crate) struct Token {
    slot: Arc<Slot>,
    hold: Hold,
}

impl Token {
    /// The close lingers from now on (everything we sent is acknowledged, the drain goes
    /// on): it joins the queue of lingering closes, which the cap may end early. Ends
    /// the longest lingering past the cap.
    pub(crate) fn lingering(&self) {
        let tracker = &self.hold.tracker;
        let inner = &tracker.inner;
        let max = tracker.max_lingering();
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
        // The gauge follows `live`, outside the lock: the recorder is the user's code.
        crate::metrics::lingering_started();
        for old in evict {
            crate::metrics::lingering_ended();
            tracing::info!(
                target: crate::report::TARGET,
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
            let mut q = lock(&self.hold.tracker.inner.queue);
            let left = !self.slot.evicted.load(Ordering::Acquire);
            if left {
                q.live -= 1;
            }
            drop(q);
            if left {
                crate::metrics::lingering_ended();
            }
        }
        // The count ends with `hold`, dropped after this.
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("evicted", &self.slot.evicted.load(Ordering::Relaxed))
            .finish()
    }
}
