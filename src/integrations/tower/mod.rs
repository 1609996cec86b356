//! tower: a layer that makes connections close gracefully (feature `tower`):
//! [`GracefulCloseLayer`].
//!
//! The same layer serves both ends:
//!
//! - around a **connector** (`Service<Uri>`, such as hyper-util's `HttpConnector`,
//!   whose connections are `TokioIo<TcpStream>`), every connection it makes becomes a
//!   `TokioIo<GracefulIo<TcpStream>>`: when hyper-util's pool drops an idle or broken
//!   connection, it is closed gracefully in the background;
//! - around a **connection service** (`Service<(TcpStream, SocketAddr)>`, what
//!   `TcpListener::accept` returns, or any `(stream, address)` pair), the service
//!   receives `(GracefulIo<TcpStream>, SocketAddr)` instead of the bare stream.

use std::fmt;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use tower::Service;

use crate::ext::AsyncGracefulClose;
use crate::io::settings::CloseSettings;
use crate::io::GracefulIo;
use crate::options::Role;

pub(crate) mod future;
mod layer;

pub use self::future::GracefulConnect;
pub use self::layer::GracefulCloseLayer;

/// The service made by [`GracefulCloseLayer`].
///
/// # Around a connector
///
/// As a `Service<Uri>` it wraps the connection each connect returns:
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use http_body_util::Empty;
/// use hyper_util::client::legacy::{connect::HttpConnector, Client};
/// use hyper_util::rt::TokioExecutor;
/// use tokio_graceful_close::tower::GracefulCloseLayer;
/// use tokio_graceful_close::CloseOptions;
/// use tower::Layer;
///
/// # fn dox() {
/// let connector = GracefulCloseLayer::new(CloseOptions::new(Duration::from_secs(5)))
///     .layer(HttpConnector::new());
/// let client: Client<_, Empty<Bytes>> =
///     Client::builder(TokioExecutor::new()).build(connector);
/// # let _ = client;
/// # }
/// ```
///
/// # Around a connection service
///
/// As a `Service<(S, A)>` for what an accept loop gives (`listener.accept()` returns
/// `(TcpStream, SocketAddr)`; a `UnixListener` `(UnixStream, unix::SocketAddr)`), it
/// calls the inner service with `(GracefulIo<S>, A)`:
///
/// ```
/// use std::time::Duration;
/// use tokio::io::AsyncWriteExt;
/// use std::net::SocketAddr;
/// use tokio::net::TcpStream;
/// use tokio_graceful_close::tower::GracefulCloseLayer;
/// use tokio_graceful_close::{CloseOptions, GracefulIo};
/// use tower::{service_fn, Service, ServiceBuilder, ServiceExt};
///
/// # async fn dox(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// let mut svc = ServiceBuilder::new()
///     .layer(GracefulCloseLayer::new(CloseOptions::new(Duration::from_secs(5))))
///     .service(service_fn(|(mut io, peer): (GracefulIo<TcpStream>, SocketAddr)| async move {
///         io.write_all(format!("bye, {peer}\n").as_bytes()).await?;
///         io.shutdown().await // our FIN; the drop drains, confirms delivery, closes
///     }));
/// let accepted = listener.accept().await?;
/// svc.ready().await?.call(accepted).await?;
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Clone)]
pub struct GracefulCloseService<S> {
    inner: S,
    settings: CloseSettings,
}

// ===== impl GracefulCloseService =====

impl<S> GracefulCloseService<S> {
    /// Wraps `inner`; its connections close gracefully with the [`CloseSettings`] (a
    /// [`CloseOptions`](crate::CloseOptions) will do).
    pub fn new(inner: S, settings: impl Into<CloseSettings>) -> Self {
        GracefulCloseService {
            inner,
            settings: settings.into(),
        }
    }

    /// The settings every connection is wrapped with.
    pub fn settings(&self) -> &CloseSettings {
        &self.settings
    }

    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gets a mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Gives the inner service back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Around a connector: every connection becomes a `TokioIo<GracefulIo<_>>`.
impl<C, T> Service<Uri> for GracefulCloseService<C>
where
    C: Service<Uri, Response = TokioIo<T>>,
    T: AsyncGracefulClose + Send + 'static,
{
    type Response = TokioIo<GracefulIo<T>>;
    type Error = C::Error;
    type Future = GracefulConnect<C::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let fut = self.inner.call(dst);
        GracefulConnect::new(fut, self.settings.clone())
    }
}

/// Around a connection service: it is called with a [`GracefulIo`] and the address.
impl<Svc, T, A> Service<(T, A)> for GracefulCloseService<Svc>
where
    Svc: Service<(GracefulIo<T>, A)>,
    T: AsyncGracefulClose + Send + 'static,
{
    type Response = Svc::Response;
    type Error = Svc::Error;
    type Future = Svc::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, (stream, addr): (T, A)) -> Self::Future {
        let io = self.settings.wrap(stream, Role::Server);
        self.inner.call((io, addr))
    }
}

impl<S: fmt::Debug> fmt::Debug for GracefulCloseService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulCloseService")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}
