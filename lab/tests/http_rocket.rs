//! Rocket 0.5 offers no way to wrap its connections, so the crate documents a
//! workaround: read and discard the upload before an early answer
//! (`data.open(limit).stream_to(tokio::io::sink())`), so that the close finds no unread
//! input and sends no RST under the answer. This checks it with the clients of
//! `example::client_tests!` (curl, Python requests, Node `http.request`, Go net/http,
//! the blocking Rust client that sends all before it reads): a 256 KiB 413 to a 10 MB
//! upload, 5 runs each. The workaround is asserted whole in every run; Rocket answering
//! at once without it is the control, printed beside. A client not installed: `SKIP`
//! (a failure under `CI=true`).
#![cfg(target_os = "linux")]

#[path = "http_clients/clients.rs"]
#[allow(dead_code, unreachable_pub)]
mod clients;
#[path = "support/early413.rs"]
mod example;
#[path = "../../tests/support/lab.rs"]
mod lab;
mod servers {
    pub use crate::example::Transport;
}

use rocket::data::{Data, ToByteUnit};
use rocket::http::{Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{Build, Rocket, State};

use example::{Served, Transport};

/// The request's `Content-Length`, as sent.
struct ContentLength(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ContentLength {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let len = req.headers().get_one("content-length").map(str::to_owned);
        Outcome::Success(ContentLength(len))
    }
}

/// The early answer: 413, its body, and with the workaround `Connection: close`, so
/// that the connection ends with it (a client that reads to the end sees its EOF).
#[derive(rocket::Responder)]
#[response(status = 413)]
struct TooLarge {
    body: &'static [u8],
    /// `Connection: close` with the workaround; a header that changes nothing without.
    connection: Header<'static>,
}

/// Whether the app reads and discards an upload before its early answer.
struct Workaround(bool);

#[rocket::post("/upload", data = "<data>")]
async fn upload(
    len: ContentLength,
    data: Data<'_>,
    workaround: &State<Workaround>,
) -> Result<(Status, &'static [u8]), TooLarge> {
    if example::too_large(len.0.as_deref()) {
        let mut connection = Header::new("x-workaround", "off");
        if workaround.0 {
            // The workaround: the upload read to its end (bounded) before the answer,
            // which says the connection ends.
            let _ = data.open(64.mebibytes()).stream_to(tokio::io::sink()).await;
            connection = Header::new("connection", "close");
        }
        return Err(TooLarge {
            body: example::error_body(),
            connection,
        });
    }
    match data.open(64.mebibytes()).into_bytes().await {
        Ok(_) => Ok((Status::Ok, b"stored\n")),
        Err(_) => Ok((Status::BadRequest, b"")),
    }
}

fn app(port: u16, workaround: bool) -> Rocket<Build> {
    let mut config = rocket::Config::debug_default();
    config.address = std::net::Ipv4Addr::LOCALHOST.into();
    config.port = port;
    config.log_level = rocket::config::LogLevel::Off;
    config.shutdown.ctrlc = false;
    rocket::custom(config)
        .manage(Workaround(workaround))
        .mount("/", rocket::routes![upload])
}

/// Rocket on a free port of loopback, with the workaround if `workaround`.
async fn start(_transport: Transport, workaround: bool) -> Served {
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let rocket = app(addr.port(), workaround).ignite().await.unwrap();
    let shutdown = rocket.shutdown();
    tokio::spawn(rocket.launch());
    example::wait_until_listening(addr).await;
    Served {
        addr,
        stop: Box::new(move || shutdown.notify()),
    }
}

/// Rocket serves plain HTTP here: the workaround does not depend on TLS.
const TRANSPORTS: &[Transport] = &[Transport::Plain];

// "graceful" in the printout is the workaround; "plain" Rocket answering at once.
example::client_tests!("Rocket 0.5", TRANSPORTS, start);
