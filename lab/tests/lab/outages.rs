//! The link goes away mid-close: the cable is cut, the link is black-holed, or the
//! far host becomes unreachable; with `user_timeout` the close fails promptly, without
//! it at its deadline.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_graceful_close::{
    AsyncGracefulClose, CloseError, CloseErrorKind, CloseOptions, ClosePhase, CloseReport,
};

use crate::common::{accept, addr, big_send_buffers, payload, secs, sink, within, USER_TIMEOUT};
use crate::lab::{Lab, LabConfig, Side};
use crate::{lab_test, Gate};

// ===== 3. link cut mid-close =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outage {
    /// Both veth ends down.
    Cut,
    /// Links up, every packet dropped on arrival.
    Blackhole,
    /// Links up, every TCP segment answered with ICMP host-unreachable (what a router
    /// says about a host that is gone).
    Unreachable,
}

impl Outage {
    /// The 8 Mbit/s link every outage test uses; nftables for all but the cut.
    fn lab_config(self) -> LabConfig {
        let config = LabConfig::new().rate_kbit(8_000).queue(256 * 1024);
        match self {
            Outage::Cut => config,
            Outage::Blackhole | Outage::Unreachable => config.with_nft(),
        }
    }
}

/// Starts a close of `total` bytes to a peer that closed its side at once and reads
/// everything, takes the link away after `after`, and returns the close result and
/// the time from the outage to the result.
async fn close_across_outage(
    lab: Lab,
    outage: Outage,
    opts: CloseOptions,
) -> (Result<CloseReport, CloseError>, Duration, usize) {
    big_send_buffers(&lab, Side::A);
    const TOTAL: usize = 2 << 20;
    let l = lab.listen(Side::B, 0).unwrap();
    let to = addr(&l);
    let received = Arc::new(AtomicUsize::new(0));
    let progress = received.clone();
    let peer = tokio::spawn(async move {
        let mut s = accept(&l).await;
        s.shutdown().await.unwrap(); // our drain sees EOF at once: the close waits for ACKs
        sink(&mut s, Some(&progress)).await
    });
    let mut c = within(10, "connect", lab.connect(Side::A, to))
        .await
        .unwrap();
    within(10, "write", c.write_all(payload(TOTAL)))
        .await
        .unwrap();
    let close = tokio::spawn(c.graceful_close_with(opts));
    tokio::time::sleep(Duration::from_millis(600)).await;
    match outage {
        Outage::Cut => lab.cut().unwrap(),
        Outage::Blackhole => lab.blackhole(true).unwrap(),
        Outage::Unreachable => lab.unreachable(true).unwrap(),
    }
    let cut_at = Instant::now();
    let at_cut = received.load(Ordering::SeqCst);
    assert!(
        at_cut < TOTAL,
        "transfer finished before the outage: {at_cut}"
    );
    let res = within(30, "close across an outage", close).await.unwrap();
    let after = cut_at.elapsed();
    // The peer never hears from us again: stop it (its socket goes with the task).
    peer.abort();
    let _ = peer.await;
    drop(lab);
    (res, after, at_cut)
}

const LONG_DEADLINE: Duration = Duration::from_secs(12);
const CUT_DEADLINE: Duration = Duration::from_secs(3);

/// Scenario 3 with `user_timeout`: the close fails with `RetransmitTimeout` about that
/// long after the outage, long before its deadline.
async fn outage_with_user_timeout(outage: Outage) {
    let lab = lab_or_skip!(outage.lab_config());
    let opts = CloseOptions::new(LONG_DEADLINE).user_timeout(USER_TIMEOUT);
    let (res, after, at_cut) = close_across_outage(lab, outage, opts).await;
    let err = res.expect_err("nothing can be acknowledged across the outage");
    let r = err.report();
    eprintln!(
        "link {outage:?}, user_timeout 1 s: {:?} {} after the outage (close elapsed {}, \
         {:?} bytes unacked, peer had {at_cut} bytes): {err}",
        err.kind(),
        secs(after),
        secs(r.elapsed()),
        r.unacked_bytes()
    );
    assert!(!r.acked());
    assert!(
        after >= USER_TIMEOUT / 2 && after <= USER_TIMEOUT + Duration::from_millis(2500),
        "not promptly after the user timeout: {after:?} after the outage: {err:?}"
    );
    assert!(
        r.elapsed() < LONG_DEADLINE - Duration::from_secs(5),
        "waited for the deadline: {err:?}"
    );
    // The kernel gave up retransmitting: that is a timeout, whatever errno it reports.
    assert!(
        err.kind().is_timeout(),
        "the kernel's TCP_USER_TIMEOUT give-up is not a timeout-kind error: {err:?}"
    );
    assert_eq!(err.kind(), CloseErrorKind::RetransmitTimeout, "{err:?}");
}

/// Scenario 3 without `user_timeout`: the close fails at its deadline and the report
/// says what was outstanding.
async fn outage_without_user_timeout(outage: Outage) {
    let lab = lab_or_skip!(outage.lab_config());
    let opts = CloseOptions::new(CUT_DEADLINE);
    let (res, after, at_cut) = close_across_outage(lab, outage, opts).await;
    let err = res.expect_err("nothing can be acknowledged across the outage");
    let r = err.report();
    eprintln!(
        "link {outage:?}, no user_timeout: {:?} {} after the outage (close elapsed {}, \
         {:?} bytes unacked, peer had {at_cut} bytes): {err}",
        err.kind(),
        secs(after),
        secs(r.elapsed()),
        r.unacked_bytes()
    );
    assert!(err.kind().is_timeout(), "{err:?}");
    assert_eq!(
        (err.kind(), err.phase()),
        (CloseErrorKind::TimedOut, ClosePhase::AckWait),
        "{err:?}"
    );
    assert!(!r.acked());
    assert!(
        r.elapsed() >= CUT_DEADLINE && r.elapsed() <= CUT_DEADLINE + Duration::from_millis(1500),
        "not at the deadline: {err:?}"
    );
    assert!(
        r.unacked_bytes().is_some_and(|n| n > 0),
        "the report does not tell what was outstanding: {err:?}"
    );
}

/// Scenario 3: the cable is cut (both veth ends down) mid-close, `user_timeout` set.
#[test]
fn link_cut_mid_close_user_timeout() {
    lab_test(Gate::Shared, async {
        outage_with_user_timeout(Outage::Cut).await;
    });
}

/// Scenario 3: the link is black-holed mid-close, `user_timeout` set.
#[test]
fn link_blackholed_mid_close_user_timeout() {
    lab_test(Gate::Shared, async {
        outage_with_user_timeout(Outage::Blackhole).await;
    });
}

/// Scenario 3: the far host becomes unreachable (ICMP host-unreachable) mid-close,
/// `user_timeout` set.
#[test]
fn host_unreachable_mid_close_user_timeout() {
    lab_test(Gate::Shared, async {
        outage_with_user_timeout(Outage::Unreachable).await;
    });
}

/// Scenario 3: the far host becomes unreachable mid-close, no `user_timeout`: fails at
/// the deadline.
#[test]
fn host_unreachable_mid_close_deadline() {
    lab_test(Gate::Shared, async {
        outage_without_user_timeout(Outage::Unreachable).await;
    });
}

/// Scenario 3: the cable is cut mid-close, no `user_timeout`: fails at the deadline.
#[test]
fn link_cut_mid_close_deadline() {
    lab_test(Gate::Shared, async {
        outage_without_user_timeout(Outage::Cut).await;
    });
}

/// Scenario 3: the link is black-holed mid-close, no `user_timeout`: fails at the deadline.
#[test]
fn link_blackholed_mid_close_deadline() {
    lab_test(Gate::Shared, async {
        outage_without_user_timeout(Outage::Blackhole).await;
    });
}
