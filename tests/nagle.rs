//! Nagle control on loopback: `Corked`, `write_corked`, `TCP_NODELAY` and Nagle itself,
//! asserted through the kernel's own counters rather than through timing.
//!
//! What is counted:
//! - `tcpi_data_segs_out` (TCP_INFO): data segments the sender has put on the wire;
//! - `SIOCOUTQNSD` (`unsent_bytes`): bytes queued but not yet sent, i.e. held back by
//!   the cork or by Nagle;
//! - `SIOCOUTQ` (`unacked_bytes`): bytes not yet acknowledged, which tells whether the
//!   peer's ACK has arrived at the moment we look.
//!
//! Two kernel timers could blur a result if the test thread stalled on a loaded machine:
//! the cork's own 200 ms release, and the peer's delayed ACK (>= 40 ms). Checks that
//! depend on "nothing fired yet" verify that precondition (elapsed time, or
//! `unacked_bytes` still counting the first segment) and retry the attempt on a fresh
//! connection when it does not hold; they never pass without asserting.
#![cfg(any(target_os = "linux", target_os = "android"))]

#[path = "support/tcp_info.rs"]
mod tcp_info;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tcp_info::tcp_info;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio_graceful_close::{
    write_corked, AsyncGracefulClose, CloseOptions, CorkExt, Corked, GracefulIo,
};

const HEADER: &[u8] = b"LEN 0011\r\n";
const BODY: &[u8] = b"hello world";
const TOTAL: usize = HEADER.len() + BODY.len();

/// Upper bound for every await, so that a broken test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(5);
/// Attempts before giving up on a precondition that keeps failing.
const ATTEMPTS: usize = 5;
/// Below the cork's 200 ms timer with margin: a check that ran within this time since
/// the first corked write saw the cork, not the timer.
const CORK_WINDOW: Duration = Duration::from_millis(100);
/// "Promptly": well under the 200 ms after which the kernel would send a corked tail
/// by itself.
const PROMPT: Duration = Duration::from_millis(100);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// A connected loopback pair: (client, server).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = within("connect", async {
        tokio::join!(TcpStream::connect(addr), listener.accept())
    })
    .await;
    (client.unwrap(), server.unwrap().0)
}

/// A pair whose server delays its ACKs: `TCP_QUICKACK` off puts it in "pingpong"
/// (interactive) mode, where a small segment is acknowledged by the delayed-ACK timer
/// (>= 40 ms on Linux) or by the next data it sends, not at once.
async fn pair_delayed_ack() -> (TcpStream, TcpStream) {
    let (client, server) = pair().await;
    socket2::SockRef::from(&server)
        .set_tcp_quickack(false)
        .unwrap();
    (client, server)
}

/// `tcpi_data_segs_out`: segments carrying data sent so far.
fn data_segs(fd: impl AsFd) -> u32 {
    tcp_info(fd).tcpi_data_segs_out
}

async fn read_n(server: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    within("peer read", server.read_exact(&mut buf))
        .await
        .unwrap();
    buf
}

async fn read_to_eof(server: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    within("peer read to EOF", server.read_to_end(&mut buf))
        .await
        .unwrap();
    buf
}

fn message() -> Vec<u8> {
    [HEADER, BODY].concat()
}

/// Runs `attempt` until it returns `true` (conclusive, asserted); `false` means its
/// precondition did not hold (a kernel timer fired first) and it is retried.
async fn conclusive<F, Fut>(name: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for i in 1..=ATTEMPTS {
        if attempt().await {
            return;
        }
        eprintln!(
            "{name}: attempt {i} inconclusive (a kernel timer or the ACK came first), retrying"
        );
    }
    panic!("{name}: precondition never held in {ATTEMPTS} attempts");
}

// ===== segment counts =====

/// Corked header + body: the kernel holds both partial writes (nothing sent, all bytes
/// unsent) and `flush` sends them as exactly one data segment. Nothing is in flight on
/// a fresh connection, so neither Nagle nor anything else can hold the tail after the
/// uncork: `unsent_bytes` is 0 as soon as `flush` returns.
#[tokio::test]
async fn corked_header_and_body_leave_as_one_segment() {
    conclusive("corked", || async {
        let (mut client, mut server) = pair().await;
        let before = data_segs(&client);
        let start = Instant::now();
        let mut corked = (&mut client).corked().unwrap();
        assert!(corked.is_corked());
        corked.write_all(HEADER).await.unwrap();
        corked.write_all(BODY).await.unwrap();
        let held = corked.get_ref().unsent_bytes().unwrap();
        let sent_while_corked = data_segs(corked.get_ref()) - before;
        if start.elapsed() > CORK_WINDOW {
            return false;
        }
        assert_eq!(held, TOTAL, "the cork holds both partial writes");
        assert_eq!(sent_while_corked, 0, "nothing leaves while corked");

        within("flush", corked.flush()).await.unwrap();
        assert!(!corked.is_corked());
        assert_eq!(
            corked.get_ref().unsent_bytes().unwrap(),
            0,
            "flush sends the tail"
        );
        drop(corked);

        assert_eq!(read_n(&mut server, TOTAL).await, message());
        assert_eq!(
            data_segs(&client) - before,
            1,
            "header and body in one segment"
        );
        true
    })
    .await;
}

/// `TCP_NODELAY`: each write leaves in its own syscall, even though the peer has not
/// acknowledged the first (it delays its ACKs). After each write nothing is unsent, so
/// the body cannot join the header's segment: exactly two data segments.
#[tokio::test]
async fn nodelay_sends_each_write_as_its_own_segment() {
    let (mut client, mut server) = pair_delayed_ack().await;
    client.set_nodelay(true).unwrap();
    let before = data_segs(&client);

    client.write_all(HEADER).await.unwrap();
    assert_eq!(client.unsent_bytes().unwrap(), 0, "header sent at once");
    client.write_all(BODY).await.unwrap();
    assert_eq!(client.unsent_bytes().unwrap(), 0, "body sent at once");
    assert_eq!(data_segs(&client) - before, 2);

    assert_eq!(read_n(&mut server, TOTAL).await, message());
    assert_eq!(data_segs(&client) - before, 2, "two data segments, no more");
}

/// Default (Nagle): the header leaves at once (nothing in flight), the body is held
/// while the header is unacknowledged, and leaves when the peer's (delayed) ACK comes.
///
/// Deterministic by observation, not by timing: `unacked_bytes` is read *after*
/// `unsent_bytes`; if it still counts the header, no ACK had arrived when the unsent
/// count was taken, so Nagle's rule applied at that moment and the body must have been
/// held. If the ACK was quicker than us (a stalled test thread), the attempt is retried.
#[tokio::test]
async fn nagle_holds_second_small_write_until_first_is_acked() {
    conclusive("nagle", || async {
        let (mut client, mut server) = pair_delayed_ack().await;
        let before = data_segs(&client);
        let start = Instant::now();

        client.write_all(HEADER).await.unwrap();
        assert_eq!(
            client.unsent_bytes().unwrap(),
            0,
            "nothing in flight: sent at once"
        );
        client.write_all(BODY).await.unwrap();
        let unsent = client.unsent_bytes().unwrap();
        let segs = data_segs(&client) - before;
        let unacked = client.unacked_bytes().unwrap();
        // The loss probe could send the body after ~200 ms with the header unacked.
        if unacked != TOTAL || start.elapsed() > CORK_WINDOW {
            return false;
        }
        assert_eq!(
            unsent,
            BODY.len(),
            "Nagle holds the body while the header is unacked"
        );
        assert_eq!(segs, 1, "only the header is on the wire");

        // The peer's delayed ACK releases the body.
        assert_eq!(read_n(&mut server, TOTAL).await, message());
        assert_eq!(data_segs(&client) - before, 2);
        true
    })
    .await;
}

/// `write_corked` with more buffers than one `writev` takes (100 > 64): two syscalls,
/// which without the cork would put the first part on the wire at once. With it, the
/// 1000 bytes leave as one segment.
#[tokio::test]
async fn write_corked_sends_many_buffers_as_one_segment() {
    let chunks: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 10]).collect();
    let bufs: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
    let expected = chunks.concat();
    conclusive("write_corked", || async {
        let (mut client, mut server) = pair().await;
        let before = data_segs(&client);
        let start = Instant::now();
        within("write_corked", write_corked(&mut client, &bufs))
            .await
            .unwrap();
        if start.elapsed() > CORK_WINDOW {
            return false;
        }
        assert_eq!(client.unsent_bytes().unwrap(), 0, "uncorked at the end");
        assert!(!socket2::SockRef::from(&client).tcp_cork().unwrap());
        assert_eq!(read_n(&mut server, expected.len()).await, expected);
        assert_eq!(data_segs(&client) - before, 1);
        true
    })
    .await;
}

/// Header + body through `write_corked`: one segment.
#[tokio::test]
async fn write_corked_header_and_body_one_segment() {
    let (mut client, mut server) = pair().await;
    let before = data_segs(&client);
    within(
        "write_corked",
        write_corked(&mut client, &[HEADER, b"", BODY]),
    )
    .await
    .unwrap();
    assert_eq!(read_n(&mut server, TOTAL).await, message());
    assert_eq!(data_segs(&client) - before, 1);
    // Nothing at all: no error, nothing sent.
    within("write_corked", write_corked(&mut client, &[b"", b""]))
        .await
        .unwrap();
    assert_eq!(data_segs(&client) - before, 1);
}

/// Several MiB through `write_corked` while the peer reads: partial `writev` results
/// are resumed at the right byte, across buffer boundaries.
#[tokio::test]
async fn write_corked_large_message_arrives_intact() {
    let a: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
    let b: Vec<u8> = (0..3_000_017u32).map(|i| (i % 241) as u8).collect();
    let c = b"tail".to_vec();
    let expected = [a.as_slice(), &b, &c].concat();
    let (mut client, mut server) = pair().await;
    let reader = tokio::spawn(async move { read_n(&mut server, expected.len()).await == expected });
    within("write_corked", write_corked(&mut client, &[&a, &b, &c]))
        .await
        .unwrap();
    assert!(within("reader", reader).await.unwrap(), "bytes differ");
}

/// A buffering adapter: keeps writes in user space and, on flush, hands them to the
/// socket with one `write` per chunk.
struct Chunked {
    stream: TcpStream,
    chunks: VecDeque<Vec<u8>>,
}

impl AsFd for Chunked {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl AsyncWrite for Chunked {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().chunks.push_back(buf.to_vec());
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while let Some(chunk) = this.chunks.front_mut() {
            let n = ready!(Pin::new(&mut this.stream).poll_write(cx, chunk))?;
            chunk.drain(..n);
            if chunk.is_empty() {
                this.chunks.pop_front();
            }
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Over a stream that buffers in user space, `flush` must flush the inner stream while
/// still corked and uncork only after: the two chunks it writes then leave as one
/// segment. Uncorking first would send them as two (each its own `write`, the first
/// sent at once on an idle connection).
#[tokio::test]
async fn corked_flushes_inner_buffers_before_uncorking() {
    conclusive("buffered inner", || async {
        let (client, mut server) = pair().await;
        let before = data_segs(&client);
        let start = Instant::now();
        let inner = Chunked {
            stream: client,
            chunks: VecDeque::new(),
        };
        let mut corked = inner.corked().unwrap();
        corked.write_all(HEADER).await.unwrap();
        corked.write_all(BODY).await.unwrap();
        within("flush", corked.flush()).await.unwrap();
        if start.elapsed() > CORK_WINDOW {
            return false;
        }
        let client = corked.into_inner().stream;
        assert_eq!(read_n(&mut server, TOTAL).await, message());
        assert_eq!(data_segs(&client) - before, 1);
        true
    })
    .await;
}

// ===== the cork is never left on =====

/// Cancelling `write_corked` half-way (the peer does not read, so 64 MiB cannot fit in
/// the socket buffers and the future is pending) clears the cork: what was written is
/// not left held.
#[tokio::test]
async fn cancelled_write_corked_uncorks() {
    let (mut client, _server) = pair().await;
    let big = vec![7u8; 64 << 20];
    let res = tokio::time::timeout(
        Duration::from_millis(200),
        write_corked(&mut client, &[HEADER, &big]),
    )
    .await;
    assert!(res.is_err(), "64 MiB cannot fit in loopback socket buffers");
    assert!(!socket2::SockRef::from(&client).tcp_cork().unwrap());
}

/// `flush` sends the tail at once and leaves the socket uncorked; the next write corks
/// again; `into_inner` uncorks and sends that tail too. Reads pass through.
/// `TCP_NODELAY` is on so that the second tail cannot be held by Nagle behind the
/// first (see `corked_tail_behind_unacked_segment_needs_nodelay`).
#[tokio::test]
async fn flush_uncorks_next_write_corks_again() {
    conclusive("flush", || async {
        let (mut client, mut server) = pair().await;
        client.set_nodelay(true).unwrap();
        let start = Instant::now();
        let mut corked = Corked::new(&mut client).unwrap();
        corked.write_all(HEADER).await.unwrap();
        let held_first = corked.get_ref().unsent_bytes().unwrap();
        within("flush", corked.flush()).await.unwrap();
        let after_flush = corked.get_ref().unsent_bytes().unwrap();
        let kernel_cork = socket2::SockRef::from(corked.get_ref()).tcp_cork().unwrap();
        corked.write_all(BODY).await.unwrap();
        let held_second = corked.get_ref().unsent_bytes().unwrap();
        if start.elapsed() > CORK_WINDOW {
            return false;
        }
        assert_eq!(held_first, HEADER.len());
        assert_eq!(after_flush, 0);
        assert!(!kernel_cork, "flush clears TCP_CORK");
        assert!(corked.is_corked(), "a write after a flush corks again");
        assert_eq!(held_second, BODY.len());

        server.write_all(b"pong").await.unwrap();
        let mut pong = [0; 4];
        within("read through Corked", corked.read_exact(&mut pong))
            .await
            .unwrap();
        assert_eq!(&pong, b"pong");

        let client = corked.into_inner();
        assert_eq!(
            client.unsent_bytes().unwrap(),
            0,
            "into_inner sends the tail"
        );
        assert!(!socket2::SockRef::from(&*client).tcp_cork().unwrap());
        assert_eq!(read_n(&mut server, TOTAL).await, message());
        true
    })
    .await;
}

/// Dropping a `Corked` with a partial tail sends it at once: nothing unsent right after
/// the drop, and the peer has it well under the kernel's 200 ms cork timer.
#[tokio::test]
async fn dropping_corked_delivers_tail_promptly() {
    conclusive("drop", || async {
        let (mut client, mut server) = pair().await;
        let start = Instant::now();
        let mut corked = (&mut client).corked().unwrap();
        corked.write_all(BODY).await.unwrap();
        let held = corked.get_ref().unsent_bytes().unwrap();
        if start.elapsed() > CORK_WINDOW {
            return false;
        }
        assert_eq!(held, BODY.len(), "held before the drop");

        let dropped = Instant::now();
        drop(corked);
        assert_eq!(client.unsent_bytes().unwrap(), 0, "sent by the drop itself");
        assert!(!socket2::SockRef::from(&client).tcp_cork().unwrap());
        assert_eq!(read_n(&mut server, BODY.len()).await, BODY);
        let took = dropped.elapsed();
        assert!(
            took < PROMPT,
            "tail reached the peer {took:?} after the drop"
        );
        true
    })
    .await;
}

/// With Nagle on, lifting the cork hands the tail to Nagle: while an earlier small
/// segment is unacknowledged (peer delaying ACKs), the tail of the next message waits.
/// Turning `TCP_NODELAY` on sends it at once. This is why the docs recommend both.
/// Same observation argument as the Nagle test above.
#[tokio::test]
async fn corked_tail_behind_unacked_segment_needs_nodelay() {
    conclusive("cork+nagle", || async {
        let (mut client, mut server) = pair_delayed_ack().await;
        let start = Instant::now();
        let mut corked = (&mut client).corked().unwrap();
        corked.write_all(HEADER).await.unwrap();
        corked.flush().await.unwrap(); // first message: nothing in flight, sent
        let first_sent = corked.get_ref().unsent_bytes().unwrap();
        corked.write_all(BODY).await.unwrap();
        corked.flush().await.unwrap(); // second message: uncorked, but Nagle applies
        let unsent = corked.get_ref().unsent_bytes().unwrap();
        let unacked = corked.get_ref().unacked_bytes().unwrap();
        if unacked != TOTAL || start.elapsed() > CORK_WINDOW {
            return false;
        }
        assert_eq!(first_sent, 0);
        assert_eq!(unsent, BODY.len(), "Nagle holds the uncorked tail");

        corked.get_ref().set_nodelay(true).unwrap();
        assert_eq!(
            corked.get_ref().unsent_bytes().unwrap(),
            0,
            "TCP_NODELAY sends it at once"
        );
        drop(corked);
        assert_eq!(read_n(&mut server, TOTAL).await, message());
        true
    })
    .await;
}

// ===== closing a corked stream =====

/// `Corked::poll_shutdown` uncorks then shuts down: the tail arrives in full, then EOF,
/// promptly.
#[tokio::test]
async fn corked_shutdown_sends_tail_before_fin() {
    let (mut client, mut server) = pair().await;
    let mut corked = (&mut client).corked().unwrap();
    corked.write_all(HEADER).await.unwrap();
    corked.write_all(BODY).await.unwrap();
    let start = Instant::now();
    within("shutdown", corked.shutdown()).await.unwrap();
    assert!(!corked.is_corked());
    assert_eq!(
        read_to_eof(&mut server).await,
        message(),
        "whole tail, then EOF"
    );
    let took = start.elapsed();
    assert!(took < PROMPT, "tail and FIN took {took:?}");
}

/// `into_inner` then `graceful_close`: the tail arrives in full before EOF and the close
/// confirms the peer acknowledged it.
#[tokio::test]
async fn graceful_close_after_into_inner_delivers_tail() {
    let (client, mut server) = pair().await;
    let mut corked = client.corked().unwrap();
    corked.write_all(HEADER).await.unwrap();
    corked.write_all(BODY).await.unwrap();
    let client = corked.into_inner();
    let close = tokio::spawn(client.graceful_close(WAIT));
    assert_eq!(
        read_to_eof(&mut server).await,
        message(),
        "whole tail, then EOF"
    );
    drop(server); // our EOF ends the close's drain
    let report = within("graceful close", close).await.unwrap().unwrap();
    assert!(report.acked());
}

/// The kernel side of the same guarantee: `shutdown(SHUT_WR)` sends a corked tail with
/// the FIN even if nobody uncorks. The socket is corked directly (no `Corked`), the
/// tail is verified held, and `graceful_close` delivers it well under the 200 ms cork
/// timer, so it was the shutdown that pushed it.
#[tokio::test]
async fn shutdown_pushes_a_corked_tail() {
    conclusive("shutdown push", || async {
        let (client, mut server) = pair().await;
        let start = Instant::now();
        socket2::SockRef::from(&client).set_tcp_cork(true).unwrap();
        let mut client = client;
        client.write_all(BODY).await.unwrap();
        let held = client.unsent_bytes().unwrap();
        if start.elapsed() > CORK_WINDOW {
            return false;
        }
        assert_eq!(held, BODY.len());
        let closing = Instant::now();
        let close = tokio::spawn(client.graceful_close(WAIT));
        assert_eq!(read_to_eof(&mut server).await, BODY, "tail, then EOF");
        let took = closing.elapsed();
        drop(server);
        let report = within("graceful close", close).await.unwrap().unwrap();
        assert!(report.acked());
        assert!(took < PROMPT, "tail and FIN took {took:?}");
        true
    })
    .await;
}

/// Composition: `Corked` over `GracefulIo`. `Corked::poll_shutdown` uncorks, then
/// `GracefulIo`'s shutdown runs the graceful close: the held tail reaches the peer in
/// full before its EOF, and the close completes once the peer closes too.
#[tokio::test]
async fn corked_over_graceful_io_sends_tail_before_graceful_close() {
    conclusive("GracefulIo", || async {
        let (client, mut server) = pair().await;
        let start = Instant::now();
        let mut corked = GracefulIo::new(client, CloseOptions::new(WAIT))
            .corked()
            .unwrap();
        corked.write_all(HEADER).await.unwrap();
        corked.write_all(BODY).await.unwrap();
        let held = corked.get_ref().get_ref().unsent_bytes().unwrap();
        if start.elapsed() > CORK_WINDOW {
            return false;
        }
        assert_eq!(held, TOTAL, "held under the cork");

        server.write_all(b"ping").await.unwrap();
        let mut ping = [0; 4];
        within("read through both", corked.read_exact(&mut ping))
            .await
            .unwrap();
        assert_eq!(&ping, b"ping");

        let close = tokio::spawn(async move {
            let res = corked.shutdown().await;
            (res, corked.is_corked())
        });
        assert_eq!(
            read_to_eof(&mut server).await,
            message(),
            "whole tail, then EOF"
        );
        drop(server); // our EOF lets the graceful close finish its drain
        let (res, still_corked) = within("graceful shutdown", close).await.unwrap();
        res.unwrap();
        assert!(!still_corked);
        true
    })
    .await;
}

// ===== errors =====

/// No cork on `AF_UNIX`: construction and `write_corked` return the `setsockopt`
/// error, nothing panics, the stream stays usable.
#[tokio::test]
async fn cork_on_unix_socket_is_an_error() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let err = Corked::new(&mut a).unwrap_err();
    assert_ne!(err.kind(), io::ErrorKind::Other, "{err}");
    assert!(within("write_corked", write_corked(&mut a, &[HEADER]))
        .await
        .is_err());
    a.write_all(BODY).await.unwrap();
    let mut buf = [0; BODY.len()];
    within("read", b.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, BODY);
}
