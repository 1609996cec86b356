//! Windows: `WSAIoctl(SIO_TCP_INFO)` for the ACK check, `recv` into a stack buffer for
//! the drain.
//!
//! - `SIO_TCP_INFO` (Windows 10 1703 and later) fills `TCP_INFO_v0`. Its `BytesInFlight`
//!   counts bytes sent and not yet acknowledged but not the bytes still waiting to be
//!   sent, so it cannot say that everything written was acknowledged. Its `State` can,
//!   after our `shutdown(SD_SEND)`: `FinWait2` and `TimeWait` are only reached once the
//!   peer acknowledged our FIN, which follows every byte we wrote.
//! - `Closed` after our FIN is the normal end when the peer had closed first (`LastAck`
//!   → `Closed`), and also what a reset leaves. It counts as acknowledged only with
//!   nothing in flight and no pending socket error; a reset that comes later still
//!   fails the drain (`recv` returns `WSAECONNRESET`).
//! - Before our FIN (the delivery barrier) unsent bytes are invisible: the answer is
//!   "cannot tell", unless the connection is already `Closed`.
//! - Where `SIO_TCP_INFO` is missing (Windows before 10 1703, and Wine, which answers
//!   `WSAEOPNOTSUPP`) the close cannot confirm the acknowledgement: it drains to the
//!   peer's EOF and ends `Ok` with `acked() == false`. The first `WSAEOPNOTSUPP` is
//!   remembered for the life of the process.
//! - No wakeup marks the acknowledgement of our FIN, and Tokio's readiness here (AFD
//!   polling) reports a shut-down socket writable again as soon as it is cleared: the
//!   close does not wait on write readiness ([`WRITE_EDGES`] is `false`) and has no
//!   private registration ([`Watch`](super::Watch)). It re-checks on its timer and on
//!   the drain's wakeups.
//!
//! Tested under Wine only (the `SIO_TCP_INFO` fallback). The `SIO_TCP_INFO` path
//! compiles and is linted but has not run on a real Windows here.

use std::io;
use std::mem;
use std::os::windows::io::AsRawSocket;
use std::sync::atomic::{AtomicBool, Ordering};

use windows_sys::Win32::Networking::WinSock::{
    recv, TCP_INFO_v0, WSAGetLastError, WSAIoctl, SIO_TCP_INFO, SOCKET, SOCKET_ERROR,
    TCPSTATE_CLOSED, TCPSTATE_FIN_WAIT_2, TCPSTATE_TIME_WAIT, WSAEINVAL, WSAEOPNOTSUPP,
};

use super::{SendQueue, Sock, SocketKind, TcpPhase};

/// `true`: [`send_queue`] may tell; it answers [`SendQueue::Unknown`] at run time where
/// the system has no `SIO_TCP_INFO`.
pub(crate) const ACK_CHECK: bool = true;

/// `false`: Tokio's readiness on Windows (AFD polling) reports a shut-down socket
/// writable again as soon as the readiness is cleared, so consuming write edges would
/// spin (seen under Wine); and no event marks the acknowledgement of our FIN. The close
/// re-checks the state on its timer (1 ms, 2 ms, 4 ms, ... up to the poll interval) and
/// on the drain's wakeups.
pub(crate) const WRITE_EDGES: bool = false;

/// Set once `SIO_TCP_INFO` answered `WSAEOPNOTSUPP`: not asked again.
static NO_TCP_INFO: AtomicBool = AtomicBool::new(false);

fn raw(sock: Sock<'_>) -> SOCKET {
    // `RawSocket` is a `u64`; `SOCKET` is pointer-sized and holds every handle value.
    sock.as_raw_socket() as SOCKET
}

/// The last Winsock error of this thread.
fn last_error() -> io::Error {
    // Safety: `WSAGetLastError` takes no arguments and only reads thread-local state.
    io::Error::from_raw_os_error(unsafe { WSAGetLastError() })
}

/// `WSAIoctl(SIO_TCP_INFO)`, version 0; `None` where the system does not provide it.
fn tcp_info(sock: Sock<'_>) -> io::Result<Option<TCP_INFO_v0>> {
    if NO_TCP_INFO.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let version: u32 = 0;
    let mut info = TCP_INFO_v0::default();
    let mut returned: u32 = 0;
    // Safety: the input is a live `u32` (the structure version) of the size passed; the
    // output is a live `TCP_INFO_v0` of the size passed, which Winsock fills up to that
    // size; `returned` is a valid out-pointer; no `OVERLAPPED` and no completion routine
    // make the call synchronous, so no pointer outlives it.
    let rc = unsafe {
        WSAIoctl(
            raw(sock),
            SIO_TCP_INFO,
            std::ptr::from_ref(&version).cast(),
            mem::size_of::<u32>() as u32,
            std::ptr::from_mut(&mut info).cast(),
            mem::size_of::<TCP_INFO_v0>() as u32,
            &mut returned,
            std::ptr::null_mut(),
            None,
        )
    };
    if rc == SOCKET_ERROR {
        let e = last_error();
        return match e.raw_os_error() {
            Some(WSAEOPNOTSUPP) => {
                NO_TCP_INFO.store(true, Ordering::Relaxed);
                Ok(None)
            }
            // The version or this socket is not accepted: this socket cannot tell.
            Some(WSAEINVAL) => Ok(None),
            // The connection is gone: judged like `Closed`.
            _ if e.kind() == io::ErrorKind::NotConnected => Ok(Some(TCP_INFO_v0 {
                State: TCPSTATE_CLOSED,
                ..TCP_INFO_v0::default()
            })),
            _ => Err(e),
        };
    }
    if (returned as usize) < mem::size_of::<TCP_INFO_v0>() {
        return Ok(None);
    }
    Ok(Some(info))
}

/// Where our bytes stand, from `TCP_INFO_v0.State` (see the module docs).
pub(crate) fn send_queue(
    sock: Sock<'_>,
    kind: SocketKind,
    fin_sent: bool,
    _closed: impl FnOnce() -> io::Result<bool>,
) -> io::Result<SendQueue> {
    let SocketKind::Tcp = kind;
    let Some(info) = tcp_info(sock)? else {
        return Ok(SendQueue::Unknown);
    };
    let phase = match info.State {
        TCPSTATE_FIN_WAIT_2 | TCPSTATE_TIME_WAIT => TcpPhase::FinAcked,
        // Closed with bytes still in flight never drains, whatever `SO_ERROR` says.
        TCPSTATE_CLOSED if info.BytesInFlight > 0 => return Ok(SendQueue::Gone),
        TCPSTATE_CLOSED => TcpPhase::Closed,
        _ => TcpPhase::Open,
    };
    // No count of everything written: the unsent bytes are invisible.
    super::judge(sock, phase, None, fin_sent)
}

pub(crate) fn unacked(_sock: Sock<'_>, _kind: SocketKind) -> io::Result<usize> {
    Err(super::unsupported(
        "Windows reports bytes in flight but not bytes still waiting to be sent: \
         there is no count of unacknowledged bytes",
    ))
}

pub(crate) fn unsent(_sock: Sock<'_>, _kind: SocketKind) -> io::Result<usize> {
    Err(super::unsupported(
        "the unsent byte count is not available on Windows",
    ))
}

/// Discards up to `max` received bytes: `recv` into a small buffer on the stack. The
/// socket is non-blocking (Tokio made it so): no data gives `WSAEWOULDBLOCK`, which is
/// [`io::ErrorKind::WouldBlock`]. `Ok(0)` is the peer's EOF.
/// Whether the drain may discard without copying: never on Windows.
pub(crate) fn is_tcp(_sock: Sock<'_>) -> bool {
    false
}

pub(crate) fn discard(sock: Sock<'_>, max: usize, _tcp: bool) -> io::Result<usize> {
    let mut buf = [0u8; super::SCRATCH];
    let len = max.min(super::SCRATCH);
    // Safety: `buf` is valid for writes of `len <= SCRATCH` bytes for the whole call,
    // and `SCRATCH` fits an `i32`.
    let n = unsafe { recv(raw(sock), buf.as_mut_ptr(), len as i32, 0) };
    if n == SOCKET_ERROR {
        return Err(last_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// What the peer did lately: not known here.
pub(crate) fn activity(_sock: Sock<'_>) -> io::Result<Option<super::Activity>> {
    Ok(None)
}

/// Windows has `TCP_MAXRT`, but not the contract of `TCP_USER_TIMEOUT`: it bounds
/// retransmissions only, in whole seconds, and its give-up surfaces as
/// `WSAECONNABORTED`, which cannot be told from a local abort. Not offered.
pub(crate) fn set_user_timeout(_sock: Sock<'_>, _ms: u32) -> io::Result<()> {
    Err(super::unsupported(
        "TCP_USER_TIMEOUT is only available on Linux",
    ))
}

/// Batched drain wakeups: not on Windows (no `SO_RCVLOWAT` to set).
pub(crate) fn wake_in_batches(_sock: Sock<'_>, _batch: usize) -> io::Result<bool> {
    Ok(false)
}
