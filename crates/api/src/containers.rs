//! The container endpoints: create, start, attach (a hijacked connection), wait, kill,
//! stop, remove, list, inspect and logs. Each container's shim does the work; the
//! engine's blocking calls run on the blocking pool.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use polis_engine::containers::{self, Container, ContainerSpec};
use polis_engine::hostconfig::HostConfig;
use polis_engine::Error as EngineError;
use polis_shim::protocol::{Request as ShimRequest, SignalArg};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::versioning::error;
use crate::AppState;

pub fn engine_error(e: EngineError) -> Response {
    let status = match &e {
        EngineError::NotFound(_) | EngineError::FileNotFound { .. } => StatusCode::NOT_FOUND,
        EngineError::Conflict(_) => StatusCode::CONFLICT,
        EngineError::InvalidInput(_) => StatusCode::BAD_REQUEST,
        EngineError::Image(polis_image::Error::ImageNotFound(_)) => StatusCode::NOT_FOUND,
        EngineError::Image(polis_image::Error::InvalidReference(_)) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(engine_error),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

pub(crate) fn find(state: &AppState, key: &str) -> Result<Container, Response> {
    state.metadata.find(key).map_err(engine_error)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    image: String,
    cmd: Option<Vec<String>>,
    entrypoint: Option<serde_json::Value>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    hostname: Option<String>,
    tty: bool,
    open_stdin: bool,
    labels: Option<std::collections::BTreeMap<String, String>>,
    stop_signal: Option<String>,
    stop_timeout: Option<i64>,
    host_config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Everything else the client sent: checked, so nothing asked for is ignored.
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// Whether a JSON value is the client's "not set": null, false, 0, "", [] or {}.
fn unset(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// The first create option this daemon cannot honour yet, named as Docker's API names
/// it: such a request is refused rather than run without what it asked for.
fn unsupported_option(
    host: &serde_json::Map<String, serde_json::Value>,
    rest: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    // Fields of the create body that carry no setting, or that Polis applies.
    const HANDLED: [&str; 5] = [
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "StdinOnce",
        "NetworkDisabled",
    ];
    for (k, v) in rest {
        if HANDLED.contains(&k.as_str()) || unset(v) {
            continue;
        }
        if k == "NetworkingConfig" {
            let plain = v["EndpointsConfig"].as_object().is_none_or(|eps| {
                eps.values()
                    .all(|ep| ep.as_object().is_none_or(|o| o.values().all(unset)))
            });
            if plain {
                continue;
            }
        }
        return Some(k.clone());
    }
    for (k, v) in host {
        if unset(v) {
            continue;
        }
        let accepted = match k.as_str() {
            "AutoRemove" | "ConsoleSize" => true,
            // A private network namespace with only lo, until networks exist.
            "NetworkMode" => matches!(v.as_str(), Some("default" | "bridge" | "none")),
            "RestartPolicy" => {
                matches!(v["Name"].as_str(), None | Some("" | "no"))
                    && unset(&v["MaximumRetryCount"])
            }
            "LogConfig" => {
                matches!(v["Type"].as_str(), None | Some("" | "json-file")) && unset(&v["Config"])
            }
            "MemorySwappiness" => v.as_i64() == Some(-1),
            "IpcMode" => matches!(v.as_str(), Some("private" | "shareable")),
            _ => false,
        };
        if !accepted {
            return Some(format!("HostConfig.{k}"));
        }
    }
    None
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let body: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON in request body: {e}"),
            )
        }
    };
    if body.image.is_empty() {
        return error(StatusCode::BAD_REQUEST, "config error: no image given");
    }
    let host = body.host_config.unwrap_or_default();
    if let Some(option) = unsupported_option(&host, &body.rest) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{option} is not supported by this daemon yet"),
        );
    }
    let host_config: HostConfig = match serde_json::from_value(host.clone().into()) {
        Ok(h) => h,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("HostConfig: {e}")),
    };
    let entrypoint = match body.entrypoint {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(vec![s]),
        Some(v) => match serde_json::from_value(v) {
            Ok(list) => Some(list),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("Entrypoint: {e}")),
        },
    };
    let spec = ContainerSpec {
        image: body.image,
        cmd: body.cmd.filter(|c| !c.is_empty()),
        entrypoint,
        env: body.env.unwrap_or_default(),
        working_dir: body.working_dir.filter(|w| !w.is_empty()),
        user: body.user.filter(|u| !u.is_empty()),
        hostname: body.hostname.filter(|h| !h.is_empty()),
        tty: body.tty,
        open_stdin: body.open_stdin,
        labels: body.labels.unwrap_or_default(),
        stop_signal: body.stop_signal.filter(|s| !s.is_empty()),
        stop_timeout: body.stop_timeout,
        host: host_config,
    };
    let name = q.get("name").filter(|n| !n.is_empty()).cloned();
    let st = state.clone();
    match blocking(move || {
        containers::create(&st.layout, &st.metadata, &st.images, name.as_deref(), spec)
    })
    .await
    {
        Ok(c) => (
            StatusCode::CREATED,
            Json(json!({ "Id": c.id, "Warnings": [] })),
        )
            .into_response(),
        Err(r) => r,
    }
}

/// The container named in the path, with its live state from its shim.
pub(crate) async fn find_live(
    state: &Arc<AppState>,
    key: &str,
) -> Result<(Container, polis_shim::protocol::ContainerState), Response> {
    let c = find(state, key)?;
    let (st, id) = (state.clone(), c.id.clone());
    let live = blocking(move || Ok(containers::state(&st.layout, &id))).await?;
    Ok((c, live))
}

/// One shim request for the container named in the path.
async fn shim_call(
    state: &Arc<AppState>,
    key: &str,
    request: ShimRequest,
) -> Result<(Container, polis_shim::protocol::Response), Response> {
    let c = find(state, key)?;
    let st = state.clone();
    let id = c.id.clone();
    let resp = blocking(move || containers::call(&st.layout, &id, &request)).await?;
    Ok((c, resp))
}

pub async fn start(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    let (c, current) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if current.status == "running" {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    if current.status != "created" {
        // Exited before: a new runtime container on the same rootfs, as Docker restarts.
        let (st, again) = (state.clone(), c.clone());
        if let Err(r) = blocking(move || containers::recreate(&st.layout, &again)).await {
            return r;
        }
    }
    if let Err(r) = shim_call(&state, &c.id, ShimRequest::Start).await {
        return r;
    }
    let mut started = c.clone();
    started.started_at = Some(polis_runtime::state::now_rfc3339());
    let _ = state.metadata.save_container(&started);
    if c.spec.host.auto_remove {
        watch_auto_remove(state.clone(), c);
    }
    StatusCode::NO_CONTENT.into_response()
}

/// --rm: once the container has exited, the engine removes it.
pub fn watch_auto_remove(state: Arc<AppState>, c: Container) {
    tokio::spawn(async move {
        let id = c.id.clone();
        let (st, wait_id) = (state.clone(), id.clone());
        let _ = blocking(move || containers::call(&st.layout, &wait_id, &ShimRequest::Wait)).await;
        let st = state.clone();
        let _ = blocking(move || containers::remove(&st.layout, &st.metadata, &c, true)).await;
        crate::exec::forget_container(&state, &id);
    });
}

/// After a daemon restart: re-arm --rm for running containers, and remove those that
/// exited while no daemon watched.
pub fn resume_auto_remove(state: &Arc<AppState>) {
    let Ok(all) = state.metadata.containers() else {
        return;
    };
    for c in all
        .into_iter()
        .filter(|c| c.spec.host.auto_remove && c.started_at.is_some())
    {
        watch_auto_remove(state.clone(), c);
    }
}

/// `POST /containers/{id}/wait`: headers at once, the status once the condition holds.
pub async fn wait(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let condition = q
        .get("condition")
        .cloned()
        .unwrap_or_else(|| "not-running".into());
    let st = state.clone();
    let stream = async_stream_once(async move {
        let id = c.id.clone();
        let s2 = st.clone();
        let exit = blocking(move || containers::call(&s2.layout, &id, &ShimRequest::Wait)).await;
        let code = match exit {
            Ok(resp) => resp.exit.map(|e| e.exit_code).unwrap_or(0),
            // The shim is gone: the exit record says how it ended.
            Err(_) => containers::state(&st.layout, &c.id)
                .exit
                .map(|e| e.exit_code)
                .unwrap_or(0),
        };
        if condition == "removed" {
            while st.metadata.find(&c.id).is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        format!("{}\n", json!({ "StatusCode": code, "Error": null }))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

/// A body of one chunk, produced when `fut` completes.
fn async_stream_once(
    fut: impl std::future::Future<Output = String> + Send + 'static,
) -> impl futures_util::Stream<Item = Result<String, std::io::Error>> + Send {
    futures_util::stream::once(async move { Ok(fut.await) })
}

pub async fn kill(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let signal = q.get("signal").cloned().unwrap_or_else(|| "KILL".into());
    let (c, s) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if !matches!(s.status.as_str(), "running" | "paused") {
        return error(
            StatusCode::CONFLICT,
            format!(
                "Cannot kill container: {key}: Container {} is not running",
                c.id
            ),
        );
    }
    let signal = match signal.parse::<i32>() {
        Ok(n) => SignalArg::Number(n),
        Err(_) => SignalArg::Name(signal),
    };
    match shim_call(&state, &c.id, ShimRequest::Kill { signal, all: false }).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

pub async fn stop(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (c, s) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if !matches!(s.status.as_str(), "running" | "paused") {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    // The request's timeout, else the container's --stop-timeout, else 10 s; a
    // negative one waits for ever, as Docker's.
    let timeout: i64 = q
        .get("t")
        .and_then(|t| t.parse().ok())
        .or(c.spec.stop_timeout)
        .unwrap_or(10);
    let signal = q
        .get("signal")
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| c.spec.stop_signal.clone())
        .unwrap_or_else(|| "TERM".into());
    let term = ShimRequest::Kill {
        signal: match signal.parse::<i32>() {
            Ok(n) => SignalArg::Number(n),
            Err(_) => SignalArg::Name(signal),
        },
        all: false,
    };
    if let Err(r) = shim_call(&state, &c.id, term).await {
        return r;
    }
    let (st, id) = (state.clone(), c.id.clone());
    let waited = tokio::time::timeout(
        Duration::from_secs(u64::try_from(timeout).unwrap_or(u64::MAX / 2)),
        blocking(move || containers::call(&st.layout, &id, &ShimRequest::Wait)),
    )
    .await;
    if waited.is_err() {
        let kill = ShimRequest::Kill {
            signal: SignalArg::Name("KILL".into()),
            all: true,
        };
        if let Err(r) = shim_call(&state, &c.id, kill).await {
            return r;
        }
        let (st, id) = (state.clone(), c.id.clone());
        let _ = blocking(move || containers::call(&st.layout, &id, &ShimRequest::Wait)).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `pause` and `unpause`: the shim freezes or thaws the container's cgroup.
pub async fn pause(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    freeze(state, key, true).await
}

pub async fn unpause(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    freeze(state, key, false).await
}

async fn freeze(state: Arc<AppState>, key: String, pause: bool) -> Response {
    let (c, s) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let (wanted, verb) = if pause {
        ("running", "pause")
    } else {
        ("paused", "unpause")
    };
    if s.status != wanted {
        let why = if pause && s.status == "paused" {
            format!("Container {} is already paused", c.id)
        } else if pause {
            format!("Container {} is not running", c.id)
        } else {
            format!("Container {} is not paused", c.id)
        };
        return error(
            StatusCode::CONFLICT,
            format!("Cannot {verb} container: {why}"),
        );
    }
    let request = if pause {
        ShimRequest::Pause
    } else {
        ShimRequest::Resume
    };
    match shim_call(&state, &c.id, request).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

/// `POST /containers/{id}/resize?h=&w=`: the container's terminal size.
pub async fn resize(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (Some(h), Some(w)) = (
        q.get("h").and_then(|v| v.parse::<u16>().ok()),
        q.get("w").and_then(|v| v.parse::<u16>().ok()),
    ) else {
        return error(StatusCode::BAD_REQUEST, "resize needs numeric h and w");
    };
    let (c, s) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if s.status != "running" {
        return error(
            StatusCode::CONFLICT,
            format!("Container {} is not running", c.id),
        );
    }
    let request = ShimRequest::Resize {
        height: h,
        width: w,
        exec: None,
    };
    match shim_call(&state, &c.id, request).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(r) => r,
    }
}

/// `POST /containers/{id}/restart?t=`: stop (as `stop`), then start.
pub async fn restart(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    q: Query<HashMap<String, String>>,
) -> Response {
    let stopped = stop(State(state.clone()), Path(key.clone()), q).await;
    if !stopped.status().is_success() && stopped.status() != StatusCode::NOT_MODIFIED {
        return stopped;
    }
    let started = start(State(state), Path(key)).await;
    if started.status() == StatusCode::NOT_MODIFIED {
        return StatusCode::NO_CONTENT.into_response();
    }
    started
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let force = matches!(q.get("force").map(String::as_str), Some("1" | "true"));
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let st = state.clone();
    let id = c.id.clone();
    match blocking(move || containers::remove(&st.layout, &st.metadata, &c, force)).await {
        Ok(()) => {
            crate::exec::forget_container(&state, &id);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

pub(crate) fn docker_status(s: &polis_shim::protocol::ContainerState) -> (&'static str, i32) {
    let code = s.exit.as_ref().map(|e| e.exit_code).unwrap_or(0);
    match s.status.as_str() {
        "running" => ("running", 0),
        "paused" => ("paused", 0),
        "created" => ("created", 0),
        _ => ("exited", code),
    }
}

pub async fn inspect(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    let (c, s) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    let (status, code) = docker_status(&s);
    Json(json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "Name": format!("/{}", c.name),
        "Image": c.image_id,
        "State": {
            "Status": status,
            "Running": status == "running" || status == "paused",
            "Paused": status == "paused",
            "Pid": s.pid,
            "ExitCode": code,
            "StartedAt": c.started_at.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
            "FinishedAt": s.exit.as_ref().map(|e| e.finished_at.clone()).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        },
        "LogPath": state.layout.log_path(&c.id),
        "Config": {
            "Hostname": c.spec.hostname.clone().unwrap_or_else(|| c.id[..12].to_string()),
            "Image": c.spec.image,
            "Cmd": c.spec.cmd,
            "Entrypoint": c.spec.entrypoint,
            "Env": c.spec.env,
            "WorkingDir": c.spec.working_dir.clone().unwrap_or_default(),
            "User": c.spec.user.clone().unwrap_or_default(),
            "Tty": c.spec.tty,
            "OpenStdin": c.spec.open_stdin,
            "Labels": c.spec.labels,
        },
        "HostConfig": c.spec.host,
    }))
    .into_response()
}

/// `POST /containers/{id}/attach`: the connection becomes a raw byte stream joined to
/// the shim's attach stream (Docker's framing without a terminal, raw with one).
pub async fn attach(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    mut req: Request,
) -> Response {
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let flag = |k: &str| matches!(q.get(k).map(String::as_str), Some("1" | "true"));
    let request = ShimRequest::Attach {
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr"),
        stdin_once: flag("stdin"),
    };
    let socket = state.layout.shim_dir(&c.id).join(polis_shim::SOCKET);
    // Join the shim before answering, so a failure is still an HTTP error.
    let mut shim = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::CONFLICT,
                format!("container {} is not attachable: {e}", c.id),
            )
        }
    };
    let mut line = serde_json::to_vec(&request).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = shim.write_all(&line).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("attach: {e}"));
    }
    let reply = match read_reply(&mut shim).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("attach: {e}")),
    };
    if !reply.ok {
        return error(
            StatusCode::CONFLICT,
            reply.error.unwrap_or_else(|| "attach refused".into()),
        );
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let client = hyper_util::rt::TokioIo::new(upgraded);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let (mut shim_read, mut shim_write) = shim.into_split();
        let to_client = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = shim_read.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                client_write.write_all(&buf[..n]).await?;
                client_write.flush().await?;
            }
            client_write.shutdown().await
        };
        let to_shim = async {
            let _ = tokio::io::copy(&mut client_read, &mut shim_write).await;
            // The client's half-close is the container's end of input.
            shim_write.shutdown().await
        };
        let _ = tokio::join!(to_client, to_shim);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONTENT_TYPE, "application/vnd.docker.raw-stream")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .unwrap_or_default()
}

/// The shim's one-line JSON reply, read a byte at a time: what follows it on the
/// connection is the stream, and must not be swallowed by a read-ahead buffer.
pub async fn read_reply(
    shim: &mut tokio::net::UnixStream,
) -> std::io::Result<polis_shim::protocol::Response> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if shim.read(&mut byte).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the shim closed the connection",
            ));
        }
        if byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
        if line.len() > 64 * 1024 {
            return Err(std::io::Error::other("reply from the shim too long"));
        }
    }
    serde_json::from_slice(&line).map_err(std::io::Error::other)
}

/// `GET /containers/{id}/logs`: the json-file log, framed as Docker does without a
/// terminal (raw with one). `follow` keeps reading until the container stops.
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let flag = |k: &str| matches!(q.get(k).map(String::as_str), Some("1" | "true"));
    let (want_out, want_err, follow) = (flag("stdout"), flag("stderr"), flag("follow"));
    let tail: Option<usize> = q.get("tail").and_then(|t| t.parse().ok());
    let tty = c.spec.tty;
    let path = state.layout.log_path(&c.id);
    let st = state.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut offset = 0usize;
        let mut first = true;
        loop {
            let data = tokio::fs::read(&path).await.unwrap_or_default();
            let fresh = &data[offset.min(data.len())..];
            let complete = fresh
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|i| i + 1)
                .unwrap_or(0);
            let mut lines: Vec<&[u8]> = fresh[..complete]
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            if first {
                if let Some(n) = tail {
                    let skip = lines.len().saturating_sub(n);
                    lines.drain(..skip);
                }
                first = false;
            }
            offset += complete;
            let mut out = Vec::new();
            for l in lines {
                let Ok(entry) = serde_json::from_slice::<serde_json::Value>(l) else {
                    continue;
                };
                let stream = entry["stream"].as_str().unwrap_or("stdout");
                let text = entry["log"].as_str().unwrap_or_default().as_bytes();
                if (stream == "stdout" && !want_out) || (stream == "stderr" && !want_err) {
                    continue;
                }
                if !tty {
                    out.extend_from_slice(&polis_shim::protocol::frame_header(
                        if stream == "stderr" { 2 } else { 1 },
                        text.len(),
                    ));
                }
                out.extend_from_slice(text);
            }
            if !out.is_empty() && tx.send(Ok(out)).await.is_err() {
                return;
            }
            if !follow {
                return;
            }
            let (s2, id) = (st.clone(), c.id.clone());
            let status =
                tokio::task::spawn_blocking(move || containers::state(&s2.layout, &id).status)
                    .await
                    .unwrap_or_default();
            if status != "running" && status != "created" && status != "paused" {
                // One last read picks up what was written before the exit.
                if tokio::fs::metadata(&path)
                    .await
                    .map(|m| m.len() as usize)
                    .unwrap_or(0)
                    <= offset
                {
                    return;
                }
                continue;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream).into_response()
}
