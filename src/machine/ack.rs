//! The acknowledgement check: consume the pending wakeup, then ask the kernel whether
//! our data and FIN were acknowledged (`SIOCOUTQ` on Linux), and whether the
//! connection died under us; and when to look again if no wakeup can be relied on.

use std::io;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::Interest;

use super::phase::Phase;
use super::time::{Nanos, NEVER};
use super::{nanos, Closer, Look, Socket};
use crate::sys::{self, SendQueue, SocketKind};

impl Closer {
    /// The close's check: the send queue, after consuming any pending wakeup of the
    /// stream it owns, so that the kernel's next one (our FIN acknowledged, a reset)
    /// wakes this task. (The barrier, which borrows the stream, only looks.)
    pub(super) fn poll_ack<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
        look: &mut Look,
    ) -> io::Result<Ack> {
        if !sys::ACK_CHECK {
            return Ok(Ack::Unknown);
        }
        if self.phase == Phase::AckWait {
            // A peer acknowledges what it received before it sends its own FIN: with its
            // EOF read, our FIN is almost surely acknowledged. Look before arming a
            // wakeup, which is then almost never needed.
            if let Some(ack) = self.queue_state(io, look)? {
                return Ok(ack);
            }
        }
        let mut edge_armed = false;
        if sys::WRITE_EDGES {
            // The close owns the stream: its readiness is ours to consume.
            edge_armed = consume_edges(
                |cx| io.poll_write_ready(cx),
                cx,
                || {
                    // Clears the cached readiness (unless a newer edge came meanwhile).
                    let _ = io.try_io(Interest::WRITABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                },
            )?;
        }
        // The wakeup is armed: an acknowledgement from now on wakes us, one before is
        // seen here.
        if let Some(ack) = self.queue_state(io, look)? {
            return Ok(ack);
        }
        Ok(Ack::Pending { edge_armed })
    }

    /// When to look at the send queue again, `now` being the present point of the
    /// close, and whether that look may be sooner than Tokio's timer can wait (the
    /// caller then yields instead).
    ///
    /// With our FIN in flight on TCP and an edge armed, the kernel's wakeup on the FIN's
    /// acknowledgement (`sk_state_change`) is guaranteed: the look is only a safety net,
    /// after a poll interval, then twice as late each time up to 16 intervals
    /// ([`safety_step`]). Without an armed edge (both directions shut), for the barrier
    /// or on AF_UNIX, it comes soon, then twice as late each time up to one interval
    /// ([`recheck_step`]).
    pub(super) fn recheck_at<S: Socket>(
        &mut self,
        io: &S,
        now: Nanos,
        edge_armed: bool,
        look: &mut Look,
    ) -> (Nanos, bool) {
        let closing = self.phase != Phase::Barrier;
        let fast = !(closing && io.kind() == SocketKind::Tcp && edge_armed);
        let rtt = if fast {
            look.activity(io).map(|a| a.rtt)
        } else {
            None
        };
        let interval = u64::from(self.poll_interval_ms) * 1_000_000;
        let step = if fast {
            recheck_step(rtt, self.poll_shift, interval)
        } else {
            safety_step(self.safety_shift, interval)
        };
        if now >= self.next_poll || self.next_poll > now.saturating_add(step) {
            self.next_poll = now.saturating_add(step);
            if fast && step < interval {
                self.poll_shift = self.poll_shift.saturating_add(1);
            } else if !fast {
                self.safety_shift = (self.safety_shift + 1).min(SAFETY_SHIFT_MAX);
            }
        }
        (self.next_poll, rtt.is_some())
    }

    /// Asks the kernel where our bytes stand: `Some` ends the wait (all acknowledged,
    /// or the platform cannot tell), `None` while bytes are outstanding on a live
    /// connection; the error of a dead one.
    pub(super) fn queue_state<S: Socket>(
        &mut self,
        io: &S,
        look: &mut Look,
    ) -> io::Result<Option<Ack>> {
        // Whether the connection may have died unseen. While the close drains, its reads
        // meet a death themselves, in the same pass: a reset or a retransmission give-up
        // (`tcp_reset`, `tcp_write_err`) sets the socket's error and makes it readable,
        // and the next `recv` returns that error. Only a close that no longer reads (the
        // peer's EOF came first) or the barrier (which never reads) must ask.
        let alive = self.phase.drains();
        let mut blind = false;
        let closed = || {
            if alive {
                return Ok(false);
            }
            let activity = look.activity(io);
            blind = activity.is_none();
            Ok(activity.is_some_and(|a| a.closed))
        };
        let state = io.send_queue(self.fin_sent, closed)?;
        let state = match state {
            SendQueue::Empty if io.kind() == SocketKind::Tcp => return Ok(Some(Ack::Done)),
            // AF_UNIX: our queue is empty because the peer read it all, or because it
            // closed without reading and purged it, which leaves ECONNRESET on our side.
            SendQueue::Empty => match io.take_error()? {
                Some(e) => return Err(e),
                None => return Ok(Some(Ack::Done)),
            },
            SendQueue::Unknown => return Ok(Some(Ack::Unknown)),
            other => other,
        };
        // Bytes outstanding. A dead connection never drains: its cause is in SO_ERROR.
        // AF_UNIX: a peer that closed without reading sets ECONNRESET on us.
        // Where `TCP_INFO` could not tell whether the connection is closed, its error
        // still can.
        if state == SendQueue::Gone || io.kind() != SocketKind::Tcp || blind {
            match io.take_error()? {
                Some(e) => return Err(e),
                None if state == SendQueue::Gone => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionReset,
                        "the connection was closed by the kernel with data unacknowledged",
                    ))
                }
                None => {}
            }
        }
        Ok(None)
    }
}

/// The smallest fast re-check: a Linux thread's default timer slack (`prctl(2)`,
/// `PR_SET_TIMERSLACK`: 50 µs), below which its sleeps are not precise anyway.
const RECHECK_MIN: Nanos = 50_000;

/// The fast re-check after `shift` doublings, at most `interval`. With the smoothed
/// round-trip time known (TCP on Linux, `TCP_INFO.tcpi_rtt`) it starts at half of it,
/// at least [`RECHECK_MIN`]: an acknowledgement the peer sends at once, as it does for
/// a FIN that crossed its own (`tcp_fin()`, state `TCP_FIN_WAIT1`: `tcp_send_ack()`), is
/// then seen within about a round trip instead of at Tokio's next millisecond.
/// Otherwise it starts at 1 ms. Either way it doubles, so a long wait costs few checks.
fn recheck_step(rtt: Option<Duration>, shift: u8, interval: Nanos) -> Nanos {
    let base = match rtt {
        Some(rtt) => (nanos(rtt) / 2).max(RECHECK_MIN),
        None => 1_000_000,
    };
    base.checked_shl(shift.into())
        .filter(|&step| step >> shift == base)
        .unwrap_or(NEVER)
        .min(interval)
}

/// The safety net doubles at most this many times: 16 poll intervals, 1.6 s by default.
const SAFETY_SHIFT_MAX: u8 = 4;

/// The safety-net re-check after `shift` doublings: `interval`, then twice as late each
/// time, at most 16 intervals.
///
/// It only guards against a wakeup that the kernel guarantees (the FIN's
/// acknowledgement, a reset) being lost on the way. At a fixed interval it was most of
/// the cost of a long delivery: 200 uploads at once over a 20 Mbit/s link, each answer
/// taking some 15 s, cost about 65 timer wakeups and `SIOCOUTQ` looks per connection
/// (`lab/benches/real_servers.py`, `strace -c`); doubling, about 12.
fn safety_step(shift: u8, interval: Nanos) -> Nanos {
    interval.saturating_mul(1 << shift.min(SAFETY_SHIFT_MAX))
}

/// Consumes up to two pending readiness edges and reports whether the task is now
/// registered for the next one. Once both directions are shut (`EPOLLHUP`) Tokio keeps
/// a stream write-ready for good; after two edges in a row the timer takes over, so
/// this never spins.
fn consume_edges(
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
    cx: &mut Context<'_>,
    mut clear: impl FnMut(),
) -> io::Result<bool> {
    for _ in 0..2 {
        match poll(cx) {
            Poll::Pending => return Ok(true),
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Ready(Ok(())) => clear(),
        }
    }
    Ok(false)
}

/// How the send queue stands.
pub(super) enum Ack {
    /// Everything acknowledged.
    Done,
    /// Bytes still unacknowledged. `edge_armed`: the task is registered for the next
    /// write-readiness edge (false once Tokio keeps the stream write-ready for good).
    Pending { edge_armed: bool },
    /// This platform cannot tell.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safety_net_doubles_up_to_sixteen_intervals() {
        let ms = 1_000_000;
        let steps: Vec<_> = (0..7).map(|k| safety_step(k, 100 * ms)).collect();
        let want = [100, 200, 400, 800, 1600, 1600, 1600];
        assert_eq!(steps, want.map(|t| t * ms));
        // `Duration::MAX` (only the kernel's wakeups): never, whatever the shift.
        for shift in [0, 4, u8::MAX] {
            assert_eq!(safety_step(shift, NEVER), NEVER);
        }
    }

    #[test]
    fn rechecks_start_at_half_a_round_trip_and_double() {
        let ms = 1_000_000;
        let interval = 100 * ms;
        // Loopback: a 30 µs round trip starts at the floor, 50 µs.
        let lo = Some(Duration::from_micros(30));
        let steps: Vec<_> = (0..5).map(|k| recheck_step(lo, k, interval)).collect();
        assert_eq!(steps, [50_000, 100_000, 200_000, 400_000, 800_000]);
        // 10 ms: 5 ms, 10 ms, ...
        let wan = Some(Duration::from_millis(10));
        assert_eq!(recheck_step(wan, 0, interval), 5 * ms);
        assert_eq!(recheck_step(wan, 1, interval), 10 * ms);
        // Unknown round trip (AF_UNIX, other systems): 1 ms, 2 ms, ...
        assert_eq!(recheck_step(None, 0, interval), ms);
        assert_eq!(recheck_step(None, 3, interval), 8 * ms);
        // Never beyond the interval, whatever the shift or the round trip.
        for shift in [20, 63, 64, 200, u8::MAX] {
            assert_eq!(recheck_step(lo, shift, interval), interval);
            assert_eq!(recheck_step(None, shift, interval), interval);
        }
        assert_eq!(recheck_step(Some(Duration::MAX), 0, interval), interval);
        assert_eq!(recheck_step(Some(Duration::MAX), 0, NEVER), NEVER / 2);
    }
}
