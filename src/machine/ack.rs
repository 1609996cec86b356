//! The acknowledgement check: consume the pending wakeup, then ask the kernel whether
//! our data and FIN were acknowledged (`SIOCOUTQ` on Linux), and whether the
//! connection died under us.

use std::io;
use std::task::{Context, Poll};

use tokio::io::Interest;

use super::{Closer, Flags, Mode};
use crate::ext::sealed::Socket;
use crate::sys::{self, SendQueue, SocketKind};

impl Closer {
    /// Checks the send queue after consuming any pending wakeup, so that the kernel's
    /// next one (our FIN acknowledged, a reset) wakes this task.
    pub(super) fn poll_ack<S: Socket>(
        &mut self,
        io: &S,
        cx: &mut Context<'_>,
        owned: bool,
    ) -> io::Result<Ack> {
        if !sys::ACK_CHECK {
            return Ok(Ack::Unknown);
        }
        let closing = self.mode == Mode::Close;
        if closing && owned && self.peer_eof() {
            // A peer acknowledges what it received before it sends its own FIN: with its
            // EOF read, our FIN is almost surely acknowledged. Look before arming a
            // wakeup, which is then almost never needed.
            if let Some(ack) = self.queue_state(io)? {
                return Ok(ack);
            }
        }
        let mut edge_armed = false;
        if closing && sys::WRITE_EDGES {
            if owned {
                self.drop_watch();
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
            } else if let Some(watch) = self.watch() {
                edge_armed = consume_edges(|cx| watch.poll_edge(cx), cx, || ())?;
            }
        }
        // The wakeup is armed: an acknowledgement from now on wakes us, one before is
        // seen here.
        if let Some(ack) = self.queue_state(io)? {
            return Ok(ack);
        }
        if closing
            && !owned
            && !edge_armed
            && self.watch().is_none()
            && !self.flags.has(Flags::NO_WATCH)
            && io.kind() == SocketKind::Tcp
        {
            // A borrowed stream waiting for its FIN's acknowledgement: take the kernel's
            // wakeup from a registration of our own, then look again (the ACK may have
            // come before the registration).
            match sys::Watch::new(io.as_sock()) {
                Ok(watch) => {
                    self.set_watch(watch);
                    return self.poll_ack(io, cx, owned);
                }
                Err(_) => self.flags.set(Flags::NO_WATCH),
            }
        }
        Ok(Ack::Pending { edge_armed })
    }

    /// Asks the kernel where our bytes stand: `Some` ends the wait (all acknowledged,
    /// or the platform cannot tell), `None` while bytes are outstanding on a live
    /// connection; the error of a dead one.
    fn queue_state<S: Socket>(&mut self, io: &S) -> io::Result<Option<Ack>> {
        let sock = io.as_sock();
        let closing = self.mode == Mode::Close;
        // Right after our own shutdown succeeded the connection is known alive: no need
        // to ask whether it died (a reset from now on wakes us and we ask then).
        let alive = self.flags.take(Flags::FRESH);
        let state = sys::send_queue(sock, io.kind(), closing, alive)?;
        let state = match state {
            SendQueue::Empty if io.kind() == SocketKind::Tcp => return Ok(Some(Ack::Done)),
            // AF_UNIX: our queue is empty because the peer read it all, or because it
            // closed without reading and purged it, which leaves ECONNRESET on our side.
            SendQueue::Empty => match socket2::SockRef::from(&sock).take_error()? {
                Some(e) => return Err(e),
                None => return Ok(Some(Ack::Done)),
            },
            SendQueue::Unknown => return Ok(Some(Ack::Unknown)),
            other => other,
        };
        // Bytes outstanding. A dead connection never drains: its cause is in SO_ERROR.
        // AF_UNIX: a peer that closed without reading sets ECONNRESET on us.
        if state == SendQueue::Gone || io.kind() != SocketKind::Tcp {
            match socket2::SockRef::from(&sock).take_error()? {
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
