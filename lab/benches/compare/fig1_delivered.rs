//! Figure 1 — data delivered: the seed experiment (unread greeting, 1,000,000
//! bytes written, close), with a fast and a busy peer.

use std::io::Write;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, Interest};

use crate::contenders::Strategy::{self, *};
use crate::contenders::{all_strategies, close, Knobs};
use crate::harness::{accept, connect, listener, read_to_end, secs, End};
use crate::support::{fmt_secs, ratio, table, Samples};
use crate::Cfg;

const GREETING: &[u8] = b"220 Welcome\r\n";
const SEED_BYTES: usize = 1_000_000;

struct SeedRun {
    received: usize,
    end: End,
    close: Duration,
}

/// How fast the seed peer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// As fast as it can, 64 KiB reads, on its own thread.
    Fast,
    /// A peer that does work per chunk: 16 KiB, then 1 ms of "processing" (~16 MB/s).
    Busy,
}

fn seed_run(rt: &tokio::runtime::Runtime, st: Strategy, reader: Reader) -> SeedRun {
    let (l, addr) = listener(None);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut p = accept(&l);
        let _ = p.write_all(GREETING);
        let r = match reader {
            Reader::Fast => read_to_end(&mut p, usize::MAX),
            Reader::Busy => {
                let mut n = 0;
                loop {
                    match read_to_end(&mut p, 16 * 1024) {
                        (k, End::Eof) if k == 16 * 1024 => n += k,
                        (k, end) => break (n + k, end),
                    }
                    thread::sleep(Duration::from_millis(1));
                }
            }
        };
        let _ = tx.send(r);
    });
    let close_time = rt.block_on(async {
        let mut c = connect(addr).await;
        // The greeting is there, unread, as in the seed experiment.
        let _ = tokio::time::timeout(Duration::from_secs(5), c.ready(Interest::READABLE)).await;
        let payload = vec![b'x'; SEED_BYTES];
        c.write_all(&payload).await.expect("write");
        let t = Instant::now();
        close(st, c, Knobs::default()).await;
        t.elapsed()
    });
    let (received, end) = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or((0, End::Other));
    SeedRun {
        received,
        end,
        close: close_time,
    }
}

pub(crate) fn run(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let mut rows = Vec::new();
    let mut ours_lat = f64::NAN;
    for st in all_strategies() {
        let n = cfg.runs_for(st, 5, 40);
        let mut row = vec![st.name(), n.to_string()];
        for reader in [Reader::Fast, Reader::Busy] {
            let runs: Vec<SeedRun> = (0..n).map(|_| seed_run(rt, st, reader)).collect();
            let lost = Samples::new(
                runs.iter()
                    .map(|r| (SEED_BYTES - r.received.min(SEED_BYTES)) as f64)
                    .collect(),
            );
            let lossy = lost.count_where(|x| x > 0.0);
            let resets = runs.iter().filter(|r| r.end != End::Eof).count();
            row.extend([
                format!("{lossy}/{n}"),
                format!("{:.0} / {:.0}", lost.median(), lost.p99()),
                format!("{:.0}", lost.sum() / n as f64),
                format!("{resets}/{n}"),
            ]);
            if reader == Reader::Busy {
                let lat = Samples::new(runs.iter().map(|r| secs(r.close)).collect());
                if st == Ours {
                    ours_lat = lat.median();
                }
                row.extend([fmt_secs(lat.median()), ratio(lat.median(), ours_lat)]);
            }
        }
        rows.push(row);
    }
    table(
        "Figure 1 — data delivered: the seed experiment (unread greeting, 1,000,000 bytes written, close)",
        &[
            "strategy",
            "runs",
            "fast peer: runs losing data",
            "bytes lost median / p99",
            "mean",
            "peer saw RST",
            "busy peer: runs losing data",
            "bytes lost median / p99",
            "mean",
            "peer saw RST",
            "close time median (busy)",
            "vs ours",
        ],
        &rows,
        &["Bytes lost = 1,000,000 − bytes the peer application read. Fast peer: reads 64 KiB at a time as fast as it can on its own thread (the best case for every contender). Busy peer: reads 16 KiB, then spends 1 ms on it (~16 MB/s). \"Peer saw RST\" counts reads that ended in ECONNRESET instead of EOF, even when no byte was lost.".into()],
    );
}
