//! Future types

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;

use crate::ext::sealed::Socket;
use crate::machine::{disarm_linger, Closer, Mode};
use crate::{CloseError, CloseOptions, CloseReport};

pin_project! {
    /// Future of [`AsyncGracefulClose::graceful_close`](crate::AsyncGracefulClose::graceful_close)
    /// and [`graceful_close_with`](crate::AsyncGracefulClose::graceful_close_with).
    ///
    /// Owns the stream and closes it when it completes. Dropping it closes the stream
    /// at once, without blocking.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct GracefulClose<S>
    where
        S: AsFd,
    {
        stream: Option<S>,
        #[pin]
        closer: Closer,
    }

    impl<S> PinnedDrop for GracefulClose<S>
    where
        S: AsFd,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(stream) = this.stream.take() {
                if this.closer.is_running() {
                    // Cancelled mid-way: make sure close() cannot linger.
                    disarm_linger(stream.as_fd());
                }
                drop(stream);
            }
        }
    }
}

impl<S: Socket> GracefulClose<S> {
    pub(crate) fn new(stream: S, options: CloseOptions) -> Self {
        GracefulClose {
            stream: Some(stream),
            closer: Closer::new(options, Mode::Close),
        }
    }

    /// The options this close runs with.
    pub fn options(&self) -> &CloseOptions {
        self.closer.options()
    }
}

impl<S: Socket> Future for GracefulClose<S> {
    type Output = Result<CloseReport, CloseError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(stream) = this.stream.as_ref() else {
            panic!("`GracefulClose` polled after completion");
        };
        let res = ready!(this.closer.poll_close(stream, cx));
        // Release the descriptor before handing back the result.
        drop(this.stream.take());
        Poll::Ready(res)
    }
}

impl<S: AsFd + fmt::Debug> fmt::Debug for GracefulClose<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulClose")
            .field("stream", &self.stream)
            .field("closer", &self.closer)
            .finish()
    }
}

pin_project! {
    /// Future of [`AsyncGracefulClose::wait_acked`](crate::AsyncGracefulClose::wait_acked).
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct WaitAcked<'a, S> {
        stream: &'a mut S,
        #[pin]
        closer: Closer,
    }
}

impl<'a, S: Socket> WaitAcked<'a, S> {
    pub(crate) fn new(stream: &'a mut S, timeout: Duration) -> Self {
        WaitAcked {
            stream,
            closer: Closer::new(CloseOptions::new(timeout), Mode::AckOnly),
        }
    }
}

impl<S: Socket> Future for WaitAcked<'_, S> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = ready!(this.closer.poll_close(&**this.stream, cx));
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
