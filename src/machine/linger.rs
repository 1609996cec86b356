//! When an owned close may end: the peer's EOF, as [`PeerEof`] asks for it.

use std::io;
use std::time::Duration;

use super::drain::DrainEnd;
use super::Socket;
use super::{nanos, Closer, Flags, NEVER};
use crate::error::CloseErrorKind;
use crate::sys;
use crate::PeerEof;

/// How long a connection with nothing more to say is given to close its side after our
/// FIN was acknowledged ([`PeerEof::IfSending`]): four round trips, within these bounds.
/// A peer that answers our FIN (its own FIN, a TLS `close_notify`) does so within a round
/// trip or two; closing before that would reset its answer.
const GRACE_MIN: Duration = Duration::from_millis(10);
const GRACE_MAX: Duration = Duration::from_secs(1);

impl Closer {
    /// Whether an owned close may end now, the ACK and the drain having run; `Err` when
    /// the bytes its own look at the socket found exceed the drain limit.
    pub(super) fn finished<S: Socket>(
        &mut self,
        io: &S,
        unknown: bool,
    ) -> Result<bool, CloseErrorKind> {
        if unknown {
            // The peer's EOF is the only evidence this platform has.
            return Ok(self.peer_eof());
        }
        if !self.acked() {
            return Ok(false);
        }
        Ok(match self.peer_eof_policy {
            PeerEof::NotRequired => true,
            PeerEof::Required => self.peer_eof(),
            PeerEof::Briefly => {
                if self.peer_eof() {
                    return Ok(true);
                }
                if self.grace_until == NEVER {
                    let rtt = sys::activity(io.as_sock()).ok().flatten().map(|a| a.rtt);
                    self.grace_until = self.now().saturating_add(nanos(grace(rtt)));
                }
                self.now() >= self.grace_until
            }
            PeerEof::IfSending => {
                if self.peer_eof() {
                    return Ok(true);
                }
                if self.drained > 0 {
                    // The peer was still sending: drain to its EOF.
                    self.flags.set(Flags::LINGER);
                }
                if self.flags.has(Flags::LINGER) {
                    return Ok(false);
                }
                if self.grace_until != NEVER {
                    return Ok(self.now() >= self.grace_until);
                }
                // Nothing was drained and the drain found the queue empty, but its
                // readiness may lag the kernel: ask the socket itself.
                match sys::discard(io.as_sock(), 1, self.flags.has(Flags::TCP)) {
                    Ok(0) => {
                        self.flags.set(Flags::PEER_EOF);
                        true
                    }
                    Ok(n) => {
                        // Counted as the drain counts: the limit and the idle bound see it.
                        if let Some(DrainEnd::OverLimit) = self.count(io, n) {
                            return Err(CloseErrorKind::DrainLimit);
                        }
                        self.flags.set(Flags::LINGER);
                        false
                    }
                    // The queue is empty. Did the peer send anything since the close
                    // began? An uploading client whose last segment the application
                    // read a moment ago is still sending; an idle one last sent long
                    // before. (Where the platform cannot tell, the empty queue decides.)
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let activity = sys::activity(io.as_sock()).ok().flatten();
                        let quiet =
                            activity.is_none_or(|a| a.since_last_data > self.start.elapsed());
                        if !quiet {
                            self.flags.set(Flags::LINGER);
                            return Ok(false);
                        }
                        // A quiet peer: give it a few round trips to answer our FIN.
                        let grace = grace(activity.map(|a| a.rtt));
                        self.grace_until = self.now().saturating_add(nanos(grace));
                        false
                    }
                    // Let the drain meet the error and report it.
                    Err(_) => {
                        self.flags.set(Flags::LINGER);
                        false
                    }
                }
            }
        })
    }
}

/// Four round trips (where known), within [`GRACE_MIN`] and [`GRACE_MAX`].
fn grace(rtt: Option<Duration>) -> Duration {
    rtt.map_or(GRACE_MIN, |rtt| rtt.saturating_mul(4))
        .clamp(GRACE_MIN, GRACE_MAX)
}
