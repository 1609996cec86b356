//! A server's life with graceful closes: shutdown does not wait on idle keep-alive
//! clients (the runtime dropped after the shutdown: `shutdown.rs`), lingering is
//! capped against clients that upload and never read, and connections the application
//! gave up on are closed without downloading what nobody wants.
#![cfg(all(
    feature = "axum",
    feature = "tower",
    feature = "hyper-client",
    target_os = "linux"
))]

#[path = "../../tests/support/process.rs"]
mod process;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use process::{open_fds, rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;
use tokio_graceful_close::axum::GracefulListener;
use tokio_graceful_close::{CloseErrorKind, CloseOptions, CloseReport, CloseSettings};

const T: Duration = Duration::from_secs(20);

type Seen = Arc<Mutex<Vec<Result<CloseReport, (CloseErrorKind, CloseReport)>>>>;

fn recorder(seen: &Seen) -> impl Fn(&Result<CloseReport, tokio_graceful_close::CloseError>) {
    let seen = seen.clone();
    move |res| {
        seen.lock().unwrap().push(match res {
            Ok(r) => Ok(r.clone()),
            Err(e) => Err((e.kind(), e.report().clone())),
        })
    }
}

/// Reads one HTTP/1.1 response with a content-length; returns (status, body length).
async fn read_response(s: &mut TcpStream) -> (u16, usize) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        timeout(T, s.read_exact(&mut b)).await.unwrap().unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    timeout(T, s.read_exact(&mut body)).await.unwrap().unwrap();
    (status, len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_client_does_not_hold_the_shutdown() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let seen = Seen::default();
    let listener = GracefulListener::new(
        tcp,
        CloseSettings::new(CloseOptions::new(Duration::from_secs(10))).on_close(recorder(&seen)),
    );
    let closes = listener.settings().tracker().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let app = Router::new().route("/", get(|| async { "hello" }));
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        let start = Instant::now();
        closes.close();
        closes.wait().await;
        start.elapsed()
    });
    // A keep-alive client: one request, then it keeps the connection, idle.
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut client).await, (200, 5));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let signal = Instant::now();
    stop.send(()).unwrap();
    let waited = timeout(T, server).await.unwrap().unwrap();
    let total = signal.elapsed();
    println!("idle keep-alive client: serve + tracker.wait() ended {total:?} after the signal (tracker.wait() {waited:?})");
    assert!(
        total < Duration::from_secs(1),
        "{total:?}: the idle client held the shutdown"
    );
    // The client was told: EOF, no reset.
    let mut rest = Vec::new();
    timeout(T, client.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    let seen = seen.lock().unwrap().clone();
    match seen.as_slice() {
        [Ok(r)] => {
            assert!(r.acked() && !r.peer_eof(), "{r:?}");
            assert_eq!(r.peer_addr(), Some(client.local_addr().unwrap()));
        }
        other => panic!("one delivered close expected: {other:?}"),
    }
}

/// Raises the soft limit of open descriptors to the hard one.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: `lim` is a valid, writable rlimit for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur = lim.rlim_max;
        // Safety: `lim` is a valid rlimit; raising the soft limit to the hard one needs
        // no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_is_capped_against_clients_that_upload_and_never_read() {
    const HOSTILE: usize = 3000;
    const ORDINARY: usize = 100;
    const CAP: usize = 256;
    raise_fd_limit();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    // No silence bound: only the cap frees what the hostile clients hold.
    let opts = CloseOptions::new(Duration::from_secs(60)).idle_timeout(Duration::MAX);
    let listener = GracefulListener::new(tcp, opts);
    let closes = listener.settings().tracker().clone();
    closes.set_max_lingering(CAP);
    let app = Router::new().route(
        "/upload",
        post(|| async { (StatusCode::PAYLOAD_TOO_LARGE, vec![b'e'; 4096]) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let fds_before = open_fds();
    let rss_before = rss_kib();

    let head = b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 10000000\r\n\r\n";
    let mut hostile = Vec::with_capacity(HOSTILE);
    for _ in 0..HOSTILE {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(head).await.unwrap();
        s.write_all(&[b'h'; 16 * 1024]).await.unwrap();
        hostile.push(s); // never read, never closed (until the end of the test)
    }
    // Ordinary clients: upload while reading the answer, then close.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..ORDINARY {
        tasks.spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = s.into_split();
            let upload = tokio::spawn(async move {
                let _ = wr.write_all(head).await;
                let chunk = vec![b'o'; 64 * 1024];
                for _ in 0..16 {
                    if wr.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                wr
            });
            let mut got = Vec::new();
            let res = timeout(T, rd.read_to_end(&mut got)).await.expect("hung");
            let _ = upload.await;
            (res.map_err(|e| e.kind()), got)
        });
    }
    let mut whole = 0;
    while let Some(r) = tasks.join_next().await {
        let (res, got) = r.unwrap();
        let text = String::from_utf8_lossy(&got);
        if res.is_ok() && text.starts_with("HTTP/1.1 413") && got.ends_with(&[b'e'; 4096]) {
            whole += 1;
        } else {
            eprintln!("ordinary client: {res:?}, {} bytes", got.len());
        }
    }
    // Let evicted closes and the ordinary clients' server ends finish closing.
    for _ in 0..100 {
        if closes.pending() <= CAP {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds = open_fds();
    let rss = rss_kib();
    println!(
        "{HOSTILE} hostile + {ORDINARY} ordinary clients, cap {CAP}: {whole}/{ORDINARY} whole 413s; \
         open fds {fds_before} -> {fds}, pending closes {}, RSS {rss_before} -> {rss} KiB",
        closes.pending()
    );
    assert_eq!(whole, ORDINARY, "every ordinary client gets its whole 413");
    assert!(closes.pending() <= CAP, "pending {}", closes.pending());
    // The clients' own ends (all in this process), the server ends the cap lets
    // linger, and a small constant.
    assert!(
        fds <= fds_before + HOSTILE + ORDINARY + CAP + 64,
        "open fds {fds_before} -> {fds}"
    );
    assert!(
        rss < rss_before + 64 * 1024,
        "RSS {rss_before} -> {rss} KiB"
    );
    drop(hostile);
    closes.close();
    timeout(T, closes.wait()).await.expect("closes hung");
}

/// The cap ends only closes that linger (all we sent acknowledged): twelve clients that
/// upload 256 KiB and read a 4 MiB 413 only a second later, slowly, with a cap of 4,
/// each get the whole answer. (Before the cap looked at the acknowledgement, the closes
/// past the cap were reset mid-answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_never_resets_a_response_still_being_delivered() {
    const CLIENTS: usize = 12;
    const ANSWER: usize = 4 << 20;
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = GracefulListener::new(tcp, CloseOptions::new(T));
    let closes = listener.settings().tracker().clone();
    closes.set_max_lingering(4);
    // One shared answer: this test must not move the RSS that another test measures.
    let answer = Bytes::from(vec![b'e'; ANSWER]);
    let app = Router::new().route(
        "/upload",
        post(move || {
            let answer = answer.clone();
            async move { (StatusCode::PAYLOAD_TOO_LARGE, answer) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let head = b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 262144\r\n\r\n";
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        tasks.spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(head).await.unwrap();
            // Hand the upload to the kernel; what the server's buffers cannot take
            // stays queued here, the rest is never read.
            let (mut rd, mut wr) = s.into_split();
            let upload = tokio::spawn(async move {
                let _ = wr.write_all(&vec![b'u'; 256 * 1024]).await;
                wr
            });
            tokio::time::sleep(Duration::from_secs(1)).await;
            // A slow reader: every close is registered while its answer is in flight.
            let mut buf = vec![0u8; 64 * 1024];
            let mut len = 0;
            let res = loop {
                match timeout(T, rd.read(&mut buf)).await.expect("hung") {
                    Ok(0) => break Ok(()),
                    Ok(n) => len += n,
                    Err(e) => break Err(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let _ = upload.await;
            (res, len)
        });
    }
    let mut whole = 0;
    while let Some(r) = tasks.join_next().await {
        let (res, len) = r.unwrap();
        if res.is_ok() && len > ANSWER {
            whole += 1;
        } else {
            eprintln!("client: {res:?} after {len} bytes");
        }
    }
    println!("cap 4, {CLIENTS} clients reading a 4 MiB 413 after 1 s: {whole} / {CLIENTS} whole");
    assert_eq!(whole, CLIENTS, "a response in flight was cut by the cap");
    closes.close();
    timeout(T, closes.wait()).await.expect("closes hung");
}

/// A response body fed by a task: `n` chunks, one every `every`.
struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

impl Chunks {
    fn spawn(chunk: Bytes, every: Duration, n: usize) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for _ in 0..n {
                if tx.send(chunk.clone()).await.is_err() {
                    break;
                }
                if !every.is_zero() {
                    tokio::time::sleep(every).await;
                }
            }
        });
        Chunks(rx)
    }
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|c| c.map(|c| Ok(hyper::body::Frame::data(c))))
    }
}

/// A hyper-util client behind `GracefulCloseLayer` that drops a response body midway
/// does not download the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_abandons_a_response_does_not_download_it() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use hyper_util::rt::TokioExecutor;
    use tokio_graceful_close::tower::GracefulCloseLayer;
    use tower::Layer;

    // A fast endless body and a slow one (10 KB every 100 ms for 5 s).
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let app = Router::new()
        .route(
            "/fast",
            get(|| async {
                let chunk = Bytes::from(vec![b'f'; 64 * 1024]);
                axum::body::Body::new(Chunks::spawn(chunk, Duration::ZERO, 1024))
            }),
        )
        .route(
            "/slow",
            get(|| async {
                let chunk = Bytes::from(vec![b's'; 10_000]);
                axum::body::Body::new(Chunks::spawn(chunk, Duration::from_millis(100), 50))
            }),
        );
    tokio::spawn(async move { axum::serve(tcp, app).await.unwrap() });

    for path in ["fast", "slow"] {
        let seen = Seen::default();
        let layer = GracefulCloseLayer::new(
            CloseSettings::new(CloseOptions::new(Duration::from_secs(10)))
                .on_close(recorder(&seen)),
        );
        let closes = layer.settings().tracker().clone();
        let client: Client<_, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(layer.layer(HttpConnector::new()));
        let uri = format!("http://{addr}/{path}").parse().unwrap();
        let mut resp = client.get(uri).await.unwrap();
        let first = resp.body_mut().frame().await.unwrap().unwrap();
        assert!(first.is_data());
        let start = Instant::now();
        drop(resp); // abandoned midway: the pool cannot reuse the connection
        drop(client);
        // The connection task lets go of the connection a moment later; then its close
        // starts and the tracker counts it.
        while seen.lock().unwrap().is_empty() && start.elapsed() < T {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        closes.close();
        timeout(T, closes.wait()).await.expect("the close hung");
        let took = start.elapsed();
        let seen = seen.lock().unwrap().clone();
        let report = match seen.as_slice() {
            [Ok(r)] => r.clone(),
            [Err((_, r))] => r.clone(),
            other => panic!("one close expected: {other:?}"),
        };
        println!(
            "abandoned {path} response: closed in {took:?}, {} bytes discarded, {seen:?}",
            report.drained_bytes()
        );
        assert!(took < Duration::from_secs(2), "{path}: {took:?}");
        assert!(
            report.drained_bytes() <= CloseOptions::CLIENT_DRAIN_LIMIT + 1,
            "{path}: downloaded {} bytes nobody wanted",
            report.drained_bytes()
        );
    }
}

/// A client that abandons a slowly streamed response (1 KiB every 20 ms) lets go within
/// round trips, as a plain close does: once its request is acknowledged it has nothing
/// to protect, and draining the rest only keeps the server streaming. (With the drain
/// of `PeerEof::IfSending` the server's writes went on for 1.3 s, 64 chunks, until the
/// client's drain limit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_abandons_a_slow_stream_lets_go_within_round_trips() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use hyper_util::rt::TokioExecutor;
    use tokio_graceful_close::tower::GracefulCloseLayer;
    use tower::Layer;

    // A raw server: the head, then a 1 KiB chunk every 20 ms, counting the writes that
    // succeed, until one fails (the client is gone).
    let sent = Arc::new(AtomicUsize::new(0));
    let sent2 = sent.clone();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = tcp.accept().await.unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            .await;
        let mut chunk = b"400\r\n".to_vec();
        chunk.extend_from_slice(&[b't'; 1024]);
        chunk.extend_from_slice(b"\r\n");
        for _ in 0..500 {
            if s.write_all(&chunk).await.is_err() {
                break;
            }
            sent2.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    let layer = GracefulCloseLayer::new(CloseOptions::new(Duration::from_secs(10)));
    let closes = layer.settings().tracker().clone();
    let client: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(layer.layer(HttpConnector::new()));
    let uri = format!("http://{addr}/trickle").parse().unwrap();
    let mut resp = client.get(uri).await.unwrap();
    assert!(resp.body_mut().frame().await.unwrap().unwrap().is_data());
    let at_drop = sent.load(Ordering::SeqCst);
    drop(resp);
    drop(client);
    closes.close();
    timeout(T, closes.wait()).await.expect("the close hung");
    // Let the server find out, as it would after a plain close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = sent.load(Ordering::SeqCst) - at_drop;
    println!("abandoned trickle: the server sent {after} more chunks of 1 KiB");
    assert!(
        after <= 10,
        "the server kept streaming: {after} chunks after the drop"
    );
}

/// A connection hyper dropped for its header timeout (the client sent half a head and
/// went silent) is closed as soon as our FIN is acknowledged: nothing to drain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_for_its_header_timeout_closes_at_once() {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tokio_graceful_close::GracefulIo;

    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let seen = Seen::default();
    let on_close = recorder(&seen);
    let on_close = Arc::new(on_close);
    tokio::spawn(async move {
        let (stream, _) = tcp.accept().await.unwrap();
        let cb = on_close.clone();
        let io = GracefulIo::new(stream, CloseOptions::new(Duration::from_secs(30)))
            .on_close(move |r| cb(r));
        let svc = service_fn(|_req| async {
            Ok::<_, Infallible>(hyper::Response::new(http_body_util::Empty::<Bytes>::new()))
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(1));
        let _ = builder.serve_connection(TokioIo::new(io), svc).await; // the header timeout's error
    });
    let mut client = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: te")
        .await
        .unwrap(); // and silence
    let mut rest = Vec::new();
    let end = timeout(T, client.read_to_end(&mut rest)).await.unwrap();
    let took = start.elapsed();
    println!("header timeout 1 s: the socket was closed {took:?} after the half head ({end:?})");
    assert!(took < Duration::from_secs(3), "held for {took:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = seen.lock().unwrap().clone();
    assert!(matches!(seen.as_slice(), [Ok(r)] if r.acked()), "{seen:?}");
}
