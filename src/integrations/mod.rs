//! Adapters for the HTTP ecosystem, one module per framework, each behind its feature
//! and public at the crate root under the framework's name (`tokio_graceful_close::axum`).
//!
//! Every adapter has the same shape: `new(inner, settings)` takes what it wraps and a
//! [`CloseSettings`](crate::CloseSettings) (or just [`CloseOptions`](crate::CloseOptions)),
//! `settings()` shows them, and every connection it accepts or makes is a
//! [`GracefulIo`](crate::GracefulIo) with those settings.
//!
//! | feature | module | type | wraps | for |
//! |---|---|---|---|---|
//! | `axum` | [`axum`](crate::axum) | `GracefulListener`, `AnnounceCloseLayer`, `GracefulConnectInfo` | an `axum::serve::Listener`, a `Router` | `axum::serve` |
//! | `tower` | [`tower`](crate::tower) | `GracefulCloseLayer` | a connector or a connection service | hyper-util's client, tower servers |
//! | `rustls` | [`rustls`](crate::rustls) | `GracefulTlsListener` | a `TcpListener` and a `TlsAcceptor` | TLS servers, `axum::serve` (with `axum`) |
//! | `poem` | [`poem`](crate::poem) | `GracefulListener` | a poem `Listener` or `Acceptor` | `poem::Server` |
//! | `salvo` | [`salvo`](crate::salvo) | `GracefulListener` | a `TcpListener` | salvo's `Server` |
//! | `actix` | [`actix`](crate::actix) | `GracefulService` | actix-http's `HttpService` (with `rustls`: and a `TlsAcceptor`) | actix-server, actix-web's `App` |
//! | `hyper-client` | none | hyper-util's `Connection` for `GracefulIo` | | connectors of your own for hyper-util's client |
//! | `tonic` | none | tonic's `Connected` for `GracefulIo` | | tonic's `serve_with_incoming` |

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "axum")]
pub mod axum;
#[cfg(any(feature = "axum", feature = "poem", feature = "salvo"))]
mod early;
#[cfg(feature = "hyper-client")]
mod hyper_client;
#[cfg(feature = "poem")]
pub mod poem;
#[cfg(feature = "rustls")]
pub mod rustls;
#[cfg(feature = "salvo")]
pub mod salvo;
#[cfg(feature = "tonic")]
mod tonic;
#[cfg(feature = "tower")]
pub mod tower;
