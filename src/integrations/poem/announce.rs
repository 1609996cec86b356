//! [`AnnounceClose`]: early answers done as nginx does them, for poem endpoints.

use ::poem::http::{header, HeaderValue, Version};
use ::poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};
use http_body::Body as _;
use http_body_util::combinators::BoxBody;

use crate::discard::abandon::DiscardBounds;
use crate::integrations::early;

/// A poem [`Middleware`] for answers sent before the request's body was read to its
/// end (HTTP/1): it adds `Connection: close`, as nginx and Go's server do, and reads
/// and discards the rest of the upload while an answer larger than the kernel's
/// buffers goes out, as nginx does, for at most
/// [`discard_limit`](Self::discard_limit) bytes (64 MiB unless set) and
/// [`discard_timeout`](Self::discard_timeout) (30 s, nginx's `lingering_time`), with
/// at most 5 s of the client's silence.
///
/// Without it, a client that pools connections (Node's `http.request`, Go) may hand
/// its next request to the connection hyper is about to close, and a client that sends
/// its whole upload before it reads (Python's `requests`, browsers over HTTP/1.1)
/// never sees an answer larger than the kernel's buffers: hyper stops reading a body
/// the handler dropped, and both sides wait in their writes. [`Server`](super::Server)
/// puts it around the application; by hand, `app.with(AnnounceClose::new())`.
///
/// An endpoint's error becomes its response here (`poem::Error::into_response`, as
/// poem's server would make it), so that an early answer given as an error is
/// announced too.
#[derive(Debug, Clone, Copy)]
pub struct AnnounceClose {
    discard: DiscardBounds,
}

early::discard_builders!(AnnounceClose, "middleware");

impl<E: Endpoint> Middleware<E> for AnnounceClose {
    type Output = AnnounceCloseEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        AnnounceCloseEndpoint {
            inner: ep,
            discard: self.discard,
        }
    }
}

/// The endpoint of [`AnnounceClose`].
#[derive(Debug)]
pub struct AnnounceCloseEndpoint<E> {
    inner: E,
    discard: DiscardBounds,
}

impl<E: Endpoint> Endpoint for AnnounceCloseEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> ::poem::Result<Response> {
        let body = BoxBody::from(req.take_body());
        // Only HTTP/1 requests that carry a body are watched.
        if req.version() > Version::HTTP_11 || body.is_end_stream() {
            req.set_body(Body::from(body));
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let (body, watch) = early::watch(body);
        req.set_body(Body::from(BoxBody::new(body)));
        let mut res = match self.inner.call(req).await {
            Ok(out) => out.into_response(),
            Err(e) => e.into_response(),
        };
        let answer = BoxBody::from(res.take_body());
        let len = answer.size_hint().exact();
        res.set_body(Body::from(answer));
        if early::answered(&watch, len, self.discard, None) {
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(res)
    }
}
