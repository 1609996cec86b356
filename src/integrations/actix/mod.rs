//! actix-web: actix-web's `HttpServer` with graceful closes (feature `actix`).
//!
//! [`HttpServer`] is used as actix-web's own (`HttpServer::new(|| App::new()...)
//! .bind(addr)?.run().await`): every connection it serves is a
//! [`GracefulIo`](crate::GracefulIo), so that the close that ends it, after a clean end
//! or on an error path, is graceful and an early answer (413, 401, 503) to a client
//! still uploading is delivered whole; an early HTTP/1 answer says `Connection: close`.
//!
//! ```no_run
//! use actix_web::{web, App};
//!
//! # async fn dox() -> std::io::Result<()> {
//! tokio_graceful_close::actix::HttpServer::new(|| {
//!     App::new().route("/", web::get().to(|| async { "hello" }))
//! })
//! .bind(("0.0.0.0", 8080))?
//! .run()
//! .await
//! # }
//! ```
//!
//! Underneath, actix-web's `HttpServer` runs an actix-server `ServerBuilder` whose
//! service per connection is actix-http's `HttpService::tcp()`: a `TcpStream` handed to
//! an `HttpService` generic over its I/O. [`GracefulService`] takes the place of
//! `tcp()`: the `HttpService` is served over a `GracefulIo`. It stays public for a
//! server of your own, and for TLS (features `actix` and `rustls`):
//! [`GracefulService::rustls`] takes the place of actix-http's `rustls_0_23()` in the
//! same way, the handshake over the `GracefulIo` and the `HttpService` over the TLS
//! stream on top of it.
//!
//! An actix-web `App` is served this way with actix-service's `map_config`, as
//! `HttpServer` does itself (the `AppConfig` then holds `AppConfig::default()`'s host
//! and address, used by `url_for` and `ConnectionInfo` when a request names no host).

mod server;
mod service;

pub use self::server::HttpServer;
pub use self::service::GracefulService;
