//! actix-web through `GracefulActixService`: real clients upload 10 MB to an early 413
//! and must get it whole.
//!
//! The app (an actix-web `App`) answers 413 with a 256 KiB body to uploads over 1 KiB
//! without reading them. Through the crate it is served by actix-server over
//! actix-http's `HttpService` and the adapter. Two controls, counted and printed
//! beside it, never asserted: the same `HttpService` over actix-http's own `tcp()`
//! (which the adapter replaces), where Python requests, sending its whole body before
//! it reads, is reset before it reads the answer; and actix-web's `HttpServer` with its
//! defaults, whose HTTP/1 dispatcher (actix-http 3.13 and later) reads and discards an
//! unread body for up to `client_disconnect_timeout` (1 s) before it closes: enough
//! for a 10 MB upload on loopback, not for an upload that needs longer. A client not
//! installed: `SKIP` (a failure under `CI=true`).
//!
//! TLS is left out: actix-web's rustls support pulls aws-lc-rs into the build of every
//! test (tokio-rustls's default provider), which the other TLS tests keep out.
#![cfg(all(feature = "actix", target_os = "linux"))]

#[path = "http_clients/clients.rs"]
#[allow(dead_code, unreachable_pub)]
mod clients;
#[path = "support/early413.rs"]
mod example;
#[path = "support/lab.rs"]
mod lab;
mod servers {
    pub use crate::example::Transport;
}

use actix_http::HttpService;
use actix_service::{map_config, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio_graceful_close::{CloseTracker, GracefulActixService};

use clients::Client;
use example::{Served, Transport};

async fn upload(req: HttpRequest, body: web::Payload) -> HttpResponse {
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    if example::too_large(len) {
        // Answered at once; the body stays unread when the connection closes.
        return HttpResponse::PayloadTooLarge().body(example::error_body());
    }
    match body.to_bytes().await {
        Ok(b) => HttpResponse::Ok().body(format!("stored {} bytes\n", b.len())),
        Err(_) => HttpResponse::BadRequest().finish(),
    }
}

fn app() -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new().route("/upload", web::post().to(upload))
}

/// Which server the control is.
#[derive(Clone, Copy)]
enum Control {
    /// actix-http's `HttpService::tcp()`: what the adapter replaces.
    Tcp,
    /// actix-web's `HttpServer`, its defaults.
    HttpServer,
}

async fn start(control: Control, graceful: bool) -> Served {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let server = if graceful {
        let closes = CloseTracker::new();
        let tracker = closes.clone();
        let server = actix_server::Server::build()
            .workers(1)
            .listen("graceful", tcp, move || {
                let app = map_config(app(), |_| AppConfig::default())
                    .map_err(|e: actix_web::Error| e.error_response());
                GracefulActixService::new(
                    HttpService::build().finish(app),
                    example::close_options(),
                )
                .tracked(&tracker)
            })
            .unwrap()
            .run();
        let handle = server.handle();
        tokio::spawn(async move {
            let _ = server.await;
            closes.close();
            closes.wait().await;
        });
        handle
    } else if let Control::Tcp = control {
        let server = actix_server::Server::build()
            .workers(1)
            .listen("plain", tcp, move || {
                let app = map_config(app(), |_| AppConfig::default())
                    .map_err(|e: actix_web::Error| e.error_response());
                HttpService::build().finish(app).tcp()
            })
            .unwrap()
            .run();
        let handle = server.handle();
        tokio::spawn(server);
        handle
    } else {
        let server = HttpServer::new(app).workers(1).listen(tcp).unwrap().run();
        let handle = server.handle();
        tokio::spawn(server);
        handle
    };
    Served {
        addr,
        stop: Box::new(move || {
            tokio::spawn(server.stop(true));
        }),
    }
}

const PLAIN: &[Transport] = &[Transport::Plain];

#[test]
fn curl() {
    let start = |_, graceful| start(Control::Tcp, graceful);
    example::matrix(Client::Curl, "actix-http tcp()", PLAIN, start);
}

#[test]
fn python_requests() {
    let start = |_, graceful| start(Control::Tcp, graceful);
    example::matrix(Client::Python, "actix-http tcp()", PLAIN, start);
}

#[test]
fn curl_beside_http_server() {
    let start = |_, graceful| start(Control::HttpServer, graceful);
    example::matrix(Client::Curl, "actix-web HttpServer", PLAIN, start);
}

#[test]
fn python_requests_beside_http_server() {
    let start = |_, graceful| start(Control::HttpServer, graceful);
    example::matrix(Client::Python, "actix-web HttpServer", PLAIN, start);
}

/// A stop during a close: the client reads the 413 and the server's FIN while still
/// uploading, the server is stopped gracefully, then the client sends the rest of its
/// upload and its FIN. actix-server ends each worker's runtime when it stops; the
/// close, still draining the upload, must not end with it: the connection is counted
/// until its close ended, so the stop waits, and the close is delivered.
#[test]
fn graceful_stop_waits_for_a_draining_close() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let seen = outcomes.clone();
    let closes = CloseTracker::new();
    let tracker = closes.clone();
    let server = {
        // actix-server starts its workers on the runtime it finds.
        let _rt = rt.enter();
        actix_server::Server::build()
            .workers(1)
            .listen("graceful", tcp, move || {
                let app = map_config(app(), |_| AppConfig::default())
                    .map_err(|e: actix_web::Error| e.error_response());
                let seen = seen.clone();
                GracefulActixService::new(
                    HttpService::build().finish(app),
                    example::close_options(),
                )
                .tracked(&tracker)
                .on_close(move |res| {
                    let outcome = res
                        .as_ref()
                        .map(|r| r.drained_bytes())
                        .map_err(|e| e.to_string());
                    seen.lock().unwrap().push(outcome);
                })
            })
            .unwrap()
            .run()
    };
    let handle = server.handle();
    let served = rt.spawn(server);

    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
        example::UPLOAD_LEN
    );
    client.write_all(head.as_bytes()).unwrap();
    // More than actix reads before it answers: the close drains the rest of it.
    let first = vec![b'u'; 4_000_000];
    client.write_all(&first).unwrap();
    // The whole answer, then the server's FIN: its close is draining now.
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 413"), "{:?}", &answer[..end]);
    assert_eq!(&answer[end + 4..], example::error_body());

    // Stop the server while the close drains; give the stop a moment to begin.
    let stop = rt.spawn(handle.stop(true));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        closes.pending(),
        1,
        "the close must still be running: {:?}",
        outcomes.lock().unwrap()
    );
    let rest = vec![b'u'; example::UPLOAD_LEN - first.len()];
    client.write_all(&rest).unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();

    rt.block_on(async {
        stop.await.unwrap();
        served.await.unwrap().unwrap();
        closes.close();
        closes.wait().await;
    });
    let outcomes = outcomes.lock().unwrap().clone();
    assert!(
        matches!(outcomes[..], [Ok(drained)] if drained >= (example::UPLOAD_LEN - first.len()) as u64),
        "the close drained the rest of the upload and was delivered: {outcomes:?}"
    );
}
