//! The client side over TLS: `GracefulCloseLayer` inside hyper-rustls's
//! `HttpsConnector`, around the TCP connector, so TLS runs over a `GracefulIo`.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tokio_graceful_close::tower::GracefulCloseLayer;
use tokio_graceful_close::{CloseOptions, CloseSettings};
use tower::Layer;

use crate::support::*;

const BIG: usize = 1 << 20;

async fn pooled_client_over_tls(h2: bool) {
    let (listener, addr, mut server_closes) = tls_listener(close_options()).await;
    let app = Router::new().route("/big", get(|| async { vec![b'b'; BIG] }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let (tx, mut client_closes) = mpsc::unbounded_channel();
    let mut http = HttpConnector::new();
    http.enforce_http(false); // the HttpsConnector sees the https URIs first
    let tcp = GracefulCloseLayer::new(
        CloseSettings::new(CloseOptions::new(Duration::from_secs(10))).on_close(move |res| {
            let _ = tx.send(outcome_of(res));
        }),
    )
    .layer(http);
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(client_config(&[]))
        .https_only();
    let https = if h2 {
        builder.enable_http2().wrap_connector(tcp)
    } else {
        builder.enable_http1().wrap_connector(tcp)
    };
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build(https);

    let uri = format!("https://localhost:{}/big", addr.port());
    for _ in 0..3 {
        let res = tokio::time::timeout(T, client.get(uri.parse().unwrap()))
            .await
            .expect("request hung")
            .unwrap();
        let want = if h2 {
            hyper::Version::HTTP_2
        } else {
            hyper::Version::HTTP_11
        };
        assert_eq!(res.version(), want);
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), BIG);
    }
    // Dropping the client drops its pooled connections (one, or two if a request went
    // out before the previous connection was back in the pool); each GracefulIo closes
    // in the background.
    drop(client);
    let client_report = next_close(&mut client_closes).await;
    let server_report = next_close(&mut server_closes).await;
    let mut reports = vec![(client_report, server_report)];
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(c) = client_closes.try_recv() {
        reports.push((c, next_close(&mut server_closes).await));
    }
    for (client_close, server_close) in reports {
        println!(
            "hyper-rustls {}: client close {client_close:?}; server close {server_close:?}",
            if h2 { "h2" } else { "http/1.1" }
        );
        // A client connection reads the server's answer to its FIN (its default,
        // `PeerEof::IfSending`: the server's `close_notify` is not reset): confirmed
        // delivery is the promise, on both ends.
        let report = client_close.expect("the client's close confirmed delivery");
        assert!(report.acked(), "{report:?}");
        let report = server_close.expect("the server's close confirmed delivery");
        assert!(report.acked(), "{report:?}");
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_close_layer_inside_https_connector_http1() {
    pooled_client_over_tls(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_close_layer_inside_https_connector_h2() {
    pooled_client_over_tls(true).await;
}
