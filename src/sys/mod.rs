//! Platform code. Every `unsafe` call of the crate lives below this module.
//!
//! Public items elsewhere stay thin and forward to the `pub(crate)` functions of the
//! platform file chosen here (the layout of `socket2`):
//!
//! | file | targets | ACK check from |
//! |---|---|---|
//! | `linux.rs` | Linux, Android | `SIOCOUTQ` (our FIN counts), `TCP_INFO` |
//! | `macos.rs` | Apple systems (untested) | `SO_NWRITE`, `TCP_CONNECTION_INFO` state |
//! | `freebsd.rs` | FreeBSD (untested) | `FIONWRITE`, `TCP_INFO` state |
//! | `unix.rs` | other Unix (untested) | none |
//! | `windows.rs` | Windows (tested under Wine) | `SIO_TCP_INFO` state, where the system has it |
//!
//! Each platform file provides:
//!
//! | item | what |
//! |---|---|
//! | `ACK_CHECK` | `false`: [`send_queue`] always answers [`SendQueue::Unknown`] and is not called; `true`: it may tell, and answers `Unknown` at run time where the system cannot |
//! | `WRITE_EDGES` | whether a write-readiness edge after our FIN is the kernel's wakeup (our FIN acknowledged, a reset): true for edge-triggered epoll and kqueue; `false` makes the close re-check on its timer instead |
//! | `send_queue(sock, kind, fin_sent, closed)` | the [`SendQueue`] state (`fin_sent`: our `shutdown` succeeded; `closed`: the caller's reading of whether the connection is closed, asked only where the platform needs it) |
//! | `unacked(sock, kind)`, `unsent(sock, kind)` | byte counts for the public API, or `Unsupported` |
//! | `discard(sock, max, tcp)` | reads and throws away up to `max` bytes, never blocking (`tcp`: the socket is TCP by its protocol, so `MSG_TRUNC` may be used) |
//! | `activity(sock)` | time since the peer's last data, the round-trip time and whether the connection is closed, where known |
//! | `set_user_timeout(sock, t)` | the kernel's retransmission bound, or `Unsupported` |
//! | `wake_in_batches(sock, batch)` | wake the drain only once `batch` bytes are queued (`true`: batching is on), or nothing (`false`) |
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

#[cfg(target_vendor = "apple")]
#[path = "macos.rs"]
mod imp;

#[cfg(target_os = "freebsd")]
#[path = "freebsd.rs"]
mod imp;

#[cfg(all(
    unix,
    not(any(
        target_os = "linux",
        target_os = "android",
        target_vendor = "apple",
        target_os = "freebsd"
    ))
))]
#[path = "unix.rs"]
mod imp;

#[cfg(windows)]
#[path = "windows.rs"]
mod imp;

#[cfg(not(any(unix, windows)))]
compile_error!("tokio-graceful-close supports Unix and Windows only");

pub(crate) use imp::*;

#[cfg(any(target_vendor = "apple", target_os = "freebsd"))]
mod bsd;

/// What every Unix but Linux shares: no unsent count, no `MSG_TRUNC` drain, no
/// `TCP_USER_TIMEOUT`, no record of the peer's last segment.
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
mod other_unix {
    use std::io;

    use super::{Activity, Sock, SocketKind};

    pub(crate) fn unsent(_fd: Sock<'_>, _kind: SocketKind) -> io::Result<usize> {
        Err(super::unsupported(
            "the unsent byte count is not available on this system",
        ))
    }

    /// Whether the drain may discard without copying: never here.
    pub(crate) fn is_tcp(_fd: Sock<'_>) -> bool {
        false
    }

    pub(crate) fn discard(fd: Sock<'_>, max: usize, _tcp: bool) -> io::Result<usize> {
        super::discard_by_copy(fd, max)
    }

    /// What the peer did lately: not known here.
    pub(crate) fn activity(_sock: Sock<'_>) -> io::Result<Option<Activity>> {
        Ok(None)
    }

    pub(crate) fn set_user_timeout(_fd: Sock<'_>, _ms: u32) -> io::Result<()> {
        Err(super::unsupported(
            "TCP_USER_TIMEOUT is only available on Linux",
        ))
    }

    /// Batched drain wakeups: only on Linux, whose low-water mark never stalls a sender.
    pub(crate) fn wake_in_batches(_fd: Sock<'_>, _batch: usize) -> io::Result<bool> {
        Ok(false)
    }
}

#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
pub(crate) use other_unix::*;

/// Bytes received and not yet read: counted on Linux only, for the reset that loses
/// nothing (`CloseOptions::abort_when_safe`), which stays graceful elsewhere.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn unread(_fd: Sock<'_>, _kind: SocketKind) -> io::Result<usize> {
    Err(unsupported("unread bytes are counted on Linux only"))
}

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

/// What the peer did lately ([`activity`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Activity {
    /// Time since its last data segment arrived.
    pub(crate) since_last_data: std::time::Duration,

    /// The smoothed round-trip time.
    pub(crate) rtt: std::time::Duration,

    /// The connection is closed (`TCP_CLOSE`): reset, given up, or ended.
    pub(crate) closed: bool,
}

/// Where the bytes we wrote stand, as far as the platform can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Other Unix systems always answer `Unknown`.
#[cfg_attr(
    all(
        unix,
        not(any(
            target_os = "linux",
            target_os = "android",
            target_vendor = "apple",
            target_os = "freebsd"
        ))
    ),
    allow(dead_code)
)]
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

/// Where a TCP connection stands, as the BSD-style state machines (macOS, FreeBSD,
/// Windows) report it.
#[cfg(any(windows, target_vendor = "apple", target_os = "freebsd"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpPhase {
    /// `FIN_WAIT_2` or `TIME_WAIT`: reached only once the peer acknowledged our FIN,
    /// which comes after every byte we wrote (the rule holds on every system).
    FinAcked,
    /// `CLOSED`, or the kernel no longer keeps the connection: a normal end after our
    /// FIN was acknowledged (`LAST_ACK` → `CLOSED`), or a reset or give-up.
    Closed,
    /// Any other state.
    Open,
}

/// The [`SendQueue`] from the TCP state, `queued` (everything written and not yet
/// acknowledged, our FIN not counted; `None` where the system has no such count) and
/// whether our FIN was sent.
///
/// `CLOSED` tells a normal end from a reset only through `SO_ERROR`, so that case reads
/// it here: a pending error is returned as the error (and so consumed); none after our
/// FIN is a normal end.
#[cfg(any(windows, target_vendor = "apple", target_os = "freebsd"))]
pub(crate) fn judge(
    sock: Sock<'_>,
    phase: TcpPhase,
    queued: Option<usize>,
    fin_sent: bool,
) -> io::Result<SendQueue> {
    match phase {
        TcpPhase::FinAcked => Ok(SendQueue::Empty),
        // Bytes left behind by a closed connection never drain: the caller reads
        // `SO_ERROR` for the cause.
        TcpPhase::Closed if queued.is_some_and(|n| n > 0) => Ok(SendQueue::Gone),
        TcpPhase::Closed => match socket2::SockRef::from(&sock).take_error()? {
            Some(e) => Err(e),
            None if fin_sent => Ok(SendQueue::Empty),
            // Closed although we never sent our FIN: not a normal end.
            None => Ok(SendQueue::Gone),
        },
        // Our FIN is not acknowledged yet (`FIN_WAIT_1`, `CLOSING`, `LAST_ACK`); the
        // byte counts of these systems do not include it.
        TcpPhase::Open if fin_sent => Ok(SendQueue::Pending),
        TcpPhase::Open => Ok(match queued {
            Some(0) => SendQueue::Empty,
            Some(_) => SendQueue::Pending,
            None => SendQueue::Unknown,
        }),
    }
}

/// `setsockopt(IPPROTO_TCP, TCP_NOPUSH)`, the BSD and macOS counterpart of Linux's
/// `TCP_CORK`: while set, only full-sized segments are sent.
///
/// Untested: no such target runs here. FreeBSD sends the held tail when the option is
/// cleared; whether every other system does so at once is not verified.
#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "openbsd"
))]
fn set_nopush(fd: Sock<'_>, on: bool) -> io::Result<()> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let value = libc::c_int::from(on);
    // Safety: `value` is a live `c_int` for the whole call and its exact size is passed;
    // the kernel only reads it.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_NOPUSH,
        std::ptr::from_ref(&value).cast(),
        std::mem::size_of::<libc::c_int>() as libc::socklen_t
    ))?;
    Ok(())
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
    #[cfg(windows)]
    {
        e.raw_os_error() == Some(windows_sys::Win32::Networking::WinSock::WSAEHOSTDOWN)
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = e;
        false
    }
}
