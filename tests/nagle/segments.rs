//! Segment counts: a corked header and body leave as one segment, `TCP_NODELAY` sends
//! each write alone, Nagle holds a second small write, `write_corked` gathers buffers.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_graceful_close::{write_corked, AsyncGracefulClose, CorkExt};

use crate::common::{
    conclusive, data_segs, message, pair, pair_delayed_ack, read_n, within, BODY, CORK_WINDOW,
    HEADER, TOTAL,
};

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
