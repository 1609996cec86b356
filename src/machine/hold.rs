//! The answer first: while a client takes an early answer, the upload it abandoned
//! waits in its own window instead of being discarded.
//!
//! An early answer (a 413 to an upload the application will not read) must not be
//! stuck behind the upload: a client that sends its whole request before it reads
//! (Python's `requests`, browsers over HTTP/1.1) takes the answer only once its upload
//! went through, so the upload is discarded while the answer is written, and by the close. A client that
//! reads while it sends (curl, Go, Node) needs no such help, and discarding its upload
//! while it takes the answer costs it: on a path with a queue (a router, a slow uplink)
//! the upload fills the queue that the answer's acknowledgements cross, and every
//! round trip of the answer waits behind it. With the upload left unread, the
//! receive window closes, the client's upload stops at it, the queue empties and the
//! answer's acknowledgements come back at once. Over a 20 Mbit/s link with a 256 KB
//! queue (`benches/real_servers.py`) that took a Go client's median time to the whole
//! answer from 288 ms to 169 ms.
//!
//! So the discard waits while the client visibly takes the answer: segments of ours
//! are in flight (`tcpi_unacked` > 0: its window is open) and the window it
//! advertises has not shrunk below seven eighths of the widest it advertised
//! (`tcpi_snd_wnd`: a client that reads keeps its window open; one that does not read
//! shrinks it with every segment of the answer it buffers). Once the window shrank by an eighth,
//! the client is one that sends everything first: the hold ends for good, and the
//! discard goes on as before. With nothing in flight (its window closed, or all
//! acknowledged) the discard runs. Without the window in `TCP_INFO` (older kernels
//! report 0) only the closed window ends a hold; without `TCP_INFO` (other systems)
//! nothing holds.
//!
//! A hold is re-checked on a timer, every half round trip within [`STEP_MIN`] and
//! [`STEP_MAX`]: the kernel wakes nobody when the client's window closes.

use std::time::Duration;

use crate::sys::{self, Activity};

/// The shortest wait between two looks while holding: Tokio's timer resolution.
const STEP_MIN: Duration = Duration::from_millis(1);
/// The longest: a client whose window closes waits no longer than this for the
/// discard to resume.
const STEP_MAX: Duration = Duration::from_millis(50);

/// The longest wait between two looks of the close while holding.
const LATER_MAX: Duration = Duration::from_millis(200);
/// The close's looks double at most this many times.
const LATER_SHIFT_MAX: u8 = 4;

/// Whether the discard of an abandoned upload waits for the answer (the module's
/// doc), and what it learnt of the client's window so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Hold {
    /// The widest window the client advertised while the hold looked.
    widest: u32,
    /// The client shrank its window: it does not read while it sends. No more holds.
    released: bool,
    /// How many times the close's looks doubled ([`Hold::check_later`]).
    shift: u8,
}

impl Hold {
    /// Looks at the socket: `Some(step)` while the discard should wait, to look again
    /// after `step`; `None`: discard now.
    pub(crate) fn check(&mut self, sock: sys::Sock<'_>) -> Option<Duration> {
        if self.released {
            return None;
        }
        self.step(&sys::activity(sock).ok().flatten()?)
    }

    /// [`check`](Self::check) for the close, whose looks are all on its timer (after
    /// our FIN Tokio reports the stream writable for good: no acknowledgement wakes
    /// it): each hold looks twice as late as the one before, at most [`LATER_MAX`]. By
    /// then a client that does not read has shown it (its window shrank while the
    /// answer was written); one that reads is mostly waited for, and the kernel wakes
    /// the close when our FIN is acknowledged.
    pub(crate) fn check_later(&mut self, sock: sys::Sock<'_>) -> Option<Duration> {
        let step = self.check(sock)?;
        Some(self.later(step))
    }

    /// `step` doubled as many times as the close looked before, within [`LATER_MAX`]
    /// (never shorter than `step`).
    fn later(&mut self, step: Duration) -> Duration {
        let later = step.saturating_mul(1 << self.shift).min(LATER_MAX);
        self.shift = (self.shift + 1).min(LATER_SHIFT_MAX);
        later.max(step)
    }

    /// The decision of [`check`](Self::check) on what the kernel said.
    fn step(&mut self, a: &Activity) -> Option<Duration> {
        if self.released {
            return None;
        }
        self.widest = self.widest.max(a.peer_window);
        if u64::from(a.peer_window) * 8 < u64::from(self.widest) * 7 {
            self.released = true;
            return None;
        }
        (a.in_flight > 0).then(|| (a.rtt / 2).clamp(STEP_MIN, STEP_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(in_flight: u32, peer_window: u32) -> Activity {
        Activity {
            since_last_data: Duration::ZERO,
            rtt: Duration::from_millis(40),
            in_flight,
            peer_window,
        }
    }

    #[test]
    fn holds_while_a_reading_client_takes_the_answer() {
        let mut hold = Hold::default();
        let step = Some(Duration::from_millis(20));
        // The window stays open, or grows as the client reads and autotuning widens it.
        for window in [64 << 10, 60 << 10, 256 << 10, 232 << 10] {
            assert_eq!(hold.step(&seen(10, window)), step, "{window}");
        }
        // Everything acknowledged, or the window closed: discard meanwhile.
        assert_eq!(hold.step(&seen(0, 256 << 10)), None);
        assert_eq!(hold.step(&seen(3, 256 << 10)), step);
        assert!(!hold.released);
    }

    #[test]
    fn a_client_whose_window_shrinks_is_released_for_good() {
        let mut hold = Hold::default();
        assert!(hold.step(&seen(10, 64 << 10)).is_some());
        // It buffers the answer without reading: its window shrinks.
        assert_eq!(hold.step(&seen(10, 54 << 10)), None);
        assert!(hold.released);
        // Even should it read later.
        assert_eq!(hold.step(&seen(10, 64 << 10)), None);
    }

    #[test]
    fn the_close_looks_twice_as_late_each_time() {
        let mut hold = Hold::default();
        let steps: Vec<_> = (0..7)
            .map(|_| hold.step(&seen(1, 64 << 10)).map(|s| hold.later(s)))
            .collect();
        let ms = Duration::from_millis;
        let want = [20, 40, 80, 160, 200, 200, 200].map(|t| Some(ms(t)));
        assert_eq!(steps, want);
        // A step beyond the bound (a long round trip) is kept.
        assert_eq!(hold.later(ms(300)), ms(300));
    }

    #[test]
    fn the_step_is_half_a_round_trip_within_bounds() {
        let mut hold = Hold::default();
        let mut a = seen(1, 0);
        for (rtt_us, step_ms) in [(30, 1), (10_000, 5), (1_000_000, 50)] {
            a.rtt = Duration::from_micros(rtt_us);
            assert_eq!(hold.step(&a), Some(Duration::from_millis(step_ms)));
        }
        // A kernel that reports no window (0) never releases: only a closed window
        // (nothing in flight) lets the discard run.
        assert!(!hold.released);
        a.in_flight = 0;
        assert_eq!(hold.step(&a), None);
    }
}
