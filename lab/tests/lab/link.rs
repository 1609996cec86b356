//! The lab link itself, and closes whose duration the link rate dictates: the lab is
//! shaped and tears down, a large unacknowledged tail is `Ok` only at link rate, and
//! `wait_acked` is a delivery barrier.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_graceful_close::AsyncGracefulClose;

use crate::common::{accept, addr, big_send_buffers, payload, secs, sink, within, End};
use crate::lab::{self, Lab, LabConfig, Side};
use crate::{lab_test, Gate};

// ===== 0. the lab itself =====

/// The lab is a real two-host link: reachable, shaped (a transfer takes as long as the
/// rate says), and cut off by `cut`, `blackhole`; torn down on drop.
#[test]
fn lab_is_a_shaped_link_and_tears_down() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new()
            .rate_kbit(8_000)
            .queue(256 * 1024)
            .with_nft();
        let lab = lab_or_skip!(cfg);
        let (ns_a, ns_b) = (lab.ns(Side::A).to_string(), lab.ns(Side::B).to_string());

        // 1 MB at 1 MB/s takes about a second, not the microseconds of loopback.
        let l = lab.listen(Side::B, 0).unwrap();
        let to = addr(&l);
        let peer = tokio::spawn(async move {
            let mut s = accept(&l).await;
            sink(&mut s, None).await
        });
        let start = Instant::now();
        let mut c = within(10, "connect", lab.connect(Side::A, to))
            .await
            .unwrap();
        assert_eq!(c.local_addr().unwrap().ip(), lab.addr_a());
        c.write_all(payload(1_000_000)).await.unwrap();
        c.shutdown().await.unwrap();
        let got = within(20, "peer", peer).await.unwrap();
        let took = start.elapsed();
        assert_eq!(
            (got.bytes, got.end, got.intact),
            (1_000_000, End::Eof, true)
        );
        let rate = lab.config().bytes_per_sec().unwrap();
        eprintln!("lab: 1 MB over {} kB/s took {}", rate / 1000.0, secs(took));
        assert!(
            took.as_secs_f64() > 0.8 * 1e6 / rate,
            "the link is not shaped: 1 MB in {took:?}"
        );

        // Nothing gets through a black hole or a cut cable; both are reversible.
        let probe = |lab: &Lab| {
            let sock = lab.tcp_socket(Side::A).unwrap();
            let to = SocketAddr::from((lab.addr_b(), 9)); // nothing listens: RST if reachable
            async move { tokio::time::timeout(Duration::from_millis(700), sock.connect(to)).await }
        };
        let refused = probe(&lab).await;
        assert!(
            matches!(&refused, Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused),
            "B answers: {refused:?}"
        );
        lab.blackhole(true).unwrap();
        assert!(
            probe(&lab).await.is_err(),
            "the black hole lets packets through"
        );
        lab.blackhole(false).unwrap();
        assert!(probe(&lab).await.is_ok());
        lab.cut().unwrap();
        assert!(
            !matches!(probe(&lab).await, Ok(Err(ref e)) if e.kind() == io::ErrorKind::ConnectionRefused),
            "the cut link lets packets through"
        );
        lab.restore().unwrap();
        assert!(lab::wait_until(Duration::from_secs(5), || lab
            .exec(Side::A, "ip", &["route", "get", "10.77.0.2"])
            .is_ok_and(|o| o.status.success())));

        drop(lab);
        for ns in [ns_a, ns_b] {
            assert!(
                !std::path::Path::new("/run/netns").join(&ns).exists(),
                "namespace {ns} survived the lab"
            );
        }
    });
}

// ===== 2. a large unacknowledged tail =====

/// Scenario 2: several MB still queued at close: `Ok` only after the last ACK, so the
/// close takes about as long as the link needs to carry the tail.
#[test]
fn large_tail_is_acked_at_link_rate() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(16_000).queue(256 * 1024);
        let lab = lab_or_skip!(cfg);
        big_send_buffers(&lab, Side::A);
        const TAIL: usize = 5 << 20;

        let l = lab.listen(Side::B, 0).unwrap();
        let to = addr(&l);
        let received = Arc::new(AtomicUsize::new(0));
        let progress = received.clone();
        let peer = tokio::spawn(async move {
            let mut s = accept(&l).await;
            let got = sink(&mut s, Some(&progress)).await;
            (got, Instant::now())
        });
        let mut c = within(10, "connect", lab.connect(Side::A, to))
            .await
            .unwrap();
        within(10, "write", c.write_all(payload(TAIL)))
            .await
            .unwrap();
        let queued = c.unacked_bytes().unwrap();
        let close = within(
            60,
            "graceful close",
            c.graceful_close(Duration::from_secs(45)),
        )
        .await;
        let closed_at = Instant::now();
        let at_ok = received.load(Ordering::SeqCst);
        let (got, eof_at) = within(10, "peer", peer).await.unwrap();

        let report = close.expect("the large tail is delivered");
        let rate = lab.config().bytes_per_sec().unwrap();
        let expected = Duration::from_secs_f64(queued as f64 / rate);
        eprintln!(
            "large tail: {queued} bytes unacknowledged at close; Ok after {} \
         (link needs >= {} at {} kB/s); peer had read {at_ok} bytes at Ok",
            secs(report.elapsed()),
            secs(expected),
            rate / 1000.0
        );
        assert!(queued >= 3 << 20, "only {queued} bytes queued at close");
        assert_eq!((got.bytes, got.end, got.intact), (TAIL, End::Eof, true));
        assert!(report.acked() && report.peer_eof() && !report.aborted());
        assert_eq!(report.unacked_bytes(), Some(0));
        // Not faster than the link can carry the tail (Ok before the last ACK would be),
        // and not absurdly slower.
        assert!(
            report.elapsed() >= expected.mul_f64(0.8),
            "Ok after {:?}, before the link could carry {queued} bytes ({expected:?})",
            report.elapsed()
        );
        assert!(
            report.elapsed() <= expected.mul_f64(3.0) + Duration::from_secs(3),
            "Ok only after {:?} for {expected:?} of data",
            report.elapsed()
        );
        // The peer's kernel had every byte before our Ok: its EOF comes at most a moment later.
        assert!(
            eof_at <= closed_at + Duration::from_millis(500),
            "the peer saw EOF {:?} after our Ok",
            eof_at - closed_at
        );
    });
}

// ===== wait_acked over the link =====

/// `wait_acked` is a delivery barrier over a slow link: it returns when the peer's
/// kernel has everything (not before the link could carry it), and `SIOCOUTQ` is 0.
#[test]
fn wait_acked_is_a_delivery_barrier() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(8_000).queue(256 * 1024);
        let lab = lab_or_skip!(cfg);
        big_send_buffers(&lab, Side::A);
        let l = lab.listen(Side::B, 0).unwrap();
        let to = addr(&l);
        let peer = tokio::spawn(async move {
            let mut s = accept(&l).await;
            sink(&mut s, None).await
        });
        let mut c = within(10, "connect", lab.connect(Side::A, to))
            .await
            .unwrap();
        within(10, "write", c.write_all(payload(1 << 20)))
            .await
            .unwrap();
        let queued = c.unacked_bytes().unwrap();
        let start = Instant::now();
        within(20, "wait_acked", c.wait_acked(Duration::from_secs(15)))
            .await
            .expect("everything acknowledged");
        let took = start.elapsed();
        let left = c.unacked_bytes().unwrap();
        let rate = lab.config().bytes_per_sec().unwrap();
        let expected = Duration::from_secs_f64(queued as f64 / rate);
        eprintln!(
            "wait_acked: {queued} bytes unacknowledged -> Ok after {} (link needs >= {}), \
             {left} left",
            secs(took),
            secs(expected)
        );
        assert!(queued >= 512 * 1024, "only {queued} bytes queued");
        assert_eq!(left, 0);
        assert!(
            took >= expected.mul_f64(0.8),
            "Ok after {took:?} < {expected:?}"
        );
        c.shutdown().await.unwrap();
        let got = within(10, "peer", peer).await.unwrap();
        assert_eq!((got.bytes, got.end, got.intact), (1 << 20, End::Eof, true));
    });
}
