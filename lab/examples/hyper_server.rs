//! A hyper 1.x HTTP/1 server whose connections close gracefully, counting the outcomes.
//!
//! `POST /upload` answers 413 at once to bodies over 1 KiB, without reading them; the
//! graceful close then delivers the answer whole instead of resetting the connection.
//!
//! ```text
//! cargo run --example hyper_server            # serves 127.0.0.1:3001
//! head -c 10000000 /dev/zero | curl -sS --data-binary @- -o /dev/null \
//!     -w '%{http_code} %{size_download}\n' http://127.0.0.1:3001/upload
//! cargo run --example hyper_server -- --self-test   # its own client
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::{CloseOptions, GracefulIo};

const LIMIT: u64 = 1024;

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let res = match len {
        Some(n) if n <= LIMIT => match req.into_body().collect().await {
            Ok(body) => Response::new(Full::new(Bytes::from(format!(
                "stored {} bytes\n",
                body.to_bytes().len()
            )))),
            Err(_) => bad(StatusCode::BAD_REQUEST, "bad body\n"),
        },
        // Too large or unknown: answer without reading the body.
        _ => bad(StatusCode::PAYLOAD_TOO_LARGE, "upload limit is 1 KiB\n"),
    };
    Ok(res)
}

fn bad(status: StatusCode, msg: &'static str) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from_static(msg.as_bytes())));
    *res.status_mut() = status;
    res
}

/// Outcomes of the closes, counted by the callback.
#[derive(Default)]
struct Stats {
    confirmed: AtomicU64,
    failed: AtomicU64,
}

async fn serve(listener: TcpListener, stats: Arc<Stats>) -> std::io::Result<()> {
    let opts = CloseOptions::new(Duration::from_secs(10)).idle_timeout(Duration::from_secs(2));
    loop {
        let (stream, peer) = listener.accept().await?;
        let stats = stats.clone();
        let io = GracefulIo::new(stream, opts).on_close(move |res| match res {
            Ok(report) => {
                stats.confirmed.fetch_add(1, Ordering::Relaxed);
                println!(
                    "{peer}: delivered in {:?}, {} bytes of upload discarded",
                    report.elapsed(),
                    report.drained_bytes()
                );
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                println!("{peer}: {e}");
            }
        });
        tokio::spawn(async move {
            // A clean end calls `poll_shutdown` (the graceful close); any other end
            // drops the `GracefulIo`, which closes in the background.
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(io), service_fn(handle))
                .await
            {
                eprintln!("{peer}: connection error: {e}");
            }
        });
    }
}

/// Uploads 10 MB with a raw client and checks the answer is the whole 413.
async fn self_test(addr: SocketAddr) -> std::io::Result<()> {
    let body = vec![b'u'; 10_000_000];
    let mut c = TcpStream::connect(addr).await?;
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await?;
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        // The server answers early and discards the rest while it closes.
        let _ = w.write_all(&body).await;
        w
    });
    let mut answer = Vec::new();
    r.read_to_end(&mut answer).await?;
    drop(writer.await?.reunite(r));
    let text = String::from_utf8_lossy(&answer);
    println!(
        "client got {} bytes: {:?}",
        answer.len(),
        text.lines().next()
    );
    assert!(text.starts_with("HTTP/1.1 413") && text.ends_with("upload limit is 1 KiB\n"));
    Ok(())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let test = std::env::args().any(|a| a == "--self-test");
    let listener = TcpListener::bind(if test {
        "127.0.0.1:0"
    } else {
        "127.0.0.1:3001"
    })
    .await?;
    let addr = listener.local_addr()?;
    let stats = Arc::new(Stats::default());
    println!("listening on http://{addr}");
    let server = tokio::spawn(serve(listener, stats.clone()));
    if !test {
        return server.await?;
    }
    tokio::time::timeout(Duration::from_secs(30), self_test(addr)).await??;
    // The close completes once the client closed its side too.
    tokio::time::timeout(Duration::from_secs(10), async {
        while stats.confirmed.load(Ordering::Relaxed) + stats.failed.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await?;
    println!(
        "closes: {} confirmed, {} failed",
        stats.confirmed.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed)
    );
    server.abort();
    Ok(())
}
