//! `CloseOptions::abort_when_safe`: the reset (no `TIME_WAIT`) only when it loses
//! nothing — every byte we wrote acknowledged, nothing unread — and the graceful close
//! otherwise, with the report saying which and why; against a bare `SO_LINGER {1, 0}`,
//! which resets whatever the state.
// Linux only: the counts (`SIOCOUTQ`, `FIONREAD`) and `/proc/net/tcp`.
#![cfg(target_os = "linux")]

#[path = "support/peer.rs"]
mod peer;

use std::time::{Duration, Instant};

use peer::End;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, SafeAbort};

const T: Duration = Duration::from_secs(10);

fn opts() -> CloseOptions {
    CloseOptions::new(T).abort_when_safe(true)
}

/// Whether the connection from local port `local` to remote port `remote` is in
/// `TIME_WAIT` (`/proc/net/tcp`, state 06). Both ports: another connection may have
/// used the same local port before.
fn in_time_wait(local: u16, remote: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).ok();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        port(f[1]) == Some(local) && port(f[2]) == Some(remote) && f[3] == "06"
    })
}

/// One exchange: the client's request read by the server, the server's answer read by
/// the client, every byte acknowledged. Returns (client, server).
async fn finished_exchange() -> (TcpStream, TcpStream) {
    let (mut c, mut s) = peer::pair().await;
    c.write_all(b"request").await.unwrap();
    let mut req = [0u8; 7];
    s.read_exact(&mut req).await.unwrap();
    s.write_all(b"answer").await.unwrap();
    let mut ans = [0u8; 6];
    c.read_exact(&mut ans).await.unwrap();
    // The acknowledgement of the request may be delayed a moment.
    let start = Instant::now();
    while c.unacked_bytes().unwrap() > 0 && start.elapsed() < T {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (c, s)
}

#[tokio::test]
async fn a_finished_exchange_is_reset_and_leaves_no_time_wait() {
    let (c, mut s) = finished_exchange().await;
    let ports = (
        c.local_addr().unwrap().port(),
        c.peer_addr().unwrap().port(),
    );
    let report = c.graceful_close_with(opts()).await.expect("reset");
    assert_eq!(report.safe_abort(), Some(SafeAbort::Taken), "{report:?}");
    assert!(report.aborted() && report.acked(), "{report:?}");
    assert_eq!(peer::read_to_end(&mut s).await, (0, End::Reset));
    assert!(
        !in_time_wait(ports.0, ports.1),
        "a reset leaves no TIME_WAIT"
    );

    // The control: the graceful close leaves the client's side in TIME_WAIT.
    let (c, mut s) = finished_exchange().await;
    let ports = (
        c.local_addr().unwrap().port(),
        c.peer_addr().unwrap().port(),
    );
    let server = tokio::spawn(async move { peer::read_to_end(&mut s).await });
    let report = c.graceful_close(T).await.expect("graceful");
    assert_eq!(report.safe_abort(), None);
    assert_eq!(server.await.unwrap(), (0, End::Eof));
    assert!(
        in_time_wait(ports.0, ports.1),
        "the control leaves TIME_WAIT"
    );
}

/// The server's answer not read yet: a reset would discard it and tell the server
/// "reset"; the safe abort closes gracefully, and the server sees a clean end.
#[tokio::test]
async fn an_unread_answer_is_not_reset() {
    let (c, mut s) = finished_exchange().await;
    s.write_all(b"more").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await; // arrived, unread
    let server = tokio::spawn(async move { peer::read_to_end(&mut s).await });
    let report = c.graceful_close_with(opts()).await.expect("graceful");
    assert_eq!(
        report.safe_abort(),
        Some(SafeAbort::Refused {
            unacked: 0,
            unread: 4
        }),
        "{report:?}"
    );
    assert!(!report.aborted());
    assert_eq!(server.await.unwrap(), (0, End::Eof));

    // The bare reset: the server sees its connection reset.
    let (c, mut s) = finished_exchange().await;
    s.write_all(b"more").await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    c.set_zero_linger().unwrap();
    drop(c);
    assert_eq!(peer::read_to_end(&mut s).await.1, End::Reset);
}

/// A request the server has not acknowledged yet (its window is closed): a bare reset
/// destroys what is still queued; the safe abort closes gracefully and the server gets
/// every byte.
#[tokio::test]
async fn an_unacknowledged_request_is_not_reset() {
    const REQUEST: usize = 512 * 1024;
    for bare in [false, true] {
        // A server with a small receive buffer, not reading yet.
        let sock = TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = sock.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        let (c, s) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (c, (mut s, _)) = (c.unwrap(), s.unwrap());
        // Write until the kernel takes no more: the server's window is closed.
        let chunk = vec![b'r'; 64 * 1024];
        let mut sent = 0;
        while sent < REQUEST {
            match c.try_write(&chunk) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        let unacked = c.unacked_bytes().unwrap();
        assert!(unacked > 0);
        let closing = tokio::spawn(async move {
            if bare {
                c.set_zero_linger().unwrap();
                drop(c);
                None
            } else {
                Some(c.graceful_close_with(opts()).await)
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (got, end) = peer::read_to_end(&mut s).await;
        drop(s);
        let report = closing.await.unwrap();
        println!("bare reset: {bare}; {unacked} bytes unacknowledged at the close; the server got {got} bytes, {end:?}");
        if bare {
            assert_eq!(end, End::Reset);
            assert!(got < REQUEST, "the reset lost nothing?");
        } else {
            let report = report.unwrap().expect("graceful");
            assert!(
                matches!(report.safe_abort(), Some(SafeAbort::Refused { unacked: n, .. }) if n > 0),
                "{report:?}"
            );
            assert_eq!((got, end), (sent, End::Eof));
        }
    }
}

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/time_wait.rs"]
mod time_wait_example;

/// Many short exchanges from a client that closes first: the graceful close and a plain
/// drop leave one `TIME_WAIT` socket each, `abort()` and the safe abort none; none
/// loses a byte here (the exchanges are finished when the client closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_exchanges_leave_no_time_wait_with_the_safe_abort() {
    use time_wait_example::{run, Close};
    const N: usize = 300;
    for close in Close::ALL {
        let r = run(close, N).await.unwrap();
        println!("{}: {r:?}", close.name());
        assert_eq!(
            (r.requests_lost, r.answers_lost),
            (0, 0),
            "{}",
            close.name()
        );
        match close {
            Close::Plain | Close::Graceful => assert!(r.time_wait >= N * 9 / 10, "{r:?}"),
            Close::Abort => assert_eq!(r.time_wait, 0, "{r:?}"),
            Close::SafeAbort => {
                assert_eq!(r.time_wait, 0, "{r:?}");
                assert_eq!(r.resets_taken, N, "{r:?}");
            }
        }
    }
}
