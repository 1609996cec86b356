//! An I/O wrapper whose `poll_shutdown` is a graceful half-close and whose drop
//! finishes the close: [`GracefulIo`].
//!
//! Servers and clients built on [`AsyncRead`] / [`AsyncWrite`] (hyper, axum, tonic,
//! anything taking a Tokio stream) end a connection with `poll_shutdown` followed by a
//! drop, or with a drop alone on their error paths. Wrapping the stream in
//! [`GracefulIo`] turns both into a graceful close, and keeps the `AsyncWrite` contract
//! on the way: `poll_shutdown` shuts down the write side only.

#[cfg(all(test, target_os = "linux"))]
mod abandoned_tests;
mod background;
mod outcome;
pub(crate) mod settings;

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::Instrument;

#[cfg(not(all(test, target_os = "linux")))]
use self::background::Background;
// The close machine's simulation (Linux) drives the background close itself.
#[cfg(all(test, target_os = "linux"))]
pub(crate) use self::background::{test_close, Background};
use self::outcome::OnClose;
pub(crate) use self::outcome::SharedOnClose;
use self::outcome::{close_plainly, Conn, Path};
use crate::discard::abandon::{Abandoned, InputHandle};
use crate::error::CloseError;
use crate::ext::AsyncGracefulClose;
use crate::machine::Closer;
use crate::metrics::InFlight;
use crate::options::CloseOptions;
use crate::options::Role;
use crate::report::CloseReport;
use crate::tracker::CloseTracker;
use crate::tracker::Hold;

/// Where the close of a [`GracefulIo`] stands. The close itself is boxed: an open
/// connection stays small.
#[derive(Debug)]
enum State {
    /// Reads and writes go through; no close started.
    Open,
    /// `poll_shutdown` sent our FIN; the drop finishes the close (counted in flight
    /// meanwhile: one byte in the enum's padding, with feature `metrics`).
    Shut(Box<Closer>, InFlight),
    /// The close ended and was reported; what `poll_shutdown` returns from now on
    /// (`None`: `Ok`).
    Closed(Option<Box<CloseError>>),
}

/// A Tokio stream whose `poll_shutdown` is a graceful half-close, and whose drop
/// finishes the graceful close.
///
/// It forwards [`AsyncRead`] and [`AsyncWrite`] to the stream (vectored writes
/// included) and costs nothing until the connection ends:
///
/// - [`poll_shutdown`](AsyncWrite::poll_shutdown) (what `AsyncWriteExt::shutdown`,
///   hyper, axum and `copy_bidirectional` call) flushes and sends our FIN after all
///   queued data (`shutdown(SHUT_WR)`), like `TcpStream`'s, and returns. It shuts down
///   the **write side only**: it never reads or discards input, never waits on the peer
///   and does not touch the readiness Tokio caches for the stream, so the application
///   may go on reading to EOF (a proxy relaying the other direction, an upgraded
///   connection). Should the shutdown fail, it returns the [`CloseError`] as an
///   [`io::Error`] (recover it with `get_ref()` and `downcast_ref`); later calls return
///   the same outcome.
/// - Dropping it finishes the close in a task on the current Tokio runtime, within the
///   same [`CloseOptions`] (the deadline counts from the shutdown, the idle timeout
///   from the drop, when the close starts watching the peer): the shutdown if none
///   ran (hyper's error paths, a connection future dropped mid-request, a handler that
///   panicked), then the drain of the peer's unread input to its EOF as
///   [`CloseOptions::peer_eof`] says, the wait until the peer acknowledged our data and
///   FIN (`SIOCOUTQ` = 0), then the `close()`. Outside a runtime the stream is closed at
///   once without blocking (a non-zero `SO_LINGER` is disarmed first).
///
/// `poll_shutdown` does not wait for the acknowledgement, on purpose: many clients
/// (Python's `requests`, browsers over HTTP/1.1) send their whole request before they
/// read the response. Until the server reads or discards the rest of their upload they
/// cannot read, their receive window stays closed, and our response and FIN cannot be
/// acknowledged: a wait for the acknowledgement that does not read would last until the
/// deadline, and the close would then destroy the response. Only the drop, which owns
/// the stream, may discard its input; the outcome, delivery confirmed or not, is
/// reported then.
///
/// Writes after the shutdown started fail at once with
/// [`BrokenPipe`](io::ErrorKind::BrokenPipe). Before, writes never read, with one
/// exception that only the HTTP layer can ask for: once `AnnounceCloseLayer` marked the
/// connection's input abandoned (an early answer with `Connection: close` to a request
/// whose body nobody will read, on a connection served through `GracefulConnectInfo`),
/// a write that finds the socket full discards the peer's input, within the layer's
/// bounds, and is also woken by the peer's next bytes.
///
/// Every connection reports its outcome exactly once (unless
/// [`into_inner`](Self::into_inner) took the stream back): as one `tracing` event of
/// target `tokio_graceful_close` and to the [`on_close`](Self::on_close) callback.
/// Delivered closes are `DEBUG` events; closes that could not confirm delivery are
/// `INFO` (the peer reset, went silent or away) or `WARN` (a local I/O error).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use tokio::io::AsyncWriteExt;
/// use tokio_graceful_close::{CloseOptions, GracefulIo};
///
/// # async fn dox() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let (stream, _) = listener.accept().await?;
/// let mut io = GracefulIo::new(stream, CloseOptions::new(Duration::from_secs(5)))
///     .on_close(|res| match res {
///         Ok(report) => println!("delivered, {} bytes discarded", report.drained_bytes()),
///         Err(e) => eprintln!("{e}"),
///     });
/// io.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n").await?;
/// io.shutdown().await?; // our FIN, after the response
/// drop(io); // drains what the client still sends, waits for its ACK, then closes
/// # Ok(())
/// # }
/// ```
///
/// Pass it wherever a Tokio stream goes: `hyper_util::rt::TokioIo::new(io)` for hyper,
/// or see `GracefulListener` (feature `axum`), `GracefulServeExt` (feature `hyper`) and
/// `GracefulCloseLayer` (feature `tower`).
///
/// # TLS
///
/// Put it *under* the TLS layer: accept TCP, wrap the stream in `GracefulIo`, hand that
/// to `tokio_rustls::TlsAcceptor::accept`, serve the `TlsStream<GracefulIo<TcpStream>>`.
/// The TLS stream's shutdown sends close_notify, then reaches this `poll_shutdown` (our
/// FIN); the drop drains the raw, still encrypted bytes. The client's close_notify is
/// never waited for. Should a TLS layer not forward `poll_shutdown`, the drop path still
/// closes gracefully. `GracefulTlsListener` (feature `rustls`) does all of it for axum,
/// with the handshakes off the accept loop.
pub struct GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    /// Always `Some` but inside `into_inner` and `drop`.
    stream: Option<S>,
    options: CloseOptions,
    state: State,
    on_close: Option<OnClose>,
    /// The count of a [`CloseTracker`], from the wrapping until the close ended.
    hold: Option<Hold>,
    /// Read when the stream is wrapped: after a reset the socket no longer knows it.
    peer_addr: Option<std::net::SocketAddr>,
    /// Input the application abandoned, discarded by writes that find the socket full.
    input: Abandoned,
}

// ===== impl GracefulIo =====

impl<S> GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    /// Wraps `stream`; its shutdown and its drop will close it gracefully with `options`.
    ///
    /// Options not set take the defaults of a server connection: the peer's EOF is
    /// waited for only if it is still sending ([`PeerEof::IfSending`](crate::PeerEof)),
    /// 5 s of silence at most; see the table in [`CloseOptions`].
    pub fn new(stream: S, options: CloseOptions) -> Self {
        Self::from_parts(stream, options, Role::Server, None, None)
    }

    pub(crate) fn from_parts(
        stream: S,
        options: CloseOptions,
        role: Role,
        on_close: Option<SharedOnClose>,
        tracker: Option<CloseTracker>,
    ) -> Self {
        let peer_addr = socket2::SockRef::from(&stream.as_sock())
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket());
        GracefulIo {
            stream: Some(stream),
            options: options.resolve(role),
            state: State::Open,
            on_close: on_close.map(OnClose::shared),
            hold: tracker.as_ref().map(CloseTracker::hold),
            peer_addr,
            input: Abandoned::default(),
        }
    }

    /// Counts this connection in `tracker` from now until its close ended, so that a
    /// server can wait for it ([`CloseTracker::wait`]), and caps its lingering.
    #[must_use = "builder methods return the changed wrapper"]
    pub fn tracked(mut self, tracker: &CloseTracker) -> Self {
        self.hold = Some(tracker.hold());
        self
    }

    /// The closer of a close that starts now, taking over the discard of abandoned
    /// input if one ran, and its count in the closes in flight (feature `metrics`).
    fn start_closer(&mut self) -> (Box<Closer>, InFlight) {
        let mut in_flight = InFlight::default();
        in_flight.start();
        let mut closer = Closer::new(self.options);
        if self.hold.is_some() {
            closer = closer.evictable();
        }
        let stream = self.stream.as_ref().expect(TAKEN);
        let before = self.input.hand_over(stream, closer.takes_batches());
        (Box::new(closer.taking_over(before)), in_flight)
    }

    /// What the connection keeps around its close, for the close's task and report:
    /// the tracker's count becomes the close's registration.
    fn close_context(&mut self, in_flight: InFlight) -> Conn {
        Conn {
            token: self.hold.take().map(Hold::start),
            peer_addr: self.peer_addr,
            discarded_before: self.input.discarded(),
            in_flight,
        }
    }

    /// The handle through which a request served on this connection marks its input
    /// abandoned (see `AnnounceCloseLayer`).
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn input_handle(&self) -> InputHandle {
        self.input.handle()
    }

    /// The peer's address, read when the stream was wrapped (`None` for `AF_UNIX`
    /// streams, or if the connection was already gone).
    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.peer_addr
    }

    /// Calls `f` with the outcome when the close ends: from `poll_shutdown` when it
    /// fails, from the background task after a drop, or at once when the stream was
    /// dropped outside a Tokio runtime (then on the dropping thread) or the runtime shut
    /// down before the close ended. Called exactly once per connection, even if it
    /// panics, and never after [`into_inner`](Self::into_inner).
    ///
    /// It may run inside a `Drop` or on a runtime thread: keep it short. A panic in it
    /// in the crate's own task ends that task only (Tokio contains it).
    ///
    /// It runs once, so it may move what it captured, a `oneshot::Sender` say:
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use tokio_graceful_close::{CloseOptions, GracefulIo};
    /// # async fn dox(stream: tokio::net::TcpStream) {
    /// let (tx, rx) = tokio::sync::oneshot::channel();
    /// let io = GracefulIo::new(stream, CloseOptions::new(Duration::from_secs(5)))
    ///     .on_close(move |res| {
    ///         let _ = tx.send(res.is_ok()); // moves the sender: once
    ///     });
    /// drop(io);
    /// let delivered: bool = rx.await.unwrap_or(false);
    /// # let _ = delivered;
    /// # }
    /// ```
    #[must_use = "builder methods return the changed wrapper"]
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: FnOnce(&Result<CloseReport, CloseError>) + Send + 'static,
    {
        self.on_close = Some(OnClose::once(f));
        self
    }

    /// Gets a reference to the stream.
    pub fn get_ref(&self) -> &S {
        match &self.stream {
            Some(s) => s,
            None => unreachable!("the stream is taken only by `into_inner` and `drop`"),
        }
    }

    /// Gets a mutable reference to the stream.
    ///
    /// Reading or writing through it bypasses the wrapper: after a shutdown, writes
    /// fail with the socket's own error (`EPIPE`).
    pub fn get_mut(&mut self) -> &mut S {
        match &mut self.stream {
            Some(s) => s,
            None => unreachable!("the stream is taken only by `into_inner` and `drop`"),
        }
    }

    /// Gives the stream back without closing it, and without calling the callback.
    ///
    /// If a shutdown had started, the stream is already half-closed (our FIN sent).
    pub fn into_inner(mut self) -> S {
        let state = std::mem::replace(&mut self.state, State::Closed(None));
        self.on_close = None;
        let stream = self.stream.take().expect(TAKEN);
        // The discard is over: the kernel wakes readers for every byte again.
        let _ = self.input.hand_over(&stream, false);
        if let State::Shut(mut closer, _) = state {
            closer.unbatch(&stream);
        }
        stream
    }

    /// Records the end of the close, then reports it (in that order, so that a
    /// panicking callback cannot report twice).
    fn finish(&mut self, mut res: Result<CloseReport, CloseError>, in_flight: InFlight) {
        let context = self.close_context(in_flight);
        context.annotate(&mut res);
        let kept = res.as_ref().err().map(|e| Box::new(e.duplicate()));
        self.state = State::Closed(kept);
        context.report(&res, self.on_close.take(), Path::Shutdown);
    }
}

/// Why `stream` cannot be `None` while the wrapper is in use.
const TAKEN: &str = "the stream is taken only by `into_inner` and `drop`";

fn write_after_shutdown<T>() -> Poll<io::Result<T>> {
    Poll::Ready(Err(io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the stream was shut down for writing",
    )))
}

impl<S> AsyncRead for GracefulIo<S>
where
    S: AsyncGracefulClose + AsyncRead + Unpin + Send + 'static,
{
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().get_mut()).poll_read(cx, buf)
    }
}

impl<S> AsyncWrite for GracefulIo<S>
where
    S: AsyncGracefulClose + AsyncWrite + Unpin + Send + 'static,
{
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !matches!(this.state, State::Open) {
            return write_after_shutdown();
        }
        let res = Pin::new(this.stream.as_mut().expect(TAKEN)).poll_write(cx, buf);
        if res.is_pending() {
            this.input
                .on_write_blocked(this.stream.as_ref().expect(TAKEN), cx);
        }
        res
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if !matches!(this.state, State::Open) {
            return write_after_shutdown();
        }
        let res = Pin::new(this.stream.as_mut().expect(TAKEN)).poll_write_vectored(cx, bufs);
        if res.is_pending() {
            this.input
                .on_write_blocked(this.stream.as_ref().expect(TAKEN), cx);
        }
        res
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.get_ref().is_write_vectored()
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().get_mut()).poll_flush(cx)
    }

    /// Flushes the stream and sends our FIN (`shutdown(SHUT_WR)`). Never reads, never
    /// waits on the peer: the drop finishes the close.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &this.state {
            State::Shut(..) | State::Closed(None) => return Poll::Ready(Ok(())),
            State::Closed(Some(e)) => return Poll::Ready(Err(e.duplicate().into())),
            State::Open => {}
        }
        ready!(Pin::new(this.get_mut()).poll_flush(cx))?;
        let (mut closer, in_flight) = this.start_closer();
        match closer.begin(this.get_ref()) {
            Ok(()) => {
                this.state = State::Shut(closer, in_flight);
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                this.finish(Err(e), in_flight);
                match &this.state {
                    State::Closed(Some(e)) => Poll::Ready(Err(e.duplicate().into())),
                    _ => unreachable!("a failed shutdown keeps its error"),
                }
            }
        }
    }
}

impl<S> Drop for GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    fn drop(&mut self) {
        let (closer, in_flight) = match std::mem::replace(&mut self.state, State::Closed(None)) {
            // Ended and reported (or given back by `into_inner`): the drop releases the
            // descriptor, if any.
            State::Closed(_) => return,
            State::Open => self.start_closer(),
            State::Shut(c, f) => (c, f),
        };
        let context = self.close_context(in_flight);
        let stream = self.stream.take().expect(TAKEN);
        let on_close = self.on_close.take();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                // The task is dropped at once if the runtime is shutting down; the
                // `Background` drop then closes plainly and reports it.
                let task = Background {
                    stream: Some(stream),
                    closer,
                    context: Some(context),
                    on_close,
                };
                drop(handle.spawn(task.instrument(tracing::Span::current())));
            }
            Err(_) => close_plainly(
                stream,
                &closer,
                context,
                on_close,
                "dropped outside a Tokio runtime: closed at once without a graceful close",
                Path::NoRuntime,
            ),
        }
    }
}

#[cfg(unix)]
impl<S> std::os::fd::AsFd for GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.get_ref().as_sock()
    }
}

#[cfg(unix)]
impl<S> std::os::fd::AsRawFd for GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.get_ref().as_sock())
    }
}

#[cfg(windows)]
impl<S> std::os::windows::io::AsSocket for GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
        self.get_ref().as_sock()
    }
}

#[cfg(windows)]
impl<S> std::os::windows::io::AsRawSocket for GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
        std::os::windows::io::AsRawSocket::as_raw_socket(&self.get_ref().as_sock())
    }
}

impl<S> fmt::Debug for GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulIo")
            .field("stream", &self.stream)
            .field("options", &self.options)
            .field("state", &self.state)
            .field("tracked", &self.hold.is_some())
            .finish_non_exhaustive()
    }
}
