//! `axum::serve` with graceful closes: [`GracefulListener`].
//!
//! `axum::serve` hands every accepted stream to hyper, which calls `poll_shutdown` when
//! a connection ends cleanly and drops the stream on its error paths. A listener whose
//! `Io` is a [`GracefulIo`] turns both into a graceful close, so an early answer (413,
//! 401, 503) to a client still uploading is delivered whole instead of being destroyed
//! by the RST of a close with unread data. [`AnnounceCloseLayer`](crate::AnnounceCloseLayer)
//! on the application does the rest: hyper stops reading a body the handler dropped,
//! and the layer has the upload discarded while an answer too large for the kernel's
//! buffers goes out; served through [`GracefulConnectInfo`], below hyper, in the
//! connection's own writes.

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Future, Ready};
use std::task::{Context, Poll};

use ::axum::extract::ConnectInfo;
use ::axum::http::{Request, Version};
use ::axum::serve::{IncomingStream, Listener};
use tower::Service;

use crate::discard::abandon::InputHandle;
use crate::io::settings::ConnSettings;
use crate::options::Role;
use crate::{AsyncGracefulClose, CloseError, CloseOptions, CloseReport, CloseTracker, GracefulIo};

/// An [`axum::serve::Listener`](::axum::serve::Listener) whose connections close
/// gracefully: its `Io` is a [`GracefulIo`] around the inner listener's stream.
///
/// The address type is unchanged. `axum::serve` then needs no other change:
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use tokio_graceful_close::{CloseOptions, GracefulListener};
///
/// # async fn dox() -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let opts = CloseOptions::new(Duration::from_secs(30)); // nginx's lingering_time
/// axum::serve(GracefulListener::new(listener, opts), app).await?;
/// # Ok(())
/// # }
/// ```
///
/// # `ConnectInfo`
///
/// Two ways, both tested. axum's own, through `ListenerExt::tap_io` (axum implements
/// `Connected` for every `TapIo` listener whose inner listener's address is
/// `SocketAddr`):
///
/// ```no_run
/// # use std::{net::SocketAddr, time::Duration};
/// # use axum::{extract::ConnectInfo, routing::get, Router};
/// # use tokio_graceful_close::{CloseOptions, GracefulListener};
/// use axum::serve::ListenerExt;
/// # async fn dox() -> std::io::Result<()> {
/// let app = Router::new().route(
///     "/",
///     get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
/// );
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let listener = GracefulListener::new(tcp, CloseOptions::new(Duration::from_secs(30)))
///     .tap_io(|_io| {});
/// axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
/// # Ok(())
/// # }
/// ```
///
/// Or wrap the router in [`GracefulConnectInfo`] (any `Addr` type, no `tap_io`):
/// `axum::serve(listener, GracefulConnectInfo::new(app))`; handlers extract
/// `ConnectInfo<L::Addr>` the same way.
///
/// `into_make_service_with_connect_info` directly on a `GracefulListener` does not
/// compile: axum implements `Connected` for its own listeners only, and the orphan rule
/// keeps this crate from adding it. A custom `Connected` type of yours must name the
/// listener: `impl Connected<IncomingStream<'_, GracefulListener<TcpListener>>> for
/// MyInfo` (reading `stream.remote_addr()` and `stream.io().get_ref()`), where it had
/// `IncomingStream<'_, TcpListener>`.
///
/// # Graceful shutdown
///
/// With `with_graceful_shutdown`, axum waits for the connection futures only; closes
/// that go on in the background (after hyper's `poll_shutdown`, or after a drop) are
/// counted by the listener's [`tracker`](Self::tracker). Wait for them before the
/// runtime shuts down:
///
/// ```no_run
/// # use std::time::Duration;
/// # use tokio_graceful_close::{CloseOptions, GracefulListener};
/// # async fn dox(app: axum::Router, signal: std::future::Ready<()>) -> std::io::Result<()> {
/// let tcp = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// let listener = GracefulListener::new(tcp, CloseOptions::new(Duration::from_secs(30)));
/// let closes = listener.tracker();
/// axum::serve(listener, app).with_graceful_shutdown(signal).await?;
/// closes.close();
/// closes.wait().await; // every response delivered or its close timed out
/// # Ok(())
/// # }
/// ```
///
/// An idle keep-alive client does not hold the shutdown: by default
/// ([`PeerEof::IfSending`](crate::PeerEof::IfSending)) a connection with no unread input
/// is closed as soon as our data and FIN are acknowledged.
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub struct GracefulListener<L> {
    inner: L,
    settings: ConnSettings,
}

// ===== impl GracefulListener =====

impl<L> GracefulListener<L> {
    /// Wraps `listener`: every connection it accepts closes gracefully with `options`
    /// (unset options take the server defaults of [`GracefulIo::new`]), tracked by the
    /// listener's [`tracker`](Self::tracker).
    pub fn new(listener: L, options: CloseOptions) -> Self {
        GracefulListener {
            inner: listener,
            settings: ConnSettings::new(options.resolve(Role::Server)),
        }
    }

    /// The tracker of every connection's close: wait on it after `axum::serve`
    /// returned, before the runtime shuts down (see [`CloseTracker`]).
    pub fn tracker(&self) -> CloseTracker {
        self.settings.tracker()
    }

    /// Tracks the closes in `tracker` instead of the listener's own, to share one
    /// tracker (and one lingering cap) between listeners.
    #[must_use = "builder methods return the changed listener"]
    pub fn tracked(mut self, tracker: &CloseTracker) -> Self {
        self.settings.set_tracker(tracker);
        self
    }

    /// Calls `f` with the outcome of every connection's close, to count them; see
    /// [`GracefulIo::on_close`].
    #[must_use = "builder methods return the changed listener"]
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        self.settings.set_on_close(f);
        self
    }

    /// The options every connection closes with.
    pub fn options(&self) -> &CloseOptions {
        self.settings.options()
    }

    /// Gets a reference to the inner listener.
    pub fn get_ref(&self) -> &L {
        &self.inner
    }

    /// Gets a mutable reference to the inner listener.
    pub fn get_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    /// Gives the inner listener back.
    pub fn into_inner(self) -> L {
        self.inner
    }
}

impl<L> Listener for GracefulListener<L>
where
    L: Listener,
    L::Io: AsyncGracefulClose,
{
    type Io = GracefulIo<L::Io>;
    type Addr = L::Addr;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        let settings = self.settings.clone();
        let accept = self.inner.accept();
        async move {
            let (io, addr) = accept.await;
            (settings.wrap(io, Role::Server), addr)
        }
    }

    fn local_addr(&self) -> tokio::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl<L: fmt::Debug> fmt::Debug for GracefulListener<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulListener")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}

// ===== impl GracefulConnectInfo =====

/// Serves a router behind a [`GracefulListener`] with [`ConnectInfo`] for every request,
/// as `Router::into_make_service_with_connect_info` does for axum's own listeners, and
/// with the connection's handle that lets
/// [`AnnounceCloseLayer`](crate::AnnounceCloseLayer) discard an abandoned upload below
/// hyper.
///
/// It is the "make service" given to `axum::serve`: per connection it returns an
/// [`AddConnectInfo`] that inserts `ConnectInfo(remote_addr)` into each request, and
/// into each HTTP/1 request with a body, a handle on the connection's input (crate
/// private). When the layer answers such a request before its body was read, it marks
/// the input abandoned through that handle, and the connection's writes discard the
/// upload while the answer goes out (see the layer's docs): far cheaper than reading it
/// through hyper, which the layer does without it.
///
/// Any listener whose `Io` is a [`GracefulIo`] will do, `tap_io` included:
///
/// ```no_run
/// # use std::time::Duration;
/// # use axum::Router;
/// use axum::serve::ListenerExt;
/// use tokio_graceful_close::{CloseOptions, GracefulConnectInfo, GracefulListener};
/// # async fn dox(app: Router) -> std::io::Result<()> {
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let listener = GracefulListener::new(tcp, CloseOptions::new(Duration::from_secs(30)))
///     .tap_io(|io| {
///         let _ = io.get_ref().set_nodelay(true);
///     });
/// axum::serve(listener, GracefulConnectInfo::new(app)).await?;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Debug, Clone)]
pub struct GracefulConnectInfo<S> {
    inner: S,
}

impl<S> GracefulConnectInfo<S> {
    /// Wraps the service (usually an `axum::Router`).
    pub const fn new(inner: S) -> Self {
        GracefulConnectInfo { inner }
    }
}

impl<'a, L, I, S> Service<IncomingStream<'a, L>> for GracefulConnectInfo<S>
where
    L: Listener<Io = GracefulIo<I>>,
    I: AsyncGracefulClose + Send + 'static,
    L::Addr: Clone + Send + Sync + 'static,
    S: Clone,
{
    type Response = AddConnectInfo<S, L::Addr>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, stream: IncomingStream<'a, L>) -> Self::Future {
        ready(Ok(AddConnectInfo {
            inner: self.inner.clone(),
            addr: stream.remote_addr().clone(),
            input: stream.io().input_handle(),
        }))
    }
}

/// The per-connection service of [`GracefulConnectInfo`]: inserts
/// [`ConnectInfo`]`(addr)` into every request's extensions, and the connection's input
/// handle into those of HTTP/1 requests with a body.
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Debug, Clone)]
pub struct AddConnectInfo<S, A> {
    inner: S,
    addr: A,
    /// The connection's input handle, for `AnnounceCloseLayer`.
    input: InputHandle,
}

impl<S, A, B> Service<Request<B>> for AddConnectInfo<S, A>
where
    S: Service<Request<B>>,
    A: Clone + Send + Sync + 'static,
    B: http_body::Body,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.addr.clone()));
        // Only an HTTP/1 request with a body may leave input behind.
        if req.version() <= Version::HTTP_11 && !req.body().is_end_stream() {
            req.extensions_mut().insert(self.input.clone());
        }
        self.inner.call(req)
    }
}
