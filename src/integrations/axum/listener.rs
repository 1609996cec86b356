//! [`GracefulListener`]: an `axum::serve::Listener` whose connections close gracefully.

use std::fmt;
use std::future::Future;

use ::axum::serve::Listener;

use crate::ext::AsyncGracefulClose;
use crate::io::settings::CloseSettings;
use crate::io::GracefulIo;
use crate::options::Role;

/// An [`axum::serve::Listener`](::axum::serve::Listener) whose connections close
/// gracefully: its `Io` is a [`GracefulIo`] around the inner listener's stream.
///
/// The address type is unchanged. `axum::serve` then needs no other change:
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use tokio_graceful_close::axum::GracefulListener;
/// use tokio_graceful_close::CloseOptions;
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
/// # use tokio_graceful_close::axum::GracefulListener;
/// # use tokio_graceful_close::CloseOptions;
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
/// Or wrap the router in [`GracefulConnectInfo`](super::GracefulConnectInfo) (any `Addr` type, no `tap_io`):
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
/// counted by the [`tracker`](CloseSettings::tracker) of its settings. Wait for them
/// before the runtime shuts down:
///
/// ```no_run
/// # use std::time::Duration;
/// # use tokio_graceful_close::axum::GracefulListener;
/// # use tokio_graceful_close::CloseOptions;
/// # async fn dox(app: axum::Router, signal: std::future::Ready<()>) -> std::io::Result<()> {
/// let tcp = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
/// let listener = GracefulListener::new(tcp, CloseOptions::new(Duration::from_secs(30)));
/// let closes = listener.settings().tracker().clone();
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
    settings: CloseSettings,
}

// ===== impl GracefulListener =====

impl<L> GracefulListener<L> {
    /// Wraps `listener`: every connection it accepts closes gracefully with the
    /// [`CloseSettings`] (a [`CloseOptions`](crate::CloseOptions) will do; unset options
    /// take the server defaults of [`GracefulIo::new`]).
    pub fn new(listener: L, settings: impl Into<CloseSettings>) -> Self {
        GracefulListener {
            inner: listener,
            settings: settings.into(),
        }
    }

    /// The settings every connection is wrapped with; their
    /// [`tracker`](CloseSettings::tracker) counts the closes that go on after
    /// `axum::serve` let go of their connections.
    pub fn settings(&self) -> &CloseSettings {
        &self.settings
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
