//! The extension trait: [`AsyncGracefulClose`].

use std::io;
use std::time::Duration;

use tokio::net::TcpStream;
#[cfg(unix)]
use tokio::net::UnixStream;

use crate::future::{GracefulClose, WaitAcked};
use crate::machine::Closable;
use crate::options::CloseOptions;
use crate::sys::{self, SocketKind};

/// Closes a Tokio stream without losing what was written, and tells what happened.
///
/// Implemented for [`TcpStream`] and, on Unix, `UnixStream`. Import it to call its
/// methods:
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
///
/// # Split streams
///
/// A close needs the whole stream: after `TcpStream::into_split`, put the halves
/// together again with `OwnedReadHalf::reunite`, then close. Dropping an
/// `OwnedWriteHalf` alone sends our FIN (Tokio shuts the write side down on drop), but
/// nothing then drains the peer's input or confirms delivery, and dropping the read
/// half with input unread resets the connection.
///
/// ```no_run
/// use std::time::Duration;
/// use tokio::io::AsyncWriteExt;
/// use tokio_graceful_close::AsyncGracefulClose;
///
/// # async fn dox(stream: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
/// let (read, mut write) = stream.into_split();
/// write.write_all(b"bye\n").await?; // a reader task holds `read` meanwhile
/// let stream = read.reunite(write)?;
/// stream.graceful_close(Duration::from_secs(5)).await?;
/// # Ok(())
/// # }
/// ```
pub trait AsyncGracefulClose: Closable + Sized {
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
    /// and, unless [`peer_eof(PeerEof::NotRequired)`](CloseOptions::peer_eof), it
    /// closed its side too. Every other outcome is a [`CloseError`](crate::CloseError)
    /// saying why, carrying the partial [`CloseReport`](crate::CloseReport).
    ///
    /// Nothing blocks a thread: the waits are driven by Tokio's readiness events and a
    /// timer. No `SO_LINGER` with a non-zero time is ever used.
    ///
    /// # Runtime
    ///
    /// Polled outside any Tokio runtime, the close fails with an
    /// [`Io`](crate::CloseErrorKind::Io) error saying so, and the socket is closed
    /// without blocking.
    ///
    /// # Panics
    ///
    /// Like [`tokio::time::timeout`], a close that has to wait needs the runtime's time
    /// driver: on a runtime built without `enable_time` (or `enable_all`) it panics as
    /// `tokio::time::sleep` does, when it first has to wait. Dropping the future on the
    /// unwind closes the socket without blocking.
    ///
    /// # Cancellation safety
    ///
    /// Dropping the future, polled or not, closes the socket at once without blocking (a
    /// non-zero `SO_LINGER` set by the application is disarmed first). Data not yet
    /// acknowledged is then left to the kernel.
    ///
    /// # Platform notes
    ///
    /// Linux reads `SIOCOUTQ`, `TCP_INFO` and drains with `recv(MSG_TRUNC)`. Where the
    /// platform cannot confirm the acknowledgement, `Ok` means the peer's EOF was read,
    /// [`CloseReport::acked`](crate::CloseReport::acked) is `false`, and the peer's EOF
    /// is always waited for.
    ///
    /// On `AF_UNIX` streams there is no acknowledgement: `acked()` means the peer read
    /// everything we wrote. A peer that closed with our bytes unread gives
    /// [`PeerReset`](crate::CloseErrorKind::PeerReset), never `Ok`.
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
    /// `set_zero_linger` (Tokio 1.50 and later) followed by a drop.
    ///
    /// `AF_UNIX` has no reset: there it is a plain close (the peer reads what was queued,
    /// then EOF; it sees `ECONNRESET` only if we left input unread).
    ///
    /// # Errors
    ///
    /// If `setsockopt` fails the stream is still closed (plainly) and the error returned.
    fn abort(self) -> io::Result<()> {
        let res = match self.kind() {
            SocketKind::Tcp => {
                socket2::SockRef::from(&self.as_sock()).set_linger(Some(Duration::ZERO))
            }
            #[cfg(unix)]
            SocketKind::Unix => Ok(()),
        };
        drop(self);
        res
    }

    /// TCP bytes written but not yet acknowledged by the peer: `ioctl(SIOCOUTQ)` on
    /// Linux. Our FIN counts as one byte once sent and until acknowledged.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::Unsupported`] where the platform has no such count, and on
    /// `AF_UNIX` streams (whose `SIOCOUTQ` counts memory, not bytes).
    fn unacked_bytes(&self) -> io::Result<usize> {
        sys::unacked(self.as_sock(), self.kind())
    }

    /// TCP bytes queued but not yet sent: `ioctl(SIOCOUTQNSD)` on Linux.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::Unsupported`] where the platform has no such count, and on
    /// `AF_UNIX` streams.
    fn unsent_bytes(&self) -> io::Result<usize> {
        sys::unsent(self.as_sock(), self.kind())
    }

    /// Waits until the peer has acknowledged every byte written so far (`SIOCOUTQ` = 0),
    /// without closing anything: a delivery barrier.
    ///
    /// Equivalent to `async fn wait_acked(&mut self, timeout: Duration) -> io::Result<()>`.
    ///
    /// Acknowledgements of data wake nobody (the kernel signals them only when the send
    /// buffer had filled), so the queue is checked at once and then again, twice as
    /// late each time, up to every [`CloseOptions::DEFAULT_POLL_INTERVAL`]: on Linux TCP
    /// from half the round-trip time (at least 50 µs), elsewhere from 1 ms. It leaves the
    /// stream as it found it: nothing is read, and the readiness Tokio caches for the
    /// stream is not touched, so a write right after it completes at once.
    ///
    /// On `AF_UNIX` streams it waits until the peer has read everything written so far.
    ///
    /// # Errors
    ///
    /// [`io::ErrorKind::TimedOut`] at the deadline (the inner error is a
    /// [`CloseError`](crate::CloseError) with the report),
    /// [`io::ErrorKind::ConnectionReset`] if the peer reset the connection (or, on
    /// `AF_UNIX`, closed with our bytes unread), [`io::ErrorKind::Unsupported`] where the
    /// platform cannot tell.
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
#[cfg(unix)]
impl AsyncGracefulClose for UnixStream {}
