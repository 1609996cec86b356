//! The seed experiment: an unread greeting, 1,000,000 bytes written, then a close.
//! A plain close resets the connection and loses the tail; the graceful close delivers
//! every byte, every time.
// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[path = "support/peer.rs"]
mod peer;

use std::time::Duration;

use peer::{End, GREETING};
#[cfg(target_os = "linux")]
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
#[cfg(target_os = "linux")]
use tokio::net::UnixStream;
use tokio_graceful_close::AsyncGracefulClose;

const BYTES: usize = 1_000_000;
const RUNS: usize = 50;

async fn one_run() {
    let (l, addr) = peer::listener().await;
    let server = peer::seed_peer(l);
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&vec![b'x'; BYTES]).await.unwrap();
    let report = c
        .graceful_close(Duration::from_secs(10))
        .await
        .expect("graceful close confirms delivery");
    let (n, end) = peer::within(10, server).await.unwrap();
    assert_eq!(
        (n, end),
        (BYTES, End::Eof),
        "the peer got everything, then EOF"
    );
    assert!(report.acked() && report.peer_eof());
    assert_eq!(report.unacked_bytes(), Some(0));
    assert_eq!(report.drained_bytes(), GREETING.len() as u64);
    assert!(!report.aborted());
}

// Windows: asserts the ACK; `tests/portable.rs` runs the seed experiment everywhere.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_experiment_delivers_every_byte_every_run() {
    // 50 runs, 10 at a time.
    for _ in 0..RUNS / 10 {
        let batch: Vec<_> = (0..10).map(|_| tokio::spawn(one_run())).collect();
        for run in batch {
            peer::within(30, run).await.unwrap();
        }
    }
}

// Linux only: AF_UNIX semantics (no ACK check on AF_UNIX elsewhere).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn unix_stream_delivers_every_byte() {
    let (mut client, mut server) = UnixStream::pair().unwrap();
    let reader = tokio::spawn(async move {
        server.write_all(GREETING).await.unwrap();
        // A slow reader: the close must wait until it has read everything.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut buf = Vec::new();
        server.read_to_end(&mut buf).await.unwrap();
        buf.len()
    });
    let w = tokio::spawn(async move {
        client.write_all(&vec![b'u'; BYTES]).await.unwrap();
        client.graceful_close(Duration::from_secs(10)).await
    });
    let report = peer::within(15, w).await.unwrap().expect("unix close ok");
    assert_eq!(peer::within(5, reader).await.unwrap(), BYTES);
    assert!(report.acked() && report.peer_eof());
    assert_eq!(report.drained_bytes(), GREETING.len() as u64);
}

// Linux only: AF_UNIX semantics (no ACK check on AF_UNIX elsewhere).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn unix_peer_closing_without_reading_is_a_reset() {
    let (mut client, server) = UnixStream::pair().unwrap();
    client.write_all(&[7u8; 4096]).await.unwrap();
    drop(server); // closes with our 4096 bytes unread
    let err = client
        .graceful_close(Duration::from_secs(5))
        .await
        .expect_err("unread data on the peer is not a delivery");
    assert_eq!(
        err.kind(),
        tokio_graceful_close::CloseErrorKind::PeerReset,
        "{err}"
    );
    assert!(err.report().elapsed() < Duration::from_secs(1));
}
