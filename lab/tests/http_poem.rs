//! poem through `GracefulListener`: real clients upload 10 MB to an early 413 and
//! must get it whole.
//!
//! The app answers 413 with a 256 KiB body to uploads over 1 KiB without reading them.
//! The clients (`example::client_tests!`): curl, Node `http.request` and Go net/http
//! read while they send; Python requests and the blocking Rust client send the whole
//! body before they read: served plainly, poem can reset them before they read the
//! answer. Node `http.request` sends its next upload on the same connection unless the
//! answer said `Connection: close`. The plain counts are printed beside the graceful
//! ones, never asserted. A client not installed: `SKIP`
//! (a failure under `CI=true`).
//!
//! Over TLS, poem's own: `GracefulListener::new(TcpListener::bind(addr), opts)
//! .rustls(config)` (the graceful listener under poem's `RustlsListener`), beside
//! `TcpListener::bind(addr).rustls(config)`. poem's `rustls` feature brings aws-lc-rs
//! (see `Cargo.toml`): poem picks it as the process's crypto provider.
#![cfg(all(feature = "poem", target_os = "linux"))]

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

use poem::http::{header, StatusCode};
use poem::listener::{
    Acceptor, Listener, RustlsCertificate, RustlsConfig, TcpAcceptor, TcpListener,
};
use poem::{handler, post, Body, EndpointExt, Request, Response, Route, Server};
use tokio_graceful_close::poem::{AnnounceClose, GracefulListener};

use example::{Served, Transport};

#[handler]
async fn upload(req: &Request, body: Body) -> Response {
    let len = req.header(header::CONTENT_LENGTH);
    if example::too_large(len) {
        // Answered at once; the body stays unread when the connection closes.
        return Response::builder()
            .status(StatusCode::PAYLOAD_TOO_LARGE)
            .body(example::error_body());
    }
    match body.into_bytes().await {
        Ok(b) => Response::builder().body(format!("stored {} bytes\n", b.len())),
        Err(_) => Response::builder().status(StatusCode::BAD_REQUEST).finish(),
    }
}

/// The large early answer, at once: the upload stays unread.
#[handler]
async fn large() -> Response {
    Response::builder()
        .status(StatusCode::PAYLOAD_TOO_LARGE)
        .body(example::large_body())
}

fn tls_config() -> RustlsConfig {
    let (cert, key, _) = example::cert();
    RustlsConfig::new().fallback(
        RustlsCertificate::new()
            .cert(cert.as_str())
            .key(key.as_str()),
    )
}

/// Serves the app on `acceptor` until `stop` (with `announce`, through the crate's
/// `AnnounceClose`); then, if given, waits for `closes`.
fn spawn_server<A>(
    acceptor: A,
    closes: Option<tokio_graceful_close::CloseTracker>,
    announce: bool,
) -> Served
where
    A: Acceptor + 'static,
{
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let app = Route::new()
        .at("/upload", post(upload))
        .at("/large", post(large));
    let app = if announce {
        app.with(AnnounceClose::new()).boxed()
    } else {
        app.boxed()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let timeout = Some(std::time::Duration::from_secs(5));
    tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, signal, timeout)
            .await;
        if let Some(closes) = closes {
            closes.close();
            closes.wait().await;
        }
    });
    Served {
        addr,
        stop: Box::new(move || {
            let _ = stop.send(());
        }),
    }
}

async fn start(transport: Transport, graceful: bool) -> Served {
    let opts = example::close_options();
    match (transport.tls(), graceful) {
        (false, true) => {
            // The one call, as poem's own server is used: poem's listener binds at
            // `run` (a free port found first).
            let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap()
                .local_addr()
                .unwrap();
            let server =
                tokio_graceful_close::poem::Server::new(TcpListener::bind(addr)).settings(opts);
            let app = Route::new()
                .at("/upload", post(upload))
                .at("/large", post(large));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let signal = async move {
                let _ = stopped.await;
            };
            let timeout = Some(std::time::Duration::from_secs(5));
            tokio::spawn(server.run_with_graceful_shutdown(app, signal, timeout));
            example::wait_until_listening(addr).await;
            Served {
                addr,
                stop: Box::new(move || {
                    let _ = stop.send(());
                }),
            }
        }
        (false, false) => {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            spawn_server(TcpAcceptor::from_tokio(tcp).unwrap(), None, false)
        }
        (true, true) => {
            // As the docs say: the graceful listener under poem's TLS.
            let listener = GracefulListener::new(TcpListener::bind("127.0.0.1:0"), opts);
            let closes = listener.settings().tracker().clone();
            let acceptor = listener.rustls(tls_config()).into_acceptor().await.unwrap();
            spawn_server(acceptor, Some(closes), true)
        }
        (true, false) => {
            let listener = TcpListener::bind("127.0.0.1:0").rustls(tls_config());
            spawn_server(listener.into_acceptor().await.unwrap(), None, false)
        }
    }
}

const TRANSPORTS: &[Transport] = &[Transport::Plain, Transport::TlsH1];

example::client_tests!("poem", TRANSPORTS, start);

/// An early answer far larger than the kernel's buffers (8 MiB) reaches a client that
/// sends its whole upload (16 MiB) before it reads: `AnnounceClose` has the upload read
/// and discarded while the answer goes out. Without it (the control, printed: the
/// graceful listener alone) both sides wait in their writes until the client gives up.
#[test]
fn a_large_early_answer_reaches_a_client_that_sends_all_first() {
    example::large_answer_to_a_send_all_client(
        "poem::Server",
        || start(Transport::Plain, true),
        "GracefulListener without AnnounceClose",
        || async {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let acceptor = TcpAcceptor::from_tokio(tcp).unwrap();
            spawn_server(
                GracefulListener::new(acceptor, example::close_options()),
                None,
                false,
            )
        },
    );
}
