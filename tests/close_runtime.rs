//! The close never blocks a runtime thread, and cancelling it never blocks either.
// Other systems skip the Linux-only tests, and Windows those that need what Wine lacks
// (the ACK confirmation, resets): their helpers are then unused there.
#![cfg_attr(not(target_os = "linux"), allow(unused))]

#[path = "support/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_graceful_close::AsyncGracefulClose;

const CLOSES: usize = 100;

/// 100 closes wait on slow peers while a 1 ms ticker runs on the same current-thread
/// runtime: no gap may exceed 50 ms.
// Windows: asserts the ACK confirmation, which Wine (no `SIO_TCP_INFO`) cannot give.
#[cfg(not(windows))]
#[test]
fn current_thread_runtime_keeps_ticking_while_closes_wait() {
    // The slow peers live on their own runtime and thread: they read everything,
    // then hold the connection open for 600 ms before closing.
    let peers_rt = tokio::runtime::Runtime::new().unwrap();
    let (l, addr) = peers_rt.block_on(peer::listener());
    let peers = peers_rt.spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..CLOSES {
            let (mut s, _) = l.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let r = peer::read_to_end(&mut s).await;
                tokio::time::sleep(Duration::from_millis(600)).await;
                r
            }));
        }
        let mut ends = Vec::new();
        for t in tasks {
            ends.push(t.await.unwrap());
        }
        ends
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (max_gap, results) = rt.block_on(async move {
        let mut conns = Vec::new();
        for _ in 0..CLOSES {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&[9u8; 20_000]).await.unwrap();
            conns.push(c);
        }
        let closes: Vec<_> = conns
            .into_iter()
            .map(|c| tokio::spawn(c.graceful_close(Duration::from_secs(10))))
            .collect();
        let ticker = tokio::spawn(async {
            let mut max_gap = Duration::ZERO;
            let mut last = Instant::now();
            let end = last + Duration::from_millis(900);
            while Instant::now() < end {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let now = Instant::now();
                max_gap = max_gap.max(now - last);
                last = now;
            }
            max_gap
        });
        let mut results = Vec::new();
        for c in closes {
            results.push(c.await.unwrap());
        }
        (ticker.await.unwrap(), results)
    });
    assert!(
        max_gap < Duration::from_millis(50),
        "runtime stalled for {max_gap:?}"
    );
    for r in &results {
        let r = r.as_ref().expect("every slow peer eventually closes");
        assert!(r.acked() && r.peer_eof());
        assert!(
            r.elapsed() >= Duration::from_millis(500),
            "{:?}",
            r.elapsed()
        );
    }
    let ends = peers_rt.block_on(peers).unwrap();
    assert!(ends.iter().all(|e| *e == (20_000, peer::End::Eof)));
}

/// Dropping the close mid-way closes the socket without blocking, even when the
/// application had set a blocking `SO_LINGER` of 5 s.
#[tokio::test(flavor = "current_thread")]
async fn dropping_the_close_midway_never_blocks() {
    let (c, mut s) = peer::pair().await;
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::from_secs(5)))
        .unwrap();
    let queued = peer::fill(&c); // the peer never reads: close() would linger 5 s
    assert!(queued > 0);
    let close = c.graceful_close(Duration::from_secs(30));
    let t = Instant::now();
    // Runs the close for 100 ms, then drops it.
    let r = tokio::time::timeout(Duration::from_millis(100), close).await;
    let took = t.elapsed();
    assert!(
        r.is_err(),
        "the close cannot finish against a non-reading peer"
    );
    assert!(
        took < Duration::from_millis(1000),
        "cancel blocked for {took:?}"
    );
    // The socket really is closed: the peer reads what arrived, then our FIN.
    let (n, end) = peer::within(20, peer::read_to_end(&mut s)).await;
    assert_eq!(end, peer::End::Eof);
    assert!(n > 0);
}

/// An application-set non-zero `SO_LINGER` cannot make a timed-out close block.
#[tokio::test(flavor = "current_thread")]
async fn timed_out_close_with_app_linger_never_blocks() {
    let (c, s) = peer::pair().await;
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::from_secs(5)))
        .unwrap();
    peer::fill(&c);
    let t = Instant::now();
    let err = c
        .graceful_close(Duration::from_millis(200))
        .await
        .expect_err("never acked");
    assert!(err.kind().is_timeout());
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    drop(s);
}

/// A silent peer: the deadline ends the close on time on both runtime flavours, also
/// when nothing else in the runtime has a timer and when many closes share the thread.
#[test]
fn far_deadlines_end_the_closes_on_time_on_both_runtimes() {
    for multi in [false, true] {
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .unwrap();
        rt.block_on(async {
            let mut pairs = Vec::new();
            for _ in 0..50 {
                pairs.push(peer::pair().await);
            }
            let start = Instant::now();
            let (closes, peers): (Vec<_>, Vec<_>) = pairs
                .into_iter()
                .enumerate()
                .map(|(i, (c, s))| {
                    // Deadlines 400..=645 ms, in no particular order.
                    let t = Duration::from_millis(400 + (i as u64 * 37) % 250);
                    (
                        tokio::spawn(async move { (t, c.graceful_close(t).await) }),
                        s,
                    )
                })
                .unzip();
            for close in closes {
                let (t, res) = peer::within(10, close).await.unwrap();
                let err = res.expect_err("the peer never closes");
                assert!(err.kind().is_timeout(), "{err}");
                let took = err.report().elapsed();
                assert!(took >= t, "ended at {took:?}, before its deadline {t:?}");
                assert!(took < t + Duration::from_secs(2), "{took:?} for {t:?}");
            }
            assert!(start.elapsed() < Duration::from_secs(5));
            drop(peers);
        });
    }
}
