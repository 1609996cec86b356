//! TLS and HTTP/2 with graceful closes: the order of `close_notify`, FIN and drain on
//! the wire, closes that do not depend on `poll_shutdown` reaching the `GracefulIo`,
//! handshakes that fail or stall, real clients (curl, hyper) over TLS with HTTP/1.1 and
//! h2, HTTP/2 GOAWAY on shutdown, hyper-rustls's connector around the tower layer, and
//! tonic over `GracefulIo`.
#![cfg(all(feature = "rustls", feature = "axum", target_os = "linux"))]

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/axum_upload_limit.rs"]
mod example;

mod support;

mod clients;
#[cfg(all(feature = "tower", feature = "hyper-client"))]
mod connector;
mod drop_path;
mod goaway;
#[cfg(all(feature = "tonic", feature = "tower", feature = "hyper-client"))]
mod grpc;
mod handshakes;
mod wire_order;
