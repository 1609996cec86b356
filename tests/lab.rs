//! The reliability lab: graceful close over a real, slow, lossy link between two
//! network namespaces (see `tests/support/lab.rs` and `tests/README.md`).
//!
//! Every test builds its own lab (unique namespaces), so tests run side by side. Only
//! `thousand_concurrent_closes_no_fd_leak` counts file descriptors, so it takes the
//! gate exclusively while the others share it.
//!
//! Without root (and without `CI=true`) every test prints `SKIP: ...` and passes.
#![cfg(target_os = "linux")]

#[path = "support/lab.rs"]
mod lab;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use lab::{Lab, LabConfig, Side};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_graceful_close::{
    AsyncGracefulClose, CloseError, CloseErrorKind, CloseOptions, ClosePhase, CloseReport,
    OnTimeout,
};

/// The greeting an SMTP-like peer sends and the client never reads.
const GREETING: &[u8] = b"220 Welcome\r\n";
/// The seed experiment's payload.
const SEED_BYTES: usize = 1_000_000;
/// Runs of the seed experiment (each arm).
const SEED_RUNS: usize = 100;

/// Shared by every test; taken exclusively by the one that counts file descriptors.
/// Taken before the test's runtime exists and released after it is gone, so that no
/// other test opens or closes a descriptor while that one counts.
static FD_GATE: RwLock<()> = RwLock::new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Shared,
    Exclusive,
}

/// Runs a lab test on its own multi-threaded runtime (2 workers) under the gate.
fn lab_test(gate: Gate, test: impl Future<Output = ()>) {
    let (_shared, _exclusive) = match gate {
        Gate::Shared => (
            Some(FD_GATE.read().unwrap_or_else(PoisonError::into_inner)),
            None,
        ),
        Gate::Exclusive => (
            None,
            Some(FD_GATE.write().unwrap_or_else(PoisonError::into_inner)),
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(test);
}

/// Builds a lab or returns from the test (printing `SKIP: ...`) where it may be skipped.
macro_rules! lab_or_skip {
    ($config:expr) => {
        match Lab::require($config) {
            Some(lab) => lab,
            None => return,
        }
    };
}

// ===== helpers =====

/// The payload: byte `i` is `i % 251`, so a gap or a reordering shows.
fn payload(len: usize) -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    let data = DATA.get_or_init(|| (0..16 << 20).map(|i| (i % 251) as u8).collect());
    &data[..len]
}

/// Bounds every wait: panics with `what` if `f` takes longer than `secs`.
async fn within<F: Future>(secs: u64, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {secs} s"),
    }
}

/// How the peer's read-to-end ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Eof,
    Reset,
    Failed(io::ErrorKind),
    /// Nothing arrived for the idle limit, no EOF, no RST.
    Silent,
}

/// What the peer received.
#[derive(Debug, Clone, Copy)]
struct Received {
    bytes: usize,
    end: End,
    /// Every byte matched the payload pattern at its offset.
    intact: bool,
}

/// Reads until EOF or an error, checking the payload pattern; `progress` follows the count.
async fn sink(s: &mut TcpStream, progress: Option<&AtomicUsize>) -> Received {
    sink_idle(s, progress, Duration::MAX).await
}

/// Like [`sink`], but gives up after `idle` without data (`End::Silent`): the
/// half-open connection a plain drop leaves when its only RST is lost.
async fn sink_idle(s: &mut TcpStream, progress: Option<&AtomicUsize>, idle: Duration) -> Received {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0usize;
    let mut intact = true;
    let end = loop {
        let read = match tokio::time::timeout(idle, s.read(&mut buf)).await {
            Ok(read) => read,
            Err(_) => break End::Silent,
        };
        match read {
            Ok(0) => break End::Eof,
            Ok(k) => {
                intact &= buf[..k]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == ((n + i) % 251) as u8);
                n += k;
                if let Some(p) = progress {
                    p.store(n, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break End::Reset,
            Err(e) => break End::Failed(e.kind()),
        }
    };
    Received {
        bytes: n,
        end,
        intact,
    }
}

async fn accept(l: &TcpListener) -> TcpStream {
    within(30, "accept", l.accept()).await.expect("accept").0
}

fn addr(l: &TcpListener) -> SocketAddr {
    l.local_addr().expect("local_addr")
}

/// Makes the next sockets of `side` start with an 8 MiB send buffer (per-namespace
/// `tcp_wmem`), so several MB can be queued unacknowledged at close.
fn big_send_buffers(lab: &Lab, side: Side) {
    lab.sysctl(side, "net/ipv4/tcp_wmem", "4096 8388608 16777216")
        .expect("set tcp_wmem in the lab");
}

/// Sends RST now: `SO_LINGER {1, 0}` and close (the peer's way to abort).
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(s);
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn stats(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    format!(
        "min {} / median {} / max {}",
        secs(v[0]),
        secs(v[v.len() / 2]),
        secs(v[v.len() - 1])
    )
}

// ===== 0. the lab itself =====

/// The lab is a real two-host link: reachable, shaped (a transfer takes as long as the
/// rate says), and cut off by `cut`, `blackhole`; torn down on drop.
#[test]
fn lab_is_a_shaped_link_and_tears_down() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(8_000).queue(256 * 1024);
        let lab = lab_or_skip!(cfg);
        let (ns_a, ns_b) = (lab.ns(Side::A).to_string(), lab.ns(Side::B).to_string());

        // 1 MB at 1 MB/s takes about a second, not the microseconds of loopback.
        let l = lab.listen(Side::B, 0).unwrap();
        let to = addr(&l);
        let peer = tokio::spawn(async move {
            let mut s = accept(&l).await;
            sink(&mut s, None).await
        });
        let start = Instant::now();
        let mut c = within(10, "connect", lab.connect(Side::A, to))
            .await
            .unwrap();
        assert_eq!(c.local_addr().unwrap().ip(), lab.addr_a());
        c.write_all(payload(1_000_000)).await.unwrap();
        c.shutdown().await.unwrap();
        let got = within(20, "peer", peer).await.unwrap();
        let took = start.elapsed();
        assert_eq!(
            (got.bytes, got.end, got.intact),
            (1_000_000, End::Eof, true)
        );
        let rate = lab.config().bytes_per_sec().unwrap();
        eprintln!("lab: 1 MB over {} kB/s took {}", rate / 1000.0, secs(took));
        assert!(
            took.as_secs_f64() > 0.8 * 1e6 / rate,
            "the link is not shaped: 1 MB in {took:?}"
        );

        // Nothing gets through a black hole or a cut cable; both are reversible.
        let probe = |lab: &Lab| {
            let sock = lab.tcp_socket(Side::A).unwrap();
            let to = SocketAddr::from((lab.addr_b(), 9)); // nothing listens: RST if reachable
            async move { tokio::time::timeout(Duration::from_millis(700), sock.connect(to)).await }
        };
        let refused = probe(&lab).await;
        assert!(
            matches!(&refused, Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused),
            "B answers: {refused:?}"
        );
        lab.blackhole(true).unwrap();
        assert!(
            probe(&lab).await.is_err(),
            "the black hole lets packets through"
        );
        lab.blackhole(false).unwrap();
        assert!(probe(&lab).await.is_ok());
        lab.cut().unwrap();
        assert!(
            !matches!(probe(&lab).await, Ok(Err(ref e)) if e.kind() == io::ErrorKind::ConnectionRefused),
            "the cut link lets packets through"
        );
        lab.restore().unwrap();
        assert!(lab::wait_until(Duration::from_secs(5), || lab
            .exec(Side::A, "ip", &["route", "get", "10.77.0.2"])
            .is_ok_and(|o| o.status.success())));

        drop(lab);
        for ns in [ns_a, ns_b] {
            assert!(
                !std::path::Path::new("/run/netns").join(&ns).exists(),
                "namespace {ns} survived the lab"
            );
        }
    });
}

// ===== 1. the seed experiment =====

/// One seed run: the peer greets (never read), the client writes 1,000,000 bytes and
/// closes, gracefully or by a plain drop. Returns what the peer got and the close result.
async fn seed_run(
    lab: Arc<Lab>,
    graceful: bool,
) -> (Received, Option<Result<CloseReport, CloseError>>) {
    let l = lab.listen(Side::B, 0).unwrap();
    let to = addr(&l);
    let peer = tokio::spawn(async move {
        let mut s = accept(&l).await;
        if let Err(e) = s.write_all(GREETING).await {
            let end = match e.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => End::Reset,
                k => End::Failed(k),
            };
            return Received {
                bytes: 0,
                end,
                intact: true,
            };
        }
        // The control's only RST can be lost (2 % loss) when nothing else is in flight:
        // then the peer would wait for ever on a half-open connection.
        let idle = if graceful {
            Duration::MAX
        } else {
            Duration::from_secs(15)
        };
        sink_idle(&mut s, None, idle).await
        // Dropped here: the peer closes its side after our EOF.
    });
    let mut c = within(30, "connect", lab.connect(Side::A, to))
        .await
        .unwrap();
    within(60, "write", c.write_all(payload(SEED_BYTES)))
        .await
        .unwrap();
    let close = if graceful {
        Some(
            within(
                90,
                "graceful close",
                c.graceful_close(Duration::from_secs(60)),
            )
            .await,
        )
    } else {
        drop(c);
        None
    };
    let what = if graceful {
        "seed peer (graceful close)"
    } else {
        "seed peer (plain drop)"
    };
    let got = within(90, what, peer).await.unwrap();
    (got, close)
}

/// Scenario 1: 2 % loss each way on a rate-limited link, 100+ runs: the graceful close
/// delivers all 1,000,000 bytes and EOF every time. A plain drop is measured alongside
/// (the control: printed, only sanity-checked).
#[test]
fn seed_experiment_over_lossy_link() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new()
            .rate_kbit(100_000)
            .queue(1024 * 1024)
            .loss(2);
        let lab = Arc::new(lab_or_skip!(cfg));
        let started = Instant::now();
        let slots = Arc::new(Semaphore::new(16));
        let mut runs = JoinSet::new();
        for i in 0..2 * SEED_RUNS {
            let (lab, slots) = (lab.clone(), slots.clone());
            runs.spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                let graceful = i % 2 == 0;
                (graceful, seed_run(lab, graceful).await)
            });
        }
        let mut elapsed = Vec::new();
        let mut control = Vec::new();
        let mut silent = 0;
        let mut failures = Vec::new();
        while let Some(run) = within(170, "seed runs", runs.join_next()).await {
            let (graceful, (got, close)) = run.expect("seed run panicked");
            assert!(
                got.bytes <= SEED_BYTES && got.intact,
                "corrupt stream: {got:?}"
            );
            if graceful {
                let ok = match &close {
                    Some(Ok(r)) => {
                        elapsed.push(r.elapsed());
                        r.acked()
                            && r.peer_eof()
                            && r.unacked_bytes() == Some(0)
                            && r.drained_bytes() == GREETING.len() as u64
                            && !r.aborted()
                    }
                    _ => false,
                };
                if !ok || got.bytes != SEED_BYTES || got.end != End::Eof {
                    failures.push(format!("{got:?} {close:?}"));
                }
            } else {
                control.push(SEED_BYTES - got.bytes);
                silent += usize::from(got.end == End::Silent);
            }
        }
        let lossy: Vec<usize> = control.iter().copied().filter(|&l| l > 0).collect();
        let total: usize = lossy.iter().sum();
        eprintln!(
            "seed: graceful {}/{} runs delivered 1,000,000 bytes + EOF; close elapsed {}",
            SEED_RUNS - failures.len(),
            SEED_RUNS,
            stats(elapsed)
        );
        eprintln!(
            "seed control (plain drop): {}/{} runs lost data, {} bytes lost in total \
         (per losing run: min {} / max {}); {silent} left the peer half-open (RST lost); \
         wall time {}",
            lossy.len(),
            control.len(),
            total,
            lossy.iter().min().unwrap_or(&0),
            lossy.iter().max().unwrap_or(&0),
            secs(started.elapsed())
        );
        assert_eq!(control.len(), SEED_RUNS);
        assert!(
            failures.is_empty(),
            "{} graceful runs lost data or failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}

// ===== 2. a large unacknowledged tail =====

/// Scenario 2: several MB still queued at close: `Ok` only after the last ACK, so the
/// close takes about as long as the link needs to carry the tail.
#[test]
fn large_tail_is_acked_at_link_rate() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(16_000).queue(256 * 1024);
        let lab = lab_or_skip!(cfg);
        big_send_buffers(&lab, Side::A);
        const TAIL: usize = 5 << 20;

        let l = lab.listen(Side::B, 0).unwrap();
        let to = addr(&l);
        let received = Arc::new(AtomicUsize::new(0));
        let progress = received.clone();
        let peer = tokio::spawn(async move {
            let mut s = accept(&l).await;
            let got = sink(&mut s, Some(&progress)).await;
            (got, Instant::now())
        });
        let mut c = within(10, "connect", lab.connect(Side::A, to))
            .await
            .unwrap();
        within(10, "write", c.write_all(payload(TAIL)))
            .await
            .unwrap();
        let queued = c.unacked_bytes().unwrap();
        let close = within(
            60,
            "graceful close",
            c.graceful_close(Duration::from_secs(45)),
        )
        .await;
        let closed_at = Instant::now();
        let at_ok = received.load(Ordering::SeqCst);
        let (got, eof_at) = within(10, "peer", peer).await.unwrap();

        let report = close.expect("the large tail is delivered");
        let rate = lab.config().bytes_per_sec().unwrap();
        let expected = Duration::from_secs_f64(queued as f64 / rate);
        eprintln!(
            "large tail: {queued} bytes unacknowledged at close; Ok after {} \
         (link needs >= {} at {} kB/s); peer had read {at_ok} bytes at Ok",
            secs(report.elapsed()),
            secs(expected),
            rate / 1000.0
        );
        assert!(queued >= 3 << 20, "only {queued} bytes queued at close");
        assert_eq!((got.bytes, got.end, got.intact), (TAIL, End::Eof, true));
        assert!(report.acked() && report.peer_eof() && !report.aborted());
        assert_eq!(report.unacked_bytes(), Some(0));
        // Not faster than the link can carry the tail (Ok before the last ACK would be),
        // and not absurdly slower.
        assert!(
            report.elapsed() >= expected.mul_f64(0.8),
            "Ok after {:?}, before the link could carry {queued} bytes ({expected:?})",
            report.elapsed()
        );
        assert!(
            report.elapsed() <= expected.mul_f64(3.0) + Duration::from_secs(3),
            "Ok only after {:?} for {expected:?} of data",
            report.elapsed()
        );
        // The peer's kernel had every byte before our Ok: its EOF comes at most a moment later.
        assert!(
            eof_at <= closed_at + Duration::from_millis(500),
            "the peer saw EOF {:?} after our Ok",
            eof_at - closed_at
        );
    });
}

// ===== 3. link cut mid-close =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Both veth ends down.
    Cut,
    /// Links up, every packet dropped on arrival.
    Blackhole,
    /// Links up, every TCP segment answered with ICMP host-unreachable (what a router
    /// says about a host that is gone).
    Unreachable,
}

/// Starts a close of `total` bytes to a peer that closed its side at once and reads
/// everything, takes the link away after `after`, and returns the close result and
/// the time from the outage to the result.
async fn close_across_outage(
    lab: Lab,
    outage: Outage,
    opts: CloseOptions,
) -> (Result<CloseReport, CloseError>, Duration, usize) {
    big_send_buffers(&lab, Side::A);
    const TOTAL: usize = 2 << 20;
    let l = lab.listen(Side::B, 0).unwrap();
    let to = addr(&l);
    let received = Arc::new(AtomicUsize::new(0));
    let progress = received.clone();
    let peer = tokio::spawn(async move {
        let mut s = accept(&l).await;
        s.shutdown().await.unwrap(); // our drain sees EOF at once: the close waits for ACKs
        sink(&mut s, Some(&progress)).await
    });
    let mut c = within(10, "connect", lab.connect(Side::A, to))
        .await
        .unwrap();
    within(10, "write", c.write_all(payload(TOTAL)))
        .await
        .unwrap();
    let close = tokio::spawn(c.graceful_close_with(opts));
    tokio::time::sleep(Duration::from_millis(600)).await;
    match outage {
        Outage::Cut => lab.cut().unwrap(),
        Outage::Blackhole => lab.blackhole(true).unwrap(),
        Outage::Unreachable => lab.unreachable(true).unwrap(),
    }
    let cut_at = Instant::now();
    let at_cut = received.load(Ordering::SeqCst);
    assert!(
        at_cut < TOTAL,
        "transfer finished before the outage: {at_cut}"
    );
    let res = within(30, "close across an outage", close).await.unwrap();
    let after = cut_at.elapsed();
    // The peer never hears from us again: stop it (its socket goes with the task).
    peer.abort();
    let _ = peer.await;
    drop(lab);
    (res, after, at_cut)
}

const USER_TIMEOUT: Duration = Duration::from_secs(1);
const LONG_DEADLINE: Duration = Duration::from_secs(12);
const CUT_DEADLINE: Duration = Duration::from_secs(3);

/// Scenario 3 with `user_timeout`: the close fails with `RetransmitTimeout` about that
/// long after the outage, long before its deadline.
async fn outage_with_user_timeout(outage: Outage) {
    let lab = lab_or_skip!(LabConfig::new().rate_kbit(8_000).queue(256 * 1024));
    let opts = CloseOptions::new(LONG_DEADLINE).user_timeout(USER_TIMEOUT);
    let (res, after, at_cut) = close_across_outage(lab, outage, opts).await;
    let err = res.expect_err("nothing can be acknowledged across the outage");
    let r = err.report();
    eprintln!(
        "link {outage:?}, user_timeout 1 s: {:?} {} after the outage (close elapsed {}, \
         {:?} bytes unacked, peer had {at_cut} bytes): {err}",
        err.kind(),
        secs(after),
        secs(r.elapsed()),
        r.unacked_bytes()
    );
    assert!(!r.acked());
    assert!(
        after >= USER_TIMEOUT / 2 && after <= USER_TIMEOUT + Duration::from_millis(2500),
        "not promptly after the user timeout: {after:?} after the outage: {err:?}"
    );
    assert!(
        r.elapsed() < LONG_DEADLINE - Duration::from_secs(5),
        "waited for the deadline: {err:?}"
    );
    // The kernel gave up retransmitting: that is a timeout, whatever errno it reports.
    assert!(
        err.kind().is_timeout(),
        "the kernel's TCP_USER_TIMEOUT give-up is not a timeout-kind error: {err:?}"
    );
    assert_eq!(err.kind(), CloseErrorKind::RetransmitTimeout, "{err:?}");
}

/// Scenario 3 without `user_timeout`: the close fails at its deadline and the report
/// says what was outstanding.
async fn outage_without_user_timeout(outage: Outage) {
    let lab = lab_or_skip!(LabConfig::new().rate_kbit(8_000).queue(256 * 1024));
    let opts = CloseOptions::new(CUT_DEADLINE);
    let (res, after, at_cut) = close_across_outage(lab, outage, opts).await;
    let err = res.expect_err("nothing can be acknowledged across the outage");
    let r = err.report();
    eprintln!(
        "link {outage:?}, no user_timeout: {:?} {} after the outage (close elapsed {}, \
         {:?} bytes unacked, peer had {at_cut} bytes): {err}",
        err.kind(),
        secs(after),
        secs(r.elapsed()),
        r.unacked_bytes()
    );
    assert!(err.kind().is_timeout(), "{err:?}");
    assert_eq!(
        err.kind(),
        CloseErrorKind::TimedOut(ClosePhase::AckWait),
        "{err:?}"
    );
    assert!(!r.acked());
    assert!(
        r.elapsed() >= CUT_DEADLINE && r.elapsed() <= CUT_DEADLINE + Duration::from_millis(1500),
        "not at the deadline: {err:?}"
    );
    assert!(
        r.unacked_bytes().is_some_and(|n| n > 0),
        "the report does not tell what was outstanding: {err:?}"
    );
}

/// Scenario 3: the cable is cut (both veth ends down) mid-close, `user_timeout` set.
#[test]
fn link_cut_mid_close_user_timeout() {
    lab_test(Gate::Shared, async {
        outage_with_user_timeout(Outage::Cut).await;
    });
}

/// Scenario 3: the link is black-holed mid-close, `user_timeout` set.
#[test]
fn link_blackholed_mid_close_user_timeout() {
    lab_test(Gate::Shared, async {
        outage_with_user_timeout(Outage::Blackhole).await;
    });
}

/// Scenario 3: the far host becomes unreachable (ICMP host-unreachable) mid-close,
/// `user_timeout` set.
#[test]
fn host_unreachable_mid_close_user_timeout() {
    lab_test(Gate::Shared, async {
        outage_with_user_timeout(Outage::Unreachable).await;
    });
}

/// Scenario 3: the far host becomes unreachable mid-close, no `user_timeout`: fails at
/// the deadline.
#[test]
fn host_unreachable_mid_close_deadline() {
    lab_test(Gate::Shared, async {
        outage_without_user_timeout(Outage::Unreachable).await;
    });
}

/// Scenario 3: the cable is cut mid-close, no `user_timeout`: fails at the deadline.
#[test]
fn link_cut_mid_close_deadline() {
    lab_test(Gate::Shared, async {
        outage_without_user_timeout(Outage::Cut).await;
    });
}

/// Scenario 3: the link is black-holed mid-close, no `user_timeout`: fails at the deadline.
#[test]
fn link_blackholed_mid_close_deadline() {
    lab_test(Gate::Shared, async {
        outage_without_user_timeout(Outage::Blackhole).await;
    });
}

// ===== 4. peer reset mid-transfer =====

/// Scenario 4: the peer resets in the middle of a lossy transfer: `PeerReset`, promptly.
#[test]
fn peer_reset_mid_lossy_transfer() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(20_000).queue(256 * 1024).loss(2);
        let lab = Arc::new(lab_or_skip!(cfg));
        big_send_buffers(&lab, Side::A);
        const RUNS: usize = 10;
        const TOTAL: usize = 3 << 20;
        const RESET_AFTER: usize = 300_000;

        let mut runs = JoinSet::new();
        for _ in 0..RUNS {
            let lab = lab.clone();
            runs.spawn(async move {
                let l = lab.listen(Side::B, 0).unwrap();
                let to = addr(&l);
                let peer = tokio::spawn(async move {
                    let mut s = accept(&l).await;
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut n = 0;
                    while n < RESET_AFTER {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return Err(n),
                            Ok(k) => n += k,
                        }
                    }
                    let at = Instant::now();
                    reset(s);
                    Ok(at)
                });
                let mut c = within(30, "connect", lab.connect(Side::A, to))
                    .await
                    .unwrap();
                within(10, "write", c.write_all(payload(TOTAL)))
                    .await
                    .unwrap();
                let res = within(40, "close", c.graceful_close(Duration::from_secs(30))).await;
                let done = Instant::now();
                let reset_at = within(10, "peer", peer).await.unwrap().expect("peer reads");
                (res, done.saturating_duration_since(reset_at))
            });
        }
        let mut delays = Vec::new();
        let mut into_close = Vec::new();
        while let Some(run) = within(90, "reset runs", runs.join_next()).await {
            let (res, delay) = run.unwrap();
            let err = res.expect_err("a reset connection cannot be Ok");
            assert_eq!(err.kind(), CloseErrorKind::PeerReset, "{err:?}");
            assert!(!err.report().acked() && !err.report().aborted());
            // The reset came in the middle of the close, not before it started.
            assert!(
                err.report().elapsed() >= Duration::from_millis(50),
                "the close was not running when the peer reset: {err:?}"
            );
            assert!(
                delay < Duration::from_secs(3),
                "PeerReset {delay:?} after the reset: {err:?}"
            );
            delays.push(delay);
            into_close.push(err.report().elapsed());
        }
        eprintln!(
            "peer reset: {RUNS} runs, PeerReset {} after the RST; the close had run {}",
            stats(delays),
            stats(into_close)
        );
    });
}

// ===== 5. the peer keeps sending after our FIN =====

/// Scenario 5 (the "Linux 3.9.4" case): the peer sends data before and after our FIN;
/// the drain keeps reading, so our queued data still arrives in full, then both EOFs.
#[test]
fn peer_sends_after_our_fin() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(20_000).queue(256 * 1024).loss(2);
        let lab = Arc::new(lab_or_skip!(cfg));
        const RUNS: usize = 10;
        const OURS: usize = 1_000_000;
        const AFTER_FIN: usize = 256 * 1024;

        let mut runs = JoinSet::new();
        for _ in 0..RUNS {
            let lab = lab.clone();
            runs.spawn(async move {
                let l = lab.listen(Side::B, 0).unwrap();
                let to = addr(&l);
                let peer = tokio::spawn(async move {
                    let s = accept(&l).await;
                    let (rd, mut wr) = s.into_split();
                    let eof = Arc::new(AtomicBool::new(false));
                    let seen = eof.clone();
                    let writer = tokio::spawn(async move {
                        let chunk = vec![b'p'; 16 * 1024];
                        let mut sent = 0usize;
                        let mut after = 0usize;
                        while after < AFTER_FIN {
                            wr.write_all(&chunk).await?;
                            sent += chunk.len();
                            if seen.load(Ordering::SeqCst) {
                                after += chunk.len();
                            }
                        }
                        wr.shutdown().await?;
                        io::Result::Ok((sent, after))
                    });
                    let got = {
                        let mut s = rd;
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut n = 0usize;
                        let mut intact = true;
                        let end = loop {
                            match s.read(&mut buf).await {
                                Ok(0) => break End::Eof,
                                Ok(k) => {
                                    intact &= buf[..k]
                                        .iter()
                                        .enumerate()
                                        .all(|(i, &b)| b == ((n + i) % 251) as u8);
                                    n += k;
                                }
                                Err(e) => break End::Failed(e.kind()),
                            }
                        };
                        eof.store(true, Ordering::SeqCst);
                        Received {
                            bytes: n,
                            end,
                            intact,
                        }
                    };
                    let sent = within(30, "peer writer", writer).await.unwrap();
                    (got, sent)
                });
                let mut c = within(30, "connect", lab.connect(Side::A, to))
                    .await
                    .unwrap();
                within(30, "write", c.write_all(payload(OURS)))
                    .await
                    .unwrap();
                let res = within(60, "close", c.graceful_close(Duration::from_secs(45))).await;
                let (got, sent) = within(30, "peer", peer).await.unwrap();
                (res, got, sent)
            });
        }
        let mut drained = Vec::new();
        while let Some(run) = within(120, "runs", runs.join_next()).await {
            let (res, got, sent) = run.unwrap();
            let (sent, after) = sent.expect("the peer's writes after our FIN were accepted");
            assert_eq!(
                (got.bytes, got.end, got.intact),
                (OURS, End::Eof, true),
                "our data did not arrive in full"
            );
            assert!(after >= AFTER_FIN);
            let r = res.expect("graceful close while the peer keeps sending");
            assert!(r.acked() && r.peer_eof());
            assert_eq!(
                r.drained_bytes(),
                sent as u64,
                "the drain must read every byte the peer sent"
            );
            drained.push(r.drained_bytes());
        }
        eprintln!("peer sends after our FIN: {RUNS} runs, drained bytes per run {drained:?}");
    });
}

// ===== 6. zero window =====

/// Scenario 6: a peer that never reads (zero window, persist probes): the ACK wait times
/// out; with `OnTimeout::Abort` the socket is gone at once, while with `Close` (the
/// control, proving the check can fail) an orphan lingers in FIN_WAIT1.
#[test]
fn zero_window_peer_abort_frees_socket() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(20_000).queue(256 * 1024);
        let lab = Arc::new(lab_or_skip!(cfg));
        big_send_buffers(&lab, Side::A);
        const WRITTEN: usize = 512 * 1024;
        const DEADLINE: Duration = Duration::from_millis(1500);

        let l = lab
            .listen_with(Side::B, 0, |s| s.set_recv_buffer_size(4096))
            .unwrap();
        let to = addr(&l);
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        let acceptor = tokio::spawn(async move {
            for _ in 0..2 {
                let s = accept(&l).await; // never read
                keep.lock().unwrap().push(s);
            }
        });

        let mut outcomes = Vec::new();
        for abort in [true, false] {
            let mut c = within(10, "connect", lab.connect(Side::A, to))
                .await
                .unwrap();
            let local = match c.local_addr().unwrap() {
                SocketAddr::V4(a) => a,
                a => panic!("{a}"),
            };
            within(10, "write", c.write_all(payload(WRITTEN)))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await; // the window closes
            let mut opts = CloseOptions::new(DEADLINE).require_peer_eof(false);
            opts = if abort {
                opts.on_timeout(OnTimeout::Abort)
            } else {
                // The orphan must die on its own soon after the check, not linger for minutes.
                opts.on_timeout(OnTimeout::Close)
                    .user_timeout(Duration::from_secs(4))
            };
            let err = within(10, "close", c.graceful_close_with(opts))
                .await
                .expect_err("a peer that never reads cannot acknowledge everything");
            let left: Vec<_> = lab
                .tcp_table(Side::A)
                .unwrap()
                .into_iter()
                .filter(|e| e.local == local)
                .collect();
            eprintln!(
                "zero window, {}: {:?} after {}, {:?} bytes unacked, sockets left on A: {left:?}",
                if abort { "Abort" } else { "Close (control)" },
                err.kind(),
                secs(err.report().elapsed()),
                err.report().unacked_bytes()
            );
            assert_eq!(
                err.kind(),
                CloseErrorKind::TimedOut(ClosePhase::AckWait),
                "{err:?}"
            );
            assert!(err.report().elapsed() >= DEADLINE);
            assert!(err
                .report()
                .unacked_bytes()
                .is_some_and(|n| n > WRITTEN / 2));
            assert_eq!(err.report().aborted(), abort);
            outcomes.push((abort, left));
        }
        within(10, "acceptor", acceptor).await.unwrap();
        for (abort, left) in outcomes {
            if abort {
                assert!(left.is_empty(), "Abort left a socket behind: {left:?}");
            } else {
                assert!(
                    left.iter().any(|e| e.state == 4 && e.inode == 0),
                    "the control should leave an orphan in FIN_WAIT1: {left:?}"
                );
            }
        }
        drop(held);
    });
}

/// Scenario 6 with `user_timeout`: the kernel stops probing the zero window after that
/// long and the close fails at once with `RetransmitTimeout`, not at its deadline.
#[test]
fn zero_window_peer_user_timeout() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(20_000).queue(256 * 1024);
        let lab = lab_or_skip!(cfg);
        big_send_buffers(&lab, Side::A);
        const DEADLINE: Duration = Duration::from_secs(10);
        let l = lab
            .listen_with(Side::B, 0, |s| s.set_recv_buffer_size(4096))
            .unwrap();
        let to = addr(&l);
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let acceptor = tokio::spawn(async move {
            let s = accept(&l).await; // never read
            let _ = held_rx.await;
            drop(s);
        });
        let mut c = within(10, "connect", lab.connect(Side::A, to))
            .await
            .unwrap();
        within(10, "write", c.write_all(payload(512 * 1024)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await; // the window closes
        let opts = CloseOptions::new(DEADLINE)
            .require_peer_eof(false)
            .user_timeout(USER_TIMEOUT);
        let err = within(20, "close", c.graceful_close_with(opts))
            .await
            .expect_err("a peer that never reads cannot acknowledge everything");
        eprintln!(
            "zero window, user_timeout 1 s: {:?} after {}: {err}",
            err.kind(),
            secs(err.report().elapsed())
        );
        let _ = held_tx.send(());
        within(10, "acceptor", acceptor).await.unwrap();
        assert_eq!(err.kind(), CloseErrorKind::RetransmitTimeout, "{err:?}");
        // Probing began before the close, so the kernel may give up sooner than 1 s in.
        assert!(
            err.report().elapsed() <= USER_TIMEOUT + Duration::from_millis(2500),
            "not promptly after the user timeout: {err:?}"
        );
        assert!(!err.report().acked());
    });
}

// ===== wait_acked over the link =====

/// `wait_acked` is a delivery barrier over a slow link: it returns when the peer's
/// kernel has everything (not before the link could carry it), and `SIOCOUTQ` is 0.
#[test]
fn wait_acked_is_a_delivery_barrier() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(8_000).queue(256 * 1024);
        let lab = lab_or_skip!(cfg);
        big_send_buffers(&lab, Side::A);
        let l = lab.listen(Side::B, 0).unwrap();
        let to = addr(&l);
        let peer = tokio::spawn(async move {
            let mut s = accept(&l).await;
            sink(&mut s, None).await
        });
        let mut c = within(10, "connect", lab.connect(Side::A, to))
            .await
            .unwrap();
        within(10, "write", c.write_all(payload(1 << 20)))
            .await
            .unwrap();
        let queued = c.unacked_bytes().unwrap();
        let start = Instant::now();
        within(20, "wait_acked", c.wait_acked(Duration::from_secs(15)))
            .await
            .expect("everything acknowledged");
        let took = start.elapsed();
        let left = c.unacked_bytes().unwrap();
        let rate = lab.config().bytes_per_sec().unwrap();
        let expected = Duration::from_secs_f64(queued as f64 / rate);
        eprintln!(
            "wait_acked: {queued} bytes unacknowledged -> Ok after {} (link needs >= {}), \
             {left} left",
            secs(took),
            secs(expected)
        );
        assert!(queued >= 512 * 1024, "only {queued} bytes queued");
        assert_eq!(left, 0);
        assert!(
            took >= expected.mul_f64(0.8),
            "Ok after {took:?} < {expected:?}"
        );
        c.shutdown().await.unwrap();
        let got = within(10, "peer", peer).await.unwrap();
        assert_eq!((got.bytes, got.end, got.intact), (1 << 20, End::Eof, true));
    });
}

// ===== 7. a thousand at once =====

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Raises the soft `RLIMIT_NOFILE` to at least `want` (up to the hard limit): 1,000
/// connections need over 2,000 descriptors, more than a common soft limit of 1,024.
fn raise_fd_limit(want: u64) {
    use nix::libc;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: `lim` is a valid, writable rlimit for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        // Safety: `lim` is a valid rlimit; raising the soft limit up to the hard one
        // needs no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// Scenario 7: 1,000 concurrent graceful closes over the shaped link all succeed, and
/// no file descriptor leaks.
#[test]
fn thousand_concurrent_closes_no_fd_leak() {
    lab_test(Gate::Exclusive, async {
        if let Some(reason) = lab::skip_reason() {
            lab::skip(&reason);
            return;
        }
        const N: usize = 1000;
        const EACH: usize = 16 * 1024;
        raise_fd_limit(4 * N as u64);
        let before = open_fds();
        {
            let cfg = LabConfig::new().rate_kbit(50_000).queue(512 * 1024);
            let lab = lab_or_skip!(cfg);
            let l = Arc::new(lab.listen(Side::B, 0).unwrap());
            let to = addr(&l);
            let sockets = lab.tcp_sockets(Side::A, N).unwrap();
            let start = Instant::now();

            let acceptor = {
                let l = l.clone();
                tokio::spawn(async move {
                    let mut peers = JoinSet::new();
                    for _ in 0..N {
                        let mut s = accept(&l).await;
                        peers.spawn(async move {
                            s.write_all(GREETING).await.unwrap();
                            sink(&mut s, None).await
                        });
                    }
                    let mut got = Vec::new();
                    while let Some(r) = peers.join_next().await {
                        got.push(r.unwrap());
                    }
                    got
                })
            };
            let mut clients = JoinSet::new();
            for sock in sockets {
                clients.spawn(async move {
                    let mut c = sock.connect(to).await?;
                    c.write_all(payload(EACH)).await?;
                    c.graceful_close(Duration::from_secs(60))
                        .await
                        .map_err(io::Error::from)
                });
            }
            let mut ok = 0;
            let mut elapsed = Vec::new();
            let mut errors = Vec::new();
            while let Some(r) = within(120, "1,000 closes", clients.join_next()).await {
                match r.unwrap() {
                    Ok(report) if report.acked() && report.peer_eof() => {
                        ok += 1;
                        elapsed.push(report.elapsed());
                    }
                    other => errors.push(format!("{other:?}")),
                }
            }
            let got = within(30, "peers", acceptor).await.unwrap();
            let wall = start.elapsed();
            eprintln!(
                "1,000 concurrent closes: {ok} Ok, wall time {} (connect+write+close), close \
             elapsed {}",
                secs(wall),
                stats(elapsed)
            );
            assert!(
                errors.is_empty(),
                "{} failed: {:?}",
                errors.len(),
                &errors[..errors.len().min(5)]
            );
            assert_eq!(ok, N);
            assert_eq!(got.len(), N);
            assert!(got
                .iter()
                .all(|g| g.bytes == EACH && g.end == End::Eof && g.intact));
            drop(l);
        }
        // Every socket of the test (1,000 clients, 1,000 peers, the listener) is closed.
        let after = open_fds();
        eprintln!("fds: {before} before, {after} after");
        assert!(
            after <= before,
            "fd leak: {before} open before, {after} after"
        );
    });
}
