//! [`GracefulListener`]: a salvo `Listener` and `Acceptor` of [`GracefulIo`]s.
//!
//! salvo's own acceptors wrap their sockets in types that do not give them back, so the
//! listener accepts from a Tokio `TcpListener` itself, and keeps what salvo's
//! `TcpAcceptor` promises: the server's fuse policy decides on every connection (a
//! rejected one is dropped, as salvo does), its idle and write-stall timeouts apply
//! (the stream is a `StraightStream` around the [`GracefulIo`]), and a connection
//! accepted while its `accept` future is cancelled is kept for the next call.

use std::fmt;
use std::future::Future;
use std::io;

// `TcpCoupler`: salvo's coupler of any stream to its HTTP builder, which its own TLS
// acceptors use around other acceptors' streams (hidden from its docs; a coupler of
// our own cannot be written, the handler type it takes is not nameable).
use ::salvo_core::conn::tcp::TcpCoupler;
use ::salvo_core::conn::{Accepted, Acceptor, ConnCtrl, Holding, Listener, StraightStream};
use ::salvo_core::fuse::{ArcFusePolicy, FuseAction, FuseInfo, TransProto};
use ::salvo_core::http::uri::Scheme;
use ::salvo_core::http::Version;
use tokio::net::{TcpListener, TcpStream};

use crate::io::settings::CloseSettings;
use crate::io::GracefulIo;
use crate::options::Role;

/// The stream salvo serves: its timeouts around the graceful close.
type Stream = StraightStream<GracefulIo<TcpStream>>;

/// A salvo [`Listener`](::salvo_core::conn::Listener) and
/// [`Acceptor`](::salvo_core::conn::Acceptor) whose connections close gracefully: it
/// accepts from a Tokio `TcpListener` and serves each stream through a [`GracefulIo`].
///
/// `Server::new` takes it where it took salvo's bound `TcpListener`:
///
/// ```no_run
/// use std::time::Duration;
/// use salvo_core::prelude::*;
/// use tokio_graceful_close::salvo::GracefulListener;
/// use tokio_graceful_close::CloseOptions;
///
/// #[handler]
/// async fn hello() -> &'static str {
///     "hello"
/// }
///
/// # async fn dox() -> std::io::Result<()> {
/// let router = Router::new().get(hello);
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let opts = CloseOptions::new(Duration::from_secs(30)); // nginx's lingering_time
/// let acceptor = GracefulListener::new(tcp, opts)?;
/// let closes = acceptor.settings().tracker().clone();
/// Server::new(acceptor).serve(router).await; // until `ServerHandle::stop_graceful`
/// closes.close();
/// closes.wait().await; // every response delivered or its close timed out
/// # Ok(())
/// # }
/// ```
///
/// # Graceful shutdown
///
/// salvo waits for the connection futures only; closes that go on in the background
/// (after hyper's `poll_shutdown`, or after a drop) are counted by the
/// [`tracker`](CloseSettings::tracker) of its settings: wait for them, as above, before
/// the runtime shuts down.
///
/// # TLS
///
/// The [`GracefulIo`] goes under TLS: give the listener to salvo's TLS listener
/// (`RustlsListener::new(config, GracefulListener::new(tcp, opts)?)`, with
/// salvo's `rustls` feature), so that the close sends `close_notify`, then our FIN,
/// then drains the raw bytes.
#[cfg_attr(docsrs, doc(cfg(feature = "salvo")))]
pub struct GracefulListener {
    listener: TcpListener,
    holdings: Vec<Holding>,
    /// A socket accepted and not handed out yet: kept across a cancelled `accept`.
    pending: Option<(TcpStream, std::net::SocketAddr)>,
    settings: CloseSettings,
}

impl GracefulListener {
    /// Wraps `listener`: every connection it accepts closes gracefully with the
    /// [`CloseSettings`] (a [`CloseOptions`](crate::CloseOptions) will do; unset options
    /// take the server defaults of [`GracefulIo::new`]). Fails only if the listener's
    /// local address cannot be read.
    pub fn new(listener: TcpListener, settings: impl Into<CloseSettings>) -> io::Result<Self> {
        let holdings = vec![Holding {
            local_addr: listener.local_addr()?.into(),
            http_versions: vec![Version::HTTP_11],
            http_scheme: Scheme::HTTP,
        }];
        Ok(GracefulListener {
            listener,
            holdings,
            pending: None,
            settings: settings.into(),
        })
    }

    /// The settings every connection is wrapped with; wait on their
    /// [`tracker`](CloseSettings::tracker) after the server returned, before the runtime
    /// shuts down.
    pub fn settings(&self) -> &CloseSettings {
        &self.settings
    }

    /// Gets a reference to the Tokio listener.
    pub fn get_ref(&self) -> &TcpListener {
        &self.listener
    }

    /// Accepts a socket, or takes back the one a cancelled call left; asks the fuse
    /// policy; wraps what it admitted.
    async fn accept_graceful(
        &mut self,
        fuse_policy: Option<ArcFusePolicy>,
    ) -> io::Result<Accepted<TcpCoupler<Stream>, Stream>> {
        loop {
            let remote = match &self.pending {
                Some((_, remote)) => *remote,
                None => {
                    let (stream, remote) = self.listener.accept().await?;
                    self.pending = Some((stream, remote));
                    remote
                }
            };
            let local_addr = self.holdings[0].local_addr.clone();
            let conn_ctrl = ConnCtrl::new();
            let (fuse_config, observer) = match &fuse_policy {
                Some(policy) => {
                    let info = FuseInfo {
                        trans_proto: TransProto::Tcp,
                        remote_addr: remote.into(),
                        local_addr: local_addr.clone(),
                    };
                    match policy.decide(&info).await {
                        FuseAction::Accept(config) => {
                            (Some(config), policy.observe(&info, &conn_ctrl))
                        }
                        FuseAction::Reject => {
                            // Nothing was answered: dropped as salvo drops it.
                            self.pending = None;
                            continue;
                        }
                    }
                }
                None => (None, None),
            };
            let Some((stream, remote)) = self.pending.take() else {
                continue;
            };
            let io = self.settings.wrap(stream, Role::Server);
            return Ok(Accepted {
                coupler: TcpCoupler::new(),
                stream: StraightStream::new(io, fuse_config, conn_ctrl.clone(), observer),
                fuse_config,
                conn_ctrl,
                local_addr,
                remote_addr: remote.into(),
                http_scheme: Scheme::HTTP,
            });
        }
    }
}

impl Listener for GracefulListener {
    type Acceptor = Self;

    fn try_bind(self) -> impl Future<Output = salvo_core::Result<Self>> + Send {
        std::future::ready(Ok(self))
    }
}

impl Acceptor for GracefulListener {
    type Coupler = TcpCoupler<Stream>;
    type Stream = Stream;

    fn holdings(&self) -> &[Holding] {
        &self.holdings
    }

    fn accept(
        &mut self,
        fuse_policy: Option<ArcFusePolicy>,
    ) -> impl Future<Output = io::Result<Accepted<Self::Coupler, Self::Stream>>> + Send {
        self.accept_graceful(fuse_policy)
    }
}

impl fmt::Debug for GracefulListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulListener")
            .field("listener", &self.listener)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
