//! What an adapter gives every connection it wraps: [`CloseSettings`].

use std::fmt;

use super::{GracefulIo, SharedOnClose};
use crate::error::CloseError;
use crate::ext::AsyncGracefulClose;
use crate::options::{CloseOptions, Role};
use crate::report::CloseReport;
use crate::tracker::CloseTracker;

/// What a listener, service or layer of the integrations applies to every connection it
/// wraps in a [`GracefulIo`]: the [`CloseOptions`], the [`CloseTracker`] that counts
/// the closes, and a callback told each close's outcome.
///
/// Every adapter takes it in its `new` and shows it through `settings()`. A plain
/// [`CloseOptions`] converts into it (a tracker of its own, no callback), so
/// `new(listener, options)` is the short form:
///
/// ```
/// use std::time::Duration;
/// use tokio_graceful_close::{CloseOptions, CloseSettings, CloseTracker};
///
/// let closes = CloseTracker::new();
/// let settings = CloseSettings::new(CloseOptions::new(Duration::from_secs(30)))
///     .tracked(&closes)
///     .on_close(|outcome| {
///         if let Err(e) = outcome {
///             eprintln!("close: {e}");
///         }
///     });
/// # let _ = settings;
/// // `GracefulListener::new(tcp, settings)`, `GracefulCloseLayer::new(settings)`, ...
/// // and after the server stopped: `closes.close(); closes.wait().await;`
/// ```
///
/// Clones share the tracker and the callback.
#[derive(Clone)]
pub struct CloseSettings {
    options: CloseOptions,
    on_close: Option<SharedOnClose>,
    tracker: CloseTracker,
}

impl CloseSettings {
    /// `options` as given (each connection resolves the unset ones for its role), no
    /// callback, a tracker of its own.
    pub fn new(options: CloseOptions) -> Self {
        CloseSettings {
            options,
            on_close: None,
            tracker: CloseTracker::new(),
        }
    }

    /// Counts the closes in `tracker` (a clone of it) instead of the settings' own.
    #[must_use = "builder methods return the changed settings"]
    pub fn tracked(mut self, tracker: &CloseTracker) -> Self {
        self.tracker = tracker.clone();
        self
    }

    /// Calls `f` with the outcome of every connection's close, from the task that
    /// finishes it; see [`GracefulIo::on_close`]. Replaces an earlier callback.
    #[must_use = "builder methods return the changed settings"]
    pub fn on_close<F>(mut self, f: F) -> Self
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        self.on_close = Some(SharedOnClose::new(f));
        self
    }

    /// The tracker of every connection's close: wait on it after the server stopped,
    /// before the runtime shuts down (see [`CloseTracker`]).
    pub fn tracker(&self) -> &CloseTracker {
        &self.tracker
    }

    /// Wraps `stream`, a connection in `role`: it closes with these options, reports to
    /// the callback and is counted by the tracker.
    #[cfg_attr(
        not(any(
            feature = "axum",
            feature = "poem",
            feature = "salvo",
            feature = "rustls",
            feature = "tower"
        )),
        allow(dead_code)
    )]
    pub(crate) fn wrap<S>(&self, stream: S, role: Role) -> GracefulIo<S>
    where
        S: AsyncGracefulClose + Send + 'static,
    {
        GracefulIo::from_parts(
            stream,
            self.options,
            role,
            self.on_close.clone(),
            Some(self.tracker.clone()),
        )
    }

    /// [`wrap`](Self::wrap), whose outcome callback also holds `held` until the close's
    /// outcome was reported (or the callback was dropped without running): a guard
    /// whose drop says the close ended.
    #[cfg(feature = "actix")]
    pub(crate) fn wrap_holding<S, T>(&self, stream: S, role: Role, held: T) -> GracefulIo<S>
    where
        S: AsyncGracefulClose + Send + 'static,
        T: Send + 'static,
    {
        let user = self.on_close.clone();
        let tracker = Some(self.tracker.clone());
        GracefulIo::from_parts(stream, self.options, role, None, tracker).on_close(move |res| {
            // Dropped after the callback, or while a panic in it unwinds.
            let _held = held;
            if let Some(f) = &user {
                f.call(res);
            }
        })
    }
}

/// The settings of the one-call servers (`axum::serve`, `poem::Server`...) unless told
/// otherwise: a 30 s deadline (nginx's `lingering_time`) and the server defaults for
/// the rest of the options, a tracker of their own, no callback.
impl Default for CloseSettings {
    fn default() -> Self {
        CloseSettings::new(CloseOptions::new(std::time::Duration::from_secs(30)))
    }
}

impl From<CloseOptions> for CloseSettings {
    fn from(options: CloseOptions) -> Self {
        CloseSettings::new(options)
    }
}

impl fmt::Debug for CloseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseSettings")
            .field("options", &self.options)
            .field("on_close", &self.on_close.is_some())
            .field("tracker", &self.tracker)
            .finish()
    }
}
