//! The contracts code around `GracefulIo` and `wait_acked` relies on, checked from
//! outside on loopback: `poll_shutdown` shuts the write side only, readiness is left
//! as found, a proxy relays every byte, a reset is never turned into a clean EOF.
#![cfg(target_os = "linux")]

#[path = "../examples/tcp_proxy.rs"]
#[allow(dead_code)]
mod proxy;

use std::io;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, GracefulIo, PeerEof};

const T: Duration = Duration::from_secs(20);
const EIGHT_MIB: usize = 8 << 20;

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// Reads to EOF; the bytes, or the error with what came before it.
async fn read_all(s: &mut TcpStream) -> Result<Vec<u8>, (usize, io::ErrorKind)> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match timeout(T, s.read(&mut buf)).await.expect("read hung") {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => return Err((got.len(), e.kind())),
        }
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A proxy between a fresh client and a fresh upstream; returns (client, upstream,
/// the relay task).
async fn proxied() -> (
    TcpStream,
    TcpStream,
    tokio::task::JoinHandle<io::Result<(u64, u64)>>,
) {
    let (client, proxy_client_leg) = pair().await;
    let (proxy_upstream_leg, upstream) = pair().await;
    let relay = tokio::spawn(proxy::relay(
        proxy_client_leg,
        proxy_upstream_leg,
        CloseOptions::new(T),
    ));
    (client, upstream, relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_relays_everything_after_the_upstream_half_closes() {
    let (mut client, mut upstream, relay) = proxied().await;
    // The upstream finishes first...
    upstream.write_all(b"ready\n").await.unwrap();
    upstream.shutdown().await.unwrap();
    // ...the client sees that half-close, then sends 8 MiB.
    assert_eq!(read_all(&mut client).await.unwrap(), b"ready\n");
    let data = payload(EIGHT_MIB);
    let sender = tokio::spawn(async move {
        client.write_all(&data).await.unwrap();
        client.shutdown().await.unwrap();
        client
    });
    let got = read_all(&mut upstream)
        .await
        .expect("the upstream read all");
    assert_eq!(got.len(), EIGHT_MIB, "bytes lost by the proxy");
    assert!(got == payload(EIGHT_MIB), "bytes reordered or corrupted");
    let counts = timeout(T, relay).await.unwrap().unwrap().expect("relay ok");
    assert_eq!(counts, (EIGHT_MIB as u64, 6));
    drop(sender.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_relays_everything_after_the_client_half_closes() {
    let (mut client, mut upstream, relay) = proxied().await;
    client.write_all(b"GET\n").await.unwrap();
    client.shutdown().await.unwrap();
    assert_eq!(read_all(&mut upstream).await.unwrap(), b"GET\n");
    let data = payload(EIGHT_MIB);
    let sender = tokio::spawn(async move {
        upstream.write_all(&data).await.unwrap();
        upstream.shutdown().await.unwrap();
        upstream
    });
    let got = read_all(&mut client).await.expect("the client read all");
    assert_eq!(got.len(), EIGHT_MIB, "bytes lost by the proxy");
    assert!(got == payload(EIGHT_MIB), "bytes reordered or corrupted");
    let counts = timeout(T, relay).await.unwrap().unwrap().expect("relay ok");
    assert_eq!(counts, (4, EIGHT_MIB as u64));
    drop(sender.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_turns_an_upstream_reset_into_a_reset() {
    let (mut client, upstream, relay) = proxied().await;
    client.write_all(b"hello").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    upstream.abort().unwrap(); // RST, with "hello" unread
    let err = timeout(T, relay).await.unwrap().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    let end = read_all(&mut client).await;
    assert_eq!(
        end.map_err(|(_, k)| k),
        Err(io::ErrorKind::ConnectionReset),
        "the client must see the reset, not a clean EOF"
    );
}

#[tokio::test]
async fn shutdown_never_reads_the_input() {
    let (a, mut b) = pair().await;
    let mut io = GracefulIo::new(a, CloseOptions::new(T));
    b.write_all(b"request body").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    io.write_all(b"response").await.unwrap();
    timeout(T, io.shutdown()).await.unwrap().unwrap();
    // The peer sends more after our FIN, then closes.
    b.write_all(b" and more").await.unwrap();
    b.shutdown().await.unwrap();
    let mut got = Vec::new();
    timeout(T, io.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"request body and more", "the shutdown consumed input");
    assert_eq!(read_all(&mut b).await.unwrap(), b"response");
}

#[tokio::test]
async fn a_write_right_after_wait_acked_completes_at_once() {
    let (mut a, _b) = pair().await;
    a.write_all(b"hello").await.unwrap();
    timeout(T, a.wait_acked(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    // The barrier left Tokio's cached write readiness alone.
    assert_eq!(a.try_write(b"x").expect("still writable"), 1);
    let start = Instant::now();
    timeout(Duration::from_secs(1), a.write_all(b"world"))
        .await
        .expect("the write after wait_acked hung")
        .unwrap();
    assert!(start.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn wait_acked_leaves_read_readiness_alone() {
    let (mut a, mut b) = pair().await;
    b.write_all(b"for you").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    a.write_all(b"x").await.unwrap();
    timeout(T, a.wait_acked(Duration::from_secs(5)))
        .await
        .unwrap()
        .unwrap();
    let mut got = [0u8; 7];
    timeout(Duration::from_secs(1), a.read_exact(&mut got))
        .await
        .expect("the read after wait_acked hung")
        .unwrap();
    assert_eq!(&got, b"for you");
}

#[tokio::test]
async fn a_write_after_shutdown_fails_at_once() {
    for require_eof in [true, false] {
        let (a, _b) = pair().await;
        let opts = CloseOptions::new(T).peer_eof(if require_eof {
            PeerEof::Required
        } else {
            PeerEof::NotRequired
        });
        let mut io = GracefulIo::new(a, opts);
        io.write_all(b"last").await.unwrap();
        timeout(T, io.shutdown()).await.unwrap().unwrap();
        let err = timeout(Duration::from_secs(1), io.write_all(b"more"))
            .await
            .expect("a write after the shutdown hung")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        // Through the inner stream too: the socket's own error, at once.
        let mut inner = io.into_inner();
        let err = timeout(Duration::from_secs(1), inner.write_all(b"more"))
            .await
            .expect("a write on the half-closed stream hung")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
