//! [`Server`]: salvo's `Server` with every piece of a graceful server in place.

use std::fmt;
use std::io;

use ::salvo_core::server::ServerHandle;
use ::salvo_core::Service;
use tokio::net::TcpListener;

use super::{AnnounceClose, GracefulListener};
use crate::io::settings::CloseSettings;
use crate::tracker::CloseTracker;

/// salvo's `Server` with every connection closed gracefully: used as salvo's own
/// (`Server::new(..)`, `handle()`, `serve(router)`), it accepts through a
/// [`GracefulListener`] with [`CloseSettings::default`] (or
/// [`with_settings`](Self::with_settings)), puts the [`AnnounceClose`] hoop on the
/// service, and once salvo's server returned (after `ServerHandle::stop_graceful`)
/// waits for the closes still running (the settings'
/// [`CloseTracker`](crate::CloseTracker)), each within its own deadline: returning
/// from `main` then loses no answer.
///
/// ```no_run
/// use salvo_core::prelude::*;
///
/// #[handler]
/// async fn hello() -> &'static str {
///     "hello"
/// }
///
/// # async fn dox(shutdown: std::future::Ready<()>) -> std::io::Result<()> {
/// let tcp = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// let server = tokio_graceful_close::salvo::Server::new(tcp)?;
/// let handle = server.handle();
/// tokio::spawn(async move {
///     shutdown.await;
///     handle.stop_graceful(None);
/// });
/// server.serve(Router::new().get(hello)).await
/// # }
/// ```
///
/// TLS goes on top of the graceful listener, as salvo's `RustlsListener` takes it:
/// build the [`GracefulListener`] by hand (see its docs).
#[must_use = "a server does nothing unless served"]
pub struct Server {
    inner: ::salvo_core::Server<GracefulListener>,
    closes: CloseTracker,
    announce: AnnounceClose,
}

impl Server {
    /// A server on `listener`, its connections closed with
    /// [`CloseSettings::default`]. Fails only if the listener's local address cannot
    /// be read.
    pub fn new(listener: TcpListener) -> io::Result<Self> {
        Self::with_settings(listener, CloseSettings::default())
    }

    /// A server on `listener`, its connections closed with these [`CloseSettings`] (a
    /// [`CloseOptions`](crate::CloseOptions) will do). Their tracker is the one waited
    /// for.
    pub fn with_settings(
        listener: TcpListener,
        settings: impl Into<CloseSettings>,
    ) -> io::Result<Self> {
        let settings = settings.into();
        let closes = settings.tracker().clone();
        let acceptor = GracefulListener::new(listener, settings)?;
        Ok(Server {
            inner: ::salvo_core::Server::new(acceptor),
            closes,
            announce: AnnounceClose::new(),
        })
    }

    /// Bounds the discard of an upload abandoned by an early answer
    /// ([`AnnounceClose::discard_limit`], [`AnnounceClose::discard_timeout`]).
    pub fn announce_close(mut self, announce: AnnounceClose) -> Self {
        self.announce = announce;
        self
    }

    /// The handle that stops the server (`stop_graceful`, `stop_forcible`), as salvo's.
    pub fn handle(&self) -> ServerHandle {
        self.inner.handle()
    }

    /// Serves `service` (a `Router` will do) until the handle stops the server, then
    /// waits for the closes. Fails where salvo's `try_serve` fails.
    pub async fn serve<S>(self, service: S) -> io::Result<()>
    where
        S: Into<Service> + Send,
    {
        let service = service.into().hoop(self.announce);
        self.inner.try_serve(service).await?;
        self.closes.close();
        self.closes.wait().await;
        Ok(())
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("closes", &self.closes)
            .field("announce", &self.announce)
            .finish_non_exhaustive()
    }
}
