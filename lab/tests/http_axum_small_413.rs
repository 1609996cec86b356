//! axum's own small 413 (`DefaultBodyLimit`: "Failed to buffer the request body: length
//! limit exceeded", 56 bytes) to 10 MB uploads, 100 uploads 10 at a time, from hyper and
//! curl: through `GracefulListener` every run gets the whole answer; served plainly (the
//! control) the failures are counted and printed. A small answer usually leaves before
//! the reset of a plain close, so the control loses it rarely; the README quotes both.
#![cfg(all(feature = "axum", target_os = "linux"))]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_graceful_close::axum::GracefulListener;
use tokio_graceful_close::CloseOptions;

const RUNS: usize = 100;
const BATCH: usize = 10;
const UPLOAD: usize = 10_000_000;
const ANSWER: &[u8] = b"Failed to buffer the request body: length limit exceeded";

fn app() -> Router {
    Router::new()
        .route(
            "/upload",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .layer(DefaultBodyLimit::max(1024))
}

async fn start(graceful: bool) -> SocketAddr {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    if graceful {
        let opts = CloseOptions::new(Duration::from_secs(10));
        tokio::spawn(async move { axum::serve(GracefulListener::new(tcp, opts), app()).await });
    } else {
        tokio::spawn(async move { axum::serve(tcp, app()).await });
    }
    addr
}

/// One upload; whether the whole 413 came back.
async fn upload_hyper(addr: SocketAddr) -> bool {
    let run = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::post(format!("http://{addr}/upload"))
            .header("host", addr.to_string())
            .body(Full::new(Bytes::from(vec![b'u'; UPLOAD])))
            .ok()?;
        let res = send.send_request(req).await.ok()?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.ok()?.to_bytes();
        conn.abort();
        Some(status == 413 && &body[..] == ANSWER)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(30), run).await,
        Ok(Some(true))
    )
}

async fn upload_curl(addr: SocketAddr, file: std::path::PathBuf) -> bool {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-H",
            "Expect:",
            "-w",
            "\n%{http_code}",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{addr}/upload"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => {
            let mut expected = ANSWER.to_vec();
            expected.extend_from_slice(b"\n413");
            o.stdout == expected
        }
        _ => false,
    }
}

async fn whole_answers(graceful: bool, curl: Option<std::path::PathBuf>) -> usize {
    let addr = start(graceful).await;
    let mut whole = 0;
    for _ in 0..RUNS / BATCH {
        let mut set = JoinSet::new();
        for _ in 0..BATCH {
            let file = curl.clone();
            set.spawn(async move {
                match file {
                    Some(f) => upload_curl(addr, f).await,
                    None => upload_hyper(addr).await,
                }
            });
        }
        whole += set.join_all().await.into_iter().filter(|ok| *ok).count();
    }
    whole
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_small_413_arrives_whole_through_graceful_listener() {
    let have_curl = std::process::Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have_curl || std::env::var("CI").as_deref() != Ok("true"),
        "curl is needed under CI"
    );
    let file = std::env::temp_dir().join(format!("tgc-small-413-{}", std::process::id()));
    tokio::fs::write(&file, vec![b'u'; UPLOAD]).await.unwrap();
    let clients: Vec<(&str, Option<std::path::PathBuf>)> = if have_curl {
        vec![("hyper", None), ("curl", Some(file.clone()))]
    } else {
        println!("SKIP (curl part): curl not on PATH");
        vec![("hyper", None)]
    };
    for (name, curl) in clients {
        let control = whole_answers(false, curl.clone()).await;
        let graceful = whole_answers(true, curl).await;
        println!(
            "axum's 56-byte 413, {name}: plain axum lost it in {} / {RUNS}; GracefulListener in {} / {RUNS}",
            RUNS - control,
            RUNS - graceful
        );
        assert_eq!(graceful, RUNS, "{name}: every run gets the whole 413");
    }
    let _ = tokio::fs::remove_file(&file).await;
}
