//! Promises of the core: AF_UNIX tells the truth, no option value panics, no path
//! blocks a thread whatever `SO_LINGER` the application set, the outcome is reported
//! exactly once and names the phase that really failed, what the docs say holds.
#![cfg(target_os = "linux")]

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::time::timeout;
use tokio_graceful_close::{
    AsyncGracefulClose, CloseErrorKind, CloseOptions, ClosePhase, CorkExt, GracefulIo, OnTimeout,
};

const T: Duration = Duration::from_secs(10);

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// Fills the peer's receive buffer and our send buffer (the peer does not read).
async fn fill<W: AsyncWrite + Unpin>(w: &mut W) {
    let chunk = vec![0u8; 1 << 16];
    while let Ok(res) = timeout(Duration::from_millis(200), w.write(&chunk)).await {
        res.unwrap();
    }
}

/// The peer resets the connection (`SO_LINGER {1,0}` and close) and the RST arrives.
async fn reset_peer(peer: TcpStream) {
    peer.set_zero_linger().unwrap();
    drop(peer);
    tokio::time::sleep(Duration::from_millis(50)).await;
}

fn set_linger(s: &TcpStream, secs: u64) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::from_secs(secs)))
        .unwrap();
}

// ===== AF_UNIX =====

#[tokio::test]
async fn unix_peer_closing_with_our_bytes_unread_is_not_a_confirmation() {
    let (a, mut b) = UnixStream::pair().unwrap();
    b.shutdown().await.unwrap(); // the peer half-closes first
    let mut a = a;
    a.write_all(&[7u8; 1000]).await.unwrap();
    let peer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(b); // without reading
    });
    let res = timeout(T, a.graceful_close(Duration::from_secs(5)))
        .await
        .unwrap();
    peer.await.unwrap();
    match res {
        Ok(r) => panic!("confirmed although the peer read nothing: {r:?}"),
        Err(e) => {
            assert_eq!(e.kind(), CloseErrorKind::PeerReset, "{e}");
            assert!(!e.report().acked(), "{e:?}");
        }
    }
}

#[tokio::test]
async fn unix_peer_that_reads_everything_confirms() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    a.write_all(&[7u8; 100_000]).await.unwrap();
    let peer = tokio::spawn(async move {
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        got.len()
    });
    let r = timeout(T, a.graceful_close(Duration::from_secs(5)))
        .await
        .unwrap()
        .expect("the peer read all and closed");
    assert!(r.acked() && r.peer_eof(), "{r:?}");
    assert_eq!(r.unacked_bytes(), Some(0));
    assert_eq!(peer.await.unwrap(), 100_000);
}

#[tokio::test]
async fn unix_has_no_byte_counts() {
    let (mut a, _b) = UnixStream::pair().unwrap();
    a.write_all(b"four").await.unwrap();
    assert_eq!(
        a.unacked_bytes().unwrap_err().kind(),
        io::ErrorKind::Unsupported
    );
    assert_eq!(
        a.unsent_bytes().unwrap_err().kind(),
        io::ErrorKind::Unsupported
    );
}

#[tokio::test]
async fn unix_abort_on_timeout_reports_no_reset() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    a.write_all(b"four").await.unwrap();
    let opts = CloseOptions::new(Duration::from_millis(200)).on_timeout(OnTimeout::Abort);
    let err = timeout(T, a.graceful_close_with(opts))
        .await
        .unwrap()
        .expect_err("the peer neither reads nor closes");
    assert!(err.kind().is_timeout(), "{err}");
    assert!(!err.report().aborted(), "AF_UNIX has no reset: {err:?}");
    assert_eq!(err.report().unacked_bytes(), None);
    // The peer then reads everything and a clean EOF.
    let mut got = Vec::new();
    timeout(T, b.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"four");
}

// ===== option values =====

/// A `TcpStream` that holds another kind of stream socket (socket2's and std's safe
/// conversions allow it) is drained by copying: discarding without a buffer
/// (`MSG_TRUNC`) is for sockets whose protocol is TCP, checked on the socket itself.
/// (Trusting the Rust type, the drain failed with `EFAULT` here.)
#[tokio::test]
async fn a_tcp_stream_that_is_not_tcp_is_drained_by_copying() {
    let (ours, mut theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    let fd = std::os::fd::OwnedFd::from(ours);
    let ours = TcpStream::from_std(std::net::TcpStream::from(fd)).unwrap();
    let peer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        theirs.write_all(&[b'p'; 100_000]).unwrap();
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        got.len()
    });
    let report = timeout(T, ours.graceful_close(T))
        .await
        .unwrap()
        .expect("drained by copying");
    assert_eq!(report.drained_bytes(), 100_000, "{report:?}");
    assert!(report.peer_eof(), "{report:?}");
    assert_eq!(peer.join().unwrap(), 0);
}

#[tokio::test]
async fn every_duration_up_to_max_is_accepted() {
    for d in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
        let (c, mut s) = pair().await;
        let peer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        let opts = CloseOptions::new(Duration::MAX)
            .poll_interval(d)
            .idle_timeout(Duration::MAX)
            .user_timeout(d);
        let r = timeout(T, c.graceful_close_with(opts))
            .await
            .unwrap_or_else(|_| panic!("hung with {d:?}"))
            .unwrap_or_else(|e| panic!("{d:?}: {e}"));
        assert!(r.acked() && r.peer_eof());
        peer.await.unwrap();
    }
    // The barrier and the adapter too.
    let (mut c, _s) = pair().await;
    c.write_all(b"x").await.unwrap();
    timeout(T, c.wait_acked(Duration::MAX))
        .await
        .unwrap()
        .unwrap();
    let opts = CloseOptions::new(Duration::MAX)
        .poll_interval(Duration::MAX)
        .idle_timeout(Duration::MAX);
    let mut io = GracefulIo::new(c, opts);
    timeout(T, io.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn user_timeout_is_rounded_up_to_whole_milliseconds() {
    let (a, _b) = pair().await;
    let opts = CloseOptions::new(T).user_timeout(Duration::from_micros(1500));
    let mut io = GracefulIo::new(a, opts);
    fill(&mut io).await;
    // Start the close (the shutdown sets it, then sends our FIN), then look at the socket.
    timeout(T, io.shutdown()).await.unwrap().unwrap();
    let set = socket2::SockRef::from(io.get_ref())
        .tcp_user_timeout()
        .unwrap();
    assert_eq!(set, Some(Duration::from_millis(2)));
}

// ===== Corked =====

#[tokio::test]
async fn corked_never_touches_a_descriptor_it_no_longer_holds() {
    let (a, _pa) = pair().await;
    let (b, _pb) = pair().await;
    let mut corked = a.corked().unwrap();
    let old_fd = corked.get_ref().as_raw_fd();
    // Replace the stream; the old one is closed and its number is free.
    drop(std::mem::replace(corked.get_mut(), b));
    // An unrelated socket takes the number and is corked by its owner.
    let (c, pc) = pair().await;
    let (unrelated, _other) = if c.as_raw_fd() == old_fd {
        (c, pc)
    } else {
        (pc, c) // one of the two new sockets reuses it
    };
    assert_eq!(unrelated.as_raw_fd(), old_fd, "the number was not reused");
    socket2::SockRef::from(&unrelated)
        .set_tcp_cork(true)
        .unwrap();
    drop(corked);
    assert!(
        socket2::SockRef::from(&unrelated).tcp_cork().unwrap(),
        "dropping the Corked uncorked an unrelated socket"
    );
}

// ===== exactly once, the right phase, no time driver =====

#[tokio::test]
async fn a_panicking_on_close_runs_once() {
    let (a, _b) = pair().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = calls.clone();
    let opts = CloseOptions::new(Duration::from_millis(200));
    let mut io = GracefulIo::new(a, opts).on_close(move |_| {
        calls2.fetch_add(1, Ordering::SeqCst);
        panic!("callback panics");
    });
    // The peer resets: our shutdown fails and reports it from `poll_shutdown`.
    reset_peer(_b).await;
    let panicked = poll_fn(|cx| {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut io).poll_shutdown(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(_)) => Poll::Ready(false),
            Err(_) => Poll::Ready(true),
        }
    })
    .await;
    assert!(panicked, "the callback's panic reaches the caller");
    // Polling again is fine and gives the same outcome.
    let again = timeout(T, io.shutdown()).await.unwrap().unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::ConnectionReset);
    drop(io);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // In the crate's background task: caught, logged, once.
    let (a, b) = pair().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let calls2 = calls.clone();
    let io = GracefulIo::new(a, CloseOptions::new(T)).on_close(move |_| {
        calls2.fetch_add(1, Ordering::SeqCst);
        panic!("callback panics");
    });
    drop(b);
    drop(io);
    let deadline = Instant::now() + T;
    while calls.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

type Seen = Arc<Mutex<Option<Result<(bool, ClosePhase), String>>>>;

fn recording(stream: TcpStream, opts: CloseOptions) -> (GracefulIo<TcpStream>, Seen) {
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let io = GracefulIo::new(stream, opts).on_close(move |res| {
        *seen2.lock().unwrap() = Some(match res {
            Ok(r) => Ok((r.acked(), ClosePhase::Drain)),
            Err(e) => Err(format!(
                "{e} [acked={} phase={:?}]",
                e.report().acked(),
                e.phase()
            )),
        });
    });
    (io, seen)
}

#[test]
fn a_drop_after_the_shutdown_reports_the_phase_it_was_in() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (io, seen, _b) = rt.block_on(async {
        let (a, b) = pair().await;
        let (mut io, seen) = recording(a, CloseOptions::new(T));
        io.write_all(b"answer").await.unwrap();
        timeout(T, io.shutdown()).await.unwrap().unwrap(); // FIN sent
        (io, seen, b)
    });
    drop(io); // outside the runtime: closed at once
    let msg = seen.lock().unwrap().clone().unwrap().unwrap_err();
    assert!(msg.contains("waiting for the peer to acknowledge"), "{msg}");
    assert!(!msg.contains("sending our FIN"), "{msg}");
}

/// Tokio's convention, as `tokio::time::sleep`: a close that must wait on a runtime
/// without timers panics with Tokio's own message (no `catch_unwind` in the crate).
#[test]
fn without_the_time_driver_a_waiting_close_panics_with_tokios_message() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(async {
            let (c, _s) = pair().await;
            let _ = c.graceful_close(T).await;
        })
    }))
    .expect_err("a close that must wait cannot without timers");
    let msg = panicked
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panicked.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("timers are disabled"), "{msg}");
    rt.block_on(async {
        // The adapter's background close: its task panics, the callback says so.
        let (a, _b) = pair().await;
        let (io, seen) = recording(a, CloseOptions::new(T));
        drop(io);
        for _ in 0..1000 {
            if seen.lock().unwrap().is_some() {
                break;
            }
            tokio::task::yield_now().await;
        }
        let msg = seen.lock().unwrap().clone().expect("reported").unwrap_err();
        assert!(msg.contains("time driver"), "{msg}");
    });
}

// ===== nothing blocks a thread =====

#[tokio::test]
async fn an_unpolled_close_dropped_with_an_application_linger_does_not_block() {
    let (mut a, _b) = pair().await;
    fill(&mut a).await;
    set_linger(&a, 3);
    let close = a.graceful_close(T);
    let start = Instant::now();
    drop(close);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );

    // Spawned, then aborted before it ran.
    let (mut a, _b) = pair().await;
    fill(&mut a).await;
    set_linger(&a, 3);
    let start = Instant::now();
    let task = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let h = rt.spawn(a.graceful_close(T));
        h.abort();
        drop(rt); // drops the unpolled future
    });
    timeout(T, task).await.unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn a_close_polled_outside_a_runtime_does_not_block() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, _b) = rt.block_on(async {
        let (mut a, b) = pair().await;
        fill(&mut a).await;
        set_linger(&a, 3);
        (a, b)
    });
    let mut close = pin!(a.graceful_close(T));
    let start = Instant::now();
    let mut cx = Context::from_waker(Waker::noop());
    match close.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), CloseErrorKind::Io, "{e}"),
        other => panic!("expected an error outside a runtime: {other:?}"),
    }
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    let _guard = rt.enter();
}

// ===== what the docs say =====

#[tokio::test]
async fn drained_bytes_include_input_left_unread_before_the_close() {
    let (c, mut s) = pair().await;
    s.write_all(&[1u8; 1000]).await.unwrap();
    s.shutdown().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = timeout(T, c.graceful_close(T)).await.unwrap().unwrap();
    assert_eq!(r.drained_bytes(), 1000);
}

#[tokio::test]
async fn unacked_bytes_after_a_reset_are_what_was_outstanding() {
    let (mut c, s) = pair().await;
    fill(&mut c).await;
    let peer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.abort().unwrap();
    });
    let err = timeout(T, c.graceful_close(T))
        .await
        .unwrap()
        .expect_err("reset");
    peer.await.unwrap();
    assert_eq!(err.kind(), CloseErrorKind::PeerReset, "{err}");
    assert!(
        matches!(err.report().unacked_bytes(), Some(n) if n > 0),
        "{err:?}"
    );
}
