//! Figure 8 — the tail against the simplest drain-and-close: ours and an nginx-style
//! close (half-close, read to EOF, drop: no ACK check) interleaved in one process, a
//! 64 KiB response the peer reads whole before closing. Close latency and the runtime
//! thread's CPU per close, median and p99.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::contenders::Strategy::{self, *};
use crate::contenders::{close, Knobs};
use crate::harness::{accept, read_to_end, secs, Net};
use crate::support::{fmt_secs, table, thread_cpu_precise, Samples};
use crate::Cfg;

const RESPONSE: usize = 64 * 1024;

/// One close; (latency, CPU of the runtime thread) from the start of the close to the
/// descriptor's release.
fn run_one(rt: &tokio::runtime::Runtime, st: Strategy) -> (f64, f64) {
    let l = Net::Loopback.listener(None);
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut p = accept(&l);
        let r = read_to_end(&mut p, RESPONSE);
        drop(p);
        let _ = tx.send(r);
    });
    let out = rt.block_on(async {
        let mut c = Net::Loopback.connect(addr).await;
        c.write_all(&vec![b'r'; RESPONSE]).await.expect("write");
        let (t, cpu) = (std::time::Instant::now(), thread_cpu_precise());
        close(st, c, Knobs::default()).await;
        (secs(t.elapsed()), secs(thread_cpu_precise() - cpu))
    });
    let _ = rx.recv_timeout(Duration::from_secs(30));
    out
}

pub(crate) fn run(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let n = cfg.n(60, 400);
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
