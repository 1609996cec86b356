//! Discarding what a peer sends, below both users of it: the close's drain
//! (`machine`) and the discard of input the application abandoned while it still
//! writes (`abandon`, driven by an HTTP adapter's decision).
//!
//! Both read and throw away (`MSG_TRUNC` on Linux TCP: no copy) from a stream whose
//! read readiness was just seen, and both go to batched wakeups (`SO_RCVLOWAT`) once the
//! peer counts as streaming; what one learnt, the other takes over ([`Handover`]).

use std::io;

use tokio::io::Interest;

use crate::socket::Socket;

pub(crate) mod abandon;

/// Reads per poll before a discard yields to the scheduler (on top of Tokio's budget).
pub(crate) const MAX_READS_PER_POLL: usize = 64;
/// Largest single discard request.
pub(crate) const MAX_DISCARD: u64 = 1 << 30;
/// Discarded bytes after which the peer counts as streaming and the drain goes to
/// batches: two of the smallest batches (`sys::wake_in_batches`). Smaller drains (the
/// few kilobytes of a request body cut short) never pay the two extra system calls;
/// past it, every batch saves a dozen wakeups or more. Over a 20 Mbit/s link a client
/// still uploading sends one 1448-byte segment per wakeup until batching starts: at
/// 256 KiB that was some 180 wakeups, each more than the calls it saves.
pub(crate) const BATCH_AFTER: u64 = 32 << 10;
/// The largest batch the drain waits for.
pub(crate) const BATCH_MAX: u64 = 512 << 10;

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
        got = io.discard(want, tcp)?;
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
pub(crate) fn rebatch<S: Socket>(
    io: &S,
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
    io.wake_in_batches(BATCH_MAX.min(room) as usize).ok()
}

/// What a close takes over from a discard of the connection's input that ran before it
/// (`Closer::taking_over`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Handover {
    /// Bytes it discarded.
    pub(crate) discarded: u64,
    /// It left the kernel waking readers only for batches (`SO_RCVLOWAT`).
    pub(crate) batched: bool,
    /// Whether the socket is TCP (`MSG_TRUNC` works), if it found out.
    pub(crate) tcp: Option<bool>,
}
