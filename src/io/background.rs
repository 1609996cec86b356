//! The close of a dropped [`GracefulIo`](super::GracefulIo), run as its own task.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::outcome::{close_plainly, notify, OnClose, Path};
use crate::machine::Closer;
use crate::AsyncGracefulClose;

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
        // A panic in the callback ends this task only: Tokio contains it, and the
        // callback was taken first, so it cannot run twice.
        notify(this.on_close.take(), &res, Path::Background);
        Poll::Ready(())
    }
}

impl<S: AsyncGracefulClose> Drop for Background<S> {
    fn drop(&mut self) {
        // Only when the task ends before the close did: the runtime shut down, or the
        // close panicked (it had to wait on a runtime without a time driver).
        if let Some(stream) = self.stream.take() {
            let why = if std::thread::panicking() {
                "the graceful close panicked (a runtime without a time driver?): closed at once"
            } else {
                "the runtime shut down before the graceful close ended"
            };
            close_plainly(
                stream,
                &self.closer,
                self.on_close.take(),
                why,
                Path::Background,
            );
        }
    }
}
