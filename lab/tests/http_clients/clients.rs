//! The clients: real programs (curl, Python requests, Node fetch, Node `http.request`,
//! Go net/http, headless Chromium) run as processes, and a blocking Rust client that
//! sends its whole request before it reads.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use crate::example::{self, Outcome};
use crate::lab::{Lab, Side};
use crate::servers::Transport;

/// The longest a single upload may take before it counts as failed.
const UPLOAD_LIMIT: Duration = Duration::from_secs(40);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Curl,
    Python,
    Node,
    /// Node's `http.request` on the default agent, which keeps connections alive and
    /// reuses them.
    NodeHttp,
    Go,
    Chromium,
    SendAll,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::Curl => "curl",
            Client::Python => "Python requests",
            Client::Node => "Node fetch",
            Client::NodeHttp => "Node http.request",
            Client::Go => "Go net/http",
            Client::Chromium => "headless Chromium fetch",
            Client::SendAll => "Rust, sends all then reads",
        }
    }

    /// Python requests, Node's fetch (undici) and `http.request` and the Rust client
    /// speak HTTP/1.1 only: the h2 cell would repeat their TLS HTTP/1.1 cell.
    pub fn speaks(self, transport: Transport) -> bool {
        transport != Transport::TlsH2
            || matches!(self, Client::Curl | Client::Go | Client::Chromium)
    }
}

/// Where the test's files go: the scripts' outputs, the upload bodies, the Go build.
pub fn work_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("http_clients");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

/// The clients' scripts, next to this file.
fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/http_clients/clients")
}

/// A client ready to run: what `prepare` found or built.
pub struct Ready {
    client: Client,
    /// The Go client, built.
    go_bin: Option<PathBuf>,
}

/// Checks that `client` can run here (and builds the Go client). When it cannot:
/// prints `SKIP` and returns `None`, or panics under `CI=true`.
pub fn prepare(client: Client) -> Option<Ready> {
    let missing = match client {
        Client::Curl => works("curl", &["--version"]).err(),
        Client::Python => works("python3", &["-c", "import requests"]).err(),
        Client::Node => works("node", &["-e", "fetch"]).err(),
        Client::NodeHttp => works("node", &["-e", "require('node:http').request"]).err(),
        Client::Go => works("go", &["version"]).err(),
        Client::Chromium => works(chromium_path(), &["--version"])
            .and_then(|()| {
                let script = "require.resolve('playwright-core')";
                works("node", &["-e", script]).map_err(|e| {
                    format!(
                        "{e} (playwright-core: `npm install` in lab/tests/http_clients/clients)"
                    )
                })
            })
            .err(),
        Client::SendAll => None,
    };
    if let Some(why) = missing {
        let msg = format!("{}: {why}", client.name());
        if crate::lab::in_ci() {
            panic!("{msg}; under CI=true every client must run (.ci/run installs them)");
        }
        eprintln!("SKIP: {msg}");
        return None;
    }
    let go_bin = (client == Client::Go).then(build_go);
    Some(Ready { client, go_bin })
}

fn chromium_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
}

/// Whether `cmd args` runs and exits 0.
fn works(cmd: &str, args: &[&str]) -> Result<(), String> {
    let status = std::process::Command::new(cmd)
        .args(args)
        .current_dir(scripts())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("`{cmd} {}` failed ({s})", args.join(" "))),
        Err(e) => Err(format!("`{cmd}` cannot run ({e})")),
    }
}

/// Builds the Go client with the standard library only, caches under the target dir.
fn build_go() -> PathBuf {
    let dir = work_dir().join("go");
    let bin = dir.join("upload");
    let out = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(scripts().join("upload.go"))
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("path"))
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// The server a cell's client talks to.
pub struct Target<'a> {
    pub addr: std::net::SocketAddr,
    /// `http://host:port` or `https://host:port`.
    pub origin: String,
    /// The CA file for TLS.
    pub ca: Option<PathBuf>,
    /// The Rust client's TLS config.
    pub tls: Option<Arc<ClientConfig>>,
    /// Ask curl for h2 (the others take what ALPN gives).
    pub h2: bool,
    /// Run the client on side B of this lab.
    pub lab: Option<&'a Lab>,
    pub upload_len: usize,
}

/// Runs the client `runs` times, one upload after the other: each run's outcome and
/// the protocol the client reported (empty if it reports none).
pub async fn run(ready: &Ready, target: &Target<'_>, runs: usize) -> Vec<(Outcome, String)> {
    let dir = work_dir().join(format!("{:?}-{}", ready.client, target.addr.port()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let body = work_dir().join(format!("upload-{}", target.upload_len));
    if !body.exists() {
        std::fs::write(&body, vec![b'u'; target.upload_len]).unwrap();
    }
    let url = format!("{}/upload", target.origin);
    let runs_s = runs.to_string();
    let (dir_s, body_s) = (dir.display().to_string(), body.display().to_string());
    let ca = target.ca.as_ref().map(|p| p.display().to_string());
    let got = match ready.client {
        Client::SendAll => {
            return tokio::task::block_in_place(|| {
                (0..runs)
                    .map(|_| (send_all_then_read(target), String::new()))
                    .collect()
            })
        }
        Client::Curl => {
            let mut lines = String::new();
            for i in 0..runs {
                let mut args = vec!["-sS", "--max-time", "30", "-H", "Expect:"];
                args.push(if target.h2 { "--http2" } else { "--http1.1" });
                if let Some(ca) = &ca {
                    args.extend(["--cacert", ca]);
                }
                let out = format!("{dir_s}/{i}");
                let data = format!("@{body_s}");
                args.extend(["-o", &out, "-w", "%{http_code} HTTP/%{http_version}"]);
                args.extend(["--data-binary", &data, &url]);
                let (stdout, stderr) = spawn(target.lab, "curl", &args, &[]).await;
                let line = if stdout.trim().is_empty() || stdout.starts_with("000") {
                    format!("{i} ERR {}", stderr.trim())
                } else {
                    format!("{i} {}", stdout.trim())
                };
                lines.push_str(&line);
                lines.push('\n');
            }
            lines
        }
        Client::Python => {
            let script = scripts().join("upload.py").display().to_string();
            let mut args = vec![script.as_str(), &url, &body_s, &dir_s, &runs_s];
            args.extend(ca.as_deref());
            spawn(target.lab, "python3", &args, &[]).await.0
        }
        Client::Node | Client::NodeHttp => {
            let script = match ready.client {
                Client::Node => "upload.mjs",
                _ => "upload_http.mjs",
            };
            let script = scripts().join(script).display().to_string();
            let args = [script.as_str(), &url, &body_s, &dir_s, &runs_s];
            let env: Vec<_> = ca
                .iter()
                .map(|ca| ("NODE_EXTRA_CA_CERTS", ca.as_str()))
                .collect();
            spawn(target.lab, "node", &args, &env).await.0
        }
        Client::Go => {
            let bin = ready.go_bin.as_ref().unwrap().display().to_string();
            let mut args = vec![url.as_str(), &body_s, &dir_s, &runs_s];
            args.extend(ca.as_deref());
            spawn(target.lab, &bin, &args, &[]).await.0
        }
        Client::Chromium => {
            let script = scripts().join("chromium.mjs").display().to_string();
            let len = target.upload_len.to_string();
            let args = [script.as_str(), &target.origin, &dir_s, &runs_s, &len];
            let env = [("CHROMIUM", chromium_path())];
            spawn(target.lab, "node", &args, &env).await.0
        }
    };
    (0..runs).map(|i| judge_line(&got, &dir, i)).collect()
}

/// Runs `cmd args` (on side B of `lab`, if any) with every upload's limit: stdout and
/// stderr.
async fn spawn(
    lab: Option<&Lab>,
    cmd: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (String, String) {
    let mut command = match lab {
        Some(lab) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", lab.ns(Side::B), cmd]);
            c
        }
        None => tokio::process::Command::new(cmd),
    };
    command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(scripts())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let limit = UPLOAD_LIMIT * 10;
    match tokio::time::timeout(limit, command.output()).await {
        Ok(Ok(out)) => (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Ok(Err(e)) => (String::new(), format!("cannot run {cmd}: {e}")),
        Err(_) => (String::new(), format!("{cmd} timed out after {limit:?}")),
    }
}

/// Judges run `i` from the client's lines (`<run> <status> [protocol ...]` or
/// `<run> ERR <what>`) and the body it wrote to `dir/<run>`.
fn judge_line(lines: &str, dir: &Path, i: usize) -> (Outcome, String) {
    let prefix = format!("{i} ");
    let Some(line) = lines.lines().find(|l| l.starts_with(&prefix)) else {
        let tail: String = lines.lines().last().unwrap_or("no output").into();
        return (
            Outcome::Failed(format!("no result ({tail})")),
            String::new(),
        );
    };
    let mut words = line[prefix.len()..].split_whitespace();
    let status = words.next().unwrap_or("");
    if status == "ERR" {
        return (
            Outcome::Failed(line[prefix.len() + 4..].into()),
            String::new(),
        );
    }
    let proto = words.find(|w| w.starts_with("HTTP") || *w == "h2" || w.starts_with("http/"));
    let body = std::fs::read(dir.join(i.to_string())).unwrap_or_default();
    let status = status.parse().unwrap_or(0);
    (
        example::judge(status, &body),
        proto.unwrap_or("").to_string(),
    )
}

/// The deterministic reproduction: a blocking client that writes its whole request
/// (head and body) and only then reads the answer to EOF, as Python's `http.client`
/// and Chromium over HTTP/1.1 do.
pub fn send_all_then_read(target: &Target<'_>) -> Outcome {
    match try_send_all_then_read(target) {
        Ok(o) => o,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn try_send_all_then_read(target: &Target<'_>) -> io::Result<Outcome> {
    let addr = target.addr;
    let tcp = match target.lab {
        Some(lab) => lab.run_in(Side::B, || std::net::TcpStream::connect(addr))?,
        None => std::net::TcpStream::connect(addr)?,
    };
    tcp.set_read_timeout(Some(UPLOAD_LIMIT))?;
    tcp.set_write_timeout(Some(UPLOAD_LIMIT))?;
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\n\r\n",
        target.upload_len
    );
    let body = vec![b'u'; target.upload_len];
    let mut answer = Vec::new();
    match &target.tls {
        Some(config) => {
            let name = ServerName::try_from(addr.ip().to_string()).map_err(io::Error::other)?;
            let conn =
                rustls::ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(head.as_bytes())?;
            tls.write_all(&body)?;
            tls.flush()?;
            // A server that closes without close_notify ends in UnexpectedEof: what
            // came before is still judged, byte for byte.
            match tls.read_to_end(&mut answer) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(e),
            }
        }
        None => {
            let mut tcp = tcp;
            tcp.write_all(head.as_bytes())?;
            tcp.write_all(&body)?;
            tcp.read_to_end(&mut answer)?;
        }
    }
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(Outcome::Failed(format!(
            "{} bytes, no complete head",
            answer.len()
        )));
    };
    let head = String::from_utf8_lossy(&answer[..end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(example::judge(status, &answer[end + 4..]))
}
