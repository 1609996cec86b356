//! Input the application gave up on, discarded while an answer is written:
//! [`InputHandle`] and [`Abandoned`].
//!
//! hyper stops reading a connection once the handler dropped the request's body. A
//! client that sends its whole upload before it reads (Python's `requests`, browsers
//! over HTTP/1.1) then cannot take an answer larger than the kernel buffers between the
//! two hosts: each side waits in its write on the other. nginx discards the upload while
//! it writes such an answer (`ngx_http_discard_request_body`). Here the layer that sees
//! the early answer ([`AnnounceCloseLayer`](crate::axum::AnnounceCloseLayer)) marks the
//! connection's input abandoned through an [`InputHandle`]; from then on a write of the
//! `GracefulIo` that finds the socket full discards what the client
//! sent (`MSG_TRUNC` on Linux: no copy) and is woken by the client's next bytes as well
//! as by room to write. No task, no channel, no copy through hyper's buffers.
//!
//! Only input nobody will read may be discarded: the layer marks it only for an answer
//! that says `Connection: close` to a request whose body was not read to its end, after
//! which hyper reads nothing more on that connection.

use std::io;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::{discard_ready, rebatch, Handover, MAX_DISCARD, MAX_READS_PER_POLL};
use crate::socket::Socket;

/// How much of an abandoned input may be discarded, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiscardBounds {
    /// The most bytes discarded; past them the input is left unread.
    pub(crate) limit: u64,
    /// How long the discard may last from its first byte.
    pub(crate) timeout: Duration,
}

/// A connection's "input abandoned" mark, shared by the `GracefulIo`
/// and the requests it serves (in their extensions).
#[derive(Debug, Clone, Default)]
pub(crate) struct InputHandle(Arc<OnceLock<DiscardBounds>>);

impl InputHandle {
    /// Marks the connection's input abandoned: nobody will read it, writes that find
    /// the socket full may discard it within `bounds`. The first mark counts.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn abandon(&self, bounds: DiscardBounds) {
        let _ = self.0.set(bounds);
    }

    fn bounds(&self) -> Option<DiscardBounds> {
        self.0.get().copied()
    }
}

/// The `GracefulIo`'s side, made when a request first asks for the
/// handle (boxed: a connection that never does pays one word or two).
#[derive(Debug, Default)]
pub(crate) struct Abandoned(OnceLock<Box<Watch>>);

/// The handle and the discard's progress.
#[derive(Debug, Default)]
struct Watch {
    handle: InputHandle,
    progress: Option<Progress>,
}

/// How a discard stands.
#[derive(Debug)]
struct Progress {
    /// When the first discard ran.
    started: Instant,
    discarded: u64,
    /// `MSG_TRUNC` may be used (a TCP socket).
    tcp: bool,
    /// The discard ended (the client's EOF, an error, a bound).
    stopped: bool,
    /// The kernel wakes us only once a batch is queued (`SO_RCVLOWAT`), as the close's
    /// drain does for a client that streams.
    batched: bool,
}

impl Abandoned {
    /// The handle the connection's requests carry.
    pub(crate) fn handle(&self) -> InputHandle {
        self.0.get_or_init(Box::default).handle.clone()
    }

    /// A write found the socket full (it returned `Pending`, its waker registered for
    /// room to write). If the input was abandoned, discards what the client sent and
    /// registers the same waker for its next bytes: the client can only read our answer
    /// once it sent its own.
    #[inline]
    pub(crate) fn on_write_blocked<S: Socket>(&mut self, io: &S, cx: &mut Context<'_>) {
        let Some(watch) = self.0.get_mut() else {
            return;
        };
        let Some(bounds) = watch.handle.bounds() else {
            return;
        };
        let progress = watch.progress.get_or_insert_with(|| Progress {
            started: Instant::now(),
            discarded: 0,
            tcp: io.is_tcp(),
            stopped: false,
            batched: false,
        });
        if !progress.stopped {
            if let Err(why) = progress.discard(io, cx, bounds) {
                progress.stopped = true;
                progress.unbatch(io);
                tracing::debug!(
                    discarded = progress.discarded,
                    "early answer: stopped discarding the abandoned upload: {why}"
                );
            }
        }
    }

    /// The bytes discarded so far.
    pub(crate) fn discarded(&self) -> u64 {
        self.0
            .get()
            .and_then(|w| w.progress.as_ref())
            .map_or(0, |p| p.discarded)
    }

    /// The close takes the discard over: the bytes discarded so far, whether the
    /// kernel still wakes readers only for batches, and whether the socket is TCP. If
    /// the close `takes_batches`, that mark is now the close's, which discards on with
    /// it (instead of clearing it here and setting it again at its first discard: two
    /// `setsockopt` and a `getsockopt` per handover); otherwise it is cleared.
    pub(crate) fn hand_over<S: Socket>(&mut self, io: &S, takes_batches: bool) -> Handover {
        let Some(progress) = self.0.get_mut().and_then(|w| w.progress.as_mut()) else {
            return Handover::default();
        };
        progress.stopped = true;
        if !takes_batches {
            progress.unbatch(io);
        }
        Handover {
            discarded: progress.discarded,
            batched: std::mem::take(&mut progress.batched),
            tcp: Some(progress.tcp),
        }
    }
}

impl Progress {
    /// Discards what is queued; `Err`: the discard ended, and why.
    fn discard<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
        bounds: DiscardBounds,
    ) -> Result<(), &'static str> {
        if self.started.elapsed() >= bounds.timeout {
            return Err("the discard timed out");
        }
        for _ in 0..MAX_READS_PER_POLL {
            let want = bounds.limit.saturating_sub(self.discarded).min(MAX_DISCARD) as usize;
            if want == 0 {
                return Err("the discard limit was reached");
            }
            match io.poll_read_ready(cx) {
                // Woken by the client's next bytes.
                Poll::Pending => return Ok(()),
                Poll::Ready(Err(_)) => return Err("the connection failed"),
                Poll::Ready(Ok(())) => {}
            }
            match discard_ready(io, want, self.tcp) {
                Ok(0) => return Err("the client's upload ended"),
                Ok(n) => self.count(io, n, bounds.limit),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err("the connection failed"),
            }
        }
        // A client that keeps the socket full: give other tasks a turn.
        cx.waker().wake_by_ref();
        Ok(())
    }

    /// Counts `n` discarded bytes. A client that streams is then discarded in batches,
    /// never larger than what the limit still allows.
    fn count<S: Socket>(&mut self, io: &S, n: usize, limit: u64) {
        let before = self.discarded;
        self.discarded = self.discarded.saturating_add(n as u64);
        if !self.tcp {
            return;
        }
        let room = limit.saturating_sub(self.discarded);
        // On `None` the mark stays as it was: the bytes below it still wake us when the
        // client's window closes (see `sys::wake_in_batches`).
        if let Some(on) = rebatch(io, before, self.discarded, room, self.batched) {
            self.batched = on;
        }
    }

    fn unbatch<S: Socket>(&mut self, io: &S) {
        if self.batched && io.wake_in_batches(1).is_ok() {
            self.batched = false;
        }
    }
}
