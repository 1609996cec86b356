//! Figure 4 — cost per clean close: syscalls and CPU from shutdown to close, and
//! the exact syscall sequences under `strace`.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::contenders::Strategy::{self, *};
use crate::contenders::{all_strategies, close, Knobs};
use crate::harness::{
    accept, connect, listener, read_to_end, rotation, run_child_with_deadline, runtime, secs,
};
use crate::support::{self, ratio, table, Samples};
use crate::Cfg;

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

pub(crate) fn run(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
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
    let whens = [PeerClose::Before, PeerClose::AfterOurFin];
    // Interleaved, rotating which goes first, so that no strategy is measured in a
    // block of its own (right after the trace child, say).
    let runs_of = |st: Strategy| {
        if st.is_slow() {
            cfg.n(2, 6)
        } else {
            cfg.n(20, 200)
        }
    };
    let rounds = strategies.iter().map(|&st| runs_of(st)).max().unwrap_or(0);
    let mut costs: Vec<[Vec<Cost>; 2]> = strategies.iter().map(|_| Default::default()).collect();
    for r in 0..rounds {
        for j in rotation(r, strategies.len()) {
            let st = strategies[j];
            if r >= runs_of(st) {
                continue;
            }
            for (i, &when) in whens.iter().enumerate() {
                costs[j][i].push(cost_run(rt, st, when, counter.as_ref(), overhead));
            }
        }
    }
    let mut ours = [(f64::NAN, f64::NAN); 2];
    for (st, costs) in strategies.iter().copied().zip(costs) {
        let mut row = vec![st.name()];
        for (i, runs) in costs.into_iter().enumerate() {
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
pub(crate) fn child_trace() {
    let rt = runtime();
    // Warm-up, unmarked: one-time costs (per-thread caches, the runtime's first timer)
    // stay out of the traced closes.
    rt.block_on(async {
        let (c, _rx) = clean_pair(PeerClose::AfterOurFin).await;
        close(Ours, c, Knobs::default()).await;
    });
    thread::sleep(Duration::from_millis(100)); // the warm-up's sockets settle
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
