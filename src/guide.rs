//! Off `set_linger`: what to write instead, use by use.
//!
//! Tokio 1.49 deprecated `TcpStream::set_linger` and `TcpSocket::set_linger`: with a
//! non-zero timeout, `SO_LINGER` makes `close()` sleep in the kernel
//! (`sk_stream_wait_close`) until the send queue drains or the timeout passes, **even
//! on a non-blocking socket**, so dropping the stream blocks a runtime thread, and a
//! timeout looks like success. And it never did what most users wanted of it: a close
//! with unread input sends RST whatever `SO_LINGER` says (RFC 2525 2.17), which
//! destroys what was still in flight. Each section below: what people wrote, what it
//! really did, and the replacement.
//!
//! # A server closing after a response
//!
//! Written: `stream.set_linger(Some(Duration::from_secs(5)))?; drop(stream);`, to "let
//! the response finish". Did: blocked the runtime thread up to 5 s in `close()`; and if
//! the client was still sending (an upload answered early with a 413), sent RST at
//! once, destroying the response anyway. Instead: half-close, discard the client's
//! input until its EOF, wait for the acknowledgement, close — without blocking:
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio::io::AsyncWriteExt;
//! use tokio_graceful_close::AsyncGracefulClose;
//!
//! # async fn dox(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
//! stream.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n").await?;
//! let report = stream.graceful_close(Duration::from_secs(5)).await?;
//! assert!(report.acked()); // the client's TCP acknowledged every byte and our FIN
//! # Ok(())
//! # }
//! ```
//!
//! Behind hyper or axum, wrap the stream instead: [`GracefulIo`](crate::GracefulIo),
//! or `GracefulListener` with `axum::serve` (feature `axum`); a server that must not
//! block its shutdown on these closes waits for them with a
//! [`CloseTracker`](crate::CloseTracker).
//!
//! # A client closing after a response
//!
//! Written: `set_linger(Some(Duration::ZERO))` (a reset, no `TIME_WAIT`) or
//! `set_linger(Some(d))` before dropping a connection whose response was read. Did:
//! the reset discards whatever the client wrote that the server had not yet
//! acknowledged, and the server's unread answer; the non-zero linger blocked. Instead,
//! close gracefully and let the server's last words (a TLS `close_notify`, an HTTP/2
//! GOAWAY) arrive, a few round trips at most
//! ([`PeerEof::Briefly`](crate::PeerEof::Briefly)):
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, PeerEof};
//!
//! # async fn dox(stream: tokio::net::TcpStream) -> std::io::Result<()> {
//! let opts = CloseOptions::new(Duration::from_secs(5)).peer_eof(PeerEof::Briefly);
//! stream.graceful_close_with(opts).await?;
//! # Ok(())
//! # }
//! ```
//!
//! For hyper-util's pooled client, `GracefulCloseLayer` around the connector does this
//! for every connection the pool drops (features `tower` and `hyper-client`).
//!
//! # A close that must confirm delivery
//!
//! Written: `set_linger(Some(d))`, trusting that `close()` returning meant delivered.
//! Did: `close()` returns after the timeout just the same, with no error: the caller
//! cannot tell. Instead: the close reports it, and a barrier confirms delivery without
//! closing ([`AsyncGracefulClose::wait_acked`](crate::AsyncGracefulClose::wait_acked)):
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio::io::AsyncWriteExt;
//! use tokio_graceful_close::AsyncGracefulClose;
//!
//! # async fn dox(mut stream: tokio::net::TcpStream) -> std::io::Result<()> {
//! stream.write_all(b"the last record").await?;
//! stream.wait_acked(Duration::from_secs(5)).await?; // acknowledged, stream still open
//! match stream.graceful_close(Duration::from_secs(5)).await {
//!     Ok(report) => println!("delivered in {:?}", report.elapsed()),
//!     Err(e) => eprintln!("not confirmed: {e}; {:?} bytes unacknowledged", e.report().unacked_bytes()),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # A reset on purpose
//!
//! Written: `set_linger(Some(Duration::ZERO))` then drop, to abort a connection (a
//! misbehaving peer, a cancelled transfer). That one never blocked and still works;
//! Tokio 1.50 names it `set_zero_linger`. Here it is
//! [`AsyncGracefulClose::abort`](crate::AsyncGracefulClose::abort) (look at
//! [`unacked_bytes`](crate::AsyncGracefulClose::unacked_bytes) first to know what it
//! discards), or [`OnTimeout::Abort`](crate::OnTimeout::Abort) to reset only when a
//! graceful close hits its bound:
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, OnTimeout};
//!
//! # async fn dox(a: tokio::net::TcpStream, b: tokio::net::TcpStream) -> std::io::Result<()> {
//! a.abort()?; // RST now, no TIME_WAIT
//! let opts = CloseOptions::new(Duration::from_secs(2)).on_timeout(OnTimeout::Abort);
//! let _ = b.graceful_close_with(opts).await; // graceful, RST only if 2 s are not enough
//! # Ok(())
//! # }
//! ```
