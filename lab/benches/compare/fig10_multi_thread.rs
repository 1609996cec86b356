//! Figure 10 — closes at scale on a multi-threaded runtime: 1,000, 10,000 and 19,000
//! connections in flight, each with a 1 KiB response its peer reads whole before
//! closing, all closed at once on a runtime with two worker threads (figure 9's
//! workload and child processes, with more workers and more connections).

use crate::contenders::selected;
use crate::contenders::Strategy::{self, *};
use crate::fig9_throughput::{child_run, RESPONSE};
use crate::harness::rotation;
use crate::support::{table, Samples};
use crate::Cfg;

/// The runtime's worker threads: one per core of the machine the figures come from.
const WORKERS: usize = 2;

pub(crate) fn run(cfg: &Cfg) {
    let sizes: &[usize] = if cfg.quick {
        &[1_000, 10_000]
    } else {
        &[1_000, 10_000, 19_000]
    };
    let rounds = cfg.n(2, 5);
    let exe = std::env::current_exe().expect("exe");
    let all: Vec<Strategy> = [Ours, Nginx(4096), Drop]
        .into_iter()
        .filter(|&st| selected(st))
        .collect();
    let mut rows = Vec::new();
    for &n in sizes {
        // (closes per second, CPU µs per close) of each round, per strategy.
        let mut got: Vec<(Vec<f64>, Vec<f64>)> = vec![Default::default(); all.len()];
        let mut failed = vec![0usize; all.len()];
        for round in 0..rounds {
            for j in rotation(round, all.len()) {
                match child_run(&exe, all[j], n, WORKERS) {
                    Some((rate, cpu)) => {
                        got[j].0.push(rate);
                        got[j].1.push(cpu);
                    }
                    None => failed[j] += 1,
                }
            }
        }
        let median = |i: usize| Samples::new(got[i].0.clone()).median();
        let ours = all
            .iter()
            .position(|&st| st == Ours)
            .map_or(f64::NAN, median);
        let ours_cpu = all
            .iter()
            .position(|&st| st == Ours)
            .map_or(f64::NAN, |i| Samples::new(got[i].1.clone()).median());
        for (i, &st) in all.iter().enumerate() {
            let (rate, cpu) = (
                Samples::new(got[i].0.clone()),
                Samples::new(got[i].1.clone()),
            );
            let mut name = st.name();
            if failed[i] > 0 {
                name = format!("{name} ({} of {rounds} rounds failed)", failed[i]);
            }
            if rate.is_empty() {
                rows.push(vec![format!("{n}"), name, "failed".into()]);
                continue;
            }
            rows.push(vec![
                format!("{n}"),
                name,
                format!("{:.0}", rate.median()),
                format!("{:.0}–{:.0}", rate.min(), rate.max()),
                format!("{:.1} µs", cpu.median()),
                format!("{:.2}×", rate.median() / ours),
                format!("{:.2}×", cpu.median() / ours_cpu),
            ]);
        }
    }
    table(
        "Figure 10 — closes at scale on a multi-threaded runtime",
        &[
            "in flight",
            "strategy",
            "closes / s (median)",
            "range",
            "process CPU per close (median)",
            "closes / s vs ours",
            "CPU vs ours",
        ],
        &rows,
        &[format!("{WORKERS} worker threads; n connections with a {RESPONSE}-byte response each, closed at once; a helper process holds the peers, which read the response whole and then close. Closes per second = n / (start of the closes → the last descriptor released); CPU = the whole process's (its workers') per close. A fresh process per strategy, size and round; {rounds} rounds, rotating which strategy goes first; median and range over the rounds.")],
    );
}
