//! What a close did.

use std::net::SocketAddr;
use std::time::Duration;

/// The target of the crate's trace events.
pub(crate) const TARGET: &str = "tokio_graceful_close";

/// What a graceful close did, returned on success and carried by every
/// [`CloseError`](crate::CloseError).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseReport {
    pub(crate) elapsed: Duration,
    pub(crate) drained_bytes: u64,
    pub(crate) peer_eof: bool,
    pub(crate) acked: bool,
    pub(crate) unacked_bytes: Option<usize>,
    pub(crate) aborted: bool,
    pub(crate) peer_addr: Option<SocketAddr>,
    pub(crate) safe_abort: Option<SafeAbort>,
}

/// What a close asked to [abort when safe](crate::CloseOptions::abort_when_safe) found
/// when it started: [`CloseReport::safe_abort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SafeAbort {
    /// Reset (`SO_LINGER {1, 0}`, no `TIME_WAIT`): everything we wrote was acknowledged
    /// and nothing the peer sent was unread, so the reset lost nothing.
    Taken,
    /// Closed gracefully instead: a reset would have discarded `unacked` bytes of ours
    /// that the peer had not acknowledged, and `unread` bytes of the peer's that we had
    /// not read.
    Refused {
        /// Our bytes not yet acknowledged (`SIOCOUTQ`).
        unacked: usize,
        /// The peer's bytes not yet read (`FIONREAD`).
        unread: usize,
    },
    /// Closed gracefully instead: this platform or socket cannot tell (no byte counts
    /// outside Linux TCP).
    Unknown,
}

impl CloseReport {
    /// Time from the first poll of the close to its end (the socket is closed right after).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Bytes of the peer's input discarded unread: by the close (input still unread
    /// when it started, plus what the peer sent until its EOF) and, on a connection
    /// whose early answer had the upload discarded below hyper
    /// (`AnnounceCloseLayer` served through `GracefulConnectInfo`), by the writes
    /// of that answer.
    pub fn drained_bytes(&self) -> u64 {
        self.drained_bytes
    }

    /// Whether the peer closed its side (we read its EOF).
    pub fn peer_eof(&self) -> bool {
        self.peer_eof
    }

    /// Whether the kernel confirmed that the peer acknowledged every byte we wrote and
    /// our FIN (`SIOCOUTQ` reached 0). Always `false` where the platform cannot tell.
    /// On `AF_UNIX` streams: the peer read every byte we wrote.
    ///
    /// On a [`CloseError`](crate::CloseError) it still says whether everything had been
    /// acknowledged before the failure (TCP only: a reset after the peer acknowledged
    /// all is not a loss). An RST does not acknowledge anything by itself, so data the
    /// peer read but had not yet acknowledged when it reset counts as unacknowledged.
    pub fn acked(&self) -> bool {
        self.acked
    }

    /// Bytes still unacknowledged when the close ended, as `SIOCOUTQ` counts them: on
    /// TCP our FIN counts as one byte while it is unacknowledged. After a reset or the
    /// kernel's give-up the count is frozen at what was outstanding then. `None` where
    /// there is no byte count: other platforms, `AF_UNIX` streams.
    pub fn unacked_bytes(&self) -> Option<usize> {
        self.unacked_bytes
    }

    /// The peer's address, for connections closed by the adapters (`GracefulIo`,
    /// `GracefulListener`, the tower layer) over TCP; `None` for a bare
    /// `graceful_close` and for `AF_UNIX` streams.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// Whether the close ended with an abortive close (RST, `SO_LINGER {1, 0}`), as
    /// asked by [`OnTimeout::Abort`](crate::OnTimeout::Abort). Only TCP has a reset:
    /// always `false` on `AF_UNIX` streams.
    pub fn aborted(&self) -> bool {
        self.aborted
    }

    /// With [`CloseOptions::abort_when_safe`](crate::CloseOptions::abort_when_safe):
    /// whether the close reset the connection because that lost nothing, or why it
    /// closed gracefully. `None` when it was not asked.
    pub fn safe_abort(&self) -> Option<SafeAbort> {
        self.safe_abort
    }
}
