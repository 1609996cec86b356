//! The socket operations a close needs: the sealed [`Socket`] trait, implemented for
//! Tokio's streams.
//!
//! It lives with the state machine that uses it; the public
//! [`AsyncGracefulClose`](crate::AsyncGracefulClose) extends it, which keeps that trait
//! sealed.

use std::io;
use std::task::{Context, Poll};

use tokio::io::Interest;

use super::Closer;
use crate::sys::{Sock, SocketKind};
use crate::{CloseError, CloseReport};

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
    /// Drives `closer` on this stream ([`Closer::poll_close`]). A method of each
    /// stream type rather than a generic call so that the state machine is compiled
    /// once, in this crate, where the system calls and the deadline bookkeeping it
    /// calls can be inlined into it: instantiated in the caller's crate, every one of
    /// them would stay a call into this one.
    #[doc(hidden)]
    fn poll_closer(
        &self,
        closer: &mut Closer,
        cx: &mut Context<'_>,
    ) -> Poll<Result<CloseReport, CloseError>>;
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
            fn poll_closer(
                &self,
                closer: &mut Closer,
                cx: &mut Context<'_>,
            ) -> Poll<Result<CloseReport, CloseError>> {
                closer.poll_close(self, cx)
            }
        }
    };
}

forward!(tokio::net::TcpStream, SocketKind::Tcp);
#[cfg(unix)]
forward!(tokio::net::UnixStream, SocketKind::Unix);
