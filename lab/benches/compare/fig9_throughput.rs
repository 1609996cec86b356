//! Figure 9 — closes per second on one core: 10,000 connections, each with a 1 KiB
//! response its peer reads whole before closing, all closed at once on a
//! current-thread runtime; the peers live in a helper process. The child processes here
//! also run figure 10 (the same on a multi-threaded runtime).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::contenders::Strategy::{self, *};
use crate::contenders::{selected, spawn_close, Knobs};
use crate::harness::{
    announce_peer_listeners, rotation, run_child_with_deadline, runtime, spawn_peer_helper,
};
use crate::support::{self, process_cpu, table, thread_cpu_precise, Samples};
use crate::Cfg;

pub(crate) const RESPONSE: usize = 1024;

pub(crate) fn run(cfg: &Cfg) {
    let n = cfg.n(2_000, 10_000);
    let rounds = cfg.n(3, 5);
    let exe = std::env::current_exe().expect("exe");
    let all: Vec<Strategy> = [Ours, Nginx(4096), Drop]
        .into_iter()
        .filter(|&st| selected(st))
        .collect();
    // (closes per second, CPU µs per close) of each round, per strategy.
    let mut got: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); all.len()];
    let mut failed = vec![0usize; all.len()];
    for round in 0..rounds {
        // A fresh process per strategy and round, rotating which goes first: one round
        // alone moved with whatever else this machine did at that moment.
        for j in rotation(round, all.len()) {
            match child_run(&exe, all[j], n, 1) {
                Some((per_sec, cpu_us)) => {
                    got[j].0.push(per_sec);
                    got[j].1.push(cpu_us);
                }
                None => failed[j] += 1,
            }
        }
    }
    let ours = all
        .iter()
        .position(|&st| st == Ours)
        .map_or(f64::NAN, |i| Samples::new(got[i].0.clone()).median());
    let mut rows = Vec::new();
    for (i, &st) in all.iter().enumerate() {
        let (rate, cpu) = (
            Samples::new(got[i].0.clone()),
            Samples::new(got[i].1.clone()),
        );
        if rate.is_empty() {
            rows.push(vec![
                st.name(),
                "failed".into(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        rows.push(vec![
            st.name(),
            format!("{:.0}", rate.median()),
            format!("{:.0}–{:.0}", rate.min(), rate.max()),
            format!("{:.1} µs", cpu.median()),
            format!("{:.2}×", rate.median() / ours),
        ]);
        if failed[i] > 0 {
            let last = rows.len() - 1;
            rows[last][0] = format!("{} ({} of {rounds} rounds failed)", st.name(), failed[i]);
        }
    }
    table(
        "Figure 9 — closes per second on one core",
        &[
            "strategy",
            "closes / s (median)",
            "range",
            "runtime thread CPU per close (median)",
            "vs ours",
        ],
        &rows,
        &[format!("{n} connections with a {RESPONSE}-byte response each, closed at once on a current-thread runtime (one core); a helper process holds the peers, which read the response whole and then close. Closes per second = {n} / (start of the closes → the last descriptor released). A fresh process per strategy and round; {rounds} rounds, rotating which strategy goes first; median and range over the rounds.")],
    );
}

/// One round of `st` in a child process with `workers` runtime threads (1: a
/// current-thread runtime): (closes per second, CPU µs per close).
pub(crate) fn child_run(
    exe: &std::path::Path,
    st: Strategy,
    n: usize,
    workers: usize,
) -> Option<(f64, f64)> {
    let out = run_child_with_deadline(
        std::process::Command::new(exe)
            .env("TGC_BENCH_CHILD", format!("fig9:{}:{n}:{workers}", st.id()))
            .stdout(std::process::Stdio::piped()),
        Duration::from_secs(180),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT "))?;
    let mut f = line.split(' ').map(|x| x.parse::<f64>().ok());
    match (f.next().flatten(), f.next().flatten()) {
        (Some(rate), Some(cpu)) if rate.is_finite() && cpu.is_finite() => Some((rate, cpu)),
        _ => None,
    }
}

/// Helper process: accepts `n` connections on 8 listeners and, for each, reads to EOF
/// and closes, like a client that reads a response whole.
pub(crate) fn child_peers(n: usize) {
    support::raise_nofile(n as u64 + 1024);
    let rt = runtime();
    rt.block_on(async move {
        let listeners: Vec<tokio::net::TcpListener> = announce_peer_listeners()
            .into_iter()
            .map(|l| {
                l.set_nonblocking(true).unwrap();
                tokio::net::TcpListener::from_std(l).unwrap()
            })
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for l in listeners {
            tasks.spawn(async move {
                loop {
                    let Ok((mut p, _)) = l.accept().await else {
                        return;
                    };
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        while let Ok(1..) = p.read(&mut buf).await {}
                    });
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(150)).await;
    });
}

/// One strategy in a fresh process: connect `n`, write the responses, then close all.
/// One worker: a current-thread runtime, the CPU of its thread. More: a multi-threaded
/// runtime with that many workers, the CPU of the whole process (the main thread only
/// waits).
pub(crate) fn child(st: Strategy, n: usize, workers: usize) {
    let limit = support::raise_nofile(n as u64 + 1024);
    let (mut helper, _out, addrs) = spawn_peer_helper(&format!("fig9peers:{n}"), limit);
    let rt = if workers <= 1 {
        runtime()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let cpu_now = if workers <= 1 {
        thread_cpu_precise
    } else {
        process_cpu
    };
    rt.block_on(async move {
        let mut streams = Vec::with_capacity(n);
        let response = vec![b'r'; RESPONSE];
        for i in 0..n {
            let mut c = TcpStream::connect(addrs[i % 8]).await.expect("connect");
            c.write_all(&response).await.expect("write");
            streams.push(c);
        }
        let (t0, cpu0) = (Instant::now(), cpu_now());
        let handles: Vec<_> = streams
            .into_iter()
            .map(|s| spawn_close(st, s, Knobs::default()))
            .collect();
        for h in handles {
            let _ = tokio::time::timeout(Duration::from_secs(60), h).await;
        }
        let (wall, cpu) = (t0.elapsed(), cpu_now() - cpu0);
        println!(
            "RESULT {} {}",
            n as f64 / wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / n as f64
        );
    });
    let _ = helper.kill();
    let _ = helper.wait();
}
