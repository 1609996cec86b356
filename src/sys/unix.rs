//! Other Unix systems (neither Linux, Android, Apple nor FreeBSD): graceful half-close
//! and drain, no ACK check.
//!
//! Untested: no such target runs here; CI only lints it.

use std::io;

use super::{SendQueue, Sock, SocketKind};

/// Whether this platform can tell how many sent bytes the peer has not acknowledged.
pub(crate) const ACK_CHECK: bool = false;

/// Never consulted: without an ACK check the close waits for the peer's EOF.
pub(crate) const WRITE_EDGES: bool = true;

pub(crate) fn send_queue(
    _fd: Sock<'_>,
    _kind: SocketKind,
    _fin_sent: bool,
    _closed: impl FnOnce() -> io::Result<bool>,
) -> io::Result<SendQueue> {
    Ok(SendQueue::Unknown)
}

pub(crate) fn unacked(_fd: Sock<'_>, _kind: SocketKind) -> io::Result<usize> {
    Err(super::unsupported(
        "the unacknowledged byte count is not available on this system",
    ))
}

/// `setsockopt(IPPROTO_TCP, TCP_NOPUSH)`, the BSD counterpart of Linux's `TCP_CORK`.
#[cfg(any(target_os = "dragonfly", target_os = "openbsd"))]
pub(crate) fn set_cork(fd: Sock<'_>, on: bool) -> io::Result<()> {
    super::set_nopush(fd, on)
}

/// No `TCP_CORK` or `TCP_NOPUSH` known on this system.
#[cfg(not(any(target_os = "dragonfly", target_os = "openbsd")))]
pub(crate) fn set_cork(_fd: Sock<'_>, _on: bool) -> io::Result<()> {
    Err(super::unsupported(
        "corking (TCP_CORK / TCP_NOPUSH) is not available on this system",
    ))
}
