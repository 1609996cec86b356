//! Figure 5 — scale: many concurrent pending closes in one process, with memory per
//! close.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_graceful_close::GracefulClose;

use crate::alloc::live_heap;
use crate::contenders::Strategy::{self, *};
use crate::contenders::{selected, spawn_close, Knobs, FIRST_POLLS, FUTURE_SIZE};
use crate::harness::{
    announce_peer_listeners, run_child_with_deadline, runtime, spawn_peer_helper,
};
use crate::support::{self, fmt_secs, ratio, table};
use crate::Cfg;

pub(crate) fn run(cfg: &Cfg) {
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
        "Each cell is a fresh child process (current-thread runtime) holding only its own sockets; the peers live in a helper process behind 8 listeners on 127.0.0.1–8. Hard RLIMIT_NOFILE here: {} (50,000 closes need 50,000 descriptors in the closing process). Heap = live bytes of a counting global allocator after all closes were spawned and polled once, minus before (the task holding the future; the socket's Tokio registration is counted separately). `size_of::<GracefulClose<TcpStream>>()` = {} bytes, of which the `TcpStream` {}; with Tokio's task header and trailer it fits a {}-byte task. A waiting close arms one Tokio `Sleep` for its bounds, a {}-byte box (the part after the + in the heap column). Start = spawning + first poll of all closes; finish = the peers close, until the last close completed. Peak RSS = VmHWM of the child.",
        support::nofile_hard(),
        std::mem::size_of::<GracefulClose<TcpStream>>(),
        std::mem::size_of::<TcpStream>(),
        task_cell(std::mem::size_of::<GracefulClose<TcpStream>>()),
        std::mem::size_of::<tokio::time::Sleep>(),
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

/// The bytes Tokio allocates for a task whose future is `future` bytes: header (32),
/// scheduler and id (16), the stage's tag (8), trailer (48), the whole aligned to 128
/// bytes on x86_64 and aarch64 (`tokio/src/runtime/task/core.rs`, `Cell`).
fn task_cell(future: usize) -> usize {
    (future + 104).div_ceil(128) * 128
}

/// The peers of figure 5 live in a helper process, so that the closing process holds
/// only its own sockets (RLIMIT_NOFILE is per process).
pub(crate) fn child_peers(n: usize) {
    use std::io::BufRead;
    support::raise_nofile(n as u64 + 1024);
    let listeners = announce_peer_listeners();
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

pub(crate) fn child(st: Strategy, n: usize) {
    use std::io::BufRead;
    let limit = support::raise_nofile(n as u64 + 1024);
    let (helper, mut helper_out, addrs) = spawn_peer_helper(&format!("fig5peers:{n}"), limit);
    let mut line = String::new();
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
