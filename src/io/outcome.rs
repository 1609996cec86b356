//! How a connection's close is reported: one trace event and the user's callback,
//! exactly once; and the plain close of the paths where no graceful close can run.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::CloseErrorKind;
use tracing::Level;

use crate::error::CloseError;
use crate::ext::AsyncGracefulClose;
use crate::machine::Closer;
use crate::metrics::{self, InFlight};
use crate::report::{CloseReport, TARGET};
use crate::tracker::Token;

/// An outcome callback shared by every connection of a listener or layer.
type Shared = dyn Fn(&Result<CloseReport, CloseError>) + Send + Sync;

/// The outcome callback of a listener or layer, for each of its connections.
#[derive(Clone)]
pub(crate) struct SharedOnClose(Arc<Shared>);

impl SharedOnClose {
    pub(crate) fn new<F>(f: F) -> Self
    where
        F: Fn(&Result<CloseReport, CloseError>) + Send + Sync + 'static,
    {
        SharedOnClose(Arc::new(f))
    }

    /// Runs the callback.
    #[cfg_attr(not(feature = "actix"), allow(dead_code))]
    pub(crate) fn call(&self, res: &Result<CloseReport, CloseError>) {
        (self.0)(res);
    }
}

impl fmt::Debug for SharedOnClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("SharedOnClose(..)")
    }
}

/// A connection's outcome callback: its own, or its listener's or layer's.
pub(crate) struct OnClose(SharedOnClose);

impl OnClose {
    /// A connection's own callback, which runs once. (In a mutex only so that the
    /// wrapper stays `Sync`; it is taken once, never contended.)
    pub(crate) fn once<F>(f: F) -> Self
    where
        F: FnOnce(&Result<CloseReport, CloseError>) + Send + 'static,
    {
        let f = Mutex::new(Some(f));
        OnClose(SharedOnClose::new(move |res| {
            if let Some(f) = f.lock().unwrap_or_else(PoisonError::into_inner).take() {
                f(res);
            }
        }))
    }

    pub(crate) fn shared(f: SharedOnClose) -> Self {
        OnClose(f)
    }

    fn call(self, res: &Result<CloseReport, CloseError>) {
        ((self.0).0)(res);
    }
}

impl fmt::Debug for OnClose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad("OnClose(..)")
    }
}

/// Where a close ended, for the trace events.
#[derive(Clone, Copy)]
pub(super) enum Path {
    Shutdown,
    Background,
    NoRuntime,
}

impl Path {
    fn as_str(self) -> &'static str {
        match self {
            Path::Shutdown => "poll_shutdown",
            Path::Background => "background",
            Path::NoRuntime => "no runtime",
        }
    }
}

/// Emits the connection's one trace event and calls the user's callback. The caller
/// has already recorded that the close ended, so a panicking callback cannot make it
/// run twice.
pub(super) fn notify(on_close: Option<OnClose>, res: &Result<CloseReport, CloseError>, path: Path) {
    let path = path.as_str();
    let (level, summary) = verdict(res);
    let report = match res {
        Ok(r) => r,
        Err(e) => e.report(),
    };
    let peer = Peer(report.peer_addr());
    let (elapsed, drained) = (report.elapsed(), report.drained_bytes());
    let error = res
        .as_ref()
        .err()
        .map(|e| e as &(dyn std::error::Error + 'static));
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
                %peer,
                path,
                ?elapsed,
                drained,
                error,
                "connection closed: {summary}"
            )
        };
    }
    match level {
        Level::WARN => event!(Level::WARN),
        Level::INFO => event!(Level::INFO),
        _ => event!(Level::DEBUG),
    }
    if let Some(cb) = on_close {
        cb.call(res);
    }
}

/// How an outcome is reported: delivered closes at `DEBUG`, closes that could not
/// confirm delivery at `INFO` (the peer reset, went silent or away) or `WARN` (a local
/// I/O error); and what it means, in words.
fn verdict(res: &Result<CloseReport, CloseError>) -> (Level, &'static str) {
    match res {
        Ok(r) if !r.acked() => (
            Level::DEBUG,
            "the peer closed too; this platform cannot confirm delivery",
        ),
        Ok(r) if r.peer_eof() => (Level::DEBUG, "everything delivered, the peer closed too"),
        Ok(_) => (
            Level::DEBUG,
            "everything delivered; the peer had nothing more to send",
        ),
        Err(e) if e.report().acked() => (
            Level::DEBUG,
            "everything delivered, but the peer did not close its side",
        ),
        Err(e) if e.kind() == CloseErrorKind::Io => (Level::WARN, "delivery not confirmed"),
        Err(_) => (Level::INFO, "delivery not confirmed"),
    }
}

/// The peer's address in an event: the address, or `-` where there is none.
struct Peer(Option<std::net::SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// What a connection keeps around its close, apart from the close itself: its
/// registration with a tracker, the peer's address and the input it discarded before
/// the close. The close's outcome is reported with them.
#[derive(Debug, Default)]
pub(super) struct Conn {
    /// The tracker's count and lingering cap; dropped once the close is reported.
    pub(super) token: Option<Token>,
    /// Read when the stream was wrapped: after a reset the socket no longer knows it.
    pub(super) peer_addr: Option<std::net::SocketAddr>,
    /// Input discarded before the close (an abandoned upload).
    pub(super) discarded_before: u64,
    /// The close in the closes in flight, until it is reported (or dropped unreported).
    pub(super) in_flight: InFlight,
}

impl Conn {
    /// Adds what the connection knows to the close's report.
    pub(super) fn annotate(&self, res: &mut Result<CloseReport, CloseError>) {
        let report = match res {
            Ok(r) => r,
            Err(e) => e.report_mut(),
        };
        report.peer_addr = self.peer_addr;
        report.drained_bytes = report.drained_bytes.saturating_add(self.discarded_before);
    }

    /// Records and reports the outcome, already [annotated](Self::annotate), then ends
    /// the tracker's count and the close's place in flight: a server that waits for its
    /// closes sees every callback done.
    pub(super) fn report(
        mut self,
        res: &Result<CloseReport, CloseError>,
        on_close: Option<OnClose>,
        path: Path,
    ) {
        metrics::closed(res);
        notify(on_close, res, path);
        drop(self.token);
        self.in_flight.end();
    }
}

/// Closes `stream` at once, never blocking (a non-zero `SO_LINGER` is disarmed first),
/// and reports why the graceful close could not run to its end.
pub(super) fn close_plainly<S: AsyncGracefulClose>(
    stream: S,
    closer: &Closer,
    conn: Conn,
    on_close: Option<OnClose>,
    why: &str,
    path: Path,
) {
    if !closer.aborted() {
        stream.disarm_linger();
    }
    drop(stream);
    let (phase, report) = (closer.phase(), closer.report());
    let mut res = Err(CloseError::new(
        CloseErrorKind::Io,
        phase,
        report,
        Some(io::Error::other(why)),
    ));
    conn.annotate(&mut res);
    conn.report(&res, on_close, path);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Ok` whose acknowledgement could not be confirmed (the peer's EOF read where
    /// the platform cannot tell) is not called delivered.
    #[test]
    fn only_a_confirmed_close_is_called_delivered() {
        let report = |acked, peer_eof| {
            Ok(CloseReport {
                acked,
                peer_eof,
                ..CloseReport::default()
            })
        };
        let (level, what) = verdict(&report(false, true));
        assert_eq!(level, Level::DEBUG);
        assert!(!what.contains("delivered"), "{what}");
        assert!(what.contains("cannot confirm"), "{what}");
        for (acked, eof) in [(true, true), (true, false)] {
            let (_, what) = verdict(&report(acked, eof));
            assert!(what.starts_with("everything delivered"), "{what}");
        }
    }
}
