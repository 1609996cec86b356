//! Adapters for the HTTP ecosystem, one per file, each behind its feature.
//!
//! | feature | type | wraps | for |
//! |---|---|---|---|
//! | (none) | [`GracefulIo`](crate::GracefulIo) | a `TcpStream` / `UnixStream` | any Tokio I/O user |
//! | `axum` | [`GracefulListener`](crate::GracefulListener) | an `axum::serve::Listener` | `axum::serve` |
//! | `axum` | [`AnnounceCloseLayer`](crate::AnnounceCloseLayer) | an axum `Router` | early answers: the upload discarded while they go out, `Connection: close` |
//! | `tower` | [`GracefulCloseLayer`](crate::GracefulCloseLayer) | a connector or a connection service | hyper-util's client, tower servers |
//! | `hyper` | [`GracefulServeExt`](crate::GracefulServeExt) | `http1::Builder` | hyper's own servers |
//! | `hyper-client` | hyper-util's `Connection` for `GracefulIo` | | connectors of your own for hyper-util's client |
//! | `rustls` | [`GracefulTlsListener`](crate::GracefulTlsListener) | a `TcpListener` and a `TlsAcceptor` | TLS servers, `axum::serve` (with `axum`) |
//! | `tonic` | tonic's `Connected` for `GracefulIo` | | tonic's `serve_with_incoming` |
//! | `poem` | [`GracefulPoemListener`](crate::GracefulPoemListener) | a poem `Listener` or `Acceptor` | `poem::Server` |
//! | `salvo` | [`GracefulSalvoListener`](crate::GracefulSalvoListener) | a `TcpListener` | salvo's `Server` |
//! | `actix` | [`GracefulActixService`](crate::GracefulActixService) | actix-http's `HttpService` (with `rustls`: and a `TlsAcceptor`) | actix-server, actix-web's `App` |

#[cfg(feature = "actix")]
pub(crate) mod actix;
#[cfg(feature = "axum")]
pub(crate) mod announce;
#[cfg(feature = "axum")]
pub(crate) mod axum;
#[cfg(feature = "hyper")]
pub(crate) mod hyper;
#[cfg(feature = "hyper-client")]
mod hyper_client;
#[cfg(feature = "poem")]
pub(crate) mod poem;
#[cfg(feature = "rustls")]
pub(crate) mod rustls;
#[cfg(feature = "salvo")]
pub(crate) mod salvo;
#[cfg(feature = "tonic")]
mod tonic;
#[cfg(feature = "tower")]
pub(crate) mod tower;
