//! Nagle control: [`Corked`] writes (`TCP_CORK`) and the [`write_corked`] helper.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

use crate::sys;

// ===== CorkState =====

/// Whether this crate has the socket corked. It never remembers the descriptor: every
/// call reaches the socket through the stream it is given, so a stream replaced or
/// closed meanwhile can never make it touch an unrelated socket.
#[derive(Debug, Default)]
struct CorkState {
    on: bool,
}

impl CorkState {
    fn set(&mut self, fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
        sys::set_cork(fd, on)?;
        self.on = on;
        Ok(())
    }

    /// Corks unless already corked.
    fn cork(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if self.on {
            Ok(())
        } else {
            self.set(fd, true)
        }
    }

    /// Uncorks if corked, which sends the held tail.
    fn uncork(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if self.on {
            self.set(fd, false)
        } else {
            Ok(())
        }
    }
}

// ===== Corked =====

pin_project! {
    /// An [`AsyncWrite`] adapter that sets `TCP_CORK` while a message is assembled and
    /// sends the partial tail on [`flush`](tokio::io::AsyncWriteExt::flush).
    ///
    /// # Cork, `TCP_NODELAY` or Nagle?
    ///
    /// A message written in pieces (a header, then a body) leaves as several small
    /// segments, and with Nagle's algorithm (on by default) the second piece waits for
    /// the acknowledgement of the first. Against a peer that delays its ACKs, that is the
    /// classic 40 ms stall of a write-write-read exchange. The ways out:
    ///
    /// | you want | use | cost |
    /// |---|---|---|
    /// | every write on the wire at once | [`TcpStream::set_nodelay(true)`](tokio::net::TcpStream::set_nodelay) (`TCP_NODELAY`) | one segment per write |
    /// | a message written in pieces to leave as full segments, the tail when you say so | `Corked` / [`CorkExt::corked`], [`flush`](tokio::io::AsyncWriteExt::flush) at the end of each message | two `setsockopt` per message |
    /// | a message held as a few buffers, sent as one | [`write_corked`] (`TCP_CORK` + `writev`) | two `setsockopt` per message |
    /// | bulk transfer, latency irrelevant | the default (Nagle) | the stall above on write-write-read |
    ///
    /// Cork and `TCP_NODELAY` combine, and that is the recommended setting for
    /// request/response protocols (nginx's `tcp_nopush` with `tcp_nodelay`): the cork
    /// decides where segments end, `TCP_NODELAY` makes the tail leave the moment the cork
    /// is lifted, whatever is still unacknowledged.
    ///
    /// # Behaviour
    ///
    /// Writes go to the socket as usual, but the kernel sends only full-sized segments
    /// until the cork is lifted. Lifting it is what ends a message:
    ///
    /// - `poll_flush` flushes the wrapped stream, then clears `TCP_CORK`: the held tail
    ///   leaves at once. The next write sets the cork again.
    /// - `poll_shutdown` flushes, clears the cork, then forwards the shutdown, so the tail
    ///   goes out ahead of the FIN.
    /// - [`into_inner`](Corked::into_inner) and dropping clear it too: nothing is ever
    ///   left held by this type.
    ///
    /// To close gracefully, take the stream back with `into_inner` and call
    /// [`graceful_close`](crate::AsyncGracefulClose::graceful_close) on it, or wrap a
    /// [`GracefulIo`](crate::GracefulIo), whose shutdown `Corked` forwards after the
    /// uncork. Either way every held byte reaches the peer before the FIN.
    ///
    /// Wraps any `S: AsFd + AsyncWrite`: an owned [`TcpStream`](tokio::net::TcpStream),
    /// a `&mut TcpStream`, or another adapter that exposes its socket through [`AsFd`],
    /// such as [`GracefulIo`](crate::GracefulIo). Reads are forwarded unchanged.
    ///
    /// # Notes
    ///
    /// - Linux sends a corked partial segment by itself after 200 ms (tcp(7)). Do not rely
    ///   on it: it is a stall, not a flush.
    /// - Clearing the cork hands the tail to Nagle's algorithm. If `TCP_NODELAY` is off and
    ///   a previous small segment is still unacknowledged (pipelined messages against a
    ///   peer that delays its ACKs), the tail waits for that ACK. Set
    ///   [`set_nodelay(true)`](tokio::net::TcpStream::set_nodelay) together with the cork
    ///   to rule that out.
    /// - A FIN is never held: `shutdown(SHUT_WR)` sends queued data, corked or not.
    /// - BSD and macOS: `TCP_NOPUSH` is used instead, untested. Elsewhere, and on
    ///   `AF_UNIX` sockets, [`Corked::new`] fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// use tokio_graceful_close::CorkExt;
    ///
    /// # async fn dox(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
    /// stream.set_nodelay(true)?;
    /// let mut corked = (&mut stream).corked()?;
    /// corked.write_all(b"LEN 11\r\n").await?; // held by the kernel
    /// corked.write_all(b"hello world").await?; // held
    /// corked.flush().await?; // both leave as one segment
    /// let mut reply = [0; 2];
    /// corked.read_exact(&mut reply).await?; // reads pass through
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct Corked<S: AsFd> {
        cork: CorkState,
        // `None` only inside `into_inner`.
        #[pin]
        inner: Option<S>,
    }

    impl<S: AsFd> PinnedDrop for Corked<S> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(inner) = this.inner.as_pin_mut() {
                // Nothing to report to from a destructor; the kernel's 200 ms timer is
                // the fallback should this ever fail.
                let _ = this.cork.uncork(inner.as_fd());
            }
        }
    }
}

impl<S: AsFd> Corked<S> {
    /// Sets `TCP_CORK` on the stream's socket and wraps it.
    ///
    /// Whatever the option was before, the socket is left uncorked when the adapter is
    /// done with it.
    ///
    /// # Errors
    ///
    /// The error of `setsockopt`, e.g. `EOPNOTSUPP` for an `AF_UNIX` socket, or
    /// [`Unsupported`](io::ErrorKind::Unsupported) on systems without a cork option.
    /// An owned stream is dropped with the error; wrap `&mut stream` to keep it.
    pub fn new(inner: S) -> io::Result<Self> {
        let mut cork = CorkState::default();
        cork.set(inner.as_fd(), true)?;
        Ok(Corked {
            cork,
            inner: Some(inner),
        })
    }

    /// Whether this adapter has the socket corked: from construction, and again from
    /// the first write after a flush, until the next flush, shutdown or `into_inner`.
    pub fn is_corked(&self) -> bool {
        self.cork.on
    }

    /// Gets a reference to the wrapped stream.
    pub fn get_ref(&self) -> &S {
        match &self.inner {
            Some(inner) => inner,
            None => unreachable!("the stream is taken only by `into_inner`"),
        }
    }

    /// Gets a mutable reference to the wrapped stream.
    ///
    /// Writing through it bypasses nothing: the socket stays corked. The adapter always
    /// reaches the socket through the stream it holds, so replacing the stream is safe:
    /// the old socket keeps whatever cork it had, and the next uncork goes to the new one.
    pub fn get_mut(&mut self) -> &mut S {
        match &mut self.inner {
            Some(inner) => inner,
            None => unreachable!("the stream is taken only by `into_inner`"),
        }
    }

    /// Gets a pinned mutable reference to the wrapped stream.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
        match self.project().inner.as_pin_mut() {
            Some(inner) => inner,
            None => unreachable!("the stream is taken only by `into_inner`"),
        }
    }

    /// Clears the cork, sending any held tail, and returns the wrapped stream.
    ///
    /// Errors of that last `setsockopt` are ignored, as in `Drop`; call
    /// [`flush`](tokio::io::AsyncWriteExt::flush) first to see them (after a flush,
    /// `into_inner` makes no system call).
    pub fn into_inner(mut self) -> S {
        let Some(inner) = self.inner.take() else {
            unreachable!("the stream is taken only by `into_inner`")
        };
        // Ignored: see the doc above.
        let _ = mem::take(&mut self.cork).uncork(inner.as_fd());
        inner
    }
}

impl<S: AsFd> AsFd for Corked<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<S: AsFd + AsRawFd> AsRawFd for Corked<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.get_ref().as_raw_fd()
    }
}

/// The pinned stream of a live `Corked` (`None` only inside `into_inner`).
fn pinned<S>(inner: Pin<&mut Option<S>>) -> Pin<&mut S> {
    match inner.as_pin_mut() {
        Some(inner) => inner,
        None => unreachable!("the stream is taken only by `into_inner`"),
    }
}

impl<S: AsFd + AsyncWrite> AsyncWrite for Corked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let inner = pinned(this.inner);
        this.cork.cork(inner.as_fd())?;
        inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let inner = pinned(this.inner);
        this.cork.cork(inner.as_fd())?;
        inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.get_ref().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let mut inner = pinned(this.inner);
        ready!(inner.as_mut().poll_flush(cx))?;
        this.cork.uncork(inner.as_fd())?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let mut inner = pinned(this.inner);
        if this.cork.on {
            ready!(inner.as_mut().poll_flush(cx))?;
            this.cork.uncork(inner.as_fd())?;
        }
        inner.poll_shutdown(cx)
    }
}

impl<S: AsFd + AsyncRead> AsyncRead for Corked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        pinned(self.project().inner).poll_read(cx, buf)
    }
}

impl<S: AsFd + AsyncBufRead> AsyncBufRead for Corked<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        pinned(self.project().inner).poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        pinned(self.project().inner).consume(amt)
    }
}

// ===== CorkExt =====

/// Adds [`corked`](CorkExt::corked) to every stream with a socket (`AsFd + AsyncWrite`).
///
/// Import it to call the method: `use tokio_graceful_close::CorkExt;`.
pub trait CorkExt: AsFd + AsyncWrite + Sized {
    /// Sets `TCP_CORK` and wraps the stream in a [`Corked`] adapter.
    ///
    /// Equivalent to [`Corked::new(self)`](Corked::new). Call it on `&mut stream` to
    /// keep the stream: `(&mut stream).corked()?`.
    fn corked(self) -> io::Result<Corked<Self>> {
        Corked::new(self)
    }
}

impl<S: AsFd + AsyncWrite> CorkExt for S {}

// ===== write_corked =====

/// Writes `bufs` in order as one message: sets `TCP_CORK`, writes with `writev`, flushes,
/// then clears the cork so the tail leaves at once.
///
/// Equivalent to:
///
/// ```ignore
/// async fn write_corked<S>(stream: &mut S, bufs: &[&[u8]]) -> io::Result<()>;
/// ```
///
/// A header and a small body leave as one segment, even when the socket's send buffer
/// splits the `writev` into several calls. Empty buffers are skipped; with no bytes at
/// all, nothing is written and the cork is never touched.
///
/// # Cancellation safety
///
/// Not cancellation safe: some of the bytes may have been written when the future is
/// dropped. Dropping it clears the cork, so what was written is not held.
///
/// # Errors
///
/// The first error of `setsockopt` or of the stream; the cork is cleared before a write
/// error is returned. A write of zero bytes is [`WriteZero`](io::ErrorKind::WriteZero).
///
/// # Examples
///
/// ```no_run
/// use tokio_graceful_close::write_corked;
///
/// # async fn dox(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
/// let body = b"{\"ok\":true}";
/// let header = format!("LEN {}\r\n", body.len());
/// write_corked(&mut stream, &[header.as_bytes(), body]).await?;
/// # Ok(())
/// # }
/// ```
pub fn write_corked<'a, S>(stream: &'a mut S, bufs: &'a [&'a [u8]]) -> WriteCorked<'a, S>
where
    S: AsFd + AsyncWrite + Unpin,
{
    let cork = CorkState::default();
    WriteCorked {
        stream,
        bufs,
        index: 0,
        offset: 0,
        written: 0,
        cork,
    }
}

/// How many buffers one `writev` call is given at most.
const MAX_IOV: usize = 64;

/// Future of [`write_corked`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct WriteCorked<'a, S: AsFd> {
    cork: CorkState,
    stream: &'a mut S,
    bufs: &'a [&'a [u8]],
    /// First buffer not completely written, and how much of it was.
    index: usize,
    offset: usize,
    written: u64,
}

impl<S: AsFd> Drop for WriteCorked<'_, S> {
    fn drop(&mut self) {
        // Cancelled mid-way: what was written must not stay held.
        let _ = self.cork.uncork(self.stream.as_fd());
    }
}

impl<S: AsFd> fmt::Debug for WriteCorked<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteCorked")
            .field("buffers", &self.bufs.len())
            .field("written", &self.written)
            .field("corked", &self.cork.on)
            .finish_non_exhaustive()
    }
}

impl<S: AsFd> WriteCorked<'_, S> {
    /// Moves past `n` written bytes and any empty buffers.
    fn advance(&mut self, mut n: usize) {
        self.written += n as u64;
        while let Some(buf) = self.bufs.get(self.index) {
            let left = buf.len() - self.offset;
            if n < left {
                self.offset += n;
                return;
            }
            n -= left;
            self.index += 1;
            self.offset = 0;
        }
    }
}

impl<S: AsFd + AsyncWrite + Unpin> Future for WriteCorked<'_, S> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.advance(0);
        while this.index < this.bufs.len() {
            this.cork.cork(this.stream.as_fd())?;
            let bufs = this.bufs;
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (i, buf) in bufs[this.index..].iter().enumerate() {
                if count == MAX_IOV {
                    break;
                }
                // `advance` left `index` on a buffer with bytes still to write.
                let buf = if i == 0 { &buf[this.offset..] } else { buf };
                if !buf.is_empty() {
                    iov[count] = IoSlice::new(buf);
                    count += 1;
                }
            }
            let res = ready!(Pin::new(&mut *this.stream).poll_write_vectored(cx, &iov[..count]));
            match res {
                Ok(0) => {
                    let _ = this.cork.uncork(this.stream.as_fd());
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Ok(n) => this.advance(n),
                Err(e) => {
                    let _ = this.cork.uncork(this.stream.as_fd());
                    return Poll::Ready(Err(e));
                }
            }
        }
        if this.cork.on {
            if let Err(e) = ready!(Pin::new(&mut *this.stream).poll_flush(cx)) {
                let _ = this.cork.uncork(this.stream.as_fd());
                return Poll::Ready(Err(e));
            }
            this.cork.uncork(this.stream.as_fd())?;
        }
        Poll::Ready(Ok(()))
    }
}
