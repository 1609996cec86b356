//! Nagle figure: write-write-read round trips on loopback, per way of sending.
//!
//! Each round trip writes a small header, then a small body, then reads a small
//! response. The server (a plain blocking thread, default socket options) reads the
//! whole request and answers with one write, so it acknowledges requests the usual way:
//! with delayed ACKs once the exchange looks interactive.
//!
//! Prints a markdown table: median and p99 latency, and data segments per request as
//! counted by the client's kernel (`tcpi_data_segs_out`). Latencies depend on the
//! machine; the segment counts and the ~40 ms Nagle/delayed-ACK stall do not.
//!
//! `cargo bench --bench nagle`; `NAGLE_BENCH_ROUNDS=2000` for more round trips
//! (default 200 per variant, after 20 unmeasured ones).

#[cfg(any(target_os = "linux", target_os = "android"))]
fn main() {
    imp::main();
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn main() {
    eprintln!("the nagle bench reads TCP_INFO and runs on Linux only");
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "../../tests/support/tcp_info.rs"]
mod tcp_info;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use super::tcp_info::tcp_info;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_graceful_close::{write_corked, Corked};

    /// A 10-byte header announcing the body length, a 100-byte body, a 16-byte reply.
    const BODY_LEN: usize = 100;
    const HEADER: &[u8; 10] = b"LEN 0100\r\n";
    const REPLY: &[u8; 16] = b"OK 0000000000\r\n\n";
    const WARMUP: usize = 20;

    #[derive(Clone, Copy)]
    enum Variant {
        Nagle,
        NoDelay,
        OneWrite,
        Corked,
        CorkedNoDelay,
        WriteCorked,
    }

    impl Variant {
        const ALL: [Variant; 6] = [
            Variant::Nagle,
            Variant::NoDelay,
            Variant::OneWrite,
            Variant::Corked,
            Variant::CorkedNoDelay,
            Variant::WriteCorked,
        ];

        fn name(self) -> &'static str {
            match self {
                Variant::Nagle => "default (Nagle), header + body writes",
                Variant::NoDelay => "`TCP_NODELAY`, header + body writes",
                Variant::OneWrite => "default, header + body copied into one write",
                Variant::Corked => "`Corked`, header + body writes, `flush`",
                Variant::CorkedNoDelay => "`Corked` + `TCP_NODELAY`",
                Variant::WriteCorked => "`write_corked(&[header, body])`",
            }
        }
    }

    /// The server: for each request, read header and body, answer with one write.
    fn serve(mut s: std::net::TcpStream) {
        let mut header = [0u8; HEADER.len()];
        let mut body = [0u8; BODY_LEN];
        while s.read_exact(&mut header).is_ok() {
            if s.read_exact(&mut body).is_err() || s.write_all(REPLY).is_err() {
                return;
            }
        }
    }

    fn data_segs_out(fd: impl AsFd) -> u32 {
        tcp_info(fd).tcpi_data_segs_out
    }

    struct Row {
        median: Duration,
        p99: Duration,
        segs_per_request: f64,
    }

    /// The client connection: the corked variants keep one `Corked` for the whole
    /// connection; it corks at the first write of each request and uncorks at the flush.
    enum Conn {
        Plain(TcpStream),
        Corked(Corked<TcpStream>),
    }

    impl Conn {
        fn data_segs_out(&self) -> u32 {
            match self {
                Conn::Plain(s) => data_segs_out(s),
                Conn::Corked(c) => data_segs_out(c),
            }
        }
    }

    async fn round_trip(
        variant: Variant,
        conn: &mut Conn,
        body: &[u8],
        reply: &mut [u8],
    ) -> std::io::Result<()> {
        match conn {
            Conn::Corked(c) => {
                c.write_all(HEADER).await?;
                c.write_all(body).await?;
                c.flush().await?;
                c.read_exact(reply).await?;
            }
            Conn::Plain(stream) => {
                match variant {
                    Variant::OneWrite => {
                        let mut message = Vec::with_capacity(HEADER.len() + body.len());
                        message.extend_from_slice(HEADER);
                        message.extend_from_slice(body);
                        stream.write_all(&message).await?;
                    }
                    Variant::WriteCorked => write_corked(stream, &[HEADER, body]).await?,
                    _ => {
                        stream.write_all(HEADER).await?;
                        stream.write_all(body).await?;
                    }
                }
                stream.read_exact(reply).await?;
            }
        }
        Ok(())
    }

    async fn run(variant: Variant, rounds: usize) -> std::io::Result<Row> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = std::thread::spawn(move || {
            if let Ok((s, _)) = listener.accept() {
                serve(s);
            }
        });

        let stream = TcpStream::connect(addr).await?;
        if matches!(variant, Variant::NoDelay | Variant::CorkedNoDelay) {
            stream.set_nodelay(true)?;
        }
        let mut conn = match variant {
            Variant::Corked | Variant::CorkedNoDelay => Conn::Corked(Corked::new(stream)?),
            _ => Conn::Plain(stream),
        };
        let body = [b'x'; BODY_LEN];
        let mut reply = [0u8; REPLY.len()];
        let mut times = Vec::with_capacity(rounds);
        let mut segs_before = 0;
        for i in 0..WARMUP + rounds {
            if i == WARMUP {
                segs_before = conn.data_segs_out();
            }
            let start = Instant::now();
            round_trip(variant, &mut conn, &body, &mut reply).await?;
            if i >= WARMUP {
                times.push(start.elapsed());
            }
        }
        let segs = conn.data_segs_out() - segs_before;
        drop(conn);
        let _ = server.join();

        times.sort();
        let at = |q: f64| {
            let rank = (times.len() as f64 * q).ceil() as usize;
            times[rank.clamp(1, times.len()) - 1]
        };
        Ok(Row {
            median: at(0.5),
            p99: at(0.99),
            segs_per_request: f64::from(segs) / rounds as f64,
        })
    }

    fn ms(d: Duration) -> String {
        format!("{:.3} ms", d.as_secs_f64() * 1e3)
    }

    pub(super) fn main() {
        let rounds = std::env::var("NAGLE_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(200);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime");

        println!(
            "Loopback, {rounds} write-write-read round trips per variant (after {WARMUP} \
             unmeasured): {}-byte header + {BODY_LEN}-byte body, {}-byte reply.\n",
            HEADER.len(),
            REPLY.len()
        );
        println!("| variant | median | p99 | data segments / request |");
        println!("|---|---:|---:|---:|");
        for variant in Variant::ALL {
            match rt.block_on(run(variant, rounds)) {
                Ok(row) => println!(
                    "| {} | {} | {} | {:.2} |",
                    variant.name(),
                    ms(row.median),
                    ms(row.p99),
                    row.segs_per_request
                ),
                Err(e) => println!("| {} | error: {e} | | |", variant.name()),
            }
        }
    }
}
