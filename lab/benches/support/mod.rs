//! Helpers shared by the benchmarks: raw Linux calls the crate does not expose (or that
//! contenders use and we do not), statistics and table formatting.
#![allow(dead_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

// ===== sockets =====

/// `ioctl(SIOCOUTQ)` (= `TIOCOUTQ`): bytes not yet acknowledged, our FIN counted.
pub fn outq(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // Safety: `n` is a valid out-pointer for a `c_int`.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(n.max(0) as usize)
}

/// `getsockopt(TCP_INFO)`.
pub fn tcp_info(fd: RawFd) -> io::Result<libc::tcp_info> {
    // Safety: tcp_info is plain integers; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // Safety: `info` is valid for `len` bytes.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(info)
}

/// `SO_SNDBUFFORCE` (root) or `SO_SNDBUF`.
pub fn set_sndbuf(fd: &impl AsRawFd, bytes: usize) {
    let v = bytes as libc::c_int;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // Safety: a `c_int` option value.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

/// A marker syscall that shows up in `strace` output: `write(-1, label)` fails with
/// `EBADF` and does nothing else.
pub fn strace_marker(label: &str) {
    // Safety: the buffer is valid for its length; fd -1 is never valid.
    unsafe { libc::write(-1, label.as_ptr().cast(), label.len()) };
}

// ===== process and thread accounting =====

/// CPU time (user + system) of the calling thread: `getrusage(RUSAGE_THREAD)`.
pub fn thread_cpu() -> Duration {
    // Safety: all-zero is a valid rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // Safety: `ru` is a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time (user + system) of the whole process.
pub fn process_cpu() -> Duration {
    // Safety: as above.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // Safety: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `clock_gettime(CLOCK_THREAD_CPUTIME_ID)`: nanosecond resolution, one syscall.
pub fn thread_cpu_precise() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn tv(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000)
}

/// `VmRSS` and `VmHWM` from /proc/self/status, in bytes.
pub fn rss() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Raises `RLIMIT_NOFILE` to at least `want` (soft and hard; root may raise the hard
/// limit up to `fs.nr_open`). Returns the soft limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    // Safety: all-zero is a valid rlimit.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // Safety: `rl` is a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if rl.rlim_cur >= want {
        return rl.rlim_cur;
    }
    let new = libc::rlimit {
        rlim_cur: want,
        rlim_max: rl.rlim_max.max(want),
    };
    // Safety: a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
        return want;
    }
    let new = libc::rlimit {
        rlim_cur: rl.rlim_max,
        rlim_max: rl.rlim_max,
    };
    // Safety: a valid rlimit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) };
    rl.rlim_max
}

/// The hard `RLIMIT_NOFILE`.
pub fn nofile_hard() -> u64 {
    // Safety: all-zero is a valid rlimit.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // Safety: `rl` is a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    rl.rlim_max
}

// ===== syscall counting =====

/// A per-thread counter of `raw_syscalls:sys_enter` (a `perf_event_open` tracepoint),
/// the same count as `perf stat -e raw_syscalls:sys_enter` but for one window of one
/// thread. Needs tracefs (`/sys/kernel/tracing`) and root or `perf_event_paranoid <= 1`.
#[derive(Debug)]
pub struct SyscallCounter {
    fd: RawFd,
    /// Syscalls the counter counts for an empty window (its own `DISABLE` ioctl).
    overhead: u64,
}

#[repr(C)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const PERF_EVENT_IOC_RESET: libc::c_ulong = 0x2403;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// Where tracefs is not mounted (a fresh VM, a container) and we are root, mounts it at
/// its usual place, once per process, and says so.
fn mount_tracefs_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = "/sys/kernel/tracing";
        if std::path::Path::new(dir).join("events").exists() {
            return;
        }
        // Safety: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        // Safety: NUL-terminated strings; no data argument.
        let rc = unsafe {
            libc::mount(
                c"nodev".as_ptr(),
                c"/sys/kernel/tracing".as_ptr(),
                c"tracefs".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            eprintln!("(mounted tracefs at {dir} for the syscall counter)");
        }
    });
}

impl SyscallCounter {
    /// A counter for the calling thread, or `None` where tracepoints are unavailable.
    pub fn for_this_thread() -> Option<Self> {
        mount_tracefs_once();
        let id = [
            "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
            "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())?
        .trim()
        .parse::<u64>()
        .ok()?;
        let attr = PerfEventAttr {
            type_: PERF_TYPE_TRACEPOINT,
            size: std::mem::size_of::<PerfEventAttr>() as u32,
            config: id,
            sample_period: 0,
            sample_type: 0,
            read_format: 0,
            flags: 1, // disabled
            wakeup_events: 0,
            bp_type: 0,
            config1: 0,
        };
        // Safety: a valid attr of the declared size; pid 0 = this thread, any cpu.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                &attr as *const PerfEventAttr,
                0 as libc::pid_t,
                -1 as libc::c_int,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        let mut c = SyscallCounter {
            fd: fd as RawFd,
            overhead: 0,
        };
        let empty: Vec<u64> = (0..16)
            .map(|_| {
                c.start();
                c.stop_raw()
            })
            .collect();
        c.overhead = empty.into_iter().min().unwrap_or(0);
        Some(c)
    }

    /// Resets and starts counting.
    pub fn start(&self) {
        // Safety: ioctls on our own perf fd.
        unsafe {
            libc::ioctl(self.fd, PERF_EVENT_IOC_RESET, 0);
            libc::ioctl(self.fd, PERF_EVENT_IOC_ENABLE, 0);
        }
    }

    fn stop_raw(&self) -> u64 {
        let mut v: u64 = 0;
        // Safety: ioctl and an 8-byte read on our own perf fd.
        unsafe {
            libc::ioctl(self.fd, PERF_EVENT_IOC_DISABLE, 0);
            libc::read(self.fd, (&mut v as *mut u64).cast(), 8);
        }
        v
    }

    /// Stops counting; the syscalls made by this thread since `start`.
    pub fn stop(&self) -> u64 {
        self.stop_raw().saturating_sub(self.overhead)
    }
}

impl Drop for SyscallCounter {
    fn drop(&mut self) {
        // Safety: our own fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

// ===== statistics and tables =====

/// Sorted samples with nearest-rank percentiles.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<f64>);

impl Samples {
    pub fn new(mut v: Vec<f64>) -> Self {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        Samples(v)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil().max(1.0) as usize;
        self.0[rank.min(self.0.len()) - 1]
    }
    pub fn median(&self) -> f64 {
        self.pct(50.0)
    }
    pub fn p99(&self) -> f64 {
        self.pct(99.0)
    }
    pub fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }
    pub fn min(&self) -> f64 {
        self.0.first().copied().unwrap_or(f64::NAN)
    }
    pub fn sum(&self) -> f64 {
        self.0.iter().sum()
    }
    pub fn count_where(&self, f: impl Fn(f64) -> bool) -> usize {
        self.0.iter().filter(|&&x| f(x)).count()
    }
}

/// A duration given in seconds, printed with a unit that fits.
pub fn fmt_secs(s: f64) -> String {
    if s.is_nan() {
        "n/a".into()
    } else if s.abs() >= 1.0 {
        format!("{s:.2} s")
    } else if s.abs() >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else if s.abs() >= 1e-5 {
        format!("{:.0} µs", s * 1e6)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}

/// `x / ours` as `1.0×`; `n/a` when undefined.
pub fn ratio(x: f64, ours: f64) -> String {
    if x.is_nan() || ours.is_nan() {
        "n/a".into()
    } else if ours == 0.0 {
        if x == 0.0 {
            "=".into()
        } else {
            "∞".into()
        }
    } else {
        let r = x / ours;
        if r >= 100.0 {
            format!("{r:.0}×")
        } else if r >= 10.0 {
            format!("{r:.1}×")
        } else if r >= 0.1 {
            format!("{r:.2}×")
        } else {
            format!("1/{:.0}", 1.0 / r)
        }
    }
}

/// Prints a markdown table.
pub fn table(title: &str, header: &[&str], rows: &[Vec<String>], notes: &[String]) {
    println!("\n### {title}\n");
    println!("| {} |", header.join(" | "));
    println!(
        "|{}",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
    if !notes.is_empty() {
        println!();
        for n in notes {
            println!("{n}");
        }
    }
}

/// A small deterministic PRNG (xorshift64*), enough to jitter timings.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }
}
