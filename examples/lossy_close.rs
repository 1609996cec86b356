//! The seed experiment: a server greets "220 Welcome\r\n", the client never reads it,
//! writes 1,000,000 bytes and closes. How many bytes reach the server's application?
//!
//! ```text
//! cargo run --example lossy_close -- [--bytes N] [--runs N] [--lab]
//! ```
//!
//! The server behaves like a real, busy client of a real server: it reads 16 KiB at a
//! time and works 1 ms on each chunk (about 16 MB/s), so when the client closes, most
//! of the megabyte is still queued in the two kernels. Three ways to close are
//! compared: a plain drop, `shutdown()` then drop, and `graceful_close`. The first two
//! close with the greeting unread, so Linux answers with RST and throws away whatever
//! was still queued, on both sides (RFC 1122 4.2.2.13); the server's next read fails
//! with "connection reset by peer".
//!
//! `--lab` (root, Linux, `ip` and `tc`) runs the same between two network namespaces
//! joined by a veth shaped to 8 Mbit/s each way (`tests/support/lab.rs`), like a slow
//! real link; it defaults to 5 runs because each graceful close there takes about as
//! long as the link needs to carry what is still queued.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_graceful_close::AsyncGracefulClose;

#[cfg(target_os = "linux")]
#[path = "../tests/support/lab.rs"]
mod lab;

const GREETING: &[u8] = b"220 Welcome\r\n";
/// What the server reads at a time, and how long it works on each read.
const CHUNK: usize = 16 * 1024;
const WORK: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, Debug)]
enum Strategy {
    PlainDrop,
    ShutdownDrop,
    Graceful,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::PlainDrop => "plain drop",
            Strategy::ShutdownDrop => "shutdown() + drop",
            Strategy::Graceful => "graceful_close",
        }
    }
}

/// Where the two ends live.
enum Net {
    Loopback,
    #[cfg(target_os = "linux")]
    Lab(lab::Lab),
}

impl Net {
    fn listener(&self) -> std::io::Result<std::net::TcpListener> {
        match self {
            Net::Loopback => std::net::TcpListener::bind("127.0.0.1:0"),
            #[cfg(target_os = "linux")]
            Net::Lab(l) => l.run_in(lab::Side::B, || {
                std::net::TcpListener::bind((lab::Side::B.addr(), 0))
            }),
        }
    }

    async fn connect(&self, to: SocketAddr) -> std::io::Result<TcpStream> {
        match self {
            Net::Loopback => TcpStream::connect(to).await,
            #[cfg(target_os = "linux")]
            Net::Lab(l) => l.connect(lab::Side::A, to).await,
        }
    }
}

/// What one run saw.
struct Run {
    received: usize,
    reset: bool,
    close_time: Duration,
}

/// The busy server: greets, then reads a chunk, works, reads the next, until EOF or an
/// error. Returns the bytes its application got and whether the read ended in RST.
fn serve(listener: std::net::TcpListener) -> std::io::Result<(usize, bool)> {
    let (mut s, _) = listener.accept()?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(GREETING)?;
    let mut buf = vec![0u8; CHUNK];
    let mut received = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok((received, false)),
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok((received, true))
            }
            Err(e) => return Err(e),
        }
        std::thread::sleep(WORK);
    }
}

async fn one(net: &Net, strategy: Strategy, bytes: usize) -> std::io::Result<Run> {
    let listener = net.listener()?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || serve(listener));

    let mut client = net.connect(addr).await?;
    // The greeting has arrived and stays unread, as in the real protocol exchange.
    let _ = tokio::time::timeout(Duration::from_secs(5), client.readable()).await;
    client.write_all(&vec![b'x'; bytes]).await?;
    let start = Instant::now();
    match strategy {
        Strategy::PlainDrop => drop(client),
        Strategy::ShutdownDrop => {
            client.shutdown().await?;
            drop(client);
        }
        Strategy::Graceful => {
            if let Err(e) = client.graceful_close(Duration::from_secs(30)).await {
                eprintln!("graceful_close: {e}");
            }
        }
    }
    let close_time = start.elapsed();
    let (received, reset) = tokio::task::spawn_blocking(move || server.join())
        .await
        .map_err(std::io::Error::other)?
        .map_err(|_| std::io::Error::other("the server thread panicked"))??;
    Ok(Run {
        received,
        reset,
        close_time,
    })
}

fn arg(args: &[String], name: &str) -> Result<Option<usize>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.replace('_', "").parse().ok())
            .filter(|&v| v > 0)
            .map(Some)
            .ok_or_else(|| format!("{name} needs a positive number")),
    }
}

/// The shaped lab link, or why there is none.
#[cfg(target_os = "linux")]
fn lab_net() -> Result<Net, String> {
    let config = lab::LabConfig::new();
    if let Some(why) = lab::unavailable(&config) {
        let mut msg = format!("--lab cannot run here: {why}.");
        if !lab::is_root() {
            msg.push_str("\nTry: sudo -E cargo run --example lossy_close -- --lab");
        }
        return Err(msg);
    }
    lab::Lab::build(config)
        .map(Net::Lab)
        .map_err(|e| format!("--lab: cannot build the network lab: {e}"))
}

#[cfg(not(target_os = "linux"))]
fn lab_net() -> Result<Net, String> {
    Err("--lab needs Linux network namespaces".into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: lossy_close [--bytes N (default 1000000)] [--runs N (default 20, 5 with \
             --lab)] [--lab (root: over a shaped 8 Mbit/s link)]"
        );
        return Ok(());
    }
    let on_lab = args.iter().any(|a| a == "--lab");
    let bytes = arg(&args, "--bytes")?.unwrap_or(1_000_000);
    let runs = arg(&args, "--runs")?.unwrap_or(if on_lab { 5 } else { 20 });
    let net = if on_lab {
        match lab_net() {
            Ok(net) => net,
            Err(why) => {
                eprintln!("{why}");
                std::process::exit(2);
            }
        }
    } else {
        Net::Loopback
    };
    let path = if on_lab {
        "a veth shaped to 8 Mbit/s between two network namespaces"
    } else {
        "loopback"
    };
    println!(
        "Seed experiment over {path}: unread greeting, {bytes} bytes written, then close; \
         the server reads {} KiB at a time and works {} ms on each; {runs} runs each.\n",
        CHUNK / 1024,
        WORK.as_millis()
    );
    println!(
        "| close | runs with data lost | bytes received (min / median) | bytes lost (median) \
         | server saw RST | close took (median) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    let mut graceful_lost = 0;
    for strategy in [
        Strategy::PlainDrop,
        Strategy::ShutdownDrop,
        Strategy::Graceful,
    ] {
        let mut got = Vec::with_capacity(runs);
        let mut times = Vec::with_capacity(runs);
        let mut resets = 0;
        for _ in 0..runs {
            let r = one(&net, strategy, bytes).await?;
            got.push(r.received);
            times.push(r.close_time);
            resets += usize::from(r.reset);
        }
        got.sort_unstable();
        times.sort_unstable();
        let lossy = got.iter().filter(|&&n| n < bytes).count();
        if let Strategy::Graceful = strategy {
            graceful_lost = lossy;
        }
        println!(
            "| {} | {lossy} / {runs} | {} / {} | {} | {resets} / {runs} | {:.2?} |",
            strategy.name(),
            got[0],
            got[runs / 2],
            bytes - got[runs / 2],
            times[runs / 2],
        );
    }
    if graceful_lost > 0 {
        eprintln!(
            "graceful_close lost data in {graceful_lost} runs: that is a bug, please report it"
        );
        std::process::exit(1);
    }
    Ok(())
}
