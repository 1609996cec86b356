//! A two-host network inside the machine: two network namespaces joined by a veth pair.
//!
//! Loopback never loses a packet and acknowledges at once; this lab does neither. Each
//! side's egress is shaped with `tc qdisc tbf` (rate, queue), so written data stays
//! unacknowledged for hundreds of milliseconds; an optional random loss is applied with
//! nftables on each side's input (`numgen random mod 100 < N drop`, so the sender
//! believes the segment left); the link can be cut (`ip link set down`), black-holed,
//! or made unreachable (ICMP host-unreachable) mid-transfer.
//!
//! Sockets are created inside a namespace by a thread that `setns`es into it
//! ([`Lab::run_in`]). A socket keeps its namespace for life, so it is then handed to
//! the Tokio runtime anywhere. Only the namespaces' own addresses ([`ADDR_A`],
//! [`ADDR_B`]) exist there: no traffic can leave the lab.
//!
//! Every lab has unique namespace names and is torn down on [`Drop`], panics included.
//! Needs root, iproute2 (`ip`, `tc`) and nftables (`nft`, only for loss, black hole and
//! unreachable: [`LabConfig::with_nft`]). [`Lab::require`] checks all of them first:
//! where one is missing it skips with the reason, or fails with it under `CI=true`.
//!
//! Include it from any target with
//! `#[path = "../tests/support/lab.rs"] mod lab;`.
#![allow(dead_code)]

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::libc;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

#[path = "lab_preflight.rs"]
mod preflight;
#[allow(unused_imports)] // each includer uses some
pub use preflight::{
    in_ci, is_root, missing_tools, skip, skip_reason, unavailable, unavailable_with,
};

/// Address of side A (inside namespace A only).
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
/// Address of side B (inside namespace B only).
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
/// Name of the veth end inside each namespace.
pub const DEV: &str = "lab0";
/// Prefix of every namespace this module creates.
const PREFIX: &str = "tgclab";

/// One end of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The first namespace, [`ADDR_A`].
    A,
    /// The second namespace, [`ADDR_B`].
    B,
}

impl Side {
    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// This side's address.
    pub fn addr(self) -> Ipv4Addr {
        match self {
            Side::A => ADDR_A,
            Side::B => ADDR_B,
        }
    }
}

/// How the link is shaped; the same in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabConfig {
    /// Bits per second, 0 for an unshaped veth.
    rate_bps: u64,
    /// Bytes the tbf queue holds before it drops (its `limit`).
    queue_bytes: u32,
    /// Bytes the token bucket lets through at once (its `burst`); 0 picks one.
    burst_bytes: u32,
    /// Random loss per direction, in percent.
    loss_percent: u8,
    /// nftables will be used (loss, black hole, unreachable).
    nft: bool,
}

impl Default for LabConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl LabConfig {
    /// 8 Mbit/s each way (1 MB/s), a 256 KiB queue (256 ms of data), no loss.
    pub const fn new() -> Self {
        LabConfig {
            rate_bps: 8_000_000,
            queue_bytes: 256 * 1024,
            burst_bytes: 0,
            loss_percent: 0,
            nft: false,
        }
    }

    /// Sets the rate of each direction in kbit/s (0: no shaping at all).
    pub const fn rate_kbit(mut self, kbit: u64) -> Self {
        self.rate_bps = kbit * 1000;
        self
    }

    /// Sets the tbf queue of each direction, in bytes.
    pub const fn queue(mut self, bytes: u32) -> Self {
        self.queue_bytes = bytes;
        self
    }

    /// Sets the tbf burst of each direction, in bytes.
    pub const fn burst(mut self, bytes: u32) -> Self {
        self.burst_bytes = bytes;
        self
    }

    /// Sets the random loss of each direction, in percent (needs nftables).
    pub const fn loss(mut self, percent: u8) -> Self {
        self.loss_percent = percent;
        if percent > 0 {
            self.nft = true;
        }
        self
    }

    /// Says that the lab will use nftables after it is built ([`Lab::blackhole`],
    /// [`Lab::unreachable`], [`Lab::set_loss`]), so that a missing `nft` is found
    /// before the build. [`LabConfig::loss`] implies it.
    pub const fn with_nft(mut self) -> Self {
        self.nft = true;
        self
    }

    /// The commands a lab of this shape runs.
    pub fn tools(&self) -> &'static [&'static str] {
        if self.nft {
            &["ip", "tc", "nft"]
        } else {
            &["ip", "tc"]
        }
    }

    /// Payload-ish bytes per second of each direction (`None` when unshaped).
    pub fn bytes_per_sec(&self) -> Option<f64> {
        (self.rate_bps > 0).then(|| self.rate_bps as f64 / 8.0)
    }

    fn burst_or_default(&self) -> u32 {
        if self.burst_bytes > 0 {
            return self.burst_bytes;
        }
        // 4 ms worth of tokens, at least a few full frames.
        ((self.rate_bps / 8 / 250) as u32).max(4 * 1514)
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A running lab; dropping it deletes both namespaces (and the veth pair with them).
pub struct Lab {
    ns_a: String,
    ns_b: String,
    config: LabConfig,
}

impl fmt::Debug for Lab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lab")
            .field("a", &self.ns_a)
            .field("b", &self.ns_b)
            .field("config", &self.config)
            .finish()
    }
}

impl Lab {
    /// Builds a lab, or prints `SKIP: <reason>` to stderr and returns `None` when it
    /// cannot be built here (not root, a command missing) and `CI` is not `true`.
    /// Panics if it must be built and cannot: under `CI=true`, or when the build itself
    /// fails.
    pub fn require(config: LabConfig) -> Option<Lab> {
        if let Some(reason) = unavailable(&config) {
            if in_ci() {
                panic!("{reason}; under CI=true the lab tests must run, not skip");
            }
            skip(&reason);
            return None;
        }
        match Lab::build(config) {
            Ok(lab) => Some(lab),
            Err(e) => panic!("cannot build the network lab: {e}"),
        }
    }

    /// Builds the two namespaces, the veth pair, the addresses, the shaping and the loss.
    pub fn build(config: LabConfig) -> io::Result<Lab> {
        reap_stale();
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let lab = Lab {
            ns_a: format!("{PREFIX}-{pid}-{id}-a"),
            ns_b: format!("{PREFIX}-{pid}-{id}-b"),
            config,
        };
        // From here on, Drop cleans up whatever part was built.
        run("ip", &["netns", "add", &lab.ns_a])?;
        run("ip", &["netns", "add", &lab.ns_b])?;
        run(
            "ip",
            &[
                "link", "add", "name", DEV, "netns", &lab.ns_a, "type", "veth", "peer", "name",
                DEV, "netns", &lab.ns_b,
            ],
        )?;
        for side in [Side::A, Side::B] {
            let ns = lab.ns(side);
            // IPv6 would only add router solicitations to the captured link: off.
            let _ = lab.run_in(side, || {
                std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1")
            });
            let cidr = format!("{}/24", side.addr());
            run("ip", &["-n", ns, "addr", "add", &cidr, "dev", DEV])?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            run("ip", &["-n", ns, "link", "set", DEV, "up"])?;
            if config.rate_bps > 0 {
                let rate = format!("{}bit", config.rate_bps);
                let burst = config.burst_or_default().to_string();
                let limit = config.queue_bytes.to_string();
                run(
                    "tc",
                    &[
                        "-n", ns, "qdisc", "replace", "dev", DEV, "root", "tbf", "rate", &rate,
                        "burst", &burst, "limit", &limit,
                    ],
                )?;
            }
        }
        if config.loss_percent > 0 {
            lab.set_loss(config.loss_percent)?;
        }
        Ok(lab)
    }

    /// The configuration the lab was built with.
    pub fn config(&self) -> &LabConfig {
        &self.config
    }

    /// The namespace name of a side (for `ip netns exec`).
    pub fn ns(&self, side: Side) -> &str {
        match side {
            Side::A => &self.ns_a,
            Side::B => &self.ns_b,
        }
    }

    /// Address of side A.
    pub fn addr_a(&self) -> Ipv4Addr {
        ADDR_A
    }

    /// Address of side B.
    pub fn addr_b(&self) -> Ipv4Addr {
        ADDR_B
    }

    /// Runs `f` on a thread that has joined the side's network namespace, and returns
    /// its result. Sockets created by `f` belong to that namespace for life and can be
    /// used from any thread afterwards. Blocks the caller for the duration of `f`.
    pub fn run_in<T, F>(&self, side: Side, f: F) -> T
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        let path = format!("/run/netns/{}", self.ns(side));
        std::thread::scope(|s| {
            let worker = s.spawn(move || {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // Safety: `ns` is an open namespace file for the duration of the call;
                // setns only changes the calling thread's network namespace.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    panic!("setns({path}): {}", io::Error::last_os_error());
                }
                drop(ns);
                f()
            });
            worker
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A fresh, unbound, non-blocking IPv4 TCP socket of `side`. No runtime needed.
    pub fn tcp_socket(&self, side: Side) -> io::Result<TcpSocket> {
        self.run_in(side, TcpSocket::new_v4)
    }

    /// `n` fresh sockets of `side`, created on one namespace thread.
    pub fn tcp_sockets(&self, side: Side, n: usize) -> io::Result<Vec<TcpSocket>> {
        self.run_in(side, || (0..n).map(|_| TcpSocket::new_v4()).collect())
    }

    /// A listener on `side`'s address (`port` 0 picks one), `SO_REUSEADDR`, backlog 4096.
    /// Must be called inside a Tokio runtime.
    pub fn listen(&self, side: Side, port: u16) -> io::Result<TcpListener> {
        self.listen_with(side, port, |_| Ok(()))
    }

    /// Like [`Lab::listen`], with `setup` applied to the socket before `bind` (buffer
    /// sizes, which accepted sockets inherit).
    pub fn listen_with(
        &self,
        side: Side,
        port: u16,
        setup: impl FnOnce(&TcpSocket) -> io::Result<()>,
    ) -> io::Result<TcpListener> {
        let sock = self.tcp_socket(side)?;
        sock.set_reuseaddr(true)?;
        setup(&sock)?;
        sock.bind(SocketAddr::V4(SocketAddrV4::new(side.addr(), port)))?;
        sock.listen(4096)
    }

    /// Connects from `side` to `to`.
    pub async fn connect(&self, side: Side, to: SocketAddr) -> io::Result<TcpStream> {
        self.tcp_socket(side)?.connect(to).await
    }

    /// Cuts the cable: both veth ends go down (carrier lost on both; the connected
    /// route of each side disappears with its link). Established sockets live on.
    pub fn cut(&self) -> io::Result<()> {
        self.link(Side::B, false)?;
        self.link(Side::A, false)
    }

    /// Reconnects the cable cut by [`Lab::cut`] (the shaping and rules stay).
    pub fn restore(&self) -> io::Result<()> {
        self.link(Side::A, true)?;
        self.link(Side::B, true)
    }

    /// Sets one veth end administratively up or down.
    pub fn link(&self, side: Side, up: bool) -> io::Result<()> {
        let state = if up { "up" } else { "down" };
        run("ip", &["-n", self.ns(side), "link", "set", DEV, state])
    }

    /// Black-holes the link (`true`): every packet arriving on either side is dropped,
    /// while both links stay up and both senders believe they sent. `false` lifts it.
    pub fn blackhole(&self, on: bool) -> io::Result<()> {
        self.hole(on.then_some("drop"))
    }

    /// Makes the far host unreachable (`true`): every TCP segment arriving on either
    /// side is answered with ICMP host-unreachable, as a router does for a host that is
    /// gone, and dropped. `false` lifts it.
    pub fn unreachable(&self, on: bool) -> io::Result<()> {
        self.hole(on.then_some("ip protocol tcp reject with icmp type host-unreachable"))
    }

    fn hole(&self, verdict: Option<&str>) -> io::Result<()> {
        for side in [Side::A, Side::B] {
            let rule = match verdict {
                Some(v) => format!("add rule inet lab hole iifname \"{DEV}\" {v}\n"),
                None => String::new(),
            };
            let script = format!("{}flush chain inet lab hole\n{rule}", Self::TABLE);
            self.nft(side, &script)?;
        }
        Ok(())
    }

    /// Sets the random loss of each direction, in percent (0 removes it). Applied on
    /// input, so the lost segment did cross the shaped link.
    pub fn set_loss(&self, percent: u8) -> io::Result<()> {
        for side in [Side::A, Side::B] {
            let rule = if percent > 0 {
                format!(
                    "add rule inet lab loss iifname \"{DEV}\" numgen random mod 100 < {percent} drop\n"
                )
            } else {
                String::new()
            };
            let script = format!("{}flush chain inet lab loss\n{rule}", Self::TABLE);
            self.nft(side, &script)?;
        }
        Ok(())
    }

    /// The table both [`Lab::set_loss`] and [`Lab::blackhole`] fill (idempotent).
    const TABLE: &'static str = "add table inet lab\n\
         add chain inet lab hole { type filter hook input priority -10; policy accept; }\n\
         add chain inet lab loss { type filter hook input priority 0; policy accept; }\n";

    fn nft(&self, side: Side, script: &str) -> io::Result<()> {
        run_stdin(
            "ip",
            &["netns", "exec", self.ns(side), "nft", "-f", "-"],
            script,
        )
    }

    /// Writes a per-namespace sysctl of a side, e.g. `("net/ipv4/tcp_wmem", "4096
    /// 8388608 16777216")` for an 8 MiB initial send buffer there.
    pub fn sysctl(&self, side: Side, key: &str, value: &str) -> io::Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run_in(side, || std::fs::write(&path, value))
            .map_err(|e| io::Error::new(e.kind(), format!("sysctl {key}={value}: {e}")))
    }

    /// Runs a command inside a side's namespace (`ip netns exec`), e.g. `ss -tan`.
    pub fn exec(&self, side: Side, cmd: &str, args: &[&str]) -> io::Result<Output> {
        let mut all = vec!["netns", "exec", self.ns(side), cmd];
        all.extend_from_slice(args);
        let out = Command::new("ip").args(&all).output()?;
        Ok(out)
    }

    /// The IPv4 TCP sockets of a side, read from `/proc/thread-self/net/tcp` on a
    /// thread inside its namespace (listeners, connections, orphans, `TIME_WAIT`).
    pub fn tcp_table(&self, side: Side) -> io::Result<Vec<TcpEntry>> {
        let text = self.run_in(side, || {
            std::fs::read_to_string("/proc/thread-self/net/tcp")
        })?;
        Ok(text.lines().skip(1).filter_map(TcpEntry::parse).collect())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.ns_a, &self.ns_b] {
            if std::path::Path::new("/run/netns").join(ns).exists() {
                if let Err(e) = run("ip", &["netns", "del", ns]) {
                    eprintln!("lab teardown: {e}");
                }
            }
        }
    }
}

/// One line of `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEntry {
    /// Local address.
    pub local: SocketAddrV4,
    /// Remote address.
    pub remote: SocketAddrV4,
    /// Kernel state: 1 ESTABLISHED, 4 FIN_WAIT1, 5 FIN_WAIT2, 6 TIME_WAIT, 7 CLOSE,
    /// 8 CLOSE_WAIT, 9 LAST_ACK, 10 LISTEN, 11 CLOSING.
    pub state: u8,
    /// Bytes in the send queue (unacknowledged).
    pub tx_queue: u32,
    /// Bytes in the receive queue.
    pub rx_queue: u32,
    /// Socket inode; 0 for an orphan (no file descriptor left) or a `TIME_WAIT` entry.
    pub inode: u64,
}

impl TcpEntry {
    fn parse(line: &str) -> Option<TcpEntry> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let addr = |s: &str| -> Option<SocketAddrV4> {
            let (ip, port) = s.split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let port = u16::from_str_radix(port, 16).ok()?;
            // The kernel prints the address in host byte order of a network-order u32.
            Some(SocketAddrV4::new(Ipv4Addr::from(u32::from_be(ip)), port))
        };
        let (tx, rx) = f.get(4)?.split_once(':')?;
        Some(TcpEntry {
            local: addr(f.get(1)?)?,
            remote: addr(f.get(2)?)?,
            state: u8::from_str_radix(f.get(3)?, 16).ok()?,
            tx_queue: u32::from_str_radix(tx, 16).ok()?,
            rx_queue: u32::from_str_radix(rx, 16).ok()?,
            inode: f.get(9)?.parse().ok()?,
        })
    }
}

/// Deletes namespaces of earlier lab processes that died without tearing down.
fn reap_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", &name]);
        }
    }
}

fn describe(cmd: &str, args: &[&str]) -> String {
    format!("{cmd} {}", args.join(" "))
}

fn check(cmd: &str, args: &[&str], out: io::Result<Output>) -> io::Result<()> {
    let out = out.map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::NotFound {
            " (not installed? apt-get install iproute2 nftables)"
        } else {
            ""
        };
        io::Error::new(e.kind(), format!("{}: {e}{hint}", describe(cmd, args)))
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{} failed ({}): {}",
        describe(cmd, args),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

fn run(cmd: &str, args: &[&str]) -> io::Result<()> {
    let out = Command::new(cmd).args(args).stdin(Stdio::null()).output();
    check(cmd, args, out)
}

fn run_stdin(cmd: &str, args: &[&str], input: &str) -> io::Result<()> {
    let out = (|| {
        let mut child = Command::new(cmd)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())?;
        child.wait_with_output()
    })();
    check(cmd, args, out)
}

/// Waits up to `limit` for `cond` to hold, checking every 10 ms; whether it held.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
