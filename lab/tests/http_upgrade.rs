//! An HTTP upgrade behind `GracefulListener`: a CONNECT tunnel served by axum relays
//! every byte both ways, half-closes included, and closes cleanly. hyper's `Upgraded`
//! forwards `poll_shutdown` to the `GracefulIo` underneath, so this is the contract
//! "`poll_shutdown` shuts the write side only" seen through a real HTTP stack.
#![cfg(all(feature = "axum", target_os = "linux"))]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_graceful_close::axum::GracefulListener;
use tokio_graceful_close::{CloseOptions, CloseSettings};

const T: Duration = Duration::from_secs(20);
const EIGHT_MIB: usize = 8 << 20;

type Outcomes = Arc<Mutex<Vec<Result<(bool, bool), String>>>>;

/// A CONNECT proxy on axum behind `GracefulListener`; every tunnel goes to `upstream`.
async fn start(upstream: SocketAddr) -> (SocketAddr, Outcomes) {
    let outcomes: Outcomes = Arc::default();
    let seen = outcomes.clone();
    let app = Router::new().fallback(move |req: Request<Body>| tunnel(req, upstream));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = GracefulListener::new(
        listener,
        CloseSettings::new(CloseOptions::new(T)).on_close(move |res| {
            seen.lock().unwrap().push(match res {
                Ok(r) => Ok((r.acked(), r.peer_eof())),
                Err(e) => Err(e.to_string()),
            });
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, outcomes)
}

async fn tunnel(req: Request<Body>, upstream: SocketAddr) -> Response {
    if req.method() != axum::http::Method::CONNECT {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    tokio::spawn(async move {
        let upgraded = hyper::upgrade::on(req).await.expect("upgrade");
        let mut client = TokioIo::new(upgraded);
        let mut up = TcpStream::connect(upstream).await.unwrap();
        // Half-closes are forwarded: poll_shutdown on `client` reaches GracefulIo.
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
    });
    StatusCode::OK.into_response()
}

/// Connects through the proxy; returns the tunnel once the 200 is read.
async fn connect(proxy: SocketAddr, upstream: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    let req = format!("CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        timeout(T, s.read_exact(&mut byte)).await.unwrap().unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s
}

async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    timeout(T, s.read_to_end(&mut got))
        .await
        .expect("read hung")
        .expect("no reset");
    got
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnel_relays_everything_after_the_upstream_half_closes() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let (proxy, outcomes) = start(up_addr).await;
    let mut client = connect(proxy, up_addr).await;
    let (mut up, _) = upstream.accept().await.unwrap();
    // The upstream answers and half-closes first; the client then uploads 8 MiB.
    up.write_all(b"hello from upstream").await.unwrap();
    up.shutdown().await.unwrap();
    assert_eq!(read_all(&mut client).await, b"hello from upstream");
    let data = payload(EIGHT_MIB);
    let sender = tokio::spawn(async move {
        client.write_all(&data).await.unwrap();
        client.shutdown().await.unwrap();
        client
    });
    let got = read_all(&mut up).await;
    assert_eq!(got.len(), EIGHT_MIB, "bytes lost in the tunnel");
    assert!(got == payload(EIGHT_MIB), "bytes reordered or corrupted");
    drop(up);
    let client = sender.await.unwrap();
    drop(client);
    // The tunnel's connection closes cleanly, once.
    let mut waited = Duration::ZERO;
    while outcomes.lock().unwrap().is_empty() && waited < T {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += Duration::from_millis(10);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(outcomes, vec![Ok((true, true))], "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnel_relays_everything_after_the_client_half_closes() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let (proxy, _outcomes) = start(up_addr).await;
    let mut client = connect(proxy, up_addr).await;
    let (mut up, _) = upstream.accept().await.unwrap();
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_all(&mut up).await, b"request");
    let data = payload(EIGHT_MIB);
    let sender = tokio::spawn(async move {
        up.write_all(&data).await.unwrap();
        up.shutdown().await.unwrap();
        up
    });
    let got = read_all(&mut client).await;
    assert_eq!(got.len(), EIGHT_MIB, "bytes lost in the tunnel");
    assert!(got == payload(EIGHT_MIB), "bytes reordered or corrupted");
    drop(sender.await.unwrap());
}
