//! The timeout logic with Tokio's paused clock and `tokio-test`'s mock task.
// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[path = "support/peer.rs"]
mod peer;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio_graceful_close::{AsyncGracefulClose, CloseErrorKind, CloseOptions, ClosePhase, PeerEof};
use tokio_test::{assert_pending, assert_ready, task};

#[tokio::test(start_paused = true)]
async fn deadline_fires_exactly_on_time() {
    let (c, _s) = peer::pair().await;
    let mut close = pin!(c.graceful_close(Duration::from_secs(10)));
    // Send our FIN, then give the peer's kernel real time to acknowledge it (it may
    // delay that ACK by up to 40 ms): the paused clock would otherwise race through
    // the whole deadline before it arrives.
    std::future::poll_fn(|cx| {
        assert!(close.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    std::thread::sleep(Duration::from_millis(300));
    let err = close.await.expect_err("silent peer");
    assert_eq!(
        (err.kind(), err.phase()),
        (CloseErrorKind::TimedOut, ClosePhase::Drain)
    );
    let e = err.report().elapsed();
    assert!(
        e >= Duration::from_secs(10) && e < Duration::from_millis(10_050),
        "{e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_fires_before_the_deadline() {
    let (c, _s) = peer::pair().await;
    let opts = CloseOptions::new(Duration::from_secs(60)).idle_timeout(Duration::from_secs(2));
    let mut close = pin!(c.graceful_close_with(opts));
    // As above: let the peer's kernel acknowledge our FIN in real time. The idle bound
    // counts only once our bytes and FIN are delivered, and the paused clock would
    // otherwise outrun that acknowledgement.
    std::future::poll_fn(|cx| {
        assert!(close.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    std::thread::sleep(Duration::from_millis(300));
    let err = close.await.expect_err("silent peer");
    assert_eq!(err.kind(), CloseErrorKind::IdleTimeout);
    let e = err.report().elapsed();
    assert!(
        e >= Duration::from_secs(2) && e < Duration::from_millis(2_050),
        "{e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn zero_timeout_fails_at_once_without_panicking() {
    let (c, _s) = peer::pair().await;
    let err = c.graceful_close(Duration::ZERO).await.expect_err("no time");
    assert!(err.kind().is_timeout());
    assert_eq!(err.report().elapsed(), Duration::ZERO);
}

// Linux only: sets `TCP_USER_TIMEOUT`.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn extreme_options_do_not_panic() {
    let (c, s) = peer::pair().await;
    drop(s);
    let opts = CloseOptions::new(Duration::MAX)
        .idle_timeout(Duration::MAX)
        .poll_interval(Duration::ZERO)
        .user_timeout(Duration::MAX)
        .drain_limit(0);
    let r = peer::within(5, c.graceful_close_with(opts))
        .await
        .expect("peer closed");
    assert!(r.peer_eof() && r.acked());
}

#[tokio::test]
async fn drain_limit_zero_rejects_any_data() {
    let (c, mut s) = peer::pair().await;
    tokio::io::AsyncWriteExt::write_all(&mut s, b"x")
        .await
        .unwrap();
    let opts = CloseOptions::new(Duration::from_secs(5)).drain_limit(0);
    let err = peer::within(5, c.graceful_close_with(opts))
        .await
        .expect_err("1 > 0");
    assert_eq!(err.kind(), CloseErrorKind::DrainLimit);
    assert_eq!(err.report().drained_bytes(), 1);
}

/// A clock that was paused and advanced by an hour, then resumed, runs an hour ahead of
/// real time: a far deadline still ends the close after its own length, not an hour late.
#[tokio::test(start_paused = true)]
async fn a_far_deadline_ends_on_time_after_the_clock_was_advanced() {
    let (c, _s) = peer::pair().await;
    tokio::time::advance(Duration::from_secs(3600)).await;
    tokio::time::resume();
    let start = std::time::Instant::now();
    let err = peer::within(5, c.graceful_close(Duration::from_millis(500)))
        .await
        .expect_err("silent peer");
    assert!(err.kind().is_timeout(), "{err}");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

/// [`PeerEof::IfSending`] looks at the socket itself when the drain found nothing: a byte
/// that arrived before Tokio's readiness said so is still over a limit of 0.
// Linux only: the byte is read by that look once our FIN is acknowledged.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn drain_limit_zero_counts_the_byte_the_linger_check_reads() {
    let (c, s) = peer::pair().await;
    let opts = CloseOptions::new(Duration::from_secs(5))
        .drain_limit(0)
        .peer_eof(PeerEof::IfSending);
    let mut close = task::spawn(c.graceful_close_with(opts));
    // Our FIN goes out; nothing to read yet.
    assert_pending!(close.poll());
    // Block the runtime thread, so that the I/O driver does not run: the peer's kernel
    // acknowledges our FIN meanwhile (it may delay that ACK by up to 40 ms), then a
    // byte arrives that the drain's cached readiness does not know of.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.try_write(b"x").unwrap(), 1);
    let second = close.poll();
    // The peer closes soon: a close that missed the byte would end with its EOF.
    let peer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(s);
    });
    let res = match second {
        Poll::Ready(res) => res,
        Poll::Pending => peer::within(5, close).await,
    };
    peer.await.unwrap();
    let err = res.expect_err("1 byte > a limit of 0");
    assert_eq!(err.kind(), CloseErrorKind::DrainLimit);
    assert_eq!(err.report().drained_bytes(), 1);
}

/// The future is pending while the peer is open and completes on the peer's FIN.
// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn pending_until_the_peer_closes() {
    let (c, s) = peer::pair().await;
    let mut close = task::spawn(c.graceful_close(Duration::from_secs(5)));
    assert_pending!(close.poll());
    assert_pending!(close.poll());
    drop(s);
    // Let the I/O driver deliver the peer's FIN to the mock task.
    for _ in 0..100 {
        if close.is_woken() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(close.is_woken(), "the peer's FIN wakes the close");
    let r = assert_ready!(close.poll()).expect("ok");
    assert!(r.peer_eof() && r.acked());
}

/// Polled outside a Tokio runtime: an error, not a panic.
#[test]
fn polled_outside_a_runtime_is_an_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (c, _s) = rt.block_on(peer::pair());
    let mut close = pin!(c.graceful_close(Duration::from_secs(1)));
    let mut cx = Context::from_waker(Waker::noop());
    match close.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => {
            assert_eq!(e.kind(), CloseErrorKind::Io);
            assert!(e.to_string().contains("Tokio runtime"), "{e}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}
