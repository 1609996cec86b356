//! The drain: reads and discards until the peer's EOF, bounded by the drain limit and
//! the idle timeout.

use std::io;
use std::task::{ready, Context, Poll};

use tokio::io::Interest;

use super::{Closer, Nanos};
use crate::error::CloseErrorKind;
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
        for _ in 0..MAX_READS_PER_POLL {
            ready!(io.poll_read_ready(cx))?;
            let (kind, want) = (io.kind(), self.want());
            match io.try_io(Interest::READABLE, || {
                sys::discard(io.as_sock(), kind, want)
            }) {
                Ok(n) => {
                    if let Some(end) = self.count(io, n) {
                        return Poll::Ready(Ok(end));
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

    /// The idle deadline passed (`now`): how the close ends.
    pub(super) fn recheck_idle<S: Socket>(
        &mut self,
        io: &S,
        now: Nanos,
    ) -> io::Result<Option<CloseErrorKind>> {
        let _ = (io, now);
        Ok(Some(CloseErrorKind::IdleTimeout))
    }

    /// How much one discard asks for: one byte more than the limit allows, to see a
    /// peer that exceeds it.
    fn want(&self) -> usize {
        self.drain_limit
            .saturating_sub(self.drained)
            .saturating_add(1)
            .min(MAX_DISCARD) as usize
    }

    /// Counts `n` discarded bytes (0: the peer's EOF); how the drain ends, if it does.
    fn count<S: Socket>(&mut self, _io: &S, n: usize) -> Option<DrainEnd> {
        if n == 0 {
            return Some(DrainEnd::Eof);
        }
        self.drained = self.drained.saturating_add(n as u64);
        if self.drained > self.drain_limit {
            return Some(DrainEnd::OverLimit);
        }
        if self.idle_timeout != super::NEVER {
            self.idle_deadline = self.now().saturating_add(self.idle_timeout);
        }
        None
    }
}

/// How a drain ended.
pub(super) enum DrainEnd {
    /// The peer closed its side.
    Eof,
    /// The peer sent more than the drain limit.
    OverLimit,
}
