//! Short request/response exchanges from a client that closes first: how many sockets
//! each way of closing leaves in `TIME_WAIT`, and what it loses.
//!
//! ```text
//! cargo run --release --example time_wait             # 10,000 exchanges per close
//! cargo run --release --example time_wait -- 2000     # fewer
//! ```
//!
//! Each exchange: connect, a 100-byte request, the server's 100-byte answer read whole,
//! then the client closes with one of: a plain drop, the graceful close, `abort()`
//! (`SO_LINGER {1, 0}`, whatever the state), and the graceful close with
//! `abort_when_safe` (the reset only when everything written was acknowledged and
//! nothing is unread). The side that closes first keeps `TIME_WAIT` (60 s on Linux);
//! a reset leaves none. Counted from `/proc/net/tcp` (Linux). What a bare reset loses
//! when the exchange is not finished is shown by `tests/safe_abort.rs`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, SafeAbort};

/// Bytes of a request and of an answer.
pub const SIZE: usize = 100;

/// How the client closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    Plain,
    Graceful,
    Abort,
    SafeAbort,
}

impl Close {
    pub const ALL: [Close; 4] = [
        Close::Plain,
        Close::Graceful,
        Close::Abort,
        Close::SafeAbort,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Close::Plain => "plain drop",
            Close::Graceful => "graceful_close",
            Close::Abort => "abort() (SO_LINGER {1, 0})",
            Close::SafeAbort => "graceful_close, abort_when_safe",
        }
    }
}

/// What `exchanges` exchanges closed one way left behind.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub exchanges: usize,
    /// Sockets of these exchanges in `TIME_WAIT` right after the last one.
    pub time_wait: usize,
    /// Requests the server did not get whole.
    pub requests_lost: usize,
    /// Answers the client did not get whole.
    pub answers_lost: usize,
    /// Closes that took the reset (`SafeAbort::Taken`), for the safe abort.
    pub resets_taken: usize,
    pub took: Duration,
}

/// `TIME_WAIT` sockets to or from `port` (`/proc/net/tcp`, state 06).
pub fn time_wait(port: u16) -> usize {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return 0;
    };
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port_of = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap_or(""), 16);
            f.len() > 3
                && f[3] == "06"
                && (port_of(f[1]).ok() == Some(port) || port_of(f[2]).ok() == Some(port))
        })
        .count()
}

/// Runs `n` exchanges, one after the other, closed the `close` way.
pub async fn run(close: Close, n: usize) -> io::Result<Row> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    // Clients of an earlier server on this port may still be in TIME_WAIT.
    let earlier = time_wait(addr.port());
    let whole_requests = Arc::new(AtomicUsize::new(0));
    let counted = whole_requests.clone();
    let server = tokio::spawn(async move {
        for _ in 0..n {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut req = [0u8; SIZE];
                if s.read_exact(&mut req).await.is_ok() {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let _ = s.write_all(&[b'a'; SIZE]).await;
                }
                // Until the client's FIN or reset; then the server closes second.
                let mut rest = [0u8; 64];
                while let Ok(k) = s.read(&mut rest).await {
                    if k == 0 {
                        break;
                    }
                }
            });
        }
    });
    let start = Instant::now();
    let mut row = Row {
        exchanges: n,
        ..Row::default()
    };
    for _ in 0..n {
        if !exchange(addr, close, &mut row).await? {
            row.answers_lost += 1;
        }
    }
    row.took = start.elapsed();
    server.await.map_err(io::Error::other)?;
    tokio::time::sleep(Duration::from_millis(200)).await; // the last closes settle
    row.requests_lost = n - whole_requests.load(Ordering::Relaxed);
    row.time_wait = time_wait(addr.port()).saturating_sub(earlier);
    Ok(row)
}

/// One exchange; whether the answer came whole.
async fn exchange(addr: SocketAddr, close: Close, row: &mut Row) -> io::Result<bool> {
    let mut c = TcpStream::connect(addr).await?;
    c.write_all(&[b'q'; SIZE]).await?;
    let mut ans = [0u8; SIZE];
    let whole = c.read_exact(&mut ans).await.is_ok();
    let opts = CloseOptions::new(Duration::from_secs(5));
    match close {
        Close::Plain => drop(c),
        Close::Graceful => {
            let _ = c.graceful_close_with(opts).await;
        }
        Close::Abort => c.abort()?,
        Close::SafeAbort => {
            let res = c.graceful_close_with(opts.abort_when_safe(true)).await;
            let report = match &res {
                Ok(r) => r,
                Err(e) => e.report(),
            };
            if report.safe_abort() == Some(SafeAbort::Taken) {
                row.resets_taken += 1;
            }
        }
    }
    Ok(whole)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    println!("{n} exchanges per close, loopback, the client closing first\n");
    println!(
        "| close | sockets in TIME_WAIT | requests lost | answers lost | resets taken | took |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for close in Close::ALL {
        let r = run(close, n).await?;
        println!(
            "| {} | {} | {} | {} | {} | {:.2?} |",
            close.name(),
            r.time_wait,
            r.requests_lost,
            r.answers_lost,
            r.resets_taken,
            r.took
        );
    }
    Ok(())
}
