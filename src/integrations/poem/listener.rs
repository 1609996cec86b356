//! [`GracefulListener`]: a poem `Listener` and `Acceptor` of [`GracefulIo`]s.

use std::fmt;
use std::future::Future;
use std::io;

use ::poem::http::uri::Scheme;
use ::poem::listener::{Acceptor, Listener};
use ::poem::web::{LocalAddr, RemoteAddr};

use crate::ext::AsyncGracefulClose;
use crate::io::settings::CloseSettings;
use crate::io::GracefulIo;
use crate::options::Role;

/// A poem [`Listener`](::poem::listener::Listener) (and, once bound, an
/// [`Acceptor`](::poem::listener::Acceptor)) whose connections close gracefully: its
/// `Io` is a [`GracefulIo`] around the inner acceptor's stream.
///
/// It wraps a listener whose streams are sockets (poem's `TcpListener` or
/// `UnixListener`, or their acceptors); `poem::Server` then needs no other change:
///
/// ```no_run
/// use std::time::Duration;
/// use poem::{handler, listener::TcpListener, Route, Server};
/// use tokio_graceful_close::poem::GracefulListener;
/// use tokio_graceful_close::CloseOptions;
///
/// #[handler]
/// fn hello() -> &'static str {
///     "hello"
/// }
///
/// # async fn dox(signal: std::future::Ready<()>) -> std::io::Result<()> {
/// let app = Route::new().at("/", poem::get(hello));
/// let opts = CloseOptions::new(Duration::from_secs(30)); // nginx's lingering_time
/// let listener = GracefulListener::new(TcpListener::bind("127.0.0.1:3000"), opts);
/// let closes = listener.settings().tracker().clone();
/// Server::new(listener)
///     .run_with_graceful_shutdown(app, signal, Some(Duration::from_secs(10)))
///     .await?;
/// closes.close();
/// closes.wait().await; // every response delivered or its close timed out
/// # Ok(())
/// # }
/// ```
///
/// # Graceful shutdown
///
/// poem waits for the connection futures only; closes that go on in the background
/// (after hyper's `poll_shutdown`, or after a drop) are counted by the
/// [`tracker`](CloseSettings::tracker) of its settings: wait for them, as above, before
/// the runtime shuts down.
///
/// # TLS
///
/// The [`GracefulIo`] goes under TLS: wrap the TCP listener, then add poem's TLS on top
/// (`GracefulListener::new(TcpListener::bind(addr), opts).rustls(config)`, with
/// poem's `rustls` feature), so that the close sends `close_notify`, then our FIN, then
/// drains the raw bytes (`lab/tests/http_poem.rs` runs its early 413 this way). Wrapping a
/// TLS listener does not compile: its streams are not sockets.
#[cfg_attr(docsrs, doc(cfg(feature = "poem")))]
pub struct GracefulListener<T> {
    inner: T,
    settings: CloseSettings,
}

impl<T> GracefulListener<T> {
    /// Wraps `inner` (a listener or an acceptor): every connection it accepts closes
    /// gracefully with the [`CloseSettings`] (a [`CloseOptions`](crate::CloseOptions)
    /// will do; unset options take the server defaults of [`GracefulIo::new`]).
    pub fn new(inner: T, settings: impl Into<CloseSettings>) -> Self {
        GracefulListener {
            inner,
            settings: settings.into(),
        }
    }

    /// The settings every connection is wrapped with; wait on their
    /// [`tracker`](CloseSettings::tracker) after the server returned, before the runtime
    /// shuts down.
    pub fn settings(&self) -> &CloseSettings {
        &self.settings
    }

    /// Gets a reference to the inner listener or acceptor.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Gives the inner listener or acceptor back.
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<L> Listener for GracefulListener<L>
where
    L: Listener,
    <L::Acceptor as Acceptor>::Io: AsyncGracefulClose,
{
    type Acceptor = GracefulListener<L::Acceptor>;

    fn into_acceptor(self) -> impl Future<Output = io::Result<Self::Acceptor>> + Send {
        let GracefulListener { inner, settings } = self;
        async move {
            let inner = inner.into_acceptor().await?;
            Ok(GracefulListener { inner, settings })
        }
    }
}

impl<A> Acceptor for GracefulListener<A>
where
    A: Acceptor,
    A::Io: AsyncGracefulClose,
{
    type Io = GracefulIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    fn accept(
        &mut self,
    ) -> impl Future<Output = io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)>> + Send {
        let settings = self.settings.clone();
        let accept = self.inner.accept();
        async move {
            let (io, local, remote, scheme) = accept.await?;
            Ok((settings.wrap(io, Role::Server), local, remote, scheme))
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for GracefulListener<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulListener")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}
