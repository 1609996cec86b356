//! What an adapter gives every connection it wraps: [`ConnSettings`].

use std::fmt;

use super::{GracefulIo, SharedOnClose};
use crate::options::Role;
use crate::{AsyncGracefulClose, CloseError, CloseOptions, CloseReport, CloseTracker};

/// The close settings a listener, service or layer gives each connection it wraps: the
/// options, the outcome callback and the tracker. The adapters' builder methods
/// (`tracker`, `tracked`, `on_close`, `options`) are theirs.
#[derive(Clone)]
pub(crate) struct ConnSettings {
    options: CloseOptions,
    on_close: Option<SharedOnClose>,
    tracker: CloseTracker,
}

impl ConnSettings {
    /// `options` as given (each connection resolves the unset ones for its role), no
    /// callback, a tracker of its own.
    pub(crate) fn new(options: CloseOptions) -> Self {
        ConnSettings {
            options,
            on_close: None,
            tracker: CloseTracker::new(),
        }
    }

    /// Wraps `stream`, a connection in `role`: it closes with these options, reports to
    /// the callback and is counted by the tracker.
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

    pub(crate) fn options(&self) -> &CloseOptions {
        &self.options
    }

    pub(crate) fn tracker(&self) -> CloseTracker {
        self.tracker.clone()
    }

    pub(crate) fn set_tracker(&mut self, tracker: &CloseTracker) {
        self.tracker = tracker.clone();
    }

    pub(crate) fn set_on_close<F>(&mut self, f: F)
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        self.on_close = Some(SharedOnClose::new(f));
    }
}

impl fmt::Debug for ConnSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnSettings")
            .field("options", &self.options)
            .field("on_close", &self.on_close.is_some())
            .field("tracker", &self.tracker)
            .finish()
    }
}
