//! The contenders: every close strategy the figures compare, each re-implemented
//! here from the named system's source (never in the crate), run on the same
//! Tokio runtime.

use std::cell::RefCell;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, PeerEof};

use crate::support;

/// One way to close a connection. Each is our re-implementation of the named system's
/// behaviour, after the function named on its variant, run on the same Tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// `drop(stream)`: `close(2)` at once.
    Drop,
    /// Tokio `AsyncWriteExt::shutdown().await` then drop.
    TokioShutdown,
    /// Go net/http `closeWriteAndWait`: `CloseWrite`, sleep 500 ms, close.
    Go,
    /// nginx `lingering_close`: `shutdown(SHUT_WR)`, read into a buffer of this size
    /// until EOF, 5 s idle (`lingering_timeout`), 30 s cap (`lingering_time`).
    Nginx(usize),
    /// Envoy `FlushWriteAndDelay`: no half-close, wait up to 1 s for the peer's FIN (or
    /// RST), then close.
    Envoy,
    /// fbthrift `SocketDrainer`: poll `TCP_INFO.tcpi_unacked` every 50 ms until 0, 1 s
    /// cap, then close.
    Fbthrift,
    /// `SO_LINGER {1, 5 s}` then close, blocking the runtime thread.
    SoLinger,
    /// `graceful_close`, readiness-driven.
    Ours,
    /// Our close's steps without readiness wakeups: half-close, then every this many ms
    /// discard what arrived and read `SIOCOUTQ`, until EOF (if required) and 0 — what
    /// the event-driven design buys, re-implemented in the harness.
    OursPoll(u64),
    /// `graceful_close`, readiness-driven, with this safety-net `poll_interval` (ms).
    OursEv(u64),
    /// The floor of ACK detection: `shutdown(SHUT_WR)`, then await a write-readiness
    /// edge and read `SIOCOUTQ` until it is 0; nothing else (figure 3 only).
    MinimalEdge,
    /// The nginx-style close (4 KiB reads) plus one `SIOCOUTQ` after the EOF: the price
    /// of the ACK check alone (figure 8 only).
    NginxAck,
    /// The nginx-style close without any deadline (no timer: a silent peer would hold the
    /// descriptor for ever; figure 8 only, where the peer always closes): the price of
    /// having a deadline at all.
    NginxUnbounded,
}

use Strategy::*;

impl Strategy {
    pub(crate) fn name(self) -> String {
        match self {
            Drop => "plain drop".into(),
            TokioShutdown => "Tokio shutdown + drop".into(),
            Go => "Go closeWriteAndWait (500 ms)".into(),
            Nginx(4096) => "nginx lingering_close (4 KiB reads)".into(),
            Nginx(n) => format!("read into {} KiB buffer", n / 1024),
            Envoy => "Envoy delayed close (1 s)".into(),
            Fbthrift => "fbthrift SocketDrainer (50 ms poll)".into(),
            SoLinger => "SO_LINGER 5 s (blocking)".into(),
            Ours => "**ours** graceful_close".into(),
            OursPoll(ms) => format!("interval polling {ms} ms (our steps, no wakeups)"),
            OursEv(ms) => format!("ours, event-driven, poll_interval {ms} ms"),
            MinimalEdge => "floor: minimal edge-driven loop (shutdown, edge, SIOCOUTQ)".into(),
            NginxAck => "nginx-style + one SIOCOUTQ".into(),
            NginxUnbounded => "nginx-style without a deadline".into(),
        }
    }

    pub(crate) fn id(self) -> String {
        match self {
            Drop => "drop".into(),
            TokioShutdown => "tokio".into(),
            Go => "go".into(),
            Nginx(n) => format!("nginx{n}"),
            Envoy => "envoy".into(),
            Fbthrift => "fbthrift".into(),
            SoLinger => "solinger".into(),
            Ours => "ours".into(),
            OursPoll(ms) => format!("ourspoll{ms}"),
            OursEv(ms) => format!("oursev{ms}"),
            MinimalEdge => "minimaledge".into(),
            NginxAck => "nginxack".into(),
            NginxUnbounded => "nginxunbounded".into(),
        }
    }

    pub(crate) fn from_id(s: &str) -> Option<Strategy> {
        all_strategies()
            .into_iter()
            .chain([
                Nginx(65536),
                OursEv(1),
                OursEv(1000),
                MinimalEdge,
                NginxAck,
                NginxUnbounded,
            ])
            .find(|st| st.id() == s)
    }

    /// Whether one close sleeps by design (fewer runs are enough).
    pub(crate) fn is_slow(self) -> bool {
        matches!(self, Go | Envoy)
    }
}

/// `TGC_BENCH_ONLY=ours,go,...` restricts the contenders (ids as in `Strategy::id`).
pub(crate) fn selected(st: Strategy) -> bool {
    match std::env::var("TGC_BENCH_ONLY") {
        Ok(list) => list.split(',').any(|id| id.trim() == st.id()),
        Err(_) => true,
    }
}

pub(crate) fn all_strategies() -> Vec<Strategy> {
    let all = vec![
        Ours,
        OursPoll(1),
        OursPoll(10),
        OursPoll(50),
        Drop,
        TokioShutdown,
        Go,
        Nginx(4096),
        Envoy,
        Fbthrift,
        SoLinger,
    ];
    all.into_iter().filter(|&st| selected(st)).collect()
}

/// Knobs of our close for a figure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Knobs {
    pub(crate) require_peer_eof: bool,
    pub(crate) drain_limit: u64,
    pub(crate) timeout: Duration,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            require_peer_eof: true,
            drain_limit: CloseOptions::DEFAULT_DRAIN_LIMIT,
            timeout: Duration::from_secs(10),
        }
    }
}

fn our_options(st: Strategy, k: Knobs) -> CloseOptions {
    let o = CloseOptions::new(k.timeout)
        .peer_eof(if k.require_peer_eof {
            PeerEof::Required
        } else {
            PeerEof::NotRequired
        })
        .drain_limit(k.drain_limit);
    match st {
        OursEv(ms) => o.poll_interval(Duration::from_millis(ms)),
        _ => o,
    }
}

thread_local! {
    /// nginx reads into one static buffer (`ngx_http_lingering_close_handler` has it on
    /// its stack), so our version must not hold one per connection either.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 1 << 16]);
}

fn would_block<T>() -> std::io::Result<T> {
    Err(std::io::ErrorKind::WouldBlock.into())
}

/// What a close believed. `Some(true)`: it claims delivery; `None`: it does not say.
pub(crate) type Claim = Option<bool>;

/// Runs `st` on `s`; returns once the descriptor is released.
pub(crate) async fn close(st: Strategy, s: TcpStream, k: Knobs) -> Claim {
    match st {
        Drop => {
            drop(s);
            None
        }
        TokioShutdown => {
            tokio_shutdown(s).await;
            None
        }
        Go => {
            go(s).await;
            None
        }
        Nginx(buf) => {
            nginx(s, buf).await;
            None
        }
        Envoy => {
            envoy(s).await;
            None
        }
        Fbthrift => Some(fbthrift(s).await),
        MinimalEdge => Some(minimal_edge(s).await),
        NginxAck => {
            nginx_then(s, 4096, true, |s| {
                let _ = s.unacked_bytes();
            })
            .await;
            None
        }
        NginxUnbounded => {
            nginx_then(s, 4096, false, |_| ()).await;
            None
        }
        SoLinger => {
            so_linger(s);
            None
        }
        Ours | OursEv(_) => Some(s.graceful_close_with(our_options(st, k)).await.is_ok()),
        OursPoll(ms) => Some(interval_polling(s, ms, k).await),
    }
}

/// Spawns the close of `st` as its own task, the future of that strategy alone (not
/// the `close` dispatcher, whose state is the largest of all strategies).
pub(crate) fn spawn_close(st: Strategy, s: TcpStream, k: Knobs) -> tokio::task::JoinHandle<()> {
    fn spawn<F>(f: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future + Send + 'static,
    {
        // Not `async move { f.await; }`: rustc would keep two copies of `f`.
        let f = Discard { f, polled: false };
        FUTURE_SIZE.store(std::mem::size_of_val(&f), Ordering::Relaxed);
        tokio::spawn(f)
    }
    match st {
        Drop => spawn(async move { drop(s) }),
        TokioShutdown => spawn(tokio_shutdown(s)),
        Go => spawn(go(s)),
        Nginx(buf) => spawn(nginx(s, buf)),
        Envoy => spawn(envoy(s)),
        Fbthrift => spawn(fbthrift(s)),
        SoLinger => spawn(async move { so_linger(s) }),
        Ours | OursEv(_) => spawn(s.graceful_close_with(our_options(st, k))),
        OursPoll(ms) => spawn(interval_polling(s, ms, k)),
        MinimalEdge => spawn(minimal_edge(s)),
        NginxAck => spawn(nginx_then(s, 4096, true, |s| {
            let _ = s.unacked_bytes();
        })),
        NginxUnbounded => spawn(nginx_then(s, 4096, false, |_| ())),
    }
}

pin_project_lite::pin_project! {
    /// Drops a future's output, adding nothing to its size.
    struct Discard<F> {
        #[pin]
        f: F,
        polled: bool,
    }
}

impl<F: std::future::Future> std::future::Future for Discard<F> {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = self.project();
        if !*this.polled {
            *this.polled = true;
            FIRST_POLLS.fetch_add(1, Ordering::Relaxed);
        }
        this.f.poll(cx).map(|_| ())
    }
}

/// How many futures spawned by `spawn_close` have been polled at least once.
pub(crate) static FIRST_POLLS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// `size_of` of the last future `spawn_close` spawned.
pub(crate) static FUTURE_SIZE: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Tokio: `AsyncWriteExt::shutdown().await`, then drop.
async fn tokio_shutdown(mut s: TcpStream) {
    let _ = s.shutdown().await;
    drop(s);
}

/// Go net/http `closeWriteAndWait`: `CloseWrite()`, `time.Sleep(rstAvoidanceDelay)`.
async fn go(s: TcpStream) {
    let _ = SockRef::from(&s).shutdown(Shutdown::Write);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(s);
}

/// Envoy `FlushWriteAndDelay`: no FIN until the final close; wait for the peer's FIN or
/// RST (EPOLLRDHUP / EPOLLERR), at most `delayed_close_timeout` = 1 s.
async fn envoy(s: TcpStream) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, s.ready(Interest::READABLE)).await {
            Ok(Ok(r)) if !(r.is_read_closed() || r.is_error()) => {
                // Data, not a FIN: not read; wait for the next edge.
                let _ = s.try_io(Interest::READABLE, would_block::<()>);
            }
            _ => break,
        }
    }
    drop(s);
}

/// fbthrift `SocketDrainer`: `TCP_INFO.tcpi_unacked == 0`, checked now and then every
/// 50 ms, for at most 1 s. Returns whether it saw 0 (its claim of delivery).
async fn fbthrift(s: TcpStream) -> bool {
    let start = Instant::now();
    let mut drained = false;
    loop {
        let unacked = support::tcp_info(s.as_raw_fd())
            .map(|i| i.tcpi_unacked)
            .unwrap_or(0);
        if unacked == 0 {
            drained = true;
            break;
        }
        if start.elapsed() >= Duration::from_secs(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(s);
    drained
}

/// Interval polling: our close's steps with no readiness wakeup at all. Returns whether
/// it confirmed delivery before the deadline.
async fn interval_polling(s: TcpStream, ms: u64, k: Knobs) -> bool {
    let _ = SockRef::from(&s).shutdown(Shutdown::Write);
    let deadline = tokio::time::Instant::now() + k.timeout;
    let fd = s.as_raw_fd();
    let (mut eof, mut drained) = (!k.require_peer_eof, 0u64);
    let done = loop {
        while !eof {
            // Safety: MSG_TRUNC on TCP never writes through the buffer pointer.
            let n = unsafe {
                libc::recv(
                    fd,
                    std::ptr::null_mut(),
                    1 << 30,
                    libc::MSG_TRUNC | libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => eof = true,
                n if n > 0 => {
                    drained += n as u64;
                    if drained > k.drain_limit {
                        break;
                    }
                }
                _ => break, // EAGAIN, or an error the next look shows
            }
        }
        if eof && support::outq(fd).is_ok_and(|n| n == 0) {
            break true;
        }
        if drained > k.drain_limit || tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
    };
    drop(s);
    done
}

/// The floor: half-close, then wait for write-readiness edges and read `SIOCOUTQ` after
/// each until it is 0 (10 s at most). Returns whether it saw 0.
async fn minimal_edge(s: TcpStream) -> bool {
    let _ = SockRef::from(&s).shutdown(Shutdown::Write);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let fd = s.as_raw_fd();
    let seen = loop {
        // Consume the pending edge, then look: the next edge wakes us.
        let _ = s.try_io(Interest::WRITABLE, would_block::<()>);
        if support::outq(fd).map_or(true, |n| n == 0) {
            break true;
        }
        if tokio::time::timeout_at(deadline, s.writable())
            .await
            .is_err()
        {
            break false;
        }
    };
    drop(s);
    seen
}

/// `SO_LINGER {1, 5}` and close: `close(2)` sleeps in the kernel on the runtime thread.
fn so_linger(s: TcpStream) {
    let _ = SockRef::from(&s).set_linger(Some(Duration::from_secs(5)));
    drop(s);
}

/// nginx `lingering_close`: half-close, then read and throw away until EOF. Mirrors
/// `ngx_unix_recv` with EPOLLRDHUP: a short read ends the round without another
/// `recv` (readiness is dropped), a full buffer reads again.
async fn nginx(s: TcpStream, buf: usize) {
    nginx_then(s, buf, true, |_| ()).await
}

/// [`nginx`], with `last` run on the stream after the drain, before the drop; without
/// `bounded`, with no deadline and so no timer at all.
async fn nginx_then(s: TcpStream, buf: usize, bounded: bool, last: impl FnOnce(&TcpStream)) {
    let _ = SockRef::from(&s).shutdown(Shutdown::Write);
    let start = bounded.then(tokio::time::Instant::now);
    let (cap, idle) = (Duration::from_secs(30), Duration::from_secs(5));
    'outer: loop {
        let ready = match start {
            Some(start) => {
                let left = cap.saturating_sub(start.elapsed());
                if left.is_zero() {
                    break;
                }
                tokio::time::timeout(idle.min(left), s.readable())
                    .await
                    .ok()
            }
            None => Some(s.readable().await),
        };
        if !matches!(ready, Some(Ok(()))) {
            break;
        }
        loop {
            let r = SCRATCH.with(|b| s.try_read(&mut b.borrow_mut()[..buf]));
            match r {
                Ok(0) => break 'outer,
                Ok(n) if n < buf => {
                    // rev->ready = 0 without another recv.
                    let _ = s.try_io(Interest::READABLE, would_block::<()>);
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break 'outer,
            }
        }
    }
    last(&s);
    drop(s);
}
