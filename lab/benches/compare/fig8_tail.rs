//! Figure 8 — the tail against the simplest drain-and-close: ours and an nginx-style
//! close (half-close, read to EOF, drop: no ACK check) interleaved in one process, a
//! 64 KiB response the peer reads whole before closing; beside them, each in its own
//! pair with ours, the nginx-style close plus the one `ioctl` of our ACK check, and the
//! nginx-style close without a deadline. Close latency and the runtime thread's CPU per
//! close, median and p99.

use crate::contenders::selected;
use crate::contenders::Strategy::{self, *};
use crate::fig2_latency::latency_run;
use crate::harness::{rotation, secs, Net};
use crate::support::{fmt_secs, table, Samples};
use crate::Cfg;

/// One close; (latency, CPU of the runtime thread), as figure 2 measures them.
fn run_one(rt: &tokio::runtime::Runtime, st: Strategy) -> (f64, f64) {
    let (lat, cpu) = latency_run(rt, st, Net::Loopback);
    (secs(lat), secs(cpu))
}

/// `n` closes of each of `pair`, interleaved, rotating which goes first: for each of
/// the two, its latency samples, then its CPU samples.
fn pair_run(rt: &tokio::runtime::Runtime, pair: [Strategy; 2], n: usize) -> [[Samples; 2]; 2] {
    let mut got: [[Vec<f64>; 2]; 2] = Default::default();
    for i in 0..n {
        for j in rotation(i, 2) {
            if !selected(pair[j]) {
                continue; // TGC_BENCH_ONLY: one contender alone, for a profiler
            }
            let (l, c) = run_one(rt, pair[j]);
            got[j][0].push(l);
            got[j][1].push(c);
        }
    }
    got.map(|side| side.map(Samples::new))
}

pub(crate) fn run(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let n = cfg.n(500, 20000);
    // Each comparison is its own pair. In one rotation of all four, the three
    // nginx-style variants (one function) kept each other's code and data in the caches
    // and ours, always following one of them, paid for its own coming back: ours /
    // nginx-style measured 1.08–1.13× at the median there, 1.04–1.06× as a pair.
    let pairs = [
        pair_run(rt, [Ours, Nginx(4096)], n),
        pair_run(rt, [Ours, NginxAck], n / 2),
        pair_run(rt, [Ours, NginxUnbounded], n / 2),
    ];
    let r = |a: f64, b: f64| match a / b {
        q if q.is_nan() => "n/a".to_string(),
        q => format!("{q:.2}×"),
    };
    let mut rows = Vec::new();
    for (m, what) in ["close latency", "runtime thread CPU"]
        .into_iter()
        .enumerate()
    {
        for (stat, f) in [
            ("median", Samples::median as fn(&Samples) -> f64),
            ("p99", Samples::p99),
        ] {
            // Ours (side 0) and the contender (side 1) of pair `p`.
            let v = |p: usize, side: usize| f(&pairs[p][side][m]);
            let mut row = vec![format!("{what}, {stat}"), fmt_secs(v(0, 0))];
            for p in 0..pairs.len() {
                row.extend([fmt_secs(v(p, 1)), r(v(p, 0), v(p, 1))]);
            }
            rows.push(row);
        }
    }
    table(
        "Figure 8 — the tail: ours against an nginx-style close (no ACK check), interleaved in pairs",
        &[
            "per close",
            "ours",
            "nginx-style",
            "ours / nginx-style",
            "nginx-style + one SIOCOUTQ",
            "ours / that",
            "nginx-style without a deadline",
            "ours / that",
        ],
        &rows,
        &[format!("One process, loopback; the peer reads the 64 KiB response whole, then closes. Each ratio comes from its own pair, ours and that contender interleaved, rotating which goes first: {n} runs of each for ours against nginx-style, {} for each of the other two pairs (a rotation of all four would let the three nginx-style variants, one function, keep each other's code warm). Ours does strictly more than the nginx-style close: it also confirms that the peer acknowledged our data and FIN, with one `ioctl(SIOCOUTQ)` after the EOF. The third contender is the nginx-style close with that one `ioctl` added: the price of the ACK check alone. The fourth is the nginx-style close without its deadline (no timer at all; unbounded, so no server would ship it): against the second, the price of a deadline kept as a Tokio timer per wait, which ours pays as well; the rest of its gap to this one is the ACK check and the close's own work. The runtime keeps one unrelated timer pending, as a server's does. CPU: `CLOCK_THREAD_CPUTIME_ID` of the runtime thread around the close.", n / 2)],
    );
}
