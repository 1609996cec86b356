//! FreeBSD: `FIONWRITE` and `TCP_INFO` for the ACK check, `recv` into a stack buffer for
//! the drain.
//!
//! - `ioctl(FIONWRITE)` is `sbavail(&so->so_snd)`: for TCP sockets, the bytes not yet
//!   acknowledged by the other side, sent or not (ioctl(2)). **The FIN is not
//!   counted.**
//! - `getsockopt(IPPROTO_TCP, TCP_INFO)` gives `tcpi_state` with FreeBSD's own
//!   numbering (netinet/tcp_fsm.h: `TCPS_CLOSED` = 0, `TCPS_FIN_WAIT_2` = 9,
//!   `TCPS_TIME_WAIT` = 10), not Linux's. After our `shutdown(SHUT_WR)` those two states
//!   mean the peer acknowledged our FIN, and so every byte before it. Only the first
//!   byte of `struct tcp_info` is read, so the layout changes between releases do not
//!   matter (the kernel copies at most the length passed).
//! - Once the kernel dropped the connection (a normal close after `LAST_ACK`, a
//!   reset) `TCP_INFO` fails with `ECONNRESET` and the send buffer is emptied
//!   (`soisdisconnected`): a count of 0 then proves nothing, so that case is decided by
//!   `SO_ERROR`.
//! - `AF_UNIX` streams: no ACK check (the close drains to the peer's EOF).
//! - No `TCP_USER_TIMEOUT`, and no counterpart of `MSG_TRUNC` on TCP: the drain copies.
//!   kqueue's `EVFILT_EMPTY` (send buffer empty) could make the wait event-driven; not
//!   used yet.
//!
//! Untested: nothing here can run FreeBSD; CI compiles and lints this file only.

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

/// `ioctl(FIONWRITE)`: TCP bytes not yet acknowledged (the FIN not counted).
fn nwrite(fd: Sock<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // Safety: `FIONWRITE` writes one `c_int` through the pointer, and `n` is a live
    // `c_int` for the whole call.
    syscall!(ioctl(
        fd.as_raw_fd(),
        libc::FIONWRITE,
        std::ptr::from_mut(&mut n)
    ))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `getsockopt(IPPROTO_TCP, TCP_INFO)`, of which only `tcpi_state` is used. `None` once
/// the kernel no longer keeps the connection.
fn tcp_state(fd: Sock<'_>) -> io::Result<Option<u8>> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // Safety: `info` is valid for `len` bytes; the kernel writes at most `len` bytes and
    // stores how many it wrote in `len`.
    let res = syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        info.as_mut_ptr().cast(),
        &mut len
    ));
    match res {
        Ok(_) => {}
        // `INP_DROPPED` (closed, reset) or `INP_TIMEWAIT` on older releases.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNRESET | libc::ENOTCONN)) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    }
    // Safety: the struct was zeroed, so fields the kernel did not fill are 0, and
    // `tcp_info` is plain integers, for which every bit pattern is valid.
    let info = unsafe { info.assume_init() };
    Ok(Some(info.tcpi_state))
}

/// Where our bytes stand: the state, then `FIONWRITE` (shared BSD logic).
pub(crate) fn send_queue(
    fd: Sock<'_>,
    kind: SocketKind,
    fin_sent: bool,
    _closed: impl FnOnce() -> io::Result<bool>,
) -> io::Result<SendQueue> {
    super::bsd::send_queue(fd, kind, fin_sent, tcp_state, nwrite)
}

/// Bytes not yet acknowledged: `FIONWRITE`, plus our FIN while unacknowledged.
pub(crate) fn unacked(fd: Sock<'_>, kind: SocketKind) -> io::Result<usize> {
    super::bsd::unacked(fd, kind, tcp_state, nwrite)
}

/// `setsockopt(IPPROTO_TCP, TCP_NOPUSH)`, the counterpart of Linux's `TCP_CORK`.
pub(crate) fn set_cork(fd: Sock<'_>, on: bool) -> io::Result<()> {
    super::set_nopush(fd, on)
}
