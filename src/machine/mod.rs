//! The close state machine shared by every public entry point.
//!
//! It borrows the socket on each poll instead of owning it, so that the owning future
//! ([`GracefulClose`](crate::GracefulClose)), the delivery barrier
//! ([`WaitAcked`](crate::WaitAcked)) and I/O adapters whose `poll_shutdown` only has
//! `&mut self` can all drive the same code.
//!
//! Each poll says whether the caller owns the stream. A borrowed stream (an adapter's
//! `poll_shutdown`, the barrier) is never read and its cached readiness is never
//! touched: the application may read to EOF afterwards and its next write finds the
//! stream as it left it. The wakeup on our FIN's acknowledgement is then taken from a
//! private registration of the socket ([`sys::Watch`]). An owned stream (the owning
//! future, a background close) is drained and its own readiness is used.

use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::error::{classify, CloseError, CloseErrorKind, ClosePhase};
use crate::ext::sealed::Socket;
use crate::sys::{self, SocketKind};
use crate::tracker::Token;
use crate::{CloseOptions, CloseReport, OnTimeout, PeerEof};

mod ack;
mod drain;

use self::ack::Ack;
use self::drain::DrainEnd;

/// First safety-net re-check of the send queue; doubles up to `poll_interval`.
const FIRST_POLL_STEP: Duration = Duration::from_millis(1);
/// How long a connection with nothing more to say is given to close its side after our
/// FIN was acknowledged ([`PeerEof::IfSending`]): four round trips, within these bounds.
/// A peer that answers our FIN (its own FIN, a TLS `close_notify`) does so within a round
/// trip or two; closing before that would reset its answer.
const GRACE_MIN: Duration = Duration::from_millis(10);
const GRACE_MAX: Duration = Duration::from_secs(1);
/// What "no bound" becomes (`Instant + Duration::MAX` would overflow).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, where a `d` too large for an `Instant` (such as `Duration::MAX`) means
/// "no bound".
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + FAR_FUTURE)
}

/// Whether the machine closes the stream or only waits for the acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Half-close, drain as the options say, wait for the ACK.
    Close,
    /// Only wait until everything written so far is acknowledged (a delivery barrier).
    Barrier,
}

/// How far a poll should take the close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Goal {
    /// Our FIN sent and, where the platform can tell, our data and FIN acknowledged. The
    /// stream is borrowed: nothing is read, no readiness is consumed.
    Acked,
    /// The whole close; the stream is owned by the caller and is dropped afterwards.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Init,
    Running,
    Done,
}

/// The state of one close. Poll it with the same socket every time.
#[derive(Debug)]
pub(crate) struct Closer {
    opts: CloseOptions,
    mode: Mode,
    stage: Stage,
    /// Our data and FIN are acknowledged (or, for the barrier, our data).
    acked: bool,
    /// We read the peer's EOF.
    peer_eof: bool,
    /// The close decided it must wait for the peer's EOF ([`PeerEof::IfSending`]).
    linger: bool,
    /// [`PeerEof::IfSending`] with a quiet peer: its EOF is waited for until then only.
    grace_until: Option<Instant>,
    /// A reset was sent ([`OnTimeout::Abort`]).
    aborted: bool,
    /// Our `shutdown` succeeded and the send queue was not looked at since.
    fresh: bool,
    drained: u64,
    start: Instant,
    deadline: Instant,
    idle_deadline: Option<Instant>,
    next_poll: Instant,
    poll_step: Duration,
    /// Armed only when the close has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// Our own registration of the socket, for wakeups on a borrowed stream (boxed:
    /// rare, and the close stays small).
    watch: Option<Box<sys::Watch>>,
    /// `sys::Watch::new` failed once: fall back to the timer.
    no_watch: bool,
    /// What the adapters add (boxed: a bare close does without).
    extra: Option<Box<Extra>>,
}

/// The adapters' part of a close.
#[derive(Debug)]
struct Extra {
    /// The registration with a `CloseTracker`, if any; dropped when the closer is.
    token: Option<Token>,
    /// For the report.
    peer_addr: Option<std::net::SocketAddr>,
}

impl Closer {
    pub(crate) fn new(opts: CloseOptions, mode: Mode) -> Self {
        let now = Instant::now();
        Closer {
            opts,
            mode,
            stage: Stage::Init,
            acked: false,
            peer_eof: false,
            linger: false,
            grace_until: None,
            aborted: false,
            fresh: false,
            drained: 0,
            start: now,
            deadline: now,
            idle_deadline: None,
            next_poll: now,
            poll_step: FIRST_POLL_STEP,
            timer: None,
            watch: None,
            no_watch: false,
            extra: None,
        }
    }

    /// Registers the close with a tracker and records the peer's address, for the
    /// adapters.
    pub(crate) fn tracked(
        mut self,
        token: Option<Token>,
        peer: Option<std::net::SocketAddr>,
    ) -> Self {
        self.extra = Some(Box::new(Extra {
            token,
            peer_addr: peer,
        }));
        self
    }

    /// Whether the close ended with a reset on purpose.
    pub(crate) fn aborted(&self) -> bool {
        self.aborted
    }

    /// The options this close runs with.
    pub(crate) fn options(&self) -> &CloseOptions {
        &self.opts
    }

    /// The step the close is in: what a close cut short was doing.
    pub(crate) fn phase(&self) -> ClosePhase {
        match self.stage {
            Stage::Init => ClosePhase::Shutdown,
            _ if !self.acked => ClosePhase::AckWait,
            _ => ClosePhase::Drain,
        }
    }

    /// What the close did so far.
    pub(crate) fn report(&self) -> CloseReport {
        CloseReport {
            elapsed: if self.stage == Stage::Init {
                Duration::ZERO
            } else {
                self.start.elapsed()
            },
            drained_bytes: self.drained,
            peer_eof: self.peer_eof,
            acked: self.acked,
            unacked_bytes: self.acked.then_some(0),
            aborted: self.aborted,
            peer_addr: self.extra.as_ref().and_then(|e| e.peer_addr),
        }
    }

    /// Drives the close towards `goal`. With [`Goal::Closed`], once it returned `Ready`
    /// the socket should be dropped. With [`Goal::Acked`], `Ready(Ok)` leaves the close
    /// running: poll it again with `Goal::Closed` (and the stream owned) to finish it.
    pub(crate) fn poll_close<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
        goal: Goal,
    ) -> Poll<Result<CloseReport, CloseError>> {
        match self.stage {
            Stage::Done => {
                let e = io::Error::other("graceful close polled after it completed");
                return Poll::Ready(Err(CloseError::new(
                    CloseErrorKind::Io,
                    self.phase(),
                    self.report(),
                    Some(e),
                )));
            }
            Stage::Init => {
                if let Err((kind, e)) = self.start(io) {
                    return Poll::Ready(Err(self.fail(io, kind, ClosePhase::Shutdown, Some(e))));
                }
            }
            Stage::Running => {}
        }
        let owned = goal == Goal::Closed;
        let closing = self.mode == Mode::Close;
        loop {
            let token = self.extra.as_ref().and_then(|e| e.token.as_ref());
            if token.is_some_and(|t| t.evicted(cx.waker())) {
                let phase = self.phase();
                return Poll::Ready(Err(self.fail(io, CloseErrorKind::Evicted, phase, None)));
            }
            // 1. Our data and FIN acknowledged? When the peer's EOF is required and not
            // yet read, the close cannot end before it anyway: the ACK is checked once
            // the EOF came (a peer acknowledges our FIN before it sends its own), which
            // spares a wakeup and the checks while it reads.
            let defer_ack = owned
                && closing
                && !self.peer_eof
                && self.opts.peer_eof.unwrap_or_default() == PeerEof::Required;
            let mut edge_armed = false;
            let mut unknown = false;
            if !self.acked && !defer_ack {
                match self.poll_ack(io, cx, owned) {
                    Ok(Ack::Done) => {
                        self.acked = true;
                        self.watch = None;
                    }
                    Ok(Ack::Pending { edge_armed: armed }) => edge_armed = armed,
                    Ok(Ack::Unknown) => unknown = true,
                    Err(e) => {
                        let kind = classify(&e);
                        return Poll::Ready(Err(self.fail(io, kind, ClosePhase::AckWait, Some(e))));
                    }
                }
            }
            if unknown && !closing {
                let e = io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this platform cannot tell whether sent data was acknowledged",
                );
                let kind = CloseErrorKind::Io;
                return Poll::Ready(Err(self.fail(io, kind, ClosePhase::AckWait, Some(e))));
            }
            if !closing && self.acked {
                return Poll::Ready(Ok(self.succeed()));
            }
            if goal == Goal::Acked && (self.acked || unknown) {
                // Nothing more to do on a borrowed stream: the rest needs the stream owned.
                return Poll::Ready(Ok(self.report()));
            }

            // 2. The peer's side, on an owned stream only.
            if owned && closing && !self.peer_eof {
                match self.poll_drain(io, cx) {
                    Poll::Ready(Ok(DrainEnd::Eof)) => {
                        self.peer_eof = true;
                        if defer_ack {
                            continue; // now look at the ACK
                        }
                    }
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
            if owned && closing && self.finished(io, unknown) {
                return Poll::Ready(Ok(self.succeed()));
            }

            // 3. The time bounds.
            let now = Instant::now();
            let draining = closing && owned && !self.peer_eof;
            if now >= self.deadline {
                let phase = if self.acked || defer_ack || (unknown && draining) {
                    ClosePhase::Drain
                } else {
                    ClosePhase::AckWait
                };
                let kind = CloseErrorKind::TimedOut(phase);
                return Poll::Ready(Err(self.fail(io, kind, phase, None)));
            }
            let idle = self.idle_deadline.filter(|_| draining);
            let grace = self.grace_until.filter(|_| draining && !self.linger);
            if let Some(idle) = idle {
                if now >= idle {
                    let kind = CloseErrorKind::IdleTimeout;
                    return Poll::Ready(Err(self.fail(io, kind, ClosePhase::Drain, None)));
                }
            }

            // 4. Sleep until the next bound or safety-net re-check.
            let mut wake_at = self.deadline;
            if let Some(idle) = idle {
                wake_at = wake_at.min(idle);
            }
            if let Some(grace) = grace {
                wake_at = wake_at.min(grace);
            }
            if !self.acked && !unknown && !defer_ack {
                // With our FIN in flight on TCP and an edge armed, the kernel's wakeup on
                // the FIN's acknowledgement (`sk_state_change`) is guaranteed: the timer is
                // only a rare safety net. Without an armed edge (both directions shut),
                // for the barrier or on AF_UNIX, re-check after 1 ms, 2 ms, 4 ms, ...
                let fin_wakes = closing && io.kind() == SocketKind::Tcp && edge_armed;
                let fast = !fin_wakes;
                let step = if fast {
                    self.poll_step
                } else {
                    self.opts.poll_interval
                };
                if now >= self.next_poll || self.next_poll > after(now, step) {
                    self.next_poll = after(now, step);
                    if fast {
                        self.poll_step = self
                            .poll_step
                            .saturating_mul(2)
                            .min(self.opts.poll_interval);
                    }
                }
                wake_at = wake_at.min(self.next_poll);
            }
            let timer = match &mut self.timer {
                Some(timer) => timer,
                None => match new_timer(wake_at) {
                    Some(timer) => self.timer.insert(timer),
                    None => {
                        let e = io::Error::other(
                            "the graceful close needs Tokio's time driver: build the runtime \
                             with `enable_time()` or `enable_all()`",
                        );
                        let phase = self.phase();
                        return Poll::Ready(Err(self.fail(io, CloseErrorKind::Io, phase, Some(e))));
                    }
                },
            };
            if timer.deadline() != wake_at {
                timer.as_mut().reset(wake_at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// First poll: apply `TCP_USER_TIMEOUT`, send our FIN.
    fn start<S: Socket>(&mut self, io: &S) -> Result<(), (CloseErrorKind, io::Error)> {
        if tokio::runtime::Handle::try_current().is_err() {
            let e = io::Error::other("a graceful close must be polled inside a Tokio runtime");
            return Err((CloseErrorKind::Io, e));
        }
        let now = Instant::now();
        self.start = now;
        self.deadline = after(now, self.opts.timeout);
        self.idle_deadline = self.opts.idle_timeout.map(|d| after(now, d));
        self.next_poll = now;
        self.stage = Stage::Running;

        if self.mode == Mode::Barrier {
            return Ok(());
        }
        let sock = io.as_sock();
        if let (Some(t), SocketKind::Tcp) = (self.opts.user_timeout, io.kind()) {
            sys::set_user_timeout(sock, t).map_err(|e| (CloseErrorKind::Io, e))?;
        }
        match socket2::SockRef::from(&sock).shutdown(std::net::Shutdown::Write) {
            Ok(()) => {
                self.fresh = true;
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

    /// Whether an owned close may end now, the ACK and the drain having run.
    fn finished<S: Socket>(&mut self, io: &S, unknown: bool) -> bool {
        if unknown {
            // The peer's EOF is the only evidence this platform has.
            return self.peer_eof;
        }
        if !self.acked {
            return false;
        }
        match self.opts.peer_eof.unwrap_or_default() {
            PeerEof::NotRequired => true,
            PeerEof::Required => self.peer_eof,
            PeerEof::IfSending => {
                if self.peer_eof {
                    return true;
                }
                if self.drained > 0 {
                    // The peer was still sending: drain to its EOF.
                    self.linger = true;
                }
                if self.linger {
                    return false;
                }
                if let Some(until) = self.grace_until {
                    return Instant::now() >= until;
                }
                // Nothing was drained and the drain found the queue empty, but its
                // readiness may lag the kernel: ask the socket itself.
                match sys::discard(io.as_sock(), io.kind(), 1) {
                    Ok(0) => {
                        self.peer_eof = true;
                        true
                    }
                    Ok(n) => {
                        self.drained += n as u64;
                        self.linger = true;
                        false
                    }
                    // The queue is empty. Did the peer send anything since the close
                    // began? An uploading client whose last segment the application
                    // read a moment ago is still sending; an idle one last sent long
                    // before. (Where the platform cannot tell, the empty queue decides.)
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let activity = sys::activity(io.as_sock()).ok().flatten();
                        let quiet =
                            activity.is_none_or(|a| a.since_last_data > self.start.elapsed());
                        if !quiet {
                            self.linger = true;
                            return false;
                        }
                        // A quiet peer: give it a few round trips to answer our FIN.
                        let grace = activity
                            .map_or(GRACE_MIN, |a| a.rtt.saturating_mul(4))
                            .clamp(GRACE_MIN, GRACE_MAX);
                        self.grace_until = Some(after(Instant::now(), grace));
                        false
                    }
                    // Let the drain meet the error and report it.
                    Err(_) => {
                        self.linger = true;
                        false
                    }
                }
            }
        }
    }

    fn succeed(&mut self) -> CloseReport {
        self.stage = Stage::Done;
        self.watch = None;
        self.timer = None;
        self.report()
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
        self.stage = Stage::Done;
        self.watch = None;
        self.timer = None;
        let sock = io.as_sock();
        let tcp = io.kind() == SocketKind::Tcp;
        let unacked = sys::unacked(sock, io.kind()).ok();
        // After a TCP reset the kernel leaves the sequence numbers alone, so 0 still
        // proves every byte and our FIN were acknowledged before it. AF_UNIX has no count.
        let acked = self.acked || (tcp && self.mode == Mode::Close && unacked == Some(0));
        let mut report = self.report();
        report.acked = acked;
        report.unacked_bytes = unacked;
        if self.mode == Mode::Close {
            let bound = kind.is_timeout() || kind == CloseErrorKind::DrainLimit;
            let abort = (bound && self.opts.on_timeout == OnTimeout::Abort)
                || (kind == CloseErrorKind::Evicted && !acked);
            if tcp && abort {
                self.aborted = socket2::SockRef::from(&sock)
                    .set_linger(Some(Duration::ZERO))
                    .is_ok();
                report.aborted = self.aborted;
            } else {
                disarm_linger(sock);
            }
        }
        CloseError::new(kind, phase, report, source)
    }
}

/// A timer for `deadline`, or `None` when the runtime has no time driver (Tokio panics
/// when such a timer is created; the panic is caught here and turned into an error).
fn new_timer(deadline: Instant) -> Option<Pin<Box<Sleep>>> {
    catch_unwind(AssertUnwindSafe(|| {
        Box::pin(tokio::time::sleep_until(deadline))
    }))
    .ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_saturates() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
    }
}
