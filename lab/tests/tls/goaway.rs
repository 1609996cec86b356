//! HTTP/2 shutdown, plain and over TLS: `axum::serve(..).with_graceful_shutdown` makes
//! hyper send GOAWAY while a client has a finished response on one stream and an
//! upload in flight on another. The client gets every response byte and no reset; the
//! server's close after the GOAWAY drains what the client still had in flight.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_graceful_close::axum::GracefulListener;
use tokio_graceful_close::{CloseSettings, GracefulIo};

use crate::example;
use crate::support::*;

const BIG: usize = 2 << 20;

/// `/big` answers 2 MiB; `/upload` reads the body until shutdown is signalled, then
/// answers the 256 KiB 413 without reading the rest.
fn app(entered: mpsc::UnboundedSender<()>, stop: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/big", get(|| async { vec![b'b'; BIG] }))
        .route(
            "/upload",
            post(move |body: Body| {
                let (entered, mut stop) = (entered.clone(), stop.clone());
                async move {
                    let mut body = body;
                    let mut read = 0usize;
                    loop {
                        tokio::select! {
                            frame = body.frame() => match frame {
                                Some(Ok(f)) => {
                                    if read == 0 {
                                        let _ = entered.send(());
                                    }
                                    read += f.data_ref().map_or(0, |d| d.len());
                                }
                                _ => break,
                            },
                            _ = stop.wait_for(|s| *s) => break,
                        }
                    }
                    (StatusCode::PAYLOAD_TOO_LARGE, example::error_body()).into_response()
                }
            }),
        )
}

/// The client side: a finished `/big`, then an upload in flight when the server shuts
/// down. Returns the client connection's end.
async fn h2_client<IO>(
    io: IO,
    mut entered: mpsc::UnboundedReceiver<()>,
    stop: watch::Sender<bool>,
) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2 handshake");
    let conn = tokio::spawn(conn);

    let res = send
        .send_request(
            hyper::Request::get("https://localhost/big")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let big = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(big.len(), BIG, "the finished response");

    // An upload that goes on as long as the connection takes it.
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let feeder = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'u'; 16 * 1024]);
        while tx.send(chunk.clone()).await.is_ok() {}
    });
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let req = hyper::Request::post("https://localhost/upload")
        .body(Body::new(StreamBody::new(frames)))
        .unwrap();
    let mut send2 = send.clone();
    let upload = tokio::spawn(async move { send2.send_request(req).await });
    timeout(T, entered.recv())
        .await
        .expect("the upload never started");
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.send(true).unwrap(); // the server shuts down: GOAWAY
    let res = timeout(T, upload)
        .await
        .expect("no answer")
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), 413);
    let body = timeout(T, res.into_body().collect())
        .await
        .expect("the 413 body hung")
        .expect("the 413 body was cut")
        .to_bytes();
    assert_eq!(&body[..], &example::error_body()[..], "the whole 413");
    feeder.abort();
    // The connection ends when the server closes it, after its GOAWAY: dropping the
    // last `SendRequest` first would let the client end it on its own, maybe before
    // the GOAWAY was read.
    let end = timeout(T, conn)
        .await
        .expect("the client connection hung")
        .unwrap();
    drop(send);
    end
}

/// Splits plain h2 frames off the server's bytes; returns their types.
fn h2_frame_types(raw: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while raw.len() - at >= 9 {
        let len = u32::from_be_bytes([0, raw[at], raw[at + 1], raw[at + 2]]) as usize;
        types.push(raw[at + 3]);
        at += 9 + len;
    }
    types
}

async fn goaway(tls: bool) {
    let (entered_tx, entered) = mpsc::unbounded_channel();
    let (stop_tx, stop) = watch::channel(false);
    let app = app(entered_tx, stop.clone());
    let mut shutdown = stop.clone();
    let signal = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    let (addr, mut closes, server): (SocketAddr, _, _) = if tls {
        let (listener, addr, closes) = tls_listener(close_options()).await;
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
        });
        (addr, closes, server)
    } else {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let (tx, closes) = mpsc::unbounded_channel();
        let listener = GracefulListener::new(
            tcp,
            CloseSettings::new(close_options()).on_close(move |res| {
                let _ = tx.send(outcome_of(res));
            }),
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(signal)
                .await
        });
        (addr, closes, server)
    };

    // The client closes gracefully too: its connection ends as soon as it has read the
    // GOAWAY, and a bare socket closed before the server's last frames were read would
    // make the client's kernel answer them with RST (the server's close would report
    // the reset, and the last frames as unacknowledged).
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client_tx, mut client_closes) = mpsc::unbounded_channel();
    let tcp = GracefulIo::new(tcp, close_options()).on_close(move |res| {
        let _ = client_tx.send(outcome_of(res));
    });
    let (rec, seen) = Recorder::new(tcp);
    let end = if tls {
        let tls = connector(client_config(&[b"h2"]))
            .connect(server_name(), rec)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        h2_client(tls, entered, stop_tx).await
    } else {
        h2_client(rec, entered, stop_tx).await
    };
    timeout(T, server)
        .await
        .expect("graceful shutdown hung")
        .unwrap()
        .unwrap();
    let report = next_close(&mut closes).await;
    let client_report = next_close(&mut client_closes).await;
    let seen: Arc<Mutex<Seen>> = seen;
    let seen = seen.lock().unwrap();
    println!(
        "h2 {} shutdown: client connection ended {end:?}; socket errors {:?}; server close {report:?}; client close {client_report:?}",
        if tls { "over TLS" } else { "plain" },
        seen.errors
    );
    assert!(
        !seen.errors.contains(&std::io::ErrorKind::ConnectionReset),
        "the client saw a reset"
    );
    if !tls {
        let types = h2_frame_types(&seen.inbound);
        assert!(
            types.contains(&7),
            "no GOAWAY frame from the server: {types:?}"
        );
    }
    let report = report.expect("the close confirmed delivery");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    end.expect("the client connection ended cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_goaway_on_shutdown_plain() {
    goaway(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_goaway_on_shutdown_over_tls() {
    goaway(true).await;
}
