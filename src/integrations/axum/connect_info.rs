//! [`GracefulConnectInfo`]: `ConnectInfo` for the routers behind a listener of
//! [`GracefulIo`]s, and the connection's input handle for the
//! [`AnnounceCloseLayer`](super::AnnounceCloseLayer).

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use ::axum::extract::ConnectInfo;
use ::axum::http::{Request, Version};
use ::axum::serve::{IncomingStream, Listener};
use tower::Service;

use crate::discard::abandon::InputHandle;
use crate::ext::AsyncGracefulClose;
use crate::io::GracefulIo;

/// Serves a router behind a [`GracefulListener`](super::GracefulListener) with [`ConnectInfo`] for every request,
/// as `Router::into_make_service_with_connect_info` does for axum's own listeners, and
/// with the connection's handle that lets
/// [`AnnounceCloseLayer`](crate::axum::AnnounceCloseLayer) discard an abandoned upload below
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
/// use tokio_graceful_close::axum::{GracefulConnectInfo, GracefulListener};
/// use tokio_graceful_close::CloseOptions;
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
