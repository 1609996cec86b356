//! [`GracefulService`]: actix-http's `HttpService` over [`GracefulIo`]s, in place of
//! `HttpService::tcp()` (and, with `rustls`, of `rustls_0_23()`).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::actix_http::Protocol;
use ::actix_service::{Service, ServiceFactory};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::io::settings::CloseSettings;
use crate::io::GracefulIo;
use crate::options::Role;

/// What actix-http's `HttpService` is served with: the stream, its protocol, the peer.
type Conn = (GracefulIo<TcpStream>, Protocol, Option<SocketAddr>);

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
/// use tokio_graceful_close::actix::GracefulService;
/// use tokio_graceful_close::{CloseOptions, CloseSettings, CloseTracker};
///
/// # async fn dox() -> std::io::Result<()> {
/// let closes = CloseTracker::new();
/// // nginx's lingering_time; every worker's service shares the tracker.
/// let settings = CloseSettings::new(CloseOptions::new(Duration::from_secs(30))).tracked(&closes);
/// actix_server::Server::build()
///     .bind("app", ("127.0.0.1", 8080), move || {
///         let app = App::new().route("/", web::get().to(|| async { "hello" }));
///         let app = map_config(app, |_| AppConfig::default())
///             .map_err(|e: actix_web::Error| e.error_response());
///         GracefulService::new(HttpService::build().finish(app), settings.clone())
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
/// Each worker builds its own service from one [`CloseSettings`]: they share its
/// tracker, for its lingering cap, its counts and the usual `close()`, `wait()` once
/// the server returned.
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub struct GracefulService<S, A = ()> {
    inner: S,
    settings: CloseSettings,
    /// `()` over TCP, the `TlsAcceptor` over TLS.
    tls: A,
    /// How long a TLS handshake may take.
    #[cfg(feature = "rustls")]
    handshake_timeout: std::time::Duration,
}

impl<S> GracefulService<S> {
    /// Wraps `inner`, an actix-http `HttpService` (or any service factory over
    /// `(GracefulIo<TcpStream>, Protocol, Option<SocketAddr>)`): every connection it
    /// serves closes gracefully with the [`CloseSettings`] (a
    /// [`CloseOptions`](crate::CloseOptions) will do; unset options take the server
    /// defaults of [`GracefulIo::new`]).
    pub fn new(inner: S, settings: impl Into<CloseSettings>) -> Self {
        GracefulService {
            inner,
            settings: settings.into(),
            tls: (),
            #[cfg(feature = "rustls")]
            handshake_timeout: crate::integrations::rustls::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

impl<S, A> GracefulService<S, A> {
    /// The settings every connection is wrapped with (over TLS, failed handshakes
    /// included). Each worker builds its own service from the same settings: they share
    /// one tracker, for its lingering cap, its counts and the usual `close()`, `wait()`
    /// once the server returned.
    pub fn settings(&self) -> &CloseSettings {
        &self.settings
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
    fn around<T>(&self, inner: T) -> GracefulService<T, A>
    where
        A: Clone,
    {
        GracefulService {
            inner,
            settings: self.settings.clone(),
            tls: self.tls.clone(),
            #[cfg(feature = "rustls")]
            handshake_timeout: self.handshake_timeout,
        }
    }

    /// Wraps an accepted stream; `closed` resolves once its close ended (after its
    /// callback), or once the callback is dropped without running.
    fn wrap(&self, stream: TcpStream) -> (GracefulIo<TcpStream>, oneshot::Receiver<()>) {
        let (done, closed) = oneshot::channel::<()>();
        let io = self.settings.wrap_holding(stream, Role::Server, done);
        (io, closed)
    }
}

impl<S> ServiceFactory<TcpStream> for GracefulService<S>
where
    S: ServiceFactory<Conn, Config = ()>,
    S::Future: 'static,
    S::Service: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Config = ();
    type Service = GracefulService<S::Service>;
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

impl<S> Service<TcpStream> for GracefulService<S>
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

impl<S: fmt::Debug, A> fmt::Debug for GracefulService<S, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulService")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
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

    use super::GracefulService;
    use crate::integrations::rustls::handshake;
    use crate::io::GracefulIo;

    /// What actix-http's `HttpService` is served with over TLS.
    type TlsConn = (
        TlsStream<GracefulIo<TcpStream>>,
        Protocol,
        Option<SocketAddr>,
    );

    #[cfg_attr(docsrs, doc(cfg(all(feature = "actix", feature = "rustls"))))]
    impl<S> GracefulService<S> {
        /// Serves TLS with `acceptor`, in place of actix-http's `rustls_0_23()`: each
        /// connection's handshake runs over its [`GracefulIo`], bounded by
        /// [`handshake_timeout`](GracefulService::handshake_timeout), then `inner`
        /// (an `HttpService`, or any service factory over
        /// `(TlsStream<GracefulIo<TcpStream>>, Protocol, Option<SocketAddr>)`) serves
        /// the TLS stream. Its close puts on the wire the TLS `close_notify` (when actix
        /// ends the connection cleanly), our FIN after it, then drains what the client
        /// still sends (raw records, never decrypted); see
        /// [`GracefulTlsListener`](crate::rustls::GracefulTlsListener) for the order.
        ///
        /// ```no_run
        /// use std::sync::Arc;
        /// use std::time::Duration;
        /// use actix_http::HttpService;
        /// use actix_service::{map_config, ServiceFactoryExt};
        /// use actix_web::{dev::AppConfig, web, App};
        /// use tokio_graceful_close::actix::GracefulService;
        /// use tokio_graceful_close::{CloseOptions, CloseSettings, CloseTracker};
        /// use tokio_rustls::TlsAcceptor;
        ///
        /// # async fn dox(config: Arc<tokio_rustls::rustls::ServerConfig>) -> std::io::Result<()> {
        /// // `config`: your `rustls::ServerConfig`, with its crypto provider, certificate
        /// // and ALPN (`config.alpn_protocols = vec![b"http/1.1".to_vec()]`).
        /// let closes = CloseTracker::new();
        /// let settings = CloseSettings::new(CloseOptions::new(Duration::from_secs(30))).tracked(&closes);
        /// actix_server::Server::build()
        ///     .bind("app", ("0.0.0.0", 443), move || {
        ///         let app = App::new().route("/", web::get().to(|| async { "hello" }));
        ///         let app = map_config(app, |_| AppConfig::default())
        ///             .map_err(|e: actix_web::Error| e.error_response());
        ///         GracefulService::new(HttpService::build().finish(app), settings.clone())
        ///             .rustls(TlsAcceptor::from(config.clone()))
        ///             .handshake_timeout(Duration::from_secs(10))
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
        /// other, and is reported to the settings' callback
        /// ([`CloseSettings::on_close`](crate::CloseSettings::on_close)).
        /// Handshakes run in the service calls, so the worker's
        /// `max_concurrent_connections` bounds them too.
        #[must_use = "builder methods return the changed service"]
        pub fn rustls(self, acceptor: TlsAcceptor) -> GracefulService<S, TlsAcceptor> {
            GracefulService {
                inner: self.inner,
                settings: self.settings,
                tls: acceptor,
                handshake_timeout: self.handshake_timeout,
            }
        }
    }

    #[cfg_attr(docsrs, doc(cfg(all(feature = "actix", feature = "rustls"))))]
    impl<S> GracefulService<S, TlsAcceptor> {
        /// Sets how long a handshake may take
        /// ([`DEFAULT_HANDSHAKE_TIMEOUT`](crate::rustls::DEFAULT_HANDSHAKE_TIMEOUT) unless
        /// set, as for [`GracefulTlsListener`](crate::rustls::GracefulTlsListener)); a client that has
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

    impl<S> ServiceFactory<TcpStream> for GracefulService<S, TlsAcceptor>
    where
        S: ServiceFactory<TlsConn, Config = ()>,
        S::Future: 'static,
        S::Service: 'static,
        S::Error: From<io::Error>,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Config = ();
        type Service = GracefulService<Rc<S::Service>, TlsAcceptor>;
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

    impl<S> Service<TcpStream> for GracefulService<Rc<S>, TlsAcceptor>
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
                let res = match handshake(&acceptor, io, limit, peer).await {
                    Ok(tls) => {
                        let proto = match tls.get_ref().1.alpn_protocol() {
                            Some(b"h2") => Protocol::Http2,
                            _ => Protocol::Http1,
                        };
                        inner.call((tls, proto, peer)).await
                    }
                    // The `GracefulIo` was dropped with the handshake: its close runs.
                    Err(e) => Err(e.into()),
                };
                // As over TCP: the service call ends with the close.
                let _ = closed.await;
                res
            })
        }
    }
}
