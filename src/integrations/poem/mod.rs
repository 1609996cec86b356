//! poem: `poem::Server` with graceful closes (feature `poem`).
//!
//! poem's server hands every accepted stream to hyper, which calls `poll_shutdown` when
//! a connection ends cleanly and drops the stream on its error paths. A listener whose
//! acceptor yields [`GracefulIo`](crate::GracefulIo)s ([`GracefulListener`]) turns both
//! into a graceful close, so an early answer (413, 401, 503) to a client still
//! uploading is delivered whole instead of being destroyed by the RST of a close with
//! unread data. [`AnnounceClose`] on the endpoint does the rest: an early HTTP/1 answer
//! says `Connection: close` (clients that pool connections let this one go at once),
//! and the rest of the upload is read and discarded while an answer too large for the
//! kernel's buffers goes out (hyper stops reading a body the handler dropped, and a
//! client that sends its whole upload before it reads would never see the answer).
//!
//! [`Server`] puts both in place, as `poem::Server` is used, and waits for the closes
//! at shutdown:
//!
//! ```no_run
//! use poem::{handler, listener::TcpListener, Route};
//!
//! #[handler]
//! fn hello() -> &'static str {
//!     "hello"
//! }
//!
//! # async fn dox() -> std::io::Result<()> {
//! let app = Route::new().at("/", poem::get(hello));
//! tokio_graceful_close::poem::Server::new(TcpListener::bind("0.0.0.0:3000"))
//!     .run(app)
//!     .await
//! # }
//! ```

mod announce;
mod listener;
mod server;

pub use self::announce::{AnnounceClose, AnnounceCloseEndpoint};
pub use self::listener::GracefulListener;
pub use self::server::Server;
