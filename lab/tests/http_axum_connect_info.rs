//! `ConnectInfo<SocketAddr>` behind `GracefulListener`, both ways: the router wrapped in
//! `GracefulConnectInfo`, and axum's own `into_make_service_with_connect_info` over
//! `ListenerExt::tap_io` (axum implements `Connected` for the address of any `TapIo`).
//!
//! A real HTTP/1.1 request on loopback; the handler answers with the peer address it
//! extracted, which must be the client's own local address, and the connection's close
//! must have gone through the graceful path (the listener's `on_close` saw `Ok`).
#![cfg(feature = "axum")]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::axum::{GracefulConnectInfo, GracefulListener};
use tokio_graceful_close::{CloseOptions, CloseSettings};

/// Answers with the peer address the `ConnectInfo` extractor gave.
fn app() -> Router {
    Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    )
}

/// A listener on loopback that records whether each connection's close was `Ok`.
async fn listener() -> (
    GracefulListener<TcpListener>,
    SocketAddr,
    Arc<Mutex<Vec<bool>>>,
) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let closes = Arc::new(Mutex::new(Vec::new()));
    let seen = closes.clone();
    let l = GracefulListener::new(
        l,
        CloseSettings::new(CloseOptions::new(Duration::from_secs(5)))
            .on_close(move |res| seen.lock().unwrap().push(res.is_ok())),
    );
    (l, addr, closes)
}

/// One `GET /` with `Connection: close`: the client's local address and the body.
async fn get_peer(addr: SocketAddr) -> (SocketAddr, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let local = s.local_addr().unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut response))
        .await
        .expect("the response within 10 s")
        .expect("read the response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (local, body)
}

/// Waits up to 5 s for the listener to report one close; its outcome.
async fn one_close(closes: &Mutex<Vec<bool>>) -> Vec<bool> {
    for _ in 0..500 {
        let seen = closes.lock().unwrap().clone();
        if !seen.is_empty() {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no close reported within 5 s");
}

#[tokio::test]
async fn graceful_connect_info_gives_the_peer_address() {
    let (l, addr, closes) = listener().await;
    let server = tokio::spawn(async move { axum::serve(l, GracefulConnectInfo::new(app())).await });
    let (local, body) = get_peer(addr).await;
    assert_eq!(body, local.to_string());
    assert_eq!(one_close(&closes).await, [true]);
    server.abort();
}

#[tokio::test]
async fn tap_io_makes_axum_connect_info_work_with_graceful_listener() {
    let (l, addr, closes) = listener().await;
    let l = l.tap_io(|io| {
        // What tap_io is for; here it also proves the tapped stream is the graceful one.
        io.get_ref().set_nodelay(true).expect("TCP_NODELAY");
    });
    let make = app().into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(l, make).await });
    let (local, body) = get_peer(addr).await;
    assert_eq!(body, local.to_string());
    assert_eq!(one_close(&closes).await, [true]);
    server.abort();
}
