//! Time in a close: its points as nanoseconds after its start, "no bound", the Tokio
//! timer it arms for a near wakeup, whether Tokio's clock is paused, and the check that the
//! runtime has a time driver.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// The resolution of Tokio's timer: a shorter wait ends at its next tick, up to 1 ms
/// late.
pub(crate) const TOKIO_TICK: Duration = Duration::from_millis(1);

/// What "no bound" becomes (`Instant + Duration::MAX` would overflow).
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, where a `d` too large for an `Instant` (such as `Duration::MAX`) means
/// "no bound".
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + FAR_FUTURE)
}

/// Nanoseconds: a point in time counted from the close's start, or a duration. Kept as
/// a `u64` rather than an `Instant` (16 bytes) or a `Duration` so that a pending close
/// fits in a small task.
pub(crate) type Nanos = u64;

/// "No bound": durations of 2^64 ns (584 years) and more, `Duration::MAX` among them.
pub(crate) const NEVER: Nanos = u64::MAX;

/// `d` in nanoseconds, [`NEVER`] when it does not fit (64-bit arithmetic: this runs on
/// every poll).
pub(crate) fn nanos(d: Duration) -> Nanos {
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(NEVER)
}

/// `d` in whole milliseconds, rounded up, at least 1 (the timer's resolution).
pub(crate) fn millis_ceil(d: Duration) -> u32 {
    let ms = d
        .as_secs()
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(u64::from(d.subsec_nanos().div_ceil(1_000_000))));
    ms.and_then(|ms| u32::try_from(ms).ok())
        .unwrap_or(u32::MAX)
        .max(1)
}

/// A timer for `deadline`, or `None` when the runtime has no time driver (Tokio panics
/// when such a timer is created; the panic is caught here and turned into an error).
pub(crate) fn new_timer(deadline: Instant) -> Option<Pin<Box<Sleep>>> {
    catch_unwind(AssertUnwindSafe(|| {
        Box::pin(tokio::time::sleep_until(deadline))
    }))
    .ok()
}

/// Whether Tokio's clock is paused (`tokio::time::pause`): it then stands still
/// between two readings. (A clock too coarse to move between them only sends the wait
/// to Tokio's timer, which is always right.)
pub(crate) fn clock_paused() -> bool {
    let a = Instant::now();
    a == Instant::now()
}

/// The real (not Tokio's) instant `n` nanoseconds from now.
pub(crate) fn real_after(n: Nanos) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(Duration::from_nanos(n))
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

thread_local! {
    /// The last runtime this thread found ready for a close.
    static READY: std::cell::Cell<Option<tokio::runtime::Id>> = const { std::cell::Cell::new(None) };
}

/// Checks that the close runs inside a Tokio runtime with a time driver (its near
/// wakeups need Tokio's timer), once per runtime and thread.
pub(crate) fn check_runtime() -> Result<(), &'static str> {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return Err("a graceful close must be polled inside a Tokio runtime");
    };
    let id = handle.id();
    if READY.try_with(|r| r.get() == Some(id)).unwrap_or(false) {
        return Ok(());
    }
    if new_timer(Instant::now()).is_none() {
        return Err(NO_TIME_DRIVER);
    }
    let _ = READY.try_with(|r| r.set(Some(id)));
    Ok(())
}

/// Why a close cannot run on a runtime without timers.
pub(crate) const NO_TIME_DRIVER: &str =
    "the graceful close needs Tokio's time driver: build the runtime with `enable_time()` \
     or `enable_all()`";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_is_seen() {
        assert!(clock_paused());
    }

    // Linux: its monotonic clock moves between two readings.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_running_clock_is_not_paused() {
        assert!(!clock_paused());
    }

    #[test]
    fn after_saturates() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(after(now, Duration::MAX) > now + Duration::from_secs(86_400 * 365));
    }

    #[test]
    fn nanos_and_millis_saturate() {
        assert_eq!(nanos(Duration::from_secs(1)), 1_000_000_000);
        assert_eq!(nanos(Duration::MAX), NEVER);
        assert_eq!(millis_ceil(Duration::ZERO), 1);
        assert_eq!(millis_ceil(Duration::from_micros(1500)), 2);
        assert_eq!(millis_ceil(Duration::MAX), u32::MAX);
        assert_eq!(millis_ceil(Duration::from_secs(1)), 1000);
        assert_eq!(millis_ceil(Duration::new(1, 1)), 1001);
        assert_eq!(nanos(Duration::new(3, 7)), 3_000_000_007);
        assert_eq!(
            nanos(Duration::from_secs(u64::MAX / 1_000_000_000 + 1)),
            NEVER
        );
    }
}
