//! Announcing the close of an early answer: [`AnnounceCloseLayer`].
//!
//! When a handler answers before it read the request's body (a 413 to an upload, a
//! 401 before the body), hyper closes the connection after the answer, but the answer
//! does not say so: axum and hyper send no `Connection: close`. nginx and Go's server
//! do. A client that pools connections then treats the connection as reusable until
//! our FIN arrives; Go's `net/http` client, for one, waits up to 50 ms after the body
//! for its upload to finish before it gives up on the connection, so every early
//! answer costs it 50 ms more than nginx's.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use ::axum::body::{Body, Bytes, HttpBody};
use ::axum::http::{header, HeaderValue, Request, Response, Version};
use http_body::{Frame, SizeHint};
use tower::{Layer, Service};

/// A [`tower::Layer`] that adds `Connection: close` to an HTTP/1 answer sent before
/// the request's body was read to its end, as nginx and Go's server do.
///
/// hyper closes such a connection after the answer anyway (its body is unread); the
/// header tells the client at once, so that a client that pools connections does not
/// wait for the rest of its upload before it lets the connection go (Go's `net/http`
/// client waits up to 50 ms). Answers to requests without a body, to requests whose
/// body was read, and HTTP/2 answers are left as they are.
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{http::StatusCode, routing::post, Router};
/// use tokio_graceful_close::{AnnounceCloseLayer, CloseOptions, GracefulListener};
///
/// # async fn dox() -> std::io::Result<()> {
/// let app = Router::new()
///     .route("/upload", post(|| async { StatusCode::PAYLOAD_TOO_LARGE }))
///     .layer(AnnounceCloseLayer::new());
/// let tcp = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(GracefulListener::new(tcp, CloseOptions::new(Duration::from_secs(10))), app)
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AnnounceCloseLayer {
    _priv: (),
}

impl AnnounceCloseLayer {
    /// The layer.
    pub const fn new() -> Self {
        AnnounceCloseLayer { _priv: () }
    }
}

impl<S> Layer<S> for AnnounceCloseLayer {
    type Service = AnnounceClose<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnnounceClose { inner }
    }
}

/// The service of [`AnnounceCloseLayer`].
#[derive(Debug, Clone)]
pub struct AnnounceClose<S> {
    inner: S,
}

impl<S, B> Service<Request<Body>> for AnnounceClose<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
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
        let ended = watch.then(|| Arc::new(AtomicBool::new(false)));
        let req = match &ended {
            Some(ended) => req.map(|body| {
                Body::new(Watched {
                    body,
                    ended: ended.clone(),
                })
            }),
            None => req,
        };
        AnnounceCloseFuture {
            inner: self.inner.call(req),
            ended,
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
        ended: Option<Arc<AtomicBool>>,
    }
}

impl<F, B, E> Future for AnnounceCloseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        let unread = this
            .ended
            .as_ref()
            .is_some_and(|e| !e.load(Ordering::Acquire));
        if unread {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(res))
    }
}

/// A request body that records when it was read to its end.
struct Watched {
    body: Body,
    ended: Arc<AtomicBool>,
}

impl HttpBody for Watched {
    type Data = Bytes;
    type Error = ::axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() || self.body.is_end_stream() {
            self.ended.store(true, Ordering::Release);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
