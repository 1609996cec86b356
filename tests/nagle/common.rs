//! Helpers shared by the Nagle tests: the message, loopback pairs (one with delayed
//! ACKs), bounded reads, the segment counter, and the retry for inconclusive attempts.

use std::future::Future;
use std::os::fd::AsFd;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::tcp_info::tcp_info;

pub(crate) const HEADER: &[u8] = b"LEN 0011\r\n";
pub(crate) const BODY: &[u8] = b"hello world";
pub(crate) const TOTAL: usize = HEADER.len() + BODY.len();

/// Upper bound for every await, so that a broken test fails instead of hanging.
pub(crate) const WAIT: Duration = Duration::from_secs(5);
/// Attempts before giving up on a precondition that keeps failing.
pub(crate) const ATTEMPTS: usize = 5;
/// Below the cork's 200 ms timer with margin: a check that ran within this time since
/// the first corked write saw the cork, not the timer.
pub(crate) const CORK_WINDOW: Duration = Duration::from_millis(100);
/// "Promptly": well under the 200 ms after which the kernel would send a corked tail
/// by itself.
pub(crate) const PROMPT: Duration = Duration::from_millis(100);

pub(crate) async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

/// A connected loopback pair: (client, server).
pub(crate) async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = within("connect", async {
        tokio::join!(TcpStream::connect(addr), listener.accept())
    })
    .await;
    (client.unwrap(), server.unwrap().0)
}

/// A pair whose server delays its ACKs: `TCP_QUICKACK` off puts it in "pingpong"
/// (interactive) mode, where a small segment is acknowledged by the delayed-ACK timer
/// (>= 40 ms on Linux) or by the next data it sends, not at once.
pub(crate) async fn pair_delayed_ack() -> (TcpStream, TcpStream) {
    let (client, server) = pair().await;
    socket2::SockRef::from(&server)
        .set_tcp_quickack(false)
        .unwrap();
    (client, server)
}

/// `tcpi_data_segs_out`: segments carrying data sent so far.
pub(crate) fn data_segs(fd: impl AsFd) -> u32 {
    tcp_info(fd).tcpi_data_segs_out
}

pub(crate) async fn read_n(server: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    within("peer read", server.read_exact(&mut buf))
        .await
        .unwrap();
    buf
}

pub(crate) async fn read_to_eof(server: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    within("peer read to EOF", server.read_to_end(&mut buf))
        .await
        .unwrap();
    buf
}

pub(crate) fn message() -> Vec<u8> {
    [HEADER, BODY].concat()
}

/// Runs `attempt` until it returns `true` (conclusive, asserted); `false` means its
/// precondition did not hold (a kernel timer fired first) and it is retried.
pub(crate) async fn conclusive<F, Fut>(name: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for i in 1..=ATTEMPTS {
        if attempt().await {
            return;
        }
        eprintln!(
            "{name}: attempt {i} inconclusive (a kernel timer or the ACK came first), retrying"
        );
    }
    panic!("{name}: precondition never held in {ATTEMPTS} attempts");
}
