//! A deterministic simulation of the kernel under the close machine.
//!
//! A scripted kernel ([`kernel`]) stands in for the socket: the send queue and its
//! acknowledgement, readiness edges, the peer's data, EOF, reset and retransmission
//! give-up, read errors, `TCP_INFO`, and platforms that cannot tell the
//! acknowledgement. Seeded cases ([`script`]) draw the options (their extremes among
//! them), how and when the owner starts the close, the connection as it stands then and
//! what happens after; [`run`] drives each close as a `GracefulIo` drop does, under
//! Tokio's paused clock, and checks on every poll:
//!
//! - bounded work: no poll spins, and a pending close always has a wakeup coming (its
//!   own yield, or its timer, never past its deadline);
//! - `Ok` only when the policy is met: acknowledged where the platform can tell, the
//!   peer's EOF where required, no input left unread (which would reset);
//! - a reset only where asked for: a bound with `OnTimeout::Abort`, or the reset that
//!   loses nothing, and then only when it loses nothing;
//! - `IdleTimeout` only after `idle_timeout` of silence the close itself observed;
//! - the tracker's cap ends only acknowledged lingering closes, one for each close that
//!   started lingering past it, and no more linger than it allows;
//! - every close ends by its deadline, plus one tick of the timer;
//! - the drain limit holds, and the ACK check is told the truth about our FIN.
//!
//! `TGC_SIM_CASES` sets how many seeds each sweep draws (the suite's default:
//! [`SEEDS`]), `TGC_SIM_SEED` runs one seed alone.

mod kernel;
mod run;
mod script;

use std::time::Duration;

use self::kernel::Shutdown;
use self::script::{Case, CloseCase, Ev};
use crate::options::Role;
use crate::options::{CloseOptions, OnTimeout, PeerEof};

/// Seeds drawn per run of the test suite, for single closes and for closes sharing a
/// tracker (a seed draws one or the other; each sweep keeps its own kind): some 4,000
/// single and 900 tracked cases, within half a minute of a debug build on two cores.
const SEEDS: (u64, u64) = (6_000, 3_000);

/// Runs `TGC_SIM_SEED` alone if set, else `TGC_SIM_CASES` (or `default`) seeds from
/// `first`, keeping the cases `filter` takes.
fn sweep(first: u64, default: u64, filter: impl Fn(&Case) -> bool) -> u64 {
    if let Some(seed) = std::env::var("TGC_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        eprintln!("{:?}", run::run(&script::case(seed)));
        return 1;
    }
    let n = std::env::var("TGC_SIM_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    let mut ran = 0;
    let mut ends = std::collections::BTreeMap::<String, u64>::new();
    for seed in first..first + n {
        let case = script::case(seed);
        if !filter(&case) {
            continue;
        }
        match std::panic::catch_unwind(|| run::run(&case)) {
            Ok(closes) => {
                for end in closes {
                    *ends.entry(end).or_default() += 1;
                }
            }
            Err(e) => {
                eprintln!(
                    "simulation case {seed} failed (TGC_SIM_SEED={seed} reruns it): {case:?}"
                );
                std::panic::resume_unwind(e);
            }
        }
        ran += 1;
    }
    eprintln!("{ran} cases from seed {first}; closes ended: {ends:?}");
    ran
}

/// Single closes, every option and its extremes.
#[test]
fn generated_single_closes_keep_every_invariant() {
    let ran = sweep(0, SEEDS.0, |c| c.closes.len() == 1);
    assert!(ran > 0);
}

/// Several closes sharing a tracker, caps 0, 1, 2 and n.
#[test]
fn generated_tracked_closes_keep_every_invariant() {
    let ran = sweep(1 << 32, SEEDS.1, |c| c.closes.len() > 1);
    assert!(ran > 0);
}

const MS: Duration = Duration::from_millis(1);

/// A close with the defaults of `role` under `opts`, our bytes acknowledged, no event.
fn quiet(opts: CloseOptions, role: Role) -> CloseCase {
    CloseCase {
        opts: opts.resolve(role),
        shut_first: None,
        written: 1000,
        acked: 1000,
        inq: 0,
        peer_fin: false,
        can_tell: true,
        rtt: MS,
        shutdown: Shutdown::Ok,
        events: Vec::new(),
    }
}

/// A close whose idle bound is zero while the peer takes nothing: it waits on its
/// timer, never spins (the idle re-check once set its deadline to "now" and went round
/// again, holding the thread for the whole deadline).
#[test]
fn a_zero_idle_bound_never_spins() {
    let mut close = quiet(
        CloseOptions::new(Duration::from_secs(1)).idle_timeout(Duration::ZERO),
        Role::Stream,
    );
    close.acked = 0;
    run::run(&Case {
        closes: vec![close],
        cap: None,
    });
}

/// A tunnel half-closed with `poll_shutdown` reads its peer for 6 s, then drops the
/// stream: the idle bound counts from the drop, and the peer, never silent, is drained
/// to its EOF (it once counted from the shutdown: `IdleTimeout` at the drop).
#[test]
fn the_idle_bound_counts_from_the_watch() {
    for on_timeout in [OnTimeout::Close, OnTimeout::Abort] {
        let mut close = quiet(
            CloseOptions::new(Duration::from_secs(30)).on_timeout(on_timeout),
            Role::Server,
        );
        close.shut_first = Some(6000 * MS);
        close.events = (1..40).map(|i| (i * 200 * MS, Ev::Sends(100))).collect();
        close.events.insert(0, (MS, Ev::Acks(u64::MAX)));
        close.events.push((8100 * MS, Ev::Fin));
        run::run(&Case {
            closes: vec![close],
            cap: None,
        });
    }
}

/// Cap 1: one close lingers for an uploader; a keep-alive client's close that ends at
/// once (its EOF came first) must not evict it (it once joined the lingering closes
/// for a moment).
#[test]
fn a_close_that_ends_at_once_never_evicts() {
    let opts = CloseOptions::new(Duration::from_secs(30));
    let mut uploader = quiet(opts, Role::Server);
    uploader.events = (1..20).map(|i| (i * 50 * MS, Ev::Sends(1024))).collect();
    uploader.events.insert(0, (MS, Ev::Acks(u64::MAX)));
    uploader.events.push((1500 * MS, Ev::Fin));
    let mut keep_alive = quiet(opts, Role::Server);
    keep_alive.shut_first = Some(500 * MS);
    keep_alive.peer_fin = true;
    keep_alive.events = vec![(400 * MS, Ev::Acks(u64::MAX))];
    run::run(&Case {
        closes: vec![uploader, keep_alive],
        cap: Some(1),
    });
}

/// A shutdown that finds the connection already reset (its error consumed by the
/// application) sent no FIN: the ACK check is told so, and the close is no delivery.
#[test]
fn a_failed_shutdown_sent_no_fin() {
    for can_tell in [true, false] {
        let mut close = quiet(CloseOptions::new(Duration::from_secs(5)), Role::Stream);
        close.shutdown = Shutdown::ResetConsumed;
        close.acked = 10;
        close.can_tell = can_tell;
        run::run(&Case {
            closes: vec![close],
            cap: None,
        });
    }
}

/// A streaming peer is drained in batches; bytes below a batch wake nobody. A close
/// that ends without the peer's EOF (here once our bytes are acknowledged,
/// `PeerEof::NotRequired`; or at the end of a grace period) reads them first: a
/// `close()` with input unread sends RST.
#[test]
fn bytes_a_batch_held_back_are_read_before_the_close_ends() {
    for policy in [PeerEof::NotRequired, PeerEof::Briefly] {
        let mut close = quiet(
            CloseOptions::new(Duration::from_secs(5)).peer_eof(policy),
            Role::Server,
        );
        close.acked = 0;
        close.events = vec![
            (MS, Ev::Sends(64 << 10)),
            (2 * MS, Ev::Sends(1448)),
            (3 * MS, Ev::Acks(u64::MAX)),
        ];
        run::run(&Case {
            closes: vec![close],
            cap: None,
        });
    }
}

/// Where `TCP_INFO` fails, a reset after the peer's EOF is still seen, through the
/// socket's error, instead of waiting for the deadline.
#[test]
fn a_reset_is_seen_without_tcp_info() {
    let mut close = quiet(CloseOptions::new(Duration::MAX), Role::Stream);
    close.acked = 0;
    close.events = vec![
        (Duration::ZERO, Ev::InfoFails(true)),
        (MS, Ev::Fin),
        (2 * MS, Ev::Dies(nix::libc::ECONNRESET)),
    ];
    let ends = run::run(&Case {
        closes: vec![close],
        cap: None,
    });
    assert_eq!(ends, ["PeerReset"]);
}

/// `PeerEof::IfSending`: a peer quiet when our bytes are acknowledged is given a grace
/// period; one that sends during it is drained to its EOF, not cut at its end.
#[test]
fn a_peer_that_sends_during_its_grace_is_drained_to_its_eof() {
    let mut close = quiet(
        CloseOptions::new(Duration::from_secs(5)).peer_eof(PeerEof::IfSending),
        Role::Server,
    );
    close.events = vec![
        (MS, Ev::Acks(u64::MAX)),
        (5 * MS, Ev::Sends(100)),
        (100 * MS, Ev::Fin),
    ];
    let ends = run::run(&Case {
        closes: vec![close],
        cap: None,
    });
    assert_eq!(ends, ["Ok, peer EOF"]);
}
