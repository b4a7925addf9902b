//! The registry endpoints: `POST /images/create?fromImage=` (pull) and
//! `POST /images/{name}/push` (push), with Docker's JSON progress stream, and `POST /auth` (`docker login`). Credentials come in Docker's
//! `X-Registry-Auth` header: base64url of `{"username","password","serveraddress"}`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use polis_image::{Credentials, Error as ImageError, Platform, PullProgress, Reference};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::images::image_error;
use crate::versioning::error;
use crate::AppState;

/// The JSON of `X-Registry-Auth` and of the `POST /auth` body.
#[derive(Debug, Default, Deserialize)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "serveraddress")]
    server_address: String,
}

impl AuthConfig {
    fn credentials(&self) -> Option<Credentials> {
        (!self.username.is_empty()).then(|| Credentials {
            username: self.username.clone(),
            password: self.password.clone(),
        })
    }
}

/// Decodes `X-Registry-Auth` (absent or `{}` means anonymous).
fn registry_auth(headers: &HeaderMap) -> Result<Option<Credentials>, Response> {
    let Some(value) = headers.get("x-registry-auth") else {
        return Ok(None);
    };
    let bad = |why: String| error(StatusCode::BAD_REQUEST, format!("X-Registry-Auth: {why}"));
    let text = value
        .to_str()
        .map_err(|e| bad(e.to_string()))?
        .trim()
        .trim_end_matches('=');
    if text.is_empty() {
        return Ok(None);
    }
    // Docker sends base64url; older clients sent standard base64.
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let cfg: AuthConfig =
        serde_json::from_slice(&raw).map_err(|e| bad(format!("not an auth config: {e}")))?;
    Ok(cfg.credentials())
}

/// `POST /images/create?fromImage=NAME&tag=TAG[&platform=P]`.
pub async fn pull(
    state: Arc<AppState>,
    from: String,
    tag: Option<String>,
    platform: Option<String>,
    headers: &HeaderMap,
) -> Response {
    let name = match tag.filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from,
    };
    let reference = match Reference::parse(&name) {
        Ok(r) => r,
        Err(e) => return image_error(e),
    };
    let platform = match platform.filter(|p| !p.is_empty()) {
        Some(p) => match Platform::parse(&p) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        },
        None => Platform::default(),
    };
    let credentials = match registry_auth(headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Message, ImageError>>();
    let store = state.images.clone();
    let rt = tokio::runtime::Handle::current();
    let watch = tx.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let events = tx.clone();
        let mut send = |p: PullProgress| {
            let _ = events.send(Ok(Message::Progress(p)));
        };
        // Layers are unpacked (and so checked) before the image is recorded, as Docker does.
        let pulled = polis_engine::layers::PullUnpacker::new(&state.layout)
            .map_err(|e| ImageError::Unpack(e.to_string()))
            .and_then(|unpacker| {
                store.pull(
                    &rt,
                    &reference,
                    credentials.as_ref(),
                    &platform,
                    &unpacker,
                    &mut send,
                )
            });
        match pulled {
            Ok(_) => crate::events::pulled(&state, &reference),
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    report_panic(worker, watch, "pull");
    progress_stream(rx).await
}

/// A worker that panicked ends its stream with an error message (the client would
/// otherwise see a stream that just stops, and exit 0).
fn report_panic(
    worker: tokio::task::JoinHandle<()>,
    tx: tokio::sync::mpsc::UnboundedSender<Result<Message, ImageError>>,
    what: &'static str,
) {
    tokio::spawn(async move {
        if let Err(e) = worker.await {
            tracing::error!(error = %e, "{what} worker failed");
            let _ = tx.send(Err(ImageError::Registry(format!(
                "{what} failed: internal error: {e}"
            ))));
        }
    });
}

/// Docker's JSON progress stream out of the messages of a pull or push. Until the first
/// message a failure is an HTTP error; after that it is a message in the stream, as Docker
/// does.
async fn progress_stream(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Result<Message, ImageError>>,
) -> Response {
    let first = match rx.recv().await {
        Some(Ok(p)) => p,
        Some(Err(e)) => return image_error(e),
        None => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the operation ended without a result",
            )
        }
    };
    let stream = futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        let item = match first {
            Some(p) => Ok(p),
            None => rx.recv().await?,
        };
        let msg = match item {
            Ok(Message::Progress(p)) => progress_json(&p),
            Ok(Message::Aux(v)) => json!({ "progressDetail": {}, "aux": v }),
            Err(e) => {
                let m = e.to_string();
                json!({ "errorDetail": { "message": m }, "error": m })
            }
        };
        let mut line = msg.to_string();
        line.push_str("\r\n");
        Some((Ok::<_, std::io::Error>(line), (None, rx)))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One message of a progress stream: a status line or a result (`aux`).
enum Message {
    Progress(PullProgress),
    Aux(Value),
}

/// `POST /images/{name}/push?tag=TAG`; without a tag, every tag of the repository.
pub async fn push(
    state: Arc<AppState>,
    name: String,
    tag: Option<String>,
    headers: &HeaderMap,
) -> Response {
    let name = match tag.filter(|t| !t.is_empty()) {
        Some(t) => format!("{name}:{t}"),
        None => name,
    };
    let reference = match Reference::parse_named(&name) {
        Ok(r) => r,
        Err(e) => return image_error(e),
    };
    let credentials = match registry_auth(headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Message, ImageError>>();
    let store = state.images.clone();
    let rt = tokio::runtime::Handle::current();
    let watch = tx.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let events = tx.clone();
        let mut send = |p: PullProgress| {
            let _ = events.send(Ok(Message::Progress(p)));
        };
        match store.push(&rt, &reference, credentials.as_ref(), &mut send) {
            Ok(pushed) => {
                for p in pushed {
                    crate::events::pushed(&state, &reference, &p.tag);
                    let aux =
                        json!({ "Tag": p.tag, "Digest": p.digest.to_string(), "Size": p.size });
                    let _ = tx.send(Ok(Message::Aux(aux)));
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        }
    });
    report_panic(worker, watch, "push");
    progress_stream(rx).await
}

/// One message of Docker's JSON progress stream.
fn progress_json(p: &PullProgress) -> Value {
    let mut m = json!({ "status": p.status });
    if let Some(id) = &p.id {
        m["id"] = json!(id);
        if p.progress.is_none() && !p.status.starts_with("Pulling from") {
            m["progressDetail"] = json!({});
        }
    }
    if let Some((current, total)) = p.progress {
        m["progressDetail"] = json!({ "current": current, "total": total });
        m["progress"] = json!(progress_bar(current, total));
    }
    m
}

/// Docker's `[=====>    ]  1.2MB/3.4MB`.
fn progress_bar(current: u64, total: u64) -> String {
    let width = 50u64;
    let filled = (current.min(total) * width).checked_div(total).unwrap_or(0);
    format!(
        "[{}>{}] {:>8}/{}",
        "=".repeat(filled as usize),
        " ".repeat((width - filled) as usize),
        human_size(current),
        human_size(total)
    )
}

/// go-units' `HumanSize`: decimal units, up to four significant digits.
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut size = bytes as f64;
    let mut i = 0;
    while size >= 1000.0 && i < units.len() - 1 {
        size /= 1000.0;
        i += 1;
    }
    let decimals = match size {
        s if s >= 1000.0 => 0,
        s if s >= 100.0 => 1,
        s if s >= 10.0 => 2,
        _ => 3,
    };
    let mut s = format!("{size:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}

/// `POST /auth`: `docker login` checks the credentials against the registry.
pub async fn auth(body: axum::body::Bytes) -> Response {
    let cfg: AuthConfig = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("auth config: {e}")),
    };
    let Some(creds) = cfg.credentials() else {
        return error(StatusCode::BAD_REQUEST, "auth config: username is empty");
    };
    let server = server_domain(&cfg.server_address);
    match polis_image::registry::login(&server, &creds).await {
        Ok(()) => Json(json!({ "Status": "Login Succeeded", "IdentityToken": "" })).into_response(),
        Err(e @ ImageError::Unauthorized(_)) => error(StatusCode::UNAUTHORIZED, e.to_string()),
        Err(e) => image_error(e),
    }
}

/// `https://127.0.0.1:5000/v2/` or `127.0.0.1:5000` → `127.0.0.1:5000`; empty is Docker Hub.
fn server_domain(address: &str) -> String {
    let s = address
        .strip_prefix("https://")
        .or_else(|| address.strip_prefix("http://"))
        .unwrap_or(address);
    let s = s.split('/').next().unwrap_or_default();
    if s.is_empty() || s == "index.docker.io" {
        polis_image::reference::DEFAULT_DOMAIN.to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bar_as_docker_draws_it() {
        assert_eq!(
            progress_bar(184, 184),
            "[==================================================>]     184B/184B"
        );
        assert_eq!(human_size(1_980_000), "1.98MB");
        assert_eq!(human_size(2_500), "2.5kB");
    }

    #[tokio::test]
    async fn a_panicking_worker_ends_its_stream_with_an_error() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Message, ImageError>>();
        let worker_tx = tx.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let _ = worker_tx.send(Ok(Message::Aux(json!({}))));
            panic!("worker bug");
        });
        report_panic(worker, tx, "pull");
        assert!(matches!(rx.recv().await, Some(Ok(Message::Aux(_)))));
        match rx.recv().await {
            Some(Err(e)) => assert!(
                e.to_string().starts_with("pull failed: internal error"),
                "{e}"
            ),
            other => panic!("no error after the panic: {:?}", other.map(|m| m.is_ok())),
        }
        assert!(rx.recv().await.is_none());
    }

    #[test]
    fn auth_header_decodes() {
        let mut h = HeaderMap::new();
        h.insert("x-registry-auth", "e30=".parse().unwrap());
        assert!(registry_auth(&h).unwrap().is_none());
        let enc = base64::engine::general_purpose::URL_SAFE
            .encode(r#"{"username":"u","password":"p","serveraddress":"127.0.0.1:5000"}"#);
        h.insert("x-registry-auth", enc.parse().unwrap());
        let c = registry_auth(&h).unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        assert_eq!(server_domain("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(server_domain("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
