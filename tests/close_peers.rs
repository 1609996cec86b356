//! Hostile and odd peers, each with its expected outcome.
// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[path = "support/peer.rs"]
mod peer;
#[path = "support/process.rs"]
mod process;

use std::time::{Duration, Instant};

use peer::End;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_graceful_close::{
    AsyncGracefulClose, CloseErrorKind, CloseOptions, ClosePhase, OnTimeout, PeerEof,
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
        (err.kind(), err.phase()),
        (CloseErrorKind::TimedOut, ClosePhase::Drain),
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
    let opts = CloseOptions::new(Duration::from_secs(10)).peer_eof(PeerEof::NotRequired);
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
    let opts = CloseOptions::new(Duration::from_millis(600)).peer_eof(PeerEof::NotRequired);
    let err = c.graceful_close_with(opts).await.expect_err("never acked");
    assert_eq!(
        (err.kind(), err.phase()),
        (CloseErrorKind::TimedOut, ClosePhase::AckWait),
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
    let rss_before = process::rss_kib();
    let limit = 32 << 20;
    let opts = CloseOptions::new(Duration::from_secs(20)).drain_limit(limit);
    let err = c.graceful_close_with(opts).await.expect_err("flood");
    assert_eq!(err.kind(), CloseErrorKind::DrainLimit, "{err}");
    assert!(err.report().drained_bytes() > limit);
    assert!(err.report().elapsed() < Duration::from_secs(10));
    let grew = process::rss_kib().saturating_sub(rss_before);
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
        (err.kind(), err.phase()),
        (CloseErrorKind::TimedOut, ClosePhase::Drain),
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

/// A peer that resets while a large transfer is still queued: seen by a close that
/// waits for the peer's EOF before it looks at the send queue (a bare stream's
/// default), and by one that looks at both at once (a server's), whose drain meets the
/// reset.
// Windows: the peer resets (Wine sends no reset).
#[cfg(not(windows))]
#[tokio::test]
async fn peer_reset_mid_transfer_is_reported_promptly() {
    for eof in [PeerEof::Required, PeerEof::IfSending] {
        peer_reset_mid_transfer(CloseOptions::new(Duration::from_secs(20)).peer_eof(eof)).await;
    }
}

async fn peer_reset_mid_transfer(opts: CloseOptions) {
    let (c, s) = peer::pair().await;
    let queued = peer::fill(&c);
    assert!(queued > 100_000);
    let closing = tokio::spawn(c.graceful_close_with(opts));
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

// ===== A streaming peer: the drain goes to batches (Linux, `SO_RCVLOWAT`) =====

/// Sends `bytes` as fast as the socket takes them.
async fn stream_bytes(s: &mut TcpStream, bytes: usize) {
    let chunk = vec![0x5Au8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let k = left.min(chunk.len());
        s.write_all(&chunk[..k]).await.unwrap();
        left -= k;
    }
}

/// After a streamed megabyte, the peer trickles small pieces far below a batch, each
/// within the idle timeout, then closes: it was never silent, and every byte counts.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn streaming_peer_that_then_trickles_is_not_called_silent() {
    let (c, mut s) = peer::pair().await;
    let peer = tokio::spawn(async move {
        stream_bytes(&mut s, 1 << 20).await;
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            s.write_all(&[7u8; 1000]).await.unwrap();
        }
        s.shutdown().await.unwrap();
        s
    });
    let opts = CloseOptions::new(Duration::from_secs(20)).idle_timeout(Duration::from_millis(500));
    let report = c
        .graceful_close_with(opts)
        .await
        .expect("the peer kept sending");
    assert!(report.peer_eof());
    assert_eq!(report.drained_bytes(), (1 << 20) + 8 * 1000);
    drop(peer::within(10, peer).await.unwrap());
}

/// A streamed megabyte, 200 ms later a small tail, then silence: the idle timeout ends
/// the close one idle period after the tail arrived (not after the close found it),
/// with every byte counted.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn streaming_peer_gone_silent_hits_the_idle_timeout_on_time() {
    let (c, mut s) = peer::pair().await;
    let tail = 1234;
    let peer = tokio::spawn(async move {
        stream_bytes(&mut s, 1 << 20).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        s.write_all(&vec![1u8; tail]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        s
    });
    let idle = Duration::from_secs(1);
    let opts = CloseOptions::new(Duration::from_secs(20)).idle_timeout(idle);
    let err = c.graceful_close_with(opts).await.expect_err("silent peer");
    assert_eq!(err.kind(), CloseErrorKind::IdleTimeout, "{err}");
    assert_eq!(err.report().drained_bytes(), (1 << 20) + tail as u64);
    let e = err.report().elapsed();
    // The silence starts ~200 ms in and ends ~1.2 s in. Counted from when the close
    // found the tail (its first idle deadline, ~1 s in) it would end ~2 s in.
    assert!(
        e >= Duration::from_millis(1100) && e < Duration::from_millis(1700),
        "{e:?}"
    );
    peer.abort();
}

/// A peer that sends 48 KiB after our FIN, then waits, counts as streaming: the drain
/// asks the kernel for batches (`SO_RCVLOWAT` above 1). A client uploading over a slow
/// link sends one segment per wakeup until then; waiting for 256 KiB, as the drain once
/// did, cost some 180 wakeups per upload (`lab/benches/real_servers.py`).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_peer_streaming_48_kib_is_drained_in_batches() {
    use std::os::fd::AsRawFd;
    let (c, mut s) = peer::pair().await;
    let fd = c.as_raw_fd();
    stream_bytes(&mut s, 48 << 10).await;
    let close = tokio::spawn(c.graceful_close(Duration::from_secs(20)));
    // The close owns the socket until the peer's EOF, which comes only after this look.
    let mut lowat = 1;
    let t = Instant::now();
    while lowat <= 1 && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        lowat = rcvlowat(fd);
    }
    s.shutdown().await.unwrap();
    let report = peer::within(10, close)
        .await
        .unwrap()
        .expect("the peer closed");
    assert!(
        lowat > 1,
        "no batches after {} bytes",
        report.drained_bytes()
    );
    assert_eq!(report.drained_bytes(), 48 << 10);
    assert!(report.peer_eof());
}

/// `getsockopt(SO_RCVLOWAT)`.
#[cfg(target_os = "linux")]
fn rcvlowat(fd: std::os::fd::RawFd) -> libc::c_int {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // Safety: `fd` is open (the close that owns it waits for the peer's EOF), and `v`
    // and `len` are valid out-pointers of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    v
}

/// A streaming peer that passes the drain limit in a last burst smaller than a batch,
/// then stays open: the excess is seen at once, not at the deadline.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn streaming_peer_just_over_the_limit_is_seen_at_once() {
    let (c, mut s) = peer::pair().await;
    let limit: u64 = 1 << 20;
    let peer = tokio::spawn(async move {
        stream_bytes(&mut s, 900 << 10).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stream_bytes(&mut s, 200 << 10).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        s
    });
    let opts = CloseOptions::new(Duration::from_secs(8)).drain_limit(limit);
    let t = Instant::now();
    let err = c
        .graceful_close_with(opts)
        .await
        .expect_err("over the limit");
    assert_eq!(err.kind(), CloseErrorKind::DrainLimit, "{err}");
    assert!(err.report().drained_bytes() > limit);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    peer.abort();
}

/// A peer that sent nothing more but is still taking our response, slowly, is not
/// silent: its acknowledgements are progress, and the idle timeout (the peer's silence)
/// must not cut the delivery short. Found over a crowded 20 Mbit/s link: 200 clients at
/// once, each 413 taking seconds to arrive, and closes that gave up after 5 s of no
/// data from a peer that was acknowledging all along.
// Linux: the kernel's time of the last acknowledgement (`TCP_INFO`).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_peer_still_acknowledging_our_data_is_not_idle() {
    let (mut c, mut s) = peer::pair().await;
    // The peer's receive buffer small and fixed: what it holds unread when our last
    // byte is acknowledged (its kernel took it) is read within a few of its 20 ms
    // steps, well inside the idle bound, however slow the machine. (Autotuned, it
    // could hold more than the 200 ms of idle bound lets it read: a flaky test.)
    socket2::SockRef::from(&s)
        .set_recv_buffer_size(64 << 10)
        .unwrap();
    // Whatever fits in the two buffers within a short while: megabytes on loopback.
    let data = vec![5u8; 16 << 20];
    let _ = tokio::time::timeout(Duration::from_millis(300), c.write_all(&data)).await;
    let queued = c.unacked_bytes().unwrap();
    // The peer reads 32 KiB every 20 ms (1.6 MB/s): its window reopens, our data moves
    // and is acknowledged, but the peer sends no data.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 << 10];
        let mut total = 0usize;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let t = Instant::now();
    let opts = CloseOptions::new(Duration::from_secs(60)).idle_timeout(Duration::from_millis(200));
    let res = c.graceful_close_with(opts).await;
    let took = t.elapsed();
    let read = peer::within(60, reader).await.unwrap();
    let report = res.unwrap_or_else(|e| panic!("{e} after {took:?} ({queued} bytes queued)"));
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    assert!(read >= queued, "{read} of {queued} bytes");
    // What makes the test mean something: the delivery outlasted the idle timeout.
    assert!(
        took > Duration::from_millis(600),
        "{took:?} for {queued} bytes"
    );
}

/// A peer that takes nothing (its window stays shut) holds a close that is still
/// delivering until the deadline, not the idle timeout (its silence may be the path's);
/// `user_timeout` is the bound for it: the kernel gives up probing the shut window.
// Linux: `TCP_USER_TIMEOUT`.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_peer_that_takes_nothing_is_bounded_by_the_user_timeout() {
    let (mut c, s) = peer::pair().await;
    let data = vec![5u8; 16 << 20];
    let _ = tokio::time::timeout(Duration::from_millis(300), c.write_all(&data)).await;
    let t = Instant::now();
    let opts = CloseOptions::new(Duration::from_secs(30))
        .idle_timeout(Duration::from_millis(300))
        .user_timeout(Duration::from_secs(2));
    let err = c
        .graceful_close_with(opts)
        .await
        .expect_err("the peer takes nothing");
    let took = t.elapsed();
    drop(s);
    assert_eq!(
        err.kind(),
        CloseErrorKind::RetransmitTimeout,
        "{err} after {took:?}"
    );
    // The kernel counts from its last acknowledged progress, a moment before the close.
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(15),
        "{took:?}"
    );
}
