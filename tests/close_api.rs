//! `abort`, `unacked_bytes`, `unsent_bytes` and `wait_acked`.
// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[path = "support/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use peer::End;
use tokio::io::AsyncWriteExt;
use tokio_graceful_close::{AsyncGracefulClose, CloseError, CloseErrorKind, ClosePhase};

// Windows: counts unacknowledged bytes and expects a reset (Wine sends none).
#[cfg(not(windows))]
#[tokio::test]
async fn abort_sends_rst_at_once() {
    let (c, mut s) = peer::pair().await;
    let queued = peer::fill(&c);
    assert!(c.unacked_bytes().unwrap() > 0);
    let t = Instant::now();
    c.abort().unwrap();
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
    let (n, end) = peer::within(10, peer::read_to_end(&mut s)).await;
    assert_eq!(end, End::Reset);
    assert!(n < queued, "the queued tail was discarded");
}

// Linux only: `SIOCOUTQ` / `SIOCOUTQNSD`: no unsent count elsewhere.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn unacked_and_unsent_bytes_follow_the_queue() {
    let (mut c, mut s) = peer::pair().await;
    assert_eq!(c.unacked_bytes().unwrap(), 0);
    assert_eq!(c.unsent_bytes().unwrap(), 0);
    let queued = peer::fill(&c);
    let unacked = c.unacked_bytes().unwrap();
    assert!(unacked > 0 && unacked <= queued, "{unacked} of {queued}");
    // The peer's window is full: some bytes are not even sent.
    assert!(c.unsent_bytes().unwrap() > 0);
    assert!(c.unsent_bytes().unwrap() <= unacked);
    let reader = tokio::spawn(async move { peer::read_to_end(&mut s).await });
    c.wait_acked(Duration::from_secs(10)).await.unwrap();
    assert_eq!(c.unacked_bytes().unwrap(), 0);
    c.shutdown().await.unwrap();
    assert_eq!(peer::within(10, reader).await.unwrap(), (queued, End::Eof));
}

// Windows: the delivery barrier: Windows cannot see unsent bytes.
#[cfg(not(windows))]
#[tokio::test]
async fn wait_acked_times_out_on_a_peer_that_never_reads() {
    let (mut c, _s) = peer::pair().await;
    peer::fill(&c);
    let t = Instant::now();
    let err = c
        .wait_acked(Duration::from_millis(300))
        .await
        .expect_err("never acked");
    assert!(t.elapsed() >= Duration::from_millis(290));
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let inner = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<CloseError>())
        .unwrap();
    assert_eq!(
        (inner.kind(), inner.phase()),
        (CloseErrorKind::TimedOut, ClosePhase::AckWait)
    );
    assert!(inner.report().unacked_bytes().unwrap() > 0);
    // The barrier leaves the stream usable.
    assert!(c.unacked_bytes().unwrap() > 0);
}

// Windows: the delivery barrier: Windows cannot see unsent bytes.
#[cfg(not(windows))]
#[tokio::test]
async fn wait_acked_reports_a_reset() {
    let (mut c, s) = peer::pair().await;
    peer::fill(&c);
    let reset = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peer::reset(s);
    });
    let err = c
        .wait_acked(Duration::from_secs(10))
        .await
        .expect_err("reset");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    reset.await.unwrap();
}
