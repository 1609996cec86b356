//! Real clients over TLS, HTTP/1.1 and h2 (ALPN): curl and hyper upload 10 MB to the
//! 1 KiB limit of the `axum_upload_limit` app, which answers a 256 KiB 413 without
//! reading. Through `GracefulTlsListener` every run must get the whole 413; served
//! over tokio-rustls on bare sockets (the control) the failures are printed.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::example::{self, Outcome, UPLOAD_LEN};
use crate::support::*;

const RUNS: usize = 30;
const BATCH: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Proto {
    Http1,
    H2,
}

#[derive(Clone, Copy, Debug)]
enum Client {
    Curl,
    Hyper,
}

pub fn judge(status: u16, body: &[u8]) -> Outcome {
    if status != 413 {
        return Outcome::Wrong(format!("status {status}"));
    }
    if body != &example::error_body()[..] {
        return Outcome::Wrong(format!(
            "{} of {} body bytes",
            body.len(),
            example::ERROR_BODY_LEN
        ));
    }
    Outcome::Complete
}

/// Uploads [`UPLOAD_LEN`] bytes with hyper's client over TLS, HTTP/1.1 or h2 by ALPN.
pub async fn upload_hyper_tls(addr: SocketAddr, proto: Proto) -> Outcome {
    let run = async {
        let alpn: &[u8] = if proto == Proto::H2 {
            b"h2"
        } else {
            b"http/1.1"
        };
        let tcp = TcpStream::connect(addr).await?;
        let tls = connector(client_config(&[alpn]))
            .connect(server_name(), tcp)
            .await?;
        let io = TokioIo::new(tls);
        let req = hyper::Request::post("https://localhost/upload")
            .body(Full::new(Bytes::from(vec![b'u'; UPLOAD_LEN])))
            .map_err(io::Error::other)?;
        let res = match proto {
            Proto::Http1 => {
                let (mut send, conn) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(io::Error::other)?;
                let conn = tokio::spawn(conn);
                let res = send.send_request(req).await.map_err(io::Error::other)?;
                (res, conn)
            }
            Proto::H2 => {
                let (mut send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(io::Error::other)?;
                let conn = tokio::spawn(conn);
                let res = send.send_request(req).await.map_err(io::Error::other)?;
                (res, conn)
            }
        };
        let (res, mut conn) = res;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.map_err(io::Error::other)?;
        // Let the connection end by itself (HTTP/1.1: the server's close_notify and FIN;
        // h2: ours, now that the request handle is gone) before its socket is dropped:
        // a socket dropped with the server's close_notify unread would answer it with
        // RST, which the server's close then reports. The outcome is judged already.
        if tokio::time::timeout(Duration::from_secs(5), &mut conn)
            .await
            .is_err()
        {
            conn.abort();
        }
        Ok::<_, io::Error>(judge(status, &body.to_bytes()))
    };
    match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome::Failed(format!("{e} ({:?})", std::error::Error::source(&e))),
        Err(_) => Outcome::Failed("timed out".into()),
    }
}

/// Uploads the file `body` with `curl` over TLS, trusting `cacert`.
pub async fn upload_curl_tls(
    addr: SocketAddr,
    proto: Proto,
    body: &Path,
    cacert: &Path,
    out: &Path,
) -> Outcome {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.arg("-sS")
        .args(["--max-time", "30", "-w", "%{http_code}", "-H", "Expect:"])
        .arg(if proto == Proto::H2 {
            "--http2"
        } else {
            "--http1.1"
        })
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
    let code = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let got = tokio::fs::read(out).await.unwrap_or_default();
    judge(code, &got)
}

/// The upload file and curl's CA file, removed on drop.
pub struct Files {
    dir: PathBuf,
    pub upload: PathBuf,
    pub cacert: PathBuf,
}

impl Files {
    pub async fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tgc-tls-{tag}-{}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let upload = dir.join("upload");
        tokio::fs::write(&upload, vec![b'u'; UPLOAD_LEN])
            .await
            .unwrap();
        let cacert = dir.join("ca.pem");
        tokio::fs::write(&cacert, cert_pem()).await.unwrap();
        Files {
            dir,
            upload,
            cacert,
        }
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run_clients(client: Client, proto: Proto, addr: SocketAddr, tag: &str) -> Vec<Outcome> {
    let files = Arc::new(Files::new(tag).await);
    let mut outcomes = Vec::with_capacity(RUNS);
    for batch in 0..RUNS / BATCH {
        let mut set = JoinSet::new();
        for i in 0..BATCH {
            let files = files.clone();
            set.spawn(async move {
                match client {
                    Client::Curl => {
                        let out = files.out(&format!("answer-{batch}-{i}"));
                        upload_curl_tls(addr, proto, &files.upload, &files.cacert, &out).await
                    }
                    Client::Hyper => upload_hyper_tls(addr, proto).await,
                }
            });
        }
        let got = tokio::time::timeout(Duration::from_secs(90), set.join_all())
            .await
            .expect("a batch of uploads hung");
        outcomes.extend(got);
    }
    outcomes
}

fn tally(outcomes: &[Outcome]) -> (usize, Option<&Outcome>) {
    let complete = outcomes.iter().filter(|o| **o == Outcome::Complete).count();
    (complete, outcomes.iter().find(|o| **o != Outcome::Complete))
}

async fn graceful(client: Client, proto: Proto, tag: &str) {
    let (listener, addr, mut closes) = tls_listener(close_options()).await;
    let server = tokio::spawn(async move { axum::serve(listener, example::app()).await });
    let outcomes = run_clients(client, proto, addr, tag).await;
    let (complete, first_bad) = tally(&outcomes);
    // Every connection reports its close once.
    let mut reports = Vec::new();
    for _ in 0..RUNS {
        reports.push(next_close(&mut closes).await);
    }
    let confirmed = reports.iter().filter(|r| r.is_ok()).count();
    let drained: u64 = reports
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| r.drained_bytes())
        .sum();
    println!(
        "{client:?} {proto:?} over TLS through GracefulTlsListener: {complete} / {RUNS} got the \
         whole 413; closes confirmed {confirmed} / {RUNS}, {drained} bytes drained in all; \
         first unconfirmed: {:?}",
        reports.iter().find(|r| r.is_err())
    );
    assert_eq!(
        complete, RUNS,
        "every run must get the whole 413; first failure: {first_bad:?}"
    );
    // Whether the server's close is confirmed depends on the client's own close. Our
    // hyper client over HTTP/1.1 reads until the server's close_notify and FIN before
    // dropping its socket: every close must confirm delivery. curl closes as soon as it
    // has the whole answer, before reading the close_notify, and over h2 the client
    // closes first: their kernels answer what they left unread with RST, and the
    // server's close reports it (the answer itself was complete, as asserted above).
    if proto == Proto::Http1 && matches!(client, Client::Hyper) {
        assert_eq!(confirmed, RUNS, "{:?}", reports.iter().find(|r| r.is_err()));
    }
    server.abort();
}

async fn control(client: Client, proto: Proto, tag: &str) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = PlainTlsListener {
        tcp,
        acceptor: acceptor(),
    };
    let server = tokio::spawn(async move { axum::serve(listener, example::app()).await });
    let outcomes = run_clients(client, proto, addr, tag).await;
    let (complete, first_bad) = tally(&outcomes);
    println!(
        "CONTROL {client:?} {proto:?} over TLS, bare sockets: {} / {RUNS} runs failed (first: {first_bad:?})",
        RUNS - complete
    );
    for o in &outcomes {
        if let Outcome::Wrong(what) = o {
            assert!(what.contains("body bytes"), "not a 413: {what}");
        }
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http1_over_tls_gets_the_whole_413() {
    if have_curl() {
        graceful(Client::Curl, Proto::Http1, "curl-h1").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_h2_over_tls_gets_the_whole_413() {
    if have_curl() {
        graceful(Client::Curl, Proto::H2, "curl-h2").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_http1_over_tls_gets_the_whole_413() {
    graceful(Client::Hyper, Proto::Http1, "hyper-h1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_h2_over_tls_gets_the_whole_413() {
    graceful(Client::Hyper, Proto::H2, "hyper-h2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_curl_http1_over_tls_bare_sockets() {
    if have_curl() {
        control(Client::Curl, Proto::Http1, "ctl-curl-h1").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_curl_h2_over_tls_bare_sockets() {
    if have_curl() {
        control(Client::Curl, Proto::H2, "ctl-curl-h2").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_hyper_http1_over_tls_bare_sockets() {
    control(Client::Hyper, Proto::Http1, "ctl-hyper-h1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_hyper_h2_over_tls_bare_sockets() {
    control(Client::Hyper, Proto::H2, "ctl-hyper-h2").await;
}
