//! `docker exec`: `POST /containers/{id}/exec` records what to run, `POST
//! /exec/{id}/start` runs it through the container's shim on a hijacked connection,
//! `GET /exec/{id}/json` reports how it ended. Exec records live in memory, as
//! Docker's do.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use oci_spec::runtime::{Process, Spec};
use polis_shim::protocol::Request as ShimRequest;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::events::exec_action;
use crate::versioning::error;
use crate::AppState;

/// One exec instance.
#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub container_id: String,
    pub process: Process,
    pub tty: bool,
    pub stdin: bool,
    pub running: bool,
    pub exit_code: Option<i32>,
    pub pid: i32,
    /// Watched for on a terminal's input (see `detach`).
    pub detach_keys: Vec<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecBody {
    attach_stdin: bool,
    tty: bool,
    cmd: Vec<String>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    privileged: bool,
    detach_keys: String,
    /// [height, width] of the client's terminal.
    console_size: Option<[u16; 2]>,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let body: ExecBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON in request body: {e}"),
            )
        }
    };
    if body.cmd.is_empty() {
        return error(StatusCode::BAD_REQUEST, "No exec command specified");
    }
    let detach_keys = if body.detach_keys.is_empty() {
        crate::detach::DEFAULT_KEYS
    } else {
        body.detach_keys.as_str()
    };
    let detach_keys = match crate::detach::parse_keys(detach_keys) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if body.privileged {
        return error(
            StatusCode::BAD_REQUEST,
            "privileged exec is not supported yet",
        );
    }
    let c = match state.metadata.find(&key) {
        Ok(c) => c,
        Err(e) => return crate::containers::engine_error(e),
    };
    if state.restarts.restarting(&c.id).is_some() {
        return error(
            StatusCode::CONFLICT,
            crate::containers::is_restarting(&c.id),
        );
    }
    let bundle = state.layout.bundle(&c.id);
    let mut process = match container_process(&state, &c.id) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    process.set_args(Some(body.cmd));
    process.set_terminal(Some(body.tty));
    let console = body
        .console_size
        .filter(|[h, w]| body.tty && *h > 0 && *w > 0)
        .and_then(|[h, w]| {
            oci_spec::runtime::BoxBuilder::default()
                .height(u64::from(h))
                .width(u64::from(w))
                .build()
                .ok()
        });
    process.set_console_size(console);
    let mut env = process.env().clone().unwrap_or_default();
    for kv in body.env.unwrap_or_default() {
        let key = kv.split('=').next().unwrap_or_default().to_string();
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    process.set_env(Some(env));
    if let Some(w) = body.working_dir.filter(|w| !w.is_empty()) {
        process.set_cwd(w.into());
    }
    if let Some(u) = body.user.filter(|u| !u.is_empty()) {
        match polis_image::spec::resolve_user(&u, &bundle.join("rootfs")) {
            Ok(r) => {
                let mut user = process.user().clone();
                user.set_uid(r.uid);
                user.set_gid(r.gid);
                user.set_additional_gids(Some(r.additional_gids));
                process.set_user(user);
            }
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
    let id = polis_engine::metadata::random_hex(32);
    let action = exec_action("exec_create", process.args().as_deref().unwrap_or_default());
    crate::events::container_with(&state, &c, &action, &[("execID", id.clone())]);
    let record = ExecRecord {
        container_id: c.id,
        process,
        tty: body.tty,
        stdin: body.attach_stdin,
        running: false,
        exit_code: None,
        pid: 0,
        detach_keys,
    };
    if let Ok(mut execs) = state.execs.lock() {
        execs.insert(id.clone(), record);
    }
    (StatusCode::CREATED, Json(json!({ "Id": id }))).into_response()
}

/// The container's own process (its env, user, working directory) from its bundle:
/// what an exec, or a health probe, starts from.
pub(crate) fn container_process(state: &AppState, container_id: &str) -> Result<Process, String> {
    let bundle = state.layout.bundle(container_id);
    let spec: Spec = std::fs::read(bundle.join("config.json"))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("container {container_id}: {e}"))?;
    Ok(spec.process().clone().unwrap_or_default())
}

fn record(state: &AppState, id: &str) -> Option<ExecRecord> {
    state.execs.lock().ok()?.get(id).cloned()
}

fn update(state: &AppState, id: &str, f: impl FnOnce(&mut ExecRecord)) {
    if let Ok(mut execs) = state.execs.lock() {
        if let Some(r) = execs.get_mut(id) {
            f(r);
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StartBody {
    detach: bool,
}

/// Where an exec's output goes: the client until it leaves (a failed write or a
/// detach), then nowhere, while the exit is still awaited.
type ClientOut<W> = tokio::sync::Mutex<Option<W>>;

/// Frames from the shim: stdout/stderr go to the client (framed as Docker's stdcopy
/// without a terminal, raw with one); the exit frame is kept for `GET /exec/{id}/json`.
async fn pump_frames<W: tokio::io::AsyncWrite + Unpin>(
    mut from: impl tokio::io::AsyncRead + Unpin,
    to: &ClientOut<W>,
    tty: bool,
) -> Option<i32> {
    let mut header = [0u8; 8];
    loop {
        if from.read_exact(&mut header).await.is_err() {
            return None;
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut data = vec![0u8; len];
        if from.read_exact(&mut data).await.is_err() {
            return None;
        }
        if header[0] == polis_shim::protocol::EXIT {
            let status: Option<polis_shim::protocol::ExitStatus> =
                serde_json::from_slice(&data).ok();
            return status.map(|s| s.exit_code);
        }
        let mut guard = to.lock().await;
        if let Some(out) = guard.as_mut() {
            let res = if tty {
                out.write_all(&data).await
            } else {
                match out.write_all(&header).await {
                    Ok(()) => out.write_all(&data).await,
                    Err(e) => Err(e),
                }
            };
            if res.is_err() || out.flush().await.is_err() {
                *guard = None;
            }
        }
    }
}

pub async fn start(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    mut req: Request,
) -> Response {
    let Some(rec) = record(&state, &id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("No such exec instance: {id}"),
        );
    };
    if rec.running || rec.exit_code.is_some() {
        return error(StatusCode::CONFLICT, format!("Exec {id} has already run"));
    }
    let body = axum::body::to_bytes(std::mem::take(req.body_mut()), 64 * 1024)
        .await
        .unwrap_or_default();
    let start: StartBody = serde_json::from_slice(&body).unwrap_or_default();
    let socket = state
        .layout
        .shim_dir(&rec.container_id)
        .join(polis_shim::SOCKET);
    let mut shim = match tokio::net::UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e) => {
            return error(
                StatusCode::CONFLICT,
                format!("Container {} is not running: {e}", rec.container_id),
            )
        }
    };
    let request = ShimRequest::Exec {
        process: Box::new(rec.process.clone()),
        tty: rec.tty,
        stdin: rec.stdin && !start.detach,
    };
    let mut line = serde_json::to_vec(&request).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = shim.write_all(&line).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("exec: {e}"));
    }
    let reply = match crate::containers::read_reply(&mut shim).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("exec: {e}")),
    };
    if !reply.ok {
        let msg = reply.error.unwrap_or_else(|| "exec refused".into());
        return error(StatusCode::CONFLICT, msg);
    }
    let pid = reply.pid.unwrap_or(0);
    update(&state, &id, |r| {
        r.running = true;
        r.pid = pid;
    });
    let action = exec_action(
        "exec_start",
        rec.process.args().as_deref().unwrap_or_default(),
    );
    crate::events::exec(&state, &rec.container_id, &action, &id, &[]);
    let tty = rec.tty;
    if start.detach {
        let st = state.clone();
        tokio::spawn(async move {
            let nowhere: ClientOut<tokio::io::Sink> = tokio::sync::Mutex::new(None);
            let code = pump_frames(shim, &nowhere, tty).await;
            update(&st, &id, |r| {
                r.running = false;
                r.exit_code = Some(code.unwrap_or(-1));
            });
            exec_died(&st, &rec.container_id, &id, code);
        });
        return StatusCode::OK.into_response();
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let st = state.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let client = hyper_util::rt::TokioIo::new(upgraded);
        let (client_read, client_write) = tokio::io::split(client);
        let client_out = tokio::sync::Mutex::new(Some(client_write));
        let (shim_read, mut shim_write) = shim.into_split();
        let to_client = async {
            let code = pump_frames(shim_read, &client_out, tty).await;
            // The client asks for the exit code as soon as its stream ends: record it first.
            update(&st, &id, |r| {
                r.running = false;
                r.exit_code = Some(code.unwrap_or(-1));
            });
            exec_died(&st, &rec.container_id, &id, code);
            if let Some(mut out) = client_out.lock().await.take() {
                let _ = out.shutdown().await;
            }
        };
        let keys = if tty {
            rec.detach_keys.clone()
        } else {
            Vec::new()
        };
        let to_shim = async {
            let mut client_read = client_read;
            match crate::detach::copy_watching(&mut client_read, &mut shim_write, &keys).await {
                crate::detach::InputEnd::Eof => {
                    let _ = shim_write.shutdown().await;
                }
                // The client goes; the process runs on and its exit is still recorded.
                crate::detach::InputEnd::Detached => {
                    crate::events::exec(&st, &rec.container_id, "exec_detach", &id, &[]);
                    if let Some(mut out) = client_out.lock().await.take() {
                        let _ = out.shutdown().await;
                    }
                }
            }
        };
        tokio::join!(to_client, to_shim);
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONTENT_TYPE, "application/vnd.docker.raw-stream")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .body(Body::empty())
        .unwrap_or_default()
}

/// `exec_die`, with the exit code (-1 when the shim could not tell it).
fn exec_died(state: &AppState, container_id: &str, id: &str, code: Option<i32>) {
    let code = code.unwrap_or(-1).to_string();
    crate::events::exec(state, container_id, "exec_die", id, &[("exitCode", code)]);
}

/// `POST /exec/{id}/resize?h=&w=`: the exec's terminal size.
pub async fn resize(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let Some(rec) = record(&state, &id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("No such exec instance: {id}"),
        );
    };
    let (Some(h), Some(w)) = (
        q.get("h").and_then(|v| v.parse::<u16>().ok()),
        q.get("w").and_then(|v| v.parse::<u16>().ok()),
    ) else {
        return error(StatusCode::BAD_REQUEST, "resize needs numeric h and w");
    };
    if !rec.running {
        return error(StatusCode::CONFLICT, format!("Exec {id} is not running"));
    }
    let request = ShimRequest::Resize {
        height: h,
        width: w,
        exec: Some(rec.pid),
    };
    let (st, cid) = (state.clone(), rec.container_id.clone());
    let result = tokio::task::spawn_blocking(move || {
        polis_engine::containers::call(&st.layout, &cid, &request)
    })
    .await;
    match result {
        Ok(Ok(_)) => StatusCode::OK.into_response(),
        Ok(Err(e)) => crate::containers::engine_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

pub async fn inspect(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some(rec) = record(&state, &id) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("No such exec instance: {id}"),
        );
    };
    Json(json!({
        "ID": id,
        "ContainerID": rec.container_id,
        "Running": rec.running,
        "ExitCode": rec.exit_code,
        "Pid": rec.pid,
        "OpenStdin": rec.stdin,
        "ProcessConfig": {
            "tty": rec.tty,
            "entrypoint": rec.process.args().as_ref().and_then(|a| a.first().cloned()),
            "arguments": rec.process.args().as_ref().map(|a| a[1..].to_vec()),
        },
    }))
    .into_response()
}

/// Exec ids live as long as the daemon; drop the ones of a removed container.
pub fn forget_container(state: &AppState, container_id: &str) {
    if let Ok(mut execs) = state.execs.lock() {
        execs.retain(|_, r| r.container_id != container_id);
    }
}

pub type ExecTable = std::sync::Mutex<HashMap<String, ExecRecord>>;
