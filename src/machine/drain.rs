//! The drain: reads and discards until the peer's EOF, bounded by the drain limit and
//! the idle timeout.
//!
//! A peer that streams (an upload the application stopped reading) is drained in
//! batches: once [`BATCH_AFTER`](crate::discard::BATCH_AFTER) bytes were discarded, the kernel is asked to wake the
//! close only when a larger batch is queued (`SO_RCVLOWAT` on Linux, see
//! `sys::wake_in_batches`), which divides the wakeups and the discard calls per GiB
//! several times over. The peer's EOF, an error and a full receive window still wake
//! the close at once. Bytes below a batch wait in the queue without a wakeup, so when
//! the idle deadline passes the queue is looked at before the peer is called silent
//! ([`Closer::recheck_idle`]).

use std::io;
use std::task::{ready, Context, Poll};

use super::phase::{Event, PeerNow, Phase};
use super::{classify, CloseErrorKind, ClosePhase, Closer, Look, Nanos, Socket, Step};
use crate::discard::{
    discard_ready, rebatch, Handover, BATCH_MAX, MAX_DISCARD, MAX_READS_PER_POLL,
};

/// What the drain knows: its bytes and its limit, and what it learnt of the socket.
#[derive(Debug)]
pub(super) struct Drain {
    /// The most bytes the close discards.
    pub(super) limit: u64,
    /// Bytes the close discarded.
    pub(super) drained: u64,
    /// Bytes a discard before the close took (an abandoned upload): they count toward
    /// whether the peer streams, not toward the limit (they were bounded on their own).
    /// Only how they compare with [`BATCH_AFTER`](crate::discard::BATCH_AFTER) matters: kept saturated in 32 bits.
    prior: u32,
    /// The kernel wakes the drain only once a batch is queued (`SO_RCVLOWAT`).
    pub(super) batched: bool,
    /// Whether the socket is TCP by its protocol (`MSG_TRUNC` works), once asked: when
    /// the drain first has bytes to discard (most closes read the peer's EOF at once and
    /// never need to ask).
    tcp: Option<bool>,
}

impl Drain {
    pub(super) fn new(limit: u64) -> Self {
        Drain {
            limit,
            drained: 0,
            prior: 0,
            batched: false,
            tcp: None,
        }
    }

    /// Whether discards may skip the copy.
    fn tcp(&self) -> bool {
        self.tcp == Some(true)
    }

    /// How much one discard asks for: one byte more than the limit allows, to see a
    /// peer that exceeds it.
    fn want(&self) -> usize {
        self.limit
            .saturating_sub(self.drained)
            .saturating_add(1)
            .min(MAX_DISCARD) as usize
    }
}

impl Closer {
    /// Takes over a discard of the connection's input that ran before the close (an
    /// abandoned upload): its batches and what it learnt of the socket stay, and its
    /// bytes count toward whether the peer streams.
    pub(crate) fn taking_over(mut self, before: Handover) -> Self {
        self.drain.prior = u32::try_from(before.discarded).unwrap_or(u32::MAX);
        self.drain.batched = before.batched;
        if before.tcp.is_some() {
            self.drain.tcp = before.tcp;
        }
        self
    }

    /// Whether this close may take over a discard that wakes only for batches: its drain
    /// limit leaves room for the largest (a batch must never hide an excess).
    pub(crate) fn takes_batches(&self) -> bool {
        self.drain.limit >= BATCH_MAX
    }

    /// The stream is given back before the close ran (`GracefulIo::into_inner` after a
    /// shutdown): the kernel wakes readers for every byte again.
    pub(crate) fn unbatch<S: Socket>(&mut self, io: &S) {
        if self.drain.batched && io.wake_in_batches(1).is_ok() {
            self.drain.batched = false;
        }
    }

    /// The drain's part of a pass: reads and discards until the peer's EOF, the drain
    /// limit, an error, or no more data (`None`: the pass goes on).
    pub(super) fn drain_step<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
        now: Nanos,
    ) -> Option<Step> {
        match self.poll_drain(io, cx, now) {
            Poll::Ready(Ok(Some(DrainEnd::Eof))) => Some(Step::Next(Event::PeerEof)),
            Poll::Ready(Ok(Some(DrainEnd::OverLimit))) => Some(Step::Fail(
                CloseErrorKind::DrainLimit,
                ClosePhase::Drain,
                None,
            )),
            // A peer that keeps the socket full: other tasks get a turn first.
            Poll::Ready(Ok(None)) => Some(Step::Yield),
            Poll::Ready(Err(e)) => Some(Step::Fail(classify(&e), ClosePhase::Drain, Some(e))),
            Poll::Pending => None,
        }
    }

    /// Reads and discards until EOF, the drain limit, an error, or no more data
    /// (`Pending`); `Ready(Ok(None))` after [`MAX_READS_PER_POLL`] reads.
    fn poll_drain<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
        now: Nanos,
    ) -> Poll<io::Result<Option<DrainEnd>>> {
        for _ in 0..MAX_READS_PER_POLL {
            ready!(io.poll_read_ready(cx))?;
            match discard_ready(io, self.drain.want(), self.drain.tcp()) {
                Ok(n) => {
                    if n > 0 && self.drain.tcp.is_none() {
                        self.drain.tcp = Some(io.is_tcp());
                    }
                    if let Some(end) = self.count(io, n, now) {
                        return Poll::Ready(Ok(Some(end)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(None))
    }

    /// The idle bound of a phase that watches the peer's silence: `Ok` with when it is
    /// due while it holds, the step that ends the pass otherwise.
    /// Before the peer is called silent, bytes a batch held back are read
    /// ([`sweep`](Self::sweep)).
    pub(super) fn idle_check<S: Socket>(
        &mut self,
        io: &S,
        now: Nanos,
        look: &mut Look,
    ) -> Result<Nanos, Step> {
        let due = self.phase.idle_due(self.idle_ms);
        if now < due {
            return Ok(due);
        }
        self.sweep(io, now, look)?;
        let due = self.phase.idle_due(self.idle_ms);
        if due > now {
            return Ok(due);
        }
        // A close waiting for the EOF first has not looked at its own bytes: the peer
        // may be silent because it is still taking them.
        if matches!(self.phase, Phase::EofFirst { .. }) && io.unacked().is_ok_and(|n| n > 0) {
            return Err(Step::Next(Event::InFlight));
        }
        Err(Step::Fail(
            CloseErrorKind::IdleTimeout,
            ClosePhase::Drain,
            None,
        ))
    }

    /// Bytes below a batch wait in the queue without a wakeup: a batched drain reads
    /// them before the close decides that the peer is silent or that it may end (a
    /// `close()` with input unread sends RST). They count from the peer's last segment
    /// (`TCP_INFO`), not from this read. `Err`: the step they lead to.
    pub(super) fn sweep<S: Socket>(
        &mut self,
        io: &S,
        now: Nanos,
        look: &mut Look,
    ) -> Result<(), Step> {
        if !self.drain.batched {
            // Every byte woke the drain, which read it.
            return Ok(());
        }
        let n = match io.discard(self.drain.want(), self.drain.tcp()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(Step::Fail(classify(&e), ClosePhase::Drain, Some(e))),
        };
        let last = match look.activity(io) {
            Some(a) if n > 0 => now.saturating_sub(super::nanos(a.since_last_data)),
            _ => now,
        };
        match self.count(io, n, last) {
            Some(DrainEnd::Eof) => Err(Step::Next(Event::PeerEof)),
            Some(DrainEnd::OverLimit) => Err(Step::Fail(
                CloseErrorKind::DrainLimit,
                ClosePhase::Drain,
                None,
            )),
            None => Ok(()),
        }
    }

    /// [`PeerEof::IfSending`](crate::PeerEof::IfSending), once our bytes are
    /// acknowledged: is the peer still sending? One that sent anything since the close
    /// began is; one whose EOF is queued has finished; otherwise the kernel's time of
    /// its last segment tells (where the platform has none, the empty queue decides).
    pub(super) fn peer_now<S: Socket>(
        &mut self,
        io: &S,
        now: Nanos,
        look: &mut Look,
    ) -> Result<PeerNow, Step> {
        if self.drain.drained > 0 {
            return Ok(PeerNow::Sending);
        }
        // The drain found the queue empty, but its readiness may lag the kernel: ask
        // the socket itself.
        match io.discard(1, self.drain.tcp()) {
            Ok(0) => Ok(PeerNow::EofQueued),
            Ok(n) => match self.count(io, n, now) {
                Some(DrainEnd::OverLimit) => Err(Step::Fail(
                    CloseErrorKind::DrainLimit,
                    ClosePhase::Drain,
                    None,
                )),
                _ => Ok(PeerNow::Sending),
            },
            // An uploading client whose last segment the application read a moment ago
            // is still sending; an idle one last sent long before the close began.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let began = self.start.elapsed();
                let quiet = look.activity(io).is_none_or(|a| a.since_last_data > began);
                Ok(if quiet {
                    PeerNow::Quiet
                } else {
                    PeerNow::Sending
                })
            }
            // Let the drain meet the error and report it.
            Err(_) => Ok(PeerNow::Sending),
        }
    }

    /// Counts `n` discarded bytes (0: the peer's EOF), the peer's last segment having
    /// come at `at`; how the drain ends, if it does.
    fn count<S: Socket>(&mut self, io: &S, n: usize, at: Nanos) -> Option<DrainEnd> {
        if n == 0 {
            return Some(DrainEnd::Eof);
        }
        let d = &mut self.drain;
        let before = d.drained;
        d.drained = d.drained.saturating_add(n as u64);
        if d.drained > d.limit {
            return Some(DrainEnd::OverLimit);
        }
        if d.tcp() {
            // At most what the limit still allows, so that a batch never hides an excess:
            // near the limit the batch shrinks with the room left, then batching stops.
            let room = (d.limit - d.drained).saturating_add(1);
            // Whether the peer streams is judged on its whole input: what the connection
            // discarded before the close counts from the close's first discard on, which
            // batches at once unless that discard's batching was handed over.
            let seen = if before == 0 && !d.batched {
                0
            } else {
                u64::from(d.prior).saturating_add(before)
            };
            let total = u64::from(d.prior).saturating_add(d.drained);
            // On `None` the mark stays as it was; the idle check and the deadline still
            // bound the wait.
            if let Some(on) = rebatch(io, seen, total, room, d.batched) {
                d.batched = on;
            }
        }
        self.apply(Event::PeerData { at });
        None
    }
}

/// How a drain ended.
pub(super) enum DrainEnd {
    /// The peer closed its side.
    Eof,
    /// The peer sent more than the drain limit.
    OverLimit,
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::super::{Closable, Closer};
    use crate::discard::Handover;
    use crate::options::CloseOptions;
    use crate::options::Role;

    /// An upload the connection discarded before its close (an abandoned request body,
    /// whose batching ended when the close took over) counts toward the close's
    /// judgment: 4 KiB more make a streaming peer of one that sent 64 KiB before, and
    /// the close batches at once instead of after its own 32 KiB.
    #[tokio::test]
    async fn input_discarded_before_the_close_counts_as_streaming() {
        for (before, batched) in [(0u64, false), (64 << 10, true)] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut peer = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (ours, _) = listener.accept().await.unwrap();
            peer.write_all(&[7; 4096]).await.unwrap();
            let opts = CloseOptions::new(Duration::from_secs(20)).resolve(Role::Stream);
            let before = Handover {
                discarded: before,
                ..Handover::default()
            };
            let mut closer = Closer::new(opts).taking_over(before);
            let close = std::future::poll_fn(|cx| ours.poll_closer(&mut closer, cx));
            // The close waits for the peer's EOF, which never comes.
            let waited = tokio::time::timeout(Duration::from_millis(300), close).await;
            assert!(waited.is_err(), "{waited:?}");
            assert_eq!(closer.drain.drained, 4096);
            assert_eq!(closer.drain.batched, batched, "{before:?}");
        }
    }
}
