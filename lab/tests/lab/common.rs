//! Helpers shared by the lab tests: the payload pattern, bounded waits, a checking
//! sink for the peer, and a few socket and formatting shortcuts.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::lab::{Lab, Side};

/// The greeting an SMTP-like peer sends and the client never reads.
pub(crate) const GREETING: &[u8] = b"220 Welcome\r\n";

/// The `TCP_USER_TIMEOUT` the outage and zero-window tests set.
pub(crate) const USER_TIMEOUT: Duration = Duration::from_secs(1);

/// The payload: byte `i` is `i % 251`, so a gap or a reordering shows.
pub(crate) fn payload(len: usize) -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    let data = DATA.get_or_init(|| (0..16 << 20).map(|i| (i % 251) as u8).collect());
    &data[..len]
}

/// Bounds every wait: panics with `what` if `f` takes longer than `secs`.
pub(crate) async fn within<F: Future>(secs: u64, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {secs} s"),
    }
}

/// How the peer's read-to-end ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Eof,
    Reset,
    Failed(io::ErrorKind),
    /// Nothing arrived for the idle limit, no EOF, no RST.
    Silent,
}

/// What the peer received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received {
    pub(crate) bytes: usize,
    pub(crate) end: End,
    /// Every byte matched the payload pattern at its offset.
    pub(crate) intact: bool,
}

/// Reads until EOF or an error, checking the payload pattern; `progress` follows the count.
pub(crate) async fn sink(s: &mut TcpStream, progress: Option<&AtomicUsize>) -> Received {
    sink_idle(s, progress, Duration::MAX).await
}

/// Like [`sink`], but gives up after `idle` without data (`End::Silent`): the
/// half-open connection a plain drop leaves when its only RST is lost.
pub(crate) async fn sink_idle(
    s: &mut TcpStream,
    progress: Option<&AtomicUsize>,
    idle: Duration,
) -> Received {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0usize;
    let mut intact = true;
    let end = loop {
        let read = match tokio::time::timeout(idle, s.read(&mut buf)).await {
            Ok(read) => read,
            Err(_) => break End::Silent,
        };
        match read {
            Ok(0) => break End::Eof,
            Ok(k) => {
                intact &= buf[..k]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == ((n + i) % 251) as u8);
                n += k;
                if let Some(p) = progress {
                    p.store(n, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break End::Reset,
            Err(e) => break End::Failed(e.kind()),
        }
    };
    Received {
        bytes: n,
        end,
        intact,
    }
}

pub(crate) async fn accept(l: &TcpListener) -> TcpStream {
    within(30, "accept", l.accept()).await.expect("accept").0
}

pub(crate) fn addr(l: &TcpListener) -> SocketAddr {
    l.local_addr().expect("local_addr")
}

/// Makes the next sockets of `side` start with an 8 MiB send buffer (per-namespace
/// `tcp_wmem`), so several MB can be queued unacknowledged at close.
pub(crate) fn big_send_buffers(lab: &Lab, side: Side) {
    lab.sysctl(side, "net/ipv4/tcp_wmem", "4096 8388608 16777216")
        .expect("set tcp_wmem in the lab");
}

/// Sends RST now: `SO_LINGER {1, 0}` and close (the peer's way to abort).
pub(crate) fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
    drop(s);
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

pub(crate) fn stats(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    format!(
        "min {} / median {} / max {}",
        secs(v[0]),
        secs(v[v.len() / 2]),
        secs(v[v.len() - 1])
    )
}
