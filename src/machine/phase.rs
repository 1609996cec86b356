//! The phases of a close and what moves it from one to the next.
//!
//! ```text
//!  Start ──FIN queued──▶ Delivering ──peer's EOF──▶ AckWait ──ACK──▶ Done
//!    │                      │   └──ACK──▶ Lingering ──EOF, or `until`──▶ Done
//!    │                      └──cannot tell (no ACK check)──▶ Draining
//!    └──FIN queued, EOF required, untracked──▶ Draining ──peer's EOF──▶ AckWait
//! ```
//!
//! After the acknowledgement, [`PeerEof`] chooses how long to linger for the peer's
//! EOF: not at all, until it comes, a few round trips, or (a peer still sending) until
//! it comes.

use std::io;
use std::time::Duration;

use super::drain::DrainEnd;
use super::Socket;
use super::{nanos, Closer, Flags, Mode, Nanos, NEVER};
use crate::error::CloseErrorKind;
use crate::sys;
use crate::PeerEof;

/// How long a connection with nothing more to say is given to close its side after our
/// FIN was acknowledged ([`PeerEof::IfSending`], [`PeerEof::Briefly`]): four round
/// trips, within these bounds. A peer that answers our FIN (its own FIN, a TLS
/// `close_notify`) does so within a round trip or two; closing before that would reset
/// its answer.
const GRACE_MIN: Duration = Duration::from_millis(10);
const GRACE_MAX: Duration = Duration::from_secs(1);

/// Where a close stands: one state per phase, each left on one kind of event (the
/// module's diagram).
///
/// A bound (the deadline, the idle timeout, the drain limit), an error or the
/// tracker's eviction ends any phase with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not started: our FIN goes out at the first poll.
    Start,
    /// Our FIN is queued after our data; the peer's input is drained until its EOF and
    /// the acknowledgement is not looked at yet: the close cannot end before that EOF
    /// ([`PeerEof::Required`], or a platform that cannot tell), and a peer
    /// acknowledges our FIN before it sends its own.
    Draining,
    /// Our data and FIN are in flight. The peer's input is drained meanwhile, so that
    /// unread bytes never turn the close into a reset.
    Delivering,
    /// The peer's EOF was read: only the acknowledgement of our bytes is awaited.
    AckWait,
    /// Our data and FIN are acknowledged; the peer's EOF is awaited (its input drained)
    /// until `until`, [`NEVER`] for as long as the bounds allow.
    Lingering { until: Nanos },
    /// Ended, with its result returned.
    Done,
}

impl Phase {
    /// Whether the close reads the peer's input in this phase.
    pub(super) fn drains(self) -> bool {
        matches!(
            self,
            Phase::Draining | Phase::Delivering | Phase::Lingering { .. }
        )
    }

    /// Whether the close looks at the send queue in this phase.
    pub(super) fn watches_ack(self) -> bool {
        matches!(self, Phase::Delivering | Phase::AckWait)
    }
}

impl Closer {
    /// The phase after our FIN was queued. The acknowledgement is looked at while the
    /// peer's input is drained, unless the close cannot end before the peer's EOF
    /// anyway. A tracked close looks at once: only an acknowledged close may be ended
    /// early by the tracker's cap.
    pub(super) fn first_phase(&self) -> Phase {
        let eof_first = self.peer_eof_policy == PeerEof::Required && self.token().is_none();
        if eof_first && self.mode == Mode::Close {
            Phase::Draining
        } else {
            Phase::Delivering
        }
    }

    /// Moves to `next`; entering [`Phase::Done`] lets go of what the close waited with.
    fn enter(&mut self, next: Phase) {
        if next == Phase::Done {
            self.end();
        } else {
            self.phase = next;
        }
    }

    /// The peer's EOF was read.
    pub(super) fn on_peer_eof(&mut self) {
        self.flags.set(Flags::PEER_EOF);
        self.enter(match self.phase {
            Phase::Draining | Phase::Delivering => Phase::AckWait,
            Phase::Lingering { .. } => Phase::Done,
            other => other,
        });
    }

    /// The platform cannot tell whether our bytes were acknowledged: the peer's EOF is
    /// the only evidence left.
    pub(super) fn on_ack_unknown(&mut self) {
        self.enter(match self.phase {
            Phase::Delivering => Phase::Draining,
            _ => Phase::Done,
        });
    }

    /// Our data and FIN are acknowledged: the close ends, or lingers for the peer's
    /// EOF. `Err` when the bytes its own look at the socket found exceed the drain limit.
    pub(super) fn on_acked<S: Socket>(&mut self, io: &S) -> Result<(), CloseErrorKind> {
        self.flags.set(Flags::ACKED);
        if let Some(token) = self.token() {
            token.lingering();
        }
        let next = if self.phase == Phase::AckWait {
            // The peer's EOF came first.
            Phase::Done
        } else {
            match self.peer_eof_policy {
                PeerEof::NotRequired => Phase::Done,
                PeerEof::Required => Phase::Lingering { until: NEVER },
                PeerEof::Briefly => Phase::Lingering {
                    until: self.grace_end(io),
                },
                PeerEof::IfSending => self.linger_if_sending(io)?,
            }
        };
        self.enter(next);
        Ok(())
    }

    /// Some bytes of the peer's were discarded: under [`PeerEof::IfSending`] a peer
    /// still sending is drained to its EOF, its grace period over.
    pub(super) fn on_peer_data(&mut self) {
        if self.peer_eof_policy == PeerEof::IfSending {
            if let Phase::Lingering { until } = &mut self.phase {
                *until = NEVER;
            }
        }
    }

    /// [`PeerEof::IfSending`]: a peer that sent anything since the close began is
    /// drained to its EOF; a quiet one is given a grace period; one whose EOF is
    /// already queued ends the close.
    fn linger_if_sending<S: Socket>(&mut self, io: &S) -> Result<Phase, CloseErrorKind> {
        if self.drained > 0 {
            return Ok(Phase::Lingering { until: NEVER });
        }
        // Nothing was drained and the drain found the queue empty, but its readiness
        // may lag the kernel: ask the socket itself.
        Ok(
            match sys::discard(io.as_sock(), 1, self.flags.has(Flags::TCP)) {
                Ok(0) => {
                    self.flags.set(Flags::PEER_EOF);
                    Phase::Done
                }
                Ok(n) => {
                    // Counted as the drain counts: the limit and the idle bound see it.
                    if let Some(DrainEnd::OverLimit) = self.count(io, n) {
                        return Err(CloseErrorKind::DrainLimit);
                    }
                    Phase::Lingering { until: NEVER }
                }
                // The queue is empty. Did the peer send anything since the close began?
                // An uploading client whose last segment the application read a moment
                // ago is still sending; an idle one last sent long before. (Where the
                // platform cannot tell, the empty queue decides.)
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let activity = sys::activity(io.as_sock()).ok().flatten();
                    let quiet = activity.is_none_or(|a| a.since_last_data > self.start.elapsed());
                    let until = if quiet {
                        self.now()
                            .saturating_add(nanos(grace(activity.map(|a| a.rtt))))
                    } else {
                        NEVER
                    };
                    Phase::Lingering { until }
                }
                // Let the drain meet the error and report it.
                Err(_) => Phase::Lingering { until: NEVER },
            },
        )
    }

    /// When a grace period starting now ends.
    fn grace_end<S: Socket>(&self, io: &S) -> Nanos {
        let rtt = sys::activity(io.as_sock()).ok().flatten().map(|a| a.rtt);
        self.now().saturating_add(nanos(grace(rtt)))
    }
}

/// Four round trips (where known), within [`GRACE_MIN`] and [`GRACE_MAX`].
fn grace(rtt: Option<Duration>) -> Duration {
    rtt.map_or(GRACE_MIN, |rtt| rtt.saturating_mul(4))
        .clamp(GRACE_MIN, GRACE_MAX)
}
