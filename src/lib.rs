//! Close Tokio TCP and Unix streams without losing what you wrote.
//!
//! `write()` returning only means the kernel took the bytes. Closing a socket while the
//! peer has sent data we never read makes Linux send RST and throw away everything
//! still queued (RFC 1122 4.2.2.13): the tail of a response vanishes and the peer sees
//! "connection reset". `SO_LINGER` with a timeout blocks the thread inside `close()`.
//!
//! [`AsyncGracefulClose::graceful_close`] does the close right, without blocking:
//!
//! 1. `shutdown(SHUT_WR)`: our FIN goes out after all queued data;
//! 2. reads and discards until the peer's EOF, bounded by time and bytes;
//! 3. waits, driven by the kernel's wakeups, until `SIOCOUTQ` (unacknowledged bytes,
//!    our FIN included) reaches 0;
//! 4. closes, and reports what happened ([`CloseReport`]) or why delivery could not be
//!    confirmed ([`CloseError`]), optionally aborting with RST on a deadline.
//!
//! ```no_run
//! use std::time::Duration;
//! use tokio::io::AsyncWriteExt;
//! use tokio_graceful_close::AsyncGracefulClose;
//!
//! # async fn dox() -> std::io::Result<()> {
//! let mut stream = tokio::net::TcpStream::connect("127.0.0.1:25").await?;
//! stream.write_all(&vec![b'x'; 1_000_000]).await?;
//! let report = stream.graceful_close(Duration::from_secs(5)).await?;
//! assert!(report.acked() && report.peer_eof());
//! # Ok(())
//! # }
//! ```
//!
//! Moving off Tokio's deprecated `set_linger`: [`guide`], use by use.
//!
//! Also here: [`AsyncGracefulClose::abort`] (RST on purpose, never blocks),
//! [`AsyncGracefulClose::unacked_bytes`] and [`AsyncGracefulClose::wait_acked`] (a
//! delivery barrier without closing).
//!
//! Nagle control: [`Corked`] (`TCP_CORK` while a message is assembled, the tail sent on
//! `flush`) and [`write_corked`] (a header and a body as one segment); its docs say when
//! to use the cork, `TCP_NODELAY` or neither.
//!
//! # HTTP servers and clients
//!
//! [`GracefulIo`] wraps a stream so that its `poll_shutdown` sends our FIN (and never
//! waits on the peer) and its drop finishes the graceful close in the background. Any
//! Tokio I/O user takes it as it is (hyper: `TokioIo::new(GracefulIo::new(stream,
//! opts))`). Each framework has a module of its own, behind a feature of the same
//! name; the default build pulls none of these crates. Every adapter takes a
//! [`CloseSettings`] (the [`CloseOptions`], the [`CloseTracker`] and an outcome
//! callback; plain options will do) and wraps each connection in a `GracefulIo`:
//!
//! | feature | module | one line |
//! |---|---|---|
//! | `axum` (turns on axum's `http1`) | `axum`: `GracefulListener`, `AnnounceCloseLayer`, `GracefulConnectInfo` | `axum::serve(GracefulListener::new(listener, opts), app)` |
//! | `tower` | `tower`: `GracefulCloseLayer` | `GracefulCloseLayer::new(opts).layer(connection_service)` |
//! | `tower` + `hyper-client` | the layer around hyper-util's connectors | `GracefulCloseLayer::new(opts).layer(HttpConnector::new())` |
//! | `rustls` | `rustls`: `GracefulTlsListener`, TLS over `GracefulIo`, handshakes off the accept loop | `GracefulTlsListener::new(tcp, acceptor, opts)` |
//! | `poem` | `poem`: `GracefulListener`, a poem `Listener` and `Acceptor` | `Server::new(GracefulListener::new(TcpListener::bind(addr), opts))` |
//! | `salvo` (Rust 1.95) | `salvo`: `GracefulListener`, a salvo `Listener` and `Acceptor` over a Tokio `TcpListener` | `Server::new(GracefulListener::new(tcp, opts)?)` |
//! | `actix` (Rust 1.89) | `actix`: `GracefulService`, actix-http's `HttpService` (an actix-web `App`) over `GracefulIo`s, for actix-server; with `rustls`, over TLS | `GracefulService::new(HttpService::build().finish(app), opts)` where `HttpServer` used `.tcp()`; `.rustls(acceptor)` for `.rustls_0_23(config)` |
//! | `hyper-client` | hyper-util's `Connection` for `GracefulIo` | connectors of your own |
//! | `tonic` (Rust 1.88) | tonic's `Connected` for `GracefulIo` | `serve_with_incoming(...)` over `GracefulIo`s |
//!
//! Rocket 0.5 offers no way to wrap its connections (its listener API is private until
//! 0.6). There, read and discard the upload before an early answer
//! (`data.open(limit).stream_to(tokio::io::sink()).await`), so that the close finds no
//! unread input, and say `Connection: close` in the answer, so that the connection ends
//! with it; or serve it behind a proxy that lingers (nginx). The lab checks this with
//! five real clients (`lab/tests/http_rocket.rs`).
//!
//! Closes that outlive their connections (finished in the background after hyper let
//! go of the stream) are counted by the settings' [`CloseTracker`]; wait for them
//! before the runtime shuts down, or their sockets reset:
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # async fn dox(
//! #     app: axum::Router,
//! #     tcp: tokio::net::TcpListener,
//! #     signal: std::future::Ready<()>,
//! # ) -> std::io::Result<()> {
//! # use std::time::Duration;
//! use tokio_graceful_close::axum::GracefulListener;
//! use tokio_graceful_close::{CloseOptions, CloseSettings, CloseTracker};
//!
//! let closes = CloseTracker::new();
//! let opts = CloseOptions::new(Duration::from_secs(30));
//! let listener = GracefulListener::new(tcp, CloseSettings::new(opts).tracked(&closes));
//! axum::serve(listener, app).with_graceful_shutdown(signal).await?;
//! closes.close();
//! closes.wait().await; // every response delivered or its close timed out
//! # Ok(())
//! # }
//! ```
//!
//! Unset options follow the connection's role (the table in [`CloseOptions`]): a
//! server connection lingers only while its client is still sending, so idle
//! keep-alive clients do not hold a shutdown; a client connection does not download
//! what the caller abandoned.
//!
//! # Metrics
//!
//! With the feature `metrics` (off by default), every close is also recorded through
//! the [`metrics`](https://docs.rs/metrics) facade, to whatever recorder the
//! application installed (a Prometheus exporter, say). Without a recorder nothing is
//! recorded; without the feature nothing is compiled. The names, types, units and
//! labels are stable:
//!
//! | name | type | unit | labels | what |
//! |---|---|---|---|---|
//! | `tokio_graceful_close_closes_total` | counter | closes | `outcome`, `aborted` | closes ended |
//! | `tokio_graceful_close_close_duration_seconds` | histogram | seconds | `outcome` | each close's [`elapsed`](CloseReport::elapsed) |
//! | `tokio_graceful_close_discarded_bytes_total` | counter | bytes | none | the peer's input discarded unread ([`drained_bytes`](CloseReport::drained_bytes)) |
//! | `tokio_graceful_close_closes_in_flight` | gauge | closes | none | closes started and not ended |
//! | `tokio_graceful_close_closes_lingering` | gauge | closes | none | tracked closes lingering (see [`CloseTracker`]), summed over the trackers |
//!
//! `outcome` is `delivered` (an `Ok` whose delivery was confirmed,
//! [`acked`](CloseReport::acked)), `unconfirmed` (an `Ok` where the platform cannot
//! confirm the acknowledgement: never on Linux), or the error's [`CloseErrorKind`]:
//! `timed_out`, `idle_timeout`, `drain_limit`, `retransmit_timeout`, `peer_reset`,
//! `evicted`, `io`. `aborted` is `true` when the close ended with a reset on purpose
//! ([`CloseReport::aborted`]: [`OnTimeout::Abort`] on a bound, or
//! [`CloseOptions::abort_when_safe`]), else `false`. No label names a peer: the
//! counter of closes has at most 18 series, the histogram 9.
//!
//! What is counted:
//!
//! - every [`GracefulIo`] close, the adapters' connections included: one outcome when
//!   it is reported (with the trace event and the `on_close` callback), in flight from
//!   the start of the close (`poll_shutdown`, or the drop if none ran) until then. A
//!   stream given back by [`GracefulIo::into_inner`] leaves the closes in flight with
//!   no outcome;
//! - every [`graceful_close`](AsyncGracefulClose::graceful_close) and
//!   [`graceful_close_with`](AsyncGracefulClose::graceful_close_with) future: one
//!   outcome when it completes, in flight from its first poll. One dropped before it
//!   completed leaves the closes in flight with no outcome (its caller cancelled it);
//! - not [`wait_acked`](AsyncGracefulClose::wait_acked) nor
//!   [`abort`](AsyncGracefulClose::abort), which close nothing gracefully.
//!
//! A close lingers once the peer acknowledged everything we sent while the close still
//! waits for its EOF; only closes tracked by a [`CloseTracker`] are counted there, from
//! then until they end or the tracker's cap evicts them.
//!
//! # Runtime
//!
//! A close is polled inside a Tokio runtime built with its I/O and time drivers
//! (`enable_all()`); it blocks no thread of it. It is woken by the stream's own
//! readiness, and waits for its bounds (the deadline, the idle timeout, a safety-net
//! re-check) on Tokio's timer: one `Sleep`, armed the first time the close has to wait.
//! The rare re-checks due sooner than the timer's millisecond (an acknowledgement due
//! within a round trip that no readiness edge can announce) yield to the scheduler
//! instead, a few times at most. The crate starts no thread and keeps no state of its
//! own beyond each close: it works the same in a forked child.
//!
//! # Panics
//!
//! A close that has to wait on a runtime without a time driver panics, as
//! `tokio::time::sleep` does there. Polled outside any runtime, a close fails with an
//! [`Io`](CloseErrorKind::Io) error instead.
//!
//! # Platforms
//!
//! | | half-close + drain | drain without copying | ACK confirmed | event-driven | byte counts | cork | tested |
//! |---|---|---|---|---|---|---|---|
//! | Linux, Android | yes | TCP (`MSG_TRUNC`) | yes (`SIOCOUTQ`) | yes | unacked, unsent | `TCP_CORK` | Linux: everything |
//! | macOS, iOS | yes | no | yes (`SO_NWRITE`, `TCP_CONNECTION_INFO`) | yes | unacked | `TCP_NOPUSH` | compiled and linted only |
//! | FreeBSD | yes | no | yes (`FIONWRITE`, `TCP_INFO`) | yes | unacked | `TCP_NOPUSH` | compiled and linted only |
//! | other Unix | yes | no | no (`acked() == false`) | drain only | no | `TCP_NOPUSH` on OpenBSD, DragonFly | no |
//! | Windows 10 1703+ | yes | no | yes (`SIO_TCP_INFO` state) | drain; ACK re-checked on a timer | no | no ([`Corked`] is Unix-only) | under Wine, without `SIO_TCP_INFO` |
//! | older Windows, Wine | yes | no | no (`acked() == false`) | drain only | no | no | under Wine |
//!
//! Where the ACK cannot be confirmed, a close ends `Ok` once the peer's EOF was read,
//! with [`CloseReport::acked`] `false`, and [`AsyncGracefulClose::wait_acked`] fails
//! with [`std::io::ErrorKind::Unsupported`]. `AF_UNIX` streams are confirmed on Linux
//! only. [`CloseOptions::user_timeout`] (`TCP_USER_TIMEOUT`) is Linux-only: elsewhere
//! the close fails at its start if it is set.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![deny(unsafe_op_in_unsafe_fn)]
#![doc(test(attr(deny(warnings), allow(dead_code))))]

#[cfg(unix)]
mod cork;
mod discard;
mod error;
mod ext;
mod future;
pub mod guide;
mod integrations;
mod io;
mod machine;
mod metrics;
mod options;
mod report;
// The close machine's deterministic simulation (Linux tests).
#[cfg(all(test, target_os = "linux"))]
mod sim;
mod socket;
mod sys;
mod tracker;

/// The README's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(unix)]
pub use crate::cork::{write_corked, CorkExt, Corked, WriteCorked};
pub use crate::error::{CloseError, CloseErrorKind, ClosePhase};
pub use crate::ext::AsyncGracefulClose;
pub use crate::future::{GracefulClose, WaitAcked};
pub use crate::io::settings::CloseSettings;
pub use crate::io::GracefulIo;
pub use crate::options::{CloseOptions, OnTimeout, PeerEof};
pub use crate::report::{CloseReport, SafeAbort};
pub use crate::tracker::{CloseTracker, CloseTrackerWait};

// The integrations, one module per framework.
#[cfg(feature = "actix")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix")))]
pub use crate::integrations::actix;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use crate::integrations::axum;
#[cfg(feature = "poem")]
#[cfg_attr(docsrs, doc(cfg(feature = "poem")))]
pub use crate::integrations::poem;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub use crate::integrations::rustls;
#[cfg(feature = "salvo")]
#[cfg_attr(docsrs, doc(cfg(feature = "salvo")))]
pub use crate::integrations::salvo;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub use crate::integrations::tower;
