//! Early answers, the HTTP decision shared by the HTTP adapters: an answer sent before
//! the request's body was read to its end (HTTP/1) says `Connection: close`, as nginx's
//! and Go's do, and the rest of the upload is discarded while the answer goes out, as
//! nginx does (`ngx_http_discard_request_body`).
//!
//! An adapter wraps the request's body in a [`Watched`] body ([`watch`]); once the
//! handler answered, [`answered`] says whether the answer was early, and if so takes
//! the rest of the upload away: below the framework, through the connection's
//! [`InputHandle`] (the connection's writes discard it), or else through the
//! framework, in a task that reads the body to its end (hyper reads the connection
//! while someone takes the body). Each framework's own types stay in its adapter.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

use crate::discard::abandon::{DiscardBounds, InputHandle};
use crate::options::CloseOptions;

/// The largest answer that needs no discard: its bytes fit the kernel's send buffer of
/// a fresh connection by themselves (`tcp_wmem`'s default 16 KiB, which the kernel
/// raises to about ten segments' worth once the connection is established), so hyper
/// finishes writing it whatever the client does, and the graceful close's own drain
/// (`MSG_TRUNC`, in batches) discards the upload after it, at a fraction of the cost
/// of reading it through hyper.
pub(crate) const FITS: u64 = 16 << 10;

/// The longest silence of the client a discard through the framework waits through:
/// nginx's `lingering_timeout`.
const DISCARD_IDLE: Duration = CloseOptions::ADAPTER_IDLE_TIMEOUT;

/// The default bounds of the discard after an early answer: 64 MiB, 30 s (nginx's
/// `lingering_time`).
pub(crate) const DEFAULT_DISCARD: DiscardBounds = DiscardBounds {
    limit: CloseOptions::DEFAULT_DRAIN_LIMIT,
    timeout: Duration::from_secs(30),
};

/// What the adapter and the request's body share.
#[derive(Debug)]
pub(crate) struct Watch<B> {
    /// The body was read to its end.
    ended: AtomicBool,
    /// The body, dropped by the handler before its end.
    dropped: Mutex<Option<B>>,
}

/// Wraps `body`, the body of an HTTP/1 request: the [`Watch`] tells, once the handler
/// answered, whether it was read to its end, and keeps it if the handler dropped it
/// before.
pub(crate) fn watch<B>(body: B) -> (Watched<B>, Arc<Watch<B>>) {
    let shared = Arc::new(Watch {
        ended: AtomicBool::new(false),
        dropped: Mutex::new(None),
    });
    let watched = Watched {
        body: Some(body),
        shared: shared.clone(),
    };
    (watched, shared)
}

/// The handler answered a request whose body `watch` watched, with an answer of
/// `answer_len` bytes if known. Returns whether the answer is early (the body was not
/// read to its end): the adapter then adds `Connection: close` to it. An early answer
/// too large for the kernel's buffers has the rest of the upload discarded within
/// `bounds`: through `input` where the connection gave its handle, through the
/// framework otherwise.
pub(crate) fn answered<B>(
    watch: &Watch<B>,
    answer_len: Option<u64>,
    bounds: DiscardBounds,
    input: Option<InputHandle>,
) -> bool
where
    B: Body + Unpin + Send + 'static,
{
    if watch.ended.load(Ordering::Acquire) {
        return false;
    }
    // The body, if the handler dropped it: read on, so that the answer can go out.
    let dropped = watch
        .dropped
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let small = answer_len.is_some_and(|n| n <= FITS);
    let wanted = !small && bounds.limit > 0 && !bounds.timeout.is_zero();
    match (dropped, wanted, input) {
        // Below the framework: the connection's writes discard the input while the
        // answer goes out; hyper stops reading once the body is dropped.
        (Some(body), true, Some(input)) => {
            input.abandon(bounds);
            drop(body);
        }
        // Through the framework: a task takes the body to its end.
        (Some(body), true, None) => {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                drop(rt.spawn(discard(body, bounds)));
            }
        }
        _ => {}
    }
    true
}

/// A request body that records when it was read to its end, and is kept when dropped
/// before.
#[derive(Debug)]
pub(crate) struct Watched<B> {
    /// `None` only once dropped.
    body: Option<B>,
    shared: Arc<Watch<B>>,
}

impl<B> Drop for Watched<B> {
    fn drop(&mut self) {
        if !self.shared.ended.load(Ordering::Acquire) {
            *self
                .shared
                .dropped
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = self.body.take();
        }
    }
}

impl<B: Body + Unpin> Body for Watched<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(&mut *body).poll_frame(cx));
        if frame.is_none() || body.is_end_stream() {
            self.shared.ended.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(B::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), B::size_hint)
    }
}

/// Reads `body` to its end and drops what it reads, within `bounds` and
/// [`DISCARD_IDLE`]: hyper reads the connection as long as someone takes the body.
async fn discard<B: Body + Unpin>(mut body: B, bounds: DiscardBounds) {
    let start = Instant::now();
    let deadline = start + bounds.timeout;
    let (mut left, mut last) = (bounds.limit, start);
    let mut sleep = pin!(tokio::time::sleep_until(deadline.min(last + DISCARD_IDLE)));
    let why = poll_fn(|cx| loop {
        match Pin::new(&mut body).poll_frame(cx) {
            Poll::Ready(None) => return Poll::Ready("the upload ended"),
            Poll::Ready(Some(Err(_))) => return Poll::Ready("the upload failed"),
            Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.remaining() as u64);
                match left.checked_sub(n) {
                    Some(rest) => left = rest,
                    None => return Poll::Ready("the discard limit was reached"),
                }
                last = Instant::now();
            }
            Poll::Pending => {
                ready!(sleep.as_mut().poll(cx));
                // The idle bound counts from the last frame: set lazily, here.
                let until = deadline.min(last + DISCARD_IDLE);
                if until <= Instant::now() {
                    return Poll::Ready("the discard timed out");
                }
                sleep.as_mut().reset(until);
            }
        }
    })
    .await;
    tracing::debug!(
        discarded = bounds.limit - left,
        elapsed = ?start.elapsed(),
        "early answer: stopped discarding the upload: {why}"
    );
}

/// The constructor and the discard's bounds of each framework's early-answer type (a
/// struct with a `discard: DiscardBounds` field): `new`, `discard_limit`,
/// `discard_timeout` and `Default`, the same for every framework. `$what` names it in
/// `new`'s docs ("layer", "middleware", "hoop").
macro_rules! discard_builders {
    ($ty:ident, $what:literal) => {
        impl $ty {
            #[doc = concat!("The ", $what, ": discards up to 64 MiB for up to 30 s after an early answer.")]
            pub const fn new() -> Self {
                $ty {
                    discard: $crate::integrations::early::DEFAULT_DISCARD,
                }
            }

            /// The most bytes of an unread upload discarded after an early answer (64 MiB
            /// unless set; 0: none). Past it, the upload is left unread: a client still
            /// sending may not see the answer.
            pub const fn discard_limit(mut self, bytes: u64) -> Self {
                self.discard.limit = bytes;
                self
            }

            /// How long the discard of an unread upload may last in all (30 s unless set).
            pub const fn discard_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.discard.timeout = timeout;
                self
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new()
            }
        }
    };
}
pub(crate) use discard_builders;
