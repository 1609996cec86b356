//! The extension trait: [`AsyncGracefulClose`].

use std::io;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use crate::{sys, CloseOptions, GracefulClose, WaitAcked};

pub(crate) mod sealed {
    use std::io;
    use std::os::fd::AsFd;
    use std::task::{Context, Poll};

    use tokio::io::Interest;

    /// The socket operations a graceful close needs; implemented for Tokio's streams.
    ///
    /// Sealed: the close relies on the exact readiness semantics of Tokio's own I/O
    /// driver registration, which outside types cannot promise.
    pub trait Socket: AsFd {
        /// `true` for TCP, `false` for `AF_UNIX` streams.
        #[doc(hidden)]
        fn is_tcp(&self) -> bool;
        #[doc(hidden)]
        fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
        #[doc(hidden)]
        fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
        #[doc(hidden)]
        fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>)
            -> io::Result<R>;
    }

    macro_rules! forward {
        ($ty:ty, $tcp:expr) => {
            impl Socket for $ty {
                fn is_tcp(&self) -> bool {
                    $tcp
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

    forward!(tokio::net::TcpStream, true);
    forward!(tokio::net::UnixStream, false);
}

/// Closes a Tokio stream without losing what was written, and tells what happened.
///
/// Implemented for [`TcpStream`] and [`UnixStream`]. Import it to call its methods:
///
/// ```
/// use std::time::Duration;
/// use tokio::io::AsyncWriteExt;
/// use tokio_graceful_close::AsyncGracefulClose;
///
/// # async fn dox(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
/// stream.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n").await?;
/// // The client may still be sending a body we will never read: a plain drop would
/// // reset the connection and could destroy the response in flight.
/// let report = stream.graceful_close(Duration::from_secs(5)).await?;
/// assert!(report.acked());
/// # Ok(())
/// # }
/// ```
pub trait AsyncGracefulClose: sealed::Socket + Sized {
    /// Closes the stream gracefully within `timeout`, with the other
    /// [`CloseOptions`] at their defaults.
    ///
    /// Equivalent to `self.graceful_close_with(CloseOptions::new(timeout))`.
    fn graceful_close(self, timeout: Duration) -> GracefulClose<Self> {
        self.graceful_close_with(CloseOptions::new(timeout))
    }

    /// Closes the stream gracefully: sends our FIN after all queued data
    /// (`shutdown(SHUT_WR)`), reads and discards what the peer still sends until its
    /// EOF, waits until the kernel reports every byte we wrote and our FIN as
    /// acknowledged (`SIOCOUTQ` = 0), then closes the socket.
    ///
    /// Equivalent to:
    ///
    /// ```ignore
    /// async fn graceful_close_with(self, options: CloseOptions) -> Result<CloseReport, CloseError>;
    /// ```
    ///
    /// `Ok` means delivery is confirmed: the peer acknowledged all data and our FIN
    /// and, unless [`require_peer_eof(false)`](CloseOptions::require_peer_eof), it
    /// closed its side too. Every other outcome is a [`CloseError`](crate::CloseError)
    /// saying why, carrying the partial [`CloseReport`](crate::CloseReport).
    ///
    /// Nothing blocks a thread: the waits are driven by Tokio's readiness events and a
    /// timer. No `SO_LINGER` with a non-zero time is ever used.
    ///
    /// # Panics
    ///
    /// Like [`tokio::time::timeout`], the close needs the runtime's time driver: polled
    /// on a runtime built without `enable_time` (or `enable_all`), Tokio panics when the
    /// deadline timer is created. Polled outside any Tokio runtime, it returns an
    /// [`Io`](crate::CloseErrorKind::Io) error instead.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future closes the socket at once without blocking (a non-zero
    /// `SO_LINGER` set by the application is disarmed first). Data not yet
    /// acknowledged is then left to the kernel.
    ///
    /// # Platform notes
    ///
    /// Linux reads `SIOCOUTQ`, `TCP_INFO` and drains with `recv(MSG_TRUNC)`. Other Unix
    /// systems half-close and drain but cannot confirm the acknowledgement: `Ok` then
    /// means the peer's EOF was read, [`CloseReport::acked`](crate::CloseReport::acked)
    /// is `false`, and the peer's EOF is always waited for.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, OnTimeout};
    ///
    /// # async fn dox() -> std::io::Result<()> {
    /// let stream = tokio::net::TcpStream::connect("127.0.0.1:8080").await?;
    /// let opts = CloseOptions::new(Duration::from_secs(10))
    ///     .idle_timeout(Duration::from_secs(2))
    ///     .on_timeout(OnTimeout::Abort);
    /// let report = stream.graceful_close_with(opts).await?;
    /// println!("closed in {:?}, discarded {} bytes", report.elapsed(), report.drained_bytes());
    /// # Ok(())
    /// # }
    /// ```
    fn graceful_close_with(self, options: CloseOptions) -> GracefulClose<Self> {
        GracefulClose::new(self, options)
    }

    /// Aborts the connection: sets `SO_LINGER {1, 0}` and closes, so the kernel sends
    /// RST at once, discards both queues and keeps no `TIME_WAIT`. Never blocks.
    ///
    /// For stateless clients and hostile peers. Tokio's own spelling is
    /// `set_zero_linger` followed by a drop.
    ///
    /// # Errors
    ///
    /// If `setsockopt` fails the stream is still closed (plainly) and the error returned.
    fn abort(self) -> io::Result<()> {
        let res = socket2::SockRef::from(&self).set_linger(Some(Duration::ZERO));
        drop(self);
        res
    }

    /// Bytes written but not yet acknowledged by the peer: `ioctl(SIOCOUTQ)`.
    ///
    /// On TCP our FIN counts as one byte once sent and until acknowledged. On `AF_UNIX`
    /// sockets it counts the bytes the peer has not yet read.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::Unsupported`] off Linux; `EINVAL` on a listening socket.
    fn unacked_bytes(&self) -> io::Result<usize> {
        sys::unacked(self.as_fd())
    }

    /// Bytes queued but not yet sent: `ioctl(SIOCOUTQNSD)`. TCP on Linux only.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::Unsupported`] off Linux; an OS error on `AF_UNIX` sockets.
    fn unsent_bytes(&self) -> io::Result<usize> {
        sys::unsent(self.as_fd())
    }

    /// Waits until the peer has acknowledged every byte written so far (`SIOCOUTQ` = 0),
    /// without closing anything: a delivery barrier.
    ///
    /// Equivalent to `async fn wait_acked(&mut self, timeout: Duration) -> io::Result<()>`.
    ///
    /// Acknowledgements of data wake the socket only when the send buffer was full, so
    /// the queue is also re-checked after 1 ms, 2 ms, 4 ms, ... up to every
    /// [`CloseOptions::DEFAULT_POLL_INTERVAL`]. It takes `&mut self` because it clears
    /// the stream's cached write readiness: nothing else may write meanwhile.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::TimedOut`] at the deadline (the inner error is a
    /// [`CloseError`](crate::CloseError) with the report),
    /// [`io::ErrorKind::ConnectionReset`] if the peer reset the connection,
    /// [`io::ErrorKind::Unsupported`] off Linux.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tokio::io::AsyncWriteExt;
    /// # use tokio_graceful_close::AsyncGracefulClose;
    /// # async fn dox(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    /// stream.write_all(b"COMMIT\n").await?;
    /// stream.wait_acked(Duration::from_secs(1)).await?; // the peer's kernel has it
    /// # Ok(())
    /// # }
    /// ```
    fn wait_acked(&mut self, timeout: Duration) -> WaitAcked<'_, Self> {
        WaitAcked::new(self, timeout)
    }
}

impl AsyncGracefulClose for TcpStream {}
impl AsyncGracefulClose for UnixStream {}
