//! The Engine API client: HTTP/1.1 over the daemon's unix socket, with the API version
//! negotiated through `HEAD /_ping` as the docker CLI does it.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncRead;
use tokio::net::UnixStream;

pub const DEFAULT_HOST: &str = "unix:///run/polis/polis.sock";
/// The newest API version this client speaks.
const CLIENT_API_VERSION: (u32, u32) = (1, 47);
/// What a daemon that announces no version speaks (docker's fallback).
const FALLBACK_API_VERSION: (u32, u32) = (1, 24);

pub type RequestBody = BoxBody<Bytes, std::io::Error>;

/// An error the daemon answered with (its HTTP status and message): printed as docker
/// prints it.
#[derive(Debug)]
pub struct DaemonError {
    pub status: StatusCode,
    pub message: String,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for DaemonError {}

#[derive(Clone)]
pub struct Client {
    host: String,
    socket: PathBuf,
    prefix: String,
}

/// The host from `-H`, else `POLIS_HOST`, else `DOCKER_HOST`, else the default socket.
pub fn resolve_host(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var("POLIS_HOST").ok().filter(|h| !h.is_empty()))
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_HOST.to_string())
}

pub fn empty() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A request body streamed (chunked) from a reader: a file or stdin.
pub fn streamed(reader: impl AsyncRead + Send + Sync + 'static) -> RequestBody {
    use futures_util::TryStreamExt;
    let stream = tokio_util::io::ReaderStream::new(reader).map_ok(Frame::data);
    BodyExt::boxed(StreamBody::new(stream))
}

/// Image names go into the path as docker sends them; anything else is escaped.
pub fn path_escape(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/@+".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

impl Client {
    /// Connects to `host` and negotiates the API version.
    pub async fn connect(host: &str) -> Result<Client> {
        let Some(path) = host.strip_prefix("unix://") else {
            bail!("unsupported host {host:?}: only unix:// sockets are supported");
        };
        let mut client = Client {
            host: host.to_string(),
            socket: PathBuf::from(path),
            prefix: String::new(),
        };
        let ping = client.send(Method::HEAD, "/_ping", empty(), None).await?;
        let version = ping
            .headers()
            .get("Api-Version")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_version)
            .unwrap_or(FALLBACK_API_VERSION)
            .min(CLIENT_API_VERSION);
        client.prefix = format!("/v{}.{}", version.0, version.1);
        Ok(client)
    }

    pub fn api_version(&self) -> &str {
        self.prefix.trim_start_matches("/v")
    }

    /// Sends one request; an error status becomes a [`DaemonError`] with the daemon's
    /// message.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>> {
        self.send_with(method, path, body, content_type, &[]).await
    }

    /// [`Client::send`] with extra request headers.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: RequestBody,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket).await.map_err(|_| {
            anyhow!(
                "Cannot connect to the Polis daemon at {}. Is the polis daemon running?",
                self.host
            )
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("connect to {}", self.host))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(hyper::header::HOST, "api.moby.localhost")
            .header(
                hyper::header::USER_AGENT,
                concat!("Polis-Client/", env!("CARGO_PKG_VERSION"), " (linux)"),
            );
        if let Some(ct) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, ct);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(body)
            .with_context(|| format!("request {path}"))?;
        let response = sender
            .send_request(request)
            .await
            .with_context(|| format!("request {path} from {}", self.host))?;
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            let body = response.into_body().collect().await?.to_bytes();
            let message = error_message(status, &body);
            return Err(DaemonError { status, message }.into());
        }
        Ok(response)
    }

    /// A whole response body.
    pub async fn bytes(&self, method: Method, path: &str) -> Result<Bytes> {
        let response = self.send(method, path, empty(), None).await?;
        Ok(response.into_body().collect().await?.to_bytes())
    }

    pub async fn json(&self, path: &str) -> Result<serde_json::Value> {
        let body = self.bytes(Method::GET, path).await?;
        serde_json::from_slice(&body).with_context(|| format!("decode the answer to {path}"))
    }

    /// A request with a JSON body (sent with its length, as docker does).
    pub async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Response<Incoming>> {
        let bytes = Bytes::from(serde_json::to_vec(body)?);
        let body = http_body_util::Full::new(bytes)
            .map_err(|never| match never {})
            .boxed();
        self.send(method, path, body, Some("application/json"))
            .await
    }

    /// A JSON request whose answer is JSON (`null` for an empty answer).
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let response = self.send_json(Method::POST, path, body).await?;
        let bytes = response.into_body().collect().await?.to_bytes();
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("decode the answer to {path}"))
    }

    /// `POST path` upgraded to a raw byte stream (attach, exec start): the request is
    /// written by hand so the connection is ours to half-close once the daemon has
    /// answered `101`.
    pub async fn hijack(&self, path: &str, body: Option<&serde_json::Value>) -> Result<UnixStream> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = UnixStream::connect(&self.socket).await.map_err(|_| {
            anyhow!(
                "Cannot connect to the Polis daemon at {}. Is the polis daemon running?",
                self.host
            )
        })?;
        let (content_type, payload) = match body {
            Some(b) => ("application/json", serde_json::to_vec(b)?),
            None => ("text/plain", Vec::new()),
        };
        let head = format!(
            "POST {}{path} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Polis-Client/{} (linux)\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.prefix,
            env!("CARGO_PKG_VERSION"),
            payload.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&payload).await?;
        // The answer's head, a byte at a time: what follows it is the stream.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await? == 0 {
                bail!("request {path}: the daemon closed the connection");
            }
            head.push(byte[0]);
            if head.len() > 64 * 1024 {
                bail!("request {path}: answer head too long");
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| anyhow!("request {path}: bad answer {head:?}"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS || status == StatusCode::OK {
            return Ok(stream);
        }
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let mut body = Vec::new();
        if let Some(n) = header("content-length").and_then(|n| n.parse::<usize>().ok()) {
            body.resize(n, 0);
            stream.read_exact(&mut body).await?;
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            let mut raw = Vec::new();
            let _ = stream.read_to_end(&mut raw).await;
            body = dechunk(&raw);
        }
        let message = error_message(status, &body);
        Err(DaemonError { status, message }.into())
    }
}

/// A response body as a reader (logs, export, archives).
pub fn body_reader(response: Response<Incoming>) -> impl AsyncRead + Unpin + Send {
    use futures_util::TryStreamExt;
    let stream = response
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    tokio_util::io::StreamReader::new(stream)
}

/// A chunked body's data.
fn dechunk(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        rest = &rest[i + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    out
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    if text.is_empty() {
        status.to_string()
    } else {
        text
    }
}

/// Prints a stream of JSON messages (import, load) as docker's `jsonmessage` does; an
/// `error` message ends it as a failure.
pub fn display_json_messages(body: &[u8], out: &mut impl std::io::Write) -> Result<()> {
    for message in serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>() {
        let message = message.context("decode the daemon's progress stream")?;
        if let Some(e) = message.get("error").and_then(|e| e.as_str()) {
            // A failure in mid-stream carries the exit code it wants (a build step's).
            if let Some(code) = message
                .pointer("/errorDetail/code")
                .and_then(|c| c.as_i64())
                .filter(|c| *c != 0)
            {
                return Err(super::StatusError {
                    code: code as i32,
                    message: e.to_string(),
                }
                .into());
            }
            bail!("{e}");
        }
        if let Some(s) = message.get("stream").and_then(|s| s.as_str()) {
            write!(out, "{s}")?;
        } else if let Some(s) = message.get("status").and_then(|s| s.as_str()) {
            match message.get("id").and_then(|i| i.as_str()) {
                Some(id) => writeln!(out, "{id}: {s}")?,
                None => writeln!(out, "{s}")?,
            }
        }
    }
    Ok(())
}
