//! [`AnnounceClose`]: early answers done as nginx does them, for salvo.

use std::time::Duration;

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

impl AnnounceClose {
    /// The hoop: discards up to 64 MiB for up to 30 s after an early answer.
    pub const fn new() -> Self {
        AnnounceClose {
            discard: early::DEFAULT_DISCARD,
        }
    }

    /// The most bytes of an unread upload discarded after an early answer (64 MiB
    /// unless set; 0: none). Past it, the upload is left unread: a client still
    /// sending may not see the answer.
    pub const fn discard_limit(mut self, bytes: u64) -> Self {
        self.discard.limit = bytes;
        self
    }

    /// How long the discard of an unread upload may last in all (30 s unless set).
    pub const fn discard_timeout(mut self, timeout: Duration) -> Self {
        self.discard.timeout = timeout;
        self
    }
}

impl Default for AnnounceClose {
    fn default() -> Self {
        Self::new()
    }
}

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
