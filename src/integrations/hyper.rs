//! hyper 1.x servers with graceful closes: [`GracefulServeExt`].
//!
//! hyper takes its I/O through hyper-util's `TokioIo`, which forwards `poll_shutdown`,
//! so `TokioIo<GracefulIo<TcpStream>>` is all a hyper server needs: HTTP/1 calls
//! `poll_shutdown` when a connection ends cleanly (after `Connection: close`, an early
//! response with an unread body, a graceful shutdown), HTTP/2 when it closes, and every
//! other end drops the I/O, which [`GracefulIo`] closes in the background.
//!
//! | server | how |
//! |---|---|
//! | `hyper::server::conn::http1::Builder` | [`GracefulServeExt::serve_graceful`] |
//! | `hyper::server::conn::http2::Builder`, hyper-util's `auto::Builder` | `serve_connection(TokioIo::new(GracefulIo::new(stream, options)), service)` |
//! | `http1::Connection::without_shutdown` (upgrades) | no shutdown is called: `parts.io.into_inner()` is the [`GracefulIo`]; shut it down or drop it |

use std::error::Error as StdError;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::{AsyncGracefulClose, GracefulIo};

pub(crate) mod sealed {
    pub trait Sealed {}
    impl Sealed for hyper::server::conn::http1::Builder {}
}

/// Serves a hyper HTTP/1 connection over a [`GracefulIo`].
///
/// Import it to call `serve_graceful` on an `http1::Builder`:
///
/// ```no_run
/// use std::{convert::Infallible, time::Duration};
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::{server::conn::http1, service::service_fn, Request, Response};
/// use tokio_graceful_close::{CloseOptions, GracefulIo, GracefulServeExt};
///
/// # async fn dox() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let opts = CloseOptions::new(Duration::from_secs(10));
/// loop {
///     let (stream, _) = listener.accept().await?;
///     let io = GracefulIo::new(stream, opts.clone());
///     tokio::spawn(async move {
///         let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
///             Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("hello"))))
///         });
///         // On a clean end hyper calls `poll_shutdown`: our FIN. The drop then drains,
///         // confirms delivery and closes in the background.
///         if let Err(e) = http1::Builder::new().serve_graceful(io, svc).await {
///             eprintln!("connection: {e}");
///         }
///     });
/// }
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub trait GracefulServeExt: sealed::Sealed {
    /// Equivalent to `self.serve_connection(TokioIo::new(io), service)`: the connection
    /// closes gracefully when it ends, and in the background when it is dropped.
    fn serve_graceful<S, Svc>(
        &self,
        io: GracefulIo<S>,
        service: Svc,
    ) -> http1::Connection<TokioIo<GracefulIo<S>>, Svc>
    where
        S: AsyncGracefulClose + AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Svc: HttpService<Incoming>,
        Svc::Error: Into<Box<dyn StdError + Send + Sync>>,
        Svc::ResBody: 'static,
        <Svc::ResBody as Body>::Error: Into<Box<dyn StdError + Send + Sync>>;
}

impl GracefulServeExt for http1::Builder {
    fn serve_graceful<S, Svc>(
        &self,
        io: GracefulIo<S>,
        service: Svc,
    ) -> http1::Connection<TokioIo<GracefulIo<S>>, Svc>
    where
        S: AsyncGracefulClose + AsyncRead + AsyncWrite + Unpin + Send + 'static,
        Svc: HttpService<Incoming>,
        Svc::Error: Into<Box<dyn StdError + Send + Sync>>,
        Svc::ResBody: 'static,
        <Svc::ResBody as Body>::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        self.serve_connection(TokioIo::new(io), service)
    }
}
