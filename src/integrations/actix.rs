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
//! Over TLS (features `actix` and `rustls`), [`GracefulActixService::rustls`] takes the
//! place of actix-http's `rustls_0_23()` in the same way: the handshake runs over the
//! [`GracefulIo`] and the `HttpService` is served over the TLS stream on top of it.
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
use std::time::Duration;

use ::actix_http::Protocol;
use ::actix_service::{Service, ServiceFactory};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::options::Role;
use crate::{CloseError, CloseOptions, CloseReport, CloseTracker, GracefulIo};

/// What actix-http's `HttpService` is served with: the stream, its protocol, the peer.
type Conn = (GracefulIo<TcpStream>, Protocol, Option<SocketAddr>);

/// The callback of [`GracefulActixService::on_close`].
type Callback = Arc<dyn Fn(&Result<CloseReport, CloseError>) + Send + Sync>;

/// The default handshake timeout over TLS: `GracefulTlsListener`'s.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
/// With feature `rustls`, [`rustls`](Self::rustls) turns it into the TLS service, in
/// place of actix-http's `rustls_0_23()`; the second type parameter is then the
/// `TlsAcceptor` (`()` over TCP).
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
pub struct GracefulActixService<S, A = ()> {
    inner: S,
    options: CloseOptions,
    on_close: Option<Callback>,
    tracker: CloseTracker,
    /// `()` over TCP, the `TlsAcceptor` over TLS.
    tls: A,
    handshake_timeout: Duration,
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
            tls: (),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl<S, A> GracefulActixService<S, A> {
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

    /// Calls `f` with the outcome of every connection's close, to count them (over
    /// TLS, failed handshakes included); see [`GracefulIo::on_close`].
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

    /// The same settings around `inner`: each worker's service, made by the factory.
    fn around<T>(&self, inner: T) -> GracefulActixService<T, A>
    where
        A: Clone,
    {
        GracefulActixService {
            inner,
            options: self.options,
            on_close: self.on_close.clone(),
            tracker: self.tracker.clone(),
            tls: self.tls.clone(),
            handshake_timeout: self.handshake_timeout,
        }
    }

    /// Wraps an accepted stream; `closed` resolves once its close ended (after its
    /// callback), or once the callback is dropped without running.
    fn wrap(&self, stream: TcpStream) -> (GracefulIo<TcpStream>, oneshot::Receiver<()>) {
        let (done, closed) = oneshot::channel::<()>();
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
        (io, closed)
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
        let make = self.inner.new_service(cfg);
        let service = self.around(());
        Box::pin(async move {
            let inner = make.await?;
            Ok(service.around(inner))
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
        let (io, closed) = self.wrap(stream);
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

impl<S: fmt::Debug, A> fmt::Debug for GracefulActixService<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulActixService")
            .field("inner", &self.inner)
            .field("options", &self.options)
            .field("on_close", &self.on_close.is_some())
            .field("tracker", &self.tracker)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "rustls")]
mod tls {
    use std::future::Future;
    use std::io;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::rc::Rc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use ::actix_http::Protocol;
    use ::actix_service::{Service, ServiceFactory};
    use tokio::net::TcpStream;
    use tokio_rustls::server::TlsStream;
    use tokio_rustls::TlsAcceptor;

    use super::GracefulActixService;
    use crate::{GracefulIo, TARGET};

    /// What actix-http's `HttpService` is served with over TLS.
    type TlsConn = (
        TlsStream<GracefulIo<TcpStream>>,
        Protocol,
        Option<SocketAddr>,
    );

    #[cfg_attr(docsrs, doc(cfg(all(feature = "actix", feature = "rustls"))))]
    impl<S> GracefulActixService<S> {
        /// Serves TLS with `acceptor`, in place of actix-http's `rustls_0_23()`: each
        /// connection's handshake runs over its [`GracefulIo`], bounded by
        /// [`handshake_timeout`](GracefulActixService::handshake_timeout), then `inner`
        /// (an `HttpService`, or any service factory over
        /// `(TlsStream<GracefulIo<TcpStream>>, Protocol, Option<SocketAddr>)`) serves
        /// the TLS stream. Its close puts on the wire the TLS `close_notify` (when actix
        /// ends the connection cleanly), our FIN after it, then drains what the client
        /// still sends (raw records, never decrypted); see
        /// [`GracefulTlsListener`](crate::GracefulTlsListener) for the order.
        ///
        /// ```no_run
        /// use std::sync::Arc;
        /// use std::time::Duration;
        /// use actix_http::HttpService;
        /// use actix_service::{map_config, ServiceFactoryExt};
        /// use actix_web::{dev::AppConfig, web, App};
        /// use tokio_graceful_close::{CloseOptions, CloseTracker, GracefulActixService};
        /// use tokio_rustls::TlsAcceptor;
        ///
        /// # async fn dox(config: Arc<tokio_rustls::rustls::ServerConfig>) -> std::io::Result<()> {
        /// // `config`: your `rustls::ServerConfig`, with its crypto provider, certificate
        /// // and ALPN (`config.alpn_protocols = vec![b"http/1.1".to_vec()]`).
        /// let opts = CloseOptions::new(Duration::from_secs(30));
        /// let closes = CloseTracker::new();
        /// let tracker = closes.clone();
        /// actix_server::Server::build()
        ///     .bind("app", ("0.0.0.0", 443), move || {
        ///         let app = App::new().route("/", web::get().to(|| async { "hello" }));
        ///         let app = map_config(app, |_| AppConfig::default())
        ///             .map_err(|e: actix_web::Error| e.error_response());
        ///         GracefulActixService::new(HttpService::build().finish(app), opts)
        ///             .rustls(TlsAcceptor::from(config.clone()))
        ///             .handshake_timeout(Duration::from_secs(10))
        ///             .tracked(&tracker)
        ///     })?
        ///     .run()
        ///     .await?;
        /// closes.close();
        /// closes.wait().await;
        /// # Ok(())
        /// # }
        /// ```
        ///
        /// The protocol comes from ALPN, as with `rustls_0_23()`: HTTP/2 when the
        /// client chose `h2`, HTTP/1 otherwise (the `actix` feature turns on
        /// actix-http's `http2`, which serving an HTTP/2 connection needs). Unlike
        /// `rustls_0_23()`, the adapter adds nothing to the config's ALPN list: offer
        /// `h2` in it to serve HTTP/2.
        ///
        /// A handshake that fails or times out ends the service call with an
        /// `io::Error` (which actix-server drops) once its connection's close ended:
        /// the [`GracefulIo`] dropped with the handshake closes gracefully like any
        /// other, and is reported to [`on_close`](GracefulActixService::on_close).
        /// Handshakes run in the service calls, so the worker's
        /// `max_concurrent_connections` bounds them too.
        #[must_use = "builder methods return the changed service"]
        pub fn rustls(self, acceptor: TlsAcceptor) -> GracefulActixService<S, TlsAcceptor> {
            GracefulActixService {
                inner: self.inner,
                options: self.options,
                on_close: self.on_close,
                tracker: self.tracker,
                tls: acceptor,
                handshake_timeout: self.handshake_timeout,
            }
        }
    }

    #[cfg_attr(docsrs, doc(cfg(all(feature = "actix", feature = "rustls"))))]
    impl<S> GracefulActixService<S, TlsAcceptor> {
        /// Sets how long a handshake may take (10 s by default, as
        /// [`GracefulTlsListener`](crate::GracefulTlsListener)'s); a client that has
        /// not finished by then is dropped, and its connection closed gracefully.
        /// `Duration::MAX` means no bound.
        #[must_use = "builder methods return the changed service"]
        pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
            self.handshake_timeout = timeout;
            self
        }

        /// The TLS acceptor the handshakes run with.
        pub fn acceptor(&self) -> &TlsAcceptor {
            &self.tls
        }
    }

    impl<S> ServiceFactory<TcpStream> for GracefulActixService<S, TlsAcceptor>
    where
        S: ServiceFactory<TlsConn, Config = ()>,
        S::Future: 'static,
        S::Service: 'static,
        S::Error: From<io::Error>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Config = ();
        type Service = GracefulActixService<Rc<S::Service>, TlsAcceptor>;
        type InitError = S::InitError;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Service, S::InitError>>>>;

        fn new_service(&self, cfg: ()) -> Self::Future {
            let make = self.inner.new_service(cfg);
            let service = self.around(());
            Box::pin(async move {
                let inner = make.await?;
                Ok(service.around(Rc::new(inner)))
            })
        }
    }

    impl<S> Service<TcpStream> for GracefulActixService<Rc<S>, TlsAcceptor>
    where
        S: Service<TlsConn> + 'static,
        S::Error: From<io::Error>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>>>>;

        fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&self, stream: TcpStream) -> Self::Future {
            let peer = stream.peer_addr().ok();
            let (io, closed) = self.wrap(stream);
            let (inner, acceptor) = (Rc::clone(&self.inner), self.tls.clone());
            let limit = self.handshake_timeout;
            Box::pin(async move {
                let res = match tokio::time::timeout(limit, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => {
                        let proto = match tls.get_ref().1.alpn_protocol() {
                            Some(b"h2") => Protocol::Http2,
                            _ => Protocol::Http1,
                        };
                        inner.call((tls, proto, peer)).await
                    }
                    // The `GracefulIo` was dropped with the handshake: its close runs.
                    Ok(Err(e)) => {
                        tracing::debug!(
                            target: TARGET,
                            peer = ?peer,
                            error = %e,
                            "TLS handshake failed; the connection closes in the background"
                        );
                        Err(e.into())
                    }
                    Err(_) => {
                        tracing::debug!(
                            target: TARGET,
                            peer = ?peer,
                            timeout = ?limit,
                            "TLS handshake timed out; the connection closes in the background"
                        );
                        let e = io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out");
                        Err(e.into())
                    }
                };
                // As over TCP: the service call ends with the close.
                let _ = closed.await;
                res
            })
        }
    }
}
