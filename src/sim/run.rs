//! Runs a case under Tokio's paused clock and checks the invariants at every step.
//!
//! Each close runs as a `GracefulIo` drop runs it (`io::Background`: the machine,
//! the tracker's registration, the outcome callback) over its own scripted kernel. The
//! driver polls a close only when something woke it (an edge of its kernel, its timer,
//! the tracker, its own yield) and moves the clock only to the next event or timer, so
//! a close that waits on nothing never ends, and one that spins fails on the spot.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::time::Instant;

use super::kernel::{Kernel, SimSocket};
use super::script::{Case, CloseCase, Ev};
use crate::error::CloseError;
use crate::error::CloseErrorKind;
use crate::io::test_close;
use crate::io::Background;
use crate::machine::Closer;
use crate::options::{OnTimeout, PeerEof};
use crate::report::{CloseReport, SafeAbort};
use crate::tracker::CloseTracker;

/// How long past its last event a case may run before a close that has not ended is
/// called hung (a case's deadlines and idle bounds are at most 30 s; an unbounded
/// close ends by the peer's FIN sent at the end of the script).
const HANG: Duration = Duration::from_secs(120);
/// Tokio's timer resolution: a close ends at most this late after its deadline.
const TICK: Duration = Duration::from_millis(1);

/// A waker that records that it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type Outcome = Result<CloseReport, CloseError>;

/// One close of a running case.
struct Running {
    spec: CloseCase,
    kernel: Rc<RefCell<Kernel>>,
    task: Background<SimSocket>,
    flag: Arc<Flag>,
    waker: Waker,
    /// When `poll_shutdown` ran (the deadline counts from it) and the owner first polls.
    begun: Instant,
    owner_at: Instant,
    started: bool,
    outcome: Arc<Mutex<Option<(Outcome, Instant)>>>,
    /// Polls at the present instant: a close polled again and again while the clock
    /// stands still is spinning through its timer.
    polls_now: (Instant, u32),
    checked: bool,
    /// It was seen lingering.
    lingered: bool,
    /// How it ended, for the statistics.
    ended: String,
}

/// Runs `case` and panics at the first broken invariant; how each close ended.
pub(super) fn run(case: &Case) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let mut sim = Sim::new(case);
        sim.run().await;
        sim.closes.iter().map(|c| c.ended.clone()).collect()
    })
}

struct Sim {
    closes: Vec<Running>,
    cap: Option<usize>,
    t0: Instant,
    /// Every event, in time order: (when, close, event); `None`: the owner's first
    /// poll.
    events: Vec<(Instant, usize, Option<Ev>)>,
    /// Closes the tracker evicted, and closes that started lingering past its cap.
    evicted: usize,
    owed: usize,
}

impl Sim {
    fn new(case: &Case) -> Self {
        let t0 = Instant::now();
        let tracker = case.cap.map(|cap| {
            let t = CloseTracker::new();
            t.set_max_lingering(cap);
            t
        });
        let mut events = Vec::new();
        let closes = case
            .closes
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut k = Kernel::new(t0);
                k.written = spec.written;
                k.acked = spec.acked;
                k.inq = spec.inq;
                k.peer_fin = spec.peer_fin;
                k.can_tell = spec.can_tell;
                k.rtt = spec.rtt;
                k.shutdown = spec.shutdown;
                let kernel = Rc::new(RefCell::new(k));
                let sock = SimSocket(kernel.clone());
                let mut closer = Closer::new(spec.opts);
                if tracker.is_some() {
                    closer = closer.evictable();
                }
                let owner_at = t0 + spec.shut_first.unwrap_or_default();
                let outcome = Arc::new(Mutex::new(None));
                if spec.shut_first.is_some() {
                    if let Err(e) = closer.begin(&sock) {
                        // `poll_shutdown` failed: the close ended there.
                        *outcome.lock().unwrap() = Some((Err(e), t0));
                    }
                }
                let slot = outcome.clone();
                let hold = tracker.as_ref().map(CloseTracker::hold);
                let task = test_close(sock, closer, hold, move |res: &Outcome| {
                    let res = res.clone_for_test();
                    *slot.lock().unwrap() = Some((res, Instant::now()));
                });
                for &(at, ev) in &spec.events {
                    events.push((t0 + at, i, Some(ev)));
                }
                events.push((owner_at, i, None));
                // The end of the script: everything acknowledged, the peer closes.
                let last = spec.events.last().map_or(Duration::ZERO, |e| e.0);
                let end = t0 + last.max(spec.shut_first.unwrap_or_default()) + 60 * TICK * 1000;
                events.push((end, i, Some(Ev::Acks(u64::MAX))));
                events.push((end, i, Some(Ev::Fin)));
                let flag = Arc::new(Flag::default());
                Running {
                    spec: spec.clone(),
                    kernel,
                    task,
                    waker: Waker::from(flag.clone()),
                    flag,
                    begun: t0,
                    owner_at,
                    started: false,
                    outcome,
                    polls_now: (t0, 0),
                    checked: false,
                    lingered: false,
                    ended: String::new(),
                }
            })
            .collect();
        events.sort_by_key(|e| e.0);
        Sim {
            closes,
            cap: case.cap,
            t0,
            events,
            evicted: 0,
            owed: 0,
        }
    }

    async fn run(&mut self) {
        let mut next_event = 0;
        loop {
            let now = Instant::now();
            while next_event < self.events.len() && self.events[next_event].0 <= now {
                let (_, i, ev) = self.events[next_event];
                self.apply(i, ev, now);
                next_event += 1;
            }
            self.settle();
            let live = self.closes.iter().any(|c| !c.checked);
            if !live {
                return;
            }
            let timers = self
                .closes
                .iter()
                .filter(|c| c.started && !c.checked)
                .filter_map(|c| c.task.closer().timer_deadline());
            let next = self
                .events
                .get(next_event)
                .map(|e| e.0)
                .into_iter()
                .chain(timers)
                .min();
            let Some(next) = next else {
                let stuck: Vec<_> = self.closes.iter().filter(|c| !c.checked).collect();
                panic!(
                    "a close waits on nothing: {:?}",
                    stuck.iter().map(|c| c.task.closer()).collect::<Vec<_>>()
                );
            };
            let last = self.events.last().map_or(self.t0, |e| e.0);
            assert!(
                next <= last + HANG,
                "a close never ends: {:#?}",
                self.closes
                    .iter()
                    .filter(|c| !c.checked)
                    .map(|c| (c.task.closer(), &c.kernel))
                    .collect::<Vec<_>>()
            );
            // Tokio's timer fires at whole milliseconds from the runtime's start.
            let to = ceil_ms(self.t0, next.max(now));
            if to > now {
                tokio::time::advance(to - now).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
    }

    /// An event of close `i`'s peer or network; `None`: its owner polls.
    fn apply(&mut self, i: usize, ev: Option<Ev>, now: Instant) {
        let c = &mut self.closes[i];
        let mut k = c.kernel.borrow_mut();
        match ev {
            None => {
                c.started = true;
                c.flag.0.store(true, Ordering::SeqCst);
            }
            // Before the owner polls, the application reads what the peer sends.
            Some(Ev::Sends(_)) if !c.started && !k.closed => k.last_data = now,
            Some(Ev::Sends(n)) => k.peer_sends(n, now),
            Some(Ev::Fin) => k.peer_fin(),
            Some(Ev::Acks(n)) => k.peer_acks(n),
            Some(Ev::Dies(errno)) => k.dies(errno),
            Some(Ev::ReadError(errno)) => k.read_error = Some(errno),
            Some(Ev::InfoFails(on)) => k.info_fails = on,
        }
    }

    /// Polls every close something woke until none is, checking each poll.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut polled = false;
            for i in 0..self.closes.len() {
                let c = &mut self.closes[i];
                if !c.started || c.checked || !c.flag.0.swap(false, Ordering::SeqCst) {
                    continue;
                }
                polled = true;
                c.kernel.borrow_mut().ops = 0;
                c.count_poll();
                let mut cx = Context::from_waker(&c.waker);
                match Pin::new(&mut c.task).poll(&mut cx) {
                    Poll::Ready(()) => {
                        if c.end_check() {
                            self.evicted += 1;
                        }
                    }
                    Poll::Pending => {
                        c.pending_check();
                        let joined = c.task.closer().lingering() && !c.lingered;
                        c.lingered |= joined;
                        if joined && self.cap.is_some_and(|cap| self.lingering() > cap.max(1)) {
                            self.owed += 1;
                        }
                    }
                }
                // The cap ends only what it must: one close for each that started
                // lingering past it.
                assert!(
                    self.evicted <= self.owed,
                    "{} closes evicted, {} started lingering past the cap",
                    self.evicted,
                    self.owed
                );
            }
            if !polled {
                if let Some(cap) = self.cap {
                    let n = self.lingering();
                    assert!(n <= cap.max(1), "{n} closes linger under a cap of {cap}");
                }
                return;
            }
        }
        panic!("the closes keep waking each other");
    }

    /// Closes lingering now.
    fn lingering(&self) -> usize {
        self.closes
            .iter()
            .filter(|c| c.started && !c.checked && c.task.closer().lingering())
            .count()
    }
}

/// The first whole millisecond after `t0` at or after `t`.
fn ceil_ms(t0: Instant, t: Instant) -> Instant {
    let ns = t.duration_since(t0).as_nanos().div_ceil(1_000_000);
    t0 + Duration::from_millis(ns as u64)
}

/// Polls of one close at one instant past which it spins: its own yields (a few, for
/// re-checks sooner than the timer), its edges, its timer, the tracker.
const POLLS_PER_INSTANT: u32 = 64;

impl Running {
    fn count_poll(&mut self) {
        let now = Instant::now();
        if self.polls_now.0 != now {
            self.polls_now = (now, 0);
        }
        self.polls_now.1 += 1;
        assert!(
            self.polls_now.1 <= POLLS_PER_INSTANT,
            "a close spins: polled {POLLS_PER_INSTANT} times while the clock stood still: {:?}",
            self.task.closer()
        );
    }

    /// A close that returned `Pending` will be woken: it yielded, or its timer is
    /// armed, never past its deadline.
    fn pending_check(&mut self) {
        let closer = self.task.closer();
        if self.flag.0.load(Ordering::SeqCst) {
            return; // it yielded: polled again at once
        }
        let Some(at) = closer.timer_deadline() else {
            panic!("a pending close with no timer: it waits on nothing: {closer:?}");
        };
        let deadline = closer.deadline_instant();
        assert!(
            at <= deadline,
            "a close sleeps past its deadline: {at:?} > {deadline:?}"
        );
    }

    /// The checks of a close that ended; whether the tracker evicted it.
    fn end_check(&mut self) -> bool {
        self.checked = true;
        let mut k = self.kernel.borrow_mut();
        k.dropped = true;
        let (res, at) = self.outcome.lock().unwrap().take().expect("an outcome");
        let o = self.spec.opts;
        let policy = o.peer_eof.unwrap_or_default();
        let report = match &res {
            Ok(r) => r,
            Err(e) => e.report(),
        };
        let what = format!("{res:?} at {:?}; {:?}; {k:?}", at - self.begun, self.spec);
        self.ended = match &res {
            Ok(r) if r.aborted() => "Ok, safe abort".into(),
            Ok(r) if r.peer_eof() => "Ok, peer EOF".into(),
            Ok(_) => "Ok, no peer EOF".into(),
            Err(e) if e.report().aborted() => format!("{:?}, aborted", e.kind()),
            Err(e) => format!("{:?}", e.kind()),
        };
        assert!(
            !k.fin_told_wrong,
            "the ACK check was told our FIN was sent when it was not, or the reverse: {what}"
        );
        // Every close ends by its deadline (plus one tick of the timer).
        let deadline = self
            .begun
            .checked_add(o.timeout)
            .map(|d| d.max(self.owner_at));
        if let Some(d) = deadline {
            assert!(at <= d + TICK, "a close ended after its deadline: {what}");
        }
        // A reset only where asked for.
        let aborted = report.aborted();
        assert_eq!(
            aborted,
            k.reset_armed.is_some(),
            "aborted vs reset armed: {what}"
        );
        if let Some((unacked, unread, fin)) = k.reset_armed {
            let safe = matches!(&res, Ok(r) if r.safe_abort() == Some(SafeAbort::Taken))
                && o.abort_when_safe
                && unread == 0
                && unacked <= u64::from(fin);
            let bound = matches!(&res, Err(e) if (e.kind().is_timeout()
                || e.kind() == CloseErrorKind::DrainLimit)
                && o.on_timeout == OnTimeout::Abort);
            assert!(safe || bound, "a reset nobody asked for: {what}");
        }
        // The drain limit holds.
        let limit = o.drain_limit.unwrap_or(u64::MAX);
        let over = matches!(&res, Err(e) if e.kind() == CloseErrorKind::DrainLimit);
        assert_eq!(k.discarded > limit, over, "the drain limit: {what}");
        match &res {
            Ok(r) if r.aborted() => {}
            Ok(r) => {
                // `Ok` only when the policy is met.
                if k.can_tell {
                    assert!(
                        r.acked() && k.outq() == 0,
                        "Ok without the acknowledgement: {what}"
                    );
                }
                if policy == PeerEof::Required || !k.can_tell {
                    assert!(
                        r.peer_eof() && k.eof_read,
                        "Ok without the peer's EOF: {what}"
                    );
                }
                assert_eq!(k.inq, 0, "an Ok close left input unread (a reset): {what}");
            }
            Err(e) if e.kind() == CloseErrorKind::IdleTimeout => {
                // Only after the idle bound of silence the close itself observed.
                let idle = o.idle_timeout.unwrap_or(Duration::MAX);
                let quiet_from = self.owner_at.max(k.last_data);
                assert!(
                    at.checked_duration_since(quiet_from)
                        .is_some_and(|q| q >= idle),
                    "IdleTimeout after less than {idle:?} of silence: {what}"
                );
                assert!(
                    !k.can_tell || report.acked(),
                    "IdleTimeout while delivering: {what}"
                );
            }
            Err(e) if e.kind() == CloseErrorKind::Evicted => {
                assert!(
                    report.acked(),
                    "the cap ended a close still delivering: {what}"
                );
                return true;
            }
            Err(_) => {}
        }
        false
    }
}

/// Outcomes as the simulation keeps them.
trait CloneForTest {
    fn clone_for_test(&self) -> Self;
}

impl CloneForTest for Outcome {
    fn clone_for_test(&self) -> Self {
        match self {
            Ok(r) => Ok(r.clone()),
            Err(e) => Err(e.duplicate()),
        }
    }
}
