//! Future types

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;

use crate::ext::AsyncGracefulClose;
use crate::io::settings::CloseSettings;
use crate::io::GracefulIo;
use crate::options::Role;

pin_project! {
    /// Response future of [`GracefulCloseService`](super::GracefulCloseService) used as
    /// a connector: the inner connector's future, with its connection wrapped in a
    /// [`GracefulIo`].
    #[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct GracefulConnect<F> {
        #[pin]
        inner: F,
        settings: CloseSettings,
    }
}

impl<F> GracefulConnect<F> {
    pub(super) fn new(inner: F, settings: CloseSettings) -> Self {
        GracefulConnect { inner, settings }
    }
}

impl<F, S, E> Future for GracefulConnect<F>
where
    F: Future<Output = Result<TokioIo<S>, E>>,
    S: AsyncGracefulClose + Send + 'static,
{
    type Output = Result<TokioIo<GracefulIo<S>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let io = ready!(this.inner.poll(cx))?.into_inner();
        Poll::Ready(Ok(TokioIo::new(this.settings.wrap(io, Role::Client))))
    }
}

impl<F> fmt::Debug for GracefulConnect<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulConnect")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
