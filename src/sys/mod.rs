//! Platform code. Every `unsafe` call of the crate lives below this module.
//!
//! Public items elsewhere stay thin and forward to the `pub(crate)` functions
//! of the platform file chosen here (the layout of `socket2`).

/// Calls a `libc` function and turns `-1` into [`std::io::Error::last_os_error`].
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // Safety: the caller of the macro upholds the contract of `$fn`;
        // each use site says why its arguments are valid.
        let res = unsafe { nix::libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "linux.rs"]
mod imp;

#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
#[path = "unix.rs"]
mod imp;

#[cfg(not(unix))]
compile_error!(
    "tokio-graceful-close supports Unix only (Linux fully; other Unix without the ACK check)"
);

pub(crate) use imp::*;

/// The kind of socket behind a stream; decides how the drain discards data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketKind {
    /// TCP over IPv4 or IPv6.
    Tcp,
    /// `AF_UNIX` stream socket.
    Unix,
}

/// Size of the on-stack scratch buffer used where data must be copied to be discarded.
pub(crate) const SCRATCH: usize = 4096;

/// Reads and throws away up to `max` bytes into a scratch buffer on the stack.
fn discard_by_copy(fd: std::os::fd::BorrowedFd<'_>, max: usize) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; SCRATCH];
    let len = max.min(SCRATCH);
    // Safety: `buf` is valid for writes of `len <= SCRATCH` bytes for the whole call.
    let n = syscall!(recv(
        fd.as_raw_fd(),
        buf.as_mut_ptr().cast(),
        len,
        nix::libc::MSG_DONTWAIT
    ))?;
    Ok(n as usize)
}
