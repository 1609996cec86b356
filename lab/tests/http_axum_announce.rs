//! `AnnounceCloseLayer`: an HTTP/1 answer sent before the request's body was read says
//! `Connection: close` (as nginx's and Go's do); other answers are left alone.
#![cfg(feature = "axum")]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::timeout;
use tokio_graceful_close::axum::{AnnounceCloseLayer, GracefulConnectInfo, GracefulListener};
use tokio_graceful_close::{CloseOptions, CloseReport, CloseSettings};

const T: Duration = Duration::from_secs(10);

async fn server() -> SocketAddr {
    let app = Router::new()
        .route("/early", post(|| async { StatusCode::PAYLOAD_TOO_LARGE }))
        .route(
            "/read",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .layer(AnnounceCloseLayer::new());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = GracefulListener::new(tcp, CloseOptions::new(T));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends `head` and `body`, returns the answer's head, lowercased.
async fn answer_head(addr: SocketAddr, head: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        timeout(T, s.read_exact(&mut b)).await.unwrap().unwrap();
        got.push(b[0]);
    }
    String::from_utf8(got).unwrap().to_lowercase()
}

#[tokio::test]
async fn an_early_answer_says_connection_close() {
    let addr = server().await;
    // 1 MB announced, 1 KiB sent: the handler answers without reading.
    let head = "POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n";
    let got = answer_head(addr, head, &[b'u'; 1024]).await;
    assert!(got.starts_with("http/1.1 413"), "{got}");
    assert!(got.contains("connection: close\r\n"), "{got}");
}

#[tokio::test]
async fn an_answer_after_the_whole_body_is_left_alone() {
    let addr = server().await;
    let head = "POST /read HTTP/1.1\r\nhost: x\r\ncontent-length: 1024\r\n\r\n";
    let got = answer_head(addr, head, &[b'u'; 1024]).await;
    assert!(got.starts_with("http/1.1 200"), "{got}");
    assert!(!got.contains("connection: close"), "{got}");
    // No body at all: nothing to announce either.
    let head = "POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
    let got = answer_head(addr, head, &[]).await;
    assert!(got.starts_with("http/1.1 413"), "{got}");
    assert!(!got.contains("connection: close"), "{got}");
}

#[tokio::test]
async fn h2_answers_carry_no_connection_header() {
    let addr = server().await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post(format!("http://{addr}/early"))
        .body(http_body_util::Full::new(Bytes::from(vec![b'u'; 100_000])))
        .unwrap();
    let res = timeout(T, send.send_request(req)).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(res.headers().get("connection").is_none(), "{res:?}");
}

const PAGE: usize = 1 << 20;
const UPLOAD: usize = 8 << 20;

/// How the server is served: its discard through hyper (a plain `Router`), or below
/// it, in the connection's writes (the router in `GracefulConnectInfo`).
#[derive(Clone, Copy, PartialEq)]
enum Serve {
    Router,
    ConnectInfo,
}

/// A server whose early answer is `page` bytes, behind buffers small and fixed on both
/// sides (no autotuning): [`PAGE`] and [`UPLOAD`] are more than they hold. Each close's
/// report is sent to the receiver.
async fn early_answer_server(
    layer: AnnounceCloseLayer,
    page: usize,
    serve: Serve,
) -> (SocketAddr, UnboundedReceiver<CloseReport>) {
    server_with_buffers(layer, page, serve, Some(64 << 10)).await
}

/// The same with the server's buffers `fixed`, or left to the kernel's autotuning.
async fn server_with_buffers(
    layer: AnnounceCloseLayer,
    page: usize,
    serve: Serve,
    fixed: Option<usize>,
) -> (SocketAddr, UnboundedReceiver<CloseReport>) {
    let app = Router::new()
        .route(
            "/early",
            post(move || async move { (StatusCode::PAYLOAD_TOO_LARGE, vec![b'p'; page]) }),
        )
        .layer(layer);
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (tx, rx) = unbounded_channel();
    let listener = GracefulListener::new(
        tcp,
        CloseSettings::new(CloseOptions::new(T)).on_close(move |res| {
            let report = match res {
                Ok(r) => r.clone(),
                Err(e) => e.report().clone(),
            };
            let _ = tx.send(report);
        }),
    )
    .tap_io(move |io| {
        if let Some(size) = fixed {
            let sock = socket2::SockRef::from(&*io);
            sock.set_send_buffer_size(size).unwrap();
            sock.set_recv_buffer_size(size).unwrap();
        }
    });
    match serve {
        Serve::Router => tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }),
        Serve::ConnectInfo => tokio::spawn(async move {
            axum::serve(listener, GracefulConnectInfo::new(app))
                .await
                .unwrap()
        }),
    };
    (addr, rx)
}

/// A client like Python's `requests`: sends its whole upload, then reads the answer to
/// the end; each write and read may wait `patience`. The length of the answer's body.
async fn send_then_read(addr: SocketAddr, patience: Duration) -> std::io::Result<usize> {
    send_n_then_read(addr, UPLOAD, patience).await
}

/// The same with an upload of `upload` bytes.
async fn send_n_then_read(
    addr: SocketAddr,
    upload: usize,
    patience: Duration,
) -> std::io::Result<usize> {
    let got = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        sock.set_recv_buffer_size(16 << 10)?;
        sock.set_send_buffer_size(64 << 10)?;
        sock.connect(&addr.into())?;
        let mut s = std::net::TcpStream::from(sock);
        s.set_write_timeout(Some(patience))?;
        s.set_read_timeout(Some(patience))?;
        let head = format!("POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: {upload}\r\n\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(&vec![b'u'; upload])?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        Ok::<_, std::io::Error>(got)
    })
    .await
    .unwrap()?;
    let text = String::from_utf8_lossy(&got[..got.len().min(200)]).to_lowercase();
    assert!(text.starts_with("http/1.1 413"), "{text}");
    assert!(text.contains("connection: close\r\n"), "{text}");
    let body_at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    Ok(got.len() - body_at)
}

/// A client that sends its whole upload before it reads (Python's `requests`, browsers
/// over HTTP/1.1) to an early answer larger than the kernel buffers: the answer can
/// only go out while the upload is read. Without the layer's discard the server's write
/// waits on the client and the client's on the server until the client gives up.
#[tokio::test]
async fn an_early_answer_larger_than_the_buffers_reaches_a_client_that_sends_first() {
    for serve in [Serve::Router, Serve::ConnectInfo] {
        let (addr, mut reports) = early_answer_server(AnnounceCloseLayer::new(), PAGE, serve).await;
        let got = send_then_read(addr, T)
            .await
            .expect("the client's upload or its read of the answer failed");
        assert_eq!(got, PAGE, "the answer was cut short");
        let report = timeout(T, reports.recv()).await.unwrap().unwrap();
        if serve == Serve::ConnectInfo {
            // Discarded by the connection's writes, not read through hyper (which reads
            // at most a few buffers of it before the handler drops the body).
            assert!(
                report.drained_bytes() > (UPLOAD / 2) as u64,
                "the upload went through hyper: {report:?}"
            );
        }
    }
}

/// With the kernel's own buffers (autotuned: a large receive buffer), the connection's
/// writes discard a client that streams in batches (`SO_RCVLOWAT`), and the bytes below
/// the last batch still reach the close's drain: the whole upload is discarded and the
/// whole answer delivered.
#[tokio::test]
async fn a_streaming_client_is_discarded_in_batches_below_hyper() {
    const BIG_PAGE: usize = 8 << 20;
    const BIG_UPLOAD: usize = 48 << 20;
    let layer = AnnounceCloseLayer::new();
    let (addr, mut reports) = server_with_buffers(layer, BIG_PAGE, Serve::ConnectInfo, None).await;
    let got = send_n_then_read(addr, BIG_UPLOAD, T)
        .await
        .expect("the client's upload or its read of the answer failed");
    assert_eq!(got, BIG_PAGE, "the answer was cut short");
    let report = timeout(T, reports.recv()).await.unwrap().unwrap();
    // Only Linux confirms the acknowledgement here (Wine, say, cannot tell).
    let acked = report.acked() || !cfg!(target_os = "linux");
    assert!(report.peer_eof() && acked, "{report:?}");
    assert!(
        report.drained_bytes() > (BIG_UPLOAD / 2) as u64,
        "the upload went through hyper: {report:?}"
    );
}

/// An answer that fits the send buffer needs no discard: hyper finishes it and closes,
/// and the graceful close's drain reads the upload (the discard is off here).
#[tokio::test]
async fn a_small_early_answer_needs_no_discard() {
    for serve in [Serve::Router, Serve::ConnectInfo] {
        let layer = AnnounceCloseLayer::new().discard_limit(0);
        let (addr, _reports) = early_answer_server(layer, 1024, serve).await;
        let got = send_then_read(addr, T)
            .await
            .expect("the client's upload or its read of the answer failed");
        assert_eq!(got, 1024);
    }
}

/// The discard stops at its limit: past it the upload is left unread, and this client
/// stays blocked in its write (it then gives up).
#[tokio::test]
async fn the_discard_stops_at_its_limit() {
    stays_blocked(AnnounceCloseLayer::new().discard_limit(256 << 10)).await;
}

/// So does a discard out of time: with no time at all, nothing is discarded.
#[tokio::test]
async fn the_discard_stops_at_its_timeout() {
    stays_blocked(AnnounceCloseLayer::new().discard_timeout(Duration::ZERO)).await;
}

/// Served both ways behind `layer`, a client sending 8 MiB first gives up in its write.
async fn stays_blocked(layer: AnnounceCloseLayer) {
    for serve in [Serve::Router, Serve::ConnectInfo] {
        let (addr, _reports) = early_answer_server(layer, PAGE, serve).await;
        match send_then_read(addr, Duration::from_secs(2)).await {
            // A write timeout is `WouldBlock` on Unix, `TimedOut` on Windows (std's docs).
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{e}"
            ),
            Ok(got) => panic!("8 MiB went through a bounded discard ({got} bytes back)"),
        }
    }
}
