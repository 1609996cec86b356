//! The close state machine shared by every public entry point.
//!
//! It borrows the socket on each poll instead of owning it, so that the owning future
//! ([`GracefulClose`](crate::GracefulClose)), the delivery barrier
//! ([`WaitAcked`](crate::WaitAcked)) and I/O adapters whose `poll_shutdown` only has
//! `&mut self` can all drive the same code.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::Interest;
use tokio::time::{Instant, Sleep};

use crate::error::{CloseError, CloseErrorKind, ClosePhase};
use crate::ext::sealed::Socket;
use crate::sys::{self, SocketKind};
use crate::{CloseOptions, CloseReport, OnTimeout};

/// Reads per poll before the drain yields to the scheduler (on top of Tokio's budget).
const MAX_READS_PER_POLL: usize = 64;
/// Largest single discard request.
const MAX_DISCARD: u64 = 1 << 30;
/// First safety-net re-check of the send queue; doubles up to `poll_interval`.
const FIRST_POLL_STEP: Duration = Duration::from_millis(1);
/// What "no deadline" becomes (`Instant + Duration::MAX` would overflow).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// Whether the machine closes the stream or only waits for the acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Half-close, drain, wait for the ACK.
    Close,
    /// Only wait until `SIOCOUTQ` is 0 (a delivery barrier).
    AckOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Init,
    Running,
    Done,
}

pin_project! {
    /// The state of one close. Poll it with the same socket every time.
    #[derive(Debug)]
    #[project = CloserProj]
    pub(crate) struct Closer {
        opts: CloseOptions,
        mode: Mode,
        stage: Stage,
        start: Instant,
        deadline: Instant,
        idle_deadline: Option<Instant>,
        next_poll: Instant,
        poll_step: Duration,
        drained: u64,
        peer_eof: bool,
        span: tracing::Span,
        #[pin]
        timer: Option<Sleep>,
    }
}

/// How the send queue stands.
enum Ack {
    /// Everything acknowledged.
    Done,
    /// Bytes still unacknowledged. `edge_armed`: the task is registered for the next
    /// write-readiness edge (false once Tokio keeps the stream write-ready for good).
    Pending { edge_armed: bool },
    /// This platform cannot tell.
    Unknown,
}

impl Closer {
    pub(crate) fn new(opts: CloseOptions, mode: Mode) -> Self {
        let now = Instant::now();
        Closer {
            opts,
            mode,
            stage: Stage::Init,
            start: now,
            deadline: now,
            idle_deadline: None,
            next_poll: now,
            poll_step: FIRST_POLL_STEP,
            drained: 0,
            peer_eof: false,
            span: tracing::Span::none(),
            timer: None,
        }
    }

    /// Whether the close started (its first poll happened) and has not ended.
    pub(crate) fn is_running(&self) -> bool {
        self.stage == Stage::Running
    }

    /// The options this close runs with.
    pub(crate) fn options(&self) -> &CloseOptions {
        &self.opts
    }

    /// Drives the close. Once it returned `Ready` the socket should be dropped.
    pub(crate) fn poll_close<S: Socket>(
        mut self: Pin<&mut Self>,
        io: &S,
        cx: &mut Context<'_>,
    ) -> Poll<Result<CloseReport, CloseError>> {
        match self.stage {
            Stage::Done => {
                return Poll::Ready(Err(CloseError::new(
                    CloseErrorKind::Io,
                    ClosePhase::Shutdown,
                    CloseReport::default(),
                    Some(io::Error::other("graceful close polled after it completed")),
                )))
            }
            Stage::Init => {
                if let Err(e) = self.as_mut().start(io) {
                    *self.as_mut().project().stage = Stage::Done;
                    return Poll::Ready(Err(e));
                }
            }
            Stage::Running => {}
        }
        let mut this = self.project();
        let _enter = this.span.clone().entered();
        let kind = if io.is_tcp() {
            SocketKind::Tcp
        } else {
            SocketKind::Unix
        };
        let closing = *this.mode == Mode::Close;
        loop {
            // 1. Drain until the peer's EOF.
            if closing && !*this.peer_eof {
                match poll_drain(io, kind, cx, &mut this) {
                    Poll::Ready(Ok(DrainEnd::Eof)) => *this.peer_eof = true,
                    Poll::Ready(Ok(DrainEnd::OverLimit)) => {
                        let kind = CloseErrorKind::DrainLimit;
                        return Poll::Ready(Err(this.fail(io, kind, ClosePhase::Drain, None)));
                    }
                    Poll::Ready(Err(e)) => {
                        let kind = classify(&e);
                        return Poll::Ready(Err(this.fail(io, kind, ClosePhase::Drain, Some(e))));
                    }
                    Poll::Pending => {}
                }
            }

            // 2. Wait for the acknowledgement of our data and FIN.
            let eof_ok = *this.peer_eof || !closing;
            let ack_now = eof_ok || (!this.opts.require_peer_eof && sys::ACK_CHECK);
            let mut edge_armed = false;
            if ack_now {
                match poll_ack(io, cx, this.opts.wakeups) {
                    Ok(Ack::Done) => return Poll::Ready(Ok(this.succeed(true))),
                    Ok(Ack::Unknown) if eof_ok => {
                        if closing {
                            return Poll::Ready(Ok(this.succeed(false)));
                        }
                        let e = io::Error::new(
                            io::ErrorKind::Unsupported,
                            "this platform cannot tell whether sent data was acknowledged",
                        );
                        let phase = ClosePhase::AckWait;
                        return Poll::Ready(Err(this.fail(io, CloseErrorKind::Io, phase, Some(e))));
                    }
                    Ok(Ack::Pending { edge_armed: armed }) => edge_armed = armed,
                    Ok(Ack::Unknown) => {}
                    Err(e) => {
                        let kind = classify(&e);
                        let phase = ClosePhase::AckWait;
                        return Poll::Ready(Err(this.fail(io, kind, phase, Some(e))));
                    }
                }
            }

            // 3. The time bounds.
            let now = Instant::now();
            if now >= *this.deadline {
                let phase = if ack_now {
                    ClosePhase::AckWait
                } else {
                    ClosePhase::Drain
                };
                let kind = CloseErrorKind::TimedOut(phase);
                return Poll::Ready(Err(this.fail(io, kind, phase, None)));
            }
            let draining = closing && !*this.peer_eof;
            let idle = this.idle_deadline.filter(|_| draining);
            if let Some(idle) = idle {
                if now >= idle {
                    let kind = CloseErrorKind::IdleTimeout;
                    return Poll::Ready(Err(this.fail(io, kind, ClosePhase::Drain, None)));
                }
            }

            // 4. Sleep until the next bound or safety-net re-check.
            let mut wake_at = *this.deadline;
            if let Some(idle) = idle {
                wake_at = wake_at.min(idle);
            }
            if ack_now {
                // With our FIN in flight on TCP and the edge armed, the kernel's wakeup on
                // the FIN's acknowledgement is guaranteed (`sk_state_change`): the timer is
                // only a rare safety net. Without an armed edge (both directions shut), for
                // a data-only barrier or on AF_UNIX, re-check after 1 ms, 2 ms, 4 ms, ...
                let fin_wakes = closing && io.is_tcp() && edge_armed;
                let fast = this.opts.wakeups && !fin_wakes;
                let step = if fast {
                    *this.poll_step
                } else {
                    this.opts.poll_interval
                };
                if now >= *this.next_poll || *this.next_poll > now + step {
                    *this.next_poll = now + step;
                    if fast {
                        *this.poll_step = (*this.poll_step * 2).min(this.opts.poll_interval);
                    }
                }
                wake_at = wake_at.min(*this.next_poll);
            }
            let mut timer = this
                .timer
                .as_mut()
                .as_pin_mut()
                .expect("timer is set when the close starts");
            if timer.deadline() != wake_at {
                timer.as_mut().reset(wake_at);
            }
            if timer.poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// First poll: arm the timer, apply `TCP_USER_TIMEOUT`, send our FIN.
    fn start<S: Socket>(mut self: Pin<&mut Self>, io: &S) -> Result<(), CloseError> {
        let this = self.as_mut().project();
        let fd = io.as_fd();
        *this.span = match this.mode {
            Mode::Close => tracing::debug_span!("graceful_close", fd = fd.as_raw_fd()),
            Mode::AckOnly => tracing::debug_span!("wait_acked", fd = fd.as_raw_fd()),
        };
        let fail = |kind, phase, e| {
            Err(CloseError::new(
                kind,
                phase,
                CloseReport::default(),
                Some(e),
            ))
        };
        if tokio::runtime::Handle::try_current().is_err() {
            let e = io::Error::other("a graceful close must be polled inside a Tokio runtime");
            return fail(CloseErrorKind::Io, ClosePhase::Shutdown, e);
        }
        let now = Instant::now();
        *this.start = now;
        *this.deadline = now
            .checked_add(this.opts.timeout)
            .unwrap_or_else(|| now + FAR_FUTURE);
        *this.idle_deadline = this
            .opts
            .idle_timeout
            .map(|d| now.checked_add(d).unwrap_or(*this.deadline));
        *this.next_poll = now;
        let deadline = *this.deadline;
        let mut timer = this.timer;
        timer.set(Some(tokio::time::sleep_until(deadline)));
        *this.stage = Stage::Running;

        if *this.mode == Mode::AckOnly {
            return Ok(());
        }
        if let (Some(t), true) = (this.opts.user_timeout, io.is_tcp()) {
            let t = t.max(Duration::from_millis(1));
            if let Err(e) = sys::set_user_timeout(fd, t) {
                return fail(CloseErrorKind::Io, ClosePhase::Shutdown, e);
            }
        }
        match socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Write) {
            Ok(()) => Ok(()),
            // Already shut down, or the connection is already gone: the drain and the
            // ACK check tell which, with SO_ERROR for a reset that came first.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTCONN) => {
                match socket2::SockRef::from(&fd).take_error() {
                    Ok(Some(err)) => {
                        let kind = classify(&err);
                        fail(kind, ClosePhase::Shutdown, err)
                    }
                    _ => Ok(()),
                }
            }
            Err(e) => {
                let kind = classify(&e);
                fail(kind, ClosePhase::Shutdown, e)
            }
        }
    }
}

impl CloserProj<'_> {
    fn report(&self, acked: bool, unacked: Option<usize>) -> CloseReport {
        CloseReport {
            elapsed: self.start.elapsed(),
            drained_bytes: *self.drained,
            peer_eof: *self.peer_eof,
            acked,
            unacked_bytes: unacked,
            aborted: false,
        }
    }

    fn succeed(&mut self, acked: bool) -> CloseReport {
        *self.stage = Stage::Done;
        let unacked = acked.then_some(0);
        let report = self.report(acked, unacked);
        tracing::debug!(
            elapsed = ?report.elapsed,
            drained = report.drained_bytes,
            peer_eof = report.peer_eof,
            acked = report.acked,
            "graceful close complete"
        );
        report
    }

    fn fail<S: Socket>(
        &mut self,
        io: &S,
        kind: CloseErrorKind,
        phase: ClosePhase,
        source: Option<io::Error>,
    ) -> CloseError {
        *self.stage = Stage::Done;
        let fd = io.as_fd();
        let unacked = sys::unacked(fd).ok();
        // After a TCP reset the kernel leaves the sequence numbers alone, so 0 still
        // proves every byte and our FIN were acknowledged before it. On AF_UNIX a peer
        // that closed has purged its queue, which also reads 0: no proof there.
        let acked = io.is_tcp() && unacked == Some(0);
        let mut report = self.report(acked, unacked);
        if *self.mode == Mode::Close {
            let bound = kind.is_timeout() || kind == CloseErrorKind::DrainLimit;
            if bound && self.opts.on_timeout == OnTimeout::Abort {
                report.aborted = socket2::SockRef::from(&fd)
                    .set_linger(Some(Duration::ZERO))
                    .is_ok();
            } else {
                disarm_linger(fd);
            }
        }
        let err = CloseError::new(kind, phase, report, source);
        if kind == CloseErrorKind::Io {
            tracing::warn!(error = %err, "graceful close failed");
        } else {
            tracing::debug!(error = %err, "graceful close did not confirm delivery");
        }
        err
    }
}

/// Removes a non-zero `SO_LINGER` the application may have set, so that the `close()`
/// that follows can never sleep in the kernel.
pub(crate) fn disarm_linger(fd: std::os::fd::BorrowedFd<'_>) {
    let sock = socket2::SockRef::from(&fd);
    if let Ok(Some(t)) = sock.linger() {
        if !t.is_zero() {
            let _ = sock.set_linger(None);
        }
    }
}

/// Maps the OS error of a failed connection to the error kind users act on.
fn classify(e: &io::Error) -> CloseErrorKind {
    match e.raw_os_error() {
        Some(nix::libc::ECONNRESET) | Some(nix::libc::EPIPE) | Some(nix::libc::ECONNABORTED) => {
            CloseErrorKind::PeerReset
        }
        // The kernel's give-up (`tcp_write_err`) reports `sk_err_soft ?: ETIMEDOUT`: the
        // last soft error, a failed route lookup or an ICMP unreachable, when there was one.
        Some(
            nix::libc::ETIMEDOUT
            | nix::libc::EHOSTUNREACH
            | nix::libc::ENETUNREACH
            | nix::libc::EHOSTDOWN
            | nix::libc::ENETDOWN,
        ) => CloseErrorKind::RetransmitTimeout,
        _ if e.kind() == io::ErrorKind::ConnectionReset => CloseErrorKind::PeerReset,
        _ => CloseErrorKind::Io,
    }
}

/// How a drain ended.
enum DrainEnd {
    /// The peer closed its side.
    Eof,
    /// The peer sent more than the drain limit.
    OverLimit,
}

/// Reads and discards until EOF, the drain limit, an error, or no more data (`Pending`).
fn poll_drain<S: Socket>(
    io: &S,
    kind: SocketKind,
    cx: &mut Context<'_>,
    this: &mut CloserProj<'_>,
) -> Poll<io::Result<DrainEnd>> {
    let limit = this.opts.drain_limit;
    for _ in 0..MAX_READS_PER_POLL {
        ready!(io.poll_read_ready(cx))?;
        // Ask for one byte more than the limit allows, to see a peer that exceeds it.
        let want = limit
            .saturating_sub(*this.drained)
            .saturating_add(1)
            .min(MAX_DISCARD) as usize;
        match io.try_io(Interest::READABLE, || sys::discard(io.as_fd(), kind, want)) {
            Ok(0) => return Poll::Ready(Ok(DrainEnd::Eof)),
            Ok(n) => {
                *this.drained += n as u64;
                if *this.drained > limit {
                    return Poll::Ready(Ok(DrainEnd::OverLimit));
                }
                if let Some(idle) = this.opts.idle_timeout {
                    *this.idle_deadline = Some(Instant::now() + idle);
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

/// Checks the send queue after consuming any pending write-readiness edge, so that the
/// kernel's next wakeup (our FIN acknowledged, a reset) wakes this task.
fn poll_ack<S: Socket>(io: &S, cx: &mut Context<'_>, wakeups: bool) -> io::Result<Ack> {
    if !sys::ACK_CHECK {
        return Ok(Ack::Unknown);
    }
    let mut edge_armed = false;
    if wakeups {
        // Once both directions are shut (EPOLLHUP) Tokio keeps the stream write-ready
        // for good; after two edges in a row the timer takes over, so this never spins.
        for _ in 0..2 {
            match io.poll_write_ready(cx) {
                Poll::Pending => {
                    edge_armed = true;
                    break;
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Ready(Ok(())) => {
                    // Clears the cached readiness (unless a newer edge came meanwhile).
                    let _ = io.try_io(Interest::WRITABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
            }
        }
    }
    let fd = io.as_fd();
    if sys::unacked(fd)? == 0 {
        return Ok(Ack::Done);
    }
    // Bytes outstanding: has the connection died under us (RST, retransmit give-up)?
    // Then SIOCOUTQ never moves again (kernel.md "Reset and give-up").
    // TCP: one TCP_INFO tells; SO_ERROR only then, for the cause. AF_UNIX: a peer that
    // closed without reading sets ECONNRESET on us.
    if io.is_tcp() && sys::tcp_state(fd)? != sys::TCP_CLOSE {
        return Ok(Ack::Pending { edge_armed });
    }
    match socket2::SockRef::from(&fd).take_error()? {
        Some(e) => Err(e),
        None if io.is_tcp() => Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the connection was closed by the kernel with data unacknowledged",
        )),
        None => Ok(Ack::Pending { edge_armed }),
    }
}
