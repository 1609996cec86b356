//! `CloseTracker`'s `close()` / `wait()` protocol (tokio-util's `TaskTracker`'s): `wait`
//! completes once the tracker is closed and no tracked connection is left, counting
//! connections from the moment they are wrapped, so that one still in a handshake when
//! the shutdown begins is waited for.

#[path = "support/peer.rs"]
mod peer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_graceful_close::{CloseOptions, CloseTracker, GracefulIo};
use tokio_test::{assert_pending, assert_ready, task};

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn wait_completes_once_closed_and_empty() {
    let tracker = CloseTracker::new();
    let mut wait = task::spawn(tracker.wait());
    assert_pending!(wait.poll(), "open: not done, even when empty");
    assert!(tracker.close());
    assert!(!tracker.close(), "already closed");
    assert!(wait.is_woken());
    assert_ready!(wait.poll());
    // Reopened: pending again until the next close.
    assert!(tracker.reopen());
    let mut again = task::spawn(tracker.wait());
    assert_pending!(again.poll());
    tracker.close();
    assert_ready!(again.poll());
}

/// A connection tracked from its wrapping, as a listener does at accept, and dropped
/// only after the tracker was closed (a TLS handshake that ends during the shutdown):
/// `wait` does not complete before its close ended. (When only closes were counted,
/// from their start, `wait` saw zero and returned at once.)
#[tokio::test]
async fn a_connection_wrapped_before_the_close_is_waited_for() {
    let tracker = CloseTracker::new();
    let (ours, mut theirs) = peer::pair().await;
    let ended = Arc::new(AtomicBool::new(false));
    let ended2 = ended.clone();
    let mut io = GracefulIo::new(ours, CloseOptions::new(T))
        .tracked(&tracker)
        .on_close(move |_| ended2.store(true, Ordering::SeqCst));
    let in_flight = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await; // the handshake
        io.write_all(b"late").await.unwrap();
        drop(io); // the close starts only now
    });
    let peer = tokio::spawn(async move { peer::read_to_end(&mut theirs).await });
    assert_eq!(tracker.pending(), 1);
    tracker.close();
    let start = Instant::now();
    tokio::time::timeout(T, tracker.wait())
        .await
        .expect("wait hung");
    assert!(
        ended.load(Ordering::SeqCst),
        "wait returned after {:?}, before the close ended",
        start.elapsed()
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert_eq!(tracker.pending(), 0);
    in_flight.await.unwrap();
    peer.await.unwrap();
}

/// `into_inner` takes a connection out of the count.
#[tokio::test]
async fn into_inner_ends_the_count() {
    let tracker = CloseTracker::new();
    let (ours, _theirs) = peer::pair().await;
    let io = GracefulIo::new(ours, CloseOptions::new(T)).tracked(&tracker);
    assert_eq!(tracker.pending(), 1);
    let _stream = io.into_inner();
    assert_eq!(tracker.pending(), 0);
    tracker.close();
    tokio::time::timeout(T, tracker.wait()).await.unwrap();
}
