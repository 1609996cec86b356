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
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::Interest;
use tokio::time::{Instant, Sleep};

use crate::error::{CloseError, CloseErrorKind, ClosePhase};
use crate::ext::sealed::Socket;
use crate::sys::{self, SendQueue, SocketKind};
use crate::{CloseOptions, CloseReport, OnTimeout, PeerEof};

/// Reads per poll before the drain yields to the scheduler (on top of Tokio's budget).
const MAX_READS_PER_POLL: usize = 64;
/// Largest single discard request.
const MAX_DISCARD: u64 = 1 << 30;
/// First safety-net re-check of the send queue; doubles up to `poll_interval`.
const FIRST_POLL_STEP: Duration = Duration::from_millis(1);
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
    /// A reset was sent ([`OnTimeout::Abort`]).
    aborted: bool,
    drained: u64,
    start: Instant,
    deadline: Instant,
    idle_deadline: Option<Instant>,
    next_poll: Instant,
    poll_step: Duration,
    /// Armed only when the close has to wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// Our own registration of the socket, for wakeups on a borrowed stream.
    watch: Option<sys::Watch>,
    /// `sys::Watch::new` failed once: fall back to the timer.
    no_watch: bool,
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
            aborted: false,
            drained: 0,
            start: now,
            deadline: now,
            idle_deadline: None,
            next_poll: now,
            poll_step: FIRST_POLL_STEP,
            timer: None,
            watch: None,
            no_watch: false,
        }
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
            // 1. Our data and FIN acknowledged?
            let mut edge_armed = false;
            let mut unknown = false;
            if !self.acked {
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
                    Poll::Ready(Ok(DrainEnd::Eof)) => self.peer_eof = true,
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
                let phase = if self.acked || (unknown && draining) {
                    ClosePhase::Drain
                } else {
                    ClosePhase::AckWait
                };
                let kind = CloseErrorKind::TimedOut(phase);
                return Poll::Ready(Err(self.fail(io, kind, phase, None)));
            }
            let idle = self.idle_deadline.filter(|_| draining);
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
            if !self.acked && !unknown {
                // With our FIN in flight on TCP and an edge armed, the kernel's wakeup on
                // the FIN's acknowledgement (`sk_state_change`) is guaranteed: the timer is
                // only a rare safety net. Without an armed edge (both directions shut),
                // for the barrier or on AF_UNIX, re-check after 1 ms, 2 ms, 4 ms, ...
                let fin_wakes = closing && io.kind() == SocketKind::Tcp && edge_armed;
                let fast = self.opts.wakeups && !fin_wakes;
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
            Ok(()) => Ok(()),
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
        match self.opts.peer_eof {
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
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
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
            if tcp && bound && self.opts.on_timeout == OnTimeout::Abort {
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

    /// Reads and discards until EOF, the drain limit, an error, or no more data
    /// (`Pending`).
    fn poll_drain<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<DrainEnd>> {
        let limit = self.opts.drain_limit;
        for _ in 0..MAX_READS_PER_POLL {
            ready!(io.poll_read_ready(cx))?;
            // Ask for one byte more than the limit allows, to see a peer that exceeds it.
            let want = limit
                .saturating_sub(self.drained)
                .saturating_add(1)
                .min(MAX_DISCARD) as usize;
            let kind = io.kind();
            match io.try_io(Interest::READABLE, || sys::discard(io.as_sock(), kind, want)) {
                Ok(0) => return Poll::Ready(Ok(DrainEnd::Eof)),
                Ok(n) => {
                    self.drained += n as u64;
                    if self.drained > limit {
                        return Poll::Ready(Ok(DrainEnd::OverLimit));
                    }
                    if let Some(idle) = self.opts.idle_timeout {
                        self.idle_deadline = Some(after(Instant::now(), idle));
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

    /// Checks the send queue after consuming any pending wakeup, so that the kernel's
    /// next one (our FIN acknowledged, a reset) wakes this task.
    fn poll_ack<S: Socket>(&mut self, io: &S, cx: &mut Context<'_>, owned: bool) -> io::Result<Ack> {
        if !sys::ACK_CHECK {
            return Ok(Ack::Unknown);
        }
        let sock = io.as_sock();
        let closing = self.mode == Mode::Close;
        let mut edge_armed = false;
        if self.opts.wakeups && closing && sys::WRITE_EDGES {
            if owned {
                self.watch = None;
                edge_armed = consume_edges(|cx| io.poll_write_ready(cx), cx, || {
                    // Clears the cached readiness (unless a newer edge came meanwhile).
                    let _ = io.try_io(Interest::WRITABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                })?;
            } else if let Some(watch) = &self.watch {
                edge_armed = consume_edges(|cx| watch.poll_edge(cx), cx, || ())?;
            }
        }
        let state = sys::send_queue(sock, io.kind(), closing)?;
        let state = match state {
            SendQueue::Empty if io.kind() == SocketKind::Tcp => return Ok(Ack::Done),
            // AF_UNIX: our queue is empty because the peer read it all, or because it
            // closed without reading and purged it, which leaves ECONNRESET on our side.
            SendQueue::Empty => match socket2::SockRef::from(&sock).take_error()? {
                Some(e) => return Err(e),
                None => return Ok(Ack::Done),
            },
            SendQueue::Unknown => return Ok(Ack::Unknown),
            other => other,
        };
        // Bytes outstanding. A dead connection never drains: its cause is in SO_ERROR.
        // AF_UNIX: a peer that closed without reading sets ECONNRESET on us.
        if state == SendQueue::Gone || io.kind() != SocketKind::Tcp {
            match socket2::SockRef::from(&sock).take_error()? {
                Some(e) => return Err(e),
                None if state == SendQueue::Gone => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "the connection was closed by the kernel with data unacknowledged",
                    ))
                }
                None => {}
            }
        }
        if closing
            && !owned
            && !edge_armed
            && self.watch.is_none()
            && !self.no_watch
            && self.opts.wakeups
            && io.kind() == SocketKind::Tcp
        {
            // A borrowed stream waiting for its FIN's acknowledgement: take the kernel's
            // wakeup from a registration of our own, then look again (the ACK may have
            // come before the registration).
            match sys::Watch::new(sock) {
                Ok(watch) => {
                    self.watch = Some(watch);
                    return self.poll_ack(io, cx, owned);
                }
                Err(_) => self.no_watch = true,
            }
        }
        Ok(Ack::Pending { edge_armed })
    }
}

/// Consumes up to two pending readiness edges and reports whether the task is now
/// registered for the next one. Once both directions are shut (`EPOLLHUP`) Tokio keeps
/// a stream write-ready for good; after two edges in a row the timer takes over, so
/// this never spins.
fn consume_edges(
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
    cx: &mut Context<'_>,
    mut clear: impl FnMut(),
) -> io::Result<bool> {
    for _ in 0..2 {
        match poll(cx) {
            Poll::Pending => return Ok(true),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Ready(Ok(())) => clear(),
        }
    }
    Ok(false)
}

/// A timer for `deadline`, or `None` when the runtime has no time driver (Tokio panics
/// when such a timer is created; the panic is caught here and turned into an error).
fn new_timer(deadline: Instant) -> Option<Pin<Box<Sleep>>> {
    catch_unwind(AssertUnwindSafe(|| Box::pin(tokio::time::sleep_until(deadline)))).ok()
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

/// Maps the OS error of a failed connection to the error kind users act on.
fn classify(e: &io::Error) -> CloseErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => CloseErrorKind::PeerReset,
        // The kernel's give-up (`tcp_write_err`) reports `sk_err_soft ?: ETIMEDOUT`: the
        // last soft error, a failed route lookup or an ICMP unreachable, when there was one.
        io::ErrorKind::TimedOut
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::NetworkDown => CloseErrorKind::RetransmitTimeout,
        _ if sys::is_host_down(e) => CloseErrorKind::RetransmitTimeout,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn classify_maps_os_errors() {
        use nix::libc;
        let k = |n| classify(&io::Error::from_raw_os_error(n));
        assert_eq!(k(libc::ECONNRESET), CloseErrorKind::PeerReset);
        assert_eq!(k(libc::EPIPE), CloseErrorKind::PeerReset);
        assert_eq!(k(libc::ECONNABORTED), CloseErrorKind::PeerReset);
        for n in [
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EHOSTDOWN,
            libc::ENETDOWN,
        ] {
            assert_eq!(k(n), CloseErrorKind::RetransmitTimeout, "errno {n}");
        }
        assert_eq!(k(libc::EBADF), CloseErrorKind::Io);
    }

    #[test]
    fn after_saturates() {
        let now = Instant::now();
        assert_eq!(after(now, Duration::from_secs(1)), now + Duration::from_secs(1));
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
    }
}
