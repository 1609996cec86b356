//! What macOS and FreeBSD share: the BSD numbering of TCP states (netinet/tcp_fsm.h,
//! the same on both) and how a state and a send-buffer count make the answers of the
//! platform interface. Each platform file brings its two primitives: the state
//! (`TCP_CONNECTION_INFO` / `TCP_INFO`) and the bytes still in the send buffer
//! (`SO_NWRITE` / `FIONWRITE`, our FIN not counted).

use std::io;

use super::{SendQueue, Sock, SocketKind, TcpPhase};

/// `TCPS_CLOSED`.
const TCPS_CLOSED: u8 = 0;
/// `TCPS_FIN_WAIT_1`: our FIN sent, not yet acknowledged.
const TCPS_FIN_WAIT_1: u8 = 6;
/// `TCPS_CLOSING`: both FINs sent, ours not yet acknowledged.
const TCPS_CLOSING: u8 = 7;
/// `TCPS_LAST_ACK`: the peer closed first, our FIN not yet acknowledged.
const TCPS_LAST_ACK: u8 = 8;
/// `TCPS_FIN_WAIT_2`: our FIN acknowledged.
const TCPS_FIN_WAIT_2: u8 = 9;
/// `TCPS_TIME_WAIT`: our FIN acknowledged and the peer's received.
const TCPS_TIME_WAIT: u8 = 10;

/// The state of the connection (`None` once the kernel no longer keeps it).
pub(super) type StateFn = fn(Sock<'_>) -> io::Result<Option<u8>>;
/// Bytes still in the send buffer, our FIN not counted.
pub(super) type QueuedFn = fn(Sock<'_>) -> io::Result<usize>;

/// Where our bytes stand: the state first (a closed connection's count is meaningless),
/// then the send buffer.
pub(super) fn send_queue(
    fd: Sock<'_>,
    kind: SocketKind,
    fin_sent: bool,
    state: StateFn,
    queued: QueuedFn,
) -> io::Result<SendQueue> {
    if kind != SocketKind::Tcp {
        // AF_UNIX streams queue into the peer's receive buffer, not into ours: our
        // count says nothing about what the peer read.
        return Ok(SendQueue::Unknown);
    }
    let phase = match state(fd)? {
        // Without the connection (`TIME_WAIT` on older FreeBSD too): `SO_ERROR` decides.
        None | Some(TCPS_CLOSED) => TcpPhase::Closed,
        Some(TCPS_FIN_WAIT_2 | TCPS_TIME_WAIT) => TcpPhase::FinAcked,
        Some(_) => TcpPhase::Open,
    };
    super::judge(fd, phase, Some(queued(fd)?), fin_sent)
}

/// Bytes written and not yet acknowledged: the send buffer, plus one for our FIN while
/// it is sent and not acknowledged (as `SIOCOUTQ` counts it on Linux). Once the
/// connection is closed the count is lost: `NotConnected`.
pub(super) fn unacked(
    fd: Sock<'_>,
    kind: SocketKind,
    state: StateFn,
    queued: QueuedFn,
) -> io::Result<usize> {
    if kind != SocketKind::Tcp {
        return Err(super::unsupported(
            "AF_UNIX sockets have no count of unread bytes",
        ));
    }
    let fin = match state(fd)? {
        None | Some(TCPS_CLOSED) => {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the connection is closed: the count of unacknowledged bytes is gone",
            ))
        }
        Some(TCPS_FIN_WAIT_1 | TCPS_CLOSING | TCPS_LAST_ACK) => 1,
        Some(_) => 0,
    };
    Ok(queued(fd)?.saturating_add(fin))
}
