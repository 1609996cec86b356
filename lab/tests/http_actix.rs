//! actix-web through `GracefulService`: real clients upload 10 MB to an early 413
//! and must get it whole.
//!
//! The app (an actix-web `App`) answers 413 with a 256 KiB body to uploads over 1 KiB
//! without reading them. Through the crate it is served by actix-server over
//! actix-http's `HttpService` and the adapter, over TCP and (feature `rustls`) over
//! TLS with `GracefulService::rustls`, to every client of `example::client_tests!`
//! (curl, Python requests, Node `http.request`, Go net/http, the blocking Rust
//! client). Two controls, counted and printed beside it, never asserted: the same
//! `HttpService` over actix-http's own `tcp()` and `rustls_0_23()` (which the adapter
//! replaces), where Python requests, sending its whole body before it reads, is reset
//! before it reads the answer; and actix-web's
//! `HttpServer` with its defaults (over TCP), whose HTTP/1 dispatcher (actix-http 3.13
//! and later) reads and discards an unread body for up to `client_disconnect_timeout`
//! (1 s) before it closes: enough for a 10 MB upload on loopback, not for an upload
//! that needs longer. A client not installed: `SKIP` (a failure under `CI=true`).
#![cfg(all(feature = "actix", target_os = "linux"))]

#[path = "http_clients/clients.rs"]
#[allow(dead_code, unreachable_pub)]
mod clients;
#[path = "support/early413.rs"]
mod example;
#[path = "../../tests/support/lab.rs"]
mod lab;
mod servers {
    pub use crate::example::Transport;
}

use actix_http::HttpService;
use actix_service::{map_config, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio_graceful_close::actix::GracefulService;
use tokio_graceful_close::{CloseSettings, CloseTracker};

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
    App::new().route("/upload", web::post().to(upload)).route(
        "/large",
        web::post().to(|| async {
            // The large early answer, at once: the upload stays unread.
            HttpResponse::PayloadTooLarge().body(example::large_body())
        }),
    )
}

/// Which server the control is.
#[derive(Clone, Copy)]
enum Control {
    /// actix-http's `HttpService::tcp()` or `rustls_0_23()`: what the adapter replaces.
    HttpService,
    /// actix-web's `HttpServer`, its defaults.
    HttpServer,
}

/// The TLS server config: ring, the test certificate, and the ALPN names of
/// `transport` (none for actix-http's `rustls_0_23()`, which adds its own).
fn tls_config(alpn: Option<Transport>) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;

    let (_, key, cert) = example::cert();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.clone()],
            PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = match alpn {
        Some(Transport::TlsH2) => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Some(_) => vec![b"http/1.1".to_vec()],
        None => Vec::new(),
    };
    config
}

/// actix-server on `tcp` with one worker and the service `factory` makes.
fn serve<F, T>(tcp: std::net::TcpListener, factory: F) -> actix_server::Server
where
    F: Fn() -> T + Send + Clone + 'static,
    T: actix_service::ServiceFactory<tokio::net::TcpStream, Config = ()>,
{
    actix_server::Server::build()
        .workers(1)
        .listen("upload", tcp, factory)
        .unwrap()
        .run()
}

async fn start(transport: Transport, control: Control, graceful: bool) -> Served {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let closes = CloseTracker::new();
    let tracker = closes.clone();
    let server = match (transport.tls(), graceful, control) {
        // The one call, as actix-web's own `HttpServer` is used.
        (false, true, _) => tokio_graceful_close::actix::HttpServer::new(app)
            .settings(CloseSettings::new(example::close_options()).tracked(&tracker))
            .workers(1)
            .disable_signals()
            .listen(tcp)
            .unwrap()
            .run(),
        #[cfg(feature = "rustls")]
        (true, true, _) => {
            let acceptor =
                tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls_config(Some(transport))));
            serve(tcp, move || {
                let app = map_config(app(), |_| AppConfig::default())
                    .map_err(|e: actix_web::Error| e.error_response());
                GracefulService::new(
                    HttpService::build().finish(app),
                    CloseSettings::new(example::close_options()).tracked(&tracker),
                )
                .rustls(acceptor.clone())
            })
        }
        (false, false, Control::HttpService) => serve(tcp, move || {
            let app = map_config(app(), |_| AppConfig::default())
                .map_err(|e: actix_web::Error| e.error_response());
            HttpService::build().finish(app).tcp()
        }),
        (true, false, Control::HttpService) => serve(tcp, move || {
            let app = map_config(app(), |_| AppConfig::default())
                .map_err(|e: actix_web::Error| e.error_response());
            HttpService::build()
                .finish(app)
                .rustls_0_23(tls_config(None))
        }),
        (false, false, Control::HttpServer) => {
            HttpServer::new(app).workers(1).listen(tcp).unwrap().run()
        }
        _ => unreachable!("no such cell"),
    };
    let handle = server.handle();
    tokio::spawn(async move {
        let _ = server.await;
        if graceful {
            closes.close();
            closes.wait().await;
        }
    });
    Served {
        addr,
        stop: Box::new(move || {
            tokio::spawn(handle.stop(true));
        }),
    }
}

/// Over TCP, and over TLS with feature `rustls`.
const TRANSPORTS: &[Transport] = if cfg!(feature = "rustls") {
    &[Transport::Plain, Transport::TlsH1]
} else {
    &[Transport::Plain]
};

/// The cells of the adapter: through it, and over actix-http's own `tcp()` and
/// `rustls_0_23()` as the control.
async fn http_service(transport: Transport, graceful: bool) -> Served {
    start(transport, Control::HttpService, graceful).await
}

example::client_tests!("actix-http HttpService", TRANSPORTS, http_service);

/// h2 over TLS, curl asking for it: the adapter serves HTTP/2 when ALPN chose it.
#[cfg(feature = "rustls")]
#[test]
fn curl_over_h2() {
    example::matrix(
        Client::Curl,
        "actix-http HttpService",
        &[Transport::TlsH2],
        http_service,
    );
}

/// actix-web's own `HttpServer` as the control, the crate's `actix::HttpServer` beside it.
async fn http_server(transport: Transport, graceful: bool) -> Served {
    start(transport, Control::HttpServer, graceful).await
}

example::client_tests!(
    "actix-web HttpServer", &[Transport::Plain], http_server;
    curl_beside_http_server: Curl,
    python_requests_beside_http_server: Python,
);

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
                GracefulService::new(
                    HttpService::build().finish(app),
                    CloseSettings::new(example::close_options())
                        .tracked(&tracker)
                        .on_close(move |res| {
                            let outcome = res
                                .as_ref()
                                .map(|r| r.drained_bytes())
                                .map_err(|e| e.to_string());
                            seen.lock().unwrap().push(outcome);
                        }),
                )
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

/// Over TLS, handshakes that fail (a client speaking plain HTTP) or time out (a client
/// that sends nothing) end their connection with a graceful close, reported to
/// `on_close`; the client sees the server's FIN, not a reset, and the service calls
/// end with the closes.
#[cfg(feature = "rustls")]
#[test]
fn failed_and_stalled_handshakes_close_gracefully() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

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
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(Some(Transport::TlsH1))));
    let server = {
        let _rt = rt.enter();
        serve(tcp, move || {
            let app = map_config(app(), |_| AppConfig::default())
                .map_err(|e: actix_web::Error| e.error_response());
            let seen = seen.clone();
            GracefulService::new(
                HttpService::build().finish(app),
                CloseSettings::new(example::close_options())
                    .tracked(&tracker)
                    .on_close(move |res| {
                        let outcome = res.as_ref().map(|r| r.acked()).map_err(|e| e.to_string());
                        seen.lock().unwrap().push(outcome);
                    }),
            )
            .rustls(acceptor.clone())
            .handshake_timeout(Duration::from_millis(300))
        })
    };
    let handle = server.handle();
    let served = rt.spawn(server);

    // Plain HTTP to the TLS port: rustls refuses the first record.
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    plain
        .read_to_end(&mut got)
        .expect("the server's FIN, not a reset");
    drop(plain);

    // Silence: the handshake times out.
    let mut silent = std::net::TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    silent
        .read_to_end(&mut got)
        .expect("the server's FIN, not a reset");
    assert!(got.is_empty(), "{got:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    drop(silent);

    rt.block_on(async {
        handle.stop(true).await;
        served.await.unwrap().unwrap();
        closes.close();
        closes.wait().await;
    });
    let outcomes = outcomes.lock().unwrap().clone();
    assert_eq!(outcomes, [Ok(true), Ok(true)], "both closes delivered");
}

/// An early answer far larger than the kernel's buffers (8 MiB) reaches a client that
/// sends its whole upload (16 MiB) before it reads, through `actix::HttpServer`
/// (actix-http reads and discards the payload a handler left). The control, printed:
/// actix-http's own `tcp()`.
#[test]
fn a_large_early_answer_reaches_a_client_that_sends_all_first() {
    example::large_answer_to_a_send_all_client(
        "actix::HttpServer",
        || start(Transport::Plain, Control::HttpService, true),
        "actix-http's tcp()",
        || start(Transport::Plain, Control::HttpService, false),
    );
}
