//! Figure 7 — drain throughput: CPU per GiB discarded from a flooding peer.

use std::io::Write;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use crate::contenders::Strategy::{self, *};
use crate::contenders::{close, selected, Knobs};
use crate::harness::{accept, connect, listener, read_to_end, secs};
use crate::support::{self, ratio, table, Samples};
use crate::Cfg;

pub(crate) fn run(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
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
