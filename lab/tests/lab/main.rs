//! The reliability lab: graceful close over a real, slow, lossy link between two
//! network namespaces (see `tests/support/lab.rs` and `lab/README.md`).
//!
//! Every test builds its own lab (unique namespaces), so tests run side by side. Only
//! `thousand_concurrent_closes_no_fd_leak` counts file descriptors, so it takes the
//! gate exclusively while the others share it.
//!
//! Without root or without the tools (`ip`, `tc`, and `nft` where a test needs it),
//! and without `CI=true`, every test prints `SKIP: <reason>` and passes; with
//! `CI=true` it fails instead.
//!
//! One test binary, one module per topic: `link` (the link itself, link-rate closes,
//! `wait_acked`), `seed` (the seed experiment over a lossy link), `outages` (cut,
//! black hole, unreachable mid-close), `peers` (reset, sends after our FIN),
//! `zero_window`, `scale` (a thousand closes, no fd leak), `tools` (the detection of
//! what the lab needs). They must share one process for the descriptor gate below.
#![cfg(target_os = "linux")]

#[path = "../../../tests/support/lab.rs"]
mod lab;

use std::future::Future;
use std::sync::{PoisonError, RwLock};

/// Shared by every test; taken exclusively by the one that counts file descriptors.
/// Taken before the test's runtime exists and released after it is gone, so that no
/// other test opens or closes a descriptor while that one counts.
static FD_GATE: RwLock<()> = RwLock::new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Shared,
    Exclusive,
}

/// Runs a lab test on its own multi-threaded runtime (2 workers) under the gate.
fn lab_test(gate: Gate, test: impl Future<Output = ()>) {
    let (_shared, _exclusive) = match gate {
        Gate::Shared => (
            Some(FD_GATE.read().unwrap_or_else(PoisonError::into_inner)),
            None,
        ),
        Gate::Exclusive => (
            None,
            Some(FD_GATE.write().unwrap_or_else(PoisonError::into_inner)),
        ),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(test);
}

/// Builds a lab or returns from the test (printing `SKIP: ...`) where it may be skipped.
macro_rules! lab_or_skip {
    ($config:expr) => {
        match crate::lab::Lab::require($config) {
            Some(lab) => lab,
            None => return,
        }
    };
}

mod common;

mod link;
mod outages;
mod peers;
mod scale;
mod seed;
mod tools;
mod zero_window;
