//! axum: `axum::serve` with graceful closes (feature `axum`).
//!
//! `axum::serve` hands every accepted stream to hyper, which calls `poll_shutdown` when
//! a connection ends cleanly and drops the stream on its error paths. A
//! [`GracefulListener`], whose `Io` is a [`GracefulIo`](crate::GracefulIo), turns both
//! into a graceful close, so an early answer (413, 401, 503) to a client still
//! uploading is delivered whole instead of being destroyed by the RST of a close with
//! unread data. The [`AnnounceCloseLayer`] on the application does the rest: hyper
//! stops reading a body the handler dropped, and the layer says `Connection: close` and
//! has the upload discarded while an answer too large for the kernel's buffers goes
//! out; served through [`GracefulConnectInfo`], below hyper, in the connection's own
//! writes.
//!
//! [`serve`] puts every piece in place in one call, and waits for the closes at
//! shutdown:
//!
//! ```no_run
//! # async fn dox(app: axum::Router, shutdown: std::future::Ready<()>) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! tokio_graceful_close::axum::serve(listener, app)
//!     .with_graceful_shutdown(shutdown)
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! The pieces, for a stack of your own:
//!
//! | piece | what it does |
//! |---|---|
//! | [`GracefulListener`] | wraps each accepted stream in a `GracefulIo` with the [`CloseSettings`](crate::CloseSettings) |
//! | [`AnnounceCloseLayer`] | `Connection: close` on an early HTTP/1 answer, and the discard of the upload it abandons |
//! | [`GracefulConnectInfo`] | `ConnectInfo` for every request, and the handle that lets the layer discard below hyper |
//!
//! With TLS (feature `rustls`), [`GracefulTlsListener`](crate::rustls::GracefulTlsListener)
//! is an `axum::serve::Listener` too.

mod announce;
mod connect_info;
mod listener;
mod serve;

pub use self::announce::{AnnounceClose, AnnounceCloseFuture, AnnounceCloseLayer};
pub use self::connect_info::{AddConnectInfo, GracefulConnectInfo};
pub use self::listener::GracefulListener;
pub use self::serve::{serve, Serve};
