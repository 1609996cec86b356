//! Read/write throughput through `GracefulIo` against the bare `TcpStream`, measured in
//! the same run, rounds interleaved, as a ratio (target: at least 0.98).
//!
//! The ratios are medians over back-to-back pairs (bare time / wrapped time), by
//! wall-clock and by the thread's CPU time; the CPU-time ratio does not count the time
//! other processes of a shared machine took the CPU.
//!
//! ```text
//! cargo bench --bench passthrough            # PASSTHROUGH_ROUNDS=15 for more rounds
//! ```
//!
//! Each round moves the same bytes over a loopback connection with a writer and a reader
//! task on one current-thread runtime, once with bare streams on both ends and once with
//! `GracefulIo` on both ends (the order alternates). The close is not timed: this
//! measures what the wrapper costs while the connection is in use.

use std::hint::black_box;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::{CloseOptions, GracefulIo};

#[derive(Clone, Copy)]
enum Pattern {
    /// `write` and `read` of `chunk` bytes.
    Plain { chunk: usize },
    /// `write_vectored` of `slices` slices of `len` bytes, `read` of their total.
    Vectored { slices: usize, len: usize },
}

struct Case {
    name: &'static str,
    pattern: Pattern,
    total: usize,
}

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, a) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (c.unwrap(), a.unwrap().0)
}

/// Writes all of `bufs` with `write_vectored` (`IoSlice::advance_slices` is newer than
/// the crate's MSRV).
async fn write_all_vectored<W: AsyncWrite + Unpin>(w: &mut W, bufs: &[Vec<u8>]) {
    let (mut i, mut off) = (0, 0);
    while i < bufs.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(&bufs[i][off..])
            .chain(bufs[i + 1..].iter().map(|b| &b[..]))
            .map(IoSlice::new)
            .collect();
        let mut n = w.write_vectored(&slices).await.unwrap();
        assert!(n > 0);
        while n > 0 {
            let left = bufs[i].len() - off;
            if n >= left {
                n -= left;
                i += 1;
                off = 0;
            } else {
                off += n;
                n = 0;
            }
        }
    }
}

/// CPU time of the calling thread: `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`. Both tasks
/// run on this thread, so it counts the work of both ends (user and kernel) and not the
/// time other processes of a shared machine took the CPU.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: `ts` is a valid, writable `timespec`; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall-clock and thread CPU time of one transfer.
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
}

/// Moves `total` bytes from `w` to `r`; returns what it cost and the streams.
async fn transfer<W, R>(mut w: W, mut r: R, pattern: Pattern, total: usize) -> (Sample, W, R)
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
{
    let start = Instant::now();
    let cpu = thread_cpu();
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        match pattern {
            Pattern::Plain { chunk } => {
                let buf = vec![7u8; chunk];
                while sent < total {
                    w.write_all(&buf).await.unwrap();
                    sent += chunk;
                }
            }
            Pattern::Vectored { slices, len } => {
                let bufs = vec![vec![7u8; len]; slices];
                while sent < total {
                    write_all_vectored(&mut w, &bufs).await;
                    sent += slices * len;
                }
            }
        }
        w.flush().await.unwrap();
        w
    });
    let chunk = match pattern {
        Pattern::Plain { chunk } => chunk,
        Pattern::Vectored { slices, len } => slices * len,
    };
    let mut buf = vec![0u8; chunk];
    let mut got = 0;
    while got < total {
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0, "unexpected EOF");
        got += n;
    }
    black_box(&buf);
    let w = writer.await.unwrap();
    let sample = Sample {
        wall: start.elapsed(),
        cpu: thread_cpu() - cpu,
    };
    (sample, w, r)
}

async fn run_bare(case: &Case) -> Sample {
    let (a, b) = pair().await;
    transfer(a, b, case.pattern, case.total).await.0
}

async fn run_wrapped(case: &Case) -> Sample {
    let (a, b) = pair().await;
    let opts = CloseOptions::new(Duration::from_secs(1));
    let a = GracefulIo::new(a, opts);
    let b = GracefulIo::new(b, opts);
    let (elapsed, a, b) = transfer(a, b, case.pattern, case.total).await;
    // Not timed, and no background close left running into the next round.
    drop((a.into_inner(), b.into_inner()));
    elapsed
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep it short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds: usize = std::env::var("PASSTHROUGH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 1 } else { 25 });
    let scale = if quick { 16 } else { 1 };
    let cases = [
        Case {
            name: "64 KiB read/write",
            pattern: Pattern::Plain { chunk: 64 << 10 },
            total: (256 << 20) / scale,
        },
        Case {
            name: "1 KiB read/write",
            pattern: Pattern::Plain { chunk: 1 << 10 },
            total: (32 << 20) / scale,
        },
        Case {
            name: "writev 4 x 256 B",
            pattern: Pattern::Vectored {
                slices: 4,
                len: 256,
            },
            total: (32 << 20) / scale,
        },
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("GracefulIo vs bare TcpStream, loopback, {rounds} interleaved rounds, medians\n");
    println!("| case | bare MiB/s | GracefulIo MiB/s | wall-clock ratio | CPU-time ratio |");
    println!("|---|---:|---:|---:|---:|");
    for case in &cases {
        let (mut bare, mut wrapped) = (Vec::new(), Vec::new());
        let (mut wall, mut cpu) = (Vec::new(), Vec::new());
        let mib = case.total as f64 / (1 << 20) as f64;
        rt.block_on(async {
            // One warm-up of each, not counted.
            run_bare(case).await;
            run_wrapped(case).await;
            for round in 0..rounds {
                let (b, w) = if round % 2 == 0 {
                    let b = run_bare(case).await;
                    (b, run_wrapped(case).await)
                } else {
                    let w = run_wrapped(case).await;
                    (run_bare(case).await, w)
                };
                bare.push(mib / b.wall.as_secs_f64());
                wrapped.push(mib / w.wall.as_secs_f64());
                // Throughput ratios of each back-to-back pair: bare time / wrapped time.
                wall.push(b.wall.as_secs_f64() / w.wall.as_secs_f64());
                cpu.push(b.cpu.as_secs_f64() / w.cpu.as_secs_f64());
            }
        });
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {:.3} |",
            case.name,
            median(bare),
            median(wrapped),
            median(wall),
            median(cpu)
        );
    }
}
