//! salvo: salvo's `Server` with graceful closes (feature `salvo`).
//!
//! salvo's server hands every accepted stream to hyper, which calls `poll_shutdown` when
//! a connection ends cleanly and drops the stream on its error paths. An acceptor whose
//! streams are [`GracefulIo`](crate::GracefulIo)s ([`GracefulListener`]) turns both into
//! a graceful close, so an early answer (413, 401, 503) to a client still uploading is
//! delivered whole instead of being destroyed by the RST of a close with unread data.
//! The [`AnnounceClose`] hoop does the rest: an early HTTP/1 answer says
//! `Connection: close`, and the rest of the upload is read and discarded while an
//! answer too large for the kernel's buffers goes out.
//!
//! [`Server`] puts both in place, as salvo's `Server` is used, and waits for the closes
//! at shutdown:
//!
//! ```no_run
//! use salvo_core::prelude::*;
//!
//! #[handler]
//! async fn hello() -> &'static str {
//!     "hello"
//! }
//!
//! # async fn dox() -> std::io::Result<()> {
//! let tcp = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! let server = tokio_graceful_close::salvo::Server::new(tcp)?;
//! let handle = server.handle(); // handle.stop_graceful(None) from a signal's task
//! # drop(handle);
//! server.serve(Router::new().get(hello)).await
//! # }
//! ```

mod announce;
mod listener;
mod server;

pub use self::announce::AnnounceClose;
pub use self::listener::GracefulListener;
pub use self::server::Server;
