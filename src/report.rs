//! What a close did.

use std::time::Duration;

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
}

impl CloseReport {
    /// Time from the first poll of the close to its end (the socket is closed right after).
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Bytes the peer sent after the close started, read and discarded.
    pub fn drained_bytes(&self) -> u64 {
        self.drained_bytes
    }

    /// Whether the peer closed its side (we read its EOF).
    pub fn peer_eof(&self) -> bool {
        self.peer_eof
    }

    /// Whether the kernel confirmed that the peer acknowledged every byte we wrote and
    /// our FIN (`SIOCOUTQ` reached 0). Always `false` where the platform cannot tell.
    ///
    /// On a [`CloseError`](crate::CloseError) it still says whether everything had been
    /// acknowledged before the failure (TCP only: a reset after the peer acknowledged
    /// all is not a loss). An RST does not acknowledge anything by itself, so data the
    /// peer read but had not yet acknowledged when it reset counts as unacknowledged.
    pub fn acked(&self) -> bool {
        self.acked
    }

    /// Bytes still unacknowledged when the close ended, as `SIOCOUTQ` counts them: on
    /// TCP our FIN counts as one byte while it is unacknowledged. `None` where the
    /// platform cannot tell or the connection was already gone.
    pub fn unacked_bytes(&self) -> Option<usize> {
        self.unacked_bytes
    }

    /// Whether the close ended with an abortive close (RST, `SO_LINGER {1, 0}`), as
    /// asked by [`OnTimeout::Abort`](crate::OnTimeout::Abort).
    pub fn aborted(&self) -> bool {
        self.aborted
    }
}
