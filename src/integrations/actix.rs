//! actix-web and actix-http with graceful closes: [`GracefulActixService`].
//!
//! actix-web's `HttpServer` only takes addresses and std listeners, and gives no hook
//! between the accept and its HTTP service. Underneath, it runs an actix-server
//! `ServerBuilder` whose service per connection is actix-http's `HttpService::tcp()`:
//! a `TcpStream` handed to an `HttpService` generic over its I/O. The adapter takes the
//! place of `tcp()`: the `HttpService` is served over a [`GracefulIo`], so that the
//! close that ends every connection, after a clean end or on an error path, is graceful
//! and an early answer (413, 401, 503) to a client still uploading is delivered whole.
//!
//! An actix-web `App` is served this way with actix-service's `map_config`, as
//! `HttpServer` does itself (the `AppConfig` then holds `AppConfig::default()`'s host
//! and address, used by `url_for` and `ConnectionInfo` when a request names no host).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::actix_http::Protocol;
use ::actix_service::{Service, ServiceFactory};
use tokio::net::TcpStream;

use crate::options::Role;
use crate::{CloseError, CloseOptions, CloseReport, CloseTracker, GracefulIo};

/// What actix-http's `HttpService` is served with: the stream, its protocol, the peer.
type Conn = (GracefulIo<TcpStream>, Protocol, Option<SocketAddr>);

/// The callback of [`GracefulActixService::on_close`].
type Callback = Arc<dyn Fn(&Result<CloseReport, CloseError>) + Send + Sync>;

/// An actix-server service factory over `TcpStream`s (what actix-http's
/// `HttpService::tcp()` returns) that serves an `HttpService` over [`GracefulIo`]s.
///
/// Build it in the factory closure of actix-server's `ServerBuilder::bind` or
/// `listen`, around `HttpService::build().finish(...)`:
///
/// ```no_run
/// use std::time::Duration;
/// use actix_http::HttpService;
/// use actix_service::{map_config, ServiceFactoryExt};
/// use actix_web::{dev::AppConfig, web, App};
/// use tokio_graceful_close::{CloseOptions, CloseTracker, GracefulActixService};
///
/// # async fn dox() -> std::io::Result<()> {
/// let opts = CloseOptions::new(Duration::from_secs(30)); // nginx's lingering_time
/// let closes = CloseTracker::new();
/// let tracker = closes.clone();
/// actix_server::Server::build()
///     .bind("app", ("127.0.0.1", 8080), move || {
///         let app = App::new().route("/", web::get().to(|| async { "hello" }));
///         let app = map_config(app, |_| AppConfig::default())
///             .map_err(|e: actix_web::Error| e.error_response());
///         GracefulActixService::new(HttpService::build().finish(app), opts).tracked(&tracker)
///     })?
///     .run()
///     .await?;
/// closes.close();
/// closes.wait().await;
/// # Ok(())
/// # }
/// ```
///
/// (The `map_err` turns actix-web's errors into responses, as `HttpServer` does.)
///
/// Like `tcp()`, it serves HTTP/1 (`Protocol::Http1`); `HttpServiceBuilder::tcp_nodelay`
/// is applied by `tcp()` only, so it has no effect here (unset, as by default). A
/// `client_disconnect_timeout` (disabled by default in `HttpServiceBuilder`, 1 s in
/// `HttpServer`) still lets actix read and discard an unread body for that long before
/// it ends the connection; the graceful close takes over from there.
///
/// # Graceful shutdown
///
/// actix-server runs each worker on a runtime of its own, which ends with the server.
/// So that no close dies with it, a connection's service call returns only once its
/// close ended: actix-server counts the connection until then, and its graceful stop
/// (`ServerHandle::stop(true)`, a signal) waits for the closes within its
/// `shutdown_timeout` (30 s by default, as long as the recommended close deadline).
/// The worker's connection limit (`max_concurrent_connections`) counts them too.
///
/// Each worker builds its own service: share one [`CloseTracker`] between them with
/// [`tracked`](Self::tracked), as above, for its lingering cap, its counts and the
/// usual `close()`, `wait()` once the server returned.
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub struct GracefulActixService<S> {
    inner: S,
    options: CloseOptions,
    on_close: Option<Callback>,
    tracker: CloseTracker,
}

impl<S> GracefulActixService<S> {
    /// Wraps `inner`, an actix-http `HttpService` (or any service factory over
    /// `(GracefulIo<TcpStream>, Protocol, Option<SocketAddr>)`): every connection it
    /// serves closes gracefully with `options` (unset options take the server defaults
    /// of [`GracefulIo::new`]), tracked by the service's [`tracker`](Self::tracker).
    pub fn new(inner: S, options: CloseOptions) -> Self {
        GracefulActixService {
            inner,
            options: options.resolve(Role::Server),
            on_close: None,
            tracker: CloseTracker::new(),
        }
    }

    /// The tracker of every connection's close (see [`CloseTracker`]).
    pub fn tracker(&self) -> CloseTracker {
        self.tracker.clone()
    }

    /// Tracks the closes in `tracker` instead of the service's own, to share one
    /// tracker (and one lingering cap) between the workers.
    #[must_use = "builder methods return the changed service"]
    pub fn tracked(mut self, tracker: &CloseTracker) -> Self {
        self.tracker = tracker.clone();
        self
    }

    /// Calls `f` with the outcome of every connection's close, to count them; see
    /// [`GracefulIo::on_close`].
    #[must_use = "builder methods return the changed service"]
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        self.on_close = Some(Arc::new(f));
        self
    }

    /// The options every connection closes with.
    pub fn options(&self) -> &CloseOptions {
        &self.options
    }

    /// Gets a reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Gives the inner service back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S> ServiceFactory<TcpStream> for GracefulActixService<S>
where
    S: ServiceFactory<Conn, Config = ()>,
    S::Future: 'static,
    S::Service: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Config = ();
    type Service = GracefulActixService<S::Service>;
    type InitError = S::InitError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Service, S::InitError>>>>;

    fn new_service(&self, cfg: ()) -> Self::Future {
        let (options, on_close, tracker) =
            (self.options, self.on_close.clone(), self.tracker.clone());
        let make = self.inner.new_service(cfg);
        Box::pin(async move {
            let inner = make.await?;
            Ok(GracefulActixService {
                inner,
                options,
                on_close,
                tracker,
            })
        })
    }
}

impl<S> Service<TcpStream> for GracefulActixService<S>
where
    S: Service<Conn>,
    S::Future: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>>>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&self, stream: TcpStream) -> Self::Future {
        let peer = stream.peer_addr().ok();
        let (done, closed) = tokio::sync::oneshot::channel::<()>();
        let user = self.on_close.clone();
        let io = GracefulIo::from_parts(
            stream,
            self.options,
            Role::Server,
            None,
            Some(self.tracker.clone()),
        )
        .on_close(move |res| {
            // The sender drops after the callback, or while a panic in it unwinds.
            let _done = done;
            if let Some(f) = user {
                f(res);
            }
        });
        let serve = self.inner.call((io, Protocol::Http1, peer));
        Box::pin(async move {
            let res = serve.await;
            // The connection was dropped (its close started): wait for the close, run
            // by the worker's runtime, which must outlive it.
            let _ = closed.await;
            res
        })
    }
}

impl<S: fmt::Debug> fmt::Debug for GracefulActixService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulActixService")
            .field("inner", &self.inner)
            .field("options", &self.options)
            .field("on_close", &self.on_close.is_some())
            .field("tracker", &self.tracker)
            .finish()
    }
}
