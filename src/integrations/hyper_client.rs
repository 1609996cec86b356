//! hyper-util's client with graceful closes: its `Connection` trait for [`GracefulIo`].
//!
//! hyper-util's legacy `Client` takes any connector whose connections are
//! `Read + Write + Connection`; with this impl a connector of your own can hand it
//! `TokioIo<GracefulIo<S>>` (the tower feature's `GracefulCloseLayer` does so for any
//! connector returning `TokioIo<S>`).

use hyper_util::client::legacy::connect::{Connected, Connection};

use crate::ext::AsyncGracefulClose;
use crate::io::GracefulIo;

/// hyper-util's client reads the connection's metadata through the wrapper.
#[cfg_attr(docsrs, doc(cfg(feature = "hyper-client")))]
impl<S> Connection for GracefulIo<S>
where
    S: AsyncGracefulClose + Connection + Send + 'static,
{
    fn connected(&self) -> Connected {
        self.get_ref().connected()
    }
}
