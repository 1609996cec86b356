//! The clients people really use upload to an early 413 and must get it whole.
//!
//! The `axum_upload_limit` example's app answers 413 with a 256 KiB page to uploads
//! over 1 KiB without reading them. Each client uploads to it, served through
//! `GracefulListener` / `GracefulTlsListener`, over plain HTTP/1.1, TLS with HTTP/1.1,
//! TLS with h2 (ALPN) and over the namespace lab link (20 Mbit/s). Every run must get
//! the whole 413. The same uploads to plain axum (the control) are counted and printed
//! beside them, never asserted.
//!
//! The clients: curl, Go net/http, Node fetch and Node `http.request` read while they
//! send; Python requests, headless Chromium over HTTP/1.1 and
//! [`clients::send_all_then_read`] (a blocking Rust client, the deterministic
//! reproduction) send the whole body before they read anything. A server that waits
//! for the acknowledgement of its answer without discarding their upload deadlocks
//! with the second kind. Node `http.request` (its default agent) sends the next upload
//! on the same connection unless the answer said `Connection: close`: an early answer
//! that does not say so and a close after it can leave it a dead connection.
//!
//! Whether such a deadlock can happen depends on the kernel's buffers: in the matrix's
//! cells they mostly autotune large enough to take the whole answer, so those cells
//! lose it only now and then when the discard while the answer goes out is missing. The
//! `*_answer_larger_than_the_buffers` tests fix the server's send buffer small over the
//! lab link, so that the answer never fits and the three clients that send all first
//! meet that discard in every run.
//!
//! A client that is not installed makes its test print `SKIP: <name> ...` and pass;
//! under `CI=true` it fails (`.ci/run` installs every client). The lab needs root, as
//! in `lab/tests/lab/`.
#![cfg(all(feature = "axum", feature = "rustls", target_os = "linux"))]

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/axum_upload_limit.rs"]
mod example;
#[path = "../../../tests/support/lab.rs"]
mod lab;
#[allow(dead_code, unreachable_pub)]
#[path = "../tls/support.rs"]
mod support;

mod clients;
mod servers;

use std::sync::{Mutex, PoisonError};

use clients::Client;
use servers::Transport;

/// Runs per cell through the crate; the control gets as many.
const RUNS: usize = 5;

/// One client at a time: the cells are timed by their clients, and two browsers or
/// two 10 MB uploaders at once on two cores would only measure each other.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The runtime of a client's cells.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The failure line of a cell that lost 413s through the crate, with the server's side.
fn lost(client: Client, transport: Transport, cell: &servers::Cell) -> String {
    format!(
        "{} over {}: {} / {RUNS} whole{}{}",
        client.name(),
        transport.name(),
        cell.whole(),
        cell.first_failure(),
        cell.server_side()
    )
}

/// Runs `client` against every transport it speaks; asserts every graceful run got the
/// whole 413 and prints a row per transport with the control beside it.
fn matrix(client: Client) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(ready) = clients::prepare(client) else {
        return;
    };
    let rt = runtime();
    let mut failures = Vec::new();
    for transport in Transport::ALL {
        if !client.speaks(transport) {
            continue;
        }
        let lab = match transport {
            Transport::Lab => match servers::lab() {
                Some(lab) => Some(lab),
                None => continue,
            },
            _ => None,
        };
        let graceful = rt.block_on(servers::cell(&ready, transport, lab.as_ref(), true, RUNS));
        let plain = rt.block_on(servers::cell(&ready, transport, lab.as_ref(), false, RUNS));
        println!(
            "| {} | {} | {} / {RUNS} whole{} | plain axum: {} / {RUNS} whole{} |",
            client.name(),
            transport.name(),
            graceful.whole(),
            graceful.protocols(),
            plain.whole(),
            plain.first_failure(),
        );
        if graceful.whole() != RUNS {
            failures.push(lost(client, transport, &graceful));
        }
    }
    assert!(failures.is_empty(), "lost 413s:\n{}", failures.join("\n"));
}

/// Runs `client` over the lab link with the server's send buffer fixed small
/// ([`Transport::LabSmallSendBuffer`]), through the crate only, and asserts every run
/// got the whole 413.
///
/// In the matrix's lab cell the kernel's buffers mostly autotune large enough to take
/// the 256 KiB answer: the server's send buffer grows with its congestion window (276
/// KB median in those cells, `ss -tm`), the client's receive queue takes some 110-120
/// KB. hyper then finishes writing the answer and the close's drain discards the
/// upload, so the cell passes even without the discard while hyper writes. It fails
/// only when the send buffer stays small: without that discard, 1 Python upload in 300
/// found it at 152 KB (congestion window 22), and hyper's write of the answer's last
/// 111 KB waited on the client, which was not reading, while the client's upload
/// waited on hyper, which had stopped reading the body its handler dropped. Python
/// gave up after 30 s: `ConnectionError(ProtocolError('Connection aborted.',
/// TimeoutError('timed out')))`, the lab-link cell's intermittent failure before that
/// discard existed. Here the answer never fits: a client that sends its whole upload
/// before it reads gets it only because the crate discards the upload while hyper
/// writes.
fn answer_larger_than_the_buffers(client: Client) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(ready) = clients::prepare(client) else {
        return;
    };
    let Some(lab) = servers::lab() else {
        return;
    };
    let transport = Transport::LabSmallSendBuffer;
    let cell = runtime().block_on(servers::cell(&ready, transport, Some(&lab), true, RUNS));
    println!(
        "| {} | {} | {} / {RUNS} whole |",
        client.name(),
        transport.name(),
        cell.whole()
    );
    assert!(
        cell.whole() == RUNS,
        "lost 413s:\n{}",
        lost(client, transport, &cell)
    );
}

#[test]
fn curl() {
    matrix(Client::Curl);
}

#[test]
fn python_requests() {
    matrix(Client::Python);
}

#[test]
fn node_fetch() {
    matrix(Client::Node);
}

#[test]
fn node_http_request() {
    matrix(Client::NodeHttp);
}

#[test]
fn go_net_http() {
    matrix(Client::Go);
}

#[test]
fn headless_chromium() {
    matrix(Client::Chromium);
}

#[test]
fn rust_send_all_then_read() {
    matrix(Client::SendAll);
}

#[test]
fn python_requests_answer_larger_than_the_buffers() {
    answer_larger_than_the_buffers(Client::Python);
}

#[test]
fn headless_chromium_answer_larger_than_the_buffers() {
    answer_larger_than_the_buffers(Client::Chromium);
}

#[test]
fn rust_send_all_answer_larger_than_the_buffers() {
    answer_larger_than_the_buffers(Client::SendAll);
}
