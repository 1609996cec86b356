//! [`Server`]: `poem::Server` with every piece of a graceful server in place.

use std::fmt;
use std::future::Future;
use std::io;
use std::time::Duration;

use ::poem::listener::{Acceptor, Listener};
use ::poem::{EndpointExt, IntoEndpoint};

use super::{AnnounceClose, GracefulListener};
use crate::ext::AsyncGracefulClose;
use crate::io::settings::CloseSettings;

/// `poem::Server` with every connection closed gracefully: used as poem's own
/// (`Server::new(listener).run(app)`), it serves through a [`GracefulListener`] with
/// [`CloseSettings::default`] (or [`settings`](Self::settings)), puts [`AnnounceClose`]
/// around the application, and once poem's server returned waits for the closes still
/// running (the settings' [`CloseTracker`](crate::CloseTracker)), each within its own
/// deadline: returning from `main` then loses no answer.
///
/// ```no_run
/// use std::time::Duration;
/// use poem::{handler, listener::TcpListener, Route};
///
/// #[handler]
/// fn hello() -> &'static str {
///     "hello"
/// }
///
/// # async fn dox(shutdown: std::future::Ready<()>) -> std::io::Result<()> {
/// let app = Route::new().at("/", poem::get(hello));
/// tokio_graceful_close::poem::Server::new(TcpListener::bind("0.0.0.0:3000"))
///     .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(10)))
///     .await
/// # }
/// ```
///
/// TLS goes on top of the graceful listener, as poem's own TLS listeners take it:
/// build the [`GracefulListener`] by hand and add poem's `rustls` on it (see its docs).
#[must_use = "a server does nothing unless run"]
pub struct Server<L> {
    listener: L,
    settings: CloseSettings,
    announce: AnnounceClose,
}

impl<L> Server<L>
where
    L: Listener + 'static,
    <L::Acceptor as Acceptor>::Io: AsyncGracefulClose,
{
    /// A server on `listener` (poem's `TcpListener::bind(addr)`, a `UnixListener`...,
    /// any listener of sockets).
    pub fn new(listener: L) -> Self {
        Server {
            listener,
            settings: CloseSettings::default(),
            announce: AnnounceClose::new(),
        }
    }

    /// Closes every connection with these [`CloseSettings`] (a [`CloseOptions`](crate::CloseOptions) will
    /// do) instead of [`CloseSettings::default`]. Their tracker is the one waited for.
    pub fn settings(mut self, settings: impl Into<CloseSettings>) -> Self {
        self.settings = settings.into();
        self
    }

    /// Bounds the discard of an upload abandoned by an early answer
    /// ([`AnnounceClose::discard_limit`], [`AnnounceClose::discard_timeout`]).
    pub fn announce_close(mut self, announce: AnnounceClose) -> Self {
        self.announce = announce;
        self
    }

    /// Serves `ep` until the listener fails, as `poem::Server::run`.
    pub async fn run<E>(self, ep: E) -> io::Result<()>
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        self.run_with_graceful_shutdown(ep, std::future::pending(), None)
            .await
    }

    /// Serves `ep` until `signal` completes, lets the connections in progress end
    /// within `timeout` (as `poem::Server::run_with_graceful_shutdown`), then waits for
    /// their closes.
    pub async fn run_with_graceful_shutdown<E>(
        self,
        ep: E,
        signal: impl Future<Output = ()>,
        timeout: Option<Duration>,
    ) -> io::Result<()>
    where
        E: IntoEndpoint,
        E::Endpoint: 'static,
    {
        let closes = self.settings.tracker().clone();
        let listener = GracefulListener::new(self.listener, self.settings);
        let app = ep.into_endpoint().with(self.announce);
        ::poem::Server::new(listener)
            .run_with_graceful_shutdown(app, signal, timeout)
            .await?;
        closes.close();
        closes.wait().await;
        Ok(())
    }
}

impl<L: fmt::Debug> fmt::Debug for Server<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .field("announce", &self.announce)
            .finish()
    }
}
