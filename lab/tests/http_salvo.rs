//! salvo through `GracefulListener`: real clients upload 10 MB to an early 413 and
//! must get it whole, over HTTP/1.1 and over salvo's own TLS (`RustlsListener` around
//! the graceful listener).
//!
//! The app answers 413 with a 256 KiB body to uploads over 1 KiB without reading them.
//! The clients (`example::client_tests!`): curl, Node `http.request` and Go net/http
//! read while they send; Python requests and the blocking Rust client send the whole
//! body before they read: served plainly, salvo can reset them before they read the
//! answer. Node `http.request` sends its next upload on the same connection unless the
//! answer said `Connection: close`. The plain counts are printed beside the graceful
//! ones, never asserted. A client not installed: `SKIP`
//! (a failure under `CI=true`).
#![cfg(all(feature = "salvo", target_os = "linux"))]

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

use std::time::Duration;

use salvo_core::conn::rustls::{Keycert, RustlsConfig};
use salvo_core::conn::tcp::TcpAcceptor;
use salvo_core::conn::{Acceptor, Listener, RustlsListener, TcpListener};
use salvo_core::http::{header, StatusCode};
use salvo_core::{handler, Request, Response, Router, Server, Service};
use tokio_graceful_close::salvo::{AnnounceClose, GracefulListener};

use example::{Served, Transport};

#[handler]
async fn upload(req: &mut Request, res: &mut Response) {
    let len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    if example::too_large(len) {
        // Answered at once; the body stays unread when the connection closes.
        res.status_code(StatusCode::PAYLOAD_TOO_LARGE);
        res.body(example::error_body().to_vec());
        return;
    }
    match req.payload().await {
        Ok(b) => {
            let n = b.len();
            res.body(format!("stored {n} bytes\n"));
        }
        Err(_) => {
            res.status_code(StatusCode::BAD_REQUEST);
        }
    }
}

/// The large early answer, at once: the upload stays unread.
#[handler]
async fn large(res: &mut Response) {
    res.status_code(StatusCode::PAYLOAD_TOO_LARGE);
    res.body(example::large_body().to_vec());
}

/// The app: the 256 KiB early 413 of the matrix, and the large one.
fn router() -> Router {
    Router::new()
        .push(Router::with_path("upload").post(upload))
        .push(Router::with_path("large").post(large))
}

fn tls_config() -> RustlsConfig {
    let (cert, key, _) = example::cert();
    RustlsConfig::new(Keycert::new().cert(cert.as_bytes()).key(key.as_bytes()))
}

/// Serves the router on `acceptor` until `stop` (with `announce`, through the crate's
/// `AnnounceClose`); then, if given, waits for `closes`.
fn spawn_server<A>(
    acceptor: A,
    closes: Option<tokio_graceful_close::CloseTracker>,
    announce: bool,
) -> Served
where
    A: Acceptor + Send + 'static,
{
    let addr = acceptor.holdings()[0]
        .local_addr
        .clone()
        .into_std()
        .unwrap();
    let server = Server::new(acceptor);
    let handle = server.handle();
    let service = Service::new(router());
    let service = if announce {
        service.hoop(AnnounceClose::new())
    } else {
        service
    };
    tokio::spawn(async move {
        server.serve(service).await;
        if let Some(closes) = closes {
            closes.close();
            closes.wait().await;
        }
    });
    Served {
        addr,
        stop: Box::new(move || handle.stop_graceful(Duration::from_secs(5))),
    }
}

async fn start(transport: Transport, graceful: bool) -> Served {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    match (transport.tls(), graceful) {
        (false, true) => {
            // The one call, as salvo's own server is used.
            let addr = tcp.local_addr().unwrap();
            let server =
                tokio_graceful_close::salvo::Server::with_settings(tcp, example::close_options())
                    .unwrap();
            let handle = server.handle();
            tokio::spawn(server.serve(router()));
            Served {
                addr,
                stop: Box::new(move || handle.stop_graceful(Duration::from_secs(5))),
            }
        }
        (false, false) => spawn_server(TcpAcceptor::try_from(tcp).unwrap(), None, false),
        (true, true) => {
            let listener = GracefulListener::new(tcp, example::close_options()).unwrap();
            let closes = listener.settings().tracker().clone();
            let acceptor = RustlsListener::new(tls_config(), listener).bind().await;
            spawn_server(acceptor, Some(closes), true)
        }
        (true, false) => {
            let addr = tcp.local_addr().unwrap();
            drop(tcp);
            let acceptor = TcpListener::new(addr).rustls(tls_config()).bind().await;
            spawn_server(acceptor, None, false)
        }
    }
}

const TRANSPORTS: &[Transport] = &[Transport::Plain, Transport::TlsH1];

example::client_tests!("salvo", TRANSPORTS, start);

/// An early answer far larger than the kernel's buffers (8 MiB) reaches a client that
/// sends its whole upload (16 MiB) before it reads: `AnnounceClose` has the upload read
/// and discarded while the answer goes out. Without it (the control, printed: the
/// graceful listener alone) both sides wait in their writes until the client gives up.
#[test]
fn a_large_early_answer_reaches_a_client_that_sends_all_first() {
    example::large_answer_to_a_send_all_client(
        "salvo::Server",
        || start(Transport::Plain, true),
        "GracefulListener without AnnounceClose",
        || async {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let listener = GracefulListener::new(tcp, example::close_options()).unwrap();
            spawn_server(listener, None, false)
        },
    );
}
