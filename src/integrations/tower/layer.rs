use std::fmt;

use tower::Layer;

use super::GracefulCloseService;
use crate::io::settings::ConnSettings;
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
    settings: ConnSettings,
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
            settings: ConnSettings::new(options),
        }
    }

    /// The tracker of every close of the connections made or served through the layer
    /// (all services it made share it).
    pub fn tracker(&self) -> CloseTracker {
        self.settings.tracker()
    }

    /// Tracks the closes in `tracker` instead of the layer's own.
    #[must_use = "builder methods return the changed layer"]
    pub fn tracked(mut self, tracker: &CloseTracker) -> Self {
        self.settings.set_tracker(tracker);
        self
    }

    /// Calls `f` with the outcome of every connection's close; see
    /// [`GracefulIo::on_close`](crate::GracefulIo::on_close).
    #[must_use = "builder methods return the changed layer"]
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        self.settings.set_on_close(f);
        self
    }

    /// The options every connection closes with.
    pub fn options(&self) -> &CloseOptions {
        self.settings.options()
    }
}

impl<S> Layer<S> for GracefulCloseLayer {
    type Service = GracefulCloseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GracefulCloseService::with_settings(inner, self.settings.clone())
    }
}

impl fmt::Debug for GracefulCloseLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulCloseLayer")
            .field("settings", &self.settings)
            .finish()
    }
}
