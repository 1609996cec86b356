//! Time in a close: its points as nanoseconds after its start, and "no bound".

use std::time::Duration;

use tokio::time::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;

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
