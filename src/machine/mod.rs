//! The close state machine shared by every public entry point.
//!
//! It borrows the socket on each poll instead of owning it, so that the owning future
//! ([`GracefulClose`](crate::GracefulClose)), the background close of a dropped
//! [`GracefulIo`](crate::GracefulIo) and the delivery barrier
//! ([`WaitAcked`](crate::WaitAcked)) can all drive the same code.
//!
//! A close ([`Mode::Close`]) owns its stream: it drains it, uses the stream's own
//! readiness and goes through the phases of [`phase`], one at a time. The barrier
//! ([`Mode::Barrier`]) borrows a stream the application keeps using: it never reads it
//! and never touches its cached readiness; it looks at the send queue on a timer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::error::{classify, CloseError, CloseErrorKind, ClosePhase};
use crate::sys::{self, SocketKind};
use crate::tracker::Token;
use crate::{CloseOptions, CloseReport, OnTimeout, PeerEof, SafeAbort};

mod abort;
mod ack;
mod barrier;
mod drain;
mod phase;
mod socket;
mod time;

pub(crate) use self::abort::disarm_linger;
use self::ack::Ack;
use self::drain::DrainEnd;
pub(crate) use self::drain::{discard_ready, rebatch, Handover, MAX_DISCARD, MAX_READS_PER_POLL};
use self::phase::Phase;
pub(crate) use self::socket::Socket;
pub(crate) use self::time::after;
use self::time::{millis_ceil, nanos, Nanos, FAR_FUTURE, NEVER};

/// The most re-checks a close takes by yielding to the scheduler, for acknowledgements
/// due sooner than Tokio's timer can wait (`ack::recheck_step`); then the timer.
const MAX_YIELDS: u8 = 16;

/// Whether the machine closes the stream or only waits for the acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Half-close, drain as the options say, wait for the ACK.
    Close,
    /// Only wait until everything written so far is acknowledged (a delivery barrier).
    Barrier,
}

/// What a close has learnt so far, one bit each.
#[derive(Debug, Clone, Copy, Default)]
struct Flags(u16);

impl Flags {
    /// Our data and FIN are acknowledged (or, for the barrier, our data).
    const ACKED: u16 = 1;
    /// We read the peer's EOF.
    const PEER_EOF: u16 = 1 << 1;
    /// A reset was sent ([`OnTimeout::Abort`]).
    const ABORTED: u16 = 1 << 3;
    /// Our `shutdown` succeeded and the send queue was not looked at since.
    const FRESH: u16 = 1 << 4;
    /// The drain asked the kernel to wake it only for larger batches.
    const BATCHED: u16 = 1 << 5;
    /// Our `shutdown(SHUT_WR)` succeeded: a FIN was queued after our data.
    const FIN_SENT: u16 = 1 << 6;
    /// The socket is TCP by its protocol (`sys::is_tcp`), not only by its Rust type:
    /// the drain may discard without copying.
    const TCP: u16 = 1 << 7;
    /// The protocol was asked (once, when the drain first found bytes to discard).
    const PROTOCOL_KNOWN: u16 = 1 << 8;
    /// [`CloseOptions::abort_when_safe`], not yet looked at: reset at the owner's first
    /// poll if that loses nothing (cleared by that look).
    const ABORT_WHEN_SAFE: u16 = 1 << 9;

    fn has(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    fn set(&mut self, flag: u16) {
        self.0 |= flag;
    }

    /// Clears `flag`, returning whether it was set.
    fn take(&mut self, flag: u16) -> bool {
        let was = self.has(flag);
        self.0 &= !flag;
        was
    }
}

/// The state of one close. Poll it with the same socket every time.
///
/// Kept small (112 bytes on 64-bit targets): a server may hold thousands of pending
/// closes, each in its own task. Points in time are [`Nanos`] after `start`; the options
/// are kept in the resolved, compact form the close needs.
#[derive(Debug)]
pub(crate) struct Closer {
    /// The first poll; every `Nanos` point below counts from it.
    start: Instant,
    /// The total deadline (the `timeout` option).
    deadline: Nanos,
    /// The longest silence while waiting for the peer's EOF; [`NEVER`]: none.
    idle_timeout: Nanos,
    /// When the current silence ends the drain; [`NEVER`]: no idle bound.
    idle_deadline: Nanos,
    /// The next safety-net re-check of the send queue.
    next_poll: Nanos,
    drain_limit: u64,
    drained: u64,
    /// Armed the first time the close has to wait on time.
    timer: Option<Pin<Box<Sleep>>>,
    /// What adapters and borrowed streams add (boxed: a bare close does without).
    extra: Option<Box<Extra>>,
    /// The safety-net re-check interval, whole milliseconds (Tokio's timer resolution).
    poll_interval_ms: u32,
    /// `TCP_USER_TIMEOUT` to set when the close starts, milliseconds; 0: none.
    user_timeout_ms: u32,
    /// How many times the fast re-check has doubled (`ack::recheck_step`).
    poll_shift: u8,
    /// How many times the safety-net re-check has doubled (`ack::safety_step`).
    safety_shift: u8,
    /// Re-checks taken by yielding, for those due sooner than Tokio's timer can wait.
    yields: u8,
    mode: Mode,
    phase: Phase,
    peer_eof_policy: PeerEof,
    on_timeout: OnTimeout,
    flags: Flags,
}

/// The adapters' part of a close.
#[derive(Debug, Default)]
struct Extra {
    /// The registration with a `CloseTracker`, if any; dropped when the closer is.
    token: Option<Token>,
    /// For the report.
    peer_addr: Option<std::net::SocketAddr>,
    /// What [`CloseOptions::abort_when_safe`] found at the start.
    safe_abort: Option<SafeAbort>,
    /// Input the connection discarded before the close (an abandoned upload), for the
    /// report.
    discarded_before: u64,
}

impl Closer {
    /// A close with `opts`, already resolved for where it is used.
    #[inline]
    pub(crate) fn new(opts: CloseOptions, mode: Mode) -> Self {
        Closer {
            start: Instant::now(),
            deadline: nanos(opts.timeout),
            idle_timeout: opts.idle_timeout.map_or(NEVER, nanos),
            idle_deadline: NEVER,
            next_poll: 0,
            drain_limit: opts
                .drain_limit
                .unwrap_or(CloseOptions::DEFAULT_DRAIN_LIMIT),
            drained: 0,
            timer: None,
            extra: None,
            poll_interval_ms: millis_ceil(opts.poll_interval),
            user_timeout_ms: opts.user_timeout_ms().unwrap_or(0),
            poll_shift: 0,
            safety_shift: 0,
            yields: 0,
            mode,
            phase: Phase::Start,
            peer_eof_policy: opts.peer_eof.unwrap_or_default(),
            on_timeout: opts.on_timeout,
            flags: Flags(if opts.abort_when_safe {
                Flags::ABORT_WHEN_SAFE
            } else {
                0
            }),
        }
    }

    /// Registers the close with a tracker and records the peer's address, for the
    /// adapters.
    pub(crate) fn tracked(
        mut self,
        token: Option<Token>,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        let extra = self.extra.get_or_insert_with(Box::default);
        extra.token = token;
        extra.peer_addr = peer;
        self
    }

    /// Takes over a discard of the connection's input that ran before the close (an
    /// abandoned upload): its bytes count in the report (not in the drain limit: they
    /// were bounded on their own), its batches and what it learnt of the socket stay.
    pub(crate) fn taking_over(mut self, before: Handover) -> Self {
        if before.discarded > 0 {
            self.extra.get_or_insert_with(Box::default).discarded_before = before.discarded;
        }
        if before.batched {
            self.flags.set(Flags::BATCHED);
        }
        if let Some(tcp) = before.tcp {
            self.flags.set(Flags::PROTOCOL_KNOWN);
            if tcp {
                self.flags.set(Flags::TCP);
            }
        }
        self
    }

    /// Whether the close ended with a reset on purpose.
    pub(crate) fn aborted(&self) -> bool {
        self.flags.has(Flags::ABORTED)
    }

    fn acked(&self) -> bool {
        self.flags.has(Flags::ACKED)
    }

    /// The close's registration with a tracker, if any.
    fn token(&self) -> Option<&Token> {
        self.extra.as_ref().and_then(|e| e.token.as_ref())
    }

    fn peer_eof(&self) -> bool {
        self.flags.has(Flags::PEER_EOF)
    }

    /// Nanoseconds since the start.
    fn now(&self) -> Nanos {
        nanos(Instant::now().saturating_duration_since(self.start))
    }

    /// The instant of `t`.
    fn instant(&self, t: Nanos) -> Instant {
        if t == NEVER {
            after(self.start, FAR_FUTURE)
        } else {
            after(self.start, Duration::from_nanos(t))
        }
    }

    /// The step the close is in: what a close cut short was doing.
    pub(crate) fn phase(&self) -> ClosePhase {
        match self.phase {
            Phase::Start => ClosePhase::Shutdown,
            Phase::Delivering | Phase::AckWait => ClosePhase::AckWait,
            Phase::Draining | Phase::Lingering { .. } => ClosePhase::Drain,
            Phase::Done if self.acked() => ClosePhase::Drain,
            Phase::Done => ClosePhase::AckWait,
        }
    }

    /// What the close did so far.
    pub(crate) fn report(&self) -> CloseReport {
        let acked = self.acked();
        CloseReport {
            elapsed: if self.phase == Phase::Start {
                Duration::ZERO
            } else {
                self.start.elapsed()
            },
            drained_bytes: self.drained + self.extra.as_ref().map_or(0, |e| e.discarded_before),
            peer_eof: self.peer_eof(),
            acked,
            unacked_bytes: acked.then_some(0),
            aborted: self.aborted(),
            peer_addr: self.extra.as_ref().and_then(|e| e.peer_addr),
            safe_abort: self.extra.as_ref().and_then(|e| e.safe_abort),
        }
    }

    /// Sends our FIN (`shutdown(SHUT_WR)`) if the close has not started yet, and
    /// returns: the rest of the close waits for [`poll_close`](Self::poll_close). On an
    /// error the close has ended (and reports it).
    pub(crate) fn begin<S: Socket>(&mut self, io: &S) -> Result<(), CloseError> {
        if self.phase != Phase::Start {
            return Ok(());
        }
        self.start(io)
            .map_err(|(kind, e)| self.fail(io, kind, ClosePhase::Shutdown, Some(e)))
    }

    /// Drives the close. A close ([`Mode::Close`]) owns the stream: once this returned
    /// `Ready` the socket should be dropped. The barrier only borrows it and runs its
    /// own loop ([`barrier`]).
    ///
    /// Each pass runs the current phase's work (look at the send queue, drain), moves
    /// to the next phase on what it found, then checks the bounds and waits.
    pub(crate) fn poll_close<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<CloseReport, CloseError>> {
        if self.mode == Mode::Barrier {
            return self.poll_barrier(io, cx);
        }
        if self.phase != Phase::Done
            && self.flags.take(Flags::ABORT_WHEN_SAFE)
            && self.abort_if_safe(io)
        {
            return Poll::Ready(Ok(self.report()));
        }
        // The first pass of the first poll runs at the start: its time bounds need no
        // second reading of the clock.
        let mut at_start = false;
        match self.phase {
            Phase::Done => return Poll::Ready(Err(self.polled_after_done())),
            Phase::Start => {
                if let Err((kind, e)) = self.start(io) {
                    return Poll::Ready(Err(self.fail(io, kind, ClosePhase::Shutdown, Some(e))));
                }
                at_start = true;
            }
            _ => {}
        }
        loop {
            if self.token().is_some_and(|t| t.evicted(cx.waker())) {
                let phase = self.phase();
                return Poll::Ready(Err(self.fail(io, CloseErrorKind::Evicted, phase, None)));
            }
            let phase = self.phase;
            // The peer's side: drain what it still sends, up to its EOF.
            if self.phase.drains() {
                match self.poll_drain(io, cx) {
                    Poll::Ready(Ok(DrainEnd::Eof)) => self.on_peer_eof(),
                    Poll::Ready(Ok(DrainEnd::OverLimit)) => {
                        let kind = CloseErrorKind::DrainLimit;
                        return Poll::Ready(Err(self.fail(io, kind, ClosePhase::Drain, None)));
                    }
                    Poll::Ready(Err(e)) => {
                        let kind = classify(&e);
                        return Poll::Ready(Err(self.fail(io, kind, ClosePhase::Drain, Some(e))));
                    }
                    Poll::Pending => {}
                }
            }
            // Our side: acknowledged, still in flight, or nobody can tell. Looked at
            // after the drain, so that a close that ends here has read what came.
            let mut edge_armed = false;
            if self.phase.watches_ack() {
                match self.poll_ack(io, cx) {
                    Ok(Ack::Done) => {
                        if let Err(kind) = self.on_acked(io) {
                            return Poll::Ready(Err(self.fail(io, kind, ClosePhase::Drain, None)));
                        }
                    }
                    Ok(Ack::Pending { edge_armed: armed }) => edge_armed = armed,
                    Ok(Ack::Unknown) => self.on_ack_unknown(),
                    Err(e) => {
                        let kind = classify(&e);
                        return Poll::Ready(Err(self.fail(io, kind, ClosePhase::AckWait, Some(e))));
                    }
                }
            }
            match self.phase {
                Phase::Done => return Poll::Ready(Ok(self.report())),
                // A new phase has its own work to do first.
                next if next != phase => continue,
                _ => {}
            }

            // The bounds.
            let now = if std::mem::take(&mut at_start) {
                0
            } else {
                self.now()
            };
            if now >= self.deadline {
                let phase = self.phase();
                let kind = CloseErrorKind::TimedOut;
                return Poll::Ready(Err(self.fail(io, kind, phase, None)));
            }
            let idle = if self.phase.drains() {
                self.idle_deadline
            } else {
                NEVER
            };
            if now >= idle {
                match self.recheck_idle(io, now) {
                    Ok(None) => continue, // the peer was not silent after all
                    Ok(Some(kind)) => {
                        return Poll::Ready(Err(self.fail(io, kind, ClosePhase::Drain, None)));
                    }
                    Err(e) => {
                        let kind = classify(&e);
                        return Poll::Ready(Err(self.fail(io, kind, ClosePhase::Drain, Some(e))));
                    }
                }
            }
            let mut wake_at = self.deadline.min(idle);
            if let Phase::Lingering { until } = self.phase {
                if now >= until {
                    // The peer had its chance to close its side; ours is delivered.
                    self.end();
                    return Poll::Ready(Ok(self.report()));
                }
                wake_at = wake_at.min(until);
            }

            // Wait until the next bound or re-check of the send queue.
            let mut fine = false;
            if self.phase.watches_ack() {
                let (at, precise) = self.recheck_at(io, now, edge_armed);
                if at < wake_at {
                    wake_at = at;
                    fine = precise;
                }
            }
            if self.poll_wait(cx, now, wake_at, fine).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Waits until `wake_at` (`now` being the present point). A re-check due within a
    /// round trip (`fine`), sooner than Tokio's timer can wait (it would end at its
    /// next millisecond), looks again once the tasks ready now have run instead, a few
    /// times at most; everything else waits on the timer.
    fn poll_wait(
        &mut self,
        cx: &mut Context<'_>,
        now: Nanos,
        wake_at: Nanos,
        fine: bool,
    ) -> Poll<()> {
        if fine && wake_at.saturating_sub(now) < nanos(time::TOKIO_TICK) && self.yields < MAX_YIELDS
        {
            self.yields += 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.poll_timer(cx, wake_at)
    }

    /// Waits on Tokio's timer until `wake_at`, arming it the first time.
    ///
    /// # Panics
    ///
    /// Where the runtime has no time driver, as `tokio::time::sleep_until` does.
    fn poll_timer(&mut self, cx: &mut Context<'_>, wake_at: Nanos) -> Poll<()> {
        let wake_at = self.instant(wake_at);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake_at)));
        if timer.deadline() != wake_at {
            timer.as_mut().reset(wake_at);
        }
        timer.as_mut().poll(cx)
    }

    /// The error of a close polled again after it returned its result.
    #[cold]
    fn polled_after_done(&self) -> CloseError {
        let e = io::Error::other("graceful close polled after it completed");
        CloseError::new(CloseErrorKind::Io, self.phase(), self.report(), Some(e))
    }

    /// First poll: apply `TCP_USER_TIMEOUT`, send our FIN.
    fn start<S: Socket>(&mut self, io: &S) -> Result<(), (CloseErrorKind, io::Error)> {
        if tokio::runtime::Handle::try_current().is_err() {
            let why = "a graceful close must be polled inside a Tokio runtime";
            return Err((CloseErrorKind::Io, io::Error::other(why)));
        }
        self.start = Instant::now();
        self.idle_deadline = self.idle_timeout;
        self.next_poll = 0;
        self.phase = self.first_phase();

        if self.mode == Mode::Barrier {
            return Ok(());
        }
        let sock = io.as_sock();
        if self.user_timeout_ms > 0 && io.kind() == SocketKind::Tcp {
            sys::set_user_timeout(sock, self.user_timeout_ms)
                .map_err(|e| (CloseErrorKind::Io, e))?;
        }
        match socket2::SockRef::from(&sock).shutdown(std::net::Shutdown::Write) {
            Ok(()) => {
                self.flags.set(Flags::FRESH);
                self.flags.set(Flags::FIN_SENT);
                Ok(())
            }
            // Already shut down, or the connection is already gone: the drain and the
            // ACK check tell which, with SO_ERROR for a reset that came first.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                match socket2::SockRef::from(&sock).take_error() {
                    Ok(Some(err)) => Err((classify(&err), err)),
                    _ => Ok(()),
                }
            }
            Err(e) => Err((classify(&e), e)),
        }
    }

    /// Marks the close done and lets go of what it waited with.
    fn end(&mut self) {
        self.phase = Phase::Done;
        self.timer = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pending close is one task per connection: its state must stay small enough
    /// that `GracefulClose<TcpStream>` (a 32-byte stream and this) plus Tokio's task
    /// header and trailer fit one 256-byte task cell.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn closer_fits_its_budget() {
        assert!(
            std::mem::size_of::<Closer>() <= 112,
            "Closer is {} bytes",
            std::mem::size_of::<Closer>()
        );
    }
}
