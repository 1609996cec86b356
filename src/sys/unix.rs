//! Other Unix systems: graceful half-close and drain, no ACK check.
//!
//! Untested: no such target is built in CI. macOS `SO_NWRITE` and FreeBSD `FIONWRITE`
//! would give the ACK check; contributions with a test machine are welcome.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use super::SocketKind;

/// Whether this platform can tell how many sent bytes the peer has not acknowledged.
pub(crate) const ACK_CHECK: bool = false;

/// `TCP_CLOSE`; unused here.
pub(crate) const TCP_CLOSE: u8 = 7;

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "the unacknowledged byte count (SIOCOUTQ) is only available on Linux",
    )
}

pub(crate) fn unacked(_fd: BorrowedFd<'_>) -> io::Result<usize> {
    Err(unsupported())
}

pub(crate) fn unsent(_fd: BorrowedFd<'_>) -> io::Result<usize> {
    Err(unsupported())
}

pub(crate) fn discard(fd: BorrowedFd<'_>, _kind: SocketKind, max: usize) -> io::Result<usize> {
    super::discard_by_copy(fd, max)
}

pub(crate) fn tcp_state(_fd: BorrowedFd<'_>) -> io::Result<u8> {
    Err(unsupported())
}

pub(crate) fn set_user_timeout(_fd: BorrowedFd<'_>, _timeout: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TCP_USER_TIMEOUT is only available on Linux",
    ))
}

/// `setsockopt(IPPROTO_TCP, TCP_NOPUSH)`, the BSD and macOS counterpart of Linux's
/// `TCP_CORK`: while set, only full-sized segments are sent.
///
/// Untested: no such target is built in CI. FreeBSD sends the held tail when the option
/// is cleared; whether every other system does so at once is not verified. A descriptor
/// that is no longer open only makes the call fail with `EBADF`.
#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "openbsd"
))]
pub(crate) fn set_cork(fd: std::os::fd::RawFd, on: bool) -> io::Result<()> {
    use nix::libc;
    let value = libc::c_int::from(on);
    // Safety: `value` is a live `c_int` for the whole call and its exact size is passed;
    // the kernel only reads it.
    syscall!(setsockopt(
        fd,
        libc::IPPROTO_TCP,
        libc::TCP_NOPUSH,
        std::ptr::from_ref(&value).cast(),
        std::mem::size_of::<libc::c_int>() as libc::socklen_t
    ))?;
    Ok(())
}

/// No `TCP_CORK` or `TCP_NOPUSH` known on this system.
#[cfg(not(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "openbsd"
)))]
pub(crate) fn set_cork(_fd: std::os::fd::RawFd, _on: bool) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "corking (TCP_CORK / TCP_NOPUSH) is not available on this system",
    ))
}
