//! A peer that never reads (zero window): the ACK wait times out; `OnTimeout::Abort`
//! frees the socket at once, `user_timeout` makes the kernel give up early.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_graceful_close::{
    AsyncGracefulClose, CloseErrorKind, CloseOptions, ClosePhase, OnTimeout, PeerEof,
};

use crate::common::{accept, addr, big_send_buffers, payload, secs, within, USER_TIMEOUT};
use crate::lab::{LabConfig, Side};
use crate::{lab_test, Gate};

// ===== 6. zero window =====

/// Scenario 6: a peer that never reads (zero window, persist probes): the ACK wait times
/// out; with `OnTimeout::Abort` the socket is gone at once, while with `Close` (the
/// control, proving the check can fail) an orphan lingers in FIN_WAIT1.
#[test]
fn zero_window_peer_abort_frees_socket() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(20_000).queue(256 * 1024);
        let lab = Arc::new(lab_or_skip!(cfg));
        big_send_buffers(&lab, Side::A);
        const WRITTEN: usize = 512 * 1024;
        const DEADLINE: Duration = Duration::from_millis(1500);

        let l = lab
            .listen_with(Side::B, 0, |s| s.set_recv_buffer_size(4096))
            .unwrap();
        let to = addr(&l);
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        let acceptor = tokio::spawn(async move {
            for _ in 0..2 {
                let s = accept(&l).await; // never read
                keep.lock().unwrap().push(s);
            }
        });

        let mut outcomes = Vec::new();
        for abort in [true, false] {
            let mut c = within(10, "connect", lab.connect(Side::A, to))
                .await
                .unwrap();
            let local = match c.local_addr().unwrap() {
                SocketAddr::V4(a) => a,
                a => panic!("{a}"),
            };
            within(10, "write", c.write_all(payload(WRITTEN)))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await; // the window closes
            let mut opts = CloseOptions::new(DEADLINE).peer_eof(PeerEof::NotRequired);
            opts = if abort {
                opts.on_timeout(OnTimeout::Abort)
            } else {
                // The orphan must die on its own soon after the check, not linger for minutes.
                opts.on_timeout(OnTimeout::Close)
                    .user_timeout(Duration::from_secs(4))
            };
            let err = within(10, "close", c.graceful_close_with(opts))
                .await
                .expect_err("a peer that never reads cannot acknowledge everything");
            let left: Vec<_> = lab
                .tcp_table(Side::A)
                .unwrap()
                .into_iter()
                .filter(|e| e.local == local)
                .collect();
            eprintln!(
                "zero window, {}: {:?} after {}, {:?} bytes unacked, sockets left on A: {left:?}",
                if abort { "Abort" } else { "Close (control)" },
                err.kind(),
                secs(err.report().elapsed()),
                err.report().unacked_bytes()
            );
            assert_eq!(
                (err.kind(), err.phase()),
                (CloseErrorKind::TimedOut, ClosePhase::AckWait),
                "{err:?}"
            );
            assert!(err.report().elapsed() >= DEADLINE);
            assert!(err
                .report()
                .unacked_bytes()
                .is_some_and(|n| n > WRITTEN / 2));
            assert_eq!(err.report().aborted(), abort);
            outcomes.push((abort, left));
        }
        within(10, "acceptor", acceptor).await.unwrap();
        for (abort, left) in outcomes {
            if abort {
                assert!(left.is_empty(), "Abort left a socket behind: {left:?}");
            } else {
                assert!(
                    left.iter().any(|e| e.state == 4 && e.inode == 0),
                    "the control should leave an orphan in FIN_WAIT1: {left:?}"
                );
            }
        }
        drop(held);
    });
}

/// Scenario 6 with `user_timeout`: the kernel stops probing the zero window after that
/// long and the close fails at once with `RetransmitTimeout`, not at its deadline.
#[test]
fn zero_window_peer_user_timeout() {
    lab_test(Gate::Shared, async {
        let cfg = LabConfig::new().rate_kbit(20_000).queue(256 * 1024);
        let lab = lab_or_skip!(cfg);
        big_send_buffers(&lab, Side::A);
        const DEADLINE: Duration = Duration::from_secs(10);
        let l = lab
            .listen_with(Side::B, 0, |s| s.set_recv_buffer_size(4096))
            .unwrap();
        let to = addr(&l);
        let (held_tx, held_rx) = tokio::sync::oneshot::channel();
        let acceptor = tokio::spawn(async move {
            let s = accept(&l).await; // never read
            let _ = held_rx.await;
            drop(s);
        });
        let mut c = within(10, "connect", lab.connect(Side::A, to))
            .await
            .unwrap();
        within(10, "write", c.write_all(payload(512 * 1024)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await; // the window closes
        let opts = CloseOptions::new(DEADLINE)
            .peer_eof(PeerEof::NotRequired)
            .user_timeout(USER_TIMEOUT);
        let err = within(20, "close", c.graceful_close_with(opts))
            .await
            .expect_err("a peer that never reads cannot acknowledge everything");
        eprintln!(
            "zero window, user_timeout 1 s: {:?} after {}: {err}",
            err.kind(),
            secs(err.report().elapsed())
        );
        let _ = held_tx.send(());
        within(10, "acceptor", acceptor).await.unwrap();
        assert_eq!(err.kind(), CloseErrorKind::RetransmitTimeout, "{err:?}");
        // Probing began before the close, so the kernel may give up sooner than 1 s in.
        assert!(
            err.report().elapsed() <= USER_TIMEOUT + Duration::from_millis(2500),
            "not promptly after the user timeout: {err:?}"
        );
        assert!(!err.report().acked());
    });
}
