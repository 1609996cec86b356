//! Figure 8 — the tail against the simplest drain-and-close: ours and an nginx-style
//! close (half-close, read to EOF, drop: no ACK check) interleaved in one process, a
//! 64 KiB response the peer reads whole before closing; beside them the nginx-style
//! close plus the one `ioctl` of our ACK check, and the nginx-style close without a
//! deadline. Close latency and the runtime thread's CPU per close, median and p99.

use crate::contenders::selected;
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
    let n = cfg.n(500, 20000);
    let all = [Ours, Nginx(4096), NginxAck, NginxUnbounded];
    let mut lat: [Vec<f64>; 4] = Default::default();
    let mut cpu: [Vec<f64>; 4] = Default::default();
    for i in 0..n {
        // Interleaved, rotating which goes first.
        for k in 0..all.len() {
            let j = (i + k) % all.len();
            if !selected(all[j]) {
                continue; // TGC_BENCH_ONLY: one contender alone, for a profiler
            }
            let (l, c) = run_one(rt, all[j]);
            lat[j].push(l);
            cpu[j].push(c);
        }
    }
    let s = |v: &Vec<f64>| Samples::new(v.clone());
    let r = |a: f64, b: f64| match a / b {
        q if q.is_nan() => "n/a".to_string(),
        q => format!("{q:.2}×"),
    };
    let mut rows = Vec::new();
    for (what, v) in [("close latency", &lat), ("runtime thread CPU", &cpu)] {
        let (o, n, a, u) = (s(&v[0]), s(&v[1]), s(&v[2]), s(&v[3]));
        for (stat, f) in [
            ("median", Samples::median as fn(&Samples) -> f64),
            ("p99", Samples::p99),
        ] {
            rows.push(vec![
                format!("{what}, {stat}"),
                fmt_secs(f(&o)),
                fmt_secs(f(&n)),
                r(f(&o), f(&n)),
                fmt_secs(f(&a)),
                r(f(&o), f(&a)),
                fmt_secs(f(&u)),
                r(f(&o), f(&u)),
            ]);
        }
    }
    table(
        "Figure 8 — the tail: ours against an nginx-style close (no ACK check), interleaved",
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
        &[format!("{n} runs of each, rotating, one process, loopback; the peer reads the 64 KiB response whole, then closes. Ours does strictly more than the nginx-style close: it also confirms that the peer acknowledged our data and FIN, with one `ioctl(SIOCOUTQ)` after the EOF. The third contender is the nginx-style close with that one `ioctl` added: the price of the ACK check alone. The fourth is the nginx-style close without its deadline (no timer at all; unbounded, so no server would ship it): against the second, the price of a deadline kept as a Tokio timer per wait; ours keeps its bounds on the crate's deadline thread instead, and the rest of its gap to this one is the ACK check and the close's own work. The runtime keeps one unrelated timer pending, as a server's does. CPU: `CLOCK_THREAD_CPUTIME_ID` of the runtime thread around the close.")],
    );
}
