//! Nagle control: [`Corked`] writes (`TCP_CORK`) and the [`write_corked`] helper.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

use crate::sys;

// ===== CorkState =====

/// Whether this crate has the socket corked, and uncorks it when dropped.
///
/// Keeps the raw descriptor last used so that `Drop` can reach the socket without
/// borrowing the stream; see the field order in [`Corked`].
#[derive(Debug)]
struct CorkState {
    fd: RawFd,
    on: bool,
}

impl CorkState {
    fn new(fd: BorrowedFd<'_>) -> Self {
        CorkState {
            fd: fd.as_raw_fd(),
            on: false,
        }
    }

    fn set(&mut self, fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
        self.fd = fd.as_raw_fd();
        sys::set_cork(self.fd, on)?;
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

impl Drop for CorkState {
    fn drop(&mut self) {
        if self.on {
            // Nothing to report to from a destructor; the kernel's 200 ms timer is the
            // fallback should this ever fail.
            let _ = sys::set_cork(self.fd, false);
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
    pub struct Corked<S> {
        // Declared before `inner`: fields drop in declaration order, so the uncork on
        // drop reaches the socket while `inner` still holds it open.
        cork: CorkState,
        #[pin]
        inner: S,
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
        let mut cork = CorkState::new(inner.as_fd());
        cork.set(inner.as_fd(), true)?;
        Ok(Corked { cork, inner })
    }

    /// Whether this adapter has the socket corked: from construction, and again from
    /// the first write after a flush, until the next flush, shutdown or `into_inner`.
    pub fn is_corked(&self) -> bool {
        self.cork.on
    }

    /// Gets a reference to the wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the wrapped stream.
    ///
    /// Writing through it bypasses nothing: the socket stays corked. Replacing the
    /// stream is not supported: the adapter would go on corking and uncorking the
    /// descriptor of the socket it was given.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Gets a pinned mutable reference to the wrapped stream.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
        self.project().inner
    }

    /// Clears the cork, sending any held tail, and returns the wrapped stream.
    ///
    /// Errors of that last `setsockopt` are ignored, as in `Drop`; call
    /// [`flush`](tokio::io::AsyncWriteExt::flush) first to see them (after a flush,
    /// `into_inner` makes no system call).
    pub fn into_inner(self) -> S {
        let Corked { mut cork, inner } = self;
        // Ignored: see the doc above. On failure `cork` stays armed and its drop below
        // tries once more.
        let _ = cork.uncork(inner.as_fd());
        drop(cork);
        inner
    }
}

impl<S: AsFd> AsFd for Corked<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<S: AsRawFd> AsRawFd for Corked<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

impl<S: AsFd + AsyncWrite> AsyncWrite for Corked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        this.cork.cork(this.inner.as_fd())?;
        this.inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        this.cork.cork(this.inner.as_fd())?;
        this.inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        ready!(this.inner.as_mut().poll_flush(cx))?;
        this.cork.uncork(this.inner.as_fd())?;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        if this.cork.on {
            ready!(this.inner.as_mut().poll_flush(cx))?;
            this.cork.uncork(this.inner.as_fd())?;
        }
        this.inner.poll_shutdown(cx)
    }
}

impl<S: AsyncRead> AsyncRead for Corked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<S: AsyncBufRead> AsyncBufRead for Corked<S> {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        self.project().inner.poll_fill_buf(cx)
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        self.project().inner.consume(amt)
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
    let cork = CorkState::new(stream.as_fd());
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
pub struct WriteCorked<'a, S> {
    // Before `stream` for the same reason as in `Corked` (a borrow here, so only tidiness).
    cork: CorkState,
    stream: &'a mut S,
    bufs: &'a [&'a [u8]],
    /// First buffer not completely written, and how much of it was.
    index: usize,
    offset: usize,
    written: u64,
}

impl<S> fmt::Debug for WriteCorked<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteCorked")
            .field("buffers", &self.bufs.len())
            .field("written", &self.written)
            .field("corked", &self.cork.on)
            .finish_non_exhaustive()
    }
}

impl<S> WriteCorked<'_, S> {
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
