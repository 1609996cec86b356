//! Certificates made at run time, TLS configs, a server whose closes are reported,
//! and a stream wrapper that records what the client's socket saw.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_graceful_close::rustls::GracefulTlsListener;
use tokio_graceful_close::{CloseError, CloseOptions, CloseReport, CloseSettings};
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Bounds every wait of the tests.
pub const T: Duration = Duration::from_secs(30);

/// The report, or the error's text.
pub type Outcome = Result<CloseReport, String>;

pub fn outcome_of(res: &Result<CloseReport, CloseError>) -> Outcome {
    match res {
        Ok(report) => Ok(report.clone()),
        Err(e) => Err(e.to_string()),
    }
}

struct Cert {
    pem: String,
    der: CertificateDer<'static>,
    key: Vec<u8>,
}

/// One self-signed certificate per test process, for `localhost` and `127.0.0.1`.
fn cert() -> &'static Cert {
    static CERT: OnceLock<Cert> = OnceLock::new();
    CERT.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("rcgen");
        Cert {
            pem: ck.cert.pem(),
            der: ck.cert.der().clone(),
            key: ck.signing_key.serialize_der(),
        }
    })
}

/// The certificate in PEM, for curl's `--cacert`.
pub fn cert_pem() -> &'static str {
    &cert().pem
}

/// The crypto provider of every config here, named: the build of the tests has two
/// (poem's TLS brings aws-lc-rs), and rustls's `builder()` then refuses to choose.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server config offering h2 and HTTP/1.1 (ALPN).
pub fn server_config() -> Arc<ServerConfig> {
    let c = cert();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone()));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring's protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![c.der.clone()], key)
        .expect("server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

pub fn acceptor() -> TlsAcceptor {
    TlsAcceptor::from(server_config())
}

fn roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(cert().der.clone()).unwrap();
    roots
}

/// A client config trusting the test certificate, offering `alpn`.
pub fn client_config(alpn: &[&[u8]]) -> ClientConfig {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring's protocol versions")
        .with_root_certificates(roots())
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A client config limited to TLS 1.2, where alerts travel as records of their own
/// type (21) and can be told apart on the wire.
pub fn client_config_tls12() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("ring's TLS 1.2")
        .with_root_certificates(roots())
        .with_no_client_auth()
}

pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

pub fn connector(config: ClientConfig) -> TlsConnector {
    TlsConnector::from(Arc::new(config))
}

/// The close options of the TLS servers: the example's (10 s in all, 2 s of silence).
pub fn close_options() -> CloseOptions {
    crate::example::close_options()
}

/// A `GracefulTlsListener` on loopback whose closes are sent to the receiver.
pub async fn tls_listener(
    opts: CloseOptions,
) -> (
    GracefulTlsListener,
    SocketAddr,
    mpsc::UnboundedReceiver<Outcome>,
) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let listener = GracefulTlsListener::new(
        tcp,
        acceptor(),
        CloseSettings::new(opts).on_close(move |res| {
            let _ = tx.send(outcome_of(res));
        }),
    );
    (listener, addr, rx)
}

/// Waits for the next reported close.
pub async fn next_close(rx: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("no close reported")
        .expect("the listener is gone")
}

/// What a [`Recorder`] saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every byte read from the socket, in order.
    pub inbound: Vec<u8>,
    /// Bytes written to the socket in all.
    pub written: u64,
    /// `written` when the socket first read EOF (the peer's FIN).
    pub written_at_eof: Option<u64>,
    /// Errors the socket returned (resets, broken pipes).
    pub errors: Vec<io::ErrorKind>,
}

/// A client stream that records what the socket under the TLS layer saw.
pub struct Recorder<S> {
    pub inner: S,
    pub seen: Arc<Mutex<Seen>>,
}

impl<S> Recorder<S> {
    pub fn new(inner: S) -> (Self, Arc<Mutex<Seen>>) {
        let seen = Arc::new(Mutex::new(Seen::default()));
        (
            Recorder {
                inner,
                seen: seen.clone(),
            },
            seen,
        )
    }

    fn note<T>(&self, res: &io::Result<T>) {
        if let Err(e) = res {
            self.seen.lock().unwrap().errors.push(e.kind());
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Recorder<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        self.note(&res);
        if res.is_ok() {
            let mut seen = self.seen.lock().unwrap();
            let new = &buf.filled()[before..];
            if new.is_empty() && buf.remaining() > 0 {
                let written = seen.written;
                seen.written_at_eof.get_or_insert(written);
            } else {
                seen.inbound.extend_from_slice(new);
            }
        }
        Poll::Ready(res)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Recorder<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, buf));
        self.note(&res);
        if let Ok(n) = res {
            self.seen.lock().unwrap().written += n as u64;
        }
        Poll::Ready(res)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx));
        self.note(&res);
        Poll::Ready(res)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let res = std::task::ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
        self.note(&res);
        Poll::Ready(res)
    }
}

/// Connects to `addr` over TLS with `config`, the socket recorded.
pub async fn connect_recorded(
    addr: SocketAddr,
    config: ClientConfig,
) -> (
    tokio_rustls::client::TlsStream<Recorder<TcpStream>>,
    Arc<Mutex<Seen>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (rec, seen) = Recorder::new(tcp);
    let tls = connector(config)
        .connect(server_name(), rec)
        .await
        .expect("TLS handshake");
    (tls, seen)
}

/// Splits raw TLS records `(type, length)` off `raw`; `Err` with the leftover if the
/// bytes do not end on a record boundary.
pub fn records(raw: &[u8]) -> Result<Vec<(u8, usize)>, usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while raw.len() - at >= 5 {
        let len = u16::from_be_bytes([raw[at + 3], raw[at + 4]]) as usize;
        if raw.len() - at - 5 < len {
            break;
        }
        out.push((raw[at], len));
        at += 5 + len;
    }
    if at == raw.len() {
        Ok(out)
    } else {
        Err(raw.len() - at)
    }
}

/// curl is there, or the test is skipped outside CI (a failure under `CI=true`).
pub fn have_curl() -> bool {
    use std::io::Write;
    if crate::example::have_curl() {
        return true;
    }
    let msg = "these tests need curl on PATH (apt-get install -y curl)";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    let _ = writeln!(std::io::stderr(), "SKIP: {msg}");
    false
}

/// The control: tokio-rustls over bare sockets, the handshake inline.
pub struct PlainTlsListener {
    pub tcp: TcpListener,
    pub acceptor: TlsAcceptor,
}

impl axum::serve::Listener for PlainTlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}
