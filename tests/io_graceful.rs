//! `GracefulIo` on real loopback sockets: forwarding, the graceful `poll_shutdown`,
//! the background close on drop, the plain close outside a runtime, `into_inner`.
// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[path = "support/outcome.rs"]
mod outcome;

use std::io::{self, IoSlice};
#[cfg(unix)]
use std::os::fd::{AsFd, AsRawFd};
#[cfg(target_os = "linux")]
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outcome::{outcome_of, Outcome};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_graceful_close::{CloseError, CloseOptions, CloseReport, GracefulIo};

const T: Duration = Duration::from_secs(10);

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

/// A `GracefulIo` whose outcomes go to the returned channel.
fn wrap(
    stream: TcpStream,
    opts: CloseOptions,
) -> (GracefulIo<TcpStream>, mpsc::UnboundedReceiver<Outcome>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let io =
        GracefulIo::new(stream, opts).on_close(move |res: &Result<CloseReport, CloseError>| {
            let _ = tx.send(outcome_of(res));
        });
    (io, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    timeout(T, rx.recv())
        .await
        .expect("no close outcome reported")
        .expect("callback dropped without reporting")
}

/// Nothing more arrives on `rx` within a short while.
async fn no_more(rx: &mut mpsc::UnboundedReceiver<Outcome>) {
    match timeout(Duration::from_millis(300), rx.recv()).await {
        Err(_) | Ok(None) => {}
        Ok(Some(o)) => panic!("unexpected second outcome: {o:?}"),
    }
}

#[tokio::test]
async fn forwards_reads_and_vectored_writes() {
    let (a, mut b) = pair().await;
    let (mut io, _rx) = wrap(a, CloseOptions::new(T));
    assert_eq!(io.is_write_vectored(), io.get_ref().is_write_vectored());
    assert!(io.is_write_vectored(), "TcpStream writes vectored");
    let bufs = [
        IoSlice::new(b"hello "),
        IoSlice::new(b"vectored "),
        IoSlice::new(b"world"),
    ];
    // One call, one writev: all 20 bytes fit an empty loopback socket.
    let n = timeout(T, io.write_vectored(&bufs)).await.unwrap().unwrap();
    assert_eq!(n, 20, "the slices were written together");
    io.flush().await.unwrap();
    let mut got = [0u8; 20];
    timeout(T, b.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"hello vectored world");

    b.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    timeout(T, io.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"ping");

    #[cfg(unix)]
    {
        assert_eq!(io.as_raw_fd(), io.get_ref().as_raw_fd());
        assert_eq!(io.as_fd().as_raw_fd(), io.get_mut().as_raw_fd());
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::{AsRawSocket, AsSocket};
        assert_eq!(io.as_raw_socket(), io.get_ref().as_raw_socket());
        assert_eq!(io.as_socket().as_raw_socket(), io.get_mut().as_raw_socket());
    }
}

/// Fills the peer's receive buffer and our send buffer (the peer does not read).
async fn fill(io: &mut GracefulIo<TcpStream>) -> usize {
    let chunk = vec![0u8; 1 << 16];
    let mut n = 0;
    loop {
        match timeout(Duration::from_millis(200), io.write(&chunk)).await {
            Ok(Ok(k)) => n += k,
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => return n,
        }
    }
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn shutdown_sends_the_fin_and_the_drop_confirms_delivery() {
    let (a, mut b) = pair().await;
    let (mut io, mut rx) = wrap(a, CloseOptions::new(T));
    // The peer sends a request we never read: a plain close would reset.
    b.write_all(&vec![b'r'; 100_000]).await.unwrap();
    let answer = vec![b'a'; 2_000_000];
    let peer = tokio::spawn(async move {
        let mut got = Vec::new();
        tokio::time::sleep(Duration::from_millis(100)).await; // still in flight at close
        b.read_to_end(&mut got).await.map(|_| got)
    });
    io.write_all(&answer).await.unwrap();
    timeout(T, io.shutdown())
        .await
        .expect("shutdown hung")
        .expect("our FIN sent");
    let got = timeout(T, peer).await.unwrap().unwrap().unwrap();
    assert_eq!(got.len(), answer.len(), "the peer got every byte");
    // The shutdown only half-closed: the close ends with the drop.
    no_more(&mut rx).await;
    // A second shutdown returns the same outcome.
    io.shutdown().await.unwrap();
    drop(io);
    let report = next(&mut rx).await.expect("the callback sees the success");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    assert!(report.drained_bytes() >= 100_000, "{report:?}");
    no_more(&mut rx).await;
}

// Windows: Wine's `SO_LINGER {1,0}` sends no reset.
#[cfg(not(windows))]
#[tokio::test]
async fn failed_shutdown_is_an_io_error_with_the_close_error_inside() {
    let (a, b) = pair().await;
    let (mut io, mut rx) = wrap(a, CloseOptions::new(T));
    // The peer resets first: our shutdown has no connection left to shut down.
    b.set_zero_linger().unwrap();
    drop(b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = timeout(T, io.shutdown()).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<CloseError>());
    let inner = inner.expect("the CloseError is inside");
    assert_eq!(
        inner.kind(),
        tokio_graceful_close::CloseErrorKind::PeerReset
    );
    let msg = next(&mut rx).await.unwrap_err();
    assert!(msg.contains("reset"), "{msg}");
    // Later calls: the same outcome, the CloseError included.
    let again = io.shutdown().await.unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::ConnectionReset);
    let again = again.get_ref().and_then(|e| e.downcast_ref::<CloseError>());
    assert_eq!(again.map(CloseError::kind), Some(inner.kind()));
    assert_eq!(again.map(|e| e.report().acked()), Some(false));
    drop(io);
    no_more(&mut rx).await;
}

/// The regression of clients that send their whole request before they read (Python
/// requests, browsers over HTTP/1.1): the shutdown must not wait for an
/// acknowledgement that only the discarding of their upload, in the drop, can bring.
/// Before, it waited until the deadline and the close then reset the answer.
// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn shutdown_never_waits_on_a_peer_that_reads_only_after_sending() {
    let (a, mut b) = pair().await;
    let (mut io, mut rx) = wrap(a, CloseOptions::new(T));
    // An answer that fits the buffers (as a 256 KiB 413 page does): the kernel takes
    // it all, but cannot deliver it all before the peer reads.
    let answer = vec![b'a'; 256 * 1024];
    let server = tokio::spawn(async move {
        io.write_all(&answer).await.unwrap();
        let started = Instant::now();
        // The peer is still writing and does not read: only our FIN can go out now.
        timeout(T, io.shutdown())
            .await
            .expect("shutdown hung")
            .unwrap();
        let took = started.elapsed();
        drop(io);
        took
    });
    // The peer: sends 8 MB first (blocked until the server discards it), then reads.
    let upload = vec![b'u'; 8_000_000];
    timeout(T, b.write_all(&upload))
        .await
        .expect("upload never discarded")
        .unwrap();
    let (got, end) = read_all(&mut b).await;
    assert_eq!((got, end.as_str()), (256 * 1024, "eof"));
    let took = server.await.unwrap();
    assert!(took < T / 2, "poll_shutdown waited {took:?} on the peer");
    drop(b);
    let report = next(&mut rx).await.expect("delivery confirmed by the drop");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    assert!(report.drained_bytes() >= 7_000_000, "{report:?}");
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_closes_gracefully_in_the_background() {
    let (a, mut b) = pair().await;
    let (mut io, mut rx) = wrap(a, CloseOptions::new(T));
    b.write_all(&vec![b'r'; 100_000]).await.unwrap(); // unread by us
    let answer = vec![b'a'; 4_000_000];
    io.write_all(&answer[..1_000_000]).await.unwrap();
    let writer = tokio::spawn(async move {
        io.write_all(&answer[1_000_000..]).await.unwrap();
        drop(io); // no shutdown: the error path of a server
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut got = Vec::new();
    timeout(T, b.read_to_end(&mut got))
        .await
        .expect("peer read hung")
        .expect("no reset: the drop did not close plainly");
    assert_eq!(got.len(), 4_000_000);
    writer.await.unwrap();
    drop(b);
    let report = next(&mut rx).await.expect("background close confirmed");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    assert!(report.drained_bytes() >= 100_000, "{report:?}");
    no_more(&mut rx).await;
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test]
async fn drop_after_a_started_shutdown_finishes_it_in_the_background() {
    let (a, mut b) = pair().await;
    let (mut io, mut rx) = wrap(a, CloseOptions::new(T));
    let sent = fill(&mut io).await;
    // Start the close (our FIN, queued behind the data the peer has not read yet), then
    // let the drop finish it.
    timeout(T, io.shutdown()).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(io);
    let (got, end) = read_all(&mut b).await;
    assert_eq!((got, end.as_str()), (sent, "eof"));
    drop(b);
    let report = next(&mut rx).await.expect("the started close completed");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    // Same close: the elapsed time counts from the shutdown, before the drop.
    assert!(report.elapsed() >= Duration::from_millis(100), "{report:?}");
}

/// Reads to the end; the byte count and "eof" or the error.
async fn read_all(s: &mut TcpStream) -> (usize, String) {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0;
    loop {
        match timeout(T, s.read(&mut buf)).await.expect("peer read hung") {
            Ok(0) => return (n, "eof".into()),
            Ok(k) => n += k,
            Err(e) => return (n, e.to_string()),
        }
    }
}

#[test]
fn drop_outside_a_runtime_closes_at_once_and_disarms_linger() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (io, b, mut rx) = rt.block_on(async {
        let (a, b) = pair().await;
        let (mut io, rx) = wrap(a, CloseOptions::new(T));
        // Fill both buffers (the peer does not read) so that a lingering close would
        // sleep, and ask for a 5 s linger.
        let chunk = vec![0u8; 1 << 16];
        loop {
            match timeout(Duration::from_millis(200), io.write(&chunk)).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => break,
            }
        }
        socket2::SockRef::from(io.get_ref())
            .set_linger(Some(Duration::from_secs(5)))
            .unwrap();
        (io, b, rx)
    });
    let start = Instant::now();
    drop(io); // no runtime entered here
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the drop blocked for {took:?}"
    );
    let msg = rx.try_recv().expect("reported at once").unwrap_err();
    assert!(msg.contains("outside a Tokio runtime"), "{msg}");
    let _guard = rt.enter();
    drop(b);
}

#[tokio::test]
async fn into_inner_gives_the_stream_back_open() {
    let (a, mut b) = pair().await;
    let (io, mut rx) = wrap(a, CloseOptions::new(T));
    let mut a = io.into_inner();
    a.write_all(b"still open").await.unwrap();
    let mut got = [0u8; 10];
    timeout(T, b.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"still open");
    b.write_all(b"yes").await.unwrap();
    let mut got = [0u8; 3];
    timeout(T, a.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"yes");
    no_more(&mut rx).await;
}

// Linux only: AF_UNIX semantics (no ACK check on AF_UNIX elsewhere).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn unix_streams_close_gracefully_too() {
    let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let mut io = GracefulIo::new(a, CloseOptions::new(T)).on_close(move |res| {
        *seen2.lock().unwrap() = Some(res.is_ok());
    });
    io.write_all(b"over unix").await.unwrap();
    let peer = tokio::spawn(async move {
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.map(|_| got)
    });
    timeout(T, io.shutdown()).await.unwrap().unwrap();
    assert_eq!(
        timeout(T, peer).await.unwrap().unwrap().unwrap(),
        b"over unix"
    );
    drop(io);
    let deadline = Instant::now() + T;
    while seen.lock().unwrap().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(*seen.lock().unwrap(), Some(true));
}

#[test]
fn graceful_io_is_unpin_send_and_sync() {
    fn check<T: Unpin + Send + Sync>() {}
    check::<GracefulIo<TcpStream>>();
    #[cfg(unix)]
    check::<GracefulIo<tokio::net::UnixStream>>();
    // Nothing to pay until the close: the closer is boxed lazily, and so is the watch
    // of an abandoned input (16 bytes of it stay). (The stream itself is larger in
    // debug builds, hence a bound on the wrapper's own bytes.)
    let own = std::mem::size_of::<GracefulIo<TcpStream>>() - std::mem::size_of::<TcpStream>();
    assert!(own <= 176, "{own} bytes on top of the stream");
    fn writer<W: AsyncWrite>() {}
    writer::<GracefulIo<TcpStream>>();
}
