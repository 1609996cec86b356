//! [`serve`]: `axum::serve` with every piece of a graceful server in place.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::pin::Pin;

use ::axum::serve::Listener;
use ::axum::Router;

use super::{AnnounceCloseLayer, GracefulConnectInfo, GracefulListener};
use crate::ext::AsyncGracefulClose;
use crate::io::settings::CloseSettings;

/// Serves `router` on `listener` as `axum::serve` does, with every connection closed
/// gracefully and every piece that takes in place:
///
/// - each accepted stream wrapped in a [`GracefulIo`](crate::GracefulIo)
///   ([`GracefulListener`]), closed with [`CloseSettings::default`] unless
///   [`settings`](Serve::settings) says otherwise;
/// - early answers announced and their uploads discarded below hyper
///   ([`AnnounceCloseLayer`] around the router, served through
///   [`GracefulConnectInfo`]), so that clients that pool connections and clients that
///   send their whole upload first get an early 413 whole;
/// - `ConnectInfo<L::Addr>` for every request (`ConnectInfo<SocketAddr>` over TCP);
/// - with [`with_graceful_shutdown`](Serve::with_graceful_shutdown), the closes still
///   running when axum returns are waited for (the settings'
///   [`CloseTracker`](crate::CloseTracker)), each within its own deadline, before the
///   future completes: returning from `main` then loses no response.
///
/// ```no_run
/// use axum::{routing::get, Router};
///
/// # async fn dox(shutdown: std::future::Ready<()>) -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// tokio_graceful_close::axum::serve(listener, app)
///     .with_graceful_shutdown(shutdown)
///     .await?;
/// # Ok(())
/// # }
/// ```
///
/// The pieces stay public for a stack of your own (another make-service, a router
/// with state, TLS with [`GracefulTlsListener`](crate::rustls::GracefulTlsListener)).
pub fn serve<L>(listener: L, router: Router) -> Serve<L>
where
    L: Listener,
    L::Io: AsyncGracefulClose,
    L::Addr: Clone + Send + Sync + fmt::Debug + 'static,
{
    Serve {
        listener,
        router,
        settings: CloseSettings::default(),
        announce: AnnounceCloseLayer::new(),
        signal: None,
    }
}

/// A signal that ends the server.
type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The server [`serve`] returns: await it (`IntoFuture`), after setting what differs
/// from the defaults.
#[must_use = "a server does nothing unless `.await`ed"]
pub struct Serve<L> {
    listener: L,
    router: Router,
    settings: CloseSettings,
    announce: AnnounceCloseLayer,
    signal: Option<Signal>,
}

impl<L> Serve<L> {
    /// Closes every connection with these [`CloseSettings`] (a
    /// [`CloseOptions`](crate::CloseOptions) will do) instead of [`CloseSettings::default`]. Their tracker is the
    /// one waited for at shutdown.
    pub fn settings(mut self, settings: impl Into<CloseSettings>) -> Self {
        self.settings = settings.into();
        self
    }

    /// Bounds the discard of an upload abandoned by an early answer
    /// ([`AnnounceCloseLayer::discard_limit`], [`AnnounceCloseLayer::discard_timeout`])
    /// instead of the layer's defaults (64 MiB, 30 s).
    pub fn announce_close(mut self, layer: AnnounceCloseLayer) -> Self {
        self.announce = layer;
        self
    }

    /// Stops accepting once `signal` completes, lets the connections in progress end
    /// (as `axum::serve`'s `with_graceful_shutdown`), then waits for their closes.
    pub fn with_graceful_shutdown<F>(mut self, signal: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.signal = Some(Box::pin(signal));
        self
    }
}

impl<L> IntoFuture for Serve<L>
where
    L: Listener,
    L::Io: AsyncGracefulClose,
    L::Addr: Clone + Send + Sync + fmt::Debug + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let closes = self.settings.tracker().clone();
        let listener = GracefulListener::new(self.listener, self.settings);
        let app = GracefulConnectInfo::new(self.router.layer(self.announce));
        let server = ::axum::serve(listener, app);
        Box::pin(async move {
            match self.signal {
                Some(signal) => server.with_graceful_shutdown(signal).await?,
                None => server.await?,
            }
            closes.close();
            closes.wait().await;
            Ok(())
        })
    }
}

impl<L: fmt::Debug> fmt::Debug for Serve<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .field("announce", &self.announce)
            .field("graceful_shutdown", &self.signal.is_some())
            .finish_non_exhaustive()
    }
}
