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

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TcpInfo {
    pub(crate) state: u8,
}

pub(crate) fn tcp_info(_fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    Err(unsupported())
}

pub(crate) fn set_user_timeout(_fd: BorrowedFd<'_>, _timeout: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TCP_USER_TIMEOUT is only available on Linux",
    ))
}
