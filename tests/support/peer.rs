//! Loopback peers for the close tests: what a well-behaved, odd or hostile peer does.
#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The greeting an SMTP-like server sends and the client never reads.
pub const GREETING: &[u8] = b"220 Welcome\r\n";

/// A bound listener and its address.
pub async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

/// A connected pair on loopback: (client, server).
pub async fn pair() -> (TcpStream, TcpStream) {
    let (l, a) = listener().await;
    let (c, s) = tokio::join!(TcpStream::connect(a), l.accept());
    (c.unwrap(), s.unwrap().0)
}

/// How a read-to-end on the peer side ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Eof,
    Reset,
    Other(String),
}

/// Reads everything until EOF or an error; returns the byte count and how it ended.
pub async fn read_to_end(s: &mut TcpStream) -> (usize, End) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = 0;
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return (n, End::Eof),
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return (n, End::Reset),
            Err(e) => return (n, End::Other(e.to_string())),
        }
    }
}

/// The seed peer: greets, then counts what arrives until EOF/RST, then closes.
pub fn seed_peer(l: TcpListener) -> JoinHandle<(usize, End)> {
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(GREETING).await.unwrap();
        read_to_end(&mut s).await
    })
}

/// Fills the send path (our send buffer and the peer's receive buffer) of a peer that
/// does not read, without blocking; returns how many bytes were accepted.
pub fn fill(s: &TcpStream) -> usize {
    let chunk = vec![b'f'; 256 * 1024];
    let mut total = 0;
    loop {
        match s.try_write(&chunk) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return total,
            Err(e) => panic!("fill: {e}"),
        }
    }
}

/// Bounds every wait in a test.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

/// Closes a stream with RST (`SO_LINGER {1, 0}`).
pub fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
}
