//! [`AnnounceClose`]: early answers done as nginx does them, for salvo.

use ::salvo_core::http::header::{HeaderValue, CONNECTION};
use ::salvo_core::http::{ReqBody, Version};
use ::salvo_core::{async_trait, BoxedError, Depot, FlowCtrl, Handler, Request, Response};
use http_body::Body as _;
use http_body_util::BodyExt as _;

use crate::discard::abandon::DiscardBounds;
use crate::integrations::early;

/// A salvo hoop (middleware) for answers sent before the request's body was read to
/// its end (HTTP/1): it adds `Connection: close`, as nginx and Go's server do, and
/// reads and discards the rest of the upload while an answer larger than the kernel's
/// buffers goes out, as nginx does, for at most [`discard_limit`](Self::discard_limit)
/// bytes (64 MiB unless set) and [`discard_timeout`](Self::discard_timeout) (30 s,
/// nginx's `lingering_time`), with at most 5 s of the client's silence.
///
/// Without it, a client that pools connections (Node's `http.request`, Go) may hand
/// its next request to the connection hyper is about to close, and a client that sends
/// its whole upload before it reads (Python's `requests`, browsers over HTTP/1.1)
/// never sees an answer larger than the kernel's buffers: hyper stops reading a body
/// the handler dropped, and both sides wait in their writes. [`Server`](super::Server)
/// puts it on the service; by hand, `Service::new(router).hoop(AnnounceClose::new())`.
#[derive(Debug, Clone, Copy)]
pub struct AnnounceClose {
    discard: DiscardBounds,
}

early::discard_builders!(AnnounceClose, "hoop");

#[async_trait]
impl Handler for AnnounceClose {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let body = req.take_body();
        // Only HTTP/1 requests that carry a body are watched.
        if req.version() > Version::HTTP_11 || body.is_end_stream() {
            req.replace_body(body);
            ctrl.call_next(req, depot, res).await;
            return;
        }
        let (body, watch) = early::watch(body);
        req.replace_body(ReqBody::Boxed {
            inner: Box::pin(body.map_err(BoxedError::from)),
            fuse_config: None,
        });
        ctrl.call_next(req, depot, res).await;
        // salvo keeps the request, body included, until the answer went out: the
        // body still there is the one the handler left.
        drop(req.take_body());
        let len = res.body.size_hint().exact();
        if early::answered(&watch, len, self.discard, None) {
            res.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
    }
}
