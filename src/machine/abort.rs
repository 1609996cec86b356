//! How a close ends early or on purpose: an error's figures and, on a bound, its reset
//! ([`OnTimeout::Abort`](crate::OnTimeout)); the reset that loses nothing
//! ([`CloseOptions::abort_when_safe`](crate::CloseOptions::abort_when_safe)); and the
//! disarmed `SO_LINGER` that keeps every other `close()` from blocking.

use std::io;

use super::phase::{End, Phase};
use super::{Closer, Socket};
use crate::error::{CloseError, CloseErrorKind, ClosePhase};
use crate::options::OnTimeout;
use crate::report::SafeAbort;
use crate::sys::SocketKind;

impl Closer {
    /// [`CloseOptions::abort_when_safe`], when the owner's close starts: arms a reset
    /// (and so ends the close) if every byte we wrote is acknowledged and nothing the
    /// peer sent is unread; records what it found either way. Our FIN, if a shutdown
    /// already sent it, may still be in flight: it carries no data, so a reset in its
    /// place loses nothing.
    ///
    /// [`CloseOptions::abort_when_safe`]: crate::CloseOptions::abort_when_safe
    pub(super) fn abort_if_safe<S: Socket>(&mut self, io: &S) -> bool {
        let fin = usize::from(self.fin_sent);
        let found = match (io.unacked(), io.unread()) {
            (Ok(unacked), Ok(0)) if unacked <= fin => SafeAbort::Taken,
            (Ok(unacked), Ok(unread)) => SafeAbort::Refused { unacked, unread },
            _ => SafeAbort::Unknown,
        };
        // A reset that cannot be armed is a close that cannot tell: graceful.
        let found = match found {
            SafeAbort::Taken if io.arm_reset().is_err() => SafeAbort::Unknown,
            other => other,
        };
        self.safe_abort = Some(Box::new(found));
        found == SafeAbort::Taken
    }

    /// The tracker's cap ends this close early, if it lingers (everything we sent is
    /// acknowledged: it closes like any other, never with a reset of its own).
    pub(crate) fn evict<S: Socket>(&mut self, io: &S) -> Option<CloseError> {
        match self.phase {
            Phase::Lingering { .. } => {
                Some(self.fail(io, CloseErrorKind::Evicted, ClosePhase::Drain, None))
            }
            _ => None,
        }
    }

    /// Ends the close with an error: reads the figures, then aborts (TCP, on a bound,
    /// with [`OnTimeout::Abort`]) or disarms a non-zero `SO_LINGER` so that the `close()`
    /// that follows can never block.
    pub(crate) fn fail<S: Socket>(
        &mut self,
        io: &S,
        kind: CloseErrorKind,
        step: ClosePhase,
        source: Option<io::Error>,
    ) -> CloseError {
        let tcp = io.kind() == SocketKind::Tcp;
        let closing = self.phase != Phase::Barrier;
        let unacked = io.unacked().ok();
        // After a TCP reset the kernel leaves the sequence numbers alone, so 0 still
        // proves every byte and our FIN were acknowledged before it, if our FIN was sent
        // (a shutdown that failed sent none). AF_UNIX has no count.
        let acked = self.phase.acked() || (tcp && closing && self.fin_sent && unacked == Some(0));
        let mut aborted = false;
        if closing {
            let bound = kind.is_timeout() || kind == CloseErrorKind::DrainLimit;
            if tcp && bound && self.on_timeout == OnTimeout::Abort {
                aborted = io.arm_reset().is_ok();
            } else {
                io.disarm_linger();
            }
        }
        let peer_eof = self.phase.peer_eof();
        self.end(End {
            acked,
            peer_eof,
            aborted,
            step,
        });
        let mut report = self.report();
        report.unacked_bytes = unacked;
        CloseError::new(kind, step, report, source)
    }
}
