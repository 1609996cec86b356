//! Figure 8 — the tail against the simplest drain-and-close: ours and an nginx-style
//! close (half-close, read to EOF, drop: no ACK check) interleaved in one process, a
//! 64 KiB response the peer reads whole before closing. Close latency and the runtime
//! thread's CPU per close, median and p99.

use crate::contenders::Strategy::{self, *};
use crate::fig2_latency::latency_run;
use crate::harness::{secs, Net};
use crate::support::{fmt_secs, table, Samples};
use crate::Cfg;

/// One close; (latency, CPU of the runtime thread), as figure 2 measures them.
fn run_one(rt: &tokio::runtime::Runtime, st: Strategy) -> (f64, f64) {
    let (lat, cpu) = latency_run(rt, st, Net::Loopback);
    (secs(lat), secs(cpu))
}

pub(crate) fn run(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let n = cfg.n(100, 2000);
    let pair = [Ours, Nginx(4096)];
    let mut lat = [Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new()];
    for i in 0..n {
        // Interleaved, alternating which goes first.
        for k in 0..2 {
            let j = (i + k) % 2;
            let (l, c) = run_one(rt, pair[j]);
            lat[j].push(l);
            cpu[j].push(c);
        }
    }
    let s = |v: &Vec<f64>| Samples::new(v.clone());
    let (lo, ln, co, cn) = (s(&lat[0]), s(&lat[1]), s(&cpu[0]), s(&cpu[1]));
    let r = |a: f64, b: f64| format!("{:.2}×", a / b);
    let rows = vec![
        vec![
            "close latency".into(),
            fmt_secs(lo.median()),
            fmt_secs(ln.median()),
            r(lo.median(), ln.median()),
            fmt_secs(lo.p99()),
            fmt_secs(ln.p99()),
            r(lo.p99(), ln.p99()),
        ],
        vec![
            "runtime thread CPU".into(),
            fmt_secs(co.median()),
            fmt_secs(cn.median()),
            r(co.median(), cn.median()),
            fmt_secs(co.p99()),
            fmt_secs(cn.p99()),
            r(co.p99(), cn.p99()),
        ],
    ];
    table(
        "Figure 8 — the tail: ours against an nginx-style close (no ACK check), interleaved",
        &[
            "per close",
            "ours median",
            "nginx-style median",
            "ratio",
            "ours p99",
            "nginx-style p99",
            "ratio",
        ],
        &rows,
        &[format!("{n} runs of each, alternating, one process, loopback; the peer reads the 64 KiB response whole, then closes. Ours does strictly more: it also confirms that the peer acknowledged our data and FIN. CPU: `CLOCK_THREAD_CPUTIME_ID` of the runtime thread around the close.")],
    );
}
