//! How a close ends early or on purpose: an error's figures and, on a bound, its reset
//! ([`OnTimeout::Abort`](crate::OnTimeout)); the reset that loses nothing
//! ([`CloseOptions::abort_when_safe`](crate::CloseOptions::abort_when_safe)); and the
//! disarmed `SO_LINGER` that keeps every other `close()` from blocking.

use std::io;
use std::time::Duration;

use tokio::time::Instant;

use super::{Closer, Flags, Mode, Phase, Socket};
use crate::error::{CloseError, CloseErrorKind, ClosePhase};
use crate::sys::{self, SocketKind};
use crate::{OnTimeout, SafeAbort};

impl Closer {
    /// [`CloseOptions::abort_when_safe`], at the owner's first poll: resets (and ends
    /// the close) if every byte we wrote is acknowledged and nothing the peer sent is
    /// unread; records what it found either way. Our FIN, if a shutdown already sent
    /// it, may still be in flight: it carries no data, so a reset in its place loses
    /// nothing.
    pub(super) fn abort_if_safe<S: Socket>(&mut self, io: &S) -> bool {
        let sock = io.as_sock();
        let fin = usize::from(self.flags.has(Flags::FIN_SENT));
        let found = match (sys::unacked(sock, io.kind()), sys::unread(sock, io.kind())) {
            (Ok(unacked), Ok(0)) if unacked <= fin => SafeAbort::Taken,
            (Ok(unacked), Ok(unread)) => SafeAbort::Refused { unacked, unread },
            _ => SafeAbort::Unknown,
        };
        // A reset that cannot be armed is a close that cannot tell: graceful.
        let found = match found {
            SafeAbort::Taken
                if socket2::SockRef::from(&sock)
                    .set_linger(Some(Duration::ZERO))
                    .is_err() =>
            {
                SafeAbort::Unknown
            }
            other => other,
        };
        self.extra.get_or_insert_with(Box::default).safe_abort = Some(found);
        if found != SafeAbort::Taken {
            return false;
        }
        if self.phase == Phase::Start {
            self.start = Instant::now();
        }
        self.flags.set(Flags::ABORTED);
        self.flags.set(Flags::ACKED);
        self.end();
        true
    }

    /// Ends the close with an error: reads the figures, then aborts (TCP, on a bound,
    /// with [`OnTimeout::Abort`]) or disarms a non-zero `SO_LINGER` so that the `close()`
    /// that follows can never block.
    pub(crate) fn fail<S: Socket>(
        &mut self,
        io: &S,
        kind: CloseErrorKind,
        phase: ClosePhase,
        source: Option<io::Error>,
    ) -> CloseError {
        self.end();
        let sock = io.as_sock();
        let tcp = io.kind() == SocketKind::Tcp;
        let unacked = sys::unacked(sock, io.kind()).ok();
        // After a TCP reset the kernel leaves the sequence numbers alone, so 0 still
        // proves every byte and our FIN were acknowledged before it, if our FIN was sent
        // (a shutdown that failed sent none). AF_UNIX has no count.
        let acked = self.acked()
            || (tcp
                && self.mode == Mode::Close
                && self.flags.has(Flags::FIN_SENT)
                && unacked == Some(0));
        let mut report = self.report();
        report.acked = acked;
        report.unacked_bytes = unacked;
        if self.mode == Mode::Close {
            // An evicted close is acknowledged (the cap ends only lingering closes): it
            // closes like any other, never with a reset of its own.
            let bound = kind.is_timeout() || kind == CloseErrorKind::DrainLimit;
            let abort = bound && self.on_timeout == OnTimeout::Abort;
            if tcp && abort {
                if socket2::SockRef::from(&sock)
                    .set_linger(Some(Duration::ZERO))
                    .is_ok()
                {
                    self.flags.set(Flags::ABORTED);
                }
                report.aborted = self.aborted();
            } else {
                disarm_linger(sock);
            }
        }
        CloseError::new(kind, phase, report, source)
    }
}

/// Removes a non-zero `SO_LINGER` the application may have set, so that the `close()`
/// that follows can never sleep in the kernel.
pub(crate) fn disarm_linger(sock: sys::Sock<'_>) {
    let sock = socket2::SockRef::from(&sock);
    if let Ok(Some(t)) = sock.linger() {
        if !t.is_zero() {
            let _ = sock.set_linger(None);
        }
    }
}
