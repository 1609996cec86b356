//! Figure 2 — close latency: start of the close to the descriptor's release, on
//! loopback and over the lab link.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::contenders::Strategy::{self, *};
use crate::contenders::{all_strategies, close, Knobs};
use crate::harness::{accept, build_lab, read_to_end, secs, Net, LAB_DESC};
use crate::support::{fmt_secs, ratio, table, thread_cpu_precise, Samples};
use crate::Cfg;

const RESPONSE: usize = 64 * 1024;

/// One close on a peer that reads the response (known length), then closes: time from
/// the start of the close to the descriptor's release, and the runtime thread's CPU
/// time meanwhile.
pub(crate) fn latency_run(
    rt: &tokio::runtime::Runtime,
    st: Strategy,
    net: Net<'_>,
) -> (Duration, Duration) {
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
        let (t, cpu) = (Instant::now(), thread_cpu_precise());
        close(st, c, Knobs::default()).await;
        (t.elapsed(), thread_cpu_precise() - cpu)
    });
    let _ = rx.recv_timeout(Duration::from_secs(30));
    d
}

pub(crate) fn run(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
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
            let lat = Samples::new((0..n).map(|_| secs(latency_run(rt, st, net).0)).collect());
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
