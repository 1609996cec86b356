//! Hostile and odd peers, each with its expected outcome.
// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[path = "support/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use peer::End;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_graceful_close::{
    AsyncGracefulClose, CloseErrorKind, CloseOptions, ClosePhase, OnTimeout,
};

/// A peer that reads everything but never closes its side.
// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn peer_that_never_closes_times_out_near_the_deadline() {
    let (mut c, mut s) = peer::pair().await;
    let keep = tokio::spawn(async move {
        let r = peer::read_to_end(&mut s).await;
        tokio::time::sleep(Duration::from_secs(5)).await; // hold the socket open
        r
    });
    c.write_all(&[1u8; 100_000]).await.unwrap();
    let t = Instant::now();
    let err = c
        .graceful_close(Duration::from_millis(800))
        .await
        .expect_err("no EOF from the peer");
    let took = t.elapsed();
    assert_eq!(
        err.kind(),
        CloseErrorKind::TimedOut(ClosePhase::Drain),
        "{err}"
    );
    assert_eq!(err.phase(), ClosePhase::Drain);
    assert!(
        took >= Duration::from_millis(790) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // Our data and FIN were acknowledged even though the peer never closed.
    assert_eq!(err.report().unacked_bytes(), Some(0));
    assert!(!err.report().peer_eof());
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    assert_eq!(peer::within(10, keep).await.unwrap(), (100_000, End::Eof));
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn peer_that_never_closes_is_ok_without_requiring_eof() {
    let (mut c, mut s) = peer::pair().await;
    let keep = tokio::spawn(async move {
        let r = peer::read_to_end(&mut s).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        r
    });
    c.write_all(&[1u8; 100_000]).await.unwrap();
    let opts = CloseOptions::new(Duration::from_secs(10)).require_peer_eof(false);
    let r = c.graceful_close_with(opts).await.expect("ACK confirmed");
    assert!(r.acked() && !r.peer_eof());
    assert!(
        r.elapsed() < Duration::from_millis(500),
        "{:?}",
        r.elapsed()
    );
    assert_eq!(peer::within(10, keep).await.unwrap(), (100_000, End::Eof));
}

/// A peer that never reads: the window closes, our data stays unacknowledged.
// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn peer_that_never_reads_times_out_waiting_for_ack() {
    let (c, s) = peer::pair().await;
    let queued = peer::fill(&c);
    assert!(queued > 0);
    let opts = CloseOptions::new(Duration::from_millis(600)).require_peer_eof(false);
    let err = c.graceful_close_with(opts).await.expect_err("never acked");
    assert_eq!(
        err.kind(),
        CloseErrorKind::TimedOut(ClosePhase::AckWait),
        "{err}"
    );
    let unacked = err.report().unacked_bytes().unwrap();
    assert!(unacked > 0, "bytes outstanding at the deadline");
    assert!(!err.report().aborted());
    assert!(err.to_string().contains("unacknowledged"), "{err}");
    drop(s);
}

// Windows: expects a reset (Wine sends none).
#[cfg(not(windows))]
#[tokio::test]
async fn peer_that_never_reads_gets_rst_with_abort() {
    let (c, mut s) = peer::pair().await;
    peer::fill(&c);
    let opts = CloseOptions::new(Duration::from_millis(300)).on_timeout(OnTimeout::Abort);
    let err = c.graceful_close_with(opts).await.expect_err("never acked");
    assert!(err.kind().is_timeout());
    assert!(err.report().aborted());
    // The peer now reads what had arrived, then sees the reset.
    let (_, end) = peer::within(10, peer::read_to_end(&mut s)).await;
    assert_eq!(end, End::Reset);
}

/// A peer that floods us and never closes: the drain limit holds, memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_peer_hits_the_drain_limit() {
    let (c, mut s) = peer::pair().await;
    let flood = tokio::spawn(async move {
        let chunk = vec![0xAAu8; 64 * 1024];
        let mut sent = 0u64;
        while s.write_all(&chunk).await.is_ok() {
            sent += chunk.len() as u64;
        }
        sent
    });
    let rss_before = rss_kib();
    let limit = 32 << 20;
    let opts = CloseOptions::new(Duration::from_secs(20)).drain_limit(limit);
    let err = c.graceful_close_with(opts).await.expect_err("flood");
    assert_eq!(err.kind(), CloseErrorKind::DrainLimit, "{err}");
    assert!(err.report().drained_bytes() > limit);
    assert!(err.report().elapsed() < Duration::from_secs(10));
    let grew = rss_kib().saturating_sub(rss_before);
    // MSG_TRUNC discards in the kernel: draining 32 MiB must not grow the heap.
    assert!(grew < 8 * 1024, "RSS grew by {grew} KiB while draining");
    let sent = peer::within(10, flood).await.unwrap();
    assert!(sent > limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooding_peer_is_bounded_by_the_deadline() {
    let (c, mut s) = peer::pair().await;
    let flood = tokio::spawn(async move {
        let chunk = vec![0x55u8; 64 * 1024];
        while s.write_all(&chunk).await.is_ok() {}
    });
    let opts = CloseOptions::new(Duration::from_millis(700))
        .drain_limit(u64::MAX)
        .on_timeout(OnTimeout::Abort);
    let t = Instant::now();
    let err = c.graceful_close_with(opts).await.expect_err("flood");
    assert_eq!(
        err.kind(),
        CloseErrorKind::TimedOut(ClosePhase::Drain),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(err.report().drained_bytes() > 1 << 20, "it kept draining");
    assert!(err.report().aborted());
    peer::within(10, flood).await.unwrap();
}

#[tokio::test]
async fn idle_peer_hits_the_idle_timeout() {
    let (mut c, mut s) = peer::pair().await;
    let trickle = tokio::spawn(async move {
        for _ in 0..3 {
            if s.write_all(b"tick").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await; // then silence
    });
    c.write_all(b"bye").await.unwrap();
    let opts = CloseOptions::new(Duration::from_secs(10)).idle_timeout(Duration::from_millis(400));
    let err = c.graceful_close_with(opts).await.expect_err("silent peer");
    assert_eq!(err.kind(), CloseErrorKind::IdleTimeout, "{err}");
    let e = err.report().elapsed();
    // Three chunks 100 ms apart restart the idle timer: ~200 ms + 400 ms.
    assert!(
        e >= Duration::from_millis(550) && e < Duration::from_secs(2),
        "{e:?}"
    );
    assert_eq!(err.report().drained_bytes(), 12);
    trickle.abort();
}

/// A peer that resets while a large transfer is still queued.
// Windows: the peer resets (Wine sends no reset).
#[cfg(not(windows))]
#[tokio::test]
async fn peer_reset_mid_transfer_is_reported_promptly() {
    let (c, s) = peer::pair().await;
    let queued = peer::fill(&c);
    assert!(queued > 100_000);
    let closing = tokio::spawn(c.graceful_close(Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The peer reads a little, then resets.
    let mut s = s;
    let mut buf = vec![0u8; 65536];
    let _ = s.read(&mut buf).await.unwrap();
    peer::reset(s);
    let err = peer::within(5, closing).await.unwrap().expect_err("reset");
    assert_eq!(err.kind(), CloseErrorKind::PeerReset, "{err}");
    assert!(
        err.report().elapsed() < Duration::from_secs(2),
        "{:?}",
        err.report().elapsed()
    );
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
}

/// A peer that keeps sending after our FIN: we keep draining, our data arrives whole.
// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn peer_sending_after_our_fin_still_gets_everything() {
    let (l, addr) = peer::listener().await;
    let server = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let (n, end) = peer::read_to_end(&mut s).await;
        // Our EOF arrived; now answer with 300 KB the client never asked for.
        let sent = s.write_all(&vec![b'z'; 300_000]).await.is_ok();
        (n, end, sent)
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&vec![b'x'; 1_000_000]).await.unwrap();
    let r = c.graceful_close(Duration::from_secs(10)).await.expect("ok");
    let (n, end, sent) = peer::within(10, server).await.unwrap();
    assert_eq!((n, end, sent), (1_000_000, End::Eof, true));
    assert_eq!(r.drained_bytes(), 300_000);
    assert!(r.acked() && r.peer_eof());
}

/// The peer closed cleanly before we started: an immediate success.
// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn peer_already_closed_before_we_start() {
    let (mut c, mut s) = peer::pair().await;
    s.write_all(b"goodbye\n").await.unwrap();
    drop(s);
    // Wait until its FIN is here.
    let mut buf = [0u8; 8];
    c.read_exact(&mut buf).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = c.graceful_close(Duration::from_secs(5)).await.expect("ok");
    assert!(r.peer_eof() && r.acked());
    assert_eq!(r.drained_bytes(), 0);
    assert!(
        r.elapsed() < Duration::from_millis(200),
        "{:?}",
        r.elapsed()
    );
}

/// The peer reset before we started: the error comes at once.
// Windows: the peer resets (Wine sends no reset).
#[cfg(not(windows))]
#[tokio::test]
async fn peer_already_reset_before_we_start() {
    let (c, s) = peer::pair().await;
    peer::reset(s);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let err = c
        .graceful_close(Duration::from_secs(5))
        .await
        .expect_err("reset");
    assert_eq!(err.kind(), CloseErrorKind::PeerReset, "{err}");
    assert!(t.elapsed() < Duration::from_millis(500));
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A peer that reads everything, then resets instead of closing: an error (no EOF), but
/// the report proves our data and FIN were acknowledged before the reset.
// Windows: the peer resets (Wine sends no reset).
#[cfg(not(windows))]
#[tokio::test]
async fn peer_reset_after_reading_everything_reports_acked() {
    let (mut c, mut s) = peer::pair().await;
    c.write_all(&[3u8; 50_000]).await.unwrap();
    let server = tokio::spawn(async move {
        let r = peer::read_to_end(&mut s).await; // our FIN arrives: all was read
                                                 // Let the peer's kernel send its (possibly delayed, <= 200 ms) ACK: an RST's own
                                                 // ACK field does not advance our snd_una, so without it nothing would be proven.
        tokio::time::sleep(Duration::from_millis(300)).await;
        peer::reset(s);
        r
    });
    let err = c
        .graceful_close(Duration::from_secs(5))
        .await
        .expect_err("RST, not EOF");
    assert_eq!(err.kind(), CloseErrorKind::PeerReset, "{err}");
    assert!(err.report().acked(), "{:?}", err.report());
    assert_eq!(err.report().unacked_bytes(), Some(0));
    assert_eq!(peer::within(5, server).await.unwrap(), (50_000, End::Eof));
}

/// The application already called `shutdown()`: the close carries on from there.
// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn already_shut_down_by_the_application() {
    let (l, addr) = peer::listener().await;
    let server = peer::seed_peer(l);
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&vec![b'y'; 300_000]).await.unwrap();
    c.shutdown().await.unwrap();
    let r = c.graceful_close(Duration::from_secs(5)).await.expect("ok");
    assert!(r.acked() && r.peer_eof());
    assert_eq!(peer::within(5, server).await.unwrap(), (300_000, End::Eof));
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn ipv6_loopback() {
    let Ok(l) = tokio::net::TcpListener::bind("[::1]:0").await else {
        eprintln!("SKIP: no IPv6 loopback on this machine");
        return;
    };
    let addr = l.local_addr().unwrap();
    let server = peer::seed_peer(l);
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&vec![b'6'; 1_000_000]).await.unwrap();
    let r = c.graceful_close(Duration::from_secs(5)).await.expect("ok");
    assert!(r.acked() && r.peer_eof());
    assert_eq!(
        peer::within(5, server).await.unwrap(),
        (1_000_000, End::Eof)
    );
}
