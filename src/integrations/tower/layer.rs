use std::fmt;

use tower::Layer;

use super::GracefulCloseService;
use crate::io::SharedOnClose;
use crate::{CloseError, CloseOptions, CloseReport, CloseTracker};

/// Makes every connection of a connector, or of a connection service, a
/// [`GracefulIo`](crate::GracefulIo); see [`GracefulCloseService`] for both uses.
///
/// ```
/// use std::time::Duration;
/// use tokio_graceful_close::{CloseOptions, GracefulCloseLayer};
///
/// let layer = GracefulCloseLayer::new(CloseOptions::new(Duration::from_secs(5)))
///     .on_close(|res| {
///         if let Err(e) = res {
///             eprintln!("{e}");
///         }
///     });
/// # let _ = layer;
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Clone)]
pub struct GracefulCloseLayer {
    pub(super) options: CloseOptions,
    pub(super) on_close: Option<SharedOnClose>,
    pub(super) tracker: CloseTracker,
}

impl GracefulCloseLayer {
    /// Connections made or served through the layer close gracefully with `options`.
    ///
    /// Options not set take the defaults of where the layer sits (see the table in
    /// [`CloseOptions`]): around a connector, client connections do not wait for the
    /// server's EOF and download at most 64 KiB of a response the caller abandoned;
    /// around a connection service, server connections linger only while the client
    /// is still sending.
    pub fn new(options: CloseOptions) -> Self {
        GracefulCloseLayer {
            options,
            on_close: None,
            tracker: CloseTracker::new(),
        }
    }

    /// The tracker of every close of the connections made or served through the layer
    /// (all services it made share it).
    pub fn tracker(&self) -> CloseTracker {
        self.tracker.clone()
    }

    /// Tracks the closes in `tracker` instead of the layer's own.
    #[must_use = "builder methods return the changed layer"]
    pub fn tracked(mut self, tracker: &CloseTracker) -> Self {
        self.tracker = tracker.clone();
        self
    }

    /// Calls `f` with the outcome of every connection's close; see
    /// [`GracefulIo::on_close`](crate::GracefulIo::on_close).
    #[must_use = "builder methods return the changed layer"]
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        self.on_close = Some(SharedOnClose::new(f));
        self
    }

    /// The options every connection closes with.
    pub fn options(&self) -> &CloseOptions {
        &self.options
    }
}

impl<S> Layer<S> for GracefulCloseLayer {
    type Service = GracefulCloseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GracefulCloseService {
            inner,
            options: self.options,
            on_close: self.on_close.clone(),
            tracker: self.tracker.clone(),
        }
    }
}

impl fmt::Debug for GracefulCloseLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulCloseLayer")
            .field("options", &self.options)
            .field("on_close", &self.on_close.is_some())
            .field("tracker", &self.tracker)
            .finish()
    }
}
