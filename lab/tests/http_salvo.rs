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
use salvo_core::{handler, Request, Response, Router, Server};
use tokio_graceful_close::salvo::GracefulListener;

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

fn tls_config() -> RustlsConfig {
    let (cert, key, _) = example::cert();
    RustlsConfig::new(Keycert::new().cert(cert.as_bytes()).key(key.as_bytes()))
}

/// Serves the router on `acceptor` until `stop`; then, if given, waits for `closes`.
fn spawn_server<A>(acceptor: A, closes: Option<tokio_graceful_close::CloseTracker>) -> Served
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
    let router = Router::with_path("upload").post(upload);
    tokio::spawn(async move {
        server.serve(router).await;
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
            let listener = GracefulListener::new(tcp, example::close_options()).unwrap();
            let closes = listener.settings().tracker().clone();
            spawn_server(listener, Some(closes))
        }
        (false, false) => spawn_server(TcpAcceptor::try_from(tcp).unwrap(), None),
        (true, true) => {
            let listener = GracefulListener::new(tcp, example::close_options()).unwrap();
            let closes = listener.settings().tracker().clone();
            let acceptor = RustlsListener::new(tls_config(), listener).bind().await;
            spawn_server(acceptor, Some(closes))
        }
        (true, false) => {
            let addr = tcp.local_addr().unwrap();
            drop(tcp);
            let acceptor = TcpListener::new(addr).rustls(tls_config()).bind().await;
            spawn_server(acceptor, None)
        }
    }
}

const TRANSPORTS: &[Transport] = &[Transport::Plain, Transport::TlsH1];

example::client_tests!("salvo", TRANSPORTS, start);
