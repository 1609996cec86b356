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
pub(crate) const MAX_READS_PER_POLL: usize = 64;
/// Largest single discard request.
pub(crate) const MAX_DISCARD: u64 = 1 << 30;
/// Discarded bytes after which the peer counts as streaming and the drain goes to
/// batches: two of the smallest batches (`sys::wake_in_batches`). Smaller drains (the
/// few kilobytes of a request body cut short) never pay the two extra system calls;
/// past it, every batch saves a dozen wakeups or more. Over a 20 Mbit/s link a client
/// still uploading sends one 1448-byte segment per wakeup until batching starts: at
/// 256 KiB that was some 180 wakeups, each more than the calls it saves.
const BATCH_AFTER: u64 = 32 << 10;
/// The largest batch the drain waits for.
const BATCH_MAX: u64 = 512 << 10;

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
            match discard_ready(io, want, tcp) {
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

    /// Whether this close may take over a discard that wakes only for batches: its drain
    /// limit leaves room for the largest (a batch must never hide an excess).
    pub(crate) fn takes_batches(&self) -> bool {
        self.drain_limit >= BATCH_MAX
    }

    /// The stream is given back before the close ran (`GracefulIo::into_inner` after a
    /// shutdown): the kernel wakes readers for every byte again.
    pub(crate) fn unbatch<S: Socket>(&mut self, io: &S) {
        if self.flags.has(Flags::BATCHED) && sys::wake_in_batches(io.as_sock(), 1).is_ok() {
            self.flags.take(Flags::BATCHED);
        }
    }

    /// The idle deadline passed (`now`). Was the peer really silent? `Ok(None)`: it was
    /// not (or it closed), the close goes on; otherwise how the close ends.
    ///
    /// The idle bound measures the peer's silence once our bytes are delivered. While
    /// some are still in flight, the peer may be silent because it is taking them over
    /// a slow or crowded path (its acknowledgements are all it sends, and a segment
    /// lost to congestion silences even those for a retransmission timeout or more):
    /// cutting the close there would let the tail of its upload reset our response.
    /// Only the deadline bounds that part ([`CloseOptions::user_timeout`] bounds a
    /// peer that takes nothing).
    ///
    /// [`CloseOptions::user_timeout`]: crate::CloseOptions::user_timeout
    pub(super) fn recheck_idle<S: Socket>(
        &mut self,
        io: &S,
        now: Nanos,
    ) -> io::Result<Option<CloseErrorKind>> {
        // Asked of the kernel: a close that does not watch the acknowledgement yet
        // (`Phase::Draining`) may well be delivered.
        if !self.acked() && sys::unacked(io.as_sock(), io.kind()).is_ok_and(|n| n > 0) {
            self.idle_deadline = now.saturating_add(self.idle_timeout);
            return Ok(None);
        }
        if !self.flags.has(Flags::BATCHED) {
            // Every byte woke the drain: the silence is real.
            return Ok(Some(CloseErrorKind::IdleTimeout));
        }
        // Bytes below a batch may be waiting without a wakeup.
        let n = match sys::discard(io.as_sock(), self.want(), self.flags.has(Flags::TCP)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Ok(Some(CloseErrorKind::IdleTimeout))
            }
            Err(e) => return Err(e),
        };
        match self.count(io, n) {
            Some(DrainEnd::Eof) => {
                self.on_peer_eof();
                return Ok(None);
            }
            Some(DrainEnd::OverLimit) => return Ok(Some(CloseErrorKind::DrainLimit)),
            None => {}
        }
        // The silence began with the peer's last segment, not with this read.
        if let Ok(Some(a)) = sys::activity(io.as_sock()) {
            self.idle_deadline = now
                .saturating_sub(nanos(a.since_last_data))
                .saturating_add(self.idle_timeout);
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
            let batched = self.flags.has(Flags::BATCHED);
            // Whether the peer streams is judged on its whole input: what the connection
            // discarded before the close (an abandoned upload) counts from the close's
            // first discard on, which batches at once unless that discard's batching
            // was handed over.
            let prior = self.extra.as_ref().map_or(0, |e| e.discarded_before);
            let seen = if before == 0 && !batched {
                0
            } else {
                prior.saturating_add(before)
            };
            let total = prior.saturating_add(self.drained);
            // On `None` the mark stays as it was; `recheck_idle` and the deadline still
            // bound the wait.
            match rebatch(io.as_sock(), seen, total, room, batched) {
                Some(true) => self.flags.set(Flags::BATCHED),
                Some(false) => {
                    self.flags.take(Flags::BATCHED);
                }
                None => {}
            }
        }
        None
    }
}

/// Discards up to `want` bytes from a stream whose read readiness was just seen;
/// `Ok(0)` is the peer's EOF, `WouldBlock` an empty queue (the readiness cleared).
///
/// A TCP discard (`MSG_TRUNC`) takes everything queued: one that returns less than
/// `want` found the receive queue empty at its end, so its readiness is cleared as well,
/// as Tokio's own reads do after a short read, and the peer's next bytes wake the
/// reader again (edge-triggered epoll; a newer edge is never cleared). That saves the
/// call that would only find nothing, every wakeup.
pub(crate) fn discard_ready<S: Socket>(io: &S, want: usize, tcp: bool) -> io::Result<usize> {
    let mut got = 0;
    let res = io.try_io(Interest::READABLE, || {
        got = sys::discard(io.as_sock(), want, tcp)?;
        if tcp && got > 0 && got < want {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    });
    match res {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        other => other,
    }
}

/// Batched wakeups for a discard that went from `before` to `after` bytes of the
/// peer's input with `room` left under its limit: asked for once the peer counts as
/// streaming, and for smaller batches near the limit. The new batching state, or
/// `None` when nothing was asked or the kernel refused (the mark then stays as it was).
pub(crate) fn rebatch(
    sock: sys::Sock<'_>,
    before: u64,
    after: u64,
    room: u64,
    batched: bool,
) -> Option<bool> {
    let crossed = before < BATCH_AFTER && after >= BATCH_AFTER;
    let shrink = batched && room < BATCH_MAX;
    if !(crossed || shrink) {
        return None;
    }
    sys::wake_in_batches(sock, BATCH_MAX.min(room) as usize).ok()
}

/// What a close takes over from a discard of the connection's input that ran before it
/// ([`Closer::taking_over`]).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Handover {
    /// Bytes it discarded.
    pub(crate) discarded: u64,
    /// It left the kernel waking readers only for batches (`SO_RCVLOWAT`).
    pub(crate) batched: bool,
    /// Whether the socket is TCP (`MSG_TRUNC` works), if it found out.
    pub(crate) tcp: Option<bool>,
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

    use super::super::{Closer, Flags, Handover, Mode, Socket};
    use crate::options::Role;
    use crate::CloseOptions;

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
            let mut closer = Closer::new(opts, Mode::Close).taking_over(before);
            let close = std::future::poll_fn(|cx| ours.poll_closer(&mut closer, cx));
            // The close waits for the peer's EOF, which never comes.
            let waited = tokio::time::timeout(Duration::from_millis(300), close).await;
            assert!(waited.is_err(), "{waited:?}");
            assert_eq!(closer.drained, 4096);
            assert_eq!(closer.flags.has(Flags::BATCHED), batched, "{before:?}");
        }
    }
}
