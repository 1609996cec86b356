//! The crate's metrics (feature `metrics`): a few closes over loopback, then every
//! metric they moved, as the `metrics` facade's in-memory recorder holds them.
//!
//! ```text
//! cargo run --example metrics --features metrics
//! ```
//!
//! An application installs the recorder of its exporter instead (Prometheus, StatsD,
//! OpenTelemetry): the crate only emits through the facade.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, GracefulIo, OnTimeout};

/// A connected loopback pair: (client, server).
async fn pair(listener: &TcpListener) -> std::io::Result<(TcpStream, TcpStream)> {
    let (client, accepted) = tokio::join!(
        TcpStream::connect(listener.local_addr()?),
        listener.accept()
    );
    Ok((client?, accepted?.0))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");
    let listener = TcpListener::bind("127.0.0.1:0").await?;

    // Delivered: the client reads our answer to its EOF, then closes too. It sent a
    // request we never read: the close discards it.
    let (mut client, server) = pair(&listener).await?;
    client.write_all(b"an upload nobody reads").await?;
    let peer = tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut client, &mut sink).await;
    });
    let mut io = GracefulIo::new(server, CloseOptions::new(Duration::from_secs(5)));
    io.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
        .await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    drop(io.on_close(move |res| {
        let _ = tx.send(res.is_ok());
    }));
    println!("GracefulIo, client closes: delivered = {:?}", rx.await);
    let _ = peer.await;

    // Timed out, then reset: the client never closes its side.
    let (client, server) = pair(&listener).await?;
    let opts = CloseOptions::new(Duration::from_millis(200)).on_timeout(OnTimeout::Abort);
    let res = server.graceful_close_with(opts).await;
    println!(
        "graceful_close, client silent: {:?}",
        res.map_err(|e| e.kind())
    );
    drop(client);

    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let value = match value {
            DebugValue::Counter(n) => n.to_string(),
            DebugValue::Gauge(g) => g.to_string(),
            DebugValue::Histogram(samples) => format!("{} sample(s): {samples:?}", samples.len()),
        };
        println!("{kind:?} {}{{{}}} {value}", key.name(), labels.join(","));
    }
    Ok(())
}
