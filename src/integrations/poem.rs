//! poem with graceful closes: [`GracefulPoemListener`].
//!
//! poem's server hands every accepted stream to hyper, which calls `poll_shutdown` when
//! a connection ends cleanly and drops the stream on its error paths. A listener whose
//! acceptor yields [`GracefulIo`]s turns both into a graceful close, so an early answer
//! (413, 401, 503) to a client still uploading is delivered whole instead of being
//! destroyed by the RST of a close with unread data.
//!
//! A limit: hyper stops reading a body the handler dropped. An early answer larger than
//! the kernel's buffers (over 16 KiB to be safe) to a client that sends its whole
//! upload before it reads (Python's `requests`, browsers over HTTP/1.1) can then stall
//! until the client gives up, seen here with a 1 MiB answer and small buffers. axum has
//! `AnnounceCloseLayer` (feature `axum`), which reads the upload on while the answer
//! goes out; poem has no such layer here yet: keep early answers small, or read the
//! body to its end in the handler before a large answer.

use std::fmt;
use std::future::Future;
use std::io;

use ::poem::http::uri::Scheme;
use ::poem::listener::{Acceptor, Listener};
use ::poem::web::{LocalAddr, RemoteAddr};

use crate::io::settings::ConnSettings;
use crate::options::Role;
use crate::{AsyncGracefulClose, CloseError, CloseOptions, CloseReport, CloseTracker, GracefulIo};

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
/// use tokio_graceful_close::{CloseOptions, GracefulPoemListener};
///
/// #[handler]
/// fn hello() -> &'static str {
///     "hello"
/// }
///
/// # async fn dox(signal: std::future::Ready<()>) -> std::io::Result<()> {
/// let app = Route::new().at("/", poem::get(hello));
/// let opts = CloseOptions::new(Duration::from_secs(30)); // nginx's lingering_time
/// let listener = GracefulPoemListener::new(TcpListener::bind("127.0.0.1:3000"), opts);
/// let closes = listener.tracker();
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
/// (after hyper's `poll_shutdown`, or after a drop) are counted by the listener's
/// [`tracker`](Self::tracker): wait for them, as above, before the runtime shuts down.
///
/// # TLS
///
/// The [`GracefulIo`] goes under TLS: wrap the TCP listener, then add poem's TLS on top
/// (`GracefulPoemListener::new(TcpListener::bind(addr), opts).rustls(config)`, with
/// poem's `rustls` feature), so that the close sends `close_notify`, then our FIN, then
/// drains the raw bytes (`lab/tests/http_poem.rs` runs its early 413 this way). Wrapping a
/// TLS listener does not compile: its streams are not sockets.
#[cfg_attr(docsrs, doc(cfg(feature = "poem")))]
pub struct GracefulPoemListener<T> {
    inner: T,
    settings: ConnSettings,
}

impl<T> GracefulPoemListener<T> {
    /// Wraps `inner` (a listener or an acceptor): every connection it accepts closes
    /// gracefully with `options` (unset options take the server defaults of
    /// [`GracefulIo::new`]), tracked by the listener's [`tracker`](Self::tracker).
    pub fn new(inner: T, options: CloseOptions) -> Self {
        GracefulPoemListener {
            inner,
            settings: ConnSettings::new(options.resolve(Role::Server)),
        }
    }

    /// The tracker of every connection's close: wait on it after the server returned,
    /// before the runtime shuts down (see [`CloseTracker`]).
    pub fn tracker(&self) -> CloseTracker {
        self.settings.tracker()
    }

    /// Tracks the closes in `tracker` instead of the listener's own, to share one
    /// tracker (and one lingering cap) between listeners.
    #[must_use = "builder methods return the changed listener"]
    pub fn tracked(mut self, tracker: &CloseTracker) -> Self {
        self.settings.set_tracker(tracker);
        self
    }

    /// Calls `f` with the outcome of every connection's close, to count them; see
    /// [`GracefulIo::on_close`].
    #[must_use = "builder methods return the changed listener"]
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        self.settings.set_on_close(f);
        self
    }

    /// The options every connection closes with.
    pub fn options(&self) -> &CloseOptions {
        self.settings.options()
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

impl<L> Listener for GracefulPoemListener<L>
where
    L: Listener,
    <L::Acceptor as Acceptor>::Io: AsyncGracefulClose,
{
    type Acceptor = GracefulPoemListener<L::Acceptor>;

    fn into_acceptor(self) -> impl Future<Output = io::Result<Self::Acceptor>> + Send {
        let GracefulPoemListener { inner, settings } = self;
        async move {
            let inner = inner.into_acceptor().await?;
            Ok(GracefulPoemListener { inner, settings })
        }
    }
}

impl<A> Acceptor for GracefulPoemListener<A>
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

impl<T: fmt::Debug> fmt::Debug for GracefulPoemListener<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulPoemListener")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish()
    }
}
