//! Nagle's algorithm, delayed ACKs, and the two ways out: `TCP_NODELAY` and the cork.
//!
//! A client sends requests as a header write then a body write, and waits for a short
//! reply (write-write-read), against a server with default socket options. Run:
//!
//! ```text
//! cargo run --example nagle
//! ```
//!
//! With Nagle (the default) each request stalls until the server's delayed ACK (~40 ms
//! on Linux); `TCP_NODELAY` sends both writes at once as two segments; `Corked` and
//! `write_corked` send them as one. Every connection ends with a graceful close.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::{write_corked, AsyncGracefulClose, CorkExt};

const ROUNDS: usize = 20;
const REPLY: &[u8] = b"OK\r\n";

/// Reads `LEN nnnn\r\n` + body, answers `OK\r\n`, until the client closes.
async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
    let mut header = [0u8; 10];
    loop {
        match stream.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = std::str::from_utf8(&header[4..8])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad header"))?;
        let mut body = vec![0; len];
        stream.read_exact(&mut body).await?;
        stream.write_all(REPLY).await?;
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Nagle,
    NoDelay,
    Corked,
    WriteCorked,
}

async fn client(addr: std::net::SocketAddr, mode: Mode) -> std::io::Result<Duration> {
    let mut stream = TcpStream::connect(addr).await?;
    if let Mode::NoDelay = mode {
        stream.set_nodelay(true)?;
    }
    let body = b"{\"hello\":\"world\"}";
    let header = format!("LEN {:04}\r\n", body.len());
    let mut reply = [0u8; REPLY.len()];
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        match mode {
            Mode::Nagle | Mode::NoDelay => {
                stream.write_all(header.as_bytes()).await?;
                stream.write_all(body).await?;
            }
            Mode::Corked => {
                // Borrow the stream: the cork is lifted at the flush, and again (a no-op
                // here) when `corked` is dropped at the end of this block.
                let mut corked = (&mut stream).corked()?;
                corked.write_all(header.as_bytes()).await?;
                corked.write_all(body).await?;
                corked.flush().await?;
            }
            Mode::WriteCorked => {
                write_corked(&mut stream, &[header.as_bytes(), body]).await?;
            }
        }
        stream.read_exact(&mut reply).await?;
        times.push(start.elapsed());
    }
    let report = stream.graceful_close(Duration::from_secs(5)).await?;
    assert!(report.acked());
    times.sort();
    Ok(times[times.len() / 2])
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Err(e) = serve(stream).await {
                    eprintln!("server: {e}");
                }
            });
        }
    });

    println!("{ROUNDS} write-write-read round trips per mode, median latency:");
    for mode in [Mode::Nagle, Mode::NoDelay, Mode::Corked, Mode::WriteCorked] {
        let median = client(addr, mode).await?;
        println!(
            "  {:<12} {:>9.3} ms",
            format!("{mode:?}"),
            median.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
