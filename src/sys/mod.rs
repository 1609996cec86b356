//! Platform code. Every `unsafe` call of the crate lives below this module.
//!
//! Public items elsewhere stay thin and forward to the `pub(crate)` functions of the
//! platform file chosen here (the layout of `socket2`). Each platform file provides:
//!
//! | item | what |
//! |---|---|
//! | `ACK_CHECK` | whether [`send_queue`] can tell that the peer acknowledged everything |
//! | `send_queue(sock, kind, fin_sent)` | the [`SendQueue`] state |
//! | `unacked(sock, kind)`, `unsent(sock, kind)` | byte counts for the public API, or `Unsupported` |
//! | `discard(sock, kind, max)` | reads and throws away up to `max` bytes, never blocking |
//! | `set_user_timeout(sock, t)` | the kernel's retransmission bound, or `Unsupported` |
//! | `set_cork(fd, on)` (Unix) | `TCP_CORK` / `TCP_NOPUSH`, or `Unsupported` |

use std::io;

/// Calls a `libc` function and turns `-1` into [`std::io::Error::last_os_error`].
#[cfg(unix)]
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // Safety: the caller of the macro upholds the contract of `$fn`;
        // each use site says why its arguments are valid.
        let res = unsafe { nix::libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "linux.rs"]
mod imp;

#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
#[path = "unix.rs"]
mod imp;

#[cfg(not(unix))]
compile_error!(
    "tokio-graceful-close supports Unix only (Linux fully; other Unix without the ACK check)"
);

pub(crate) use imp::*;

/// A borrowed socket: a file descriptor on Unix.
#[cfg(unix)]
pub(crate) type Sock<'a> = std::os::fd::BorrowedFd<'a>;

/// A borrowed socket: a `SOCKET` handle on Windows.
#[cfg(windows)]
pub(crate) type Sock<'a> = std::os::windows::io::BorrowedSocket<'a>;

/// The kind of socket behind a stream; decides how the drain discards data and what
/// the send queue means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketKind {
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// `AF_UNIX` stream socket.
    #[cfg(unix)]
    Unix,
}

/// Where the bytes we wrote stand, as far as the platform can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendQueue {
    /// TCP: the peer acknowledged every byte and, once sent, our FIN. `AF_UNIX`: nothing
    /// of ours is queued any more (the peer read it, or closed and purged it: the
    /// caller tells the two apart with `SO_ERROR`).
    Empty,
    /// Bytes (or our FIN) still wait for the peer.
    Pending,
    /// The connection is gone with bytes still unacknowledged (reset, retransmission
    /// give-up): the queue will never drain. `SO_ERROR` says why, if anything does.
    Gone,
    /// This platform cannot tell.
    #[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
    Unknown,
}

/// Size of the on-stack scratch buffer used where data must be copied to be discarded.
#[cfg(unix)]
pub(crate) const SCRATCH: usize = 4096;

/// Reads and throws away up to `max` bytes into a scratch buffer on the stack.
#[cfg(unix)]
#[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
fn discard_by_copy(fd: Sock<'_>, max: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; SCRATCH];
    let len = max.min(SCRATCH);
    // Safety: `buf` is valid for writes of `len <= SCRATCH` bytes for the whole call.
    let n = syscall!(recv(
        fd.as_raw_fd(),
        buf.as_mut_ptr().cast(),
        len,
        nix::libc::MSG_DONTWAIT
    ))?;
    Ok(n as usize)
}

/// The error `unacked_bytes` / `unsent_bytes` return where there is no byte count.
pub(crate) fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_owned())
}

/// Whether `e` is the `EHOSTDOWN` of this platform (no `io::ErrorKind` names it).
pub(crate) fn is_host_down(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        e.raw_os_error() == Some(nix::libc::EHOSTDOWN)
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

/// A registration of our own for a socket the application keeps using: a duplicate of
/// its descriptor registered with Tokio's reactor for write readiness, so that the
/// close can wait for the kernel's wakeup (our FIN acknowledged) without consuming the
/// readiness Tokio caches for the application's stream.
///
/// Both descriptors refer to the same socket; the kernel wakes every epoll entry
/// watching it. Dropping the watch deregisters and closes only the duplicate.
#[cfg(unix)]
#[derive(Debug)]
pub(crate) struct Watch(tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>);

#[cfg(unix)]
impl Watch {
    /// `fcntl(F_DUPFD_CLOEXEC)` and `epoll_ctl(EPOLL_CTL_ADD)`, for write readiness.
    pub(crate) fn new(sock: Sock<'_>) -> io::Result<Self> {
        let fd = sock.try_clone_to_owned()?;
        // Safety: the `OwnedFd` is moved into the `AsyncFd`, which owns it from here on:
        // it stays open and refers to the same socket until the `AsyncFd` is dropped.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::WRITABLE)
        }
        .map_err(io::Error::from)?;
        Ok(Watch(fd))
    }

    /// `Ready` once a wakeup came since the last call (which it consumes); `Pending`
    /// registers the task for the next one.
    pub(crate) fn poll_edge(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.0.poll_write_ready(cx) {
            std::task::Poll::Ready(Ok(mut guard)) => {
                guard.clear_ready();
                std::task::Poll::Ready(Ok(()))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// No private registration on this platform: the close re-checks on its timer.
#[cfg(not(unix))]
#[derive(Debug)]
pub(crate) struct Watch(());

#[cfg(not(unix))]
impl Watch {
    pub(crate) fn new(_sock: Sock<'_>) -> io::Result<Self> {
        Err(unsupported(
            "no private readiness registration on this platform",
        ))
    }

    pub(crate) fn poll_edge(
        &self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::Poll::Pending
    }
}
