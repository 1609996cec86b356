//! The early-413 workload of `lab/tests/http_clients/`, for the framework adapters: the
//! answer every framework's app gives, how a client's result is judged, and the runs
//! of one client against one framework, through the crate and plainly.
//!
//! Included as `mod example` (the name `lab/tests/http_clients/clients.rs` uses for the
//! axum example it was written for), beside `mod clients`, `mod lab` and `mod servers`:
//!
//! ```ignore
//! #[path = "support/early413.rs"]
//! mod example;
//! #[path = "http_clients/clients.rs"]
//! mod clients;
//! #[path = "support/lab.rs"]
//! mod lab;
//! mod servers {
//!     pub use crate::example::Transport;
//! }
//! ```
//!
//! Every adapter is tested with the same clients, one `#[test]` each:
//! [`client_tests!`] writes them.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_graceful_close::CloseOptions;

use crate::clients::{self, Client, Target};

/// Largest body accepted.
pub const LIMIT: usize = 1024;
/// Size of the body of the 413 answer.
pub const ERROR_BODY_LEN: usize = 256 * 1024;
/// Size of each upload.
pub const UPLOAD_LEN: usize = 10_000_000;
/// Runs per cell through the crate; the control gets as many.
pub const RUNS: usize = 5;

/// The body of the 413 answer: a pattern, so that a truncation or a hole shows.
pub fn error_body() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| {
        let mut body: Vec<u8> = (0..ERROR_BODY_LEN).map(|i| b'a' + (i % 26) as u8).collect();
        body[ERROR_BODY_LEN - 1] = b'\n';
        body
    })
}

/// Whether an upload of `content_length` bytes gets the 413 (unknown lengths do).
pub fn too_large(content_length: Option<&str>) -> bool {
    content_length
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_none_or(|n| n > LIMIT)
}

/// The servers' close options: the example's, nginx's lingering bounds.
pub fn close_options() -> CloseOptions {
    CloseOptions::new(Duration::from_secs(30))
}

/// What a client got back from one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The 413 and every byte of its body.
    Complete,
    /// Another status, or a body that is not the expected one (its length).
    Wrong(String),
    /// The request failed: reset, truncated, timed out.
    Failed(String),
}

/// Whether `status` and `body` are the 413 and its whole body.
pub fn judge(status: u16, body: &[u8]) -> Outcome {
    if status != 413 {
        return Outcome::Wrong(format!("status {status}"));
    }
    if body != error_body() {
        return Outcome::Wrong(format!("{} of {ERROR_BODY_LEN} body bytes", body.len()));
    }
    Outcome::Complete
}

/// Where the client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/1.1 on loopback.
    Plain,
    /// TLS on loopback, HTTP/1.1.
    TlsH1,
    /// TLS on loopback, h2 offered (ALPN) and asked for (curl).
    TlsH2,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Plain => "HTTP/1.1",
            Transport::TlsH1 => "TLS, HTTP/1.1",
            Transport::TlsH2 => "TLS, h2",
        }
    }

    pub fn tls(self) -> bool {
        self != Transport::Plain
    }
}

/// A server started for a cell: its address, and how to stop it.
pub struct Served {
    pub addr: SocketAddr,
    pub stop: Box<dyn FnOnce() + Send>,
}

/// The test certificate, for `localhost` and `127.0.0.1`: PEM certificate, PEM key,
/// DER certificate.
pub fn cert() -> &'static (String, String, CertificateDer<'static>) {
    static CERT: OnceLock<(String, String, CertificateDer<'static>)> = OnceLock::new();
    CERT.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("rcgen");
        (
            ck.cert.pem(),
            ck.signing_key.serialize_pem(),
            ck.cert.der().clone(),
        )
    })
}

/// The certificate's PEM, written where the clients can read it.
fn ca_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let path = clients::work_dir().join(format!("ca-{}.pem", std::process::id()));
        std::fs::write(&path, &cert().0).unwrap();
        path
    })
}

/// The Rust client's TLS config, trusting the test certificate.
fn client_config() -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert().2.clone()).unwrap();
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    Arc::new(config)
}

/// One client at a time: two 10 MB uploaders at once on two cores would only measure
/// each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Runs `client` [`RUNS`] times against `framework` on each of `transports`, through
/// the crate (`start(transport, true)`) and plainly (`start(transport, false)`); prints
/// a row per transport and asserts that every graceful run got the whole 413. The
/// plain counts are printed only.
pub fn matrix<F, Fut>(client: Client, framework: &str, transports: &[Transport], start: F)
where
    F: Fn(Transport, bool) -> Fut,
    Fut: Future<Output = Served>,
{
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(ready) = clients::prepare(client) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for &transport in transports {
        let mut whole = [0; 2];
        let mut first_failure = [None, None];
        let mut protocols = Vec::new();
        for (i, graceful) in [true, false].into_iter().enumerate() {
            let runs = rt.block_on(async {
                let served = start(transport, graceful).await;
                let scheme = if transport.tls() { "https" } else { "http" };
                let target = Target {
                    addr: served.addr,
                    origin: format!("{scheme}://{}", served.addr),
                    ca: transport.tls().then(|| ca_file().clone()),
                    tls: transport.tls().then(client_config),
                    h2: transport == Transport::TlsH2,
                    lab: None,
                    upload_len: UPLOAD_LEN,
                };
                let runs = clients::run(&ready, &target, RUNS).await;
                (served.stop)();
                runs
            });
            whole[i] = runs.iter().filter(|(o, _)| *o == Outcome::Complete).count();
            if graceful {
                // What the client negotiated, where it says (curl, Go, Node http.request).
                protocols = runs.iter().map(|(_, p)| p.clone()).collect();
                protocols.retain(|p| !p.is_empty());
                protocols.dedup();
            }
            first_failure[i] = runs
                .into_iter()
                .map(|(o, _)| o)
                .find(|o| *o != Outcome::Complete);
        }
        let why = |f: &Option<Outcome>| {
            f.as_ref()
                .map_or_else(String::new, |o| format!("; first failure: {o:?}"))
        };
        let protocols = if protocols.is_empty() {
            String::new()
        } else {
            format!(" ({})", protocols.join(", "))
        };
        println!(
            "| {framework} | {} | {} | graceful: {} / {RUNS} whole{protocols}{} | plain {framework}: {} / {RUNS} whole{} |",
            client.name(),
            transport.name(),
            whole[0],
            why(&first_failure[0]),
            whole[1],
            why(&first_failure[1]),
        );
        if whole[0] != RUNS {
            failures.push(format!(
                "{} over {}: {} / {RUNS} whole{}",
                client.name(),
                transport.name(),
                whole[0],
                why(&first_failure[0])
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "lost 413s through the crate: {failures:#?}"
    );
}

/// Waits until a server listens on `addr`: one that binds its port only once it runs.
pub async fn wait_until_listening(addr: SocketAddr) {
    for _ in 0..1000 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nothing listens on {addr} after 10 s");
}

/// The size of the large early answer: far more than the kernel's buffers hold.
pub const LARGE_ANSWER: usize = 8 << 20;
/// The upload a send-all client makes before it reads the large answer.
pub const LARGE_UPLOAD: usize = 16 << 20;

/// The large early answer's body.
pub fn large_body() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| vec![b'x'; LARGE_ANSWER])
}

/// A blocking client that sends its whole `LARGE_UPLOAD` to `POST {path}` before it
/// reads, as Python's `requests` does, each step bounded by `limit`. Returns the
/// answer's status and body length, or what failed.
pub fn send_all_then_read(
    addr: SocketAddr,
    path: &str,
    limit: Duration,
) -> Result<(u16, usize), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(limit)).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {LARGE_UPLOAD}\r\n\r\n");
    s.write_all(head.as_bytes())
        .map_err(|e| format!("head: {e}"))?;
    let chunk = vec![b'u'; 1 << 16];
    for _ in 0..LARGE_UPLOAD / chunk.len() {
        s.write_all(&chunk).map_err(|e| format!("upload: {e}"))?;
    }
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .map_err(|e| format!("answer, after {} bytes: {e}", got.len()))?;
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no head in {} bytes", got.len()))?;
    let status = std::str::from_utf8(&got[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    Ok((status, got.len() - end - 4))
}

/// One `#[test]` per client every adapter is tested with: curl, Python requests, Node
/// `http.request`, Go net/http, and the Rust client that sends its whole upload before
/// it reads. Each runs [`matrix`] with `framework`, `transports` and `start`:
///
/// ```ignore
/// example::client_tests!("poem", TRANSPORTS, start);
/// ```
macro_rules! client_tests {
    ($framework:expr, $transports:expr, $start:expr) => {
        $crate::example::client_tests!(
            $framework, $transports, $start;
            curl: Curl,
            python_requests: Python,
            node_http_request: NodeHttp,
            go_net_http: Go,
            rust_send_all_then_read: SendAll,
        );
    };
    ($framework:expr, $transports:expr, $start:expr; $($test:ident: $client:ident,)*) => {
        $(
            #[test]
            fn $test() {
                $crate::example::matrix(
                    $crate::clients::Client::$client,
                    $framework,
                    $transports,
                    $start,
                );
            }
        )*
    };
}
pub(crate) use client_tests;

/// The large early answer (`POST /large`) to a client that sends its whole upload
/// first: through `graceful` it must arrive whole ([`LARGE_ANSWER`] bytes, within
/// 30 s); through `control` (5 s) what happens is printed, never asserted.
pub fn large_answer_to_a_send_all_client<G, GF, C, CF>(
    framework: &str,
    graceful: G,
    control: &str,
    plain: C,
) where
    G: FnOnce() -> GF,
    GF: Future<Output = Served>,
    C: FnOnce() -> CF,
    CF: Future<Output = Served>,
{
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = |served: Served, limit: u64| {
        let got = send_all_then_read(served.addr, "/large", Duration::from_secs(limit));
        let _runtime = rt.enter(); // some servers stop from a task
        (served.stop)();
        got
    };
    let got = run(rt.block_on(graceful()), 30);
    assert_eq!(got, Ok((413, LARGE_ANSWER)), "through {framework}");
    let got = run(rt.block_on(plain()), 5);
    println!("control, {control}: {got:?}");
}
