//! Errors: no cork on `AF_UNIX`, and the stream stays usable.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio_graceful_close::{write_corked, Corked};

use crate::common::{within, BODY, HEADER};

// ===== errors =====

/// No cork on `AF_UNIX`: construction and `write_corked` return the `setsockopt`
/// error, nothing panics, the stream stays usable.
#[tokio::test]
async fn cork_on_unix_socket_is_an_error() {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let err = Corked::new(&mut a).unwrap_err();
    assert_ne!(err.kind(), io::ErrorKind::Other, "{err}");
    assert!(within("write_corked", write_corked(&mut a, &[HEADER]))
        .await
        .is_err());
    a.write_all(BODY).await.unwrap();
    let mut buf = [0; BODY.len()];
    within("read", b.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, BODY);
}
