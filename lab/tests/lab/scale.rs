//! A thousand concurrent closes over the shaped link, and no file descriptor leaked.
//! The only test that counts descriptors: it takes the gate exclusively.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;
use tokio_graceful_close::AsyncGracefulClose;

use crate::common::{accept, addr, payload, secs, sink, stats, within, End, GREETING};
use crate::lab::{self, LabConfig, Side};
use crate::{lab_test, Gate};

// ===== 7. a thousand at once =====

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Raises the soft `RLIMIT_NOFILE` to at least `want` (up to the hard limit): 1,000
/// connections need over 2,000 descriptors, more than a common soft limit of 1,024.
fn raise_fd_limit(want: u64) {
    use nix::libc;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: `lim` is a valid, writable rlimit for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        // Safety: `lim` is a valid rlimit; raising the soft limit up to the hard one
        // needs no privilege.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// Scenario 7: 1,000 concurrent graceful closes over the shaped link all succeed, and
/// no file descriptor leaks.
#[test]
fn thousand_concurrent_closes_no_fd_leak() {
    lab_test(Gate::Exclusive, async {
        let cfg = LabConfig::new().rate_kbit(50_000).queue(512 * 1024);
        if let Some(reason) = lab::skip_reason(&cfg) {
            lab::skip(&reason);
            return;
        }
        const N: usize = 1000;
        const EACH: usize = 16 * 1024;
        raise_fd_limit(4 * N as u64);
        let before = open_fds();
        {
            let lab = lab_or_skip!(cfg);
            let l = Arc::new(lab.listen(Side::B, 0).unwrap());
            let to = addr(&l);
            let sockets = lab.tcp_sockets(Side::A, N).unwrap();
            let start = Instant::now();

            let acceptor = {
                let l = l.clone();
                tokio::spawn(async move {
                    let mut peers = JoinSet::new();
                    for _ in 0..N {
                        let mut s = accept(&l).await;
                        peers.spawn(async move {
                            s.write_all(GREETING).await.unwrap();
                            sink(&mut s, None).await
                        });
                    }
                    let mut got = Vec::new();
                    while let Some(r) = peers.join_next().await {
                        got.push(r.unwrap());
                    }
                    got
                })
            };
            let mut clients = JoinSet::new();
            for sock in sockets {
                clients.spawn(async move {
                    let mut c = sock.connect(to).await?;
                    c.write_all(payload(EACH)).await?;
                    c.graceful_close(Duration::from_secs(60))
                        .await
                        .map_err(io::Error::from)
                });
            }
            let mut ok = 0;
            let mut elapsed = Vec::new();
            let mut errors = Vec::new();
            while let Some(r) = within(120, "1,000 closes", clients.join_next()).await {
                match r.unwrap() {
                    Ok(report) if report.acked() && report.peer_eof() => {
                        ok += 1;
                        elapsed.push(report.elapsed());
                    }
                    other => errors.push(format!("{other:?}")),
                }
            }
            let got = within(30, "peers", acceptor).await.unwrap();
            let wall = start.elapsed();
            eprintln!(
                "1,000 concurrent closes: {ok} Ok, wall time {} (connect+write+close), close \
             elapsed {}",
                secs(wall),
                stats(elapsed)
            );
            assert!(
                errors.is_empty(),
                "{} failed: {:?}",
                errors.len(),
                &errors[..errors.len().min(5)]
            );
            assert_eq!(ok, N);
            assert_eq!(got.len(), N);
            assert!(got
                .iter()
                .all(|g| g.bytes == EACH && g.end == End::Eof && g.intact));
            drop(l);
        }
        // Every socket of the test (1,000 clients, 1,000 peers, the listener) is closed.
        let after = open_fds();
        eprintln!("fds: {before} before, {after} after");
        assert!(
            after <= before,
            "fd leak: {before} open before, {after} after"
        );
    });
}
