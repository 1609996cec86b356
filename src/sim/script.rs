//! The cases the simulation runs: options (their extremes included), how the owner
//! starts the close, the connection as it stands then, and what the peer and the
//! network do after, all drawn from one seed.

use std::time::Duration;

use super::kernel::Shutdown;
use crate::options::Role;
use crate::options::{CloseOptions, OnTimeout, PeerEof};

/// A small, seeded generator (SplitMix64): the same seed, the same case.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `true` with probability `p` percent.
    pub(super) fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    pub(super) fn pick<T: Copy>(&mut self, of: &[T]) -> T {
        of[self.below(of.len() as u64) as usize]
    }
}

/// What the peer or the network does at some point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ev {
    /// The peer's data arrives.
    Sends(u64),
    /// The peer's FIN arrives.
    Fin,
    /// The peer acknowledges this much more of our sequence space.
    Acks(u64),
    /// A reset (`ECONNRESET`) or a retransmission give-up (`ETIMEDOUT`).
    Dies(i32),
    /// The next read fails with this error.
    ReadError(i32),
    /// `TCP_INFO` fails from now on (`true`) or works again.
    InfoFails(bool),
}

/// One close of a case.
#[derive(Debug, Clone)]
pub(super) struct CloseCase {
    pub(super) opts: CloseOptions,
    /// `Some(d)`: `poll_shutdown` at the start and the owner's first poll `d` later
    /// (the application reads meanwhile); `None`: the owner polls at once (a drop
    /// without a shutdown, or `graceful_close`).
    pub(super) shut_first: Option<Duration>,
    pub(super) written: u64,
    pub(super) acked: u64,
    pub(super) inq: u64,
    pub(super) peer_fin: bool,
    pub(super) can_tell: bool,
    pub(super) rtt: Duration,
    pub(super) shutdown: Shutdown,
    /// What happens, in time order.
    pub(super) events: Vec<(Duration, Ev)>,
}

/// A case: one close or several sharing a tracker whose lingering cap is `cap`.
#[derive(Debug, Clone)]
pub(super) struct Case {
    pub(super) closes: Vec<CloseCase>,
    pub(super) cap: Option<usize>,
}

const MS: Duration = Duration::from_millis(1);

/// The durations options take, extremes included.
fn duration(rng: &mut Rng) -> Duration {
    rng.pick(&[
        Duration::ZERO,
        MS,
        50 * MS,
        200 * MS,
        Duration::from_secs(1),
        Duration::from_secs(5),
        Duration::from_secs(30),
        Duration::MAX,
    ])
}

/// Options as a user may set them, each unset at times (the role's default).
pub(super) fn options(rng: &mut Rng) -> CloseOptions {
    let mut o = CloseOptions::new(duration(rng));
    if rng.pct(60) {
        o = o.idle_timeout(duration(rng));
    }
    if rng.pct(50) {
        o = o.drain_limit(rng.pick(&[0, 1, 1000, 64 << 10, 1 << 20, 64 << 20, u64::MAX]));
    }
    if rng.pct(70) {
        o = o.peer_eof(rng.pick(&[
            PeerEof::Required,
            PeerEof::IfSending,
            PeerEof::NotRequired,
            PeerEof::Briefly,
        ]));
    }
    if rng.pct(30) {
        o = o.on_timeout(OnTimeout::Abort);
    }
    if rng.pct(20) {
        o = o.abort_when_safe(true);
    }
    if rng.pct(30) {
        o = o.poll_interval(rng.pick(&[Duration::ZERO, MS, Duration::from_secs(1), Duration::MAX]));
    }
    if rng.pct(10) {
        o = o.user_timeout(duration(rng));
    }
    o.resolve(rng.pick(&[Role::Stream, Role::Server, Role::Client]))
}

/// What the peer and the network do over the first seconds of the close.
fn events(rng: &mut Rng, shutdown: Shutdown) -> Vec<(Duration, Ev)> {
    let mut events = Vec::new();
    let mut at = Duration::ZERO;
    for _ in 0..rng.below(14) {
        // Bursts and lulls: some events close together, some seconds apart.
        at += MS * rng.pick(&[0, 1, 3, 20, 150, 700, 2500, 6000]) as u32;
        let ev = match rng.below(100) {
            0..=29 => Ev::Sends(rng.pick(&[1, 100, 1448, 16 << 10, 64 << 10, 10 << 20])),
            30..=59 => Ev::Acks(rng.pick(&[1, 1000, 64 << 10, u64::MAX])),
            60..=77 => Ev::Fin,
            78..=85 => Ev::Dies(rng.pick(&[nix::libc::ECONNRESET, nix::libc::ETIMEDOUT])),
            86..=91 => Ev::ReadError(nix::libc::EIO),
            // A reset whose error the application consumed shows only in `TCP_INFO`.
            _ if shutdown != Shutdown::Ok => Ev::Acks(1),
            _ => Ev::InfoFails(rng.pct(50)),
        };
        events.push((at, ev));
    }
    events
}

/// One close drawn from `rng`.
pub(super) fn close(rng: &mut Rng) -> CloseCase {
    let written = rng.pick(&[0, 1, 1000, 1 << 20]);
    let shutdown = match rng.below(100) {
        0..=89 => Shutdown::Ok,
        90..=94 => Shutdown::ResetPending,
        _ => Shutdown::ResetConsumed,
    };
    CloseCase {
        opts: options(rng),
        shut_first: rng
            .pct(40)
            .then(|| MS * rng.pick(&[0, 10, 1000, 6000, 40_000])),
        written,
        acked: if rng.pct(50) {
            written
        } else {
            rng.below(written + 1)
        },
        inq: rng.pick(&[0, 0, 10, 100 << 10]),
        peer_fin: rng.pct(20),
        can_tell: rng.pct(90),
        rtt: rng.pick(&[Duration::from_micros(50), MS, 50 * MS]),
        shutdown,
        events: events(rng, shutdown),
    }
}

/// A case drawn from `seed`: one close in most, several sharing a tracker in some.
pub(super) fn case(seed: u64) -> Case {
    let mut rng = Rng::new(seed);
    if rng.pct(70) {
        return Case {
            closes: vec![close(&mut rng)],
            cap: rng.pct(20).then(|| rng.pick(&[0, 1, 1024])),
        };
    }
    let n = 2 + rng.below(4) as usize;
    Case {
        closes: (0..n)
            .map(|_| {
                if rng.pct(50) {
                    uploader(&mut rng)
                } else {
                    close(&mut rng)
                }
            })
            .collect(),
        cap: Some(rng.pick(&[0, 1, 2, n])),
    }
}

/// A close that lingers: our bytes delivered, a client still uploading for a while (or
/// for good), under a policy that waits for it; the owner polls a little late at times.
fn uploader(rng: &mut Rng) -> CloseCase {
    let mut c = close(rng);
    let policy = rng.pick(&[PeerEof::IfSending, PeerEof::Required]);
    c.opts = c
        .opts
        .timeout(Duration::from_secs(30))
        .peer_eof(policy)
        .drain_limit(64 << 20)
        .idle_timeout(Duration::from_secs(5));
    c.acked = c.written;
    c.shutdown = Shutdown::Ok;
    c.shut_first = rng.pct(30).then(|| MS * rng.pick(&[0, 300, 2000]) as u32);
    let every = MS * rng.pick(&[20, 100, 400]) as u32;
    let mut at = MS * rng.below(300) as u32;
    let mut events = vec![(Duration::ZERO, Ev::Acks(u64::MAX))];
    for _ in 0..rng.below(40) {
        events.push((at, Ev::Sends(rng.pick(&[100, 1448, 64 << 10]))));
        at += every;
    }
    if rng.pct(60) {
        events.push((at, Ev::Fin));
    }
    c.events = events;
    c
}
