//! Closing a corked stream: shutdown, `into_inner` then `graceful_close`, and
//! `Corked` over `GracefulIo` all send the tail before the FIN.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, CorkExt, GracefulIo};

use crate::common::{
    conclusive, message, pair, read_to_eof, within, BODY, CORK_WINDOW, HEADER, PROMPT, TOTAL, WAIT,
};

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
