//! The order on the wire when a TLS server answers early and closes: its
//! `close_notify`, then its FIN, then it drains our (encrypted) upload until our EOF.

use std::os::fd::AsFd;
use std::time::Duration;

use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use crate::example::{self, UPLOAD_LEN};
use crate::support::*;

/// Polls (without reading) whether the peer's FIN is in: `peek` returns 0 only once
/// the FIN arrived and every byte before it was read.
async fn wait_fin(probe: &std::net::TcpStream) {
    let mut buf = [0u8; 1];
    timeout(T, async {
        loop {
            match probe.peek(&mut buf) {
                Ok(0) => return,
                Ok(_) => panic!("bytes after close_notify"),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("peek: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("no FIN after close_notify");
}

async fn close_notify_then_fin_then_drain(config: ClientConfig, tls12: bool) {
    let (listener, addr, mut closes) = tls_listener(close_options()).await;
    let server = tokio::spawn(async move { axum::serve(listener, example::app()).await });
    let (tls, seen) = connect_recorded(addr, config).await;
    // A second handle on the client's socket, to see its FIN arrive.
    let probe =
        std::net::TcpStream::from(tls.get_ref().0.inner.as_fd().try_clone_to_owned().unwrap());

    let (mut r, mut w) = tokio::io::split(tls);
    let head =
        format!("POST /upload HTTP/1.1\r\nhost: localhost\r\ncontent-length: {UPLOAD_LEN}\r\n\r\n");
    w.write_all(head.as_bytes()).await.unwrap();
    // Upload the body, then close our side (our close_notify and FIN end the server's
    // drain). The first MiB goes out at once; the rest only once the server's FIN is
    // in, so that it is all sent after the FIN, whatever the scheduling.
    let (fin_tx, fin_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        let chunk = vec![b'u'; 64 * 1024];
        let mut sent = 0;
        let mut fin = Some(fin_rx);
        while sent < UPLOAD_LEN {
            if sent >= 1 << 20 {
                if let Some(fin) = fin.take() {
                    let _ = fin.await;
                }
            }
            let n = chunk.len().min(UPLOAD_LEN - sent);
            w.write_all(&chunk[..n]).await?;
            sent += n;
        }
        w.shutdown().await?;
        Ok::<_, std::io::Error>(w)
    });

    let mut answer = Vec::new();
    // tokio-rustls ends a read cleanly only on the peer's close_notify; a FIN without
    // one is an `UnexpectedEof` error.
    timeout(T, r.read_to_end(&mut answer))
        .await
        .expect("the answer hung")
        .expect("a clean TLS EOF: the server sent close_notify");
    let (status, body) = answer.split_at(
        answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete head")
            + 4,
    );
    assert!(status.starts_with(b"HTTP/1.1 413"));
    assert_eq!(body, &example::error_body()[..], "the whole 413 body");

    // The FIN follows the alert: the socket reads EOF with nothing between.
    wait_fin(&probe).await;
    let written_at_fin = seen.lock().unwrap().written;
    let _ = fin_tx.send(());

    // We go on sending after the server's FIN: it keeps reading, no reset.
    let w = timeout(T, writer)
        .await
        .expect("the upload hung")
        .unwrap()
        .expect("the upload after the server's FIN failed (a reset?)");
    let tls = r.unsplit(w);
    let (mut raw, _) = tls.into_inner();
    let mut rest = Vec::new();
    timeout(T, raw.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "bytes after close_notify: {}", rest.len());

    let (errors, written, inbound) = {
        let seen = seen.lock().unwrap();
        (seen.errors.clone(), seen.written, seen.inbound.clone())
    };
    assert!(errors.is_empty(), "socket errors: {errors:?}");
    let after_fin = written - written_at_fin;
    assert!(
        after_fin >= (UPLOAD_LEN - (1 << 20)) as u64,
        "only {after_fin} bytes were sent after the server's FIN"
    );

    // The last thing on the wire before the FIN is the close_notify record.
    let records = records(&inbound).expect("the stream ends on a record boundary");
    let &(kind, len) = records.last().unwrap();
    if tls12 {
        // TLS 1.2: an alert record (type 21), encrypted: 2 bytes + nonce + tag.
        assert_eq!(kind, 21, "last record {records:?}");
    } else {
        // TLS 1.3 hides the type: an application-data record of 2 + 1 + 16 bytes.
        assert_eq!((kind, len), (23, 19), "last record");
    }

    let report = next_close(&mut closes).await.expect("a confirmed close");
    println!(
        "TLS {}: {} records in, {} bytes sent after the server's FIN, server drained {} bytes in {:?}",
        if tls12 { "1.2" } else { "1.3" },
        records.len(),
        after_fin,
        report.drained_bytes(),
        report.elapsed()
    );
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    assert!(
        report.drained_bytes() >= after_fin,
        "drained {} < {after_fin} sent after the FIN",
        report.drained_bytes()
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_close_notify_then_fin_then_drain() {
    close_notify_then_fin_then_drain(client_config(&[b"http/1.1"]), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_close_notify_then_fin_then_drain() {
    close_notify_then_fin_then_drain(client_config_tls12(), true).await;
}
