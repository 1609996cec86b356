//! The delivery barrier of [`wait_acked`](crate::AsyncGracefulClose::wait_acked), apart
//! from the close: it borrows a stream the application keeps using, so it never reads
//! it and never touches its cached readiness. It looks at the send queue, sooner than
//! Tokio's timer can wait by yielding a few times, then on a backoff
//! (`ack::recheck_step`), until every byte written so far is acknowledged, the
//! connection dies or the deadline passes.

use std::io;
use std::task::{Context, Poll};

use std::time::Duration;

use super::ack::Ack;
use super::phase::{End, Phase};
use super::{Closer, Look, Socket};
use crate::error::{classify, CloseError, CloseErrorKind, ClosePhase};
use crate::options::CloseOptions;
use crate::report::CloseReport;
use crate::sys;

impl Closer {
    /// A delivery barrier: waits until every byte written so far is acknowledged,
    /// within `timeout` from now.
    pub(crate) fn barrier(timeout: Duration) -> Self {
        let mut barrier = Closer::new(CloseOptions::new(timeout));
        barrier.phase = Phase::Barrier;
        barrier
    }

    /// Drives the barrier ([`Phase::Barrier`]) until every byte written so far is
    /// acknowledged.
    pub(super) fn poll_barrier<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<CloseReport, CloseError>> {
        debug_assert_eq!(self.phase, Phase::Barrier);
        loop {
            let mut look = Look::default();
            let state = if sys::ACK_CHECK {
                self.queue_state(io, &mut look)
            } else {
                Ok(Some(Ack::Unknown))
            };
            match state {
                Ok(Some(Ack::Done)) => {
                    self.end(End {
                        acked: true,
                        peer_eof: false,
                        aborted: false,
                        step: ClosePhase::AckWait,
                    });
                    return Poll::Ready(Ok(self.report()));
                }
                Ok(Some(Ack::Unknown)) => {
                    let e = io::Error::new(
                        io::ErrorKind::Unsupported,
                        "this platform cannot tell whether sent data was acknowledged",
                    );
                    let kind = CloseErrorKind::Io;
                    return Poll::Ready(Err(self.fail(io, kind, ClosePhase::AckWait, Some(e))));
                }
                Ok(_) => {}
                Err(e) => {
                    let kind = classify(&e);
                    return Poll::Ready(Err(self.fail(io, kind, ClosePhase::AckWait, Some(e))));
                }
            }
            let now = self.now();
            if now >= self.deadline {
                let kind = CloseErrorKind::TimedOut;
                return Poll::Ready(Err(self.fail(io, kind, ClosePhase::AckWait, None)));
            }
            let (at, fine) = self.recheck_at(io, now, false, &mut look);
            if self
                .poll_wait(cx, now, at.min(self.deadline), fine)
                .is_pending()
            {
                return Poll::Pending;
            }
        }
    }
}
