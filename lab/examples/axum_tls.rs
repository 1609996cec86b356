//! The `axum_upload_limit` app (413 to uploads over 1 KiB, without reading them) over
//! HTTPS, with a self-signed certificate made at start: served through a
//! `GracefulTlsListener`, or plainly (tokio-rustls on bare sockets) for comparison.
//!
//! ```text
//! # serve on https://127.0.0.1:3443 (add --plain for the plain server); the CA is
//! # written next to the upload file and its path printed
//! cargo run --release --example axum_tls --features axum,rustls -- [--plain] [--port 3443]
//! curl --cacert /tmp/axum_tls.<pid>/ca.pem -H 'Expect:' --data-binary @/tmp/10mb \
//!     https://127.0.0.1:3443/upload -o /tmp/answer -w '%{http_code}\n'
//!
//! # or run both servers and curl against each, N uploads per server and protocol
//! cargo run --release --example axum_tls --features axum,rustls -- --demo 20
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::rustls::GracefulTlsListener;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

#[allow(dead_code, unreachable_pub)]
#[path = "axum_upload_limit.rs"]
mod upload_limit;

use upload_limit::{app, close_options, error_body, Outcome, UPLOAD_LEN};

/// A self-signed certificate for `localhost` and `127.0.0.1`: the server config (ALPN
/// h2 and HTTP/1.1) and the certificate in PEM, for clients to trust.
fn tls_config() -> (Arc<ServerConfig>, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("generate a certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    // The provider named (ring): a build with two of them (the crate's dev-dependencies
    // bring aws-lc-rs too) has no default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring's protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("a server config");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (Arc::new(config), ck.cert.pem())
}

/// The plain server: tokio-rustls on bare sockets, the handshake in the accept loop.
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
            if let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), self.acceptor.accept(stream)).await
            {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serves the app over HTTPS on `tcp`, gracefully or plainly.
async fn serve(tcp: TcpListener, config: Arc<ServerConfig>, graceful: bool) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    if graceful {
        let listener = GracefulTlsListener::new(tcp, acceptor, close_options());
        axum::serve(listener, app()).await
    } else {
        axum::serve(PlainTlsListener { tcp, acceptor }, app()).await
    }
}

/// Uploads `body` ([`UPLOAD_LEN`] bytes) with curl over HTTPS, trusting `cacert`.
async fn upload_curl(
    addr: SocketAddr,
    h2: bool,
    body: &Path,
    cacert: &Path,
    out: &Path,
) -> Outcome {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "30",
        "-w",
        "%{http_code}",
        "-H",
        "Expect:",
    ])
    .arg(if h2 { "--http2" } else { "--http1.1" })
    .arg("--cacert")
    .arg(cacert)
    .arg("-o")
    .arg(out)
    .arg("--data-binary")
    .arg(format!("@{}", body.display()))
    .arg(format!("https://{addr}/upload"))
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(40), cmd.output()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Outcome::Failed(format!("cannot run curl: {e}")),
        Err(_) => return Outcome::Failed("timed out".into()),
    };
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Outcome::Failed(format!("{}: {err}", output.status));
    }
    let code = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let got = tokio::fs::read(out).await.unwrap_or_default();
    if code != "413" {
        Outcome::Wrong(format!("status {code}"))
    } else if got != error_body() {
        Outcome::Wrong(format!(
            "{} of {} body bytes",
            got.len(),
            error_body().len()
        ))
    } else {
        Outcome::Complete
    }
}

/// The upload file and the CA file.
async fn files(cert_pem: &str) -> io::Result<(PathBuf, PathBuf, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("axum_tls.{}", std::process::id()));
    tokio::fs::create_dir_all(&dir).await?;
    let upload = dir.join("upload");
    tokio::fs::write(&upload, vec![b'u'; UPLOAD_LEN]).await?;
    let cacert = dir.join("ca.pem");
    tokio::fs::write(&cacert, cert_pem).await?;
    Ok((dir, upload, cacert))
}

async fn demo(runs: usize) -> io::Result<()> {
    if !upload_limit::have_curl() {
        eprintln!("--demo needs curl on PATH");
        std::process::exit(2);
    }
    let (config, cert_pem) = tls_config();
    let (dir, upload, cacert) = files(&cert_pem).await?;
    println!(
        "{runs} curl uploads of {UPLOAD_LEN} bytes each over HTTPS, 413 body {} bytes\n",
        error_body().len()
    );
    println!("| server | protocol | whole 413 | first failure |");
    println!("|---|---|---|---|");
    for graceful in [false, true] {
        for h2 in [false, true] {
            let tcp = TcpListener::bind("127.0.0.1:0").await?;
            let addr = tcp.local_addr()?;
            let server = tokio::spawn(serve(tcp, config.clone(), graceful));
            let (mut ok, mut first_failure) = (0, None);
            for i in 0..runs {
                let out = dir.join(format!("answer{i}"));
                match upload_curl(addr, h2, &upload, &cacert, &out).await {
                    Outcome::Complete => ok += 1,
                    other => {
                        first_failure.get_or_insert(other);
                    }
                }
            }
            server.abort();
            let name = if graceful {
                "GracefulTlsListener"
            } else {
                "tokio-rustls, bare sockets"
            };
            let proto = if h2 { "h2" } else { "HTTP/1.1" };
            let other = first_failure.map_or_else(|| "-".to_string(), |o| format!("{o:?}"));
            println!("| {name} | {proto} | {ok} / {runs} | {other} |");
        }
    }
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok(())
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut graceful, mut port, mut demo_runs) = (true, 3443u16, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--plain" => graceful = false,
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--demo" => demo_runs = Some(args.next().and_then(|n| n.parse().ok()).unwrap_or(20)),
            _ => {
                eprintln!("usage: axum_tls [--plain] [--port N] | --demo RUNS");
                std::process::exit(2);
            }
        }
    }
    if let Some(runs) = demo_runs {
        return demo(runs).await;
    }
    let (config, cert_pem) = tls_config();
    let (_dir, _upload, cacert) = files(&cert_pem).await?;
    let tcp = TcpListener::bind(("127.0.0.1", port)).await?;
    let kind = if graceful { "graceful" } else { "plain" };
    println!(
        "listening on https://{} ({kind}); CA: {}",
        tcp.local_addr()?,
        cacert.display()
    );
    serve(tcp, config, graceful).await
}
