//! Regressions, one test per defect a user met, on real loopback sockets and through
//! the public API only:
//!
//! - a close whose idle bound is already over while our bytes are still unacknowledged
//!   spins on its runtime thread until its deadline instead of waiting;
//! - the idle bound of a [`GracefulIo`] counts from `poll_shutdown`, not from the drop
//!   that starts watching the peer: a tunnel half-closed for longer than the idle
//!   timeout is cut (and its peer reset) the moment it is dropped;
//! - the lingering cap of a [`CloseTracker`] is charged by a close that never lingers
//!   (the peer's EOF came before the acknowledgement), which evicts one that really
//!   does;
//! - a close polled again after it completed panicked when it owned the stream and
//!   answered with an error when it borrowed it.
#![cfg(target_os = "linux")]

#[path = "support/peer.rs"]
mod peer;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{interval, sleep, MissedTickBehavior};
use tokio_graceful_close::{
    AsyncGracefulClose, CloseError, CloseErrorKind, CloseOptions, CloseReport, CloseTracker,
    GracefulIo, OnTimeout,
};

/// A close's outcome as the tests compare it: the report, or the error's kind and text.
type Outcome = Result<CloseReport, (CloseErrorKind, String)>;

/// A server connection over `stream`, tracked by `tracker` if any, whose outcome goes
/// to the returned channel.
fn wrap(
    stream: TcpStream,
    opts: CloseOptions,
    tracker: Option<&CloseTracker>,
) -> (GracefulIo<TcpStream>, mpsc::UnboundedReceiver<Outcome>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut io = GracefulIo::new(stream, opts);
    if let Some(tracker) = tracker {
        io = io.tracked(tracker);
    }
    let io = io.on_close(move |res: &Result<CloseReport, CloseError>| {
        let _ = tx.send(match res {
            Ok(report) => Ok(report.clone()),
            Err(e) => Err((e.kind(), e.to_string())),
        });
    });
    (io, rx)
}

/// The outcome on `rx`, within 10 s.
async fn next(rx: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    peer::within(10, rx.recv())
        .await
        .expect("the callback was dropped without reporting")
}

/// A peer that sends `chunk` bytes every `every` and reads what comes, until told to
/// stop; then it hands its stream back with the first error its writes or reads met.
/// A reset from our side shows there: after our FIN, Linux reports it to the peer's
/// next write as `EPIPE`.
struct Sender {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(TcpStream, u64, Option<io::Error>)>,
}

impl Sender {
    fn start(mut s: TcpStream, chunk: usize, every: Duration) -> Self {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let data = vec![b'u'; chunk];
            let mut buf = vec![0u8; 16 * 1024];
            let mut tick = interval(every);
            let (mut sent, mut eof) = (0u64, false);
            let err = loop {
                tokio::select! {
                    _ = &mut stopped => break None,
                    _ = tick.tick() => match s.write_all(&data).await {
                        Ok(()) => sent += data.len() as u64,
                        Err(e) => break Some(e),
                    },
                    r = s.read(&mut buf), if !eof => match r {
                        Ok(0) => eof = true,
                        Ok(_) => {}
                        Err(e) => break Some(e),
                    },
                }
            };
            (s, sent, err)
        });
        Sender { stop, task }
    }

    /// Stops sending: the stream, the bytes sent, the first error met.
    async fn stop(self) -> (TcpStream, u64, Option<io::Error>) {
        let _ = self.stop.send(());
        peer::within(10, self.task).await.unwrap()
    }
}

/// A close that has nothing left to wait for but the acknowledgement of bytes the peer
/// does not take, with an idle timeout of zero (already over), waits for them without
/// holding its current-thread runtime: a 10 ms ticker beside it ticks at least 20 times
/// during its 1 s deadline, and the close ends `TimedOut` within 3 s. (It spun instead:
/// the idle bound, re-armed at "now + 0" while bytes were unacknowledged, was due again
/// at once, and the ticker never ran until the deadline.)
#[test]
fn a_close_waiting_for_unacknowledged_bytes_lets_its_runtime_run() {
    let (done, result) = std::sync::mpsc::channel();
    // The runtime on a thread of its own, so that a close that never yields fails this
    // test instead of hanging the suite.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = done.send(rt.block_on(close_beside_a_ticker()));
    });
    let (ticks, took, res) = result
        .recv_timeout(Duration::from_secs(20))
        .expect("the runtime's thread never came back");
    println!("close: {res:?} after {took:?}; {ticks} ticks of 10 ms meanwhile");
    assert!(
        ticks >= 20,
        "the close held the runtime: {ticks} ticks of 10 ms during its {took:?}"
    );
    assert_eq!(
        res.as_ref().err(),
        Some(&CloseErrorKind::TimedOut),
        "{res:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// Closes a stream whose bytes stay unacknowledged (1 s deadline, zero idle timeout)
/// beside a 10 ms ticker; returns the ticks seen during the close, its length, and how
/// it ended.
async fn close_beside_a_ticker() -> (usize, Duration, Result<CloseReport, CloseErrorKind>) {
    let (listener, addr) = peer::listener().await;
    // A peer with a small receive buffer (its window is set at the handshake) that
    // never reads.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let (peer, ours) = tokio::join!(sock.connect(addr), listener.accept());
    let (_peer, (ours, _)) = (peer.unwrap(), ours.unwrap());
    socket2::SockRef::from(&ours)
        .set_send_buffer_size(4096)
        .unwrap();
    // Write until the kernel takes no more: the peer's window is shut.
    let written = peer::fill(&ours);
    assert!(written > 0);
    let unacked = ours.unacked_bytes().unwrap();
    assert!(unacked > 0, "nothing left unacknowledged");

    let ticks = Arc::new(AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            let mut tick = interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    // The ticker's first, immediate tick.
    while ticks.load(Ordering::Relaxed) == 0 {
        tokio::task::yield_now().await;
    }
    let before = ticks.load(Ordering::Relaxed);
    let opts = CloseOptions::new(Duration::from_secs(1)).idle_timeout(Duration::ZERO);
    let t = Instant::now();
    let res = ours.graceful_close_with(opts).await;
    let took = t.elapsed();
    // Read at once: a ticker starved until now has had no turn since.
    let during = ticks.load(Ordering::Relaxed) - before;
    ticker.abort();
    (during, took, res.map_err(|e| e.kind()))
}

/// A tunnel over a `GracefulIo`: the server shuts down its side (our FIN) and keeps
/// reading what the peer sends, 100 bytes every 200 ms, for 6 s, longer than the 5 s
/// idle timeout of a server connection, then drops it. Returns, 1 s after the drop,
/// the outcome reported by then (if any) and the first error the peer's writes or reads
/// met; then the peer shuts down its side and the close's final outcome.
async fn tunnel_dropped_after_a_long_half_close(
    opts: CloseOptions,
) -> (Option<Outcome>, Option<io::Error>, Outcome) {
    let (client, server) = peer::pair().await;
    let (mut io, mut rx) = wrap(server, opts, None);
    io.shutdown().await.unwrap();
    let sender = Sender::start(client, 100, Duration::from_millis(200));
    // The server relays what comes, then lets go between two of the peer's chunks
    // (the drop finds nothing unread, as a relay's last read left it).
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let mut got = 0usize;
    while start.elapsed() < Duration::from_secs(6) || got % 100 != 0 {
        match peer::within(10, io.read(&mut buf)).await {
            Ok(0) => panic!("the peer closed its side early"),
            Ok(n) => got += n,
            Err(e) => panic!("the relay's read failed: {e}"),
        }
    }
    drop(io);
    sleep(Duration::from_secs(1)).await;
    let early = rx.try_recv().ok();
    let (mut client, sent, err) = sender.stop().await;
    println!(
        "relayed {got} bytes, the peer sent {sent}; 1 s after the drop: {early:?}, peer: {err:?}"
    );
    // The peer is done: its FIN ends the drain.
    let _ = client.shutdown().await;
    let (_, end) = peer::within(10, peer::read_to_end(&mut client)).await;
    println!("the peer's read ended with {end:?}");
    let last = match &early {
        Some(o) => o.clone(),
        None => next(&mut rx).await,
    };
    (early, err, last)
}

/// The tunnel's peer was never silent for more than 200 ms: its close, started by the
/// drop 6 s after the shutdown, drains it for as long as it sends (a peer still sending
/// is drained to its EOF) and ends `Ok` at its EOF. No outcome 1 s after the drop, and
/// every write of the peer meanwhile succeeds. (The idle bound counted from the
/// shutdown: the close ended `IdleTimeout` at once, and the peer's next write was
/// answered with RST and the one after it failed, `EPIPE`.)
#[tokio::test]
async fn a_tunnel_half_closed_longer_than_the_idle_timeout_is_not_cut_at_its_drop() {
    let opts = CloseOptions::new(Duration::from_secs(30));
    let (early, err, last) = tunnel_dropped_after_a_long_half_close(opts).await;
    assert!(
        early.is_none() && err.is_none(),
        "1 s after the drop, the peer never silent: outcome {early:?}, the peer's I/O {err:?}"
    );
    let report = last.expect("the peer closed its side: a delivered close");
    assert!(report.peer_eof() && report.acked(), "{report:?}");
}

/// The same tunnel with [`OnTimeout::Abort`]: no bound was hit, so no reset. The peer's
/// writes after the drop succeed and the close ends `Ok`, not aborted. (The idle bound
/// counted from the shutdown: the close aborted with RST at the drop and the peer's
/// next write failed, `EPIPE`: Linux's error for a reset met after the peer's FIN.)
#[tokio::test]
async fn an_aborting_tunnel_half_closed_longer_than_the_idle_timeout_is_not_reset() {
    let opts = CloseOptions::new(Duration::from_secs(30)).on_timeout(OnTimeout::Abort);
    let (early, err, last) = tunnel_dropped_after_a_long_half_close(opts).await;
    assert!(
        err.is_none(),
        "the peer, never silent, was reset: {err:?} (outcome 1 s after the drop: {early:?})"
    );
    assert!(early.is_none(), "1 s after the drop: {early:?}");
    let report = last.expect("the peer closed its side: a delivered close");
    assert!(
        report.peer_eof() && report.acked() && !report.aborted(),
        "{report:?}"
    );
}

/// A `CloseTracker` capped at one lingering close. A's client uploads 1 KiB every 50 ms
/// and never closes: A's close lingers (our answer and FIN acknowledged, the client
/// still sending). B's keep-alive client reads its answer and closes its side before
/// the server closes: B's close finds that EOF queued and ends at once, `Ok`, without
/// ever lingering. A is not evicted for it: no outcome 500 ms after B's, its client's
/// writes still succeed, and once that client closes its side A ends `Ok`. (B's
/// acknowledgement counted as lingering: past the cap, A was `Evicted`, closed under
/// its client, whose next write was answered with RST and the one after it failed,
/// `EPIPE`.)
#[tokio::test]
async fn a_close_that_ends_at_once_does_not_evict_a_lingering_one() {
    let tracker = CloseTracker::new();
    tracker.set_max_lingering(1);
    let opts = CloseOptions::new(Duration::from_secs(30));
    let (listener, addr) = peer::listener().await;

    // A: answered, shut down and dropped while its client goes on uploading.
    let (client_a, server_a) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (mut io_a, mut rx_a) = wrap(server_a.unwrap().0, opts, Some(&tracker));
    let uploader = Sender::start(client_a.unwrap(), 1024, Duration::from_millis(50));
    let mut head = [0u8; 1024];
    peer::within(10, io_a.read_exact(&mut head)).await.unwrap();
    io_a.write_all(b"413 too large\n").await.unwrap();
    io_a.shutdown().await.unwrap();
    drop(io_a);
    // Time for A's answer and FIN to be acknowledged: A lingers.
    sleep(Duration::from_millis(500)).await;
    assert!(rx_a.try_recv().is_err(), "A ended before B started");

    // B: request, answer, the client's EOF, then the server's close.
    let (client_b, server_b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (mut client_b, (mut io_b, mut rx_b)) = (
        client_b.unwrap(),
        wrap(server_b.unwrap().0, opts, Some(&tracker)),
    );
    client_b.write_all(b"GET\n").await.unwrap();
    let mut req = [0u8; 4];
    peer::within(10, io_b.read_exact(&mut req)).await.unwrap();
    io_b.write_all(b"200 ok\n").await.unwrap();
    let mut answer = [0u8; 7];
    peer::within(10, client_b.read_exact(&mut answer))
        .await
        .unwrap();
    client_b.shutdown().await.unwrap();
    let mut rest = [0u8; 16];
    let n = peer::within(10, io_b.read(&mut rest)).await.unwrap();
    assert_eq!(n, 0, "B's client closed its side");
    io_b.shutdown().await.unwrap();
    drop(io_b);
    let b = next(&mut rx_b).await;
    let (_, end) = peer::within(10, peer::read_to_end(&mut client_b)).await;
    assert_eq!(end, peer::End::Eof);
    assert!(b.as_ref().is_ok_and(CloseReport::peer_eof), "B: {b:?}");

    // A is still lingering, its client still sending.
    sleep(Duration::from_millis(500)).await;
    let a_early = rx_a.try_recv().ok();
    let (mut client_a, sent, err) = uploader.stop().await;
    println!("A's client sent {sent} bytes; A: {a_early:?}, A's client: {err:?}");
    assert!(
        a_early.is_none() && err.is_none(),
        "A was ended by B's close: A's outcome {a_early:?}, A's client's I/O {err:?}"
    );
    // A's client is done: A ends, delivered.
    client_a.shutdown().await.unwrap();
    let (_, end) = peer::within(10, peer::read_to_end(&mut client_a)).await;
    assert_eq!(end, peer::End::Eof);
    let a = next(&mut rx_a).await;
    let report = a.expect("A's client closed its side: a delivered close");
    assert!(report.peer_eof() && report.acked(), "{report:?}");
    tracker.close();
    peer::within(10, tracker.wait()).await;
}

/// A close polled again after it completed answers with an error saying so, whether
/// it owned the stream (`graceful_close`) or borrowed it (`wait_acked`); the first
/// panicked, the second did not.
#[tokio::test]
async fn a_close_polled_after_it_completed_says_so() {
    use std::future::Future;
    use std::pin::Pin;

    /// Polls `fut` to its end, then once more.
    async fn twice<F: Future + Unpin>(mut fut: F) -> F::Output {
        let _ = (&mut fut).await;
        std::future::poll_fn(|cx| Pin::new(&mut fut).poll(cx)).await
    }

    let (mut ours, mut theirs) = peer::pair().await;
    ours.write_all(b"hello").await.unwrap();
    let again = twice(ours.wait_acked(Duration::from_secs(5))).await;
    let e = again.expect_err("a barrier polled after it completed");
    assert!(e.to_string().contains("polled after it completed"), "{e}");

    let mut buf = [0; 5];
    theirs.read_exact(&mut buf).await.unwrap();
    drop(theirs);
    let again = twice(ours.graceful_close(Duration::from_secs(5))).await;
    let e = again.expect_err("a close polled after it completed");
    assert_eq!(e.kind(), CloseErrorKind::Io);
    assert!(e.to_string().contains("polled after it completed"), "{e}");
}
