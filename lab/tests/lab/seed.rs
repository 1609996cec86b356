//! The seed experiment over a lossy link: an unread greeting, 1,000,000 bytes written,
//! then the close; the graceful close delivers every byte, the plain drop (the control)
//! is measured alongside.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_graceful_close::{AsyncGracefulClose, CloseError, CloseReport};

use crate::common::{
    accept, addr, payload, secs, sink_idle, stats, within, End, Received, GREETING,
};
use crate::lab::{Lab, LabConfig, Side};
use crate::{lab_test, Gate};

/// The seed experiment's payload.
const SEED_BYTES: usize = 1_000_000;
/// Runs of the seed experiment (each arm).
const SEED_RUNS: usize = 100;

// ===== 1. the seed experiment =====

/// One seed run: the peer greets (never read), the client writes 1,000,000 bytes and
/// closes, gracefully or by a plain drop. Returns what the peer got and the close result.
async fn seed_run(
    lab: Arc<Lab>,
    graceful: bool,
) -> (Received, Option<Result<CloseReport, CloseError>>) {
    let l = lab.listen(Side::B, 0).unwrap();
    let to = addr(&l);
    let peer = tokio::spawn(async move {
        let mut s = accept(&l).await;
        if let Err(e) = s.write_all(GREETING).await {
            let end = match e.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => End::Reset,
                k => End::Failed(k),
            };
            return Received {
                bytes: 0,
                end,
                intact: true,
            };
        }
        // The control's only RST can be lost (2 % loss) when nothing else is in flight:
        // then the peer would wait for ever on a half-open connection.
        let idle = if graceful {
            Duration::MAX
        } else {
            Duration::from_secs(15)
        };
        sink_idle(&mut s, None, idle).await
        // Dropped here: the peer closes its side after our EOF.
    });
    let mut c = within(30, "connect", lab.connect(Side::A, to))
        .await
        .unwrap();
    within(60, "write", c.write_all(payload(SEED_BYTES)))
        .await
        .unwrap();
    let close = if graceful {
        Some(
            within(
                90,
                "graceful close",
                c.graceful_close(Duration::from_secs(60)),
            )
            .await,
        )
    } else {
        drop(c);
        None
    };
    let what = if graceful {
        "seed peer (graceful close)"
    } else {
        "seed peer (plain drop)"
    };
    let got = within(90, what, peer).await.unwrap();
    (got, close)
}

/// Scenario 1: 2 % loss each way on a rate-limited link, 100+ runs: the graceful close
/// delivers all 1,000,000 bytes and EOF every time. A plain drop is measured alongside
/// (the control: printed, only sanity-checked).
#[test]
fn seed_experiment_over_lossy_link() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new()
            .rate_kbit(100_000)
            .queue(1024 * 1024)
            .loss(2);
        let lab = Arc::new(lab_or_skip!(cfg));
        let started = Instant::now();
        let slots = Arc::new(Semaphore::new(16));
        let mut runs = JoinSet::new();
        for i in 0..2 * SEED_RUNS {
            let (lab, slots) = (lab.clone(), slots.clone());
            runs.spawn(async move {
                let _slot = slots.acquire_owned().await.unwrap();
                let graceful = i % 2 == 0;
                (graceful, seed_run(lab, graceful).await)
            });
        }
        let mut elapsed = Vec::new();
        let mut control = Vec::new();
        let mut silent = 0;
        let mut failures = Vec::new();
        while let Some(run) = within(170, "seed runs", runs.join_next()).await {
            let (graceful, (got, close)) = run.expect("seed run panicked");
            assert!(
                got.bytes <= SEED_BYTES && got.intact,
                "corrupt stream: {got:?}"
            );
            if graceful {
                let ok = match &close {
                    Some(Ok(r)) => {
                        elapsed.push(r.elapsed());
                        r.acked()
                            && r.peer_eof()
                            && r.unacked_bytes() == Some(0)
                            && r.drained_bytes() == GREETING.len() as u64
                            && !r.aborted()
                    }
                    _ => false,
                };
                if !ok || got.bytes != SEED_BYTES || got.end != End::Eof {
                    failures.push(format!("{got:?} {close:?}"));
                }
            } else {
                control.push(SEED_BYTES - got.bytes);
                silent += usize::from(got.end == End::Silent);
            }
        }
        let lossy: Vec<usize> = control.iter().copied().filter(|&l| l > 0).collect();
        let total: usize = lossy.iter().sum();
        eprintln!(
            "seed: graceful {}/{} runs delivered 1,000,000 bytes + EOF; close elapsed {}",
            SEED_RUNS - failures.len(),
            SEED_RUNS,
            stats(elapsed)
        );
        eprintln!(
            "seed control (plain drop): {}/{} runs lost data, {} bytes lost in total \
         (per losing run: min {} / max {}); {silent} left the peer half-open (RST lost); \
         wall time {}",
            lossy.len(),
            control.len(),
            total,
            lossy.iter().min().unwrap_or(&0),
            lossy.iter().max().unwrap_or(&0),
            secs(started.elapsed())
        );
        assert_eq!(control.len(), SEED_RUNS);
        assert!(
            failures.is_empty(),
            "{} graceful runs lost data or failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    });
}
