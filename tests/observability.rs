//! What an operator sees: one event per connection, from one target, with the peer's
//! address and an outcome a person can act on, at a level that says whether it needs
//! attention. Checked with a recording `tracing` subscriber installed for this test
//! binary (one test, so the global subscriber is ours alone).
#![cfg(target_os = "linux")]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_graceful_close::{AsyncGracefulClose, CloseOptions, GracefulIo};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

const T: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Seen {
    target: String,
    level: Level,
    fields: String,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut f = Fields(String::new());
        e.record(&mut f);
        self.0.lock().unwrap().push(Seen {
            target: e.metadata().target().to_owned(),
            level: *e.metadata().level(),
            fields: f.0,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

async fn accept(l: &TcpListener) -> (TcpStream, SocketAddr) {
    timeout(T, l.accept()).await.unwrap().unwrap()
}

#[test]
fn one_event_per_connection_with_the_peer_and_a_level_that_means_something() {
    let rec = Recorder::default();
    tracing::subscriber::set_global_default(rec.clone()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (delivered_peer, reset_peer) = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();

        // 1. Delivered: the client reads the answer and closes.
        let mut c1 = TcpStream::connect(addr).await.unwrap();
        let (s1, p1) = accept(&l).await;
        let mut io = GracefulIo::new(s1, CloseOptions::new(T));
        io.write_all(b"hello").await.unwrap();
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        c1.read_to_end(&mut got).await.unwrap();
        drop(c1);
        drop(io);

        // 2. Not delivered: the client resets with most of the answer unread.
        let c2 = TcpStream::connect(addr).await.unwrap();
        let (s2, p2) = accept(&l).await;
        let mut io = GracefulIo::new(s2, CloseOptions::new(T));
        let _ = timeout(
            Duration::from_millis(300),
            io.write_all(&vec![0u8; 8 << 20]),
        )
        .await;
        c2.abort().unwrap();
        let _ = timeout(T, io.shutdown()).await.unwrap();
        drop(io);

        tokio::time::sleep(Duration::from_millis(300)).await; // the background close
        (p1, p2)
    });
    drop(rt);
    let seen = rec.0.lock().unwrap().clone();
    let ours: Vec<_> = seen
        .iter()
        .filter(|s| s.target.starts_with("tokio_graceful_close"))
        .collect();
    for s in &ours {
        println!("{:5} {} {}", s.level, s.target, s.fields);
    }
    assert_eq!(ours.len(), 2, "one event per connection: {ours:?}");
    assert!(
        ours.iter().all(|s| s.target == "tokio_graceful_close"),
        "{ours:?}"
    );
    let delivered = ours
        .iter()
        .find(|s| s.fields.contains(&format!("peer={delivered_peer}")))
        .expect("the delivered connection's event names its peer");
    assert_eq!(delivered.level, Level::DEBUG, "{delivered:?}");
    assert!(
        delivered.fields.contains("everything delivered"),
        "{delivered:?}"
    );
    let reset = ours
        .iter()
        .find(|s| s.fields.contains(&format!("peer={reset_peer}")))
        .expect("the reset connection's event names its peer");
    assert_eq!(reset.level, Level::INFO, "visible at info: {reset:?}");
    assert!(reset.fields.contains("not confirmed"), "{reset:?}");
    assert!(reset.fields.contains("reset"), "{reset:?}");
}
