//! The servers of a cell: the example's app through the crate or plainly, on loopback
//! (plain HTTP, TLS with HTTP/1.1 or h2) or on side A of a lab link.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_graceful_close::rustls::GracefulTlsListener;
use tokio_graceful_close::{CloseError, CloseReport, CloseSettings, CloseTracker};
use tokio_rustls::TlsAcceptor;

use crate::clients::{self, Ready, Target};
use crate::example::{self, Outcome};
use crate::lab::{Lab, LabConfig, Side};
use crate::support::{self, PlainTlsListener};

/// Where and how a cell's client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP/1.1 on loopback.
    Plain,
    /// TLS on loopback, the server offering only HTTP/1.1 (ALPN).
    TlsH1,
    /// TLS on loopback, the server offering h2 and HTTP/1.1 (ALPN).
    TlsH2,
    /// HTTP/1.1 over the lab link: 20 Mbit/s each way, between two namespaces.
    Lab,
    /// As [`Transport::Lab`], with the server's send buffer fixed at
    /// [`SMALL_SEND_BUFFER`] (`SO_SNDBUF`, as nginx's `listen ... sndbuf=` sets it): the
    /// early answer never fits the kernel's buffers between the two hosts, so a client
    /// that sends its whole upload first gets it only if the server discards that
    /// upload while it writes. Not in [`Transport::ALL`]: the plain control would
    /// deadlock in every run (the client's 30 s timeout each).
    LabSmallSendBuffer,
}

/// The server's `SO_SNDBUF` in [`Transport::LabSmallSendBuffer`]; Linux doubles it, so
/// 64 KiB of send buffer. With the at most ~128 KiB that a client which is not reading
/// takes into its receive buffer, that leaves more than 64 KiB of the 256 KiB answer
/// that only a discard of the upload lets go out.
const SMALL_SEND_BUFFER: u32 = 32 << 10;

impl Transport {
    pub const ALL: [Transport; 4] = [
        Transport::Plain,
        Transport::TlsH1,
        Transport::TlsH2,
        Transport::Lab,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Plain => "HTTP/1.1",
            Transport::TlsH1 => "TLS, HTTP/1.1",
            Transport::TlsH2 => "TLS, h2 offered",
            Transport::Lab => "HTTP/1.1, 20 Mbit/s lab link",
            Transport::LabSmallSendBuffer => "HTTP/1.1, lab link, 32 KiB server SO_SNDBUF",
        }
    }

    fn tls(self) -> bool {
        matches!(self, Transport::TlsH1 | Transport::TlsH2)
    }

    /// How many bytes the client uploads: 10 MB, or 2 MB over the lab link (0.8 s of
    /// it; far more than the server's receive buffer either way).
    fn upload_len(self) -> usize {
        match self {
            Transport::Lab | Transport::LabSmallSendBuffer => 2_000_000,
            _ => example::UPLOAD_LEN,
        }
    }
}

/// The lab of the lab cells, or `None` after `SKIP` (not root, outside CI).
pub fn lab() -> Option<Lab> {
    Lab::require(LabConfig::new().rate_kbit(20_000).queue(256 * 1024))
}

/// What the runs of a cell got, and how the server closed their connections.
pub struct Cell {
    pub runs: Vec<(Outcome, String)>,
    /// Through the crate: each connection's close as `on_close` reported it, in the
    /// order they ended, stamped with the clients' clock ([`monotonic`]).
    closes: Vec<String>,
    /// Through the crate: connections still open or closing when the client was done.
    unfinished: Option<usize>,
}

impl Cell {
    pub fn whole(&self) -> usize {
        self.runs
            .iter()
            .filter(|(o, _)| *o == Outcome::Complete)
            .count()
    }

    /// The protocols the client reported, if any (` (h2)`).
    pub fn protocols(&self) -> String {
        let mut seen: Vec<&str> = self
            .runs
            .iter()
            .map(|(_, p)| p.as_str())
            .filter(|p| !p.is_empty())
            .collect();
        seen.dedup();
        if seen.is_empty() {
            String::new()
        } else {
            format!(" ({})", seen.join(", "))
        }
    }

    pub fn first_failure(&self) -> String {
        self.runs
            .iter()
            .find(|(o, _)| *o != Outcome::Complete)
            .map_or_else(String::new, |(o, _)| format!("; first failure: {o:?}"))
    }

    /// The server's side of a failed cell, to set beside the client's timing in the
    /// failure: every close the crate reported, and what had not ended.
    pub fn server_side(&self) -> String {
        let mut out: String = self
            .closes
            .iter()
            .map(|c| format!("\n  server close: {c}"))
            .collect();
        if let Some(n) = self.unfinished {
            out.push_str(&format!(
                "\n  server: {n} connection(s) still open or closing when the client ended"
            ));
        }
        out
    }
}

/// `CLOCK_MONOTONIC` in seconds: the clock of the clients' timing (Python's
/// `time.monotonic()`), so that both sides of a failure line up.
fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: `ts` is a live timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// The close settings of a cell served through the crate: the example's options, and
/// every close's outcome recorded in `closes`.
fn recording(closes: &Arc<Mutex<Vec<String>>>) -> CloseSettings {
    let closes = closes.clone();
    CloseSettings::new(example::close_options()).on_close(
        move |res: &Result<CloseReport, CloseError>| {
            let what = match res {
                Ok(r) => format!("{r:?}"),
                Err(e) => format!("{e} ({:?})", e.report()),
            };
            let line = format!("t={:.3} {what}", monotonic());
            closes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        },
    )
}

/// Serves the app on `transport` (through the crate if `graceful`), runs the client
/// `runs` times, one upload after the other, and stops the server.
pub async fn cell(
    ready: &Ready,
    transport: Transport,
    lab: Option<&Lab>,
    graceful: bool,
    runs: usize,
) -> Cell {
    let tcp = match lab {
        Some(lab) => lab
            .listen_with(Side::A, 0, |sock| match transport {
                // Accepted connections inherit it (and the lock it puts on autotuning).
                Transport::LabSmallSendBuffer => sock.set_send_buffer_size(SMALL_SEND_BUFFER),
                _ => Ok(()),
            })
            .expect("listen in the lab"),
        None => TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let addr = tcp.local_addr().unwrap();
    let closes = Arc::new(Mutex::new(Vec::new()));
    let settings = recording(&closes);
    let tracker: Option<CloseTracker> = graceful.then(|| settings.tracker().clone());
    let server = if transport.tls() {
        let acceptor = TlsAcceptor::from(server_config(transport == Transport::TlsH2));
        if graceful {
            let listener = GracefulTlsListener::new(tcp, acceptor, settings);
            tokio::spawn(async move { axum::serve(listener, example::graceful_app()).await })
        } else {
            let listener = PlainTlsListener { tcp, acceptor };
            tokio::spawn(async move { axum::serve(listener, example::app()).await })
        }
    } else if graceful {
        // Plain HTTP as the example serves it, the one call that puts every piece in
        // place: the upload discarded below hyper. (Over TLS above, the pieces by hand:
        // the layer reads it through hyper. Both ways meet every client.)
        let server = tokio_graceful_close::axum::serve(tcp, example::app()).settings(settings);
        tokio::spawn(std::future::IntoFuture::into_future(server))
    } else {
        tokio::spawn(async move { axum::serve(tcp, example::app()).await })
    };
    let scheme = if transport.tls() { "https" } else { "http" };
    let target = Target {
        addr,
        origin: format!("{scheme}://{addr}"),
        ca: transport.tls().then(|| ca_file().clone()),
        tls: transport
            .tls()
            .then(|| Arc::new(support::client_config(&[]))),
        h2: transport == Transport::TlsH2,
        lab,
        upload_len: transport.upload_len(),
    };
    let runs = clients::run(ready, &target, runs).await;
    let unfinished = tracker.map(|t| t.pending());
    server.abort();
    let closes = std::mem::take(&mut *closes.lock().unwrap_or_else(PoisonError::into_inner));
    Cell {
        runs,
        closes,
        unfinished,
    }
}

/// The test certificate's PEM (`lab/tests/tls/support.rs`), written where the clients can
/// read it.
fn ca_file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        // One file per process: two test processes at once must not overwrite each
        // other's certificate (a TLS client then fails to verify).
        let path = clients::work_dir().join(format!("ca-{}.pem", std::process::id()));
        std::fs::write(&path, support::cert_pem()).unwrap();
        path
    })
}

/// The shared server config, offering h2 and HTTP/1.1 or HTTP/1.1 alone (ALPN).
fn server_config(h2: bool) -> Arc<ServerConfig> {
    let mut config = (*support::server_config()).clone();
    if !h2 {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    Arc::new(config)
}
