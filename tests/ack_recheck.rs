//! How soon an acknowledgement is seen when no readiness edge can announce it: after
//! the peer's EOF (both directions shut, where Tokio keeps the stream ready for good)
//! the close looks at the send queue again within round trips, yielding to the
//! scheduler instead of waiting for Tokio's millisecond timer; the `wait_acked` barrier,
//! whose acknowledgement may be far away, takes a few such looks, then the timer.
//!
//! Each run holds our bytes back behind a peer that does not read (a small receive
//! window), so the first look certainly finds them unacknowledged; then the peer reads
//! everything, which takes a few hundred microseconds on loopback. A re-check on Tokio's
//! timer cannot come sooner than 1 ms after the first look; half-round-trip re-checks
//! see the acknowledgement well before. Best of several runs, so that a loaded machine
//! does not fail the test.
// Linux only: the round-trip time comes from `TCP_INFO`; elsewhere the re-checks
// still start at 1 ms.
#![cfg(target_os = "linux")]

#[path = "support/peer.rs"]
mod peer;

use std::io::Read;
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_graceful_close::AsyncGracefulClose;
use tokio_test::{assert_pending, task};

const RUNS: usize = 20;

/// Below Tokio's timer resolution, with room for a slow wakeup.
const BOUND: Duration = Duration::from_micros(900);
/// Two ticks of Tokio's timer and a half, for the barrier.
const BARRIER_BOUND: Duration = Duration::from_micros(2500);

/// A connection whose peer (a blocking socket on its own thread) has a small receive
/// window and reads nothing until told; then it reads to EOF. `peer_fin`: the peer
/// half-closes first. Returns our side, with some bytes written and held back, and the
/// sender that starts the peer's reading.
async fn held_back(peer_fin: bool) -> (TcpStream, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    // Inherited by the accepted socket: its window stays a few KiB.
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind(
        &"127.0.0.1:0"
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.listen(1).unwrap();
    let l: std::net::TcpListener = sock.into();
    let addr = l.local_addr().unwrap();
    let ours = TcpStream::connect(addr).await.unwrap();
    let (mut p, _) = l.accept().unwrap();
    if peer_fin {
        p.shutdown(Shutdown::Write).unwrap();
        // Our side sees the peer's FIN before the close starts.
        peer::within(5, ours.readable()).await.unwrap();
    }
    let n = ours.try_write(&[b'x'; 32 * 1024]).unwrap();
    assert!(n > 8192, "only {n} bytes queued");
    let (go, wait) = mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        wait.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut buf = [0u8; 64 * 1024];
        p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        while p.read(&mut buf).unwrap() > 0 {}
    });
    (ours, go, reader)
}

/// The close after the peer's EOF: the peer half-closed, our data and FIN wait behind
/// its window; the close ends as soon as the peer has read them.
#[tokio::test]
async fn ack_after_the_peers_eof_is_seen_within_round_trips() {
    let mut took = Vec::new();
    for _ in 0..RUNS {
        let (ours, go, reader) = held_back(true).await;
        let mut close = task::spawn(ours.graceful_close(Duration::from_secs(5)));
        // Our FIN is queued, the peer's EOF read, our bytes unacknowledged.
        assert_pending!(close.poll());
        let t = Instant::now();
        go.send(()).unwrap();
        let report = peer::within(5, close).await.expect("delivered");
        took.push(t.elapsed());
        assert!(report.acked() && report.peer_eof(), "{report:?}");
        reader.join().unwrap();
    }
    let best = took.iter().min().unwrap();
    println!("close after the peer's EOF, peer reading → close done: {took:?}");
    assert!(*best < BOUND, "best of {RUNS}: {best:?} ({took:?})");
}

/// The barrier: `wait_acked` returns within a tick or two of Tokio's timer once the
/// peer has read what we wrote (its looks that yield are spent while the peer holds
/// back; a barrier may wait long, so it does not spin).
#[tokio::test]
async fn wait_acked_sees_the_ack_within_round_trips() {
    let mut took = Vec::new();
    for _ in 0..RUNS {
        let (mut ours, go, reader) = held_back(false).await;
        let mut wait = task::spawn(ours.wait_acked(Duration::from_secs(5)));
        assert_pending!(wait.poll());
        let t = Instant::now();
        go.send(()).unwrap();
        peer::within(5, wait).await.expect("acknowledged");
        took.push(t.elapsed());
        drop(ours);
        reader.join().unwrap();
    }
    let best = took.iter().min().unwrap();
    println!("wait_acked, peer reading → acknowledged: {took:?}");
    assert!(*best < BARRIER_BOUND, "best of {RUNS}: {best:?} ({took:?})");
}
