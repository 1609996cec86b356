//! tonic over `GracefulIo`, h2 plain and over TLS: `serve_with_incoming` takes the
//! wrapped streams (the `tonic` feature's `Connected`), `remote_addr` still works, and
//! after a graceful shutdown every connection's close is confirmed.
//!
//! No code generation (it would need protoc): a unary service written against tonic's
//! generic `server::Grpc` and `client::Grpc`, with a codec that passes bytes through.

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http;
use bytes::{Buf, BufMut, Bytes};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_graceful_close::tower::GracefulCloseLayer;
use tokio_graceful_close::{CloseSettings, GracefulIo};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Server};
use tonic::{Request, Response, Status};
use tower::Layer;

use crate::support::*;

const BIG: usize = 1 << 20;

/// Messages are the bytes themselves.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `/test.Echo/Addr` answers the caller's address as tonic sees it; `/test.Echo/Big`
/// answers 1 MiB.
struct Method(&'static str);

impl tonic::server::UnaryService<Bytes> for Method {
    type Response = Bytes;
    type Future = Ready<Result<Response<Bytes>, Status>>;

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        ready(Ok(Response::new(match self.0 {
            "Addr" => Bytes::from(format!("{:?}", req.remote_addr())),
            _ => Bytes::from(vec![b'g'; BIG]),
        })))
    }
}

#[derive(Clone)]
struct Echo;

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let method = match req.uri().path() {
                "/test.Echo/Addr" => "Addr",
                "/test.Echo/Big" => "Big",
                _ => return Ok(Status::unimplemented("no such method").into_http()),
            };
            Ok(tonic::server::Grpc::new(RawCodec)
                .unary(Method(method), req)
                .await)
        })
    }
}

async fn call(
    client: &mut tonic::client::Grpc<tonic::transport::Channel>,
    path: &'static str,
) -> Bytes {
    client.ready().await.unwrap();
    client
        .unary(
            Request::new(Bytes::new()),
            http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await
        .expect("the call")
        .into_inner()
}

async fn grpc(tls: bool) {
    let (stop_tx, mut stop) = watch::channel(false);
    let signal = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let (tx, mut closes) = mpsc::unbounded_channel();
    let (addr, server) = if tls {
        let (listener, addr, mut rx) = tls_listener(close_options()).await;
        tokio::spawn(async move {
            while let Some(o) = rx.recv().await {
                let _ = tx.send(o);
            }
        });
        let incoming = futures_util::stream::unfold(listener, |mut l| async move {
            let (tls, _) = l.accept().await;
            Some((Ok::<_, Infallible>(tls), l))
        });
        let server =
            tokio::spawn(Server::builder().serve_with_incoming_shutdown(Echo, incoming, signal));
        (addr, server)
    } else {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let incoming = futures_util::stream::unfold(tcp, move |l| {
            let tx = tx.clone();
            async move {
                let io = l.accept().await.map(|(s, _)| {
                    GracefulIo::new(s, close_options()).on_close(move |res| {
                        let _ = tx.send(outcome_of(res));
                    })
                });
                Some((io, l))
            }
        });
        let server =
            tokio::spawn(Server::builder().serve_with_incoming_shutdown(Echo, incoming, signal));
        (addr, server)
    };

    let endpoint = if tls {
        Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(cert_pem()))
                    .domain_name("localhost"),
            )
            .unwrap()
    } else {
        Endpoint::from_shared(format!("http://{addr}")).unwrap()
    };
    // The client's connections close gracefully too (the tower layer around tonic's
    // connector; under TLS tonic runs its handshake over them): a bare client socket
    // closed before the server's last frames were read would answer them with RST.
    let (client_tx, mut client_closes) = mpsc::unbounded_channel();
    let mut http = HttpConnector::new();
    http.enforce_http(false); // tonic hands it the https URI
    let connector =
        GracefulCloseLayer::new(CloseSettings::new(close_options()).on_close(move |res| {
            let _ = client_tx.send(outcome_of(res));
        }))
        .layer(http);
    let channel = tokio::time::timeout(T, endpoint.connect_with_connector(connector))
        .await
        .expect("connect hung")
        .expect("connect");
    let mut client = tonic::client::Grpc::new(channel);
    let seen = call(&mut client, "/test.Echo/Addr").await;
    let seen = String::from_utf8_lossy(&seen).into_owned();
    assert!(seen.starts_with("Some(127.0.0.1:"), "remote_addr: {seen}");
    let big = call(&mut client, "/test.Echo/Big").await;
    assert_eq!(big.len(), BIG);

    stop_tx.send(true).unwrap(); // GOAWAY; the server ends once the connection does
    tokio::time::timeout(T, server)
        .await
        .expect("graceful shutdown hung")
        .unwrap()
        .unwrap();
    let report = tokio::time::timeout(T, closes.recv())
        .await
        .expect("no close reported")
        .unwrap();
    println!(
        "tonic {}: remote_addr {seen}; close {report:?}",
        if tls { "over TLS" } else { "plain" }
    );
    let report = report.expect("the close confirmed delivery");
    assert!(report.acked() && report.peer_eof(), "{report:?}");
    drop(client);
    let client_report = tokio::time::timeout(T, client_closes.recv())
        .await
        .expect("no client close reported")
        .unwrap();
    println!("tonic client close {client_report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_over_graceful_io_plain() {
    grpc(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_over_graceful_io_tls() {
    grpc(true).await;
}
