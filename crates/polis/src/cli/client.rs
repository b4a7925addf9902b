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
