//! The phases of a close and the one function that moves it from one to the next.
//!
//! ```text
//!  Start ──begin──▶ Shut ──owner polls──┐
//!    └───────────owner polls────────────┼──▶ Delivering ──peer's EOF──▶ AckWait ──ACK──▶ Done
//!                                       │     ▲    │  └──ACK──▶ Lingering ──EOF, or `until`──▶ Done
//!                                       │ in flight └──cannot tell──▶ Draining ──EOF──▶ Done
//!                                       │     │
//!                                       ├──EOF required, untracked──▶ EofFirst ──peer's EOF──▶ AckWait
//!                                       └──the platform cannot tell──▶ Draining
//! ```
//!
//! Each phase owns what only it needs: the idle clock exists only in the phases that
//! watch the peer's silence ([`Phase::EofFirst`], [`Phase::Lingering`],
//! [`Phase::Draining`]), counted from when the close entered them or from the peer's
//! last bytes, whichever is later, and it ends a close only once our bytes are
//! delivered: a close waiting for the EOF first that finds bytes in flight when its
//! idle bound is due watches their delivery instead ([`Event::InFlight`]); what
//! the close learnt (acknowledged, the peer's EOF, reset on purpose) is the phase
//! itself, or the [`End`] of a finished close. A bound (the deadline, the idle
//! timeout, the drain limit), an error or the tracker's eviction ends any phase with
//! an error ([`Closer::fail`](super::Closer::fail)).
//!
//! [`next`] is pure: the work that finds an event (a read, a look at the send queue,
//! the clock) happens in the phase's step in `mod.rs`; what follows from it, here.

use crate::error::ClosePhase;
use crate::options::PeerEof;

use super::time::{Nanos, NEVER};

/// Where a close stands: one state per phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not started: our FIN goes out at the first poll (or `begin`), with the
    /// retransmission bound set first (`TCP_USER_TIMEOUT`, milliseconds; 0: none).
    Start { user_timeout_ms: u32 },
    /// Our FIN is queued (`GracefulIo::poll_shutdown`), and the owner has not polled
    /// the close yet: the application may still be reading. Nothing is watched and no
    /// clock but the deadline runs; leaving it starts the watch.
    Shut,
    /// Our data and FIN are in flight. The peer's input is drained meanwhile, so that
    /// unread bytes never turn the close into a reset; its silence is not judged (a
    /// peer taking our bytes over a slow path sends nothing but acknowledgements).
    Delivering,
    /// The close cannot end before the peer's EOF ([`PeerEof::Required`], a close no
    /// tracker may end early), and a peer acknowledges our FIN before it sends its own:
    /// the input is drained for the EOF and the acknowledgement looked at after it
    /// ([`Phase::AckWait`]), which spares the close a wakeup for every ACK meanwhile.
    /// Silent since `quiet_since`.
    EofFirst { quiet_since: Nanos },
    /// The peer's EOF was read: only the acknowledgement of our bytes is awaited.
    AckWait,
    /// Our data and FIN are acknowledged; the peer's EOF is awaited (its input drained)
    /// until `until` ([`NEVER`]: as long as the bounds allow). The peer has been silent
    /// since `quiet_since`.
    Lingering { until: Nanos, quiet_since: Nanos },
    /// The platform cannot tell whether our bytes were acknowledged: the peer's EOF is
    /// the only evidence, drained for. Silent since `quiet_since`.
    Draining { quiet_since: Nanos },
    /// The delivery barrier of `wait_acked`: it borrows a stream the application keeps
    /// using, reads nothing, and waits until everything written so far is
    /// acknowledged (then [`Phase::Done`]).
    Barrier,
    /// Ended, with its result returned.
    Done(End),
}

/// What a finished close knew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct End {
    /// Our data and FIN were acknowledged.
    pub(super) acked: bool,
    /// The peer's EOF was read.
    pub(super) peer_eof: bool,
    /// A reset was sent on purpose.
    pub(super) aborted: bool,
    /// The step the close was in when it ended.
    pub(super) step: ClosePhase,
}

/// What the close found; the input of [`next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Event {
    /// `begin`: our FIN was queued; the owner polls later.
    Shutdown,
    /// The owner polls: the close starts watching at `now`, the acknowledgement too
    /// where the platform can tell (`ack_check`), after the peer's EOF if the close
    /// cannot end before it anyway (`eof_first`).
    Watch {
        now: Nanos,
        ack_check: bool,
        eof_first: bool,
    },
    /// The idle bound of a close waiting for the EOF first is due with bytes of ours
    /// still in flight: the peer may be silent because it is taking them.
    InFlight,
    /// Bytes of the peer's were discarded; its last segment came at `at`.
    PeerData { at: Nanos },
    /// The peer's EOF was read.
    PeerEof,
    /// Our data and FIN are acknowledged at `now`. `peer`: what the peer is doing, as
    /// far as the policy needed to look; `grace_end`: when a grace period starting
    /// now ends.
    Acked {
        now: Nanos,
        peer: PeerNow,
        grace_end: Nanos,
    },
    /// The platform cannot tell whether our bytes were acknowledged.
    AckUnknown { now: Nanos },
    /// A lingering close's grace period is over.
    GraceOver,
    /// The reset that loses nothing was sent ([`CloseOptions::abort_when_safe`]).
    ///
    /// [`CloseOptions::abort_when_safe`]: crate::CloseOptions::abort_when_safe
    Aborted,
}

/// What the peer does when our bytes are acknowledged ([`PeerEof::IfSending`] looks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerNow {
    /// Not looked at: the policy does not depend on it.
    Unknown,
    /// Its EOF was already queued (and is now read).
    EofQueued,
    /// It sent something since the close began.
    Sending,
    /// It has been quiet since before the close began.
    Quiet,
}

impl Phase {
    /// Whether the close reads the peer's input in this phase.
    pub(super) fn drains(self) -> bool {
        matches!(
            self,
            Phase::Delivering
                | Phase::EofFirst { .. }
                | Phase::Lingering { .. }
                | Phase::Draining { .. }
        )
    }

    /// Whether our data and FIN are known to be acknowledged.
    pub(super) fn acked(self) -> bool {
        match self {
            Phase::Lingering { .. } => true,
            Phase::Done(end) => end.acked,
            _ => false,
        }
    }

    /// Whether the peer's EOF was read.
    pub(super) fn peer_eof(self) -> bool {
        match self {
            Phase::AckWait => true,
            Phase::Done(end) => end.peer_eof,
            _ => false,
        }
    }

    /// The step of the public API this phase is part of (what a close cut short here
    /// was doing).
    pub(super) fn step(self) -> ClosePhase {
        match self {
            Phase::Start { .. } => ClosePhase::Shutdown,
            Phase::Shut | Phase::Delivering | Phase::AckWait | Phase::Barrier => {
                ClosePhase::AckWait
            }
            Phase::EofFirst { .. } | Phase::Lingering { .. } | Phase::Draining { .. } => {
                ClosePhase::Drain
            }
            Phase::Done(end) => end.step,
        }
    }

    /// The end of a close that finished in this phase on its own (not on an error).
    fn end(self, acked: bool, peer_eof: bool) -> Phase {
        Phase::Done(End {
            acked,
            peer_eof,
            aborted: false,
            step: self.step(),
        })
    }
}

/// The phase after `event` in `phase`, under the peer's-EOF `policy`. Events that do
/// not apply to a phase leave it as it is.
pub(super) fn next(phase: Phase, event: Event, policy: PeerEof) -> Phase {
    use Phase::*;
    match (phase, event) {
        (Done(_), _) => phase,
        (_, Event::Aborted) => Done(End {
            acked: true,
            peer_eof: phase.peer_eof(),
            aborted: true,
            step: phase.step(),
        }),
        (Start { .. }, Event::Shutdown) => Shut,
        (
            Start { .. } | Shut,
            Event::Watch {
                now,
                ack_check,
                eof_first,
            },
        ) => match (ack_check, eof_first) {
            (true, false) => Delivering,
            (true, true) => EofFirst { quiet_since: now },
            (false, _) => Draining { quiet_since: now },
        },
        (EofFirst { .. }, Event::InFlight) => Delivering,
        (Delivering | EofFirst { .. }, Event::PeerEof) => AckWait,
        (Lingering { .. }, Event::PeerEof) => phase.end(true, true),
        (Draining { .. }, Event::PeerEof) => phase.end(false, true),
        (Lingering { until, quiet_since }, Event::PeerData { at }) => Lingering {
            // A peer still sending is drained to its EOF, its grace period over.
            until: if policy == PeerEof::IfSending {
                NEVER
            } else {
                until
            },
            quiet_since: quiet_since.max(at),
        },
        (Draining { quiet_since }, Event::PeerData { at }) => Draining {
            quiet_since: quiet_since.max(at),
        },
        (EofFirst { quiet_since }, Event::PeerData { at }) => EofFirst {
            quiet_since: quiet_since.max(at),
        },
        (AckWait, Event::Acked { .. }) => phase.end(true, true),
        (
            Delivering,
            Event::Acked {
                now,
                peer,
                grace_end,
            },
        ) => match (policy, peer) {
            (PeerEof::NotRequired, _) | (PeerEof::IfSending, PeerNow::EofQueued) => {
                phase.end(true, peer == PeerNow::EofQueued)
            }
            (PeerEof::Briefly, _) | (PeerEof::IfSending, PeerNow::Quiet) => Lingering {
                until: grace_end,
                quiet_since: now,
            },
            (PeerEof::Required | PeerEof::IfSending, _) => Lingering {
                until: NEVER,
                quiet_since: now,
            },
        },
        (Delivering, Event::AckUnknown { now }) => Draining { quiet_since: now },
        (AckWait, Event::AckUnknown { .. }) => phase.end(false, true),
        (Lingering { .. }, Event::GraceOver) => phase.end(true, false),
        _ => phase,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Nanos = 7;
    const G: Nanos = 9;

    fn done(acked: bool, peer_eof: bool, step: ClosePhase) -> Phase {
        Phase::Done(End {
            acked,
            peer_eof,
            aborted: false,
            step,
        })
    }

    fn acked(peer: PeerNow) -> Event {
        Event::Acked {
            now: L,
            peer,
            grace_end: G,
        }
    }

    fn watch(ack_check: bool, eof_first: bool) -> Event {
        Event::Watch {
            now: L,
            ack_check,
            eof_first,
        }
    }

    /// Every transition, one row each: (phase, event, policy) → phase.
    #[test]
    #[rustfmt::skip]
    fn the_transition_table() {
        use ClosePhase::{AckWait as A, Drain as D};
        use Event as E;
        use PeerEof::*;
        use Phase::*;
        let linger = |until| Lingering { until, quiet_since: L };
        let eof_first = EofFirst { quiet_since: L };
        let draining = Draining { quiet_since: L };
        let start = Start { user_timeout_ms: 0 };
        let rows = [
            (start, E::Shutdown, Required, Shut),
            (start, watch(true, false), Required, Delivering),
            (Shut, watch(true, false), Required, Delivering),
            (Shut, watch(true, true), Required, eof_first),
            (Shut, watch(false, false), Required, draining),
            (Shut, watch(false, true), Required, draining),
            (Delivering, E::PeerEof, Required, AckWait),
            (eof_first, E::PeerEof, Required, AckWait),
            (eof_first, E::InFlight, Required, Delivering),
            (eof_first, E::PeerData { at: 8 }, Required, EofFirst { quiet_since: 8 }),
            (AckWait, acked(PeerNow::Unknown), Required, done(true, true, A)),
            (AckWait, E::AckUnknown { now: L }, Required, done(false, true, A)),
            (Delivering, E::AckUnknown { now: L }, Required, draining),
            (Delivering, acked(PeerNow::Unknown), NotRequired, done(true, false, A)),
            (Delivering, acked(PeerNow::Unknown), Required, linger(NEVER)),
            (Delivering, acked(PeerNow::Unknown), Briefly, linger(G)),
            (Delivering, acked(PeerNow::Sending), IfSending, linger(NEVER)),
            (Delivering, acked(PeerNow::Quiet), IfSending, linger(G)),
            (Delivering, acked(PeerNow::EofQueued), IfSending, done(true, true, A)),
            (linger(G), E::PeerEof, Briefly, done(true, true, D)),
            (linger(G), E::GraceOver, Briefly, done(true, false, D)),
            (linger(G), E::PeerData { at: 8 }, Briefly, Lingering { until: G, quiet_since: 8 }),
            (linger(G), E::PeerData { at: 8 }, IfSending, Lingering { until: NEVER, quiet_since: 8 }),
            // The peer's last segment, read late, never moves the clock back.
            (linger(G), E::PeerData { at: 3 }, Briefly, linger(G)),
            (draining, E::PeerData { at: 8 }, Required, Draining { quiet_since: 8 }),
            (draining, E::PeerEof, Required, done(false, true, D)),
            // Data while delivering does not start a silence clock: there is none.
            (Delivering, E::PeerData { at: 8 }, IfSending, Delivering),
            // Nothing moves a finished close.
            (done(true, true, A), E::PeerEof, Required, done(true, true, A)),
            (done(true, true, A), E::Aborted, Required, done(true, true, A)),
            // Events that do not apply leave the phase alone.
            (Shut, E::PeerEof, Required, Shut),
            (AckWait, E::GraceOver, Required, AckWait),
            (Delivering, E::GraceOver, Briefly, Delivering),
            (draining, E::InFlight, Required, draining),
            (Delivering, E::InFlight, Required, Delivering),
            (Barrier, E::PeerEof, Required, Barrier),
        ];
        for (phase, event, policy, want) in rows {
            assert_eq!(next(phase, event, policy), want, "{phase:?} + {event:?} ({policy:?})");
        }
        // The reset that loses nothing ends any live phase, acknowledged.
        for phase in [start, Shut, Delivering, eof_first, AckWait, linger(G), draining] {
            let Done(end) = next(phase, E::Aborted, Required) else {
                panic!("{phase:?} did not end");
            };
            assert!(end.aborted && end.acked, "{phase:?}");
            assert_eq!(end.peer_eof, phase == AckWait);
            assert_eq!(end.step, phase.step());
        }
    }

    /// What the phases say of themselves: a finished close keeps the step it ended in.
    #[test]
    fn phases_report_what_they_know() {
        let ended = done(true, false, ClosePhase::AckWait);
        assert_eq!(
            ended.step(),
            ClosePhase::AckWait,
            "an acknowledged end keeps its step"
        );
        assert!(ended.acked() && !ended.peer_eof());
        assert!(Phase::AckWait.peer_eof() && !Phase::AckWait.acked());
        assert_eq!(Phase::Shut.step(), ClosePhase::AckWait);
        assert!(!Phase::Shut.drains() && !Phase::AckWait.drains());
    }
}
