//! Peers that do not just read and close: one resets mid-transfer, one keeps sending
//! after our FIN.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_graceful_close::{AsyncGracefulClose, CloseErrorKind};

use crate::common::{accept, addr, big_send_buffers, payload, reset, stats, within, End, Received};
use crate::lab::{LabConfig, Side};
use crate::{lab_test, Gate};

// ===== 4. peer reset mid-transfer =====

/// Scenario 4: the peer resets in the middle of a lossy transfer: `PeerReset`, promptly.
#[test]
fn peer_reset_mid_lossy_transfer() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(20_000).queue(256 * 1024).loss(2);
        let lab = Arc::new(lab_or_skip!(cfg));
        big_send_buffers(&lab, Side::A);
        const RUNS: usize = 10;
        const TOTAL: usize = 3 << 20;
        const RESET_AFTER: usize = 300_000;

        let mut runs = JoinSet::new();
        for _ in 0..RUNS {
            let lab = lab.clone();
            runs.spawn(async move {
                let l = lab.listen(Side::B, 0).unwrap();
                let to = addr(&l);
                let peer = tokio::spawn(async move {
                    let mut s = accept(&l).await;
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut n = 0;
                    while n < RESET_AFTER {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return Err(n),
                            Ok(k) => n += k,
                        }
                    }
                    let at = Instant::now();
                    reset(s);
                    Ok(at)
                });
                let mut c = within(30, "connect", lab.connect(Side::A, to))
                    .await
                    .unwrap();
                within(10, "write", c.write_all(payload(TOTAL)))
                    .await
                    .unwrap();
                let res = within(40, "close", c.graceful_close(Duration::from_secs(30))).await;
                let done = Instant::now();
                let reset_at = within(10, "peer", peer).await.unwrap().expect("peer reads");
                (res, done.saturating_duration_since(reset_at))
            });
        }
        let mut delays = Vec::new();
        let mut into_close = Vec::new();
        while let Some(run) = within(90, "reset runs", runs.join_next()).await {
            let (res, delay) = run.unwrap();
            let err = res.expect_err("a reset connection cannot be Ok");
            assert_eq!(err.kind(), CloseErrorKind::PeerReset, "{err:?}");
            assert!(!err.report().acked() && !err.report().aborted());
            // The reset came in the middle of the close, not before it started.
            assert!(
                err.report().elapsed() >= Duration::from_millis(50),
                "the close was not running when the peer reset: {err:?}"
            );
            assert!(
                delay < Duration::from_secs(3),
                "PeerReset {delay:?} after the reset: {err:?}"
            );
            delays.push(delay);
            into_close.push(err.report().elapsed());
        }
        eprintln!(
            "peer reset: {RUNS} runs, PeerReset {} after the RST; the close had run {}",
            stats(delays),
            stats(into_close)
        );
    });
}

// ===== 5. the peer keeps sending after our FIN =====

/// Scenario 5 (the "Linux 3.9.4" case): the peer sends data before and after our FIN;
/// the drain keeps reading, so our queued data still arrives in full, then both EOFs.
#[test]
fn peer_sends_after_our_fin() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(20_000).queue(256 * 1024).loss(2);
        let lab = Arc::new(lab_or_skip!(cfg));
        const RUNS: usize = 10;
        const OURS: usize = 1_000_000;
        const AFTER_FIN: usize = 256 * 1024;

        let mut runs = JoinSet::new();
        for _ in 0..RUNS {
            let lab = lab.clone();
            runs.spawn(async move {
                let l = lab.listen(Side::B, 0).unwrap();
                let to = addr(&l);
                let peer = tokio::spawn(async move {
                    let s = accept(&l).await;
                    let (rd, mut wr) = s.into_split();
                    let eof = Arc::new(AtomicBool::new(false));
                    let seen = eof.clone();
                    let writer = tokio::spawn(async move {
                        let chunk = vec![b'p'; 16 * 1024];
                        let mut sent = 0usize;
                        let mut after = 0usize;
                        while after < AFTER_FIN {
                            wr.write_all(&chunk).await?;
                            sent += chunk.len();
                            if seen.load(Ordering::SeqCst) {
                                after += chunk.len();
                            }
                        }
                        wr.shutdown().await?;
                        io::Result::Ok((sent, after))
                    });
                    let got = {
                        let mut s = rd;
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut n = 0usize;
                        let mut intact = true;
                        let end = loop {
                            match s.read(&mut buf).await {
                                Ok(0) => break End::Eof,
                                Ok(k) => {
                                    intact &= buf[..k]
                                        .iter()
                                        .enumerate()
                                        .all(|(i, &b)| b == ((n + i) % 251) as u8);
                                    n += k;
                                }
                                Err(e) => break End::Failed(e.kind()),
                            }
                        };
                        eof.store(true, Ordering::SeqCst);
                        Received {
                            bytes: n,
                            end,
                            intact,
                        }
                    };
                    let sent = within(30, "peer writer", writer).await.unwrap();
                    (got, sent)
                });
                let mut c = within(30, "connect", lab.connect(Side::A, to))
                    .await
                    .unwrap();
                within(30, "write", c.write_all(payload(OURS)))
                    .await
                    .unwrap();
                let res = within(60, "close", c.graceful_close(Duration::from_secs(45))).await;
                let (got, sent) = within(30, "peer", peer).await.unwrap();
                (res, got, sent)
            });
        }
        let mut drained = Vec::new();
        while let Some(run) = within(120, "runs", runs.join_next()).await {
            let (res, got, sent) = run.unwrap();
            let (sent, after) = sent.expect("the peer's writes after our FIN were accepted");
            assert_eq!(
                (got.bytes, got.end, got.intact),
                (OURS, End::Eof, true),
                "our data did not arrive in full"
            );
            assert!(after >= AFTER_FIN);
            let r = res.expect("graceful close while the peer keeps sending");
            assert!(r.acked() && r.peer_eof());
            assert_eq!(
                r.drained_bytes(),
                sent as u64,
                "the drain must read every byte the peer sent"
            );
            drained.push(r.drained_bytes());
        }
        eprintln!("peer sends after our FIN: {RUNS} runs, drained bytes per run {drained:?}");
    });
}
