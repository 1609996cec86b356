//! The metrics of feature `metrics`, as the crate docs' `# Metrics` table names them,
//! read back through metrics-util's debugging recorder for closes over loopback: a
//! delivered, a timed-out and aborted, an evicted close, a close cancelled before its
//! end and one cut short by a runtime shutting down. Each test records into a recorder
//! of its own (`with_local_recorder` around a current-thread runtime: the background
//! closes run on the test's thread).
#![cfg(all(feature = "metrics", target_os = "linux"))]

#[path = "../../tests/support/peer.rs"]
mod peer;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::sleep;
use tokio_graceful_close::{
    AsyncGracefulClose, CloseErrorKind, CloseOptions, CloseReport, CloseTracker, GracefulIo,
    OnTimeout, PeerEof,
};

const CLOSES: &str = "tokio_graceful_close_closes_total";
const DURATION: &str = "tokio_graceful_close_close_duration_seconds";
const DISCARDED: &str = "tokio_graceful_close_discarded_bytes_total";
const IN_FLIGHT: &str = "tokio_graceful_close_closes_in_flight";
const LINGERING: &str = "tokio_graceful_close_closes_lingering";

/// A metric's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// What the recorder holds, summed over its snapshots (each snapshot hands out what
/// changed since the last one, gauges included).
struct Metrics {
    snapshotter: Snapshotter,
    counters: HashMap<Series, u64>,
    gauges: HashMap<Series, f64>,
    histograms: HashMap<Series, Vec<f64>>,
}

impl Metrics {
    fn new(snapshotter: Snapshotter) -> Self {
        Metrics {
            snapshotter,
            counters: HashMap::new(),
            gauges: HashMap::new(),
            histograms: HashMap::new(),
        }
    }

    fn update(&mut self) {
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let (kind, key) = key.into_parts();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let series = (key.name().to_owned(), labels);
            match (kind, value) {
                (MetricKind::Counter, DebugValue::Counter(n)) => {
                    *self.counters.entry(series).or_default() += n
                }
                (MetricKind::Gauge, DebugValue::Gauge(g)) => {
                    *self.gauges.entry(series).or_default() += g.into_inner()
                }
                (MetricKind::Histogram, DebugValue::Histogram(h)) => self
                    .histograms
                    .entry(series)
                    .or_default()
                    .extend(h.into_iter().map(|x| x.into_inner())),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Every series of the closes counter that moved: (outcome, aborted) → count.
    fn closes(&mut self) -> HashMap<(String, String), u64> {
        self.update();
        let mut out = HashMap::new();
        for ((name, labels), n) in &self.counters {
            if name != CLOSES || *n == 0 {
                continue;
            }
            let label = |k: &str| {
                let (_, v) = labels.iter().find(|(key, _)| key == k).expect(k);
                v.clone()
            };
            assert_eq!(labels.len(), 2, "{labels:?}");
            out.insert((label("outcome"), label("aborted")), *n);
        }
        out
    }

    /// The duration samples of `outcome`.
    fn durations(&mut self, outcome: &str) -> Vec<f64> {
        self.update();
        let series = (
            DURATION.to_owned(),
            vec![("outcome".to_owned(), outcome.to_owned())],
        );
        self.histograms.get(&series).cloned().unwrap_or_default()
    }

    /// The duration series that have samples.
    fn duration_outcomes(&mut self) -> usize {
        self.update();
        self.histograms
            .iter()
            .filter(|((name, _), h)| name == DURATION && !h.is_empty())
            .count()
    }

    fn discarded(&mut self) -> u64 {
        self.update();
        let series = (DISCARDED.to_owned(), Vec::new());
        self.counters.get(&series).copied().unwrap_or(0)
    }

    fn gauge(&mut self, name: &str) -> f64 {
        self.update();
        let series = (name.to_owned(), Vec::new());
        self.gauges.get(&series).copied().unwrap_or(0.0)
    }

    /// (in flight, lingering).
    fn gauges(&mut self) -> (f64, f64) {
        (self.gauge(IN_FLIGHT), self.gauge(LINGERING))
    }
}

/// Runs `test` on a current-thread runtime, recording into a recorder of its own.
fn run<F, Fut>(test: F)
where
    F: FnOnce(Metrics) -> Fut,
    Fut: Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let metrics = Metrics::new(recorder.snapshotter());
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(test(metrics));
    });
}

/// A server connection over `stream`, tracked by `tracker` if any, and the receiver of
/// its outcome: `Ok(report)` or the error's kind.
fn wrap(
    stream: TcpStream,
    opts: CloseOptions,
    tracker: Option<&CloseTracker>,
) -> (
    GracefulIo<TcpStream>,
    oneshot::Receiver<Result<CloseReport, CloseErrorKind>>,
) {
    let (tx, rx) = oneshot::channel();
    let mut io = GracefulIo::new(stream, opts);
    if let Some(tracker) = tracker {
        io = io.tracked(tracker);
    }
    let io = io.on_close(move |res| {
        let _ = tx.send(match res {
            Ok(report) => Ok(report.clone()),
            Err(e) => Err(e.kind()),
        });
    });
    (io, rx)
}

fn key(outcome: &str, aborted: bool) -> (String, String) {
    (outcome.to_owned(), aborted.to_string())
}

/// A delivered close: in flight and lingering while the client has not closed, then
/// one `delivered` close, one duration sample, the client's unread upload discarded,
/// both gauges back to 0.
#[test]
fn a_delivered_close() {
    run(|mut m| async move {
        let tracker = CloseTracker::new();
        let (mut client, server) = peer::pair().await;
        let (mut io, rx) = wrap(
            server,
            CloseOptions::new(Duration::from_secs(10)),
            Some(&tracker),
        );
        client.write_all(&[b'u'; 1000]).await.unwrap();
        io.write_all(b"413 too large\n").await.unwrap();
        assert_eq!(m.gauges(), (0.0, 0.0), "nothing closing yet");
        io.shutdown().await.unwrap();
        assert_eq!(
            m.gauges(),
            (1.0, 0.0),
            "shut down: in flight, not lingering yet"
        );
        drop(io);
        // Our answer and FIN acknowledged, the upload unread: the close lingers.
        sleep(Duration::from_millis(300)).await;
        assert_eq!(m.gauges(), (1.0, 1.0), "waiting for the client's EOF");
        assert!(m.closes().is_empty());

        let (_, end) = peer::within(10, peer::read_to_end(&mut client)).await;
        assert_eq!(end, peer::End::Eof);
        client.shutdown().await.unwrap();
        let report = peer::within(10, rx).await.unwrap().expect("delivered");
        assert!(report.acked() && report.peer_eof(), "{report:?}");

        assert_eq!(m.closes(), HashMap::from([(key("delivered", false), 1)]));
        let samples = m.durations("delivered");
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert!((0.2..10.0).contains(&samples[0]), "{samples:?}");
        assert_eq!(m.duration_outcomes(), 1);
        assert_eq!(m.discarded(), 1000);
        assert_eq!(m.gauges(), (0.0, 0.0));
    });
}

/// A `graceful_close` that times out and resets: in flight until its deadline, then
/// one `timed_out` close with `aborted="true"`, its duration at least the deadline, the
/// peer's unread bytes discarded.
#[test]
fn a_timed_out_and_aborted_close() {
    run(|mut m| async move {
        let (mut client, server) = peer::pair().await;
        client.write_all(&[b'u'; 300]).await.unwrap();
        sleep(Duration::from_millis(50)).await;
        let opts = CloseOptions::new(Duration::from_millis(300)).on_timeout(OnTimeout::Abort);
        let close = tokio::spawn(server.graceful_close_with(opts));
        sleep(Duration::from_millis(100)).await;
        assert_eq!(
            m.gauges(),
            (1.0, 0.0),
            "in flight; untracked closes never linger"
        );
        assert!(m.closes().is_empty());

        let err = peer::within(10, close)
            .await
            .unwrap()
            .expect_err("timed out");
        assert_eq!(err.kind(), CloseErrorKind::TimedOut);
        assert!(err.report().aborted(), "{err:?}");
        drop(peer::within(10, peer::read_to_end(&mut client)).await);

        assert_eq!(m.closes(), HashMap::from([(key("timed_out", true), 1)]));
        let samples = m.durations("timed_out");
        assert_eq!(samples.len(), 1, "{samples:?}");
        assert!((0.3..10.0).contains(&samples[0]), "{samples:?}");
        assert_eq!(m.duration_outcomes(), 1);
        assert_eq!(m.discarded(), 300);
        assert_eq!(m.gauges(), (0.0, 0.0));
    });
}

/// A lingering close evicted by the next one (cap 1): one `evicted` close, the other
/// `delivered` once its client closed; the lingering gauge at 1 throughout (the
/// eviction swaps one lingering close for the other), both gauges back to 0.
#[test]
fn an_evicted_close() {
    run(|mut m| async move {
        let tracker = CloseTracker::new();
        tracker.set_max_lingering(1);
        let opts = CloseOptions::new(Duration::from_secs(10)).peer_eof(PeerEof::Required);

        let (mut client_a, server_a) = peer::pair().await;
        let (io_a, rx_a) = wrap(server_a, opts, Some(&tracker));
        client_a.write_all(&[b'a'; 100]).await.unwrap();
        sleep(Duration::from_millis(50)).await;
        drop(io_a);
        sleep(Duration::from_millis(300)).await;
        assert_eq!(m.gauges(), (1.0, 1.0), "A lingers");

        let (mut client_b, server_b) = peer::pair().await;
        let (io_b, rx_b) = wrap(server_b, opts, Some(&tracker));
        client_b.write_all(&[b'b'; 200]).await.unwrap();
        sleep(Duration::from_millis(50)).await;
        drop(io_b);
        let a = peer::within(10, rx_a).await.unwrap();
        assert_eq!(a, Err(CloseErrorKind::Evicted));
        assert_eq!(m.closes(), HashMap::from([(key("evicted", false), 1)]));
        assert_eq!(m.gauges(), (1.0, 1.0), "B lingers in A's place");

        client_b.shutdown().await.unwrap();
        let b = peer::within(10, rx_b).await.unwrap();
        assert!(b.is_ok(), "{b:?}");
        drop(client_a.shutdown().await);

        assert_eq!(
            m.closes(),
            HashMap::from([(key("evicted", false), 1), (key("delivered", false), 1)])
        );
        assert_eq!(m.durations("evicted").len(), 1);
        assert_eq!(m.durations("delivered").len(), 1);
        assert_eq!(m.duration_outcomes(), 2);
        assert_eq!(m.discarded(), 300);
        assert_eq!(m.gauges(), (0.0, 0.0));
        tracker.close();
        peer::within(10, tracker.wait()).await;
    });
}

/// A `graceful_close` future dropped before its end: in flight from its first poll,
/// out at its drop, with no outcome.
#[test]
fn a_cancelled_close_leaves_no_count_behind() {
    run(|mut m| async move {
        let (_client, server) = peer::pair().await;
        let mut close = Box::pin(server.graceful_close(Duration::from_secs(10)));
        assert_eq!(m.gauges(), (0.0, 0.0), "not polled yet");
        tokio::select! {
            res = &mut close => panic!("the client never closes: {res:?}"),
            () = sleep(Duration::from_millis(100)) => {}
        }
        assert_eq!(m.gauges(), (1.0, 0.0), "polled: in flight");
        drop(close);
        assert_eq!(m.gauges(), (0.0, 0.0));
        assert!(m.closes().is_empty());
        assert_eq!(m.duration_outcomes(), 0);
    });
}

/// A background close cut short by its runtime shutting down: one `io` close, and
/// nothing left in flight or lingering.
#[test]
fn a_runtime_shut_down_mid_close_leaves_no_count_behind() {
    let recorder = DebuggingRecorder::new();
    let mut m = Metrics::new(recorder.snapshotter());
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tracker = CloseTracker::new();
        let client = rt.block_on(async {
            let (mut client, server) = peer::pair().await;
            let (io, _rx) = wrap(
                server,
                CloseOptions::new(Duration::from_secs(10)),
                Some(&tracker),
            );
            client.write_all(&[b'u'; 10]).await.unwrap();
            sleep(Duration::from_millis(50)).await;
            drop(io);
            sleep(Duration::from_millis(200)).await;
            client
        });
        assert_eq!(m.gauges(), (1.0, 1.0), "lingering when the runtime goes");
        drop(rt);
        drop(client);
        assert_eq!(tracker.pending(), 0);
    });
    assert_eq!(m.closes(), HashMap::from([(key("io", false), 1)]));
    assert_eq!(m.durations("io").len(), 1);
    assert_eq!(m.discarded(), 10);
    assert_eq!(m.gauges(), (0.0, 0.0));
}
