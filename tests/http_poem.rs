//! poem through `GracefulPoemListener`: real clients upload 10 MB to an early 413 and
//! must get it whole.
//!
//! The app answers 413 with a 256 KiB body to uploads over 1 KiB without reading them.
//! curl reads while it sends; Python requests sends the whole body before it reads:
//! served plainly, poem resets it before it reads the answer. The plain counts are
//! printed beside the graceful ones, never asserted. A client not installed: `SKIP`
//! (a failure under `CI=true`).
//!
//! TLS is left out: poem's `rustls` feature pulls aws-lc-rs into the build of every
//! test (tokio-rustls's default provider), which the other TLS tests keep out. The
//! listener goes under poem's TLS as any listener does
//! (`GracefulPoemListener::new(TcpListener::bind(addr), opts).rustls(config)`), checked
//! by hand with these uploads: 5 of 5 whole for curl and Python requests, 2 and 0 of 5
//! for poem's plain `TcpListener::bind(addr).rustls(config)`.
#![cfg(all(feature = "poem", target_os = "linux"))]

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

use poem::http::{header, StatusCode};
use poem::listener::TcpAcceptor;
use poem::{handler, post, Body, EndpointExt, Request, Response, Route, Server};
use tokio_graceful_close::GracefulPoemListener;

use clients::Client;
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

async fn start(_transport: Transport, graceful: bool) -> Served {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let acceptor = TcpAcceptor::from_tokio(tcp).unwrap();
    let app = Route::new().at("/upload", post(upload)).boxed();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        let _ = stopped.await;
    };
    let timeout = Some(std::time::Duration::from_secs(5));
    if graceful {
        let listener = GracefulPoemListener::new(acceptor, example::close_options());
        let closes = listener.tracker();
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(listener)
                .run_with_graceful_shutdown(app, signal, timeout)
                .await;
            closes.close();
            closes.wait().await;
        });
    } else {
        tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor)
                .run_with_graceful_shutdown(app, signal, timeout)
                .await;
        });
    }
    Served {
        addr,
        stop: Box::new(move || {
            let _ = stop.send(());
        }),
    }
}

#[test]
fn curl() {
    example::matrix(Client::Curl, "poem", &[Transport::Plain], start);
}

#[test]
fn python_requests() {
    example::matrix(Client::Python, "poem", &[Transport::Plain], start);
}
