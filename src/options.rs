//! Options for a graceful close.

use std::time::Duration;

/// What a graceful close does when a bound is hit: the deadline, the idle timeout or
/// the drain limit.
///
/// The default is [`OnTimeout::Close`], like nginx, whose `reset_timedout_connection`
/// is off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum OnTimeout {
    /// Close the socket plainly and let the kernel carry on with whatever is queued: it
    /// keeps retransmitting unacknowledged data as an orphan socket. If the peer sent
    /// data we did not read, the kernel sends RST anyway (RFC 2525 2.17).
    #[default]
    Close,
    /// Abort: set `SO_LINGER {1, 0}` and close, so the kernel sends RST, discards
    /// both queues and frees the socket at once (no `FIN_WAIT`, no `TIME_WAIT`). This is
    /// nginx's `reset_timedout_connection on`; use it against hostile peers.
    Abort,
}

/// Which defaults fill the options a user did not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A bare stream's `graceful_close`.
    Stream,
    /// A server connection: `GracefulIo`, `GracefulListener`, the layer around a
    /// connection service.
    Server,
    /// A client connection: the layer around a connector.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    Client,
}

/// Whether a close waits for the peer to close its side (its EOF) after our data and
/// FIN were acknowledged.
///
/// Reading the peer's EOF is what makes the final `close()` safe: a socket closed with
/// unread input sends RST (RFC 2525 2.17), and a reset can destroy the tail of our data
/// in flight. Once our data and FIN are acknowledged nothing of ours can be lost any
/// more, but a peer that is still sending gets RST for its next segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PeerEof {
    /// Wait for the peer's EOF, discarding what it sends (nginx's `lingering_close
    /// always`). The default of
    /// [`AsyncGracefulClose::graceful_close`](crate::AsyncGracefulClose::graceful_close).
    #[default]
    Required,
    /// Wait for the peer's EOF only if there is a reason to: input we did not read, or
    /// data that arrived since the close began (nginx's `lingering_close on`, made
    /// exact: on Linux the kernel's time of the last received segment,
    /// `TCP_INFO.tcpi_last_data_recv`, says whether the peer is still sending). A
    /// connection with neither is given four round trips (10 ms to 1 s) after our data
    /// and FIN were acknowledged to answer with its own FIN (a TLS client its
    /// `close_notify` first), then closed.
    /// The default of the server adapters (`GracefulIo`, `GracefulListener`, the tower
    /// layer over accepted connections): an idle keep-alive client does not hold a
    /// server's shutdown.
    ///
    /// The trade-off: a client that sends a new request on an idle connection after our
    /// close gets RST — having received everything we sent, so it retries as it would
    /// after any server closed an idle connection.
    IfSending,
    /// Do not wait for the peer's EOF: the close ends once our data and FIN are
    /// acknowledged; data the peer sends meanwhile is still discarded. For peers that
    /// never close their side.
    NotRequired,
    /// Give the peer four round trips (10 ms to 1 s) after our data and FIN were
    /// acknowledged to close its side, discarding what it sends meanwhile, then close,
    /// whether or not it is still sending: what it still sends was abandoned, and once
    /// our own bytes are acknowledged nothing of ours can be lost. A peer still
    /// sending then gets RST and stops within a round trip or two, as after a plain
    /// close, instead of streaming into a drain.
    ///
    /// The default of client connections (the tower layer around a connector): a
    /// server's last words after the client's FIN (its TLS `close_notify`, an HTTP/2
    /// GOAWAY) are read, not answered with RST, and a response the client dropped
    /// midway stops at once instead of being downloaded up to the drain limit.
    Briefly,
}

/// How a graceful close is bounded and what it waits for.
///
/// Built from the total deadline with [`CloseOptions::new`], then refined:
///
/// ```
/// use std::time::Duration;
/// use tokio_graceful_close::{CloseOptions, OnTimeout, PeerEof};
///
/// let opts = CloseOptions::new(Duration::from_secs(10))
///     .idle_timeout(Duration::from_secs(2))
///     .drain_limit(1 << 20)
///     .peer_eof(PeerEof::Required)
///     .on_timeout(OnTimeout::Abort);
/// # let _ = opts;
/// ```
///
/// | option | default | meaning |
/// |---|---|---|
/// | [`timeout`](Self::new) | 30 s ([`Default`]) | the whole close, from its first poll |
/// | [`idle_timeout`](Self::idle_timeout) | see below | longest silence while waiting for the peer's EOF |
/// | [`drain_limit`](Self::drain_limit) | see below | most bytes discarded while waiting for EOF |
/// | [`peer_eof`](Self::peer_eof) | see below | when to wait for the peer to close its side too |
/// | [`on_timeout`](Self::on_timeout) | [`OnTimeout::Close`] | what to do when a bound is hit |
/// | [`poll_interval`](Self::poll_interval) | 100 ms | the safety-net re-check of the send queue |
/// | [`user_timeout`](Self::user_timeout) | not set | `TCP_USER_TIMEOUT` for the close |
///
/// Every duration from [`Duration::ZERO`] to [`Duration::MAX`] is accepted;
/// `Duration::MAX` means "no bound".
///
/// Three options default to what fits the place the options are used, unless set:
///
/// | | a bare stream's [`graceful_close`](crate::AsyncGracefulClose::graceful_close) | server connections (`GracefulIo`, `GracefulListener`, the tower layer around a connection service) | client connections (the tower layer around a connector) |
/// |---|---|---|---|
/// | `peer_eof` | [`PeerEof::Required`] | [`PeerEof::IfSending`] | [`PeerEof::Briefly`] |
/// | `idle_timeout` | none | 5 s ([`Self::ADAPTER_IDLE_TIMEOUT`]) | 5 s |
/// | `drain_limit` | 64 MiB | 64 MiB | 64 KiB ([`Self::CLIENT_DRAIN_LIMIT`]) |
/// | cost at shutdown | waits for the peer's EOF | closes at once once delivered, unless the client is still sending | closes once delivered and the server answered (its `close_notify`, GOAWAY, FIN); a response still arriving ends in RST after 64 KiB |
/// | cost under attack | up to `timeout` per close | up to 5 s of silence, `timeout` in all, per close; capped per [`CloseTracker`](crate::CloseTracker) | at most 64 KiB downloaded |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseOptions {
    pub(crate) timeout: Duration,
    // `None`: not set, so the default of where the options are used applies (see the
    // table above and `resolve`).
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) drain_limit: Option<u64>,
    pub(crate) peer_eof: Option<PeerEof>,
    pub(crate) on_timeout: OnTimeout,
    pub(crate) poll_interval: Duration,
    pub(crate) user_timeout: Option<Duration>,
    pub(crate) abort_when_safe: bool,
}

impl CloseOptions {
    /// The default drain limit: 64 MiB.
    pub const DEFAULT_DRAIN_LIMIT: u64 = 64 << 20;
    /// The drain limit of client connections (a connector wrapped by the tower layer)
    /// unless set: 64 KiB. A response the caller abandoned is not downloaded.
    pub const CLIENT_DRAIN_LIMIT: u64 = 64 << 10;
    /// The idle timeout of the adapters' closes unless set: 5 s, nginx's
    /// `lingering_timeout`.
    pub const ADAPTER_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default safety-net poll interval: 100 ms.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
    /// The shortest poll interval accepted: 1 ms. Shorter values are raised to it.
    pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(1);

    /// Options with a total deadline of `timeout` and every other option at its default.
    ///
    /// A zero timeout is allowed: the close then does everything that completes without
    /// waiting and fails with a timeout if the peer has not finished already.
    #[inline]
    pub const fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            idle_timeout: None,
            drain_limit: None,
            peer_eof: None,
            on_timeout: OnTimeout::Close,
            poll_interval: Self::DEFAULT_POLL_INTERVAL,
            user_timeout: None,
            abort_when_safe: false,
        }
    }

    /// Sets the total deadline of the close, counted from its first poll.
    /// `Duration::MAX` means no deadline.
    #[must_use = "builder methods return the changed options"]
    #[inline]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the longest silence tolerated from the peer while waiting for its EOF, like
    /// nginx's `lingering_timeout`. Each received chunk restarts it.
    ///
    /// It counts only while the close watches the peer, never before the close runs
    /// (for a [`GracefulIo`](crate::GracefulIo), its drop, not `poll_shutdown`: an
    /// application may go on reading after its half-close), and it ends a close only
    /// once our data and FIN are delivered: before that, a client that sent its last
    /// byte long ago may be silent only because it is still taking our response over
    /// a slow or crowded path, and only the deadline applies (with
    /// [`user_timeout`](Self::user_timeout) for a peer that takes nothing). A close
    /// that watches the acknowledgement counts from it; one that waits for the peer's
    /// EOF first ([`PeerEof::Required`]) counts from its start and, should its bytes
    /// still be in flight when the bound is due, from their acknowledgement. Where the
    /// platform cannot count unacknowledged bytes it counts from the start. It is
    /// rounded up to whole milliseconds (Tokio's timer resolution; zero stays zero).
    /// Without it (or with `Duration::MAX`) only the total deadline applies.
    #[must_use = "builder methods return the changed options"]
    #[inline]
    pub const fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = Some(idle);
        self
    }

    /// Sets how many bytes the close discards at most while waiting for the peer's EOF.
    /// A peer that sends more ends the close with
    /// [`CloseErrorKind::DrainLimit`](crate::CloseErrorKind::DrainLimit). `u64::MAX`
    /// means no limit beyond the deadline.
    #[must_use = "builder methods return the changed options"]
    #[inline]
    pub const fn drain_limit(mut self, bytes: u64) -> Self {
        self.drain_limit = Some(bytes);
        self
    }

    /// Sets when the close waits for the peer's EOF; see [`PeerEof`].
    #[must_use = "builder methods return the changed options"]
    #[inline]
    pub const fn peer_eof(mut self, policy: PeerEof) -> Self {
        self.peer_eof = Some(policy);
        self
    }

    /// Sets what happens when the deadline, the idle timeout or the drain limit is hit.
    #[must_use = "builder methods return the changed options"]
    #[inline]
    pub const fn on_timeout(mut self, on_timeout: OnTimeout) -> Self {
        self.on_timeout = on_timeout;
        self
    }

    /// Resets the connection instead of closing it gracefully when that provably loses
    /// nothing: when the close starts, every byte we wrote is acknowledged
    /// (`SIOCOUTQ` = 0) and nothing the peer sent is left unread (`FIONREAD` = 0).
    /// Otherwise the close is the graceful one. [`CloseReport::safe_abort`] says which
    /// and why.
    ///
    /// For clients that make many short exchanges and would otherwise leave a socket in
    /// `TIME_WAIT` for each (the side that closes first keeps it, 60 s on Linux): the
    /// reset leaves none. A bare `SO_LINGER {1, 0}` resets whatever the state, and so
    /// discards a request the server has not acknowledged yet or a response not yet
    /// read. Looked at once, when the owner's close starts
    /// ([`graceful_close_with`](crate::AsyncGracefulClose::graceful_close_with), the
    /// drop of a [`GracefulIo`](crate::GracefulIo), so also for pooled client
    /// connections behind `GracefulCloseLayer`); if a `poll_shutdown` already sent our
    /// FIN, a FIN not yet acknowledged does not count (it carries no data). On TCP where
    /// the counts exist (Linux); elsewhere the close stays graceful.
    ///
    /// [`CloseReport::safe_abort`]: crate::CloseReport::safe_abort
    #[must_use = "builder methods return the changed options"]
    #[inline]
    pub const fn abort_when_safe(mut self, abort: bool) -> Self {
        self.abort_when_safe = abort;
        self
    }

    /// Sets the safety-net interval for re-checking the send queue (`SIOCOUTQ`).
    /// `Duration::MAX` leaves only the kernel's wakeups and the deadline.
    ///
    /// The close does not depend on it: the kernel wakes the socket when our FIN is
    /// acknowledged and the close reacts to that wakeup, re-checking meanwhile after
    /// `interval`, then twice as late each time, at most every 16 intervals (a long
    /// delivery, seconds to a slow client, then costs a dozen looks, not hundreds).
    /// Where no such wakeup can be relied on (both directions already shut, where Tokio
    /// keeps the stream write-ready for good; a data-only
    /// [`wait_acked`](crate::AsyncGracefulClose::wait_acked); `AF_UNIX` sockets) the
    /// queue is re-checked soon, then twice as late each time, and then every
    /// `interval`: on Linux TCP from half the smoothed round-trip time (`TCP_INFO`, at
    /// least 50 µs; the acknowledgement of a FIN is due within a round trip), elsewhere
    /// from 1 ms. Values below [`Self::MIN_POLL_INTERVAL`] are raised to it, and the
    /// close rounds the interval up to whole milliseconds (Tokio's timer resolution).
    #[must_use = "builder methods return the changed options"]
    #[inline]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Self::MIN_POLL_INTERVAL);
        self
    }

    /// Sets `TCP_USER_TIMEOUT` on the socket when the close starts: the kernel aborts
    /// the connection with `ETIMEDOUT` once sent data has stayed unacknowledged that
    /// long (zero-window probing included), and the close fails at once with
    /// [`CloseErrorKind::RetransmitTimeout`](crate::CloseErrorKind::RetransmitTimeout)
    /// instead of waiting for its deadline. Linux only; ignored for `AF_UNIX` sockets
    /// and rounded up to whole milliseconds (at least 1 ms, at most `i32::MAX` ms, about
    /// 24.8 days: longer values, `Duration::MAX` included, are clamped to it).
    #[must_use = "builder methods return the changed options"]
    #[inline]
    pub const fn user_timeout(mut self, timeout: Duration) -> Self {
        self.user_timeout = Some(timeout);
        self
    }

    /// Fills what the user did not set with the defaults of `role`.
    #[inline]
    pub(crate) fn resolve(mut self, role: Role) -> Self {
        let (eof, idle, limit) = match role {
            Role::Stream => (PeerEof::Required, Duration::MAX, Self::DEFAULT_DRAIN_LIMIT),
            Role::Server => (
                PeerEof::IfSending,
                Self::ADAPTER_IDLE_TIMEOUT,
                Self::DEFAULT_DRAIN_LIMIT,
            ),
            Role::Client => (
                PeerEof::Briefly,
                Self::ADAPTER_IDLE_TIMEOUT,
                Self::CLIENT_DRAIN_LIMIT,
            ),
        };
        self.peer_eof.get_or_insert(eof);
        if idle != Duration::MAX {
            // `None` is "no bound" for the state machine: nothing to re-arm per read.
            self.idle_timeout.get_or_insert(idle);
        }
        self.drain_limit.get_or_insert(limit);
        self
    }

    /// The `TCP_USER_TIMEOUT` as the kernel takes it: whole milliseconds, rounded up,
    /// at least 1, at most `i32::MAX`.
    pub(crate) fn user_timeout_ms(&self) -> Option<u32> {
        self.user_timeout.map(|t| {
            let ms = t.as_nanos().div_ceil(1_000_000).clamp(1, i32::MAX as u128);
            ms as u32
        })
    }
}

impl Default for CloseOptions {
    /// A 30 second deadline (nginx's `lingering_time`) and the other defaults.
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_is_raised_to_its_floor() {
        let opts = CloseOptions::default().poll_interval(Duration::ZERO);
        assert_eq!(opts.poll_interval, CloseOptions::MIN_POLL_INTERVAL);
    }

    #[test]
    fn unset_options_take_the_defaults_of_where_they_are_used() {
        let set = CloseOptions::default()
            .peer_eof(PeerEof::Required)
            .drain_limit(7);
        let client = set.resolve(Role::Client);
        assert_eq!(client.peer_eof, Some(PeerEof::Required));
        assert_eq!(client.drain_limit, Some(7));
        let client = CloseOptions::default().resolve(Role::Client);
        assert_eq!(client.peer_eof, Some(PeerEof::Briefly));
        assert_eq!(client.drain_limit, Some(CloseOptions::CLIENT_DRAIN_LIMIT));
        let server = CloseOptions::default().resolve(Role::Server);
        assert_eq!(server.peer_eof, Some(PeerEof::IfSending));
        assert_eq!(
            server.idle_timeout,
            Some(CloseOptions::ADAPTER_IDLE_TIMEOUT)
        );
        let stream = CloseOptions::default().resolve(Role::Stream);
        assert_eq!(stream.idle_timeout, None);
        assert_eq!(stream.drain_limit, Some(CloseOptions::DEFAULT_DRAIN_LIMIT));
    }
}
