//! `GracefulCloseLayer` around hyper-util's `HttpConnector` (the legacy client's
//! connections close gracefully when its pool drops them) and around a server-side
//! connection service.
#![cfg(all(feature = "tower", feature = "hyper-client"))]
// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[path = "../../tests/support/outcome.rs"]
mod outcome;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use outcome::{outcome_of, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_graceful_close::tower::GracefulCloseLayer;
use tokio_graceful_close::{CloseOptions, CloseSettings, GracefulIo};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

const T: Duration = Duration::from_secs(10);

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
}

/// A plain keep-alive hyper server; returns its address and its accept counter.
async fn server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(
                http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(hello)),
            );
        }
    });
    (addr, accepted)
}

fn layer(tx: mpsc::UnboundedSender<Outcome>) -> GracefulCloseLayer {
    GracefulCloseLayer::new(
        CloseSettings::new(CloseOptions::new(T)).on_close(move |res| {
            let _ = tx.send(outcome_of(res));
        }),
    )
}

async fn fetch<C>(client: &Client<C, Empty<Bytes>>, addr: SocketAddr) -> Bytes
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let uri = format!("http://{addr}/").parse().unwrap();
    let res = timeout(T, client.get(uri)).await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    timeout(T, res.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes()
}

async fn expect_confirmed(rx: &mut mpsc::UnboundedReceiver<Outcome>, n: usize) {
    for i in 0..n {
        let o = timeout(T, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {i} of {n} connections reported their close"))
            .unwrap();
        let report = o.expect("close confirmed");
        // A client connection waits for the server's EOF only if the server is still
        // sending or answers our FIN (PeerEof::IfSending unless set): delivery
        // confirmed is the promise.
        assert!(report.acked(), "{report:?}");
    }
    match timeout(Duration::from_millis(300), rx.recv()).await {
        Err(_) | Ok(None) => {}
        Ok(Some(o)) => panic!("more closes than connections: {o:?}"),
    }
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_close_gracefully_when_the_client_is_dropped() {
    let (addr, accepted) = server().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let connector = layer(tx).layer(HttpConnector::new());
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    // Concurrent requests open several connections; sequential ones reuse them.
    let results = futures_join(&client, addr, 3).await;
    assert!(results.iter().all(|b| &b[..] == b"hello"));
    for _ in 0..2 {
        assert_eq!(&fetch(&client, addr).await[..], b"hello");
    }
    let n = accepted.load(Ordering::SeqCst);
    assert!((1..=5).contains(&n), "{n} connections");
    assert!(rx.try_recv().is_err(), "a pooled connection closed early");
    drop(client);
    expect_confirmed(&mut rx, n).await;
    assert_eq!(accepted.load(Ordering::SeqCst), n);
}

/// Pooled connections with `abort_when_safe`: dropped by the pool after finished
/// exchanges, each resets (nothing unacknowledged, nothing unread), leaving no
/// `TIME_WAIT`, and says so in its report.
// Linux only: the counts the decision rests on.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_reset_when_that_loses_nothing() {
    let (addr, accepted) = server().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let opts = CloseOptions::new(T).abort_when_safe(true);
    let connector = GracefulCloseLayer::new(CloseSettings::new(opts).on_close(move |res| {
        let _ = tx.send(outcome_of(res));
    }))
    .layer(HttpConnector::new());
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    for _ in 0..3 {
        assert_eq!(&fetch(&client, addr).await[..], b"hello");
    }
    drop(client);
    let n = accepted.load(Ordering::SeqCst);
    for _ in 0..n {
        let report = timeout(T, rx.recv())
            .await
            .unwrap()
            .unwrap()
            .expect("closed");
        assert_eq!(
            report.safe_abort(),
            Some(tokio_graceful_close::SafeAbort::Taken),
            "{report:?}"
        );
        assert!(report.aborted(), "{report:?}");
    }
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_idle_timeout_closes_gracefully() {
    let (addr, accepted) = server().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_millis(200))
        .pool_timer(TokioTimer::new())
        .build(layer(tx).layer(HttpConnector::new()));
    assert_eq!(&fetch(&client, addr).await[..], b"hello");
    // The client lives on; its pool evicts the idle connection.
    expect_confirmed(&mut rx, 1).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // A new request opens a new connection, which works as well.
    assert_eq!(&fetch(&client, addr).await[..], b"hello");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    drop(client);
    expect_confirmed(&mut rx, 1).await;
}

async fn futures_join<C>(client: &Client<C, Empty<Bytes>>, addr: SocketAddr, n: usize) -> Vec<Bytes>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        set.spawn(async move { fetch(&client, addr).await });
    }
    timeout(T, set.join_all()).await.unwrap()
}

// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn around_a_connection_service_the_stream_is_a_graceful_io() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut svc = ServiceBuilder::new()
        .layer(layer(tx))
        .service(tower::service_fn(
            |(io, _peer): (GracefulIo<TcpStream>, std::net::SocketAddr)| async move {
                http1::Builder::new()
                    .serve_connection(TokioIo::new(io), service_fn(hello))
                    .await
            },
        ));
    let client = tokio::spawn(async move {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = String::new();
        c.read_to_string(&mut raw).await.unwrap();
        raw
    });
    let accepted = timeout(T, listener.accept()).await.unwrap().unwrap();
    let ready = timeout(T, svc.ready()).await.unwrap().unwrap();
    timeout(T, ready.call(accepted)).await.unwrap().unwrap();
    let raw = timeout(T, client).await.unwrap().unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200") && raw.ends_with("hello"),
        "{raw}"
    );
    expect_confirmed(&mut rx, 1).await;
}
