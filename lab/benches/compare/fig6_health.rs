//! Figure 6 — runtime health: lateness of a 1 ms ticker while closes wait on slow
//! peers.

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::contenders::Strategy::{self, *};
use crate::contenders::{close, selected, Knobs};
use crate::harness::{accept, connect, listener, read_to_end, secs};
use crate::support::{self, fmt_secs, ratio, table, Samples};
use crate::Cfg;

pub(crate) fn run(cfg: &Cfg, rt: &tokio::runtime::Runtime) {
    let n = cfg.n(200, 1000);
    let mut rows = Vec::new();
    let (mut ours_p99, mut ours_max) = (f64::NAN, f64::NAN);
    for st in [Ours, Drop, Nginx(4096), SoLinger] {
        if !selected(st) {
            continue;
        }
        let (late, total) = health_run(rt, st, n);
        if st == Ours {
            (ours_p99, ours_max) = (late.p99(), late.max());
        }
        rows.push(vec![
            st.name(),
            format!("{}", late.len()),
            fmt_secs(late.median()),
            fmt_secs(late.p99()),
            fmt_secs(late.max()),
            fmt_secs(secs(total)),
            ratio(late.p99(), ours_p99),
            ratio(late.max(), ours_max),
        ]);
    }
    table(
        &format!("Figure 6 — runtime health: lateness of a 1 ms ticker on the same current-thread runtime while {n} closes wait on slow peers"),
        &[
            "strategy",
            "ticks",
            "lateness median",
            "lateness p99",
            "lateness max",
            "all closes done after",
            "p99 vs ours",
            "max vs ours",
        ],
        &rows,
        &[format!("Each of the {n} connections has 64 KiB queued behind a closed window (peer SO_RCVBUF 4 KiB); peer i reads its 64 KiB and closes at t0 + i ms. All closes start at t0. Lateness = when a tick ran − when it was due (missed ticks burst, each counted). Tokio's timer has 1 ms granularity, so up to ~1 ms of lateness is the floor for every strategy.")],
    );
}

fn health_run(rt: &tokio::runtime::Runtime, st: Strategy, n: usize) -> (Samples, Duration) {
    const BYTES: usize = 64 * 1024;
    support::raise_nofile(2 * n as u64 + 1024);
    let (l, addr) = listener(Some(4096));
    let (t0_tx, t0_rx) = mpsc::channel::<Instant>();
    let (peer_tx, peer_rx) = mpsc::channel::<Vec<std::net::TcpStream>>();
    let peer = thread::spawn(move || {
        let Ok(mut peers) = peer_rx.recv_timeout(Duration::from_secs(30)) else {
            return;
        };
        let Ok(t0) = t0_rx.recv_timeout(Duration::from_secs(30)) else {
            return;
        };
        let give_up = t0 + Duration::from_secs(60);
        for (i, p) in peers.iter_mut().enumerate() {
            if Instant::now() > give_up {
                break;
            }
            let due = t0 + Duration::from_millis(i as u64);
            thread::sleep(due.saturating_duration_since(Instant::now()));
            let _ = read_to_end(p, BYTES);
            let _ = p.shutdown(Shutdown::Both);
        }
        drop(peers);
    });
    let res = rt.block_on(async {
        let mut clients = Vec::with_capacity(n);
        let mut peers = Vec::with_capacity(n);
        for _ in 0..n {
            let mut c = connect(addr).await;
            peers.push(accept(&l));
            support::set_sndbuf(&c, 1 << 20);
            tokio::time::timeout(Duration::from_secs(10), c.write_all(&vec![b'h'; BYTES]))
                .await
                .expect("write timed out (SO_SNDBUF too small?)")
                .expect("write");
            clients.push(c);
        }
        let _ = peer_tx.send(peers);
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let recording = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (stop, samples, recording) = (stop.clone(), samples.clone(), recording.clone());
            tokio::spawn(async move {
                let period = Duration::from_millis(1);
                let mut due = tokio::time::Instant::now() + period;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep_until(due).await;
                    let late = tokio::time::Instant::now().saturating_duration_since(due);
                    if recording.load(Ordering::Relaxed) {
                        samples.lock().unwrap().push(secs(late));
                    }
                    due += period;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let t0 = Instant::now();
        recording.store(true, Ordering::Relaxed);
        let _ = t0_tx.send(t0);
        let handles: Vec<_> = clients
            .into_iter()
            .map(|c| tokio::spawn(close(st, c, Knobs::default())))
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        for h in handles {
            let _ = tokio::time::timeout_at(deadline, h).await;
        }
        // Keep recording until the peers are done, so every strategy covers the same span.
        let span = Duration::from_millis(n as u64 + 20);
        tokio::time::sleep(span.saturating_sub(t0.elapsed())).await;
        let total = t0.elapsed();
        recording.store(false, Ordering::Relaxed);
        stop.store(true, Ordering::Relaxed);
        let _ = tokio::time::timeout(Duration::from_secs(5), ticker).await;
        let v = std::mem::take(&mut *samples.lock().unwrap());
        (Samples::new(v), total)
    });
    let _ = peer.join();
    res
}
