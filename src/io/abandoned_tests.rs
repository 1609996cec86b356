//! `GracefulIo`'s writes discard input its application abandoned (Linux).

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::GracefulIo;
use crate::discard::abandon::DiscardBounds;
use crate::options::CloseOptions;

/// The mark under which the kernel wakes a reader (`SO_RCVLOWAT`).
fn low_water(fd: &impl AsFd) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // Safety: `v` and `len` are live and sized for the option.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    v
}

/// A connection whose writes discarded a streaming upload in batches, then shut
/// down: `SO_RCVLOWAT` after the shutdown, and after `into_inner`.
async fn low_water_after_shutdown(opts: CloseOptions) -> (i32, i32, i32) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut peer = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (ours, _) = listener.accept().await.unwrap();
    socket2::SockRef::from(&ours)
        .set_send_buffer_size(16 << 10)
        .unwrap();
    socket2::SockRef::from(&peer)
        .set_recv_buffer_size(16 << 10)
        .unwrap();
    let mut io = GracefulIo::new(ours, opts);
    let bounds = DiscardBounds {
        limit: 64 << 20,
        timeout: Duration::from_secs(20),
    };
    io.input_handle().abandon(bounds);
    // The client uploads and never reads; our answer's writes block and discard.
    let upload = tokio::spawn(async move {
        let _ = peer.write_all(&vec![1; 1 << 20]).await;
        peer
    });
    let answer = vec![2; 4 << 20];
    let blocked = tokio::time::timeout(Duration::from_millis(800), io.write_all(&answer));
    assert!(blocked.await.is_err(), "the client reads nothing");
    let _peer = upload.await.unwrap();
    let discarding = low_water(&io);
    io.shutdown().await.unwrap();
    let shut = low_water(&io);
    let given_back = low_water(&io.into_inner());
    (discarding, shut, given_back)
}

/// The close takes over the batches of the writes' discard: the mark stays through
/// the shutdown (it was cleared there, and set again at the close's first discard),
/// and is cleared when the stream is given back.
#[tokio::test]
async fn the_close_takes_over_the_batches() {
    let opts = CloseOptions::new(Duration::from_secs(20));
    let (discarding, shut, given_back) = low_water_after_shutdown(opts).await;
    assert!(discarding > 1, "the writes' discard batches: {discarding}");
    assert_eq!(shut, discarding, "the shutdown kept the batch");
    assert_eq!(
        given_back, 1,
        "a stream given back wakes its reader for every byte"
    );
}

/// A close whose drain limit is below the largest batch does not take it over: a
/// batch must never hide an excess.
#[tokio::test]
async fn a_close_with_a_small_drain_limit_clears_the_batches() {
    let opts = CloseOptions::new(Duration::from_secs(20)).drain_limit(64 << 10);
    let (discarding, shut, given_back) = low_water_after_shutdown(opts).await;
    assert!(discarding > 1, "the writes' discard batches: {discarding}");
    assert_eq!((shut, given_back), (1, 1));
}
