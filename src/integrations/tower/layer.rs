use std::fmt;

use tower::Layer;

use super::GracefulCloseService;
use crate::io::settings::CloseSettings;

/// Makes every connection of a connector, or of a connection service, a
/// [`GracefulIo`](crate::GracefulIo); see [`GracefulCloseService`] for both uses.
///
/// ```
/// use std::time::Duration;
/// use tokio_graceful_close::tower::GracefulCloseLayer;
/// use tokio_graceful_close::{CloseOptions, CloseSettings};
///
/// let settings = CloseSettings::new(CloseOptions::new(Duration::from_secs(5))).on_close(|res| {
///     if let Err(e) = res {
///         eprintln!("{e}");
///     }
/// });
/// let layer = GracefulCloseLayer::new(settings);
/// # let _ = layer;
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
#[derive(Clone)]
pub struct GracefulCloseLayer {
    settings: CloseSettings,
}

impl GracefulCloseLayer {
    /// Connections made or served through the layer close gracefully with the
    /// [`CloseSettings`] (a [`CloseOptions`](crate::CloseOptions) will do).
    ///
    /// Options not set take the defaults of where the layer sits (see the table in
    /// [`CloseOptions`](crate::CloseOptions)): around a connector, client connections do
    /// not wait for the server's EOF and download at most 64 KiB of a response the
    /// caller abandoned; around a connection service, server connections linger only
    /// while the client is still sending.
    pub fn new(settings: impl Into<CloseSettings>) -> Self {
        GracefulCloseLayer {
            settings: settings.into(),
        }
    }

    /// The settings every connection is wrapped with (all services the layer made
    /// share their tracker and callback).
    pub fn settings(&self) -> &CloseSettings {
        &self.settings
    }
}

impl<S> Layer<S> for GracefulCloseLayer {
    type Service = GracefulCloseService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GracefulCloseService::new(inner, self.settings.clone())
    }
}

impl fmt::Debug for GracefulCloseLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulCloseLayer")
            .field("settings", &self.settings)
            .finish()
    }
}
