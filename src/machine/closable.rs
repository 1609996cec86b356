//! The streams the close machine drives: the sealed [`Closable`] trait.

use std::task::{Context, Poll};

use super::Closer;
use crate::error::CloseError;
use crate::report::CloseReport;
use crate::socket::Socket;

/// A [`Socket`] whose close the machine drives; implemented for Tokio's streams.
///
/// Sealed, as [`Socket`] is (the crate-private [`Closer`] in its signature).
#[allow(private_interfaces)]
pub trait Closable: Socket {
    /// Drives `closer` on this stream ([`Closer::poll_close`]). A method of each
    /// stream type rather than a generic call so that the state machine is compiled
    /// once, in this crate, where the system calls and the deadline bookkeeping it
    /// calls can be inlined into it: instantiated in the caller's crate, every one of
    /// them would stay a call into this one.
    #[doc(hidden)]
    fn poll_closer(
        &self,
        closer: &mut Closer,
        cx: &mut Context<'_>,
    ) -> Poll<Result<CloseReport, CloseError>>;
}

macro_rules! closable {
    ($ty:ty) => {
        #[allow(private_interfaces)]
        impl Closable for $ty {
            fn poll_closer(
                &self,
                closer: &mut Closer,
                cx: &mut Context<'_>,
            ) -> Poll<Result<CloseReport, CloseError>> {
                closer.poll_close(self, cx)
            }
        }
    };
}

closable!(tokio::net::TcpStream);
#[cfg(unix)]
closable!(tokio::net::UnixStream);
