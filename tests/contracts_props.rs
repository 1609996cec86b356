//! Property test: random options against random peer behaviours, on loopback. Every
//! close ends without a panic, within its deadline, with an outcome that matches what
//! the peer did.
#![cfg(target_os = "linux")]

use std::io;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_graceful_close::{AsyncGracefulClose, CloseErrorKind, CloseOptions, OnTimeout, PeerEof};

/// What the peer does once connected.
#[derive(Debug, Clone, Copy)]
enum Peer {
    /// Reads everything, then closes.
    ReadsAndCloses,
    /// Reads everything, never closes.
    ReadsNeverCloses,
    /// Neither reads nor closes.
    Stalls,
    /// Sends without pause and never reads.
    Floods,
    /// Resets the connection after a while.
    ResetsAfter(u64),
    /// Closes at once without reading.
    ClosesAtOnce,
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        Just(Peer::ReadsAndCloses),
        Just(Peer::ReadsNeverCloses),
        Just(Peer::Stalls),
        Just(Peer::Floods),
        (0u64..300).prop_map(Peer::ResetsAfter),
        Just(Peer::ClosesAtOnce),
    ]
}

fn millis(max: u64) -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => (0..=max).prop_map(Duration::from_millis),
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
    ]
}

/// The options of a case, and the values they were built from (`CloseOptions` has
/// setters only).
#[derive(Debug, Clone, Copy)]
struct Knobs {
    opts: CloseOptions,
    timeout: Duration,
    idle: Option<Duration>,
    limit: u64,
    eof: PeerEof,
    on_timeout: OnTimeout,
}

fn options() -> impl Strategy<Value = Knobs> {
    (
        0u64..1200,
        proptest::option::of(millis(800)),
        prop_oneof![Just(0u64), 1u64..1_000_000, Just(u64::MAX)],
        prop_oneof![
            Just(PeerEof::Required),
            Just(PeerEof::IfSending),
            Just(PeerEof::NotRequired)
        ],
        prop_oneof![Just(OnTimeout::Close), Just(OnTimeout::Abort)],
        millis(300),
        proptest::option::of(millis(2000)),
    )
        .prop_map(|(t, idle, limit, eof, on_timeout, poll, user)| {
            let mut o = CloseOptions::new(Duration::from_millis(t))
                .drain_limit(limit)
                .peer_eof(eof)
                .on_timeout(on_timeout)
                .poll_interval(poll);
            if let Some(idle) = idle {
                o = o.idle_timeout(idle);
            }
            if let Some(user) = user {
                o = o.user_timeout(user);
            }
            Knobs {
                opts: o,
                timeout: Duration::from_millis(t),
                idle,
                limit,
                eof,
                on_timeout,
            }
        })
}

async fn run_peer(mut s: TcpStream, what: Peer) {
    let mut buf = vec![0u8; 1 << 16];
    match what {
        Peer::ReadsAndCloses => while let Ok(1..) = s.read(&mut buf).await {},
        Peer::ReadsNeverCloses => {
            while let Ok(1..) = s.read(&mut buf).await {}
            std::future::pending::<()>().await;
        }
        Peer::Stalls => std::future::pending::<()>().await,
        Peer::Floods => while s.write_all(&buf).await.is_ok() {},
        Peer::ResetsAfter(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let _ = s.abort();
        }
        Peer::ClosesAtOnce => drop(s),
    }
}

async fn case(knobs: Knobs, what: Peer, bytes: usize) -> Result<(), TestCaseError> {
    let opts = knobs.opts;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (ours, theirs) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let mut ours = ours.unwrap();
    let peer = tokio::spawn(run_peer(theirs.unwrap().0, what));
    // Write what fits within a short while (a stalled peer takes only so much).
    let data = vec![9u8; bytes];
    let _ = timeout(Duration::from_millis(200), ours.write_all(&data)).await;

    let start = Instant::now();
    let res = timeout(Duration::from_secs(10), ours.graceful_close_with(opts))
        .await
        .map_err(|_| TestCaseError::fail(format!("hung: {opts:?} against {what:?}")))?;
    let took = start.elapsed();
    peer.abort();

    let bound = knobs.timeout + Duration::from_secs(2);
    prop_assert!(took <= bound, "took {took:?} with {opts:?}");
    match &res {
        Ok(r) => {
            prop_assert!(r.acked(), "Ok without confirmation on Linux: {r:?}");
            prop_assert!(!r.aborted());
            if knobs.eof == PeerEof::Required {
                prop_assert!(r.peer_eof(), "Ok without the required EOF: {r:?}");
            }
            // A peer that never closes cannot give its EOF.
            if matches!(what, Peer::ReadsNeverCloses | Peer::Stalls | Peer::Floods) {
                prop_assert!(!r.peer_eof(), "{r:?} against {what:?}");
            }
        }
        Err(e) => {
            let r = e.report();
            match e.kind() {
                CloseErrorKind::DrainLimit => {
                    prop_assert!(r.drained_bytes() > knobs.limit, "{e:?}");
                }
                CloseErrorKind::IdleTimeout => {
                    prop_assert!(knobs.idle.is_some(), "{e:?}")
                }
                CloseErrorKind::PeerReset => prop_assert!(
                    matches!(what, Peer::ResetsAfter(_) | Peer::ClosesAtOnce),
                    "reset reported for {what:?}: {e:?}"
                ),
                CloseErrorKind::TimedOut | CloseErrorKind::RetransmitTimeout => {}
                other => prop_assert!(false, "unexpected {other:?}: {e}"),
            }
            let bound_hit = e.kind().is_timeout() || e.kind() == CloseErrorKind::DrainLimit;
            if r.aborted() {
                prop_assert!(knobs.on_timeout == OnTimeout::Abort && bound_hit, "{e:?}");
            }
            // A peer that reads and closes, given time, confirms delivery.
            if matches!(what, Peer::ReadsAndCloses)
                && knobs.timeout >= Duration::from_millis(800)
                && knobs.idle.is_none_or(|d| d >= Duration::from_millis(800))
                && knobs.limit > 0
            {
                prop_assert!(false, "a well-behaved peer failed: {e:?} with {opts:?}");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 48,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    })]

    #[test]
    fn any_options_against_any_peer(knobs in options(), what in peer(), bytes in 0usize..2_000_000) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e: io::Error| TestCaseError::fail(e.to_string()))?;
        rt.block_on(case(knobs, what, bytes))?;
    }
}
