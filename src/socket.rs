//! The socket operations a close and a discard need: the sealed [`Socket`] trait,
//! implemented for Tokio's streams.
//!
//! Every look at the kernel the crate takes goes through this trait: Tokio's readiness
//! and the system calls of [`sys`](crate::sys). Tokio's streams take the provided
//! methods, which forward to `sys`; the crate's deterministic simulation implements
//! them with a scripted kernel instead. The public
//! [`AsyncGracefulClose`](crate::AsyncGracefulClose) extends it, which keeps that trait
//! sealed.

use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::Interest;

use crate::sys::{self, Activity, SendQueue, Sock, SocketKind};

/// The socket operations a graceful close needs; implemented for Tokio's streams.
///
/// Sealed: the close relies on the exact readiness semantics of Tokio's own I/O
/// driver registration, which outside types cannot promise. (The crate-private
/// types in its signatures are what keeps it sealed.)
#[allow(private_interfaces)]
pub trait Socket {
    #[doc(hidden)]
    fn as_sock(&self) -> Sock<'_>;
    #[doc(hidden)]
    fn kind(&self) -> SocketKind;
    #[doc(hidden)]
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    #[doc(hidden)]
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    #[doc(hidden)]
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
    // ===== the kernel, through `sys` =====

    /// `shutdown(SHUT_WR)`: our FIN, after everything queued.
    #[doc(hidden)]
    fn shutdown_write(&self) -> io::Result<()> {
        socket2::SockRef::from(&self.as_sock()).shutdown(std::net::Shutdown::Write)
    }
    /// `getsockopt(SO_ERROR)`: takes the pending error.
    #[doc(hidden)]
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        socket2::SockRef::from(&self.as_sock()).take_error()
    }
    /// Where our bytes stand (`sys::send_queue`); `closed` asks whether the connection
    /// is closed, where the platform needs to know.
    #[doc(hidden)]
    fn send_queue(
        &self,
        fin_sent: bool,
        closed: impl FnOnce() -> io::Result<bool>,
    ) -> io::Result<SendQueue> {
        sys::send_queue(self.as_sock(), self.kind(), fin_sent, closed)
    }
    /// `TCP_INFO` as far as the close reads it; `None` where the platform has none.
    #[doc(hidden)]
    fn activity(&self) -> io::Result<Option<Activity>> {
        match self.kind() {
            SocketKind::Tcp => sys::activity(self.as_sock()),
            #[cfg(unix)]
            SocketKind::Unix => Ok(None),
        }
    }
    /// Bytes written and not yet acknowledged (`SIOCOUTQ`).
    #[doc(hidden)]
    fn unacked(&self) -> io::Result<usize> {
        sys::unacked(self.as_sock(), self.kind())
    }
    /// Bytes received and not yet read (`FIONREAD`).
    #[doc(hidden)]
    fn unread(&self) -> io::Result<usize> {
        sys::unread(self.as_sock(), self.kind())
    }
    /// Reads and throws away up to `max` bytes, never blocking; `Ok(0)` is the EOF.
    #[doc(hidden)]
    fn discard(&self, max: usize, tcp: bool) -> io::Result<usize> {
        sys::discard(self.as_sock(), max, tcp)
    }
    /// Whether the socket is TCP by its protocol (`MSG_TRUNC` works).
    #[doc(hidden)]
    fn is_tcp(&self) -> bool {
        self.kind() == SocketKind::Tcp && sys::is_tcp(self.as_sock())
    }
    /// `SO_RCVLOWAT`: wake readers only once `batch` bytes are queued.
    #[doc(hidden)]
    fn wake_in_batches(&self, batch: usize) -> io::Result<bool> {
        sys::wake_in_batches(self.as_sock(), batch)
    }
    /// `TCP_USER_TIMEOUT`, milliseconds.
    #[doc(hidden)]
    fn set_user_timeout(&self, ms: u32) -> io::Result<()> {
        sys::set_user_timeout(self.as_sock(), ms)
    }
    /// `SO_LINGER {1, 0}`: the `close()` that follows sends RST.
    #[doc(hidden)]
    fn arm_reset(&self) -> io::Result<()> {
        socket2::SockRef::from(&self.as_sock()).set_linger(Some(Duration::ZERO))
    }
    /// Removes a non-zero `SO_LINGER` the application may have set, so that the
    /// `close()` that follows can never sleep in the kernel.
    #[doc(hidden)]
    fn disarm_linger(&self) {
        let fd = self.as_sock();
        let sock = socket2::SockRef::from(&fd);
        if let Ok(Some(t)) = sock.linger() {
            if !t.is_zero() {
                let _ = sock.set_linger(None);
            }
        }
    }
}

macro_rules! forward {
    ($ty:ty, $kind:expr) => {
        #[allow(private_interfaces)]
        impl Socket for $ty {
            #[inline]
            fn as_sock(&self) -> Sock<'_> {
                #[cfg(unix)]
                {
                    std::os::fd::AsFd::as_fd(self)
                }
                #[cfg(windows)]
                {
                    std::os::windows::io::AsSocket::as_socket(self)
                }
            }
            #[inline]
            fn kind(&self) -> SocketKind {
                $kind
            }
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$ty>::poll_read_ready(self, cx)
            }
            fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$ty>::poll_write_ready(self, cx)
            }
            fn try_io<R>(
                &self,
                interest: Interest,
                f: impl FnOnce() -> io::Result<R>,
            ) -> io::Result<R> {
                <$ty>::try_io(self, interest, f)
            }
        }
    };
}

forward!(tokio::net::TcpStream, SocketKind::Tcp);
#[cfg(unix)]
forward!(tokio::net::UnixStream, SocketKind::Unix);
