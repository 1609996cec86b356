//! Linux and Android: `SIOCOUTQ`, `SIOCOUTQNSD`, `TCP_INFO` and `MSG_TRUNC` drains.
//!
//! The facts this file relies on, read from the kernel (net/ipv4/tcp.c, tcp_input.c,
//! tcp_output.c, net/unix/af_unix.c) and checked on loopback and over the namespace lab:
//!
//! - `SIOCOUTQ` on TCP is `write_seq - snd_una` (`tcp_ioctl`): bytes written and not yet
//!   acknowledged, sent or not. `tcp_send_fin` increments `write_seq`, so **our FIN
//!   counts as one byte** until it is acknowledged: after `shutdown(SHUT_WR)` the count
//!   reaches 0 only once the peer acknowledged all data and the FIN.
//! - A reset (`tcp_reset`) or a retransmission give-up (`tcp_write_err`) purges the write
//!   queue and moves the socket to `TCP_CLOSE` without touching `snd_una`: **`SIOCOUTQ`
//!   stays non-zero for good**. `TCP_INFO.tcpi_state == TCP_CLOSE` with bytes
//!   outstanding is therefore "gone"; `SO_ERROR` holds the cause (`sk_err`, or
//!   `sk_err_soft` such as `EHOSTUNREACH` after an ICMP unreachable).
//! - `SIOCOUTQNSD` is `write_seq - snd_nxt`: queued and not yet sent.
//! - `recv(fd, NULL, n, MSG_TRUNC)` on TCP discards up to `n` received bytes inside the
//!   kernel without copying them (tcp(7); `tcp_recvmsg_locked` skips the copy).
//! - On `AF_UNIX` streams `SIOCOUTQ` is `sk_wmem_alloc` (`unix_outq_len`): memory
//!   charged for our queued buffers (4 bytes written read as 768), released when the
//!   peer reads them — and also when the peer closes without reading, in which case
//!   `unix_release_sock` first sets `ECONNRESET` on our socket. It is not a byte count.
//! - When our FIN is acknowledged (`FIN_WAIT1` → `FIN_WAIT2`) `tcp_rcv_state_process`
//!   calls `sk_state_change`, which wakes every waiter: an edge-triggered epoll user
//!   gets an event at that instant. Acknowledgements of data wake only when the send
//!   buffer had filled (`SOCK_NOSPACE`, `sk_stream_write_space`).

use std::io;
use std::mem::{self, MaybeUninit};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::libc;

use super::{SendQueue, Sock, SocketKind};

/// Whether this platform can tell how many sent bytes the peer has not acknowledged.
pub(crate) const ACK_CHECK: bool = true;

/// epoll (edge-triggered, as Tokio registers it) signals the acknowledgement of our FIN
/// (`sk_state_change`).
pub(crate) const WRITE_EDGES: bool = true;

/// `TCP_CLOSE` in `tcp_info::tcpi_state`.
const TCP_CLOSE: u8 = 7;

// `SIOCOUTQ` has the number of `TIOCOUTQ` (0x5411 on x86, different on mips, powerpc
// and sparc); libc only names the latter, which carries the right value per arch.
nix::ioctl_read_bad!(ioctl_outq, libc::TIOCOUTQ, libc::c_int);
nix::ioctl_read_bad!(ioctl_outq_nsd, libc::SIOCOUTQNSD, libc::c_int);
nix::ioctl_read_bad!(ioctl_inq, libc::FIONREAD, libc::c_int);

/// `ioctl(SIOCOUTQ)`: TCP bytes not yet acknowledged (our FIN counts as one);
/// `AF_UNIX`: memory still charged for our queued buffers.
fn outq(fd: Sock<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // Safety: `fd` is a live socket for the borrow and `n` is a valid `c_int` out-pointer.
    unsafe { ioctl_outq(fd.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n.max(0) as usize)
}

/// Where our bytes stand: `SIOCOUTQ`, and whether the connection is closed (`closed`,
/// the caller's `TCP_INFO` reading, or `false` where it knows the connection alive)
/// only when bytes are outstanding. Our FIN counts in `SIOCOUTQ`: `fin_sent` is not
/// needed here.
pub(crate) fn send_queue(
    fd: Sock<'_>,
    kind: SocketKind,
    _fin_sent: bool,
    closed: impl FnOnce() -> io::Result<bool>,
) -> io::Result<SendQueue> {
    let tcp = kind == SocketKind::Tcp;
    judge_queue(|| outq(fd), || Ok(tcp && closed()?))
}

/// [`send_queue`] from its two readings. A socket still open in user space moves to
/// `TCP_CLOSE` when the connection enters `TIME_WAIT` (`tcp_time_wait` hands the
/// connection to a timewait socket and calls `tcp_done`): our FIN's acknowledgement can
/// thus come between the count and the state. Once closed the counters are final, so
/// the count is read again before the connection is called gone.
fn judge_queue(
    mut unacked: impl FnMut() -> io::Result<usize>,
    closed: impl FnOnce() -> io::Result<bool>,
) -> io::Result<SendQueue> {
    if unacked()? == 0 {
        return Ok(SendQueue::Empty);
    }
    if !closed()? {
        return Ok(SendQueue::Pending);
    }
    Ok(if unacked()? == 0 {
        SendQueue::Empty
    } else {
        SendQueue::Gone
    })
}

/// Bytes written and not yet acknowledged (TCP: `SIOCOUTQ`, our FIN counts as one).
/// `AF_UNIX` has no such byte count.
pub(crate) fn unacked(fd: Sock<'_>, kind: SocketKind) -> io::Result<usize> {
    match kind {
        SocketKind::Tcp => outq(fd),
        SocketKind::Unix => Err(super::unsupported(
            "AF_UNIX sockets have no count of unread bytes (SIOCOUTQ counts memory there)",
        )),
    }
}

/// `ioctl(FIONREAD)` (`SIOCINQ` on TCP): bytes received and not yet read (TCP only; the
/// peer's FIN is not a byte).
pub(crate) fn unread(fd: Sock<'_>, kind: SocketKind) -> io::Result<usize> {
    if kind != SocketKind::Tcp {
        return Err(super::unsupported(
            "only TCP sockets are counted for a reset that loses nothing",
        ));
    }
    let mut n: libc::c_int = 0;
    // Safety: as in `outq`.
    unsafe { ioctl_inq(fd.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n.max(0) as usize)
}

/// `ioctl(SIOCOUTQNSD)`: bytes queued but not yet sent (TCP only).
pub(crate) fn unsent(fd: Sock<'_>, kind: SocketKind) -> io::Result<usize> {
    if kind != SocketKind::Tcp {
        return Err(super::unsupported(
            "AF_UNIX sockets have no count of unsent bytes",
        ));
    }
    let mut n: libc::c_int = 0;
    // Safety: as in `outq`.
    unsafe { ioctl_outq_nsd(fd.as_raw_fd(), &mut n) }.map_err(io::Error::from)?;
    Ok(n.max(0) as usize)
}

/// Whether the socket really is TCP (`getsockopt(SO_PROTOCOL)`), whatever Rust type
/// holds it: socket2's safe conversions can put any stream socket in a `TcpStream`.
pub(crate) fn is_tcp(fd: Sock<'_>) -> bool {
    matches!(
        socket2::SockRef::from(&fd).protocol(),
        Ok(Some(socket2::Protocol::TCP))
    )
}

/// Discards up to `max` received bytes without blocking; `Ok(0)` is the peer's EOF.
///
/// On a socket that [`is_tcp`] (`tcp`, checked by the caller), `recv(fd, NULL, max,
/// MSG_TRUNC)` drops the data inside the kernel without copying it (tcp(7)). Other
/// stream sockets (`AF_UNIX`) have no such mode and copy into a small buffer on the
/// stack.
pub(crate) fn discard(fd: Sock<'_>, max: usize, tcp: bool) -> io::Result<usize> {
    if !tcp {
        return super::discard_by_copy(fd, max);
    }
    // Safety: the socket is TCP (`SO_PROTOCOL`, checked by the caller), which with
    // MSG_TRUNC never writes through the buffer pointer, so a null buffer of any
    // length is valid (the same call HAProxy's sock_drain makes).
    let n = syscall!(recv(
        fd.as_raw_fd(),
        std::ptr::null_mut(),
        max,
        libc::MSG_TRUNC | libc::MSG_DONTWAIT
    ))?;
    Ok(n as usize)
}

/// What `TCP_INFO` says of the connection: `tcpi_last_data_recv` (milliseconds since
/// the peer's last data segment, kept by the kernel in `icsk_ack.lrcvtime`, jiffy
/// resolution), `tcpi_rtt` (the smoothed round-trip time, microseconds) and whether
/// `tcpi_state` is `TCP_CLOSE`.
pub(crate) fn activity(fd: Sock<'_>) -> io::Result<Option<super::Activity>> {
    let info = tcp_info(fd)?;
    Ok(Some(super::Activity {
        since_last_data: Duration::from_millis(info.tcpi_last_data_recv.into()),
        rtt: Duration::from_micros(info.tcpi_rtt.into()),
        closed: info.tcpi_state == TCP_CLOSE,
    }))
}

/// `getsockopt(IPPROTO_TCP, TCP_INFO)`.
fn tcp_info(fd: Sock<'_>) -> io::Result<libc::tcp_info> {
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // Safety: `info` is valid for `len` bytes; the kernel writes at most `len` bytes and
    // stores how many it wrote in `len`.
    syscall!(getsockopt(
        fd.as_raw_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_INFO,
        info.as_mut_ptr().cast(),
        &mut len
    ))?;
    // Safety: the struct was zeroed, so fields an older kernel did not fill are 0, and
    // `tcp_info` is plain integers, for which every bit pattern is valid.
    Ok(unsafe { info.assume_init() })
}

/// `setsockopt(IPPROTO_TCP, TCP_USER_TIMEOUT)` in milliseconds (tcp(7)); the caller
/// rounded and clamped it ([`CloseOptions::user_timeout`](crate::CloseOptions::user_timeout)).
pub(crate) fn set_user_timeout(fd: Sock<'_>, ms: u32) -> io::Result<()> {
    let t = Duration::from_millis(ms.into());
    socket2::SockRef::from(&fd).set_tcp_user_timeout(Some(t))
}

/// `setsockopt(IPPROTO_TCP, TCP_CORK)`: while set, the kernel sends only full-sized
/// segments and holds a partial tail; clearing it hands the tail to the normal send
/// path at once (tcp(7)). Linux releases a cork by itself after 200 ms.
pub(crate) fn set_cork(fd: Sock<'_>, on: bool) -> io::Result<()> {
    socket2::SockRef::from(&fd).set_tcp_cork(on)
}

/// Smaller batches are not worth the system call. 16 KiB is about eleven full segments:
/// a client uploading over a slow link (whose receive buffer stays near `tcp_rmem`'s
/// 128 KiB default, a quarter of which is 32 KiB) then wakes the discard once per
/// batch instead of once per segment or two, which over a 20 Mbit/s link cut the
/// server's CPU per discarded 2 MB upload about threefold (`lab/benches/real_servers.py`).
const BATCH_MIN: usize = 16 << 10;

/// Asks the kernel to wake a reader of `fd` only once a batch of bytes is queued:
/// `SO_RCVLOWAT` set to `batch`, at most a quarter of the receive buffer. A batch under
/// 16 KiB turns batching off (`SO_RCVLOWAT` 1). Returns whether batching is on.
///
/// The kernel's side (net/ipv4/tcp.c, net/ipv4/tcp_input.c): `tcp_poll` reports
/// `EPOLLIN` only when `sk_rcvlowat` bytes are queued (`tcp_stream_is_readable`), but
/// always on the peer's FIN (`RCV_SHUTDOWN`) and with an error pending; `tcp_data_ready`
/// wakes the socket only under the same conditions, or when the receive window is down
/// to one MSS or memory is short (`tcp_epollin_ready`, `tcp_rmem_pressure`), so a
/// sender is never stalled by it. `tcp_set_rcvlowat` caps the value at half the
/// receive buffer and grows the buffer where it is not locked; the quarter kept here
/// stays below that cap on kernels that predate it. The drain's reads are
/// `MSG_DONTWAIT` and return whatever is queued, below the mark or not.
pub(crate) fn wake_in_batches(fd: Sock<'_>, batch: usize) -> io::Result<bool> {
    let rcvbuf = socket2::SockRef::from(&fd).recv_buffer_size()?;
    let mut batch = batch.min(rcvbuf / 4);
    if batch < BATCH_MIN {
        batch = 1;
    }
    let v = libc::c_int::try_from(batch).unwrap_or(libc::c_int::MAX);
    // Safety: `v` is a live c_int and its size is passed.
    syscall!(setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RCVLOWAT,
        (&v as *const libc::c_int).cast(),
        mem::size_of::<libc::c_int>() as libc::socklen_t
    ))?;
    Ok(batch > 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our FIN acknowledged between the count and the state (the socket just moved to
    /// `TCP_CLOSE` for `TIME_WAIT`): delivered, not a connection the kernel gave up.
    #[test]
    fn an_ack_between_the_two_readings_is_delivered() {
        let mut counts = [1, 0].into_iter();
        let q = judge_queue(|| Ok(counts.next().unwrap()), || Ok(true)).unwrap();
        assert!(q == SendQueue::Empty);
        let mut counts = [1, 1].into_iter();
        let q = judge_queue(|| Ok(counts.next().unwrap()), || Ok(true)).unwrap();
        assert!(q == SendQueue::Gone);
        let q = judge_queue(|| Ok(1), || Ok(false)).unwrap();
        assert!(q == SendQueue::Pending);
        let q = judge_queue(|| Ok(0), || panic!("no state needed")).unwrap();
        assert!(q == SendQueue::Empty);
    }
}
