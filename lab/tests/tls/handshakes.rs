//! Handshakes that fail or stall: they block no other client, and their connections
//! close within the handshake timeout plus the close options.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_graceful_close::CloseOptions;

use crate::example;
use crate::support::*;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The total deadline of the closes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

fn opts() -> CloseOptions {
    CloseOptions::new(CLOSE_TIMEOUT).idle_timeout(Duration::from_millis(500))
}

/// A TLS request (`GET /nowhere`, a 404 from the app); returns how long it took.
async fn one_request(addr: std::net::SocketAddr) -> Duration {
    let start = Instant::now();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector(client_config(&[b"http/1.1"]))
        .connect(server_name(), tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET /nowhere HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 404"), "{answer:?}");
    tls.shutdown().await.unwrap();
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_stalled_handshakes_block_nothing_and_are_bounded() {
    let (listener, addr, mut closes) = tls_listener(opts()).await;
    let listener = listener.handshake_timeout(HANDSHAKE_TIMEOUT);
    let server = tokio::spawn(async move { axum::serve(listener, example::app()).await });
    let start = Instant::now();

    // Plain text to the TLS port: the handshake fails at once.
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // Stalled: half a record header, then silence; and clients that send nothing.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial.write_all(&[0x16, 0x03]).await.unwrap();
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }

    // Meanwhile another client is served at once, several times over.
    for _ in 0..3 {
        let took = timeout(T, one_request(addr)).await.expect("request hung");
        assert!(
            took < Duration::from_millis(1000),
            "a request took {took:?} while handshakes stalled"
        );
    }

    // Every connection reports its close once: 3 served, 1 failed, 4 stalled.
    let mut got = Vec::new();
    for _ in 0..8 {
        let outcome = next_close(&mut closes).await;
        got.push((start.elapsed(), outcome));
    }
    for (at, outcome) in &got {
        println!("close at {at:?}: {outcome:?}");
    }
    // The served requests confirmed delivery. The failed and stalled handshakes end
    // Ok too where nothing of ours was left unacknowledged (the server connections'
    // default lingers only while the client is still sending): count them by time.
    let confirmed = got.iter().filter(|(_, o)| o.is_ok()).count();
    assert!(
        confirmed >= 3,
        "the served requests closed with delivery confirmed: {got:?}"
    );
    let mut at: Vec<Duration> = got.iter().map(|(at, _)| *at).collect();
    at.sort();
    // Served and failed (plain text): closed without waiting for the handshake timeout.
    assert!(at[3] < HANDSHAKE_TIMEOUT, "{at:?}");
    // The stalled ones: dropped at the handshake timeout, closed within the options.
    let bound = HANDSHAKE_TIMEOUT + CLOSE_TIMEOUT + Duration::from_secs(1);
    for at in &at[4..] {
        assert!(*at >= HANDSHAKE_TIMEOUT && *at < bound, "{at:?}");
    }

    // The failed handshake's client saw an orderly end (an alert and a FIN), no reset.
    let mut rest = Vec::new();
    timeout(T, garbage.read_to_end(&mut rest))
        .await
        .unwrap()
        .expect("the failed handshake ended with a FIN, not a reset");
    drop((partial, silent));
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_handshakes_bounds_the_handshakes_in_flight() {
    let (listener, addr, _closes) = tls_listener(opts()).await;
    let listener = listener
        .handshake_timeout(Duration::from_secs(1))
        .max_handshakes(1);
    let server = tokio::spawn(async move { axum::serve(listener, example::app()).await });
    let stalled = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The one slot is taken until the stalled handshake times out.
    let took = timeout(T, one_request(addr)).await.expect("request hung");
    assert!(took >= Duration::from_millis(800), "{took:?}");
    // Once it is free, requests are served at once.
    let took = timeout(T, one_request(addr)).await.expect("request hung");
    assert!(took < Duration::from_millis(800), "{took:?}");
    drop(stalled);
    server.abort();
}
