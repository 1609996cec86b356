//! Side-by-side benchmarks: `graceful_close` against the close strategies of nginx, Go,
//! Envoy, fbthrift and Tokio, each re-implemented here as faithfully as the harness
//! allows (never in the crate).
//!
//! ```text
//! cargo bench --bench compare                      # full mode (README numbers)
//! TGC_BENCH_QUICK=1 cargo bench --bench compare    # quick mode, < 1 min
//! TGC_BENCH_FIGS=1,3 cargo bench --bench compare   # only some figures
//! TGC_BENCH_SCALE=5 cargo bench --bench compare    # five times the runs
//! ```
//!
//! Prints one markdown table per figure. Every wait has a deadline; every number in a
//! table comes from this one run, and every ratio is against ours from the same run.
//!
//! Layout: this file holds the arguments, the configuration and `main`; `contenders`
//! the close strategies; `harness` the plumbing (runtimes, listeners, peers, the lab
//! link, child processes); `alloc` the counting allocator; one `figN_*` module per
//! figure. Methodology and the latest figures: `lab/benches/README.md`.

#[path = "../support/mod.rs"]
mod support;

#[path = "../../../tests/support/lab.rs"]
mod lab;

mod alloc;
mod contenders;
mod harness;

mod fig10_multi_thread;
mod fig1_delivered;
mod fig2_latency;
mod fig3_ack_detection;
mod fig4_cost;
mod fig5_scale;
mod fig6_health;
mod fig7_drain;
mod fig8_tail;
mod fig9_throughput;

use std::thread;
use std::time::Instant;

use contenders::Strategy;
use harness::runtime;

/// What to run, from the environment.
#[derive(Debug, Clone)]
struct Cfg {
    quick: bool,
    /// `TGC_BENCH_SCALE`: full-mode run counts multiplied by this (a closer look).
    scale: usize,
    figs: Vec<u32>,
}

impl Cfg {
    fn n(&self, quick: usize, full: usize) -> usize {
        if self.quick {
            quick
        } else {
            full * self.scale
        }
    }
    fn runs_for(&self, st: Strategy, quick: usize, full: usize) -> usize {
        if st.is_slow() {
            self.n(2.min(quick), 10.min(full))
        } else {
            self.n(quick, full)
        }
    }
}

fn main() {
    if let Ok(child) = std::env::var("TGC_BENCH_CHILD") {
        let parts: Vec<&str> = child.split(':').collect();
        match parts.as_slice() {
            ["fig4trace"] => fig4_cost::child_trace(),
            ["fig5peers", n] => fig5_scale::child_peers(n.parse().expect("n")),
            ["fig5", st, n] => fig5_scale::child(
                Strategy::from_id(st).expect("strategy"),
                n.parse().expect("n"),
            ),
            ["fig9peers", n] => fig9_throughput::child_peers(n.parse().expect("n")),
            ["fig9", st, n, workers] => fig9_throughput::child(
                Strategy::from_id(st).expect("strategy"),
                n.parse().expect("n"),
                workers.parse().expect("workers"),
            ),
            _ => panic!("unknown child mode {child}"),
        }
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = std::env::var("TGC_BENCH_QUICK").is_ok_and(|v| v != "0");
    let figs_env = std::env::var("TGC_BENCH_FIGS").ok();
    if !args.iter().any(|a| a == "--bench") && !quick && figs_env.is_none() {
        // `cargo test --benches` runs this binary without `--bench`: stay out of the way.
        println!(
            "compare: run with `cargo bench --bench compare` (TGC_BENCH_QUICK=1 for quick mode)"
        );
        return;
    }
    let figs: Vec<u32> = figs_env
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    let scale = std::env::var("TGC_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&k| k > 0)
        .unwrap_or(1);
    let cfg = Cfg { quick, scale, figs };
    support::raise_nofile(1 << 16);
    let rt = runtime();
    let started = Instant::now();
    println!(
        "# tokio-graceful-close: side-by-side close benchmarks ({} mode)",
        if cfg.quick { "quick" } else { "full" }
    );
    println!("\n{}", machine());
    for f in cfg.figs.clone() {
        let t = Instant::now();
        match f {
            1 => fig1_delivered::run(&cfg, &rt),
            2 => fig2_latency::run(&cfg, &rt),
            3 => fig3_ack_detection::run(&cfg, &rt),
            4 => fig4_cost::run(&cfg, &rt),
            5 => fig5_scale::run(&cfg),
            6 => fig6_health::run(&cfg, &rt),
            7 => fig7_drain::run(&cfg, &rt),
            8 => fig8_tail::run(&cfg, &rt),
            9 => fig9_throughput::run(&cfg),
            10 => fig10_multi_thread::run(&cfg),
            _ => continue,
        }
        eprintln!("figure {f} took {:.1} s", t.elapsed().as_secs_f64());
    }
    println!(
        "\n_Total bench time: {:.0} s._",
        started.elapsed().as_secs_f64()
    );
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cores = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "Machine: {cores} cores ({cpu}), Linux {kernel}; load average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}
