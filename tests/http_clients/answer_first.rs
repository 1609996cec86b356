//! The answer first: a client that reads while it uploads (curl, Go, Node) takes the
//! early 413 while its upload waits in the server's closed receive window, instead of
//! having the upload discarded meanwhile, which over a path with a queue keeps the
//! answer's acknowledgements behind the upload.
//!
//! Judged by the client's own count: the bytes of its upload the server had
//! acknowledged (`tcpi_bytes_acked`) when the whole answer arrived. Discarding while
//! answering lets the upload run at the link's rate for as long as the answer takes
//! (over the 20 Mbit/s lab link, 200-360 KB in most runs); holding lets through what
//! the server's receive buffer takes, and what hyper read with the request's head.

use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_graceful_close::{GracefulConnectInfo, GracefulListener};

use crate::example;
use crate::lab::Side;
use crate::servers;

/// Runs: a discard at the link's rate goes past the bound in most runs, not all (its
/// answer may be written before much of the upload came); a hold never does.
const RUNS: usize = 5;

/// The most of the upload the server may have taken by the time the answer is whole:
/// its receive buffer (`tcp_rmem`'s default in its namespace, 128 KiB unless changed)
/// and what hyper read with the request's head (its read buffer), 64 KiB at most here.
/// A discard at the link's rate meanwhile lets 200-360 KB through in most runs.
fn most_taken(lab: &crate::lab::Lab) -> u64 {
    let out = lab
        .exec(Side::A, "sysctl", &["-n", "net.ipv4.tcp_rmem"])
        .expect("sysctl net.ipv4.tcp_rmem");
    let rmem = String::from_utf8_lossy(&out.stdout);
    let default: u64 = rmem
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("tcp_rmem: {rmem:?}"));
    default + (64 << 10)
}

/// Uploads 10 MB (no `Expect`) and reads at once; returns the upload bytes the server
/// had acknowledged when the whole answer was read, and the answer.
async fn upload_reading(stream: tokio::net::TcpStream) -> (u64, Vec<u8>) {
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: lab\r\ncontent-length: {}\r\n\r\n",
        example::UPLOAD_LEN
    );
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b'u'; 64 << 10];
        let mut left = example::UPLOAD_LEN;
        while left > 0 {
            let n = left.min(chunk.len());
            wr.write_all(&chunk[..n]).await?;
            left -= n;
        }
        std::io::Result::Ok(wr)
    });
    let mut answer = Vec::new();
    let mut buf = vec![0; 64 << 10];
    let acked = loop {
        let n = rd.read(&mut buf).await.expect("read the answer");
        assert!(n > 0, "the answer ended early: {} bytes", answer.len());
        answer.extend_from_slice(&buf[..n]);
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            if answer.len() >= end + 4 + example::ERROR_BODY_LEN {
                let info = crate::tcp_info::tcp_info(rd.as_ref().as_fd());
                break info.tcpi_bytes_acked;
            }
        }
    };
    writer.abort();
    (acked, answer)
}

#[test]
fn a_reading_client_takes_the_answer_before_its_upload_goes_on() {
    let _one = crate::ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(lab) = servers::lab() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = lab.listen(Side::A, 0).expect("listen in the lab");
        let addr = tcp.local_addr().unwrap();
        let listener = GracefulListener::new(tcp, example::close_options());
        let app = GracefulConnectInfo::new(example::graceful_app());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut taken = Vec::new();
        let most = most_taken(&lab);
        for _ in 0..RUNS {
            let stream = lab.connect(Side::B, addr).await.expect("connect");
            let (acked, answer) =
                tokio::time::timeout(Duration::from_secs(30), upload_reading(stream))
                    .await
                    .expect("the whole answer within 30 s");
            assert!(answer.starts_with(b"HTTP/1.1 413"), "{:?}", &answer[..40]);
            let body = &answer[answer.len() - example::ERROR_BODY_LEN..];
            assert!(body == &example::error_body()[..], "the 413's body differs");
            taken.push(acked);
        }
        server.abort();
        println!("upload taken by the server when the answer was whole: {taken:?} bytes");
        assert!(
            taken.iter().all(|&n| n <= most),
            "the server took more than {most} bytes of the upload while the client took \
             the answer: {taken:?}"
        );
    });
}
