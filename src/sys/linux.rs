//! Linux and Android: `SIOCOUTQ`, `SIOCOUTQNSD`, `TCP_INFO` and `MSG_TRUNC` drains.

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use nix::libc;

use super::SocketKind;

/// Whether this platform can tell how many sent bytes the peer has not acknowledged.
pub(crate) const ACK_CHECK: bool = true;

/// `TCP_CLOSE` in `tcp_info::tcpi_state`.
pub(crate) const TCP_CLOSE: u8 = 7;

// `SIOCOUTQ` has the number of `TIOCOUTQ` (0x5411 on x86, different on mips, powerpc
// and sparc); libc only names the latter, which carries the right value per arch.
nix::ioctl_read_bad!(ioctl_outq, libc::TIOCOUTQ, libc::c_int);
nix::ioctl_read_bad!(ioctl_outq_nsd, libc::SIOCOUTQNSD, libc::c_int);

/// `ioctl(SIOCOUTQ)`: bytes written but not yet acknowledged by the peer (TCP, our FIN
/// counts as one), or not yet read by the peer (`AF_UNIX`).
pub(crate) fn unacked(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // Safety: `fd` is a live socket for the borrow and `n` is a valid `c_int` out-pointer.
    unsafe { ioctl_outq(fd.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n.max(0) as usize)
}

/// `ioctl(SIOCOUTQNSD)`: bytes queued but not yet sent (TCP only).
pub(crate) fn unsent(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // Safety: as in `unacked`.
    unsafe { ioctl_outq_nsd(fd.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n.max(0) as usize)
}

/// Discards up to `max` received bytes without blocking; `Ok(0)` is the peer's EOF.
///
/// TCP uses `recv(fd, NULL, max, MSG_TRUNC)`, which drops the data inside the kernel
/// without copying it (tcp(7)). `AF_UNIX` streams have no such mode and copy into a
/// small buffer on the stack.
pub(crate) fn discard(fd: BorrowedFd<'_>, kind: SocketKind, max: usize) -> io::Result<usize> {
    match kind {
        SocketKind::Tcp => {
            // Safety: with MSG_TRUNC, TCP never writes through the buffer pointer, so a
            // null buffer of any length is valid (the same call HAProxy's sock_drain makes).
            let n = syscall!(recv(
                fd.as_raw_fd(),
                std::ptr::null_mut(),
                max,
                libc::MSG_TRUNC | libc::MSG_DONTWAIT
            ))?;
            Ok(n as usize)
        }
        SocketKind::Unix => super::discard_by_copy(fd, max),
    }
}

/// `getsockopt(IPPROTO_TCP, TCP_INFO)`, of which only `tcpi_state` is used
/// (`TCP_CLOSE` = 7 once the connection is gone).
pub(crate) fn tcp_state(fd: BorrowedFd<'_>) -> io::Result<u8> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // Safety: `info` is valid for `len` bytes; the kernel writes at most `len` bytes and
    // stores how many it wrote in `len`.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        info.as_mut_ptr().cast(),
        &mut len
    ))?;
    // Safety: the struct was zeroed, so fields an older kernel did not fill are 0, and
    // `tcp_info` is plain integers, for which every bit pattern is valid.
    let info = unsafe { info.assume_init() };
    Ok(info.tcpi_state)
}

/// `setsockopt(TCP_USER_TIMEOUT)`. The kernel takes a non-negative `int` of
/// milliseconds: longer timeouts are clamped to `i32::MAX` ms (about 24.8 days).
pub(crate) fn set_user_timeout(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<()> {
    let max = Duration::from_millis(i32::MAX as u64);
    socket2::SockRef::from(&fd).set_tcp_user_timeout(Some(timeout.min(max)))
}

/// `setsockopt(IPPROTO_TCP, TCP_CORK)`: while set, the kernel sends only full-sized
/// segments and holds a partial tail; clearing it hands the tail to the normal send
/// path at once (tcp(7)). Linux releases a cork by itself after 200 ms.
///
/// Takes a raw descriptor because `Corked` uncorks from a field dropped just before the
/// stream it wraps. No memory is at stake: a descriptor that is no longer open only
/// makes the call fail with `EBADF`.
pub(crate) fn set_cork(fd: std::os::fd::RawFd, on: bool) -> io::Result<()> {
    let value = libc::c_int::from(on);
    // Safety: `value` is a live `c_int` for the whole call and its exact size is passed;
    // the kernel only reads it.
    syscall!(setsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_CORK,
        std::ptr::from_ref(&value).cast(),
        mem::size_of::<libc::c_int>() as libc::socklen_t
    ))?;
    Ok(())
}
