//! Nagle control on loopback: `Corked`, `write_corked`, `TCP_NODELAY` and Nagle itself,
//! asserted through the kernel's own counters rather than through timing.
//!
//! What is counted:
//! - `tcpi_data_segs_out` (TCP_INFO): data segments the sender has put on the wire;
//! - `SIOCOUTQNSD` (`unsent_bytes`): bytes queued but not yet sent, i.e. held back by
//!   the cork or by Nagle;
//! - `SIOCOUTQ` (`unacked_bytes`): bytes not yet acknowledged, which tells whether the
//!   peer's ACK has arrived at the moment we look.
//!
//! Two kernel timers could blur a result if the test thread stalled on a loaded machine:
//! the cork's own 200 ms release, and the peer's delayed ACK (>= 40 ms). Checks that
//! depend on "nothing fired yet" verify that precondition (elapsed time, or
//! `unacked_bytes` still counting the first segment) and retry the attempt on a fresh
//! connection when it does not hold; they never pass without asserting.
#![cfg(any(target_os = "linux", target_os = "android"))]

#[path = "../support/tcp_info.rs"]
mod tcp_info;

mod common;

mod close;
mod errors;
mod segments;
mod uncork;
