//! The drain: reads and discards until the peer's EOF, bounded by the drain limit and
//! the idle timeout.
//!
//! A peer that streams (an upload the application stopped reading) is drained in
//! batches: once [`BATCH_AFTER`] bytes were discarded, the kernel is asked to wake the
//! close only when a larger batch is queued (`SO_RCVLOWAT` on Linux, see
//! `sys::wake_in_batches`), which divides the wakeups and the discard calls per GiB
//! several times over. The peer's EOF, an error and a full receive window still wake
//! the close at once. Bytes below a batch wait in the queue without a wakeup, so when
//! the idle deadline passes the queue is looked at before the peer is called silent
//! ([`Closer::recheck_idle`]).

use std::io;
use std::task::{ready, Context, Poll};

use tokio::io::Interest;

use super::Socket;
use super::{nanos, Closer, Flags, Nanos};
use crate::error::CloseErrorKind;
use crate::sys::{self, SocketKind};

/// Reads per poll before the drain yields to the scheduler (on top of Tokio's budget).
const MAX_READS_PER_POLL: usize = 64;
/// Largest single discard request.
const MAX_DISCARD: u64 = 1 << 30;
/// Discarded bytes after which the peer counts as streaming and the drain goes to
/// batches. Smaller drains (a request body cut short) never pay the extra system call.
const BATCH_AFTER: u64 = 256 << 10;
/// The largest batch the drain waits for.
const BATCH_MAX: u64 = 512 << 10;
/// [`Closer::acked_seen`] before the idle bound first looked at the peer's progress.
pub(super) const NOT_SEEN: u64 = u64::MAX;

impl Closer {
    /// Reads and discards until EOF, the drain limit, an error, or no more data
    /// (`Pending`).
    pub(super) fn poll_drain<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<DrainEnd>> {
        for _ in 0..MAX_READS_PER_POLL {
            ready!(io.poll_read_ready(cx))?;
            let (want, tcp) = (self.want(), self.flags.has(Flags::TCP));
            match io.try_io(Interest::READABLE, || sys::discard(io.as_sock(), want, tcp)) {
                Ok(n) => {
                    if n > 0 && !tcp {
                        self.learn_protocol(io);
                    }
                    if let Some(end) = self.count(io, n) {
                        return Poll::Ready(Ok(end));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        // A peer that keeps the socket full: give other tasks a turn.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The idle deadline passed (`now`). Was the peer really silent? `Ok(None)`: it was
    /// not (or it closed), the close goes on; otherwise how the close ends.
    ///
    /// Silence is neither data nor, while our bytes may still be in flight, progress in
    /// their delivery: a peer that sent its last byte long ago but is still taking our
    /// response over a slow or crowded path is not idle, and cutting the close short
    /// would reset the tail of that response (the close would end with unread input
    /// on its way). Progress is what the peer acknowledged: on the first look, any
    /// acknowledgement within the idle period; after that, more of our bytes
    /// acknowledged than at the previous look (a peer that only answers zero-window
    /// probes is not taking anything).
    pub(super) fn recheck_idle<S: Socket>(
        &mut self,
        io: &S,
        now: Nanos,
    ) -> io::Result<Option<CloseErrorKind>> {
        // Our bytes (and FIN) still on their way? Asked of the kernel: a close that does
        // not watch the acknowledgement yet (`Phase::Draining`) may well be delivered.
        let delivering =
            !self.acked() && sys::unacked(io.as_sock(), io.kind()).is_ok_and(|n| n > 0);
        if self.flags.has(Flags::BATCHED) {
            // Bytes below a batch may be waiting without a wakeup.
            let tcp = self.flags.has(Flags::TCP);
            match sys::discard(io.as_sock(), self.want(), tcp) {
                Ok(n) => match self.count(io, n) {
                    Some(DrainEnd::Eof) => {
                        self.on_peer_eof();
                        return Ok(None);
                    }
                    Some(DrainEnd::OverLimit) => return Ok(Some(CloseErrorKind::DrainLimit)),
                    None => {}
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        } else if !delivering {
            // Every byte woke the drain and ours are delivered: the silence is real.
            return Ok(Some(CloseErrorKind::IdleTimeout));
        }
        // The silence began with the peer's last sign of life, not with this look.
        if let Ok(Some(a)) = sys::activity(io.as_sock()) {
            if self.flags.has(Flags::BATCHED) {
                // Its last data may have waited below a batch, unseen until now.
                self.idle_deadline = now
                    .saturating_sub(nanos(a.since_last_data))
                    .saturating_add(self.idle_timeout);
            }
            if delivering {
                let first = self.acked_seen == NOT_SEEN;
                let progress = a.bytes_acked != 0 && (first || a.bytes_acked != self.acked_seen);
                self.acked_seen = a.bytes_acked;
                if progress {
                    let acked_at = now.saturating_sub(nanos(a.since_last_ack));
                    self.idle_deadline = self
                        .idle_deadline
                        .max(acked_at.saturating_add(self.idle_timeout));
                }
            }
        }
        if self.idle_deadline <= now {
            return Ok(Some(CloseErrorKind::IdleTimeout));
        }
        Ok(None)
    }

    /// Asks the socket its protocol, once: a stream socket of any protocol may be held
    /// in a `TcpStream`, and only TCP may be drained without a buffer (`MSG_TRUNC`).
    /// Asked only when the drain first has bytes to discard (copied, up to 4 KiB, until
    /// then): most closes read the peer's EOF at once and never need it.
    fn learn_protocol<S: Socket>(&mut self, io: &S) {
        if !self.flags.has(Flags::PROTOCOL_KNOWN) {
            self.flags.set(Flags::PROTOCOL_KNOWN);
            if io.kind() == SocketKind::Tcp && sys::is_tcp(io.as_sock()) {
                self.flags.set(Flags::TCP);
            }
        }
    }

    /// How much one discard asks for: one byte more than the limit allows, to see a
    /// peer that exceeds it.
    fn want(&self) -> usize {
        self.drain_limit
            .saturating_sub(self.drained)
            .saturating_add(1)
            .min(MAX_DISCARD) as usize
    }

    /// Counts `n` discarded bytes (0: the peer's EOF); how the drain ends, if it does.
    pub(super) fn count<S: Socket>(&mut self, io: &S, n: usize) -> Option<DrainEnd> {
        if n == 0 {
            return Some(DrainEnd::Eof);
        }
        let before = self.drained;
        self.drained = self.drained.saturating_add(n as u64);
        if self.drained > self.drain_limit {
            return Some(DrainEnd::OverLimit);
        }
        self.on_peer_data();
        if self.idle_timeout != super::NEVER {
            self.idle_deadline = self.now().saturating_add(self.idle_timeout);
        }
        if io.kind() == SocketKind::Tcp {
            // At most what the limit still allows, so that a batch never hides an excess:
            // near the limit the batch shrinks with the room left, then batching stops.
            let room = (self.drain_limit - self.drained).saturating_add(1);
            let crossed = before < BATCH_AFTER && self.drained >= BATCH_AFTER;
            let shrink = self.flags.has(Flags::BATCHED) && room < BATCH_MAX;
            if crossed || shrink {
                let batch = BATCH_MAX.min(room) as usize;
                match sys::wake_in_batches(io.as_sock(), batch) {
                    Ok(true) => self.flags.set(Flags::BATCHED),
                    Ok(false) => {
                        self.flags.take(Flags::BATCHED);
                    }
                    // The mark stays as it was; `recheck_idle` and the deadline still
                    // bound the wait.
                    Err(_) => {}
                }
            }
        }
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
