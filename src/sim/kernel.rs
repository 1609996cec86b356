//! The scripted kernel: one connection as Linux keeps it, seen from our side, and the
//! socket through which the close sees it ([`SimSocket`]).
//!
//! What it models, from the kernel's code paths the close relies on (`sys/linux.rs`):
//! `SIOCOUTQ` counts our unacknowledged bytes and our FIN; a reset or a retransmission
//! give-up sets the socket's error, makes it readable and writable for good and leaves
//! the count where it was; `recv` returns queued bytes first, then the pending error,
//! then EOF; `SO_RCVLOWAT` holds back read wakeups below a batch (never the EOF or an
//! error); our FIN's acknowledgement wakes every waiter (`sk_state_change`), data
//! acknowledgements wake nobody; once both directions are shut, Tokio keeps the stream
//! writable for good. Readiness is Tokio's: cached until an operation finds nothing,
//! a registered waker woken by the next edge.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::Interest;
use tokio::time::Instant;

use crate::error::CloseError;
use crate::ext::AsyncGracefulClose;
use crate::machine::{Closable, Closer};
use crate::report::CloseReport;
use crate::socket::Socket;
use crate::sys::{Activity, SendQueue, Sock, SocketKind};

/// Operations in one poll past which the close is spinning: the test fails there
/// instead of hanging under the paused clock.
const SPIN: u32 = 10_000;

/// How the close's `shutdown(SHUT_WR)` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shutdown {
    /// Our FIN is queued after our data.
    Ok,
    /// The connection was reset before; its error is still pending.
    ResetPending,
    /// The connection was reset before and the application consumed the error.
    ResetConsumed,
}

/// One connection as the kernel keeps it.
#[derive(Debug)]
pub(super) struct Kernel {
    /// Data bytes we wrote.
    pub(super) written: u64,
    /// Sequence space the peer acknowledged (data, then our FIN).
    pub(super) acked: u64,
    /// Our FIN is queued (`shutdown` succeeded).
    pub(super) fin_queued: bool,
    pub(super) shutdown: Shutdown,
    /// Received bytes not read.
    pub(super) inq: u64,
    /// The peer's FIN is queued after them.
    pub(super) peer_fin: bool,
    /// The pending socket error (`sk_err`).
    pub(super) error: Option<i32>,
    /// `TCP_CLOSE`: reset or given up.
    pub(super) closed: bool,
    /// The platform can tell the acknowledgement (false: "cannot tell").
    pub(super) can_tell: bool,
    pub(super) rtt: Duration,
    /// When the peer's last data segment came.
    pub(super) last_data: Instant,
    /// The next `recv` fails with this (an I/O error of the host).
    pub(super) read_error: Option<i32>,
    /// `TCP_INFO` fails.
    pub(super) info_fails: bool,
    /// `SO_RCVLOWAT`.
    lowat: u64,
    read_ready: bool,
    write_ready: bool,
    /// Both directions shut, or an error: Tokio keeps the stream ready for good.
    hup: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    // ===== what the close did =====
    /// Operations since the driver's last poll began.
    pub(super) ops: u32,
    /// `SO_LINGER {1, 0}` armed, and `(unacked, unread, fin)` when it was.
    pub(super) reset_armed: Option<(u64, u64, bool)>,
    /// Bytes the close discarded.
    pub(super) discarded: u64,
    /// The close read the peer's EOF.
    pub(super) eof_read: bool,
    /// The FIN argument the ACK judge was given differed from the truth.
    pub(super) fin_told_wrong: bool,
    /// The close ended and closed the socket.
    pub(super) dropped: bool,
}

impl Kernel {
    /// A live connection with `written` bytes of ours, none acknowledged yet.
    pub(super) fn new(now: Instant) -> Self {
        Kernel {
            written: 0,
            acked: 0,
            fin_queued: false,
            shutdown: Shutdown::Ok,
            inq: 0,
            peer_fin: false,
            error: None,
            closed: false,
            can_tell: true,
            rtt: Duration::from_millis(1),
            // The peer's last data (its request) came before the close began.
            last_data: now.checked_sub(Duration::from_secs(1)).unwrap_or(now),
            read_error: None,
            info_fails: false,
            lowat: 1,
            read_ready: true,
            write_ready: true,
            hup: false,
            read_waker: None,
            write_waker: None,
            ops: 0,
            reset_armed: None,
            discarded: 0,
            eof_read: false,
            fin_told_wrong: false,
            dropped: false,
        }
    }

    /// Sequence space of ours: data, and our FIN once queued.
    fn total(&self) -> u64 {
        self.written + u64::from(self.fin_queued)
    }

    /// `SIOCOUTQ`.
    pub(super) fn outq(&self) -> u64 {
        self.total() - self.acked.min(self.total())
    }

    fn readable_edge(&mut self) {
        self.read_ready = true;
        if let Some(w) = self.read_waker.take() {
            w.wake();
        }
    }

    fn writable_edge(&mut self) {
        self.write_ready = true;
        if let Some(w) = self.write_waker.take() {
            w.wake();
        }
    }

    fn both_shut(&mut self) {
        if self.peer_fin && self.fin_queued {
            self.hup = true;
        }
    }

    // ===== the peer and the network =====

    /// The peer's data arrives.
    pub(super) fn peer_sends(&mut self, n: u64, now: Instant) {
        if self.closed || self.peer_fin || self.dropped {
            return;
        }
        self.inq += n;
        self.last_data = now;
        if self.inq >= self.lowat {
            self.readable_edge();
        }
    }

    /// The peer's FIN arrives.
    pub(super) fn peer_fin(&mut self) {
        if self.closed || self.peer_fin || self.dropped {
            return;
        }
        self.peer_fin = true;
        self.both_shut();
        self.readable_edge();
    }

    /// The peer acknowledges `n` more of our sequence space (`u64::MAX`: everything).
    pub(super) fn peer_acks(&mut self, n: u64) {
        if self.closed || self.dropped {
            return;
        }
        let before = self.acked;
        self.acked = self.acked.saturating_add(n).min(self.total());
        if self.fin_queued && before < self.total() && self.acked == self.total() {
            // FIN_WAIT1 → FIN_WAIT2: `sk_state_change` wakes every waiter.
            self.writable_edge();
            if self.inq >= self.lowat || self.peer_fin {
                self.readable_edge();
            }
        }
    }

    /// A reset arrives, or the kernel gives up retransmitting (`errno`).
    pub(super) fn dies(&mut self, errno: i32) {
        if self.closed || self.dropped {
            return;
        }
        self.error = Some(errno);
        self.closed = true;
        self.hup = true;
        self.readable_edge();
        self.writable_edge();
    }

    // ===== the socket calls =====

    fn op(&mut self) {
        self.ops += 1;
        assert!(
            self.ops < SPIN,
            "the close spins: {SPIN} socket operations in one poll without waiting"
        );
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>, write: bool) -> Poll<io::Result<()>> {
        self.op();
        let (ready, waker) = if write {
            (self.write_ready, &mut self.write_waker)
        } else {
            (self.read_ready, &mut self.read_waker)
        };
        if ready || self.hup {
            return Poll::Ready(Ok(()));
        }
        *waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn discard(&mut self, max: usize) -> io::Result<usize> {
        self.op();
        if let Some(errno) = self.read_error.take() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if self.inq > 0 {
            let n = self.inq.min(max as u64);
            self.inq -= n;
            self.discarded += n;
            return Ok(n as usize);
        }
        if let Some(errno) = self.error.take() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if self.peer_fin || self.closed {
            self.eof_read = true;
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// The socket the close sees: the scripted kernel behind Tokio's readiness.
#[derive(Debug, Clone)]
pub(super) struct SimSocket(pub(super) Rc<RefCell<Kernel>>);

#[allow(private_interfaces)]
impl Socket for SimSocket {
    fn as_sock(&self) -> Sock<'_> {
        panic!("the close went around the Socket trait to the system")
    }
    fn kind(&self) -> SocketKind {
        SocketKind::Tcp
    }
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().poll_ready(cx, false)
    }
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().poll_ready(cx, true)
    }
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
        let res = f();
        if matches!(&res, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            let mut k = self.0.borrow_mut();
            if interest.is_readable() {
                k.read_ready = false;
            }
            if interest.is_writable() {
                k.write_ready = false;
            }
        }
        res
    }
    fn shutdown_write(&self) -> io::Result<()> {
        let mut k = self.0.borrow_mut();
        k.op();
        match k.shutdown {
            Shutdown::Ok if !k.closed => {
                k.fin_queued = true;
                k.both_shut();
                k.writable_edge();
                Ok(())
            }
            Shutdown::ResetPending => {
                k.dies(nix::libc::ECONNRESET);
                Err(io::ErrorKind::NotConnected.into())
            }
            _ => {
                k.closed = true;
                k.hup = true;
                Err(io::ErrorKind::NotConnected.into())
            }
        }
    }
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        let mut k = self.0.borrow_mut();
        k.op();
        Ok(k.error.take().map(io::Error::from_raw_os_error))
    }
    fn send_queue(
        &self,
        fin_sent: bool,
        closed: impl FnOnce() -> io::Result<bool>,
    ) -> io::Result<SendQueue> {
        let (can_tell, outq) = {
            let mut k = self.0.borrow_mut();
            k.op();
            if fin_sent != k.fin_queued {
                k.fin_told_wrong = true;
            }
            (k.can_tell, k.outq())
        };
        if !can_tell {
            return Ok(SendQueue::Unknown);
        }
        if outq == 0 {
            return Ok(SendQueue::Empty);
        }
        Ok(if closed()? {
            SendQueue::Gone
        } else {
            SendQueue::Pending
        })
    }
    fn activity(&self) -> io::Result<Option<Activity>> {
        let mut k = self.0.borrow_mut();
        k.op();
        if k.info_fails {
            return Err(io::Error::from_raw_os_error(nix::libc::EBADF));
        }
        Ok(Some(Activity {
            since_last_data: Instant::now().saturating_duration_since(k.last_data),
            rtt: k.rtt,
            closed: k.closed,
        }))
    }
    fn unacked(&self) -> io::Result<usize> {
        let mut k = self.0.borrow_mut();
        k.op();
        if !k.can_tell {
            return Err(io::ErrorKind::Unsupported.into());
        }
        Ok(k.outq() as usize)
    }
    fn unread(&self) -> io::Result<usize> {
        let mut k = self.0.borrow_mut();
        k.op();
        if !k.can_tell {
            return Err(io::ErrorKind::Unsupported.into());
        }
        Ok(k.inq as usize)
    }
    fn discard(&self, max: usize, _tcp: bool) -> io::Result<usize> {
        self.0.borrow_mut().discard(max)
    }
    fn is_tcp(&self) -> bool {
        true
    }
    fn wake_in_batches(&self, batch: usize) -> io::Result<bool> {
        let mut k = self.0.borrow_mut();
        k.op();
        // A quarter of a 256 KiB receive buffer at most; under 16 KiB: off.
        let batch = (batch as u64).min(64 << 10);
        k.lowat = if batch < 16 << 10 { 1 } else { batch };
        Ok(k.lowat > 1)
    }
    fn set_user_timeout(&self, _ms: u32) -> io::Result<()> {
        self.0.borrow_mut().op();
        Ok(())
    }
    fn arm_reset(&self) -> io::Result<()> {
        let mut k = self.0.borrow_mut();
        k.op();
        k.reset_armed = Some((k.outq(), k.inq, k.fin_queued));
        Ok(())
    }
    fn disarm_linger(&self) {
        self.0.borrow_mut().op();
    }
}

impl Closable for SimSocket {
    fn poll_closer(
        &self,
        closer: &mut Closer,
        cx: &mut Context<'_>,
    ) -> Poll<Result<CloseReport, CloseError>> {
        closer.poll_close(self, cx)
    }
}

impl AsyncGracefulClose for SimSocket {}
