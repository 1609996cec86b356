//! hyper 1.x servers over `GracefulIo`: HTTP/1 with `Connection: close` and keep-alive,
//! HTTP/2 through hyper-util's auto builder, and the background close when a handler
//! panics or the connection future is dropped mid-request.

// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_graceful_close::{CloseOptions, CloseReport, GracefulIo};

const T: Duration = Duration::from_secs(10);
const BIG: usize = 2 << 20;

type Outcome = Result<CloseReport, String>;

fn outcome_of(res: &Result<CloseReport, tokio_graceful_close::CloseError>) -> Outcome {
    match res {
        Ok(report) => Ok(report.clone()),
        Err(e) => Err(e.to_string()),
    }
}

fn big_body() -> Bytes {
    Bytes::from((0..BIG).map(|i| (i % 253) as u8).collect::<Vec<u8>>())
}

/// `/big` answers 2 MiB, `/panic` panics, `/hang` signals `entered` and never answers,
/// anything else answers "ok".
async fn handle(
    req: Request<Incoming>,
    entered: mpsc::UnboundedSender<()>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    match req.uri().path() {
        "/big" => Ok(Response::new(Full::new(big_body()))),
        "/panic" => panic!("handler panics on purpose"),
        "/hang" => {
            let _ = entered.send(());
            std::future::pending().await
        }
        _ => Ok(Response::new(Full::new(Bytes::from_static(b"ok")))),
    }
}

struct Server {
    addr: SocketAddr,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    entered: mpsc::UnboundedReceiver<()>,
    /// The task serving the single accepted connection.
    conn: tokio::sync::oneshot::Receiver<tokio::task::JoinHandle<Result<(), String>>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Http1,
    Auto,
}

/// Serves one connection over a `GracefulIo` whose outcomes are reported.
async fn server(proto: Proto) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (out_tx, outcomes) = mpsc::unbounded_channel();
    let (ent_tx, entered) = mpsc::unbounded_channel();
    let (conn_tx, conn) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let io = GracefulIo::new(stream, CloseOptions::new(T)).on_close(move |res| {
            let _ = out_tx.send(outcome_of(res));
        });
        let svc = service_fn(move |req| handle(req, ent_tx.clone()));
        let task = tokio::spawn(async move {
            match proto {
                Proto::Http1 => http1::Builder::new()
                    .serve_connection(TokioIo::new(io), svc)
                    .await
                    .map_err(|e| e.to_string()),
                Proto::Auto => hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(io), svc)
                    .await
                    .map_err(|e| e.to_string()),
            }
        });
        let _ = conn_tx.send(task);
    });
    Server {
        addr,
        outcomes,
        entered,
        conn,
    }
}

async fn outcome(rx: &mut mpsc::UnboundedReceiver<Outcome>) -> Outcome {
    timeout(T, rx.recv())
        .await
        .expect("no close outcome reported")
        .expect("callback dropped without reporting")
}

/// Splits a raw HTTP/1 answer with a content-length body into (head, body).
fn split(raw: &[u8]) -> (String, &[u8]) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    (
        String::from_utf8_lossy(&raw[..end]).into_owned(),
        &raw[end + 4..],
    )
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_connection_close_ends_with_a_confirmed_close() {
    let mut s = server(Proto::Http1).await;
    let mut c = TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    timeout(T, c.read_to_end(&mut raw)).await.unwrap().unwrap();
    drop(c);
    let (head, body) = split(&raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, &big_body()[..]);
    let report = outcome(&mut s.outcomes).await.expect("close confirmed");
    // The client sent nothing more: by default (PeerEof::IfSending) the close ends once
    // our answer and FIN are acknowledged, whether or not the client's EOF came first.
    assert!(report.acked(), "{report:?}");
    // hyper saw the shutdown succeed: the connection ends without error.
    let conn = timeout(T, s.conn).await.unwrap().unwrap();
    timeout(T, conn).await.unwrap().unwrap().unwrap();
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_keep_alive_closes_once_when_the_client_leaves() {
    let mut s = server(Proto::Http1).await;
    let stream = TcpStream::connect(s.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let client_conn = tokio::spawn(conn);
    for path in ["/", "/big", "/"] {
        let req = Request::get(path)
            .header("host", "x")
            .body(Empty::<Bytes>::new())
            .unwrap();
        timeout(T, send.ready()).await.unwrap().unwrap();
        let res = timeout(T, send.send_request(req)).await.unwrap().unwrap();
        assert_eq!(res.status(), 200);
        let body = timeout(T, res.into_body().collect())
            .await
            .unwrap()
            .unwrap();
        let want = if path == "/big" { BIG } else { 2 };
        assert_eq!(body.to_bytes().len(), want);
    }
    // Kept alive between requests: no close yet.
    assert!(s.outcomes.try_recv().is_err(), "closed while kept alive");
    drop(send);
    timeout(T, client_conn).await.unwrap().unwrap().unwrap();
    let report = outcome(&mut s.outcomes).await.expect("close confirmed");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    assert!(s.outcomes.try_recv().is_err(), "reported twice");
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_through_the_auto_builder() {
    let mut s = server(Proto::Auto).await;
    let stream = TcpStream::connect(s.addr).await.unwrap();
    // The client closes gracefully too: a plain client socket closed while the server's
    // final frames (GOAWAY) are still unread makes the client's kernel answer with RST,
    // and the server's close then rightly reports PeerReset (seen in CI).
    let (client_done, mut client_outcome) = mpsc::unbounded_channel();
    let client_io = GracefulIo::new(stream, CloseOptions::new(T)).on_close(move |res| {
        let _ = client_done.send(res.as_ref().map(|r| r.acked()).map_err(|e| e.to_string()));
    });
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client_io))
            .await
            .unwrap();
    let client_conn = tokio::spawn(conn);
    let mut tasks = Vec::new();
    for path in ["/big", "/", "/big"] {
        let mut send = send.clone();
        tasks.push(tokio::spawn(async move {
            let req = Request::get(format!("http://x{path}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let res = send.send_request(req).await.unwrap();
            assert_eq!(res.version(), hyper::Version::HTTP_2);
            assert_eq!(res.status(), 200);
            res.into_body().collect().await.unwrap().to_bytes()
        }));
    }
    for (task, path) in tasks.into_iter().zip(["/big", "/", "/big"]) {
        let body = timeout(T, task).await.unwrap().unwrap();
        if path == "/big" {
            assert_eq!(body, big_body());
        } else {
            assert_eq!(&body[..], b"ok");
        }
    }
    drop(send);
    timeout(T, client_conn).await.unwrap().unwrap().unwrap();
    let report = outcome(&mut s.outcomes).await.expect("close confirmed");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    let client = timeout(T, client_outcome.recv()).await.unwrap().unwrap();
    assert_eq!(client, Ok(true), "the client's own close");
}

/// Pipelines `GET /big` and a `POST` to `path` whose 5 MB body the server never reads,
/// then reads slowly: the 2 MiB answer is still in flight when the server's connection
/// dies. Returns what the client read, or the error that cut it.
async fn pipelined_client(addr: SocketAddr, path: &str) -> Result<Vec<u8>, std::io::Error> {
    let mut c = TcpStream::connect(addr).await?;
    let head = format!(
        "GET /big HTTP/1.1\r\nhost: x\r\n\r\nPOST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 5000000\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await?;
    c.write_all(&[b'p'; 64 * 1024]).await?;
    let (mut r, mut w) = c.into_split();
    // Keep sending the body in the background, as an uploading client does.
    let writer = tokio::spawn(async move {
        let chunk = vec![b'p'; 64 * 1024];
        for _ in 0..40 {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        w
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut raw = Vec::new();
    let res = r.read_to_end(&mut raw).await;
    let w = writer.await.unwrap();
    drop(w.reunite(r).unwrap()); // our EOF ends the server's drain
    res.map(|_| raw)
}

fn assert_whole_big_answer(raw: &[u8]) {
    let (head, body) = split(raw);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body.len(), BIG, "the answer was cut");
    assert_eq!(body, &big_body()[..]);
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_still_delivers_what_was_written() {
    let mut s = server(Proto::Http1).await;
    let raw = timeout(T, pipelined_client(s.addr, "/panic"))
        .await
        .expect("client hung")
        .expect("the connection was reset: the drop closed plainly");
    assert_whole_big_answer(&raw);
    let conn = timeout(T, s.conn).await.unwrap().unwrap();
    let joined = timeout(T, conn).await.unwrap();
    assert!(
        joined.unwrap_err().is_panic(),
        "the connection task panicked"
    );
    // The close ran in the background, after the task died, and confirmed delivery.
    let report = outcome(&mut s.outcomes).await.expect("close confirmed");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    assert!(report.drained_bytes() > 0, "{report:?}");
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_request_still_delivers_what_was_written() {
    let mut s = server(Proto::Http1).await;
    let client = tokio::spawn(pipelined_client(s.addr, "/hang"));
    timeout(T, s.entered.recv()).await.unwrap().unwrap();
    // The second request is being handled: drop the connection future.
    let conn = timeout(T, s.conn).await.unwrap().unwrap();
    conn.abort();
    assert!(timeout(T, conn).await.unwrap().unwrap_err().is_cancelled());
    let raw = timeout(T, client)
        .await
        .expect("client hung")
        .unwrap()
        .expect("the connection was reset: the drop closed plainly");
    assert_whole_big_answer(&raw);
    let report = outcome(&mut s.outcomes).await.expect("close confirmed");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
}

/// The same drop with a bare stream, to show what the background close prevents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_a_bare_stream_dropped_mid_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ent_tx, mut entered) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = service_fn(move |req| handle(req, ent_tx.clone()));
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    });
    let client = tokio::spawn(pipelined_client(addr, "/hang"));
    timeout(T, entered.recv()).await.unwrap().unwrap();
    server.abort();
    let res = timeout(T, client).await.expect("client hung").unwrap();
    let verdict = match &res {
        Ok(raw) if split(raw).1.len() == BIG => "whole answer".to_string(),
        Ok(raw) => format!("cut at {} of {BIG} body bytes", split(raw).1.len()),
        Err(e) => format!("error: {e}"),
    };
    println!("CONTROL bare stream dropped mid-request: {verdict}");
}
