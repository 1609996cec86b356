//! Soak: mixed real clients against axum behind `GracefulListener` for a while, then a
//! shutdown with the tracker idiom. Every ordinary response arrives whole, no
//! descriptor is left once `tracker.wait()` returned and the clients are gone, memory
//! stays bounded. `TGC_SOAK_SECS` sets the load phase (default 15 s).
#![cfg(all(feature = "axum", target_os = "linux"))]

#[path = "../../tests/support/process.rs"]
mod process;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use process::{open_fds, rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_graceful_close::axum::GracefulListener;
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions};

const PAGE: usize = 256 * 1024;
const ERROR: usize = 64 * 1024;
const T: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Counts {
    whole: AtomicUsize,
    broken: AtomicUsize,
    hostile: AtomicUsize,
    resets: AtomicUsize,
    idle: AtomicUsize,
}

/// Reads a response to the end (the server closes: `Connection: close`), slowly if
/// asked; whether it was whole.
async fn whole_response(s: &mut TcpStream, body_len: usize, slow: bool) -> bool {
    let mut got = Vec::new();
    let mut buf = vec![0u8; if slow { 4096 } else { 64 * 1024 }];
    loop {
        match timeout(T, s.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            _ => return false,
        }
        if slow {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    got.len() - at - 4 == body_len
}

#[derive(Clone, Copy)]
enum Kind {
    WellBehaved,
    SlowReader,
    Uploader,
    NeverReads,
    Resetter,
    IdleKeepAlive,
}

async fn client(
    addr: SocketAddr,
    kind: Kind,
    counts: Arc<Counts>,
    held: Arc<Mutex<Vec<TcpStream>>>,
) {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        counts.broken.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let get_close = b"GET /page HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n";
    let upload = b"POST /upload HTTP/1.1\r\nHost: soak\r\nContent-Length: 10000000\r\n\r\n";
    match kind {
        Kind::WellBehaved | Kind::SlowReader => {
            s.write_all(get_close).await.unwrap();
            let slow = matches!(kind, Kind::SlowReader);
            let n = if whole_response(&mut s, PAGE, slow).await {
                &counts.whole
            } else {
                &counts.broken
            };
            n.fetch_add(1, Ordering::Relaxed);
        }
        Kind::Uploader => {
            let (mut rd, mut wr) = s.into_split();
            let up = tokio::spawn(async move {
                let _ = wr.write_all(upload).await;
                let chunk = vec![b'u'; 64 * 1024];
                for _ in 0..16 {
                    if wr.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                wr
            });
            let mut got = Vec::new();
            let ok = matches!(timeout(T, rd.read_to_end(&mut got)).await, Ok(Ok(_)))
                && got.starts_with(b"HTTP/1.1 413")
                && got.ends_with(&[b'e'; 64]);
            let _ = up.await;
            let n = if ok { &counts.whole } else { &counts.broken };
            n.fetch_add(1, Ordering::Relaxed);
        }
        Kind::NeverReads => {
            s.write_all(upload).await.unwrap();
            let _ = s.write_all(&[b'h'; 32 * 1024]).await;
            counts.hostile.fetch_add(1, Ordering::Relaxed);
            held.lock().unwrap().push(s); // never read, never closed
        }
        Kind::Resetter => {
            s.write_all(get_close).await.unwrap();
            let _ = s.abort();
            counts.resets.fetch_add(1, Ordering::Relaxed);
        }
        Kind::IdleKeepAlive => {
            s.write_all(b"GET /small HTTP/1.1\r\nHost: soak\r\n\r\n")
                .await
                .unwrap();
            let mut b = vec![0u8; 4096];
            let _ = timeout(T, s.read(&mut b)).await;
            counts.idle.fetch_add(1, Ordering::Relaxed);
            held.lock().unwrap().push(s); // stays open, idle
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_clients_then_shutdown() {
    let secs: u64 = std::env::var("TGC_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let fds_before = open_fds();
    let rss_before = rss_kib();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let listener = GracefulListener::new(tcp, CloseOptions::new(Duration::from_secs(3)));
    let closes = listener.settings().tracker().clone();
    let app = Router::new()
        .route("/page", get(|| async { vec![b'p'; PAGE] }))
        .route("/small", get(|| async { "ok" }))
        .route(
            "/upload",
            post(|| async { (StatusCode::PAYLOAD_TOO_LARGE, vec![b'e'; ERROR]) }),
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });

    let counts = Arc::new(Counts::default());
    let held = Arc::new(Mutex::new(Vec::new()));
    let end = Instant::now() + Duration::from_secs(secs);
    let mut workers = tokio::task::JoinSet::new();
    let plan = [
        (Kind::WellBehaved, 6),
        (Kind::SlowReader, 2),
        (Kind::Uploader, 4),
        (Kind::NeverReads, 1),
        (Kind::Resetter, 1),
        (Kind::IdleKeepAlive, 1),
    ];
    for (kind, n) in plan {
        for _ in 0..n {
            let (counts, held) = (counts.clone(), held.clone());
            workers.spawn(async move {
                let mut i = 0u32;
                while Instant::now() < end {
                    client(addr, kind, counts.clone(), held.clone()).await;
                    i += 1;
                    // Hostile and idle clients pile up slowly: 20 per second each.
                    if matches!(kind, Kind::NeverReads | Kind::IdleKeepAlive) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                i
            });
        }
    }
    while workers.join_next().await.is_some() {}
    let rss_peak = rss_kib();
    let fds_loaded = open_fds();

    let signal = Instant::now();
    stop.send(()).unwrap();
    timeout(T, server).await.unwrap().unwrap();
    let served = signal.elapsed();
    closes.close();
    timeout(T, closes.wait()).await.expect("closes hung");
    let waited = signal.elapsed();
    drop(std::mem::take(&mut *held.lock().unwrap()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fds_after = open_fds();
    let rss_after = rss_kib();

    let c = &counts;
    println!(
        "soak {secs} s: {} whole responses, {} broken; {} hostile uploaders, {} resetters, \
         {} idle keep-alive; open fds {fds_before} -> {fds_loaded} (loaded) -> {fds_after}; \
         RSS {rss_before} -> {rss_peak} -> {rss_after} KiB; shutdown: serve returned after \
         {served:?}, tracker.wait() after {waited:?}",
        c.whole.load(Ordering::Relaxed),
        c.broken.load(Ordering::Relaxed),
        c.hostile.load(Ordering::Relaxed),
        c.resets.load(Ordering::Relaxed),
        c.idle.load(Ordering::Relaxed),
    );
    assert!(
        c.whole.load(Ordering::Relaxed) > 100,
        "too little load to judge"
    );
    assert_eq!(
        c.broken.load(Ordering::Relaxed),
        0,
        "ordinary responses broken"
    );
    assert!(
        fds_after <= fds_before + 8,
        "descriptors left: {fds_before} -> {fds_after}"
    );
    assert!(
        rss_peak < rss_before + 128 * 1024,
        "RSS {rss_before} -> {rss_peak} KiB"
    );
    assert!(
        waited < Duration::from_secs(3) + Duration::from_secs(2),
        "{waited:?}"
    );
}
