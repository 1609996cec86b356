//! The close of a dropped [`GracefulIo`](super::GracefulIo), run as its own task.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::outcome::{close_plainly, notify, OnClose, Path};
use crate::machine::Closer;
use crate::{AsyncGracefulClose, TARGET};

// ===== impl Background =====

/// The close of a dropped [`GracefulIo`], run as its own task.
pub(super) struct Background<S: AsyncGracefulClose> {
    pub(super) stream: Option<S>,
    pub(super) closer: Box<Closer>,
    pub(super) on_close: Option<OnClose>,
}

// The stream is never pinned: it is only borrowed, and moved out to be dropped.
impl<S: AsyncGracefulClose> Unpin for Background<S> {}

impl<S: AsyncGracefulClose> Future for Background<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_ref() else {
            return Poll::Ready(());
        };
        let res = ready!(stream.poll_closer(&mut this.closer, cx));
        drop(this.stream.take());
        let on_close = this.on_close.take();
        // The user's callback must not take the crate's task down with it.
        if catch_unwind(AssertUnwindSafe(|| {
            notify(on_close, &res, Path::Background)
        }))
        .is_err()
        {
            tracing::error!(target: TARGET, "the on_close callback panicked");
        }
        Poll::Ready(())
    }
}

impl<S: AsyncGracefulClose> Drop for Background<S> {
    fn drop(&mut self) {
        // Only when the runtime drops the task before the close ended.
        if let Some(stream) = self.stream.take() {
            close_plainly(
                stream,
                &self.closer,
                self.on_close.take(),
                "the runtime shut down before the graceful close ended",
                Path::Background,
            );
        }
    }
}
