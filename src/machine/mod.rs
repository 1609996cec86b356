//! The close state machine shared by every public entry point.
//!
//! It borrows the socket on each poll instead of owning it, so that the owning future
//! ([`GracefulClose`](crate::GracefulClose)), the background close of a dropped
//! [`GracefulIo`](crate::GracefulIo) and the delivery barrier
//! ([`WaitAcked`](crate::WaitAcked)) can all drive the same code.
//!
//! A close owns its stream: it drains it, uses the stream's own readiness and goes
//! through the phases of [`phase`], one at a time. The barrier ([`Phase::Barrier`])
//! borrows a stream the application keeps using: it never reads it and never touches
//! its cached readiness; it looks at the send queue on a timer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::error::{classify, CloseError, CloseErrorKind, ClosePhase};
use crate::options::{CloseOptions, OnTimeout, PeerEof};
use crate::report::{CloseReport, SafeAbort};
use crate::socket::Socket;
use crate::sys::{self, Activity, SocketKind};

mod abort;
mod ack;
mod barrier;
mod closable;
mod drain;
mod phase;
mod time;

use self::ack::Ack;
pub(crate) use self::closable::Closable;
use self::drain::Drain;
use self::phase::{End, Event, PeerNow, Phase};
pub(crate) use self::time::after;
use self::time::{millis_ceil, nanos, Nanos, FAR_FUTURE, NEVER};

/// The most re-checks a close takes by yielding to the scheduler, for acknowledgements
/// due sooner than Tokio's timer can wait (`ack::recheck_step`); then the timer.
const MAX_YIELDS: u8 = 16;

/// How long a connection with nothing more to say is given to close its side after our
/// FIN was acknowledged ([`PeerEof::IfSending`], [`PeerEof::Briefly`]): four round
/// trips, within these bounds. A peer that answers our FIN (its own FIN, a TLS
/// `close_notify`) does so within a round trip or two; closing before that would reset
/// its answer.
const GRACE_MIN: Duration = Duration::from_millis(10);
const GRACE_MAX: Duration = Duration::from_secs(1);

/// The state of one close. Poll it with the same socket every time.
///
/// Kept small (112 bytes on 64-bit targets): a server may hold thousands of pending
/// closes, each in its own task. Points in time are [`Nanos`] after `start`;
/// the options are kept in the resolved, compact form the close needs. What the
/// connection around it owns (a tracker's registration, the peer's address, input
/// discarded before the close) stays with the connection.
#[derive(Debug)]
pub(crate) struct Closer {
    /// When our FIN was queued (or the barrier began); every `Nanos` point counts from
    /// it.
    start: Instant,
    /// The total deadline (the `timeout` option), from `start`.
    deadline: Nanos,
    /// The longest silence of the peer's in a phase that watches it, whole
    /// milliseconds (Tokio's timer resolution), rounded up; `u32::MAX`: none.
    idle_ms: u32,
    /// The next safety-net re-check of the send queue.
    next_poll: Nanos,
    drain: Drain,
    /// Armed the first time the close has to wait on time.
    timer: Option<Pin<Box<Sleep>>>,
    /// The safety-net re-check interval, whole milliseconds (Tokio's timer resolution).
    poll_interval_ms: u32,
    /// How many times the fast re-check has doubled (`ack::recheck_step`).
    poll_shift: u8,
    /// How many times the safety-net re-check has doubled (`ack::safety_step`).
    safety_shift: u8,
    /// Re-checks taken by yielding, for those due sooner than Tokio's timer can wait.
    yields: u8,
    phase: Phase,
    peer_eof_policy: PeerEof,
    on_timeout: OnTimeout,
    /// [`CloseOptions::abort_when_safe`]: looked at when the watch starts.
    abort_when_safe: bool,
    /// A tracker's cap may end the close once it lingers: it must see the
    /// acknowledgement while it drains.
    evictable: bool,
    /// Our `shutdown(SHUT_WR)` succeeded: a FIN was queued after our data.
    fin_sent: bool,
    /// What [`CloseOptions::abort_when_safe`] found (boxed: most closes never ask).
    safe_abort: Option<Box<SafeAbort>>,
}

/// What one pass of a phase found: the close moves on, ends, or waits.
#[derive(Debug)]
enum Step {
    /// An event: the next phase follows from it ([`phase::next`]).
    Next(Event),
    /// The close ends with this error, in this step.
    Fail(CloseErrorKind, ClosePhase, Option<io::Error>),
    /// Nothing to do before `at` (or a wakeup of the stream's); `fine`: the time is a
    /// re-check within a round trip, which may come sooner than Tokio's timer.
    Wait { at: Nanos, fine: bool },
    /// The peer keeps the socket full: other tasks get a turn first.
    Yield,
}

/// One pass's view of the socket: `TCP_INFO` read at most once, when first needed.
#[derive(Debug, Default)]
struct Look {
    activity: Option<Option<Activity>>,
}

impl Look {
    fn activity<S: Socket>(&mut self, io: &S) -> Option<Activity> {
        *self.activity.get_or_insert_with(|| match io.kind() {
            SocketKind::Tcp => io.activity().ok().flatten(),
            #[cfg(unix)]
            SocketKind::Unix => None,
        })
    }
}

impl Closer {
    /// A close with `opts`, already resolved for where it is used.
    #[inline]
    pub(crate) fn new(opts: CloseOptions) -> Self {
        Closer {
            start: Instant::now(),
            deadline: nanos(opts.timeout),
            idle_ms: opts.idle_timeout.map_or(u32::MAX, |d| match d {
                Duration::ZERO => 0,
                d => millis_ceil(d),
            }),
            next_poll: 0,
            drain: Drain::new(
                opts.drain_limit
                    .unwrap_or(CloseOptions::DEFAULT_DRAIN_LIMIT),
            ),
            timer: None,
            poll_interval_ms: millis_ceil(opts.poll_interval),
            poll_shift: 0,
            safety_shift: 0,
            yields: 0,
            phase: Phase::Start {
                user_timeout_ms: opts.user_timeout_ms().unwrap_or(0),
            },
            peer_eof_policy: opts.peer_eof.unwrap_or_default(),
            on_timeout: opts.on_timeout,
            abort_when_safe: opts.abort_when_safe,
            evictable: false,
            fin_sent: false,
            safe_abort: None,
        }
    }

    /// A close that a tracker's cap may end early once it lingers.
    pub(crate) fn evictable(mut self) -> Self {
        self.evictable = true;
        self
    }

    /// Whether the close ended with a reset on purpose.
    pub(crate) fn aborted(&self) -> bool {
        matches!(self.phase, Phase::Done(end) if end.aborted)
    }

    /// Whether the close lingers: everything we sent is acknowledged and it waits for
    /// the peer's EOF (the only closes a tracker's cap may end early).
    pub(crate) fn lingering(&self) -> bool {
        matches!(self.phase, Phase::Lingering { .. })
    }

    /// When the close's timer will wake it, if it is armed (for the simulation).
    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn timer_deadline(&self) -> Option<Instant> {
        self.timer.as_ref().map(|t| t.deadline())
    }

    /// When the close's deadline is, as an instant (for the simulation).
    #[cfg(all(test, target_os = "linux"))]
    pub(crate) fn deadline_instant(&self) -> Instant {
        self.instant(self.deadline)
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
        self.phase.step()
    }

    /// What the close did so far.
    pub(crate) fn report(&self) -> CloseReport {
        let acked = self.phase.acked();
        CloseReport {
            elapsed: if matches!(self.phase, Phase::Start { .. }) {
                Duration::ZERO
            } else {
                self.start.elapsed()
            },
            drained_bytes: self.drain.drained,
            peer_eof: self.phase.peer_eof(),
            acked,
            unacked_bytes: acked.then_some(0),
            aborted: self.aborted(),
            peer_addr: None,
            safe_abort: self.safe_abort.as_deref().copied(),
        }
    }

    /// Sends our FIN (`shutdown(SHUT_WR)`) if the close has not started yet, and
    /// returns: the rest of the close waits for [`poll_close`](Self::poll_close), which
    /// starts watching the peer then. On an error the close has ended (and reports it).
    pub(crate) fn begin<S: Socket>(&mut self, io: &S) -> Result<(), CloseError> {
        let Phase::Start { user_timeout_ms } = self.phase else {
            return Ok(());
        };
        match self.shut(io, user_timeout_ms) {
            Ok(()) => {
                self.apply(Event::Shutdown);
                Ok(())
            }
            Err((kind, e)) => Err(self.fail(io, kind, ClosePhase::Shutdown, Some(e))),
        }
    }

    /// Drives the close. A close owns the stream: once this returned `Ready` the socket
    /// should be dropped. The barrier only borrows it and runs its own loop
    /// ([`barrier`]).
    ///
    /// Each pass reads the clock once, runs the current phase's step, then moves to
    /// the phase its event leads to ([`phase::next`]), ends, or waits on the stream's
    /// readiness and the timer, never past the deadline.
    pub(crate) fn poll_close<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<CloseReport, CloseError>> {
        if self.phase == Phase::Barrier {
            return self.poll_barrier(io, cx);
        }
        loop {
            let now = self.now();
            let mut look = Look::default();
            let step = match self.phase {
                Phase::Start { .. } | Phase::Shut => self.watch(io),
                Phase::Delivering => match self.drain_step(io, cx, now) {
                    Some(step) => step,
                    None => self.ack_step(io, cx, now, &mut look),
                },
                Phase::AckWait => self.ack_step(io, cx, now, &mut look),
                Phase::EofFirst { .. } | Phase::Lingering { .. } | Phase::Draining { .. } => {
                    self.linger_step(io, cx, now, &mut look)
                }
                Phase::Done(_) => return Poll::Ready(Err(self.polled_after_done())),
                Phase::Barrier => unreachable!("the barrier runs its own loop"),
            };
            match step {
                Step::Next(event) => {
                    self.apply(event);
                    if let Phase::Done(_) = self.phase {
                        return Poll::Ready(Ok(self.report()));
                    }
                }
                Step::Fail(kind, step, source) => {
                    return Poll::Ready(Err(self.fail(io, kind, step, source)));
                }
                _ if now >= self.deadline => {
                    let (kind, step) = (CloseErrorKind::TimedOut, self.phase.step());
                    return Poll::Ready(Err(self.fail(io, kind, step, None)));
                }
                Step::Yield => {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Step::Wait { at, fine } => {
                    if self
                        .poll_wait(cx, now, at.min(self.deadline), fine)
                        .is_pending()
                    {
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// [`Phase::Start`] or [`Phase::Shut`]: the owner polls, so the close starts
    /// watching: the reset that loses nothing if asked for, our FIN if not sent yet.
    fn watch<S: Socket>(&mut self, io: &S) -> Step {
        let start = match self.phase {
            Phase::Start { user_timeout_ms } => Some(user_timeout_ms),
            _ => None,
        };
        let fresh = start.is_some();
        if self.abort_when_safe && self.abort_if_safe(io) {
            return Step::Next(Event::Aborted);
        }
        if let Some(user_timeout_ms) = start {
            if let Err((kind, e)) = self.shut(io, user_timeout_ms) {
                return Step::Fail(kind, ClosePhase::Shutdown, Some(e));
            }
        }
        let now = if fresh { 0 } else { self.now() };
        Step::Next(Event::Watch {
            now,
            ack_check: sys::ACK_CHECK,
            // A close a tracker may end early must see when it starts lingering.
            eof_first: self.peer_eof_policy == PeerEof::Required && !self.evictable,
        })
    }

    /// [`Phase::Delivering`] (after its drain) and [`Phase::AckWait`]: the send queue.
    fn ack_step<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
        now: Nanos,
        look: &mut Look,
    ) -> Step {
        match self.poll_ack(io, cx, look) {
            Ok(Ack::Done) => self.acked_step(io, now, look),
            Ok(Ack::Unknown) => Step::Next(Event::AckUnknown { now }),
            Ok(Ack::Pending { edge_armed }) => {
                let (at, fine) = self.recheck_at(io, now, edge_armed, look);
                Step::Wait { at, fine }
            }
            Err(e) => Step::Fail(classify(&e), ClosePhase::AckWait, Some(e)),
        }
    }

    /// Our data and FIN are acknowledged: what the policy needs to know of the peer.
    fn acked_step<S: Socket>(&mut self, io: &S, now: Nanos, look: &mut Look) -> Step {
        let policy = self.peer_eof_policy;
        let delivering = self.phase == Phase::Delivering;
        if delivering && policy == PeerEof::NotRequired {
            // The close ends now: nothing may be left unread.
            if let Err(step) = self.sweep(io, now, look) {
                return step;
            }
        }
        let peer = if delivering && policy == PeerEof::IfSending {
            match self.peer_now(io, now, look) {
                Ok(peer) => peer,
                Err(step) => return step,
            }
        } else {
            PeerNow::Unknown
        };
        let grace_end = if delivering && (policy == PeerEof::Briefly || peer == PeerNow::Quiet) {
            now.saturating_add(nanos(grace(look.activity(io).map(|a| a.rtt))))
        } else {
            NEVER
        };
        Step::Next(Event::Acked {
            now,
            peer,
            grace_end,
        })
    }

    /// [`Phase::EofFirst`], [`Phase::Lingering`] and [`Phase::Draining`]: the drain, the
    /// grace period, the peer's silence.
    fn linger_step<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
        now: Nanos,
        look: &mut Look,
    ) -> Step {
        if let Some(step) = self.drain_step(io, cx, now) {
            return step;
        }
        let until = |phase| match phase {
            Phase::Lingering { until, .. } => until,
            _ => NEVER,
        };
        if now >= until(self.phase) {
            // The close ends now, unless what a batch held back shows the peer still
            // sending: nothing may be left unread.
            if let Err(step) = self.sweep(io, now, look) {
                return step;
            }
            if now >= until(self.phase) {
                return Step::Next(Event::GraceOver);
            }
        }
        let until = until(self.phase);
        match self.idle_check(io, now, look) {
            Ok(due) => Step::Wait {
                at: until.min(due),
                fine: false,
            },
            Err(step) => step,
        }
    }

    /// Moves to the phase `event` leads to; a finished close lets go of its timer.
    fn apply(&mut self, event: Event) {
        self.phase = phase::next(self.phase, event, self.peer_eof_policy);
        if let Phase::Done(_) = self.phase {
            self.timer = None;
        }
    }

    /// Ends the close as `end` says.
    fn end(&mut self, end: End) {
        self.phase = Phase::Done(end);
        self.timer = None;
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
    pub(crate) fn polled_after_done(&self) -> CloseError {
        let e = io::Error::other("graceful close polled after it completed");
        CloseError::new(CloseErrorKind::Io, self.phase(), self.report(), Some(e))
    }

    /// Applies `TCP_USER_TIMEOUT` (milliseconds, 0: none) and sends our FIN; the start
    /// of the deadline.
    fn shut<S: Socket>(
        &mut self,
        io: &S,
        user_timeout_ms: u32,
    ) -> Result<(), (CloseErrorKind, io::Error)> {
        if tokio::runtime::Handle::try_current().is_err() {
            let why = "a graceful close must be polled inside a Tokio runtime";
            return Err((CloseErrorKind::Io, io::Error::other(why)));
        }
        self.start = Instant::now();
        if user_timeout_ms > 0 && io.kind() == SocketKind::Tcp {
            io.set_user_timeout(user_timeout_ms)
                .map_err(|e| (CloseErrorKind::Io, e))?;
        }
        match io.shutdown_write() {
            Ok(()) => {
                self.fin_sent = true;
                Ok(())
            }
            // Already shut down, or the connection is already gone: the drain and the
            // ACK check tell which, with SO_ERROR for a reset that came first.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => match io.take_error() {
                Ok(Some(err)) => Err((classify(&err), err)),
                _ => Ok(()),
            },
            Err(e) => Err((classify(&e), e)),
        }
    }
}

impl Phase {
    /// When the idle bound of a phase that watches the peer's silence is due, the close's
    /// idle timeout being `idle_ms`.
    fn idle_due(self, idle_ms: u32) -> Nanos {
        if idle_ms == u32::MAX {
            return NEVER;
        }
        self.quiet_since()
            .saturating_add(u64::from(idle_ms) * 1_000_000)
    }

    /// Since when the peer has been silent, in the phases that watch it.
    fn quiet_since(self) -> Nanos {
        match self {
            Phase::EofFirst { quiet_since }
            | Phase::Lingering { quiet_since, .. }
            | Phase::Draining { quiet_since } => quiet_since,
            _ => NEVER,
        }
    }
}

/// Four round trips (where known), within [`GRACE_MIN`] and [`GRACE_MAX`].
fn grace(rtt: Option<Duration>) -> Duration {
    rtt.map_or(GRACE_MIN, |rtt| rtt.saturating_mul(4))
        .clamp(GRACE_MIN, GRACE_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pending close is one task per connection: its state must stay small. With
    /// 112 bytes, a spawned `GracefulClose<TcpStream>` (a 32-byte stream and this) and
    /// Tokio's task header and trailer take 232 bytes, plus the close's 112-byte timer
    /// (figure 5 of `lab/benches/compare`); at 120 bytes the task took 360.
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
