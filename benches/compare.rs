//! Side-by-side benchmarks: `graceful_close` against the close strategies of nginx, Go,
//! Envoy, fbthrift and Tokio, each re-implemented here as faithfully as the harness
//! allows (never in the crate).
//!
//! ```text
//! cargo bench --bench compare                      # full mode (README numbers)
//! TGC_BENCH_QUICK=1 cargo bench --bench compare    # quick mode, < 1 min
//! TGC_BENCH_FIGS=1,3 cargo bench --bench compare   # only some figures
//! ```
//!
//! Prints one markdown table per figure. Every wait has a deadline; every number in a
//! table comes from this one run, and every ratio is against ours from the same run.

mod support;

#[path = "../tests/support/lab.rs"]
mod lab;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, GracefulClose};

use support::{fmt_secs, ratio, table, Rng, Samples};

// ===== a counting allocator, for the bytes held by a pending close =====

struct Counting;

static LIVE_HEAP: AtomicIsize = AtomicIsize::new(0);

// Safety: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // Safety: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE_HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // Safety: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // Safety: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_HEAP.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // Safety: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live_heap() -> isize {
    LIVE_HEAP.load(Ordering::Relaxed)
}

// ===== the contenders =====

/// One way to close a connection. Each is our re-implementation of the named system's
/// behaviour (see /work/shared/reference/anchors.md), run on the same Tokio runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
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
    /// `graceful_close` with readiness wakeups off, polling every this many ms.
    OursPoll(u64),
    /// `graceful_close`, readiness-driven, with this safety-net `poll_interval` (ms).
    OursEv(u64),
}

use Strategy::*;

impl Strategy {
    fn name(self) -> String {
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
            OursPoll(ms) => format!("ours, interval-only {ms} ms"),
            OursEv(ms) => format!("ours, event-driven, poll_interval {ms} ms"),
        }
    }

    fn id(self) -> String {
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
        }
    }

    fn from_id(s: &str) -> Option<Strategy> {
        all_strategies()
            .into_iter()
            .chain([Nginx(65536), OursEv(1), OursEv(1000)])
            .find(|st| st.id() == s)
    }

    /// Whether one close sleeps by design (fewer runs are enough).
    fn is_slow(self) -> bool {
        matches!(self, Go | Envoy)
    }
}

/// `TGC_BENCH_ONLY=ours,go,...` restricts the contenders (ids as in `Strategy::id`).
fn selected(st: Strategy) -> bool {
    match std::env::var("TGC_BENCH_ONLY") {
        Ok(list) => list.split(',').any(|id| id.trim() == st.id()),
        Err(_) => true,
    }
}

fn all_strategies() -> Vec<Strategy> {
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
struct Knobs {
    require_peer_eof: bool,
    drain_limit: u64,
    timeout: Duration,
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
        .require_peer_eof(k.require_peer_eof)
        .drain_limit(k.drain_limit);
    match st {
        OursPoll(ms) => o
            .event_wakeups(false)
            .poll_interval(Duration::from_millis(ms)),
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
type Claim = Option<bool>;

/// Runs `st` on `s`; returns once the descriptor is released.
async fn close(st: Strategy, s: TcpStream, k: Knobs) -> Claim {
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
        SoLinger => {
            so_linger(s);
            None
        }
        Ours | OursPoll(_) | OursEv(_) => {
            Some(s.graceful_close_with(our_options(st, k)).await.is_ok())
        }
    }
}

/// Spawns the close of `st` as its own task, the future of that strategy alone (not
/// the `close` dispatcher, whose state is the largest of all strategies).
fn spawn_close(st: Strategy, s: TcpStream, k: Knobs) -> tokio::task::JoinHandle<()> {
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
        Ours | OursPoll(_) | OursEv(_) => spawn(s.graceful_close_with(our_options(st, k))),
    }
}

pin_project_lite::pin_project! {
    /// Records when a future is polled (debugging figure 3).
    struct Traced<F> {
        #[pin]
        f: F,
        polls: Arc<Mutex<Vec<f64>>>,
        t0: Instant,
    }
}

impl<F: std::future::Future> std::future::Future for Traced<F> {
    type Output = F::Output;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let t = this.t0.elapsed().as_secs_f64() * 1e3;
        this.polls
            .lock()
            .unwrap()
            .push((t * 1000.0).round() / 1000.0);
        this.f.poll(cx)
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
static FIRST_POLLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `size_of` of the last future `spawn_close` spawned.
static FUTURE_SIZE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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

/// `SO_LINGER {1, 5}` and close: `close(2)` sleeps in the kernel on the runtime thread.
fn so_linger(s: TcpStream) {
    let _ = SockRef::from(&s).set_linger(Some(Duration::from_secs(5)));
    drop(s);
}

/// nginx `lingering_close`: half-close, then read and throw away until EOF. Mirrors
/// `ngx_unix_recv` with EPOLLRDHUP: a short read ends the round without another
/// `recv` (readiness is dropped), a full buffer reads again.
async fn nginx(s: TcpStream, buf: usize) {
    let _ = SockRef::from(&s).shutdown(Shutdown::Write);
    let start = tokio::time::Instant::now();
    let (cap, idle) = (Duration::from_secs(30), Duration::from_secs(5));
    'outer: loop {
        let left = cap.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(idle.min(left), s.readable()).await {
            Ok(Ok(())) => {}
            _ => break,
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
    drop(s);
}

// ===== harness plumbing =====

#[derive(Debug, Clone)]
struct Cfg {
    quick: bool,
    figs: Vec<u32>,
}

impl Cfg {
    fn n(&self, quick: usize, full: usize) -> usize {
        if self.quick {
            quick
        } else {
            full
        }
    }
    fn runs_for(&self, st: Strategy, quick: usize, full: usize) -> usize {
        if st.is_slow() {
            self.n(2.min(quick), 10.min(full))
        } else {
            self.n(quick, full)
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn listener_on(ip: &str, rcvbuf: Option<usize>) -> std::net::TcpListener {
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_reuse_address(true).unwrap();
    if let Some(b) = rcvbuf {
        sock.set_recv_buffer_size(b).unwrap();
    }
    sock.bind(&addr.into()).unwrap();
    sock.listen(4096).unwrap();
    sock.into()
}

fn listener(rcvbuf: Option<usize>) -> (std::net::TcpListener, SocketAddr) {
    let l = listener_on("127.0.0.1", rcvbuf);
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Accepts one connection within 10 s.
fn accept(l: &std::net::TcpListener) -> std::net::TcpStream {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "accept timed out");
                thread::sleep(Duration::from_micros(50));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// How a peer's read-to-end ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    Reset,
    Other,
}

/// Reads until EOF, an error, or `limit` bytes; returns the count and how it ended.
fn read_to_end(p: &mut std::net::TcpStream, limit: usize) -> (usize, End) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    while n < limit {
        let want = buf.len().min(limit - n);
        match p.read(&mut buf[..want]) {
            Ok(0) => return (n, End::Eof),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (n, End::Reset),
            Err(_) => return (n, End::Other),
        }
    }
    (n, End::Eof)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ===== figure 1: data delivered (the seed experiment) =====

const GREETING: &[u8] = b"220 Welcome\r\n";
const SEED_BYTES: usize = 1_000_000;

struct SeedRun {
    received: usize,
    end: End,
    close: Duration,
}

/// How fast the seed peer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// As fast as it can, 64 KiB reads, on its own thread.
    Fast,
    /// A peer that does work per chunk: 16 KiB, then 1 ms of "processing" (~16 MB/s).
    Busy,
}

fn seed_run(rt: &tokio::runtime::Runtime, st: Strategy, reader: Reader) -> SeedRun {
    let (l, addr) = listener(None);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut p = accept(&l);
        let _ = p.write_all(GREETING);
        let r = match reader {
            Reader::Fast => read_to_end(&mut p, usize::MAX),
            Reader::Busy => {
                let mut n = 0;
                loop {
                    match read_to_end(&mut p, 16 * 1024) {
                        (k, End::Eof) if k == 16 * 1024 => n += k,
                        (k, end) => break (n + k, end),
                    }
                    thread::sleep(Duration::from_millis(1));
                }
            }
        };
        let _ = tx.send(r);
    });
    let close_time = rt.block_on(async {
        let mut c = connect(addr).await;
        // The greeting is there, unread, as in the seed experiment.
        let _ = tokio::time::timeout(Duration::from_secs(5), c.ready(Interest::READABLE)).await;
        let payload = vec![b'x'; SEED_BYTES];
        c.write_all(&payload).await.expect("write");
        let t = Instant::now();
        close(st, c, Knobs::default()).await;
        t.elapsed()
    });
    let (received, end) = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or((0, End::Other));
    SeedRun {
        received,
        end,
        close: close_time,
    }
}

fn fig1(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let mut rows = Vec::new();
    let mut ours_lat = f64::NAN;
    for st in all_strategies() {
        let n = cfg.runs_for(st, 5, 40);
        let mut row = vec![st.name(), n.to_string()];
        for reader in [Reader::Fast, Reader::Busy] {
            let runs: Vec<SeedRun> = (0..n).map(|_| seed_run(rt, st, reader)).collect();
            let lost = Samples::new(
                runs.iter()
                    .map(|r| (SEED_BYTES - r.received.min(SEED_BYTES)) as f64)
                    .collect(),
            );
            let lossy = lost.count_where(|x| x > 0.0);
            let resets = runs.iter().filter(|r| r.end != End::Eof).count();
            row.extend([
                format!("{lossy}/{n}"),
                format!("{:.0} / {:.0}", lost.median(), lost.p99()),
                format!("{:.0}", lost.sum() / n as f64),
                format!("{resets}/{n}"),
            ]);
            if reader == Reader::Busy {
                let lat = Samples::new(runs.iter().map(|r| secs(r.close)).collect());
                if st == Ours {
                    ours_lat = lat.median();
                }
                row.extend([fmt_secs(lat.median()), ratio(lat.median(), ours_lat)]);
            }
        }
        rows.push(row);
    }
    table(
        "Figure 1 — data delivered: the seed experiment (unread greeting, 1,000,000 bytes written, close)",
        &[
            "strategy",
            "runs",
            "fast peer: runs losing data",
            "bytes lost median / p99",
            "mean",
            "peer saw RST",
            "busy peer: runs losing data",
            "bytes lost median / p99",
            "mean",
            "peer saw RST",
            "close time median (busy)",
            "vs ours",
        ],
        &rows,
        &["Bytes lost = 1,000,000 − bytes the peer application read. Fast peer: reads 64 KiB at a time as fast as it can on its own thread (the best case for every contender). Busy peer: reads 16 KiB, then spends 1 ms on it (~16 MB/s). \"Peer saw RST\" counts reads that ended in ECONNRESET instead of EOF, even when no byte was lost.".into()],
    );
}

// ===== figure 2: close latency =====

const RESPONSE: usize = 64 * 1024;

/// Where the two ends of a connection live.
#[derive(Clone, Copy)]
enum Net<'a> {
    /// 127.0.0.1.
    Loopback,
    /// Two namespaces joined by a tbf-shaped veth (tests/support/lab.rs): we are side
    /// A, the peer side B.
    Lab(&'a lab::Lab),
}

impl Net<'_> {
    /// A listener for the peer.
    fn listener(self, rcvbuf: Option<usize>) -> std::net::TcpListener {
        match self {
            Net::Loopback => listener_on("127.0.0.1", rcvbuf),
            Net::Lab(l) => l.run_in(lab::Side::B, || {
                listener_on(&lab::Side::B.addr().to_string(), rcvbuf)
            }),
        }
    }

    /// Our end, connected to `addr`.
    async fn connect(self, addr: SocketAddr) -> TcpStream {
        match self {
            Net::Loopback => connect(addr).await,
            Net::Lab(l) => {
                tokio::time::timeout(Duration::from_secs(10), l.connect(lab::Side::A, addr))
                    .await
                    .expect("lab connect timed out")
                    .expect("lab connect")
            }
        }
    }
}

/// The lab link for figures 2 and 3, or why there is none.
fn build_lab() -> Result<lab::Lab, String> {
    if !lab::is_root() {
        return Err("not measured: the lab needs root".into());
    }
    lab::Lab::build(lab::LabConfig::new()).map_err(|e| format!("not measured: {e}"))
}

const LAB_DESC: &str = "lab link = two network namespaces joined by a veth shaped with tbf to 8 Mbit/s each way, 256 KiB queue (tests/support/lab.rs)";

/// One close on a peer that reads the response (known length), then closes: time from
/// the start of the close to the descriptor's release.
fn latency_run(rt: &tokio::runtime::Runtime, st: Strategy, net: Net<'_>) -> Duration {
    let l = net.listener(None);
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut p = accept(&l);
        let r = read_to_end(&mut p, RESPONSE);
        drop(p);
        let _ = tx.send(r);
    });
    let d = rt.block_on(async {
        let mut c = net.connect(addr).await;
        c.write_all(&vec![b'r'; RESPONSE]).await.expect("write");
        let t = Instant::now();
        close(st, c, Knobs::default()).await;
        t.elapsed()
    });
    let _ = rx.recv_timeout(Duration::from_secs(30));
    d
}

fn fig2(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let lab = build_lab();
    let mut rows = Vec::new();
    let mut ours = [(f64::NAN, f64::NAN); 2];
    for st in all_strategies() {
        let mut row = vec![st.name()];
        let nets: Vec<Net<'_>> = match &lab {
            Ok(l) => vec![Net::Loopback, Net::Lab(l)],
            Err(_) => vec![Net::Loopback],
        };
        for (i, net) in nets.into_iter().enumerate() {
            let n = match net {
                Net::Loopback => cfg.runs_for(st, 20, 200),
                Net::Lab(_) => cfg.runs_for(st, 3, 20),
            };
            let lat = Samples::new((0..n).map(|_| secs(latency_run(rt, st, net))).collect());
            if st == Ours {
                ours[i] = (lat.median(), lat.p99());
            }
            row.extend([
                n.to_string(),
                fmt_secs(lat.median()),
                fmt_secs(lat.p99()),
                format!(
                    "{} / {}",
                    ratio(lat.median(), ours[i].0),
                    ratio(lat.p99(), ours[i].1)
                ),
            ]);
        }
        rows.push(row);
    }
    let mut header = vec![
        "strategy",
        "loopback runs",
        "median",
        "p99",
        "vs ours (median / p99)",
    ];
    let lab_note = match &lab {
        Ok(_) => {
            header.extend(["lab runs", "median", "p99", "vs ours (median / p99)"]);
            format!("Right-hand columns: {LAB_DESC}.")
        }
        Err(e) => format!("Lab link: {e}."),
    };
    table(
        "Figure 2 — close latency (start of close → fd released)",
        &header,
        &rows,
        &[format!("The peer reads the 64 KiB response (known length) and closes, like an HTTP/1.1 client after a `Connection: close` response. A short time is not a virtue by itself: plain drop and Tokio's shutdown release the fd before anything is known to be delivered. {lab_note}")],
    );
}

// ===== figure 3: ACK-detection latency =====

const F3_BYTES: usize = 64 * 1024;
/// Largest gap between two spinner readings for a run to count.
const MAX_SPIN_GAP: f64 = 20e-6;

struct AckRun {
    /// Completion minus the instant the spinner saw SIOCOUTQ reach 0 (negative: the
    /// close ended while bytes were still unacknowledged).
    latency: f64,
    /// Time between the spinner's last non-zero and first zero reading.
    resolution: f64,
    /// SIOCOUTQ at the close's end (dup'd fd).
    outq_at_end: usize,
    /// Syscalls of the runtime thread during the whole close (start to fd released).
    syscalls: Option<u64>,
}

/// Our side writes 64 KiB into a peer whose receive window is closed (4 KiB
/// SO_RCVBUF, not reading) and starts the close at once; after a random 10-40 ms the
/// peer reads everything (the window opens) and keeps the connection open. A side
/// thread spins on SIOCOUTQ of a dup of our fd and records the instant it reaches 0.
///
/// Over the lab link the window stays open: 24-40 KiB (random) take 24-40 ms to cross
/// the 8 Mbit/s link, so the ACK arrives late by itself.
fn ack_run(
    rt: &tokio::runtime::Runtime,
    st: Strategy,
    rng: &mut Rng,
    net: Net<'_>,
    counter: Option<&support::SyscallCounter>,
) -> Option<AckRun> {
    let (rcvbuf, bytes, delay) = match net {
        Net::Loopback => (
            Some(4096),
            F3_BYTES,
            Duration::from_micros(rng.range(10_000, 40_000)),
        ),
        Net::Lab(_) => (None, rng.range(24 << 10, 40 << 10) as usize, Duration::ZERO),
    };
    let l = net.listener(rcvbuf);
    let addr = l.local_addr().unwrap();
    let (start_tx, start_rx) = mpsc::channel::<Instant>();
    let (end_tx, end_rx) = mpsc::channel::<()>();
    let peer = thread::spawn(move || {
        let mut p = accept(&l);
        let Ok(t0) = start_rx.recv_timeout(Duration::from_secs(10)) else {
            return;
        };
        let open = t0 + delay;
        thread::sleep(open.saturating_duration_since(Instant::now()));
        let _ = read_to_end(&mut p, bytes);
        // Stay open until the run is over.
        let _ = end_rx.recv_timeout(Duration::from_secs(10));
    });
    let (spin_tx, spin_rx) = mpsc::channel::<(Option<Instant>, Duration)>();
    let res = rt.block_on(async {
        let mut c = net.connect(addr).await;
        support::set_sndbuf(&c, 4 << 20);
        tokio::time::timeout(Duration::from_secs(10), c.write_all(&vec![b'a'; bytes]))
            .await
            .expect("write timed out (SO_SNDBUF too small?)")
            .expect("write");
        // Safety: dup of a live fd; the OwnedFd closes the duplicate.
        let dup = unsafe { OwnedFd::from_raw_fd(libc::dup(c.as_raw_fd())) };
        let dup_fd = dup.as_raw_fd();
        let t0 = Instant::now();
        let _ = start_tx.send(t0);
        let spin_from = t0 + delay.saturating_sub(Duration::from_millis(1));
        thread::spawn(move || {
            let _keep = dup;
            thread::sleep(spin_from.saturating_duration_since(Instant::now()));
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut last_nonzero = Instant::now();
            loop {
                let now = Instant::now();
                match support::outq(dup_fd) {
                    Ok(0) => {
                        let _ = spin_tx.send((Some(now), now - last_nonzero));
                        return;
                    }
                    Ok(_) if now < deadline => last_nonzero = now,
                    _ => {
                        let _ = spin_tx.send((None, Duration::ZERO));
                        return;
                    }
                }
                std::hint::spin_loop();
            }
        });
        let k = Knobs {
            require_peer_eof: false,
            ..Knobs::default()
        };
        if let Some(k) = counter {
            k.start();
        }
        let claim = if std::env::var("TGC_BENCH_DEBUG").is_ok()
            && matches!(st, Ours | OursPoll(_) | OursEv(_))
        {
            let polls = Arc::new(Mutex::new(Vec::new()));
            let f = Traced {
                f: close(st, c, k),
                polls: polls.clone(),
                t0,
            };
            let r = f.await;
            let done = Instant::now();
            eprintln!("polls(ms): {:?}", polls.lock().unwrap());
            (r, done)
        } else {
            let r = close(st, c, k).await;
            (r, Instant::now())
        };
        let (claim, done) = claim;
        let syscalls = counter.map(|k| k.stop());
        let outq_at_end = support::outq(dup_fd).unwrap_or(0);
        (done, claim, outq_at_end, t0, syscalls)
    });
    let (done, _claim, outq_at_end, t0_copy, syscalls) = res;
    let spun = spin_rx.recv_timeout(Duration::from_secs(10)).ok();
    let _ = end_tx.send(());
    let _ = peer.join();
    let (zero, resolution) = spun?;
    let zero = zero?;
    if std::env::var("TGC_BENCH_DEBUG").is_ok() {
        eprintln!(
            "{}: zero at {:.3} ms, done at {:.3} ms, gap {:.1} µs",
            st.id(),
            secs(zero - t0_copy) * 1e3,
            secs(done - t0_copy) * 1e3,
            resolution.as_secs_f64() * 1e6
        );
    }
    let latency = if done >= zero {
        secs(done - zero)
    } else {
        -secs(zero - done)
    };
    Some(AckRun {
        latency,
        resolution: secs(resolution),
        outq_at_end,
        syscalls,
    })
}

fn fig3(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let mut rng = Rng::new(0x5eed_f163);
    let counter = support::SyscallCounter::for_this_thread();
    let lab = build_lab();
    let mut rows = Vec::new();
    let mut notes = vec![
        "Detection latency = instant the close future completed − instant a side thread spinning on SIOCOUTQ of a dup'd fd first saw 0. Resolution = gap between the spinner's last non-zero and first zero reading (an upper bound on how late it saw the 0); valid runs are those where it was ≤ 20 µs and the spinner saw the 0 no later than the close did (otherwise the spinner was off the CPU at the transition and the run is dropped). On 2 cores the spinner, the runtime thread and the peer compete: a runtime thread kept off the CPU until the peer finished reading makes an interval poller look faster than its interval (its late tick lands just after the 0).".to_string(),
        "Syscalls per close: the runtime thread's `raw_syscalls:sys_enter` count from the start of the close to the fd's release (as in figure 4), whole wait included; it is the price of polling.".to_string(),
        "Loopback: 64 KiB queued behind a closed receive window (peer SO_RCVBUF 4 KiB, not reading); the close starts at once, the peer opens the window after a random 10–40 ms and never closes. Ours runs with `require_peer_eof(false)`, so it ends on the ACK of data + FIN. fbthrift does not half-close: its 0 is data-only.".to_string(),
    ];
    match &lab {
        Ok(_) => notes.push(format!("Lab: {LAB_DESC}; 24–40 KiB (random) written, then the close; the peer reads at once and never closes.")),
        Err(e) => notes.push(format!("Lab link: {e}.")),
    }
    let nets: Vec<(&str, Net<'_>)> = match &lab {
        Ok(l) => vec![("loopback", Net::Loopback), ("lab", Net::Lab(l))],
        Err(_) => vec![("loopback", Net::Loopback)],
    };
    for (path, net) in nets {
        let (mut ours_med, mut ours_p99) = (f64::NAN, f64::NAN);
        for st in [
            Ours,
            OursEv(1),
            OursEv(1000),
            OursPoll(1),
            OursPoll(10),
            OursPoll(50),
            Fbthrift,
        ] {
            if !selected(st) {
                continue;
            }
            let n = match net {
                Net::Loopback => cfg.n(10, 200),
                Net::Lab(_) => cfg.n(5, 60),
            };
            let runs: Vec<AckRun> = (0..n)
                .filter_map(|_| ack_run(rt, st, &mut rng, net, counter.as_ref()))
                .collect();
            if std::env::var("TGC_BENCH_DEBUG").is_ok() {
                let v: Vec<String> = runs
                    .iter()
                    .map(|r| format!("{:.0}", r.latency * 1e6))
                    .collect();
                eprintln!("{} {path}: {}", st.id(), v.join(" "));
            }
            // Ended before the spinner saw 0: either the close really ended early (bytes
            // still unacknowledged at its end) or the spinner was descheduled (excluded).
            let premature: Vec<&AckRun> = runs
                .iter()
                .filter(|r| r.latency < 0.0 && r.outq_at_end > 0)
                .collect();
            // Valid: the spinner read SIOCOUTQ at most 20 µs before it saw the 0.
            let valid = |r: &AckRun| r.latency >= 0.0 && r.resolution <= MAX_SPIN_GAP;
            let lat = Samples::new(
                runs.iter()
                    .filter(|r| valid(r))
                    .map(|r| r.latency)
                    .collect(),
            );
            let res = Samples::new(runs.iter().map(|r| r.resolution).collect());
            let sc = Samples::new(
                runs.iter()
                    .filter_map(|r| r.syscalls.map(|x| x as f64))
                    .collect(),
            );
            if st == Ours {
                (ours_med, ours_p99) = (lat.median(), lat.p99());
            }
            if !premature.is_empty() {
                let q = Samples::new(premature.iter().map(|r| r.outq_at_end as f64).collect());
                notes.push(format!(
                    "{} ({path}): ended before the peer acknowledged everything in {}/{} runs ({:.0} bytes still unacknowledged at its end, median): `tcpi_unacked` counts segments in flight, not bytes waiting for the window.",
                    st.name(),
                    premature.len(),
                    runs.len(),
                    q.median()
                ));
            }
            rows.push(vec![
                st.name(),
                path.to_string(),
                format!("{}/{n}", lat.len()),
                fmt_secs(lat.median()),
                fmt_secs(lat.p99()),
                fmt_secs(res.median()),
                if sc.is_empty() {
                    "n/a".into()
                } else {
                    format!("{:.0} / {:.0}", sc.median(), sc.p99())
                },
                ratio(lat.median(), ours_med),
                ratio(lat.p99(), ours_p99),
            ]);
        }
    }
    let floor = wakeup_floor(cfg.n(50, 300));
    notes.push(format!(
        "Physical floor on this machine: a thread blocked in `read(2)` on a pipe, woken by another thread's `write(2)`, returns {} after the write (median; p99 {}). Ours adds the epoll round, the task poll, one `ioctl(SIOCOUTQ)`, `epoll_ctl(DEL)` and `close(2)`.",
        fmt_secs(floor.median()),
        fmt_secs(floor.p99())
    ));
    table(
        "Figure 3 — ACK-detection latency, peer stays open (SIOCOUTQ really 0 → close completed)",
        &[
            "strategy",
            "path",
            "valid runs",
            "median",
            "p99",
            "spinner resolution (median)",
            "syscalls per close (median / p99)",
            "median vs ours",
            "p99 vs ours",
        ],
        &rows,
        &notes,
    );
}

/// Cross-thread wakeup latency: write to a pipe → the blocked reader returns.
fn wakeup_floor(n: usize) -> Samples {
    let (mut r, mut w) = std::os::unix::net::UnixStream::pair().expect("pair");
    let (tx, rx) = mpsc::channel::<Instant>();
    let reader = thread::spawn(move || {
        let _ = r.set_read_timeout(Some(Duration::from_secs(5)));
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while let Ok(1) = r.read(&mut b) {
            let now = Instant::now();
            if let Ok(sent) = rx.recv_timeout(Duration::from_secs(5)) {
                out.push(secs(now.saturating_duration_since(sent)));
            }
        }
        out
    });
    let mut rng = Rng::new(7);
    for _ in 0..n {
        thread::sleep(Duration::from_micros(rng.range(1_000, 3_000)));
        let _ = tx.send(Instant::now());
        let _ = w.write_all(b"x");
    }
    drop(w);
    Samples::new(reader.join().unwrap_or_default())
}

// ===== figure 4: cost per clean close =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerClose {
    /// The peer had closed before our close started.
    Before,
    /// The peer closes when it reads our EOF.
    AfterOurFin,
}

const F4_RESPONSE: usize = 1024;

/// Sets up one connection for a clean close. Returns our stream, and a receiver that
/// says when the peer is done.
async fn clean_pair(when: PeerClose) -> (TcpStream, mpsc::Receiver<()>) {
    let (l, addr) = listener(None);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut p = accept(&l);
        match when {
            PeerClose::Before => {
                let _ = read_to_end(&mut p, F4_RESPONSE);
                drop(p);
                let _ = tx.send(());
            }
            PeerClose::AfterOurFin => {
                let _ = tx.send(());
                let _ = read_to_end(&mut p, usize::MAX);
                drop(p);
            }
        }
    });
    let mut c = connect(addr).await;
    c.write_all(&[b'c'; F4_RESPONSE]).await.expect("write");
    let _ = rx.recv_timeout(Duration::from_secs(10));
    if when == PeerClose::Before {
        // Let the peer's FIN arrive and the runtime see it.
        tokio::time::sleep(Duration::from_millis(2)).await;
    } else {
        // The peer is blocked in read.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (c, rx)
}

struct Cost {
    syscalls: Option<u64>,
    cpu: Duration,
}

fn cost_run(
    rt: &tokio::runtime::Runtime,
    st: Strategy,
    when: PeerClose,
    counter: Option<&support::SyscallCounter>,
    cpu_overhead: Duration,
) -> Cost {
    rt.block_on(async {
        let (c, _rx) = clean_pair(when).await;
        let cpu0 = support::thread_cpu_precise();
        if let Some(k) = counter {
            k.start();
        }
        close(st, c, Knobs::default()).await;
        let syscalls = counter.map(|k| k.stop());
        let cpu = support::thread_cpu_precise().saturating_sub(cpu0);
        Cost {
            syscalls,
            cpu: cpu.saturating_sub(cpu_overhead),
        }
    })
}

fn fig4(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let counter = support::SyscallCounter::for_this_thread();
    // CPU clock and counter overhead of an empty window.
    let empty = Samples::new(
        (0..200)
            .map(|_| {
                let c0 = support::thread_cpu_precise();
                if let Some(k) = &counter {
                    k.start();
                    k.stop();
                }
                secs(support::thread_cpu_precise() - c0)
            })
            .collect(),
    );
    let overhead = Duration::from_secs_f64(empty.median());
    let sequences = strace_sequences(cfg);
    let mut rows = Vec::new();
    let strategies = all_strategies();
    let mut ours = [(f64::NAN, f64::NAN); 2];
    for st in strategies {
        let mut row = vec![st.name()];
        for (i, when) in [PeerClose::Before, PeerClose::AfterOurFin]
            .into_iter()
            .enumerate()
        {
            let n = if st.is_slow() {
                cfg.n(2, 6)
            } else {
                cfg.n(20, 200)
            };
            let runs: Vec<Cost> = (0..n)
                .map(|_| cost_run(rt, st, when, counter.as_ref(), overhead))
                .collect();
            let sc = Samples::new(
                runs.iter()
                    .filter_map(|r| r.syscalls.map(|x| x as f64))
                    .collect(),
            );
            let cpu = Samples::new(runs.iter().map(|r| secs(r.cpu)).collect());
            if st == Ours {
                ours[i] = (sc.median(), cpu.median());
            }
            row.push(if sc.is_empty() {
                "n/a".into()
            } else {
                format!("{:.0} / {:.0}", sc.median(), sc.p99())
            });
            row.push(format!(
                "{:.1} / {:.1}",
                cpu.median() * 1e6,
                cpu.p99() * 1e6
            ));
            row.push(format!(
                "{} / {}",
                ratio(sc.median(), ours[i].0),
                ratio(cpu.median(), ours[i].1)
            ));
        }
        rows.push(row);
    }
    let mut notes = vec![
        format!(
            "Syscalls: a per-thread `perf_event_open` counter on the `raw_syscalls:sys_enter` tracepoint (what `perf stat -e raw_syscalls:sys_enter` counts), enabled on the runtime thread just before the close starts and disabled once the fd is released (its own disable ioctl subtracted){}. CPU: `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` of the runtime thread around the same window, minus the empty-window overhead ({:.1} µs). The peer is another thread, not counted. Goal for ours: ≤ 6 (peer already closed), ≤ 9 (peer closes after our FIN).",
            if counter.is_some() { "" } else { " — unavailable here (no tracefs or no permission)" },
            overhead.as_secs_f64() * 1e6
        ),
    ];
    notes.extend(sequences);
    table(
        "Figure 4 — cost per clean close on loopback, shutdown → close inclusive (median / p99)",
        &[
            "strategy",
            "syscalls, peer closed first",
            "CPU µs, peer closed first",
            "vs ours (syscalls / CPU)",
            "syscalls, peer closes after our FIN",
            "CPU µs, peer closes after our FIN",
            "vs ours (syscalls / CPU)",
        ],
        &rows,
        &notes,
    );
}

/// Child mode under strace: a few warm-up closes, then one marked close per strategy and
/// scenario.
fn child_fig4_trace() {
    let rt = runtime();
    for st in all_strategies() {
        for when in [PeerClose::Before, PeerClose::AfterOurFin] {
            if st.is_slow() && when == PeerClose::AfterOurFin && st == Envoy {
                // 1 s of timer wakeups: nothing to learn beyond the count.
            }
            rt.block_on(async {
                let (c, _rx) = clean_pair(when).await;
                support::strace_marker(&format!("TGC-BEGIN {} {:?}", st.id(), when));
                close(st, c, Knobs::default()).await;
                support::strace_marker("TGC-END");
            });
        }
    }
}

/// Runs the trace child under `strace -f` and returns one note line per strategy with
/// the exact syscall sequence of the runtime thread during the close.
fn strace_sequences(cfg: &Cfg) -> Vec<String> {
    let _ = cfg;
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(_) => return vec![],
    };
    let out = std::env::temp_dir().join(format!("tgc-strace-{}.txt", std::process::id()));
    let status = run_child_with_deadline(
        std::process::Command::new("strace")
            .args(["-f", "-qq", "-y", "-e", "signal=none", "-o"])
            .arg(&out)
            .arg(&exe)
            .env("TGC_BENCH_CHILD", "fig4trace")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
        Duration::from_secs(120),
    );
    if status.is_none() {
        return vec!["Syscall sequences: strace not available or timed out.".into()];
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let mut notes = vec![
        "Exact sequences (runtime thread, one close each, from `strace -f` of a child run; `=E` is the errno, `=n` the result):".to_string(),
    ];
    let mut current: Option<(String, String, Vec<String>)> = None;
    for line in text.lines() {
        let (pid, rest) = match line.split_once(' ') {
            Some((p, r)) => (p.to_string(), r.trim_start()),
            None => continue,
        };
        if let Some(label) = marker(rest, "TGC-BEGIN ") {
            current = Some((pid, label, Vec::new()));
            continue;
        }
        if marker(rest, "TGC-END").is_some() {
            if let Some((p, label, calls)) = current.take() {
                if p == pid {
                    notes.push(format!(
                        "- `{label}` ({}): {}",
                        calls.len(),
                        calls.join(" → ")
                    ));
                }
            }
            continue;
        }
        if let Some((p, _, calls)) = current.as_mut() {
            if *p != pid || rest.starts_with("+++") {
                continue;
            }
            if rest.starts_with("<...") {
                // `<... name resumed> ...) = result`: complete the pending entry.
                if let Some(last) = calls.last_mut() {
                    if let Some(stem) = last.strip_suffix("=…") {
                        let stem = match (stem.contains('('), syscall_key(rest)) {
                            (false, Some(k)) => format!("{stem}({k})"),
                            _ => stem.to_string(),
                        };
                        *last = format!("{stem}={}", syscall_result(rest));
                    }
                }
            } else {
                calls.push(describe_syscall(rest));
            }
        }
    }
    notes
}

fn marker(rest: &str, tag: &str) -> Option<String> {
    let s = rest.strip_prefix("write(-1, \"")?;
    let s = s.strip_prefix(tag)?;
    Some(s.split('"').next().unwrap_or("").trim().to_string())
}

/// The argument worth showing (ioctl request, socket option, flag), if any.
fn syscall_key(line: &str) -> Option<String> {
    [
        "TIOCOUTQ",
        "SIOCOUTQNSD",
        "TCP_INFO",
        "SO_LINGER",
        "SO_ERROR",
        "SHUT_WR",
        "MSG_TRUNC",
        "EPOLL_CTL_DEL",
        "EPOLL_CTL_MOD",
        "FIONREAD",
        "eventfd",
    ]
    .into_iter()
    .find(|k| line.contains(k))
    .map(String::from)
}

fn syscall_result(line: &str) -> String {
    line.rsplit(" = ")
        .next()
        .map(|r| {
            let mut it = r.split_whitespace();
            let v = it.next().unwrap_or("");
            if v == "-1" {
                it.next().unwrap_or("").to_string()
            } else {
                v.to_string()
            }
        })
        .unwrap_or_default()
}

fn describe_syscall(line: &str) -> String {
    let name = line.split('(').next().unwrap_or("?");
    let arg = syscall_key(line).unwrap_or_default();
    let result = if line.contains("<unfinished") {
        "…".to_string()
    } else {
        syscall_result(line)
    };
    if arg.is_empty() {
        format!("{name}={result}")
    } else {
        format!("{name}({arg})={result}")
    }
}

fn run_child_with_deadline(
    cmd: &mut std::process::Command,
    deadline: Duration,
) -> Option<std::process::Output> {
    let child = cmd.spawn().ok()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(out)) => Some(out),
        _ => {
            // Our own child, by its pid.
            // Safety: kill(2) on a pid we spawned.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            None
        }
    }
}

// ===== figure 5: scale =====

fn fig5(cfg: &Cfg) {
    let exe = std::env::current_exe().expect("exe");
    let sizes: Vec<usize> = if cfg.quick {
        vec![2_000]
    } else {
        // 50,000 would need 50,000 descriptors in one process: more than this
        // sandbox's hard RLIMIT_NOFILE (20,000, no CAP_SYS_RESOURCE to raise it).
        let hard = support::nofile_hard();
        let mut v = vec![10_000];
        for n in [50_000, 19_000] {
            if n + 1_000 <= hard as usize {
                v.push(n);
                break;
            }
        }
        v
    };
    let mut rows = Vec::new();
    let mut notes = vec![format!(
        "Each cell is a fresh child process (current-thread runtime) holding only its own sockets; the peers live in a helper process behind 8 listeners on 127.0.0.1–8. Hard RLIMIT_NOFILE here: {} (50,000 closes need 50,000 descriptors in the closing process). Heap = live bytes of a counting global allocator after all closes were spawned and polled once, minus before (the task holding the future; the socket's Tokio registration is counted separately). `size_of::<GracefulClose<TcpStream>>()` = {} bytes, of which `TcpStream` {}, `CloseOptions` {}, a Tokio `Sleep` {}, a `tracing::Span` {}. Start = spawning + first poll of all closes; finish = the peers close, until the last close completed. Peak RSS = VmHWM of the child.",
        support::nofile_hard(),
        std::mem::size_of::<GracefulClose<TcpStream>>(),
        std::mem::size_of::<TcpStream>(),
        std::mem::size_of::<CloseOptions>(),
        std::mem::size_of::<tokio::time::Sleep>(),
        std::mem::size_of::<tracing::Span>(),
    )];
    for &n in &sizes {
        let mut ours_heap = f64::NAN;
        for st in [Ours, OursPoll(10), Nginx(4096), Go] {
            if !selected(st) {
                continue;
            }
            let out = run_child_with_deadline(
                std::process::Command::new(&exe)
                    .env("TGC_BENCH_CHILD", format!("fig5:{}:{n}", st.id()))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped()),
                Duration::from_secs(180),
            );
            let text = out
                .as_ref()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            let Some(line) = text.lines().find(|l| l.starts_with("RESULT ")) else {
                let err = out
                    .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
                    .unwrap_or_else(|| "timed out".into());
                notes.push(format!(
                    "{} at {n}: failed: {}",
                    st.name(),
                    err.lines().last().unwrap_or("")
                ));
                continue;
            };
            let get = |k: &str| -> f64 {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN)
            };
            let heap = get("heap_per");
            if st == Ours {
                ours_heap = heap;
            }
            rows.push(vec![
                st.name(),
                format!("{n}"),
                format!("{:.0}", get("completed")),
                fmt_secs(get("start")),
                fmt_secs(get("finish")),
                format!("{:.1} MiB", get("hwm") / (1 << 20) as f64),
                format!("{:.0}", get("fut")),
                format!(
                    "{:.0} ({:.0} + {:.0})",
                    heap,
                    get("spawned_per"),
                    heap - get("spawned_per")
                ),
                format!("{:.0}", get("rss_per")),
                format!("{:.0}", get("reg_per")),
                ratio(heap, ours_heap),
            ]);
        }
    }
    table(
        "Figure 5 — scale: concurrent pending closes in one process (2 cores)",
        &[
            "strategy",
            "closes",
            "completed",
            "start (spawn + first poll)",
            "finish (peers close → all done)",
            "peak RSS",
            "size_of spawned future",
            "heap B / pending close (task + first poll)",
            "RSS B / pending close",
            "Tokio registration B / socket",
            "heap vs ours",
        ],
        &rows,
        &notes,
    );
}

/// The peers of figure 5 live in a helper process, so that the closing process holds
/// only its own sockets (RLIMIT_NOFILE is per process).
fn child_fig5_peers(n: usize) {
    use std::io::BufRead;
    support::raise_nofile(n as u64 + 1024);
    let listeners: Vec<std::net::TcpListener> = (1..=8)
        .map(|i| listener_on(&format!("127.0.0.{i}"), None))
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    println!("ADDRS {}", addrs.join(" "));
    let _ = std::io::stdout().flush();
    let mut peers = Vec::with_capacity(n);
    for l in &listeners {
        l.set_nonblocking(true).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while peers.len() < n && Instant::now() < deadline {
        let mut idle = true;
        for l in &listeners {
            while let Ok((p, _)) = l.accept() {
                peers.push(p);
                idle = false;
            }
        }
        if idle {
            thread::sleep(Duration::from_micros(200));
        }
    }
    println!("ACCEPTED {}", peers.len());
    let _ = std::io::stdout().flush();
    // Any line, or EOF (the parent died): close every peer at once.
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    drop(peers);
}

fn child_fig5(st: Strategy, n: usize) {
    use std::io::BufRead;
    let limit = support::raise_nofile(n as u64 + 1024);
    let exe = std::env::current_exe().expect("exe");
    let mut helper = std::process::Command::new(exe)
        .env("TGC_BENCH_CHILD", format!("fig5peers:{n}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("peer helper");
    let mut helper_out = std::io::BufReader::new(helper.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = helper_out.read_line(&mut line);
    let addrs: Vec<SocketAddr> = line
        .trim()
        .strip_prefix("ADDRS ")
        .unwrap_or_else(|| panic!("helper said {line:?} (fd limit {limit})"))
        .split(' ')
        .map(|a| a.parse().unwrap())
        .collect();
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let c = std::net::TcpStream::connect_timeout(&addrs[i % 8], Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect #{i} (fd limit {limit}): {e}"));
        c.set_nonblocking(true).unwrap();
        clients.push(c);
    }
    line.clear();
    let _ = helper_out.read_line(&mut line);
    assert_eq!(line.trim(), format!("ACCEPTED {n}"), "peer helper");
    let mut peers = Releaser(helper);
    let rt = runtime();
    rt.block_on(async move {
        let h0 = live_heap();
        let mut streams = Vec::with_capacity(n);
        for c in clients {
            streams.push(TcpStream::from_std(c).expect("register"));
        }
        let reg_per = (live_heap() - h0) as f64 / n as f64;
        let mut handles = Vec::with_capacity(n);
        let (heap0, rss0) = (live_heap(), support::rss().0);
        let t0 = Instant::now();
        for s in streams {
            handles.push(spawn_close(st, s, Knobs::default()));
        }
        // Spawned, not yet polled: the task allocations alone.
        let spawned_per = (live_heap() - heap0) as f64 / n as f64;
        // Until every close has run its first poll.
        let deadline = Instant::now() + Duration::from_secs(30);
        while FIRST_POLLS.load(Ordering::Relaxed) < n && Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        let start = t0.elapsed();
        let (heap1, rss1) = (live_heap(), support::rss().0);
        let t1 = Instant::now();
        peers.release(); // the helper closes every peer
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut completed = 0;
        for h in handles {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, h).await.is_ok() {
                completed += 1;
            }
        }
        let finish = t1.elapsed();
        let hwm = support::rss().1;
        println!(
            "RESULT completed={completed} start={} finish={} heap_per={} rss_per={} reg_per={reg_per} hwm={hwm} spawned_per={spawned_per} fut={}",
            start.as_secs_f64(),
            finish.as_secs_f64(),
            (heap1 - heap0) as f64 / n as f64,
            (rss1 as f64 - rss0 as f64) / n as f64,
            FUTURE_SIZE.load(Ordering::Relaxed),
        );
    });
}

/// Tells the peer helper to close everything (on drop), then reaps it.
struct Releaser(std::process::Child);

impl Releaser {
    /// Tells the helper to close every peer; does not wait.
    fn release(&mut self) {
        if let Some(mut s) = self.0.stdin.take() {
            let _ = s.write_all(b"close\n");
        }
    }
}

impl std::ops::Drop for Releaser {
    fn drop(&mut self) {
        self.release();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ===== figure 6: runtime health =====

fn fig6(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let n = cfg.n(200, 1000);
    let mut rows = Vec::new();
    let (mut ours_p99, mut ours_max) = (f64::NAN, f64::NAN);
    for st in [Ours, Drop, Nginx(4096), SoLinger] {
        if !selected(st) {
            continue;
        }
        let (late, total) = health_run(rt, st, n);
        if st == Ours {
            (ours_p99, ours_max) = (late.p99(), late.max());
        }
        rows.push(vec![
            st.name(),
            format!("{}", late.len()),
            fmt_secs(late.median()),
            fmt_secs(late.p99()),
            fmt_secs(late.max()),
            fmt_secs(secs(total)),
            ratio(late.p99(), ours_p99),
            ratio(late.max(), ours_max),
        ]);
    }
    table(
        &format!("Figure 6 — runtime health: lateness of a 1 ms ticker on the same current-thread runtime while {n} closes wait on slow peers"),
        &[
            "strategy",
            "ticks",
            "lateness median",
            "lateness p99",
            "lateness max",
            "all closes done after",
            "p99 vs ours",
            "max vs ours",
        ],
        &rows,
        &[format!("Each of the {n} connections has 64 KiB queued behind a closed window (peer SO_RCVBUF 4 KiB); peer i reads its 64 KiB and closes at t0 + i ms. All closes start at t0. Lateness = when a tick ran − when it was due (missed ticks burst, each counted). Tokio's timer has 1 ms granularity, so up to ~1 ms of lateness is the floor for every strategy.")],
    );
}

fn health_run(rt: &tokio::runtime::Runtime, st: Strategy, n: usize) -> (Samples, Duration) {
    const BYTES: usize = 64 * 1024;
    support::raise_nofile(2 * n as u64 + 1024);
    let (l, addr) = listener(Some(4096));
    let (t0_tx, t0_rx) = mpsc::channel::<Instant>();
    let (peer_tx, peer_rx) = mpsc::channel::<Vec<std::net::TcpStream>>();
    let peer = thread::spawn(move || {
        let Ok(mut peers) = peer_rx.recv_timeout(Duration::from_secs(30)) else {
            return;
        };
        let Ok(t0) = t0_rx.recv_timeout(Duration::from_secs(30)) else {
            return;
        };
        let give_up = t0 + Duration::from_secs(60);
        for (i, p) in peers.iter_mut().enumerate() {
            if Instant::now() > give_up {
                break;
            }
            let due = t0 + Duration::from_millis(i as u64);
            thread::sleep(due.saturating_duration_since(Instant::now()));
            let _ = read_to_end(p, BYTES);
            let _ = p.shutdown(Shutdown::Both);
        }
        drop(peers);
    });
    let res = rt.block_on(async {
        let mut clients = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = connect(addr).await;
            peers.push(accept(&l));
            support::set_sndbuf(&c, 1 << 20);
            tokio::time::timeout(Duration::from_secs(10), c.write_all(&vec![b'h'; BYTES]))
                .await
                .expect("write timed out (SO_SNDBUF too small?)")
                .expect("write");
            clients.push(c);
        }
        let _ = peer_tx.send(peers);
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let recording = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (stop, samples, recording) = (stop.clone(), samples.clone(), recording.clone());
            tokio::spawn(async move {
                let period = Duration::from_millis(1);
                let mut due = tokio::time::Instant::now() + period;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep_until(due).await;
                    let late = tokio::time::Instant::now().saturating_duration_since(due);
                    if recording.load(Ordering::Relaxed) {
                        samples.lock().unwrap().push(secs(late));
                    }
                    due += period;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = Instant::now();
        recording.store(true, Ordering::Relaxed);
        let _ = t0_tx.send(t0);
        let handles: Vec<_> = clients
            .into_iter()
            .map(|c| tokio::spawn(close(st, c, Knobs::default())))
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for h in handles {
            let _ = tokio::time::timeout_at(deadline, h).await;
        }
        // Keep recording until the peers are done, so every strategy covers the same span.
        let span = Duration::from_millis(n as u64 + 20);
        tokio::time::sleep(span.saturating_sub(t0.elapsed())).await;
        let total = t0.elapsed();
        recording.store(false, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(5), ticker).await;
        let v = std::mem::take(&mut *samples.lock().unwrap());
        (Samples::new(v), total)
    });
    let _ = peer.join();
    res
}

// ===== figure 7: drain throughput =====

fn fig7(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let bytes: u64 = if cfg.quick { 128 << 20 } else { 1 << 30 };
    let runs = cfg.n(1, 3);
    let mut rows = Vec::new();
    let (mut ours_cpu, mut ours_total) = (f64::NAN, f64::NAN);
    for st in [Ours, Nginx(4096), Nginx(65536)] {
        if !selected(st) {
            continue;
        }
        let mut cpu = Vec::new();
        let mut total = Vec::new();
        let mut wall = Vec::new();
        for _ in 0..runs {
            let (c, t, w) = drain_run(rt, st, bytes);
            cpu.push(c);
            total.push(t);
            wall.push(w);
        }
        let gib = bytes as f64 / (1u64 << 30) as f64;
        let cpu = Samples::new(cpu).median() / gib;
        let total = Samples::new(total).median() / gib;
        let wall = Samples::new(wall).median();
        if st == Ours {
            (ours_cpu, ours_total) = (cpu, total);
        }
        rows.push(vec![
            st.name(),
            format!("{:.3}", cpu),
            format!("{:.3}", total),
            format!("{:.2}", gib / wall),
            ratio(cpu, ours_cpu),
            ratio(total, ours_total),
        ]);
    }
    table(
        &format!(
            "Figure 7 — drain throughput: discarding {} MiB from a flooding peer (median of {runs})",
            bytes >> 20
        ),
        &[
            "strategy",
            "receiver thread CPU s / GiB",
            "whole process CPU s / GiB",
            "GiB/s",
            "receiver CPU vs ours",
            "process CPU vs ours",
        ],
        &rows,
        &["Receiver thread = the runtime thread doing the close (`getrusage(RUSAGE_THREAD)`); whole process adds the flooding peer thread, which on loopback also pays for the receive-side TCP processing (softirq runs in the sender's context). Ours discards with `recv(NULL, n, MSG_TRUNC)`; the others copy into a buffer.".into()],
    );
}

fn drain_run(rt: &tokio::runtime::Runtime, st: Strategy, bytes: u64) -> (f64, f64, f64) {
    let (l, addr) = listener(None);
    let peer = thread::spawn(move || {
        let mut p = accept(&l);
        let chunk = vec![b'f'; 64 * 1024];
        let mut sent = 0u64;
        while sent < bytes {
            let k = chunk.len().min((bytes - sent) as usize);
            if p.write_all(&chunk[..k]).is_err() {
                break;
            }
            sent += k as u64;
        }
        let _ = p.shutdown(Shutdown::Write);
        let _ = read_to_end(&mut p, usize::MAX);
    });
    let (cpu, total, wall) = rt.block_on(async {
        let c = connect(addr).await;
        let k = Knobs {
            drain_limit: u64::MAX,
            timeout: Duration::from_secs(120),
            ..Knobs::default()
        };
        let (cpu0, p0, t0) = (
            support::thread_cpu(),
            support::process_cpu(),
            Instant::now(),
        );
        close(st, c, k).await;
        (
            support::thread_cpu() - cpu0,
            support::process_cpu() - p0,
            t0.elapsed(),
        )
    });
    let _ = peer.join();
    (secs(cpu), secs(total), secs(wall))
}

// ===== main =====

fn main() {
    if let Ok(child) = std::env::var("TGC_BENCH_CHILD") {
        let parts: Vec<&str> = child.split(':').collect();
        match parts.as_slice() {
            ["fig4trace"] => child_fig4_trace(),
            ["fig5peers", n] => child_fig5_peers(n.parse().expect("n")),
            ["fig5", st, n] => child_fig5(
                Strategy::from_id(st).expect("strategy"),
                n.parse().expect("n"),
            ),
            _ => panic!("unknown child mode {child}"),
        }
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = std::env::var("TGC_BENCH_QUICK").is_ok_and(|v| v != "0");
    let figs_env = std::env::var("TGC_BENCH_FIGS").ok();
    if !args.iter().any(|a| a == "--bench") && !quick && figs_env.is_none() {
        // `cargo test --benches` runs this binary without `--bench`: stay out of the way.
        println!(
            "compare: run with `cargo bench --bench compare` (TGC_BENCH_QUICK=1 for quick mode)"
        );
        return;
    }
    let figs: Vec<u32> = figs_env
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3, 4, 5, 6, 7]);
    let cfg = Cfg { quick, figs };
    support::raise_nofile(1 << 16);
    let rt = runtime();
    let started = Instant::now();
    println!(
        "# tokio-graceful-close: side-by-side close benchmarks ({} mode)",
        if cfg.quick { "quick" } else { "full" }
    );
    println!("\n{}", machine());
    for f in cfg.figs.clone() {
        let t = Instant::now();
        match f {
            1 => fig1(&cfg, &rt),
            2 => fig2(&cfg, &rt),
            3 => fig3(&cfg, &rt),
            4 => fig4(&cfg, &rt),
            5 => fig5(&cfg),
            6 => fig6(&cfg, &rt),
            7 => fig7(&cfg, &rt),
            _ => continue,
        }
        eprintln!("figure {f} took {:.1} s", t.elapsed().as_secs_f64());
    }
    println!(
        "\n_Total bench time: {:.0} s._",
        started.elapsed().as_secs_f64()
    );
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "Machine: {cores} cores ({cpu}), Linux {kernel}; load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}
