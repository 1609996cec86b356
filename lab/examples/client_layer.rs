//! hyper-util's legacy client whose connections close gracefully: `GracefulCloseLayer`
//! around `HttpConnector`.
//!
//! ```text
//! cargo run --example client_layer --features tower
//! ```
//!
//! It starts a small server on loopback, sends a few requests through a pooled client,
//! drops the client, and prints how each pooled connection was closed: our FIN after
//! everything we sent, the server's EOF, and the acknowledgement of both.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_graceful_close::tower::GracefulCloseLayer;
use tokio_graceful_close::{CloseOptions, CloseSettings};
use tower::Layer;

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello\n"))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A plain keep-alive server to talk to.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let conn =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(hello));
            tokio::spawn(conn);
        }
    });

    // The one-line change: wrap the connector.
    let (tx, mut closes) = mpsc::unbounded_channel();
    let connector = GracefulCloseLayer::new(
        CloseSettings::new(CloseOptions::new(Duration::from_secs(5))).on_close(move |res| {
            let line = match res {
                Ok(r) => format!(
                    "closed gracefully in {:?} (acked: {})",
                    r.elapsed(),
                    r.acked()
                ),
                Err(e) => format!("close failed: {e}"),
            };
            let _ = tx.send(line);
        }),
    )
    .layer(HttpConnector::new());
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let client = client.clone();
        let uri = format!("http://{addr}/").parse()?;
        requests.spawn(async move {
            let res = client.get(uri).await?;
            let body = res.into_body().collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(body)
        });
    }
    while let Some(res) = requests.join_next().await {
        print!(
            "response: {}",
            String::from_utf8_lossy(&res?.map_err(|e| e.to_string())?)
        );
    }

    // Dropping the client drops its pool: every connection closes gracefully.
    drop(client);
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), closes.recv()).await {
        println!("connection {line}");
    }
    Ok(())
}
