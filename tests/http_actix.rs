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
