//! The drain: reads and discards until the peer's EOF, bounded by the drain limit.

use std::io;
use std::task::{ready, Context, Poll};

use tokio::io::Interest;
use tokio::time::Instant;

use super::{after, Closer};
use crate::ext::sealed::Socket;
use crate::sys;

/// Reads per poll before the drain yields to the scheduler (on top of Tokio's budget).
const MAX_READS_PER_POLL: usize = 64;
/// Largest single discard request.
const MAX_DISCARD: u64 = 1 << 30;

impl Closer {
    /// Reads and discards until EOF, the drain limit, an error, or no more data
    /// (`Pending`).
    pub(super) fn poll_drain<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<DrainEnd>> {
        let limit = self.opts.get_drain_limit();
        for _ in 0..MAX_READS_PER_POLL {
            ready!(io.poll_read_ready(cx))?;
            // Ask for one byte more than the limit allows, to see a peer that exceeds it.
            let want = limit
                .saturating_sub(self.drained)
                .saturating_add(1)
                .min(MAX_DISCARD) as usize;
            let kind = io.kind();
            match io.try_io(Interest::READABLE, || {
                sys::discard(io.as_sock(), kind, want)
            }) {
                Ok(0) => return Poll::Ready(Ok(DrainEnd::Eof)),
                Ok(n) => {
                    self.drained += n as u64;
                    if self.drained > limit {
                        return Poll::Ready(Ok(DrainEnd::OverLimit));
                    }
                    if let Some(idle) = self.opts.idle_timeout {
                        self.idle_deadline = Some(after(Instant::now(), idle));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        // A peer that keeps the socket full: give other tasks a turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// How a drain ended.
pub(super) enum DrainEnd {
    /// The peer closed its side.
    Eof,
    /// The peer sent more than the drain limit.
    OverLimit,
}
