//! Shutting a server down with graceful closes: the closes that outlive their
//! connections must end before the runtime goes, or their sockets reset under answers
//! still being delivered.
#![cfg(all(feature = "axum", target_os = "linux"))]

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_graceful_close::axum::GracefulListener;
use tokio_graceful_close::CloseOptions;

const T: Duration = Duration::from_secs(20);

/// How the server is run and stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// `axum::serve` over a `GracefulListener`, the runtime dropped as it returns.
    Pieces,
    /// The same, then the tracker's `close()` and `wait()` before the drop.
    PiecesThenWait,
    /// `tokio_graceful_close::axum::serve`, the runtime dropped as it returns.
    Serve,
}

/// The body the client uploads and the handler never reads.
const UPLOAD: usize = 64 * 1024;
const ANSWER: usize = 3_943_424;

/// Serves one large answer to a request whose upload it never reads, on a runtime of
/// its own that is dropped right after the server stopped (and, with `wait`, after the
/// tracker said every close ended). Returns what the client read and how it ended.
fn serve_then_drop_the_runtime(how: How) -> (usize, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let (stop, stopped) = oneshot::channel::<()>();
    let client = std::thread::spawn(move || {
        let crt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        crt.block_on(async move {
            let addr = addr_rx.recv().unwrap();
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = format!(
                "POST /big HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                UPLOAD * 16
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&vec![b'u'; UPLOAD]).await.unwrap();
            // The answer has started: stop the server while it is still being delivered.
            let mut buf = vec![0u8; 1 << 16];
            let mut got = s.read(&mut buf).await.unwrap();
            let _ = stop.send(());
            // More of the upload, unread by anyone: a plain close now resets.
            s.write_all(&vec![b'u'; UPLOAD]).await.unwrap();
            loop {
                tokio::time::sleep(Duration::from_millis(2)).await; // a busy client
                match s.read(&mut buf).await {
                    Ok(0) => return (got, "eof".to_owned()),
                    Ok(n) => got += n,
                    Err(e) => return (got, format!("{:?}", e.kind())),
                }
            }
        })
    });
    rt.block_on(async move {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addr_tx.send(tcp.local_addr().unwrap()).unwrap();
        let opts = CloseOptions::new(Duration::from_secs(10));
        let app = Router::new().route(
            "/big",
            post(|| async { (StatusCode::OK, vec![b'a'; ANSWER]) }),
        );
        let signal = async move {
            let _ = stopped.await;
        };
        if how == How::Serve {
            let server = tokio_graceful_close::axum::serve(tcp, app)
                .settings(opts)
                .with_graceful_shutdown(signal);
            timeout(T, server).await.expect("serve hung").unwrap();
            return;
        }
        let listener = GracefulListener::new(tcp, opts);
        let closes = listener.settings().tracker().clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(signal)
            .await
            .unwrap();
        if how == How::PiecesThenWait {
            closes.close();
            timeout(T, closes.wait()).await.expect("tracker.wait hung");
        }
    });
    drop(rt);
    let (got, end) = client.join().unwrap();
    // The head is part of what was read.
    (got, end)
}

#[test]
fn a_runtime_dropped_after_tracker_wait_loses_nothing() {
    for _ in 0..3 {
        let (got, end) = serve_then_drop_the_runtime(How::PiecesThenWait);
        assert!(got > ANSWER, "got {got} bytes, then {end}");
        assert_eq!(end, "eof", "got {got} bytes, then {end}");
    }
    // The control: the runtime dropped without waiting for the closes.
    let (got, end) = serve_then_drop_the_runtime(How::Pieces);
    println!("control without tracker.wait(): {got} bytes, then {end}");
}

/// `tokio_graceful_close::axum::serve` waits for the closes itself: a runtime dropped
/// as soon as it returned loses nothing.
#[test]
fn a_runtime_dropped_after_axum_serve_returned_loses_nothing() {
    for _ in 0..3 {
        let (got, end) = serve_then_drop_the_runtime(How::Serve);
        assert!(got > ANSWER, "got {got} bytes, then {end}");
        assert_eq!(end, "eof", "got {got} bytes, then {end}");
    }
}
