//! The servers of a cell: the example's app through the crate or plainly, on loopback
//! (plain HTTP, TLS with HTTP/1.1 or h2) or on side A of a lab link.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::{GracefulListener, GracefulTlsListener};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::clients::{self, Ready, Target};
use crate::example::{self, Outcome};
use crate::lab::{Lab, LabConfig, Side};

/// Where and how a cell's client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/1.1 on loopback.
    Plain,
    /// TLS on loopback, the server offering only HTTP/1.1 (ALPN).
    TlsH1,
    /// TLS on loopback, the server offering h2 and HTTP/1.1 (ALPN).
    TlsH2,
    /// HTTP/1.1 over the lab link: 20 Mbit/s each way, between two namespaces.
    Lab,
}

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Plain,
        Transport::TlsH1,
        Transport::TlsH2,
        Transport::Lab,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Plain => "HTTP/1.1",
            Transport::TlsH1 => "TLS, HTTP/1.1",
            Transport::TlsH2 => "TLS, h2 offered",
            Transport::Lab => "HTTP/1.1, 20 Mbit/s lab link",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Transport::TlsH1 | Transport::TlsH2)
    }

    /// How many bytes the client uploads: 10 MB, or 2 MB over the lab link (0.8 s of
    /// it; far more than the server's receive buffer either way).
    fn upload_len(self) -> usize {
        match self {
            Transport::Lab => 2_000_000,
            _ => example::UPLOAD_LEN,
        }
    }
}

/// The lab of the lab cells, or `None` after `SKIP` (not root, outside CI).
pub fn lab() -> Option<Lab> {
    Lab::require(LabConfig::new().rate_kbit(20_000).queue(256 * 1024))
}

/// What the runs of a cell got.
pub struct Cell {
    pub runs: Vec<(Outcome, String)>,
}

impl Cell {
    pub fn whole(&self) -> usize {
        self.runs
            .iter()
            .filter(|(o, _)| *o == Outcome::Complete)
            .count()
    }

    /// The protocols the client reported, if any (` (h2)`).
    pub fn protocols(&self) -> String {
        let mut seen: Vec<&str> = self
            .runs
            .iter()
            .map(|(_, p)| p.as_str())
            .filter(|p| !p.is_empty())
            .collect();
        seen.dedup();
        if seen.is_empty() {
            String::new()
        } else {
            format!(" ({})", seen.join(", "))
        }
    }

    pub fn first_failure(&self) -> String {
        self.runs
            .iter()
            .find(|(o, _)| *o != Outcome::Complete)
            .map_or_else(String::new, |(o, _)| format!("; first failure: {o:?}"))
    }
}

/// Serves the app on `transport` (through the crate if `graceful`), runs the client
/// `runs` times, one upload after the other, and stops the server.
pub async fn cell(
    ready: &Ready,
    transport: Transport,
    lab: Option<&Lab>,
    graceful: bool,
    runs: usize,
) -> Cell {
    let tcp = match lab {
        Some(lab) => lab.listen(Side::A, 0).expect("listen in the lab"),
        None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let addr = tcp.local_addr().unwrap();
    let server = if transport.tls() {
        let acceptor = TlsAcceptor::from(server_config(transport == Transport::TlsH2));
        if graceful {
            let listener = GracefulTlsListener::new(tcp, acceptor, example::close_options());
            tokio::spawn(async move { axum::serve(listener, example::graceful_app()).await })
        } else {
            let listener = PlainTlsListener { tcp, acceptor };
            tokio::spawn(async move { axum::serve(listener, example::app()).await })
        }
    } else if graceful {
        let listener = GracefulListener::new(tcp, example::close_options());
        tokio::spawn(async move { axum::serve(listener, example::graceful_app()).await })
    } else {
        tokio::spawn(async move { axum::serve(tcp, example::app()).await })
    };
    let scheme = if transport.tls() { "https" } else { "http" };
    let target = Target {
        addr,
        origin: format!("{scheme}://{addr}"),
        ca: transport.tls().then(|| cert().pem_file.clone()),
        tls: transport.tls().then(client_config),
        h2: transport == Transport::TlsH2,
        lab,
        upload_len: transport.upload_len(),
    };
    let runs = clients::run(ready, &target, runs).await;
    server.abort();
    Cell { runs }
}

struct Cert {
    pem_file: PathBuf,
    der: CertificateDer<'static>,
    key: Vec<u8>,
}

/// One self-signed certificate per test process, for `localhost` and `127.0.0.1`, its
/// PEM written where the clients can read it.
fn cert() -> &'static Cert {
    static CERT: OnceLock<Cert> = OnceLock::new();
    CERT.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "10.77.0.1".to_string(),
        ])
        .expect("generate a certificate");
        let pem_file = clients::work_dir().join("ca.pem");
        std::fs::write(&pem_file, ck.cert.pem()).unwrap();
        Cert {
            pem_file,
            der: ck.cert.der().clone(),
            key: ck.signing_key.serialize_der(),
        }
    })
}

fn server_config(h2: bool) -> Arc<ServerConfig> {
    let c = cert();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone()));
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![c.der.clone()], key)
        .expect("server config");
    config.alpn_protocols = if h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Arc::new(config)
}

/// The Rust client's TLS config, trusting the test certificate.
fn client_config() -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert().der.clone()).unwrap();
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// The control over TLS: tokio-rustls on bare sockets.
struct PlainTlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for PlainTlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                continue;
            };
            let handshake = self.acceptor.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}
