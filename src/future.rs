//! Future types

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use crate::error::CloseError;
use crate::machine::Closable;
use crate::machine::Closer;
use crate::metrics::{self, InFlight};
use crate::options::CloseOptions;
use crate::options::Role;
use crate::report::CloseReport;

/// Future of [`AsyncGracefulClose::graceful_close`](crate::AsyncGracefulClose::graceful_close)
/// and [`graceful_close_with`](crate::AsyncGracefulClose::graceful_close_with).
///
/// Owns the stream and closes it when it completes. Dropping it, polled or not, closes
/// the stream at once without blocking (a non-zero `SO_LINGER` is disarmed first).
/// Polled again after it completed, it returns an [`Io`](crate::CloseErrorKind::Io)
/// error saying so (as [`WaitAcked`] does).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct GracefulClose<S: Closable> {
    stream: Option<S>,
    closer: Closer,
    /// In the closes in flight (feature `metrics`) from the first poll to the end.
    in_flight: InFlight,
}

impl<S: Closable> GracefulClose<S> {
    #[inline]
    pub(crate) fn new(stream: S, options: CloseOptions) -> Self {
        GracefulClose {
            stream: Some(stream),
            closer: Closer::new(options.resolve(Role::Stream)),
            in_flight: InFlight::default(),
        }
    }
}

// The stream is never pinned: it is only borrowed, and moved out to be dropped.
impl<S: Closable> Unpin for GracefulClose<S> {}

impl<S: Closable> Future for GracefulClose<S> {
    type Output = Result<CloseReport, CloseError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_ref() else {
            return Poll::Ready(Err(this.closer.polled_after_done()));
        };
        this.in_flight.start();
        let res = ready!(stream.poll_closer(&mut this.closer, cx));
        // Release the descriptor before handing back the result. A failed close has
        // already aborted or disarmed the linger.
        drop(this.stream.take());
        metrics::closed(&res);
        this.in_flight.end();
        Poll::Ready(res)
    }
}

impl<S: Closable> Drop for GracefulClose<S> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            // Dropped before the end, maybe before the first poll: close() must not linger.
            if !self.closer.aborted() {
                stream.disarm_linger();
            }
            drop(stream);
        }
    }
}

impl<S: Closable + fmt::Debug> fmt::Debug for GracefulClose<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulClose")
            .field("stream", &self.stream)
            .field("closer", &self.closer)
            .finish()
    }
}

/// Future of [`AsyncGracefulClose::wait_acked`](crate::AsyncGracefulClose::wait_acked).
///
/// Polled again after it completed, it returns an error of kind
/// [`Other`](io::ErrorKind::Other) saying so (as [`GracefulClose`] does).
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WaitAcked<'a, S> {
    stream: &'a mut S,
    closer: Closer,
}

impl<'a, S: Closable> WaitAcked<'a, S> {
    pub(crate) fn new(stream: &'a mut S, timeout: Duration) -> Self {
        WaitAcked {
            stream,
            closer: Closer::barrier(timeout),
        }
    }
}

impl<S: Closable> Future for WaitAcked<'_, S> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let res = ready!(this.stream.poll_closer(&mut this.closer, cx));
        Poll::Ready(res.map(drop).map_err(io::Error::from))
    }
}

impl<S: fmt::Debug> fmt::Debug for WaitAcked<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitAcked")
            .field("stream", &self.stream)
            .field("closer", &self.closer)
            .finish()
    }
}
