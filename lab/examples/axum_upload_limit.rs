//! An axum server that answers 413 to uploads over 1 KiB without reading them, served
//! plainly or through a `GracefulListener`.
//!
//! ```text
//! # serve on 127.0.0.1:3000 (add --graceful for the graceful listener)
//! cargo run --release --example axum_upload_limit --features axum -- [--graceful] [--host 127.0.0.1] [--port 3000]
//! head -c 10000000 /dev/zero > /tmp/10mb
//! curl -sS -o /tmp/answer -w '%{http_code}\n' --data-binary @/tmp/10mb http://127.0.0.1:3000/upload
//!
//! # or run both servers and their own clients (curl if installed, else or with --hyper
//! # a hyper client), 20 uploads each
//! cargo run --release --example axum_upload_limit --features axum -- --demo 20 [--hyper]
//! ```
//!
//! The 413 carries a 256 KiB body: a tiny answer usually reaches the client before the
//! RST of a plain close, which hides the problem; an answer still in flight when the
//! server closes shows it every time. Plainly served, the client sees "connection
//! reset" or a truncated answer; through the graceful listener it gets every byte.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::axum::AnnounceCloseLayer;
use tokio_graceful_close::{CloseOptions, CloseSettings};

/// Largest body accepted.
pub const LIMIT: usize = 1024;
/// Size of the body of the 413 answer.
pub const ERROR_BODY_LEN: usize = 256 * 1024;
/// Size of each upload of the demo and the tests.
pub const UPLOAD_LEN: usize = 10_000_000;

/// The body of the 413 answer: a pattern, so that a truncation or a hole shows.
pub fn error_body() -> Bytes {
    let mut body: Vec<u8> = (0..ERROR_BODY_LEN).map(|i| b'a' + (i % 26) as u8).collect();
    body[ERROR_BODY_LEN - 1] = b'\n';
    Bytes::from(body)
}

/// The application: `POST /upload` takes at most [`LIMIT`] bytes; `GET /` is a page
/// for browsers to upload from (same origin).
pub fn app() -> Router {
    router(false)
}

/// The application as the graceful server serves it: the upload route's early answers
/// announce the close (`Connection: close`, as nginx's do), and the upload is read on
/// while this 256 KiB answer goes out, so that a client that sends everything first is
/// never stuck. Only that route is layered: the others do not pay for it.
pub fn graceful_app() -> Router {
    router(true)
}

fn router(announce: bool) -> Router {
    let error = error_body();
    let upload = post(move |headers: HeaderMap, body: axum::body::Body| {
        let error = error.clone();
        async move { upload(headers, body, error).await }
    });
    let upload = if announce {
        upload.layer(AnnounceCloseLayer::new())
    } else {
        upload
    };
    Router::new()
        .route(
            "/",
            get(|| async { Html("<!doctype html><title>upload</title><p>POST /upload\n") }),
        )
        .route("/upload", upload)
}

async fn upload(headers: HeaderMap, body: axum::body::Body, error: Bytes) -> Response {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match len {
        // Too large or unknown: answer at once, without reading the body. The server
        // will close the connection with the body unread.
        Some(n) if n <= LIMIT => match body.collect().await {
            Ok(b) => format!("stored {} bytes\n", b.to_bytes().len()).into_response(),
            Err(_) => StatusCode::BAD_REQUEST.into_response(),
        },
        _ => (StatusCode::PAYLOAD_TOO_LARGE, error).into_response(),
    }
}

/// The close options of the graceful listener: nginx's lingering bounds, 30 s in all
/// (`lingering_time`), 5 s of silence at most (`lingering_timeout`, the adapters'
/// default). Twenty clients that send a whole 2 MB upload before reading, sharing a
/// 20 Mbit/s link, take 13 s each: a 10 s deadline reset 38 of 40 of them.
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

/// Uploads [`UPLOAD_LEN`] bytes with a hyper HTTP/1 client.
pub async fn upload_hyper(addr: SocketAddr) -> Outcome {
    let run = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::post(format!("http://{addr}/upload"))
            .header(header::HOST, addr.to_string())
            .body(Full::new(Bytes::from(vec![b'u'; UPLOAD_LEN])))
            .map_err(io::Error::other)?;
        let res = send.send_request(req).await.map_err(io::Error::other)?;
        drop(send);
        let status = res.status();
        let body = res.into_body().collect().await.map_err(io::Error::other)?;
        conn.abort();
        Ok::<_, io::Error>(judge(status.as_u16(), &body.to_bytes()))
    };
    match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Outcome::Failed(e.to_string()),
        Err(_) => Outcome::Failed("timed out".into()),
    }
}

/// Uploads the file `body` (of [`UPLOAD_LEN`] bytes) with `curl`.
pub async fn upload_curl(addr: SocketAddr, body: &Path, out: &Path) -> Outcome {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.arg("-sS")
        .arg("--max-time")
        .arg("30")
        .arg("-o")
        .arg(out)
        .arg("-w")
        .arg("%{http_code}")
        .arg("-H")
        .arg("Expect:")
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("http://{addr}/upload"))
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

/// Whether `status` and `body` are the 413 and its whole body.
pub fn judge(status: u16, body: &[u8]) -> Outcome {
    if status != 413 {
        return Outcome::Wrong(format!("status {status}"));
    }
    if body != &error_body()[..] {
        return Outcome::Wrong(format!("{} of {ERROR_BODY_LEN} body bytes", body.len()));
    }
    Outcome::Complete
}

/// Whether `curl` can be run here.
pub fn have_curl() -> bool {
    std::process::Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Serves [`app`] on `listener`, plainly or gracefully, until `shutdown` resolves.
///
/// The graceful server waits for the closes still running (the tracker idiom) before
/// it returns, so that returning from `main` right after cannot reset a connection
/// whose answer is still being delivered.
pub async fn serve_until(
    listener: TcpListener,
    graceful: bool,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if graceful {
        // Every close that could not confirm delivery says why, on stderr. The server
        // waits for the closes still running before it returns.
        let settings = CloseSettings::new(close_options()).on_close(|res| {
            if let Err(e) = res {
                eprintln!("close: {e}");
            }
        });
        tokio_graceful_close::axum::serve(listener, app())
            .settings(settings)
            .with_graceful_shutdown(shutdown)
            .await
    } else {
        axum::serve(listener, app())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Serves [`app`] on `listener`, plainly or gracefully, until the task is dropped.
pub async fn serve(listener: TcpListener, graceful: bool) -> io::Result<()> {
    serve_until(listener, graceful, std::future::pending()).await
}

async fn demo(runs: usize, force_hyper: bool) -> io::Result<()> {
    let dir = std::env::temp_dir().join(format!("axum_upload_limit.{}", std::process::id()));
    tokio::fs::create_dir_all(&dir).await?;
    let file = dir.join("upload");
    tokio::fs::write(&file, vec![b'u'; UPLOAD_LEN]).await?;
    let curl = !force_hyper && have_curl();
    println!(
        "{runs} uploads of {UPLOAD_LEN} bytes each, client {}, 413 body {ERROR_BODY_LEN} bytes\n",
        if curl { "curl" } else { "hyper" }
    );
    println!("| server | whole 413 | other |");
    println!("|---|---|---|");
    for graceful in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(serve(listener, graceful));
        let (mut ok, mut first_failure) = (0, None);
        for i in 0..runs {
            let out = dir.join(format!("answer{i}"));
            let outcome = if curl {
                upload_curl(addr, &file, &out).await
            } else {
                upload_hyper(addr).await
            };
            match outcome {
                Outcome::Complete => ok += 1,
                other => {
                    first_failure.get_or_insert(other);
                }
            }
        }
        server.abort();
        let name = if graceful {
            "GracefulListener"
        } else {
            "plain axum"
        };
        let other = first_failure.map_or_else(|| "-".to_string(), |o| format!("{o:?}"));
        println!("| {name} | {ok} / {runs} | {other} |");
    }
    let _ = tokio::fs::remove_dir_all(&dir).await;
    Ok(())
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut graceful, mut port, mut demo_runs, mut hyper) = (false, 3000u16, None, false);
    let mut host = std::net::IpAddr::from([127, 0, 0, 1]);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--graceful" => graceful = true,
            "--hyper" => hyper = true,
            "--port" => port = args.next().and_then(|p| p.parse().ok()).unwrap_or(port),
            "--host" => host = args.next().and_then(|h| h.parse().ok()).unwrap_or(host),
            "--demo" => demo_runs = Some(args.next().and_then(|n| n.parse().ok()).unwrap_or(20)),
            _ => {
                eprintln!(
                    "usage: axum_upload_limit [--graceful] [--host IP] [--port N] [--demo RUNS [--hyper]]"
                );
                std::process::exit(2);
            }
        }
    }
    if let Some(runs) = demo_runs {
        return demo(runs, hyper).await;
    }
    let listener = TcpListener::bind((host, port)).await?;
    let kind = if graceful { "graceful" } else { "plain" };
    println!(
        "listening on http://{} ({kind}); Ctrl-C stops it",
        listener.local_addr()?
    );
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve_until(listener, graceful, ctrl_c).await
}
