//! An I/O wrapper whose `poll_shutdown` is a graceful close: [`GracefulIo`].
//!
//! Servers and clients built on [`AsyncRead`] / [`AsyncWrite`] (hyper, axum, tonic,
//! anything taking a Tokio stream) end a connection with `poll_shutdown` followed by a
//! drop, or with a drop alone on their error paths. Wrapping the stream in
//! [`GracefulIo`] turns both into a graceful close: half-close, drain to the peer's EOF,
//! confirmed acknowledgement, all bounded by one [`CloseOptions`] deadline. Reads and
//! writes are forwarded untouched.

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{CloseErrorKind, ClosePhase};
use crate::machine::{disarm_linger, Closer, Mode};
use crate::{AsyncGracefulClose, CloseError, CloseOptions, CloseReport};

/// What an outcome callback is.
type Callback = dyn Fn(&Result<CloseReport, CloseError>) + Send + Sync;

/// The outcome callback shared by every connection of a listener or layer.
#[derive(Clone)]
pub(crate) struct OnClose(Arc<Callback>);

impl OnClose {
    pub(crate) fn new<F>(f: F) -> Self
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        OnClose(Arc::new(f))
    }
}

impl fmt::Debug for OnClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("OnClose(..)")
    }
}

/// Where a close ran, for the trace events.
#[derive(Clone, Copy)]
enum Path {
    Shutdown,
    Background,
    NoRuntime,
}

impl Path {
    fn as_str(self) -> &'static str {
        match self {
            Path::Shutdown => "poll_shutdown",
            Path::Background => "background",
            Path::NoRuntime => "no runtime",
        }
    }
}

/// Emits the trace event and calls the user's callback, once per connection.
fn notify(on_close: Option<&OnClose>, res: &Result<CloseReport, CloseError>, path: Path) {
    match res {
        Ok(report) => tracing::debug!(
            path = path.as_str(),
            elapsed = ?report.elapsed(),
            drained = report.drained_bytes(),
            acked = report.acked(),
            "connection closed gracefully"
        ),
        Err(err) => tracing::debug!(
            path = path.as_str(),
            error = %err,
            "connection closed without confirmed delivery"
        ),
    }
    if let Some(cb) = on_close {
        (cb.0)(res);
    }
}

/// Closes `stream` at once, never blocking (a non-zero `SO_LINGER` is disarmed first),
/// and reports why no graceful close could run.
fn close_plainly<S: AsFd>(stream: S, on_close: Option<&OnClose>, why: &str, path: Path) {
    disarm_linger(stream.as_fd());
    drop(stream);
    let res = Err(CloseError::new(
        CloseErrorKind::Io,
        ClosePhase::Shutdown,
        CloseReport::default(),
        Some(io::Error::other(why)),
    ));
    notify(on_close, &res, path);
}

/// Where the close of a [`GracefulIo`] stands.
#[derive(Debug)]
enum State {
    /// Reads and writes go through; no close started.
    Open,
    /// `poll_shutdown` started the close (the [`Closer`] is set).
    Closing,
    /// The close ended; what `poll_shutdown` returns from now on.
    Closed(Result<(), io::ErrorKind>),
}

/// A Tokio stream whose `poll_shutdown` closes gracefully, and whose drop does too.
///
/// It forwards [`AsyncRead`] and [`AsyncWrite`] to the stream (vectored writes
/// included) and costs nothing until the connection ends:
///
/// - [`poll_shutdown`](AsyncWrite::poll_shutdown) (what `AsyncWriteExt::shutdown`, hyper
///   and axum call on a clean end) runs the whole graceful close of
///   [`AsyncGracefulClose::graceful_close_with`]: `shutdown(SHUT_WR)`, drain to the
///   peer's EOF, wait until `SIOCOUTQ` reaches 0. It returns `Ok(())` when delivery is
///   confirmed, else the [`CloseError`] as an [`io::Error`] (recover it with
///   `get_ref()` and `downcast_ref`). The descriptor stays open until the wrapper is
///   dropped; later calls return the same outcome.
/// - Dropping it without a completed shutdown (hyper's error paths, a connection future
///   dropped mid-request, a handler that panicked) hands the stream, and the close
///   already started if any, to a task on the current Tokio runtime that finishes the
///   graceful close within the same [`CloseOptions`]. Outside a runtime the stream is
///   closed at once without blocking (a non-zero `SO_LINGER` is disarmed first).
///
/// Every connection reports its outcome exactly once (unless
/// [`into_inner`](Self::into_inner) took the stream back): as a `tracing` event at
/// `DEBUG` level and to the [`on_close`](Self::on_close) callback.
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
/// io.shutdown().await?; // the graceful close
/// # Ok(())
/// # }
/// ```
///
/// Pass it wherever a Tokio stream goes: `hyper_util::rt::TokioIo::new(io)` for hyper,
/// or see `GracefulListener` (feature `axum`), `GracefulServeExt` (feature `hyper`) and
/// `GracefulCloseLayer` (feature `tower`).
///
/// # Notes
///
/// The close reads from the stream to drain it: do not read concurrently while
/// `poll_shutdown` is pending. Writes after the shutdown started fail (`EPIPE`).
pub struct GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    /// Always `Some` but inside `into_inner` and `drop`.
    stream: Option<S>,
    options: CloseOptions,
    /// Created by the first `poll_shutdown`, boxed so the wrapper stays `Unpin`.
    closer: Option<Pin<Box<Closer>>>,
    state: State,
    on_close: Option<OnClose>,
}

// ===== impl GracefulIo =====

impl<S> GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    /// Wraps `stream`; its shutdown and its drop will close it gracefully with `options`.
    pub fn new(stream: S, options: CloseOptions) -> Self {
        Self::with_callback(stream, options, None)
    }

    pub(crate) fn with_callback(
        stream: S,
        options: CloseOptions,
        on_close: Option<OnClose>,
    ) -> Self {
        GracefulIo {
            stream: Some(stream),
            options,
            closer: None,
            state: State::Open,
            on_close,
        }
    }

    /// Calls `f` with the outcome when the close ends: from `poll_shutdown`, from the
    /// background task after a drop, or with an error when the stream was dropped
    /// outside a Tokio runtime or the background task was cancelled. Called once per
    /// connection, never after [`into_inner`](Self::into_inner).
    ///
    /// It runs on a runtime thread, possibly inside a `Drop`: keep it short, and do not
    /// panic.
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        self.on_close = Some(OnClose::new(f));
        self
    }

    /// The options the close runs with.
    pub fn options(&self) -> &CloseOptions {
        &self.options
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
    /// Reading or writing through it while `poll_shutdown` is pending disturbs the close.
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
        self.closer = None;
        match self.stream.take() {
            Some(s) => s,
            None => unreachable!("the stream is taken only by `into_inner` and `drop`"),
        }
    }
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
        Pin::new(self.get_mut().get_mut()).poll_write(cx, buf)
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().get_mut()).poll_write_vectored(cx, bufs)
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.get_ref().is_write_vectored()
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().get_mut()).poll_flush(cx)
    }

    /// Flushes the stream, then runs the graceful close to its end.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.state {
            State::Closed(Ok(())) => return Poll::Ready(Ok(())),
            State::Closed(Err(kind)) => {
                return Poll::Ready(Err(io::Error::new(
                    kind,
                    "the graceful close of this stream already failed",
                )))
            }
            State::Open => {
                ready!(Pin::new(this.get_mut()).poll_flush(cx))?;
                let closer = Closer::new(this.options.clone(), Mode::Close);
                this.closer = Some(Box::pin(closer));
                this.state = State::Closing;
            }
            State::Closing => {}
        }
        let (Some(stream), Some(closer)) = (this.stream.as_ref(), this.closer.as_mut()) else {
            unreachable!("a closing `GracefulIo` has its stream and its closer");
        };
        let res = ready!(closer.as_mut().poll_close(stream, cx));
        this.closer = None;
        notify(this.on_close.as_ref(), &res, Path::Shutdown);
        let res = res.map(drop).map_err(io::Error::from);
        this.state = State::Closed(res.as_ref().map(|_| ()).map_err(io::Error::kind));
        Poll::Ready(res)
    }
}

impl<S> Drop for GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    fn drop(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        if let State::Closed(_) = self.state {
            return; // closed already: the drop releases the descriptor
        }
        let on_close = self.on_close.take();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let closer = self
                    .closer
                    .take()
                    .unwrap_or_else(|| Box::pin(Closer::new(self.options.clone(), Mode::Close)));
                // The task is dropped at once if the runtime is shutting down; the
                // `Background` drop then closes plainly and reports it.
                drop(handle.spawn(Background {
                    stream: Some(stream),
                    closer,
                    on_close,
                }));
            }
            Err(_) => close_plainly(
                stream,
                on_close.as_ref(),
                "dropped outside a Tokio runtime: closed at once without a graceful close",
                Path::NoRuntime,
            ),
        }
    }
}

impl<S> AsFd for GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.get_ref().as_fd()
    }
}

impl<S> AsRawFd for GracefulIo<S>
where
    S: AsyncGracefulClose + Send + 'static,
{
    fn as_raw_fd(&self) -> RawFd {
        self.get_ref().as_fd().as_raw_fd()
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
            .finish_non_exhaustive()
    }
}

// ===== impl Background =====

/// The close of a dropped [`GracefulIo`], run as its own task.
struct Background<S: AsyncGracefulClose> {
    stream: Option<S>,
    closer: Pin<Box<Closer>>,
    on_close: Option<OnClose>,
}

// The stream is never pinned: it is only borrowed, and moved out to be dropped.
impl<S: AsyncGracefulClose> Unpin for Background<S> {}

impl<S: AsyncGracefulClose> Future for Background<S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(stream) = this.stream.as_ref() else {
            return Poll::Ready(());
        };
        let res = ready!(this.closer.as_mut().poll_close(stream, cx));
        drop(this.stream.take());
        notify(this.on_close.as_ref(), &res, Path::Background);
        Poll::Ready(())
    }
}

impl<S: AsyncGracefulClose> Drop for Background<S> {
    fn drop(&mut self) {
        // Only when the runtime drops the task before the close ended.
        if let Some(stream) = self.stream.take() {
            close_plainly(
                stream,
                self.on_close.as_ref(),
                "the runtime shut down before the graceful close ended",
                Path::Background,
            );
        }
    }
}
