//! The outcome a `GracefulIo` reports, in a form tests can send and compare.

use tokio_graceful_close::{CloseError, CloseReport};

/// The report, or the error's text.
pub type Outcome = Result<CloseReport, String>;

/// Turns the `on_close` callback's argument into an [`Outcome`].
pub fn outcome_of(res: &Result<CloseReport, CloseError>) -> Outcome {
    match res {
        Ok(report) => Ok(report.clone()),
        Err(e) => Err(e.to_string()),
    }
}
