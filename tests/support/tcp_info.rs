//! `getsockopt(TCP_INFO)` for the Nagle tests and bench, which count data segments.

use std::os::fd::{AsFd, AsRawFd};

/// Reads `struct tcp_info` of a TCP socket; panics (in a test) if the call fails.
pub fn tcp_info(fd: impl AsFd) -> libc::tcp_info {
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // Safety: `tcp_info` is plain integers; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    // Safety: `info` is valid for writes of `len` bytes; the kernel writes at most `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info
}
