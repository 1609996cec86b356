//! `AnnounceCloseLayer`: an HTTP/1 answer sent before the request's body was read says
//! `Connection: close` (as nginx's and Go's do); other answers are left alone.
#![cfg(feature = "axum")]

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_graceful_close::{AnnounceCloseLayer, CloseOptions, GracefulListener};

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
