//! Micro-costs behind the close: the queries a poller pays per check, and one whole
//! close when the peer has already closed.
//!
//! ```text
//! cargo bench --bench micro
//! ```

mod support;

use std::hint::black_box;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use tokio::net::TcpStream;
use tokio_graceful_close::AsyncGracefulClose;

/// A connected loopback pair: (ours, the peer).
fn pair(rt: &tokio::runtime::Runtime) -> (TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let c = std::net::TcpStream::connect(addr).unwrap();
    let (p, _) = l.accept().unwrap();
    c.set_nonblocking(true).unwrap();
    let c = rt.block_on(async { TcpStream::from_std(c).unwrap() });
    (c, p)
}

fn queries(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (s, mut p) = pair(&rt);
    p.write_all(b"x").unwrap();
    let mut g = c.benchmark_group("per check");
    g.bench_function("unacked_bytes (ioctl SIOCOUTQ)", |b| {
        b.iter(|| black_box(s.unacked_bytes().unwrap()))
    });
    g.bench_function("unsent_bytes (ioctl SIOCOUTQNSD)", |b| {
        b.iter(|| black_box(s.unsent_bytes().unwrap()))
    });
    g.bench_function("getsockopt TCP_INFO (fbthrift's check)", |b| {
        b.iter(|| black_box(support::tcp_info(s.as_raw_fd()).unwrap().tcpi_unacked))
    });
    g.finish();
    drop(p);
}

fn whole_close(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("whole close, peer already closed");
    g.sample_size(30);
    g.bench_function("graceful_close", |b| {
        b.iter_batched(
            || {
                let (s, p) = pair(&rt);
                drop(p);
                // Let the peer's FIN arrive.
                std::thread::sleep(Duration::from_micros(200));
                s
            },
            |s| {
                rt.block_on(async {
                    black_box(s.graceful_close(Duration::from_secs(5)).await.is_ok())
                })
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("plain drop", |b| {
        b.iter_batched(
            || {
                let (s, p) = pair(&rt);
                drop(p);
                std::thread::sleep(Duration::from_micros(200));
                s
            },
            drop,
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, queries, whole_close);
criterion_main!(benches);
