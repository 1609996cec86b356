//! The seed experiment, on loopback: a server greets "220 Welcome\r\n", the client never
//! reads it, writes 1,000,000 bytes and closes. How many bytes reach the server?
//!
//! ```text
//! cargo run --example lossy_close -- [--bytes N] [--runs N]
//! ```
//!
//! Three ways to close are compared: a plain drop, `shutdown()` then drop, and
//! `graceful_close`. The first two close with the greeting unread, so Linux answers with
//! RST and throws away whatever was still queued (RFC 1122 4.2.2.13).

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::AsyncGracefulClose;

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

struct Run {
    received: usize,
    reset: bool,
    close_time: Duration,
}

async fn one(strategy: Strategy, bytes: usize) -> std::io::Result<Run> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await?;
        s.write_all(b"220 Welcome\r\n").await?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut received = 0;
        loop {
            match s.read(&mut buf).await {
                Ok(0) => return Ok::<_, std::io::Error>((received, false)),
                Ok(n) => received += n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return Ok((received, true))
                }
                Err(e) => return Err(e),
            }
        }
    });

    let mut client = TcpStream::connect(addr).await?;
    client.write_all(&vec![b'x'; bytes]).await?;
    let start = Instant::now();
    match strategy {
        Strategy::PlainDrop => drop(client),
        Strategy::ShutdownDrop => {
            client.shutdown().await?;
            drop(client);
        }
        Strategy::Graceful => {
            if let Err(e) = client.graceful_close(Duration::from_secs(10)).await {
                eprintln!("graceful_close: {e}");
            }
        }
    }
    let close_time = start.elapsed();
    let (received, reset) = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .map_err(|_| std::io::Error::other("the server did not finish in 30 s"))?
        .map_err(std::io::Error::other)??;
    Ok(Run {
        received,
        reset,
        close_time,
    })
}

fn arg(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.replace('_', "").parse().ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| format!("{name} needs a positive number")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("usage: lossy_close [--bytes N (default 1000000)] [--runs N (default 20)]");
        return Ok(());
    }
    let bytes = arg(&args, "--bytes", 1_000_000)?;
    let runs = arg(&args, "--runs", 20)?;
    println!("Seed experiment on loopback: unread greeting, {bytes} bytes written, then close; {runs} runs each.\n");
    println!("| close | runs with loss | bytes received (min / median) | peer saw EOF / RST | close took (median) |");
    println!("|---|---|---|---|---|");
    for strategy in [
        Strategy::PlainDrop,
        Strategy::ShutdownDrop,
        Strategy::Graceful,
    ] {
        let mut got = Vec::with_capacity(runs);
        let mut times = Vec::with_capacity(runs);
        let mut resets = 0;
        for _ in 0..runs {
            let r = one(strategy, bytes).await?;
            got.push(r.received);
            times.push(r.close_time);
            resets += usize::from(r.reset);
        }
        got.sort_unstable();
        times.sort_unstable();
        let lossy = got.iter().filter(|&&n| n < bytes).count();
        println!(
            "| {} | {lossy} / {runs} | {} / {} | {} / {resets} | {:.2?} |",
            strategy.name(),
            got[0],
            got[runs / 2],
            runs - resets,
            times[runs / 2],
        );
    }
    Ok(())
}
