//! Harness plumbing shared by the figures: runtimes, listeners, peers, the lab link
//! and child processes.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::lab;

/// A current-thread runtime that keeps one timer pending while it lives, as a server's
/// runtime does (keep-alive and header timeouts, the application's own). A runtime with
/// no timer at all parks in an untimed `epoll_wait`, and on this machine a wakeup from
/// that costs the runtime thread several µs more CPU than one from a timed park: in
/// figure 4 (peer closes after our FIN) ours, whose closes keep no Tokio timer, measured
/// 21–23 µs per close on such a runtime against 11–14 µs with a timer pending, while
/// the contenders that arm a Tokio timer per close were not affected.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.spawn(async {
        loop {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
    rt
}

pub(crate) fn listener_on(ip: &str, rcvbuf: Option<usize>) -> std::net::TcpListener {
    let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_reuse_address(true).unwrap();
    if let Some(b) = rcvbuf {
        sock.set_recv_buffer_size(b).unwrap();
    }
    sock.bind(&addr.into()).unwrap();
    sock.listen(4096).unwrap();
    sock.into()
}

pub(crate) fn listener(rcvbuf: Option<usize>) -> (std::net::TcpListener, SocketAddr) {
    let l = listener_on("127.0.0.1", rcvbuf);
    let a = l.local_addr().unwrap();
    (l, a)
}

/// Accepts one connection within 10 s.
pub(crate) fn accept(l: &std::net::TcpListener) -> std::net::TcpStream {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "accept timed out");
                thread::sleep(Duration::from_micros(50));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// How a peer's read-to-end ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Eof,
    Reset,
    Other,
}

/// Reads until EOF, an error, or `limit` bytes; returns the count and how it ended.
pub(crate) fn read_to_end(p: &mut std::net::TcpStream, limit: usize) -> (usize, End) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    while n < limit {
        let want = buf.len().min(limit - n);
        match p.read(&mut buf[..want]) {
            Ok(0) => return (n, End::Eof),
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (n, End::Reset),
            Err(_) => return (n, End::Other),
        }
    }
    (n, End::Eof)
}

pub(crate) async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect")
}

/// The order of `len` contenders in round `round`: each goes first in turn, so that
/// none is measured in a block of its own or always right after the same other.
pub(crate) fn rotation(round: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |k| (round + k) % len)
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Where the two ends of a connection live.
#[derive(Clone, Copy)]
pub(crate) enum Net<'a> {
    /// 127.0.0.1.
    Loopback,
    /// Two namespaces joined by a tbf-shaped veth (tests/support/lab.rs): we are side
    /// A, the peer side B.
    Lab(&'a lab::Lab),
}

impl Net<'_> {
    /// A listener for the peer.
    pub(crate) fn listener(self, rcvbuf: Option<usize>) -> std::net::TcpListener {
        match self {
            Net::Loopback => listener_on("127.0.0.1", rcvbuf),
            Net::Lab(l) => l.run_in(lab::Side::B, || {
                listener_on(&lab::Side::B.addr().to_string(), rcvbuf)
            }),
        }
    }

    /// Our end, connected to `addr`.
    pub(crate) async fn connect(self, addr: SocketAddr) -> TcpStream {
        match self {
            Net::Loopback => connect(addr).await,
            Net::Lab(l) => {
                tokio::time::timeout(Duration::from_secs(10), l.connect(lab::Side::A, addr))
                    .await
                    .expect("lab connect timed out")
                    .expect("lab connect")
            }
        }
    }
}

/// The lab link for figures 2 and 3, or why there is none.
pub(crate) fn build_lab() -> Result<lab::Lab, String> {
    let config = lab::LabConfig::new();
    if let Some(why) = lab::unavailable(&config) {
        return Err(format!("not measured: {why}"));
    }
    lab::Lab::build(config).map_err(|e| format!("not measured: {e}"))
}

pub(crate) const LAB_DESC: &str = "lab link = two network namespaces joined by a veth shaped with tbf to 8 Mbit/s each way, 256 KiB queue (tests/support/lab.rs)";

pub(crate) fn run_child_with_deadline(
    cmd: &mut std::process::Command,
    deadline: Duration,
) -> Option<std::process::Output> {
    let child = cmd.spawn().ok()?;
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(out)) => Some(out),
        _ => {
            // Our own child, by its pid.
            // Safety: kill(2) on a pid we spawned.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            None
        }
    }
}

/// The peer helper's side of [`spawn_peer_helper`]: binds one listener on each of
/// 127.0.0.1–8 (so that many connections find free ports) and announces them with the
/// `ADDRS a b ...` line the parent reads.
pub(crate) fn announce_peer_listeners() -> Vec<std::net::TcpListener> {
    use std::io::Write;
    let listeners: Vec<std::net::TcpListener> = (1..=8)
        .map(|i| listener_on(&format!("127.0.0.{i}"), None))
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    println!("ADDRS {}", addrs.join(" "));
    let _ = std::io::stdout().flush();
    listeners
}

/// A helper process of this bench binary in child mode `mode` (`TGC_BENCH_CHILD`),
/// holding the peers: it prints `ADDRS a b ...` first. Returns the child, the rest of
/// its output and the addresses. `limit` is named in the panic if it says otherwise.
pub(crate) fn spawn_peer_helper(
    mode: &str,
    limit: u64,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    Vec<SocketAddr>,
) {
    use std::io::BufRead;
    let exe = std::env::current_exe().expect("exe");
    let mut helper = std::process::Command::new(exe)
        .env("TGC_BENCH_CHILD", mode)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("peer helper");
    let mut out = std::io::BufReader::new(helper.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    let addrs = line
        .trim()
        .strip_prefix("ADDRS ")
        .unwrap_or_else(|| panic!("helper said {line:?} (fd limit {limit})"))
        .split(' ')
        .map(|a| a.parse().unwrap())
        .collect();
    (helper, out, addrs)
}
