//! Early answers done as nginx does them: [`AnnounceCloseLayer`].
//!
//! When a handler answers before it read the request's body (a 413 to an upload, a
//! 401 before the body), hyper closes the connection after the answer, but the answer
//! does not say so: axum and hyper send no `Connection: close`. nginx and Go's server
//! do. A client that pools connections then treats the connection as reusable until
//! our FIN arrives; Go's `net/http` client, for one, waits up to 50 ms after the body
//! for its upload to finish before it gives up on the connection, so every early
//! answer costs it 50 ms more than nginx's.
//!
//! And hyper stops reading the connection once the handler dropped the body. A client
//! that sends its whole upload before it reads (Python's `requests`, browsers over
//! HTTP/1.1) is then stuck in its write as soon as the kernel buffers between us are
//! full, and an answer larger than what they hold never finishes going out: each side
//! waits on the other until the client gives up. nginx discards the body while it
//! sends such an answer (`ngx_http_discard_request_body`); the layer does the same.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use ::axum::body::{Body, HttpBody};
use ::axum::http::{header, HeaderValue, Request, Response, Version};
use tower::{Layer, Service};

use crate::discard::abandon::{DiscardBounds, InputHandle};
use crate::integrations::early::{self, Watch};

/// A [`tower::Layer`] for answers sent before the request's body was read to its end
/// (HTTP/1): it adds `Connection: close`, as nginx and Go's server do, and discards the
/// rest of the upload while the answer goes out, as nginx does.
///
/// hyper closes such a connection after the answer anyway (its body is unread); the
/// header tells the client at once, so that a client that pools connections does not
/// wait for the rest of its upload before it lets the connection go (Go's `net/http`
/// client waits up to 50 ms).
///
/// The discard is what lets a client that sends its whole upload before it reads
/// (Python's `requests`, browsers over HTTP/1.1) see an answer larger than the kernel
/// buffers between the two hosts: without it hyper reads nothing more once the handler
/// dropped the body, the client stays blocked in its write, and so does the server's.
/// It runs for answers over 16 KiB (or of unknown length), for at most
/// [`discard_limit`](Self::discard_limit) bytes (64 MiB unless set) and
/// [`discard_timeout`](Self::discard_timeout) (30 s, nginx's `lingering_time`). Then
/// hyper finishes the answer and closes; [`GracefulListener`](crate::axum::GracefulListener)
/// makes that close lose nothing. A smaller answer fits the kernel's send buffer on its
/// own: hyper closes at once, and the close's drain discards the upload.
///
/// Where the discard happens depends on how the router is served:
///
/// - `axum::serve(listener, GracefulConnectInfo::new(app))`
///   ([`GracefulConnectInfo`](crate::axum::GracefulConnectInfo)): below hyper. The layer
///   marks the connection's input abandoned and drops the body; the connection's
///   writes that find the socket full discard what the client sent without copying it
///   (`MSG_TRUNC` on Linux), in batches once the client streams, and are woken by its
///   next bytes as well as by room to write. No task, no copy through hyper's buffers:
///   for a client that sends all first, over a 20 Mbit/s link, the server spends less
///   CPU per discarded upload than nginx (`lab/benches/real_servers.py`); through hyper it
///   spent about three times as much.
/// - `axum::serve(listener, app)`, and TLS listeners (whose `Io` is the TLS stream):
///   through hyper. The body the handler dropped is kept
///   and read to its end in a task of its own (hyper reads the connection while it
///   writes the answer), with at most 5 s of the client's silence (nginx's
///   `lingering_timeout`).
///
/// Answers to requests without a body, to requests whose body was read, answers whose
/// handler still holds the body, and HTTP/2 answers (each stream has its own flow
/// control) are left as they are.
///
/// axum's `Router::layer` puts a layer around each route: one more boxed service and
/// future per request. Layer only the routes that may answer an upload early
/// (`post(upload).layer(AnnounceCloseLayer::new())`) and the others do not pay for it.
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{http::StatusCode, routing::post, Router};
/// use tokio_graceful_close::axum::{AnnounceCloseLayer, GracefulConnectInfo, GracefulListener};
/// use tokio_graceful_close::CloseOptions;
///
/// # async fn dox() -> std::io::Result<()> {
/// let upload = post(|| async { StatusCode::PAYLOAD_TOO_LARGE })
///     .layer(AnnounceCloseLayer::new().discard_limit(16 << 20));
/// let app = Router::new().route("/upload", upload);
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// let listener = GracefulListener::new(tcp, CloseOptions::new(Duration::from_secs(10)));
/// axum::serve(listener, GracefulConnectInfo::new(app)).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AnnounceCloseLayer {
    discard: DiscardBounds,
}

early::discard_builders!(AnnounceCloseLayer, "layer");

impl<S> Layer<S> for AnnounceCloseLayer {
    type Service = AnnounceClose<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnnounceClose {
            inner,
            discard: self.discard,
        }
    }
}

/// The service of [`AnnounceCloseLayer`].
#[derive(Debug, Clone)]
pub struct AnnounceClose<S> {
    inner: S,
    discard: DiscardBounds,
}

impl<S, B> Service<Request<Body>> for AnnounceClose<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    B: HttpBody,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = AnnounceCloseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // Only HTTP/1 requests that carry a body are watched.
        let watch = req.version() <= Version::HTTP_11 && !req.body().is_end_stream();
        // The connection's input handle, if it was served with `GracefulConnectInfo`.
        let input = watch
            .then(|| req.extensions().get::<InputHandle>().cloned())
            .flatten();
        let (req, shared) = if watch {
            let (parts, body) = req.into_parts();
            let (body, shared) = early::watch(body);
            (Request::from_parts(parts, Body::new(body)), Some(shared))
        } else {
            (req, None)
        };
        AnnounceCloseFuture {
            inner: self.inner.call(req),
            shared,
            input,
            discard: self.discard,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`AnnounceClose`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    #[derive(Debug)]
    pub struct AnnounceCloseFuture<F> {
        #[pin]
        inner: F,
        shared: Option<Arc<Watch<Body>>>,
        input: Option<InputHandle>,
        discard: DiscardBounds,
    }
}

impl<F, B, E> Future for AnnounceCloseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: HttpBody,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        let Some(shared) = this.shared.take() else {
            return Poll::Ready(Ok(res));
        };
        let len = res.body().size_hint().exact();
        if early::answered(&shared, len, *this.discard, this.input.take()) {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(res))
    }
}
