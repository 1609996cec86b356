//! The crate's metrics, through the `metrics` facade (feature `metrics`): the names
//! and meanings are the crate docs' `# Metrics` table, and are stable.
//!
//! Without the feature every function here is empty and [`InFlight`] has no size, so
//! the call sites need no `cfg` of their own and cost nothing.
#![cfg_attr(not(feature = "metrics"), allow(dead_code))]

use crate::error::{CloseError, CloseErrorKind};
use crate::report::CloseReport;

/// Counter: closes ended, by `outcome` and `aborted`.
pub(crate) const CLOSES: &str = "tokio_graceful_close_closes_total";
/// Histogram, seconds: how long each close took, by `outcome`.
pub(crate) const DURATION: &str = "tokio_graceful_close_close_duration_seconds";
/// Gauge: closes started and not ended.
pub(crate) const IN_FLIGHT: &str = "tokio_graceful_close_closes_in_flight";
/// Gauge: closes lingering in a tracker, summed over the trackers.
pub(crate) const LINGERING: &str = "tokio_graceful_close_closes_lingering";
/// Counter, bytes: the peer's input discarded unread.
pub(crate) const DISCARDED: &str = "tokio_graceful_close_discarded_bytes_total";

/// The `outcome` label of a close: `delivered` where [`CloseReport::acked`] confirmed
/// it, `unconfirmed` for an `Ok` the platform could not confirm, else the error's kind.
/// An exhaustive match: a new kind needs a name of its own here and in the docs.
pub(crate) fn outcome(res: &Result<CloseReport, CloseError>) -> &'static str {
    match res {
        Ok(r) if r.acked() => "delivered",
        Ok(_) => "unconfirmed",
        Err(e) => match e.kind() {
            CloseErrorKind::TimedOut => "timed_out",
            CloseErrorKind::IdleTimeout => "idle_timeout",
            CloseErrorKind::DrainLimit => "drain_limit",
            CloseErrorKind::RetransmitTimeout => "retransmit_timeout",
            CloseErrorKind::PeerReset => "peer_reset",
            CloseErrorKind::Evicted => "evicted",
            CloseErrorKind::Io => "io",
        },
    }
}

/// Records a close's outcome, once per close: its count, its duration and the bytes
/// it discarded.
#[inline]
pub(crate) fn closed(res: &Result<CloseReport, CloseError>) {
    #[cfg(feature = "metrics")]
    {
        let report = match res {
            Ok(r) => r,
            Err(e) => e.report(),
        };
        let outcome = outcome(res);
        let aborted = if report.aborted() { "true" } else { "false" };
        ::metrics::counter!(CLOSES, "outcome" => outcome, "aborted" => aborted).increment(1);
        ::metrics::histogram!(DURATION, "outcome" => outcome).record(report.elapsed());
        ::metrics::counter!(DISCARDED).increment(report.drained_bytes());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = res;
}

/// A close joined a tracker's lingering closes.
#[inline]
pub(crate) fn lingering_started() {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(LINGERING).increment(1.0);
}

/// A close left a tracker's lingering closes (it ended, or the cap evicted it).
#[inline]
pub(crate) fn lingering_ended() {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(LINGERING).decrement(1.0);
}

/// A close counted in [`IN_FLIGHT`] from [`start`](Self::start) until it is dropped or
/// [`end`](Self::end)ed: every increment has its decrement, whatever ends the close (its
/// report, a drop before it, a runtime shutting down). One byte with the feature (it
/// lives in every `GracefulIo`), none without.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    #[cfg(feature = "metrics")]
    counted: bool,
}

impl InFlight {
    /// Counts the close, if it is not counted yet.
    #[inline]
    pub(crate) fn start(&mut self) {
        #[cfg(feature = "metrics")]
        if !std::mem::replace(&mut self.counted, true) {
            ::metrics::gauge!(IN_FLIGHT).increment(1.0);
        }
    }

    /// Ends the count, if it started.
    #[inline]
    pub(crate) fn end(&mut self) {
        #[cfg(feature = "metrics")]
        if std::mem::take(&mut self.counted) {
            ::metrics::gauge!(IN_FLIGHT).decrement(1.0);
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for InFlight {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ClosePhase;

    /// Every outcome has its own name, and only a confirmed `Ok` is `delivered`.
    #[test]
    fn every_outcome_has_a_distinct_name() {
        let ok = |acked| {
            Ok(CloseReport {
                acked,
                ..CloseReport::default()
            })
        };
        let err = |kind| {
            Err(CloseError::new(
                kind,
                ClosePhase::Drain,
                CloseReport::default(),
                None,
            ))
        };
        let mut names = vec![outcome(&ok(true)), outcome(&ok(false))];
        for kind in [
            CloseErrorKind::TimedOut,
            CloseErrorKind::IdleTimeout,
            CloseErrorKind::DrainLimit,
            CloseErrorKind::RetransmitTimeout,
            CloseErrorKind::PeerReset,
            CloseErrorKind::Evicted,
            CloseErrorKind::Io,
        ] {
            names.push(outcome(&err(kind)));
        }
        assert_eq!(names[..2], ["delivered", "unconfirmed"]);
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "{names:?}");
    }
}
