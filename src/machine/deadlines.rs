//! Far deadlines (and re-checks finer than a millisecond): one thread for the whole
//! process instead of a Tokio timer per close.
//!
//! A close's bounds (its deadline, the idle timeout, the safety-net re-check) are
//! seconds away and almost never reached: the peer's EOF or the ACK ends the close
//! first. Kept as Tokio timers they cost, in every close that waits, an insertion into
//! and a removal from the runtime's timer wheel under its lock and, when the new timer
//! is the runtime's earliest, a wakeup of its driver (`benches/compare`, figure 8: the
//! nginx-style close spends about 1 µs more per close with its deadline than without). Like the kernel, which keeps I/O timeouts ("the
//! vast majority of those timers never expire") apart from timers that must fire on
//! time (the timer wheel against hrtimers, `Documentation/timers/hrtimers.rst`), bounds
//! at least [`FAR`] away go to this module: a slab of slots (the deadline and waker of
//! one close), a min-heap of `(deadline, slot)` with lazy deletion, and one thread that
//! sleeps on a condition variable until the earliest deadline and wakes the closes that
//! are due. A close takes a [`Ticket`] (a slot) the first time it waits and gives it
//! back when it ends.
//!
//! The thread also takes the rare re-checks sooner than a millisecond, which Tokio's
//! timer (1 ms resolution) would end up to a millisecond late: the first looks at the
//! send queue, half a round trip apart, when no edge can wake the close (both
//! directions shut) and the peer's acknowledgement is due within a round trip. Its sleep
//! (`Condvar::wait_timeout`, a futex with a timeout on Linux) ends within the thread's
//! timer slack (50 µs).
//!
//! Other wakeups stay on Tokio's timer, and so does every wait while Tokio's clock is
//! paused (`tokio::time::pause`): the thread sleeps in real time, which a paused clock
//! does not follow.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::num::NonZeroU32;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

/// Wakeups at least this far away go to the deadline thread.
pub(crate) const FAR: Duration = Duration::from_millis(200);

/// The heap is rebuilt from the live slots when it holds more than twice their number
/// plus this many entries.
const COMPACT_SLACK: usize = 64;

/// Entries the tables keep their room for once no close waits.
const KEEP: usize = 1024;

/// A close's slot in the deadline heap (its index plus one).
#[derive(Debug)]
pub(crate) struct Ticket(NonZeroU32);

struct Service {
    state: Mutex<State>,
    cv: Condvar,
}

struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(Tick, u32)>>,
    /// Slots held by a ticket.
    live: usize,
    /// What the thread sleeps until; [`NONE`]: until notified. A close whose deadline
    /// is earlier notifies it.
    armed: Tick,
}

struct Slot {
    /// [`NONE`]: no deadline.
    at: Tick,
    waker: Option<Waker>,
}

/// Nanoseconds after [`epoch`]: 8 bytes where an `Instant` takes 16, in every slot and
/// heap entry.
type Tick = u64;

/// No deadline (584 years after the epoch; later deadlines are clamped below it).
const NONE: Tick = u64::MAX;

/// The origin of [`Tick`]s: the first time a close waited on the deadline thread.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `at` as a [`Tick`]; instants before the epoch are due at once.
fn tick(at: Instant) -> Tick {
    let d = at.saturating_duration_since(epoch());
    u64::try_from(d.as_nanos()).map_or(NONE - 1, |n| n.min(NONE - 1))
}

static SERVICE: Service = Service {
    state: Mutex::new(State::new()),
    cv: Condvar::new(),
};

/// Whether the thread runs; `false` when it could not be started.
static STARTED: OnceLock<bool> = OnceLock::new();

fn lock() -> MutexGuard<'static, State> {
    // The state stays consistent at every point a panic could leave it (the only code
    // not ours that runs under the lock is `Waker::clone`, before the slot is changed).
    SERVICE.state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn started() -> bool {
    *STARTED.get_or_init(|| {
        std::thread::Builder::new()
            .name("graceful-close-deadlines".into())
            .spawn(run)
            .is_ok()
    })
}

/// Has `waker` woken at `at`, through `ticket` (taken on first use). `false` when the
/// deadline thread cannot be had: the caller then uses a Tokio timer.
pub(crate) fn wake_at(ticket: &mut Option<Ticket>, at: Instant, waker: &Waker) -> bool {
    if !started() {
        return false;
    }
    let mut st = lock();
    let slot = match ticket {
        Some(t) => t.slot(),
        None => match st.take_slot() {
            Some(t) => ticket.insert(t).slot(),
            None => return false,
        },
    };
    let (notify, old) = st.set(slot, tick(at), waker);
    drop(st);
    // Outside the lock: dropping a waker may run arbitrary code.
    drop(old);
    if notify {
        SERVICE.cv.notify_one();
    }
    true
}

impl Ticket {
    fn slot(&self) -> u32 {
        self.0.get() - 1
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let waker = lock().give_back(self.slot());
        drop(waker); // outside the lock: dropping a waker may run arbitrary code
    }
}

impl State {
    const fn new() -> State {
        State {
            slots: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            live: 0,
            armed: NONE,
        }
    }

    /// A free slot; `None` when all 2^32 - 1 are taken.
    fn take_slot(&mut self) -> Option<Ticket> {
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&i| i < u32::MAX)?;
                self.slots.push(Slot {
                    at: NONE,
                    waker: None,
                });
                i
            }
        };
        let ticket = Ticket(NonZeroU32::new(slot + 1)?);
        self.live += 1;
        Some(ticket)
    }

    /// Frees `slot`; returns its waker, to be dropped outside the lock.
    fn give_back(&mut self, slot: u32) -> Option<Waker> {
        let s = &mut self.slots[slot as usize];
        s.at = NONE;
        let waker = s.waker.take();
        self.free.push(slot);
        self.live -= 1;
        if self.live == 0 {
            // Every heap entry is stale: drop them all (their type has no destructor, so
            // this only resets the length). Every slot is free and stays for the next
            // close, unless a burst made the tables grow beyond what is kept.
            self.heap.clear();
            if self.slots.len() > KEEP || self.heap.capacity() > KEEP {
                self.shrink();
            }
        }
        waker
    }

    /// Hands back to the allocator what a burst of closes made the tables grow to; only
    /// when no ticket is out.
    #[cold]
    fn shrink(&mut self) {
        debug_assert_eq!(self.live, 0);
        self.slots.clear();
        self.free.clear();
        self.heap.clear();
        self.slots.shrink_to(KEEP);
        self.free.shrink_to(KEEP);
        self.heap.shrink_to(KEEP);
    }

    /// Sets `slot` to wake `waker` at `at`. Returns whether the thread must be told (an
    /// earlier deadline than it sleeps until) and the waker replaced, if any.
    fn set(&mut self, slot: u32, at: Tick, waker: &Waker) -> (bool, Option<Waker>) {
        let s = &mut self.slots[slot as usize];
        let old = if s.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            None
        } else {
            s.waker.replace(waker.clone())
        };
        if s.at == at {
            return (false, old);
        }
        s.at = at;
        self.heap.push(Reverse((at, slot)));
        if self.heap.len() > 2 * self.live + COMPACT_SLACK {
            self.compact();
        }
        let notify = at < self.armed;
        if notify {
            self.armed = at;
        }
        (notify, old)
    }

    /// Rebuilds the heap from the live entries only.
    fn compact(&mut self) {
        let slots = &self.slots;
        self.heap
            .retain(|Reverse((at, i))| slots[*i as usize].at == *at);
    }

    /// Takes the wakers of the slots due at `now` into `due`; arms the next deadline.
    fn expire(&mut self, now: Tick, due: &mut Vec<Waker>) {
        while let Some(&Reverse((at, i))) = self.heap.peek() {
            let slot = &mut self.slots[i as usize];
            if slot.at != at {
                self.heap.pop(); // stale: the slot moved on or was given back
                continue;
            }
            if at > now {
                break;
            }
            self.heap.pop();
            slot.at = NONE;
            due.extend(slot.waker.take());
        }
        self.armed = match self.heap.peek() {
            Some(Reverse((at, _))) => *at,
            // Nothing waits, but keep sleeping until the time already set rather than
            // for ever: a close that comes meanwhile with a later deadline (as closes
            // with the same options do) then needs no wakeup of this thread.
            None if self.armed > now => self.armed,
            None => NONE,
        };
    }
}

/// The deadline thread: sleeps until the earliest deadline, wakes the closes due.
fn run() {
    let mut due = Vec::new();
    let mut st = lock();
    loop {
        st.expire(tick(Instant::now()), &mut due);
        if !due.is_empty() {
            drop(st);
            for w in due.drain(..) {
                // A waker that panics must not take the deadlines of every other close
                // down with this thread.
                let _ = catch_unwind(AssertUnwindSafe(|| w.wake()));
            }
            st = lock();
            continue;
        }
        st = if st.armed == NONE {
            SERVICE.cv.wait(st).unwrap_or_else(PoisonError::into_inner)
        } else {
            let left = Duration::from_nanos(st.armed.saturating_sub(tick(Instant::now())));
            SERVICE
                .cv
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count::default());
        (c.clone(), Waker::from(c))
    }

    fn slot(st: &mut State) -> u32 {
        let t = st.take_slot().unwrap();
        let slot = t.slot();
        // A ticket gives its slot back to the process-wide state when dropped; this
        // test's slots belong to its own state and are given back by hand.
        std::mem::forget(t);
        slot
    }

    #[test]
    fn due_closes_wake_in_order_and_stale_entries_are_skipped() {
        let ms = |n: u64| n * 1_000_000;
        let mut st = State::new();
        let (a, b, c) = (slot(&mut st), slot(&mut st), slot(&mut st));
        let (ca, wa) = waker();
        let (cb, wb) = waker();
        let (cc, wc) = waker();
        assert!(
            st.set(a, ms(30), &wa).0,
            "the first deadline is told to the thread"
        );
        assert!(st.set(b, ms(10), &wb).0, "an earlier one too");
        assert!(!st.set(c, ms(20), &wc).0, "a later one is not");
        assert!(!st.set(b, ms(40), &wb).0); // b moves on: its entry at 10 is stale
        drop(st.give_back(c)); // c is given back: its entry at 20 is stale
        let mut due = Vec::new();
        st.expire(ms(25), &mut due);
        assert!(due.is_empty());
        assert_eq!(st.armed, ms(30));
        st.expire(ms(35), &mut due);
        assert_eq!(due.len(), 1);
        due.drain(..).for_each(Waker::wake);
        assert_eq!(ca.0.load(Ordering::SeqCst), 1);
        assert_eq!(st.armed, ms(40));
        st.expire(ms(45), &mut due);
        due.drain(..).for_each(Waker::wake);
        assert_eq!(cb.0.load(Ordering::SeqCst), 1);
        assert_eq!(cc.0.load(Ordering::SeqCst), 0);
        assert_eq!(st.armed, NONE);
        assert!(st.heap.is_empty());
    }

    /// Closes that come and go one at a time, with the same timeout, do not wake the
    /// thread each: it keeps the time it sleeps until while nothing waits.
    #[test]
    fn an_idle_thread_keeps_its_time_for_the_next_close() {
        let mut st = State::new();
        let (_c, w) = waker();
        let a = slot(&mut st);
        assert!(st.set(a, 30, &w).0, "the first close tells the thread");
        drop(st.give_back(a)); // it ended before the thread looked
        let mut due = Vec::new();
        st.expire(10, &mut due);
        assert_eq!(st.armed, 30, "still sleeping until 30");
        let b = slot(&mut st);
        assert!(!st.set(b, 40, &w).0, "a later deadline needs no wakeup");
        st.expire(30, &mut due);
        assert_eq!(st.armed, 40);
        assert!(due.is_empty());
        drop(st.give_back(b));
        st.expire(40, &mut due);
        assert_eq!(
            st.armed, NONE,
            "past its time with nothing waiting: until told"
        );
    }

    #[test]
    fn the_heap_is_compacted_and_slots_are_reused() {
        let mut st = State::new();
        let a = slot(&mut st);
        let (ca, wa) = waker();
        for i in 0..1000 {
            st.set(a, i, &wa);
            assert!(st.heap.len() <= 2 * st.live + COMPACT_SLACK + 1);
        }
        let mut due = Vec::new();
        st.expire(998, &mut due);
        assert!(due.is_empty(), "only the last deadline is live");
        st.expire(999, &mut due);
        due.drain(..).for_each(Waker::wake);
        assert_eq!(ca.0.load(Ordering::SeqCst), 1);
        let b = slot(&mut st);
        drop(st.give_back(a));
        assert_eq!(slot(&mut st), a, "a given-back slot is taken first");
        drop(st.give_back(a));
        drop(st.give_back(b));
        assert_eq!(st.live, 0);
        assert!(
            st.heap.is_empty(),
            "no ticket is out: every entry was stale"
        );
        assert_eq!(
            st.free.len(),
            st.slots.len(),
            "every slot is free for the next close"
        );
        // A burst beyond what is kept is handed back once the last ticket is.
        let burst: Vec<u32> = (0..=KEEP).map(|_| slot(&mut st)).collect();
        for (i, &s) in burst.iter().enumerate() {
            st.set(s, i as Tick, &wa);
        }
        for s in burst {
            drop(st.give_back(s));
        }
        assert!(st.slots.is_empty() && st.heap.is_empty() && st.free.is_empty());
        assert!(st.slots.capacity() <= KEEP && st.heap.capacity() <= KEEP);
    }

    /// A pending close costs the process a slot and at least one heap entry.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_waiting_close_stays_small_here() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(std::mem::size_of::<Reverse<(Tick, u32)>>(), 16);
        assert_eq!(std::mem::size_of::<Option<Ticket>>(), 4);
    }

    #[test]
    fn the_thread_wakes_a_due_close_and_not_one_that_ended() {
        let (due, w_due) = waker();
        let (gone, w_gone) = waker();
        let start = Instant::now();
        let at = start + Duration::from_millis(250);
        let mut t_due = None;
        let mut t_gone = None;
        assert!(wake_at(&mut t_due, at, &w_due));
        assert!(wake_at(&mut t_gone, at, &w_gone));
        drop(t_gone);
        while due.0.load(Ordering::SeqCst) == 0 && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(due.0.load(Ordering::SeqCst), 1, "woken within 10 s");
        assert!(
            start.elapsed() >= Duration::from_millis(250),
            "not before its time"
        );
        assert_eq!(gone.0.load(Ordering::SeqCst), 0);
    }
}
