//! [`HttpServer`]: actix-web's `HttpServer`, with every connection closed gracefully.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{self, ToSocketAddrs};
use std::time::Duration;

use ::actix_http::body::MessageBody;
use ::actix_http::{HttpService, Request, Response};
use ::actix_server::{Server, ServerBuilder};
use ::actix_service::{map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use ::actix_web::dev::AppConfig;
use ::actix_web::Error;

use super::GracefulService;
use crate::io::settings::CloseSettings;

/// The types of what an `HttpServer`'s factory makes.
type Made<I, S, B> = PhantomData<fn() -> (I, S, B)>;

/// actix-web's `HttpServer`, used the same way (`HttpServer::new(factory)`, `bind`,
/// `listen`, `workers`, `run`), with every connection served over a
/// [`GracefulIo`](crate::GracefulIo) ([`GracefulService`]), closed with
/// [`CloseSettings::default`] or [`settings`](Self::settings).
///
/// ```no_run
/// use actix_web::{web, App, HttpResponse};
///
/// # async fn dox() -> std::io::Result<()> {
/// tokio_graceful_close::actix::HttpServer::new(|| {
///     App::new().route("/upload", web::post().to(|| async { HttpResponse::PayloadTooLarge() }))
/// })
/// .workers(2)
/// .bind(("0.0.0.0", 8080))?
/// .run()
/// .await
/// # }
/// ```
///
/// A connection's service call ends with its close, so actix-server's graceful stop
/// (`ServerHandle::stop(true)`, a signal) waits for the closes within its
/// `shutdown_timeout` (30 s by default), and the workers' connection limit counts
/// them. Served as `HttpServer` serves: HTTP/1 over TCP, a 5 s client request timeout
/// and a 1 s client disconnect timeout. TLS: [`GracefulService::rustls`] on a server
/// of your own (see its docs).
#[must_use = "a server does nothing unless run"]
pub struct HttpServer<F, I, S, B> {
    factory: F,
    settings: CloseSettings,
    builder: ServerBuilder,
    /// What `factory` makes, as in actix-web's `HttpServer`.
    _app: Made<I, S, B>,
}

impl<F, I, S, B> HttpServer<F, I, S, B>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    /// A server of the applications `factory` makes, one per worker.
    pub fn new(factory: F) -> Self {
        HttpServer {
            factory,
            settings: CloseSettings::default(),
            builder: Server::build(),
            _app: PhantomData,
        }
    }

    /// Closes every connection with these [`CloseSettings`] (a
    /// [`CloseOptions`](crate::CloseOptions) will do) instead of
    /// [`CloseSettings::default`]. Applies to the listeners bound after it.
    pub fn settings(mut self, settings: impl Into<CloseSettings>) -> Self {
        self.settings = settings.into();
        self
    }

    /// Sets the number of workers (the number of CPUs by default), as actix-web's.
    pub fn workers(mut self, workers: usize) -> Self {
        self.builder = self.builder.workers(workers);
        self
    }

    /// How long the graceful stop waits for the workers (30 s by default), as
    /// actix-web's.
    pub fn shutdown_timeout(mut self, secs: u64) -> Self {
        self.builder = self.builder.shutdown_timeout(secs);
        self
    }

    /// Leaves the process's signals alone (no stop on SIGINT, SIGTERM, SIGQUIT), as
    /// actix-web's.
    pub fn disable_signals(mut self) -> Self {
        self.builder = self.builder.disable_signals();
        self
    }

    /// Binds every address `addrs` resolves to.
    pub fn bind<A: ToSocketAddrs>(mut self, addrs: A) -> io::Result<Self> {
        let mut bound = false;
        for addr in addrs.to_socket_addrs()? {
            self = self.listen(net::TcpListener::bind(addr)?)?;
            bound = true;
        }
        if !bound {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the address resolved to nothing",
            ));
        }
        Ok(self)
    }

    /// Serves on `listener`, bound already.
    pub fn listen(mut self, listener: net::TcpListener) -> io::Result<Self> {
        let addr = listener.local_addr()?;
        let factory = self.factory.clone();
        let settings = self.settings.clone();
        self.builder =
            self.builder
                .listen(format!("actix-web-graceful-{addr}"), listener, move || {
                    let app = factory()
                        .into_factory()
                        .map_err(|e: S::Error| e.into().error_response());
                    let http = HttpService::build()
                        .client_request_timeout(Duration::from_secs(5))
                        .client_disconnect_timeout(Duration::from_secs(1))
                        .local_addr(addr)
                        .finish(map_config(app, |_| AppConfig::default()));
                    GracefulService::new(http, settings.clone())
                })?;
        Ok(self)
    }

    /// Starts the server: await the returned `Server` (actix-server's) to run it, or
    /// keep its `handle()` to stop it.
    pub fn run(self) -> Server {
        self.builder.run()
    }
}

impl<F, I, S, B> fmt::Debug for HttpServer<F, I, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpServer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
