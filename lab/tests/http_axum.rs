//! Real HTTP clients (curl, hyper) upload 10 MB to the 1 KiB limit of the
//! `axum_upload_limit` example: through `GracefulListener` every run must get the whole
//! 413; served plainly (the control) the failures are counted and printed.
#![cfg(feature = "axum")]
// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_graceful_close::axum::GracefulListener;
use tokio_graceful_close::CloseSettings;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/axum_upload_limit.rs"]
mod example;

use example::Outcome;

const RUNS: usize = 100;
const BATCH: usize = 10;

#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    err: AtomicUsize,
}

/// Starts the example's app on loopback; with `counts`, behind a `GracefulListener`
/// whose callback counts the closes.
async fn start(counts: Option<Arc<Counts>>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = match counts {
        Some(counts) => {
            let listener = GracefulListener::new(
                listener,
                CloseSettings::new(example::close_options()).on_close(move |res| {
                    let n = if res.is_ok() { &counts.ok } else { &counts.err };
                    n.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = res {
                        eprintln!("close: {e}");
                    }
                }),
            );
            tokio::spawn(async move { axum::serve(listener, example::app()).await.unwrap() })
        }
        None => tokio::spawn(async move {
            axum::serve(listener, example::app()).await.unwrap();
        }),
    };
    (addr, server)
}

struct Upload {
    dir: PathBuf,
    file: PathBuf,
}

impl Upload {
    async fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tgc-http-axum-{tag}-{}", std::process::id()));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let file = dir.join("upload");
        tokio::fs::write(&file, vec![b'u'; example::UPLOAD_LEN])
            .await
            .unwrap();
        Upload { dir, file }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Clone, Copy, Debug)]
enum Client {
    Curl,
    Hyper,
}

/// Runs [`RUNS`] uploads, [`BATCH`] at a time; returns the outcomes.
async fn run_clients(client: Client, addr: SocketAddr, tag: &str) -> Vec<Outcome> {
    let upload = Arc::new(Upload::new(tag).await);
    let mut outcomes = Vec::with_capacity(RUNS);
    for batch in 0..RUNS / BATCH {
        let mut set = JoinSet::new();
        for i in 0..BATCH {
            let upload = upload.clone();
            set.spawn(async move {
                match client {
                    Client::Curl => {
                        let out = upload.dir.join(format!("answer-{batch}-{i}"));
                        example::upload_curl(addr, &upload.file, &out).await
                    }
                    Client::Hyper => example::upload_hyper(addr).await,
                }
            });
        }
        // Each client has its own 30-40 s timeout; this one bounds the batch.
        let batch_outcomes = tokio::time::timeout(Duration::from_secs(90), set.join_all())
            .await
            .expect("a batch of uploads hung");
        outcomes.extend(batch_outcomes);
    }
    outcomes
}

fn tally(outcomes: &[Outcome]) -> (usize, Option<&Outcome>) {
    let complete = outcomes.iter().filter(|o| **o == Outcome::Complete).count();
    let first_bad = outcomes.iter().find(|o| **o != Outcome::Complete);
    (complete, first_bad)
}

async fn graceful(client: Client, tag: &str) {
    let counts = Arc::new(Counts::default());
    let (addr, server) = start(Some(counts.clone())).await;
    let outcomes = run_clients(client, addr, tag).await;
    let (complete, first_bad) = tally(&outcomes);
    println!("{client:?} through GracefulListener: {complete} / {RUNS} got the whole 413");
    assert_eq!(
        complete, RUNS,
        "every run must get the whole 413; first failure: {first_bad:?}"
    );
    // Every connection reported its close, and each one confirmed delivery.
    let reported = || counts.ok.load(Ordering::SeqCst) + counts.err.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(20), async {
        while reported() < RUNS {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {RUNS} closes were reported", reported()));
    assert_eq!(counts.ok.load(Ordering::SeqCst), RUNS, "closes that failed");
    server.abort();
}

async fn control(client: Client, tag: &str) {
    let (addr, server) = start(None).await;
    let outcomes = run_clients(client, addr, tag).await;
    let (complete, first_bad) = tally(&outcomes);
    println!(
        "CONTROL {client:?} against plain axum: {} / {RUNS} runs failed (first: {first_bad:?})",
        RUNS - complete
    );
    // The server itself must still answer 413: only the delivery may fail.
    for o in &outcomes {
        if let Outcome::Wrong(what) = o {
            assert!(
                what.contains("body bytes"),
                "plain server answered something else than 413: {what}"
            );
        }
    }
    server.abort();
}

/// Whether curl is there. Outside CI a missing curl skips the test with a printed
/// reason (the hyper-client tests still run); under `CI=true` it is a failure, since
/// `.ci/run` installs it.
fn have_curl() -> bool {
    use std::io::Write;
    if example::have_curl() {
        return true;
    }
    let msg = "these tests need curl on PATH (apt-get install -y curl)";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    // Straight to the process's stderr: the harness captures `eprintln!`.
    let _ = writeln!(std::io::stderr(), "SKIP: {msg}");
    false
}

// Linux only: curl.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_uploads_get_the_whole_413_through_graceful_listener() {
    if have_curl() {
        graceful(Client::Curl, "curl-graceful").await;
    }
}

// Linux only: curl.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_uploads_against_plain_axum_control() {
    if have_curl() {
        control(Client::Curl, "curl-plain").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_uploads_get_the_whole_413_through_graceful_listener() {
    graceful(Client::Hyper, "hyper-graceful").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_uploads_against_plain_axum_control() {
    control(Client::Hyper, "hyper-plain").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_info_keeps_working() {
    use axum::extract::ConnectInfo;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_graceful_close::axum::GracefulConnectInfo;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
    );
    let listener = GracefulListener::new(listener, example::close_options());
    let server = tokio::spawn(async move {
        axum::serve(listener, GracefulConnectInfo::new(app))
            .await
            .unwrap()
    });
    let run = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        (local, answer)
    };
    let (local, answer) = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("request timed out");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(&local.to_string()), "{answer}");
    server.abort();
}

// Linux only: AF_UNIX semantics (no ACK check on AF_UNIX elsewhere).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_listeners_close_gracefully_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = std::env::temp_dir().join(format!("tgc-http-axum-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let counts = Arc::new(Counts::default());
    let seen = counts.clone();
    let listener = GracefulListener::new(
        listener,
        CloseSettings::new(example::close_options()).on_close(move |res| {
            let n = if res.is_ok() { &seen.ok } else { &seen.err };
            n.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, example::app()).await.unwrap() });
    let run = async {
        let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let head = format!(
            "POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            example::UPLOAD_LEN
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let writer = tokio::spawn(async move {
            let _ = w.write_all(&vec![b'u'; example::UPLOAD_LEN]).await;
            w
        });
        let mut raw = Vec::new();
        r.read_to_end(&mut raw).await.unwrap();
        drop(writer.await.unwrap().reunite(r).unwrap());
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("upload timed out");
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 413"));
    assert_eq!(&raw[end + 4..], &example::error_body()[..]);
    tokio::time::timeout(Duration::from_secs(10), async {
        while counts.ok.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the close was not reported as confirmed");
    assert_eq!(counts.err.load(Ordering::SeqCst), 0);
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
}
