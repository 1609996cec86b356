//! The close of a dropped [`GracefulIo`](super::GracefulIo), run as its own task.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::outcome::{self, close_plainly, OnClose, Path};
use crate::error::CloseError;
use crate::ext::AsyncGracefulClose;
use crate::machine::Closer;

// ===== impl Background =====

/// The close of a dropped [`GracefulIo`](super::GracefulIo), run as its own task. It
/// owns what the connection kept around the close: the tracker's registration joins
/// the tracker's lingering closes when the close starts lingering, and a close the
/// tracker's cap evicts ends here.
pub(crate) struct Background<S: AsyncGracefulClose> {
    pub(super) stream: Option<S>,
    pub(super) closer: Box<Closer>,
    pub(super) context: Option<outcome::Conn>,
    pub(super) on_close: Option<OnClose>,
}

// The stream is never pinned: it is only borrowed, and moved out to be dropped.
impl<S: AsyncGracefulClose> Unpin for Background<S> {}

/// The close's error if the tracker's cap ended it early. Asked only of a lingering
/// close (the only kind the cap ends): it joins the tracker's lingering closes once
/// (which may end the longest lingering others), and the task is registered to be woken
/// by a later eviction.
fn evicted<S: AsyncGracefulClose>(
    closer: &mut Closer,
    conn: Option<&outcome::Conn>,
    stream: &S,
    cx: &mut Context<'_>,
) -> Option<CloseError> {
    let token = conn?.token.as_ref()?;
    if !closer.lingering() {
        return None;
    }
    token.lingering();
    if token.evicted(cx.waker()) {
        return closer.evict(stream);
    }
    None
}

impl<S: AsyncGracefulClose> Future for Background<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_ref() else {
            return Poll::Ready(());
        };
        let context = this.context.as_ref();
        let mut res = match evicted(&mut this.closer, context, stream, cx) {
            Some(e) => Err(e),
            None => match stream.poll_closer(&mut this.closer, cx) {
                Poll::Ready(res) => res,
                // A close that starts lingering now joins the tracker's lingering closes.
                Poll::Pending => match evicted(&mut this.closer, context, stream, cx) {
                    Some(e) => Err(e),
                    None => return Poll::Pending,
                },
            },
        };
        drop(this.stream.take());
        // A panic in the callback ends this task only: Tokio contains it, and the
        // callback was taken first, so it cannot run twice.
        let context = this.context.take().unwrap_or_default();
        context.annotate(&mut res);
        context.report(&res, this.on_close.take(), Path::Background);
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
                self.context.take().unwrap_or_default(),
                self.on_close.take(),
                why,
                Path::Background,
            );
        }
    }
}

/// A background close as a `GracefulIo` drop makes it, for the crate's simulation: the
/// closer, the tracker's registration (`hold`) and the outcome callback.
#[cfg(all(test, target_os = "linux"))]
pub(crate) fn test_close<S: AsyncGracefulClose>(
    stream: S,
    closer: Closer,
    hold: Option<crate::tracker::Hold>,
    on_close: impl FnOnce(&Result<crate::report::CloseReport, CloseError>) + Send + 'static,
) -> Background<S> {
    Background {
        stream: Some(stream),
        closer: Box::new(closer),
        context: Some(outcome::Conn {
            token: hold.map(crate::tracker::Hold::start),
            ..outcome::Conn::default()
        }),
        on_close: Some(OnClose::once(on_close)),
    }
}

#[cfg(all(test, target_os = "linux"))]
impl<S: AsyncGracefulClose> Background<S> {
    /// The close, for the simulation's invariants.
    pub(crate) fn closer(&self) -> &Closer {
        &self.closer
    }
}
