//! macOS and the other Apple systems: `SO_NWRITE` and `TCP_CONNECTION_INFO` for the ACK
//! check, `recv` into a stack buffer for the drain.
//!
//! - `getsockopt(SOL_SOCKET, SO_NWRITE)` is `so_snd.sb_cc`: the bytes still in the send
//!   buffer. BSD TCP keeps bytes there until they are acknowledged, so this is
//!   everything written and not yet acknowledged, sent or not. **The FIN is not
//!   counted.**
//! - `getsockopt(IPPROTO_TCP, TCP_CONNECTION_INFO)` (macOS 10.11 and later) gives
//!   `tcpi_state` with the BSD numbering (`TCPS_FIN_WAIT_2` = 9, `TCPS_TIME_WAIT` = 10).
//!   After our `shutdown(SHUT_WR)` those two states mean the peer acknowledged our FIN,
//!   and so every byte before it.
//! - A reset or a give-up closes the connection and empties the send buffer
//!   (`soisdisconnected`): a count of 0 proves nothing once the state is `CLOSED`, so
//!   that case is decided by `SO_ERROR`.
//! - `AF_UNIX` streams queue into the peer's receive buffer, so our `SO_NWRITE` says
//!   nothing there: no ACK check on them (the close drains to the peer's EOF).
//! - No `TCP_USER_TIMEOUT`, and no counterpart of `MSG_TRUNC` on TCP: the drain copies.
//!
//! Untested: nothing here can run an Apple system; CI compiles and lints this file only.

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::AsRawFd;

use nix::libc;

use super::{SendQueue, Sock, SocketKind};

/// Whether this platform can tell how many sent bytes the peer has not acknowledged.
pub(crate) const ACK_CHECK: bool = true;

/// kqueue's `EVFILT_WRITE` with `EV_CLEAR` (as Tokio registers it) fires again when an
/// acknowledgement frees send buffer space (`sowwakeup`) or the connection closes
/// (from the kernel source; untested).
pub(crate) const WRITE_EDGES: bool = true;

/// `getsockopt(SOL_SOCKET, SO_NWRITE)`: bytes in the send buffer (unsent and
/// unacknowledged; the FIN not counted).
fn nwrite(fd: Sock<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // Safety: `n` is a live `c_int` and `len` its exact size; the kernel writes at most
    // `len` bytes and stores how many in `len`.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_NWRITE,
        std::ptr::from_mut(&mut n).cast(),
        &mut len
    ))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `getsockopt(IPPROTO_TCP, TCP_CONNECTION_INFO)`, of which only `tcpi_state` is used.
/// `None` once the kernel no longer keeps the connection.
fn tcp_state(fd: Sock<'_>) -> io::Result<Option<u8>> {
    let mut info = MaybeUninit::<libc::tcp_connection_info>::zeroed();
    let mut len = mem::size_of::<libc::tcp_connection_info>() as libc::socklen_t;
    // Safety: `info` is valid for `len` bytes; the kernel writes at most `len` bytes and
    // stores how many it wrote in `len`.
    let res = syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_CONNECTION_INFO,
        info.as_mut_ptr().cast(),
        &mut len
    ));
    match res {
        Ok(_) => {}
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    }
    // Safety: the struct was zeroed, so fields the kernel did not fill are 0, and
    // `tcp_connection_info` is plain integers, for which every bit pattern is valid.
    let info = unsafe { info.assume_init() };
    Ok(Some(info.tcpi_state))
}

/// The errors `getsockopt(IPPROTO_TCP, ..)` gives once the kernel no longer keeps the
/// connection.
fn gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNRESET | libc::ENOTCONN))
}

/// Where our bytes stand: the state, then `SO_NWRITE` (shared BSD logic).
pub(crate) fn send_queue(
    fd: Sock<'_>,
    kind: SocketKind,
    fin_sent: bool,
    _closed: impl FnOnce() -> io::Result<bool>,
) -> io::Result<SendQueue> {
    super::bsd::send_queue(fd, kind, fin_sent, tcp_state, nwrite)
}

/// Bytes not yet acknowledged: `SO_NWRITE`, plus our FIN while unacknowledged.
pub(crate) fn unacked(fd: Sock<'_>, kind: SocketKind) -> io::Result<usize> {
    super::bsd::unacked(fd, kind, tcp_state, nwrite)
}

/// `setsockopt(IPPROTO_TCP, TCP_NOPUSH)`, the counterpart of Linux's `TCP_CORK`.
pub(crate) fn set_cork(fd: Sock<'_>, on: bool) -> io::Result<()> {
    super::set_nopush(fd, on)
}
