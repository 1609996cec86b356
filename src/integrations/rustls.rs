//! rustls: TLS with graceful closes (feature `rustls`): [`GracefulTlsListener`], and
//! the recipe it follows.
//!
//! The [`GracefulIo`] goes **under** TLS, around the TCP stream:
//! `tokio_rustls::server::TlsStream<GracefulIo<TcpStream>>`. Closing the TLS stream then
//! puts on the wire, in this order: the TLS `close_notify` alert, our FIN after it, and
//! while the client still sends, the drain of its raw (still encrypted, never
//! decrypted) bytes to its EOF; never a wait for the client's own `close_notify`. The
//! recipe by hand, and what each step relies on, is in the docs of
//! [`GracefulTlsListener`]; the listener does the same with the handshakes off the
//! accept loop.

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::io::settings::CloseSettings;
use crate::io::GracefulIo;
use crate::options::Role;
use crate::report::TARGET;

/// How long a TLS handshake may take unless set: 10 s. A client that has not finished
/// by then is dropped, and its connection closed gracefully in the background.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the server side of a TLS handshake over `io` within `limit` (`Duration::MAX`:
/// no bound). On failure or timeout `io` is dropped with the handshake: its close runs
/// in the background like any other. Every adapter's handshake goes through here.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    io: GracefulIo<TcpStream>,
    limit: Duration,
    peer: Option<SocketAddr>,
) -> io::Result<TlsStream<GracefulIo<TcpStream>>> {
    let res = match tokio::time::timeout(limit, acceptor.accept(io)).await {
        Ok(res) => res,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    };
    if let Err(e) = &res {
        tracing::debug!(
            target: TARGET,
            peer = ?peer,
            error = %e,
            "TLS handshake failed; the connection closes in the background"
        );
    }
    res
}

/// What a finished handshake task hands to the accept loop.
type Handshaken = Option<(TlsStream<GracefulIo<TcpStream>>, SocketAddr)>;

/// A TLS listener whose connections close gracefully: it accepts TCP, wraps each stream
/// in a [`GracefulIo`], runs the TLS handshake over it off the accept loop, and yields
/// `tokio_rustls::server::TlsStream<GracefulIo<TcpStream>>`.
///
/// With feature `axum` it is an [`axum::serve::Listener`](::axum::serve::Listener):
///
/// ```no_run
/// # #[cfg(feature = "axum")]
/// # async fn dox(config: std::sync::Arc<tokio_rustls::rustls::ServerConfig>) -> std::io::Result<()> {
/// use std::time::Duration;
/// use axum::{routing::get, Router};
/// use tokio_graceful_close::rustls::GracefulTlsListener;
/// use tokio_graceful_close::CloseOptions;
/// use tokio_rustls::TlsAcceptor;
///
/// // `config`: your `rustls::ServerConfig`, with its crypto provider, certificate and
/// // ALPN (`config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()]`).
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let tcp = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
/// let opts = CloseOptions::new(Duration::from_secs(10)).idle_timeout(Duration::from_secs(2));
/// let listener = GracefulTlsListener::new(tcp, TlsAcceptor::from(config), opts)
///     .handshake_timeout(Duration::from_secs(10));
/// axum::serve(listener, app).await?;
/// # Ok(())
/// # }
/// ```
///
/// Without axum, call [`accept`](Self::accept) in a loop and serve each stream with
/// hyper (`TokioIo::new(tls)`).
///
/// # Handshakes
///
/// The accept loop only accepts TCP: each handshake runs in its own task, bounded by
/// [`handshake_timeout`](Self::handshake_timeout) ([`DEFAULT_HANDSHAKE_TIMEOUT`] unless set), and finished ones
/// are handed back to the loop, so a slow or stalled client holds nothing but its own
/// task. At most [`max_handshakes`](Self::max_handshakes) (1024 by default) run at
/// once; past that, new clients wait in the kernel's backlog until one finishes.
///
/// A handshake that fails or times out drops its [`GracefulIo`]: its close runs in the
/// background like any other (the client's bytes are drained, bounded by the
/// [`CloseOptions`](crate::CloseOptions)) and is reported to the settings'
/// [`on_close`](CloseSettings::on_close) callback. Dropping the
/// listener cancels the handshakes still running, whose connections close the same way.
///
/// # The recipe, by hand
///
/// Accept TCP, wrap the stream in a [`GracefulIo`], hand that to
/// `TlsAcceptor::accept`, serve the TLS stream:
///
/// ```no_run
/// # async fn dox(
/// #     tcp: tokio::net::TcpListener,
/// #     acceptor: tokio_rustls::TlsAcceptor,
/// #     opts: tokio_graceful_close::CloseOptions,
/// # ) -> std::io::Result<()> {
/// use tokio_graceful_close::GracefulIo;
///
/// let (stream, _) = tcp.accept().await?;
/// let tls = acceptor.accept(GracefulIo::new(stream, opts)).await?;
/// // hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
/// //     .serve_connection(TokioIo::new(tls), svc)
/// # drop(tls);
/// # Ok(())
/// # }
/// ```
///
/// What happens on the wire when hyper ends the connection:
///
/// 1. hyper calls `poll_shutdown` on the TLS stream; tokio-rustls (0.26) queues the
///    `close_notify` alert, flushes it into the [`GracefulIo`], then calls the
///    `GracefulIo`'s `poll_shutdown`;
/// 2. which sends our FIN after the alert (`shutdown(SHUT_WR)`) and returns;
/// 3. hyper drops the stream; the [`GracefulIo`] drains what the client still sends
///    (raw TLS records, never decrypted) until its EOF, waits until the client
///    acknowledged our data and FIN, bounded by the [`CloseOptions`](crate::CloseOptions), then closes. The client's own `close_notify` is not waited for:
///    most clients never send it, and waiting for it would let any client hold the
///    connection.
///
/// On hyper's error paths (a dropped connection future, a failed request) there is no
/// `poll_shutdown`: rustls cannot write from a drop, so no `close_notify` goes out, but
/// steps 2 and 3 still run from the `GracefulIo`'s drop, and every byte written before
/// is delivered. The same holds if a TLS layer does not forward `poll_shutdown` to the
/// stream it wraps.
///
/// The other order, `GracefulIo<TlsStream<TcpStream>>`, does not compile: a
/// [`GracefulIo`] wraps a socket it can half-close and drain
/// ([`AsyncGracefulClose`](crate::AsyncGracefulClose)).
///
/// # Clients
///
/// With hyper-rustls, the [`GracefulCloseLayer`](crate::tower::GracefulCloseLayer) (feature
/// `tower`) goes around the TCP connector, inside the `HttpsConnector`, for the same
/// order: `HttpsConnectorBuilder::new().with_tls_config(config).https_or_http()
/// .enable_http1().wrap_connector(GracefulCloseLayer::new(opts).layer(http))`, where
/// `http` is an `HttpConnector` with `enforce_http(false)` (it is handed the `https`
/// URIs). tonic's `Endpoint::connect_with_connector` takes the same layered connector
/// and runs its TLS over it. reqwest's `connector_layer` cannot take the layer: its
/// layers see reqwest's own connection type, not a stream the crate can wrap.
///
/// # `ConnectInfo`
///
/// The address is the client's `SocketAddr`. For axum's `ConnectInfo`, use
/// `ListenerExt::tap_io` (axum implements `Connected` for any `TapIo`):
/// `axum::serve(listener.tap_io(|_| {}), app.into_make_service_with_connect_info::<SocketAddr>())`.
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub struct GracefulTlsListener {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    settings: CloseSettings,
    handshake_timeout: Duration,
    max_handshakes: usize,
    handshakes: JoinSet<Handshaken>,
    /// Set after an accept error that is not the client's (`EMFILE`): the loop waits
    /// before accepting again, as axum's own listener does.
    backoff: Option<Pin<Box<Sleep>>>,
}

// ===== impl GracefulTlsListener =====

impl GracefulTlsListener {
    /// The default [`max_handshakes`](Self::max_handshakes): 1024.
    pub const DEFAULT_MAX_HANDSHAKES: usize = 1024;
    /// How long the loop waits after an accept error that is not the client's.
    const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_secs(1);

    /// Serves TLS with `acceptor` on `listener`; every connection closes gracefully
    /// with the [`CloseSettings`] (a [`CloseOptions`](crate::CloseOptions) will do).
    pub fn new(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        settings: impl Into<CloseSettings>,
    ) -> Self {
        GracefulTlsListener {
            listener,
            acceptor,
            settings: settings.into(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: Self::DEFAULT_MAX_HANDSHAKES,
            handshakes: JoinSet::new(),
            backoff: None,
        }
    }

    /// Sets how long a handshake may take; a client that has not finished by then is
    /// dropped (and its connection closed gracefully in the background).
    /// `Duration::MAX` means no bound.
    #[must_use = "builder methods return the changed listener"]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets how many handshakes may run at once (at least 1); while that many run, no
    /// TCP connection is accepted.
    #[must_use = "builder methods return the changed listener"]
    pub fn max_handshakes(mut self, max: usize) -> Self {
        self.max_handshakes = max.max(1);
        self
    }

    /// The settings every connection is wrapped with, failed handshakes included: wait
    /// on their [`tracker`](CloseSettings::tracker) after `axum::serve` returned, before
    /// the runtime shuts down.
    pub fn settings(&self) -> &CloseSettings {
        &self.settings
    }

    /// The TLS acceptor the handshakes run with.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Gets a reference to the TCP listener.
    pub fn get_ref(&self) -> &TcpListener {
        &self.listener
    }

    /// The local address of the TCP listener.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// How many handshakes are running (or finished and not yet returned by
    /// [`accept`](Self::accept)).
    pub fn pending_handshakes(&self) -> usize {
        self.handshakes.len()
    }

    /// Returns the next connection whose handshake succeeded, with the client's
    /// address. Accept errors are handled inside (the client's own are skipped; others,
    /// such as running out of descriptors, are logged and retried after a second), so
    /// it never fails, as `axum::serve::Listener::accept`.
    ///
    /// # Cancellation safety
    ///
    /// Cancel-safe: finished handshakes wait in the listener for the next call.
    pub fn accept(
        &mut self,
    ) -> impl Future<Output = (TlsStream<GracefulIo<TcpStream>>, SocketAddr)> + Send + '_ {
        poll_fn(move |cx| self.poll_accept(cx))
    }

    /// Polls for the next connection whose handshake succeeded; see
    /// [`accept`](Self::accept).
    pub fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<(TlsStream<GracefulIo<TcpStream>>, SocketAddr)> {
        loop {
            // Finished handshakes first: a busy accept queue must not starve them.
            while let Poll::Ready(Some(done)) = self.handshakes.poll_join_next(cx) {
                match done {
                    Ok(Some(conn)) => return Poll::Ready(conn),
                    Ok(None) => {} // failed: its connection closes in the background
                    Err(e) => {
                        tracing::error!(target: TARGET, error = %e, "a TLS handshake task failed")
                    }
                }
            }
            if let Some(sleep) = self.backoff.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.backoff = None;
            }
            if self.handshakes.len() >= self.max_handshakes {
                // `poll_join_next` wakes us when one ends.
                return Poll::Pending;
            }
            match self.listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, addr))) => self.start_handshake(stream, addr),
                Poll::Ready(Err(e)) if is_connection_error(&e) => {}
                Poll::Ready(Err(e)) => {
                    tracing::error!(
                        target: TARGET,
                        error = %e,
                        "accept failed; retrying in {:?}",
                        Self::ACCEPT_ERROR_BACKOFF
                    );
                    self.backoff = Some(Box::pin(tokio::time::sleep(Self::ACCEPT_ERROR_BACKOFF)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Wraps an accepted stream. Every connection goes through here, and only here: the
    /// one place where per-connection close bookkeeping (the callback, a close tracker)
    /// is attached.
    fn wrap(&self, stream: TcpStream) -> GracefulIo<TcpStream> {
        self.settings.wrap(stream, Role::Server)
    }

    fn start_handshake(&mut self, stream: TcpStream, addr: SocketAddr) {
        let io = self.wrap(stream);
        let acceptor = self.acceptor.clone();
        let limit = self.handshake_timeout;
        self.handshakes.spawn(async move {
            let tls = handshake(&acceptor, io, limit, Some(addr)).await.ok()?;
            Some((tls, addr))
        });
    }
}

/// Errors of one client's connection, not of the listener: accept the next one at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(all(feature = "rustls", feature = "axum"))))]
impl ::axum::serve::Listener for GracefulTlsListener {
    type Io = TlsStream<GracefulIo<TcpStream>>;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        GracefulTlsListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl fmt::Debug for GracefulTlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulTlsListener")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .field("pending_handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}
