//! Error types

use std::error::Error;
use std::fmt;
use std::io;

use crate::report::CloseReport;

/// The step a close was in when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClosePhase {
    /// Sending our FIN (`shutdown(SHUT_WR)`).
    Shutdown,
    /// Reading and discarding until the peer's EOF.
    Drain,
    /// Waiting until the peer acknowledged all we sent and our FIN (`SIOCOUTQ` = 0).
    AckWait,
}

impl fmt::Display for ClosePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ClosePhase::Shutdown => "sending our FIN",
            ClosePhase::Drain => "waiting for the peer to close its side",
            ClosePhase::AckWait => "waiting for the peer to acknowledge our data",
        })
    }
}

/// Why a close failed; see [`CloseError::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseErrorKind {
    /// The total deadline passed ([`CloseError::phase`] says during which step).
    TimedOut,
    /// The peer sent nothing for longer than the idle timeout while we waited for its EOF.
    IdleTimeout,
    /// The kernel gave up on the connection: data stayed unacknowledged past
    /// `TCP_USER_TIMEOUT` or the retransmission limit. The OS error is `ETIMEDOUT`, or
    /// the last soft error that explains it (`EHOSTUNREACH`, `ENETUNREACH`,
    /// `EHOSTDOWN`, `ENETDOWN` after an ICMP unreachable or a lost route), kept as
    /// [`Error::source`].
    RetransmitTimeout,
    /// The peer reset the connection (RST); what was still unacknowledged is lost. On
    /// `AF_UNIX` streams: the peer closed with our bytes unread.
    PeerReset,
    /// The peer sent more than the drain limit while we waited for its EOF.
    DrainLimit,
    /// The [`CloseTracker`](crate::CloseTracker)'s cap on lingering closes was reached
    /// and this close, the one lingering longest, was ended early: everything we sent
    /// was already acknowledged ([`CloseReport::acked`](crate::CloseReport::acked)), so
    /// it was closed at once (a peer still sending then gets RST for its next segment).
    Evicted,
    /// Another I/O error; see [`Error::source`].
    Io,
}

impl CloseErrorKind {
    /// Whether this is one of the time bounds: the deadline, the idle timeout or the
    /// kernel's retransmission timeout. These map to [`io::ErrorKind::TimedOut`].
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            CloseErrorKind::TimedOut
                | CloseErrorKind::IdleTimeout
                | CloseErrorKind::RetransmitTimeout
        )
    }
}

/// A graceful close that could not confirm delivery.
///
/// It carries what happened: the [`kind`](Self::kind), the [`phase`](Self::phase) the
/// close was in, and the partial [`report`](Self::report). It converts into an
/// [`io::Error`] of kind [`TimedOut`](io::ErrorKind::TimedOut) for the time bounds,
/// [`ConnectionReset`](io::ErrorKind::ConnectionReset) for a reset,
/// [`InvalidData`](io::ErrorKind::InvalidData) for the drain limit, and the kind of the
/// OS error for [`Io`](CloseErrorKind::Io) ([`Other`](io::ErrorKind::Other) without one).
///
/// ```
/// # use std::time::Duration;
/// # use tokio_graceful_close::AsyncGracefulClose;
/// # async fn dox(stream: tokio::net::TcpStream) {
/// match stream.graceful_close(Duration::from_secs(5)).await {
///     Ok(report) => println!("delivered in {:?}", report.elapsed()),
///     Err(e) if e.kind().is_timeout() => {
///         eprintln!("{e}; {:?} bytes never acknowledged", e.report().unacked_bytes())
///     }
///     Err(e) => eprintln!("close failed: {e}"),
/// }
/// # }
/// ```
pub struct CloseError {
    kind: CloseErrorKind,
    phase: ClosePhase,
    report: CloseReport,
    source: Option<io::Error>,
}

impl CloseError {
    pub(crate) fn new(
        kind: CloseErrorKind,
        phase: ClosePhase,
        report: CloseReport,
        source: Option<io::Error>,
    ) -> Self {
        Self {
            kind,
            phase,
            report,
            source,
        }
    }

    /// The report, for the connection to add what it owns (the peer's address, input
    /// discarded before the close).
    pub(crate) fn report_mut(&mut self) -> &mut CloseReport {
        &mut self.report
    }

    /// The same error again: kind, phase and report, with the source rebuilt from its
    /// OS error code (or its kind and message), for adapters that must return the same
    /// outcome on every call.
    pub(crate) fn duplicate(&self) -> Self {
        let source = self.source.as_ref().map(|e| match e.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(e.kind(), e.to_string()),
        });
        CloseError::new(self.kind, self.phase, self.report.clone(), source)
    }

    /// Why the close failed.
    pub fn kind(&self) -> CloseErrorKind {
        self.kind
    }

    /// The step the close was in when it failed.
    pub fn phase(&self) -> ClosePhase {
        self.phase
    }

    /// What the close did before it failed.
    pub fn report(&self) -> &CloseReport {
        &self.report
    }

    /// Takes the report out of the error.
    pub fn into_report(self) -> CloseReport {
        self.report
    }

    fn io_kind(&self) -> io::ErrorKind {
        match self.kind {
            k if k.is_timeout() => io::ErrorKind::TimedOut,
            CloseErrorKind::PeerReset => io::ErrorKind::ConnectionReset,
            CloseErrorKind::DrainLimit => io::ErrorKind::InvalidData,
            _ => self
                .source
                .as_ref()
                .map_or(io::ErrorKind::Other, io::Error::kind),
        }
    }
}

impl fmt::Debug for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloseError")
            .field("kind", &self.kind)
            .field("phase", &self.phase)
            .field("report", &self.report)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        match self.kind {
            CloseErrorKind::TimedOut => write!(
                f,
                "graceful close timed out after {:?} while {}",
                r.elapsed, self.phase
            )?,
            CloseErrorKind::IdleTimeout => write!(
                f,
                "graceful close gave up after {:?}: the peer stayed silent past the idle \
                 timeout without closing its side",
                r.elapsed
            )?,
            CloseErrorKind::RetransmitTimeout => write!(
                f,
                "graceful close failed after {:?}: the kernel gave up retransmitting to an \
                 unreachable or stalled peer (TCP_USER_TIMEOUT or retry limit)",
                r.elapsed
            )?,
            CloseErrorKind::PeerReset => write!(
                f,
                "graceful close failed after {:?}: the peer reset the connection while {}",
                r.elapsed, self.phase
            )?,
            CloseErrorKind::DrainLimit => write!(
                f,
                "graceful close stopped after discarding {} byte{}: the peer sent more than \
                 the drain limit allows",
                r.drained_bytes,
                if r.drained_bytes == 1 { "" } else { "s" }
            )?,
            CloseErrorKind::Evicted => write!(
                f,
                "graceful close ended early after {:?} while {}: too many lingering closes, \
                 this one the oldest",
                r.elapsed, self.phase
            )?,
            CloseErrorKind::Io => write!(f, "graceful close failed while {}", self.phase)?,
        }
        match r.unacked_bytes {
            Some(n) if n > 0 && !r.acked => write!(f, "; {n} bytes unacknowledged")?,
            _ => {}
        }
        if r.aborted {
            f.write_str("; connection aborted with RST")?;
        }
        // The crate's own explanations belong to the message; an OS error is the
        // source, which error reporters print after it: never both.
        if let Some(why) = self.source.as_ref().filter(|e| e.raw_os_error().is_none()) {
            write!(f, ": {why}")?;
        }
        Ok(())
    }
}

impl Error for CloseError {
    /// The OS error behind the failure, if any (it is not repeated in the message).
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source
            .as_ref()
            .filter(|e| e.raw_os_error().is_some())
            .map(|e| e as &(dyn Error + 'static))
    }
}

impl From<CloseError> for io::Error {
    /// Keeps the [`CloseError`] as the inner error, so it can be recovered with
    /// [`io::Error::get_ref`] and `downcast_ref`.
    fn from(err: CloseError) -> Self {
        io::Error::new(err.io_kind(), err)
    }
}

/// Maps the OS error of a failed connection to the error kind users act on.
pub(crate) fn classify(e: &io::Error) -> CloseErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => CloseErrorKind::PeerReset,
        // The kernel's give-up (`tcp_write_err`) reports `sk_err_soft ?: ETIMEDOUT`: the
        // last soft error, a failed route lookup or an ICMP unreachable, when there was one.
        io::ErrorKind::TimedOut
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::NetworkDown => CloseErrorKind::RetransmitTimeout,
        _ if crate::sys::is_host_down(e) => CloseErrorKind::RetransmitTimeout,
        _ => CloseErrorKind::Io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report() -> CloseReport {
        CloseReport {
            elapsed: Duration::from_millis(1500),
            drained_bytes: 42,
            peer_eof: false,
            acked: false,
            unacked_bytes: Some(1001),
            aborted: true,
            peer_addr: None,
            safe_abort: None,
        }
    }

    #[cfg(unix)]
    #[test]
    fn classify_maps_os_errors() {
        use nix::libc;
        let k = |n| classify(&io::Error::from_raw_os_error(n));
        assert_eq!(k(libc::ECONNRESET), CloseErrorKind::PeerReset);
        assert_eq!(k(libc::EPIPE), CloseErrorKind::PeerReset);
        assert_eq!(k(libc::ECONNABORTED), CloseErrorKind::PeerReset);
        for n in [
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
            libc::EHOSTDOWN,
            libc::ENETDOWN,
        ] {
            assert_eq!(k(n), CloseErrorKind::RetransmitTimeout, "errno {n}");
        }
        assert_eq!(k(libc::EBADF), CloseErrorKind::Io);
    }

    #[test]
    fn timeout_converts_to_timed_out_and_keeps_the_report() {
        let e = CloseError::new(
            CloseErrorKind::TimedOut,
            ClosePhase::AckWait,
            report(),
            None,
        );
        let text = e.to_string();
        assert!(text.contains("timed out after 1.5s"), "{text}");
        assert!(text.contains("acknowledge"), "{text}");
        assert!(text.contains("1001 bytes unacknowledged"), "{text}");
        assert!(text.contains("RST"), "{text}");
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::TimedOut);
        let inner = io.get_ref().unwrap().downcast_ref::<CloseError>().unwrap();
        assert_eq!(inner.report().unacked_bytes(), Some(1001));
    }

    #[test]
    fn kinds_map_to_io_kinds() {
        let mk = |kind, src| CloseError::new(kind, ClosePhase::Drain, report(), src);
        let cases = [
            (
                mk(CloseErrorKind::IdleTimeout, None),
                io::ErrorKind::TimedOut,
            ),
            (
                mk(CloseErrorKind::RetransmitTimeout, None),
                io::ErrorKind::TimedOut,
            ),
            (
                mk(CloseErrorKind::PeerReset, None),
                io::ErrorKind::ConnectionReset,
            ),
            (
                mk(CloseErrorKind::DrainLimit, None),
                io::ErrorKind::InvalidData,
            ),
            (
                mk(
                    CloseErrorKind::Io,
                    Some(io::Error::from(io::ErrorKind::PermissionDenied)),
                ),
                io::ErrorKind::PermissionDenied,
            ),
            (mk(CloseErrorKind::Io, None), io::ErrorKind::Other),
        ];
        for (err, kind) in cases {
            assert!(!err.to_string().is_empty());
            assert_eq!(io::Error::from(err).kind(), kind);
        }
    }

    #[test]
    fn an_os_error_is_the_source_and_not_repeated_in_the_message() {
        let os = io::Error::from_raw_os_error(9); // EBADF on Linux and the BSDs
        let os_text = os.to_string();
        let e = CloseError::new(
            CloseErrorKind::Io,
            ClosePhase::Shutdown,
            CloseReport::default(),
            Some(os),
        );
        assert_eq!(e.source().map(|s| s.to_string()), Some(os_text.clone()));
        let text = e.to_string();
        assert!(text.contains("sending our FIN"), "{text}");
        assert!(
            !text.contains(&os_text),
            "printed twice by reporters: {text}"
        );
        assert!(CloseErrorKind::TimedOut.is_timeout());
        assert!(!CloseErrorKind::PeerReset.is_timeout());
    }

    #[test]
    fn the_crates_own_reason_is_in_the_message_and_not_the_source() {
        let e = CloseError::new(
            CloseErrorKind::Io,
            ClosePhase::Drain,
            CloseReport::default(),
            Some(io::Error::other("the runtime shut down")),
        );
        assert!(e.source().is_none());
        assert!(e.to_string().ends_with(": the runtime shut down"), "{e}");
    }

    #[test]
    fn a_single_discarded_byte_is_one_byte() {
        let report = CloseReport {
            drained_bytes: 1,
            ..CloseReport::default()
        };
        let e = CloseError::new(CloseErrorKind::DrainLimit, ClosePhase::Drain, report, None);
        let text = e.to_string();
        assert!(text.contains("discarding 1 byte:"), "{text}");
        assert!(text.contains("more than the drain limit"), "{text}");
    }
}
