//! A TLS layer that does not forward `poll_shutdown` to the stream it wraps (as
//! tokio-rustls may stop doing): the `GracefulIo`'s drop still closes gracefully, and
//! every client gets the whole 413.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_graceful_close::GracefulIo;

use crate::clients::{upload_hyper_tls, Proto};
use crate::example::{self, Outcome};
use crate::support::*;

/// Forwards everything but `poll_shutdown`, which only flushes.
struct NoShutdown<S> {
    inner: S,
    shutdowns: Arc<AtomicUsize>,
}

impl<S: AsyncRead + Unpin> AsyncRead for NoShutdown<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoShutdown<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

const RUNS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_layer_that_swallows_poll_shutdown_still_closes_gracefully() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (tx, mut closes) = mpsc::unbounded_channel();
    let shutdowns = Arc::new(AtomicUsize::new(0));
    let seen = shutdowns.clone();
    let server = tokio::spawn(async move {
        let acceptor = acceptor();
        loop {
            let (stream, _) = tcp.accept().await.unwrap();
            let tx = tx.clone();
            let io = GracefulIo::new(stream, close_options()).on_close(move |res| {
                let _ = tx.send(outcome_of(res));
            });
            let io = NoShutdown {
                inner: io,
                shutdowns: seen.clone(),
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(io).await else {
                    return;
                };
                let svc = TowerToHyperService::new(example::app());
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let mut complete = 0;
    let mut first_bad = None;
    for _ in 0..RUNS {
        match upload_hyper_tls(addr, Proto::Http1).await {
            Outcome::Complete => complete += 1,
            other => {
                first_bad.get_or_insert(other);
            }
        }
    }
    let mut confirmed = 0;
    for _ in 0..RUNS {
        if next_close(&mut closes).await.is_ok() {
            confirmed += 1;
        }
    }
    println!(
        "poll_shutdown swallowed ({} calls): {complete} / {RUNS} got the whole 413, \
         {confirmed} / {RUNS} closes confirmed",
        shutdowns.load(Ordering::SeqCst)
    );
    assert!(
        shutdowns.load(Ordering::SeqCst) >= RUNS,
        "hyper did not shut down"
    );
    assert_eq!(complete, RUNS, "first failure: {first_bad:?}");
    assert_eq!(confirmed, RUNS);
    server.abort();
}
