//! A TCP proxy that loses nothing: `copy_bidirectional` over [`GracefulIo`] on both legs.
//!
//! ```text
//! cargo run --example tcp_proxy -- LISTEN_ADDR UPSTREAM_ADDR
//! cargo run --example tcp_proxy -- 127.0.0.1:8081 127.0.0.1:8080
//! ```
//!
//! - A half-close is relayed in both directions: when one side finishes sending,
//!   `copy_bidirectional` calls `poll_shutdown` on the other leg, which sends our FIN
//!   and waits for its acknowledgement but never reads, so the other direction keeps
//!   flowing until its own EOF.
//! - When both directions are done, dropping the legs closes them gracefully in the
//!   background (drain to the peer's EOF, then close).
//! - A reset on one leg aborts the other ([`AsyncGracefulClose::abort`]): a proxy must
//!   never turn a peer's RST into a clean EOF, or the client would take a truncated
//!   stream for a complete one.

use std::io;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, GracefulIo};

/// The close options of both legs.
pub fn options() -> CloseOptions {
    CloseOptions::new(Duration::from_secs(10)).idle_timeout(Duration::from_secs(5))
}

/// Relays between `client` and `upstream` until both directions are done; returns the
/// bytes copied each way (client to upstream, upstream to client).
///
/// On an error of either leg (a reset, a failed close) both legs are aborted with RST
/// and the error is returned.
pub async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    opts: CloseOptions,
) -> io::Result<(u64, u64)> {
    let mut client = GracefulIo::new(client, opts);
    let mut upstream = GracefulIo::new(upstream, opts);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        // Dropping the legs finishes their graceful closes in the background.
        Ok(counts) => Ok(counts),
        Err(e) => {
            let _ = client.into_inner().abort();
            let _ = upstream.into_inner().abort();
            Err(e)
        }
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: tcp_proxy LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let listener = TcpListener::bind(&listen).await?;
    println!("relaying {listen} -> {upstream}");
    loop {
        let (client, peer) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let res = match TcpStream::connect(&upstream).await {
                Ok(up) => relay(client, up, options()).await,
                Err(e) => {
                    let _ = client.abort();
                    Err(e)
                }
            };
            match res {
                Ok((up, down)) => println!("{peer}: {up} bytes up, {down} bytes down"),
                Err(e) => eprintln!("{peer}: {e}"),
            }
        });
    }
}
