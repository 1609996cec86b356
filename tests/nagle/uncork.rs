//! The cork is never left on: a cancelled `write_corked`, `flush`, and drop all
//! uncork, and a tail behind an unacknowledged segment needs `TCP_NODELAY`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_graceful_close::{write_corked, AsyncGracefulClose, CorkExt, Corked};

use crate::common::{
    conclusive, message, pair, pair_delayed_ack, read_n, within, BODY, CORK_WINDOW, HEADER, PROMPT,
    TOTAL,
};

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
