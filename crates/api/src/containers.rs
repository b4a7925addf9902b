//! The container endpoints: create, start, attach (a hijacked connection), wait, kill,
//! stop, remove, list, inspect and logs. Each container's shim does the work; the
//! engine's blocking calls run on the blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use polis_engine::containers::{self, Container, ContainerSpec};
use polis_engine::hostconfig::{EndpointConfig, HostConfig};
use polis_engine::Error as EngineError;
use polis_engine::{hostspec, mounts};
use polis_shim::protocol::{Request as ShimRequest, SignalArg};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::versioning::error;
use crate::AppState;

pub fn engine_error(e: EngineError) -> Response {
    let status = match &e {
        EngineError::NotFound(_)
        | EngineError::FileNotFound { .. }
        | EngineError::NoSuchVolume(_) => StatusCode::NOT_FOUND,
        EngineError::Conflict(_) => StatusCode::CONFLICT,
        EngineError::InvalidInput(_) => StatusCode::BAD_REQUEST,
        EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
        EngineError::Network(n) => match n {
            polis_network::Error::NotFound(_) => StatusCode::NOT_FOUND,
            polis_network::Error::Conflict(_) => StatusCode::CONFLICT,
            polis_network::Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
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

/// Whether a JSON value is the client's "not set": null, false, 0, "", [] or {}. (An
/// object with keys is set: `Volumes: {"/data": {}}` asks for a volume.)
pub(crate) fn unset(v: &serde_json::Value) -> bool {
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
    const HANDLED: [&str; 10] = [
        "Healthcheck",
        "Volumes",
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "StdinOnce",
        "NetworkDisabled",
        "MacAddress",
        "NetworkingConfig",
        "ExposedPorts",
    ];
    for (k, v) in rest {
        if HANDLED.contains(&k.as_str()) || unset(v) {
            continue;
        }
        return Some(k.clone());
    }
    // Of an endpoint, the addresses, aliases and MAC address are applied.
    for ep in rest
        .get("NetworkingConfig")
        .and_then(|n| n["EndpointsConfig"].as_object())
        .into_iter()
        .flat_map(|eps| eps.values())
    {
        for (k, v) in ep.as_object().into_iter().flatten() {
            let known = matches!(
                k.as_str(),
                "IPAMConfig" | "Aliases" | "MacAddress" | "NetworkID" | "EndpointID"
            );
            if !known && !unset(v) {
                return Some(format!("NetworkingConfig.EndpointsConfig.{k}"));
            }
        }
    }
    for (k, v) in host {
        if unset(v) {
            continue;
        }
        let accepted = match k.as_str() {
            "AutoRemove" | "ConsoleSize" => true,
            // Applied by the engine's security module.
            "Privileged" | "CapAdd" | "CapDrop" | "SecurityOpt" | "ReadonlyRootfs" | "Init"
            | "MaskedPaths" | "ReadonlyPaths" => true,
            // Mounts, devices, kernel settings and cgroup limits (polis_engine::hostspec).
            "Binds" | "VolumesFrom" | "Tmpfs" | "ShmSize" | "Sysctls" | "Ulimits" | "Devices"
            | "Memory" | "MemorySwap" | "MemoryReservation" | "MemorySwappiness"
            | "OomKillDisable" | "NanoCpus" | "CpuShares" | "CpuPeriod" | "CpuQuota"
            | "CpusetCpus" | "CpusetMems" | "PidsLimit" => true,
            "Mounts" => match unsupported_mount_field(v) {
                Some(field) => return Some(format!("HostConfig.Mounts.{field}")),
                None => true,
            },
            // The predefined networks and user networks (polis_engine::networking).
            "NetworkMode" => v.is_string(),
            "Dns" | "DnsSearch" | "DnsOptions" | "ExtraHosts" => true,
            "PortBindings" | "PublishAllPorts" => true,
            // Checked as Docker checks them once parsed (restart policy, log driver
            // and options).
            "RestartPolicy" | "LogConfig" => true,
            "IpcMode" => matches!(v.as_str(), Some("private" | "shareable")),
            _ => false,
        };
        if !accepted {
            return Some(format!("HostConfig.{k}"));
        }
    }
    None
}

/// The create body's `NetworkingConfig.EndpointsConfig`, with the older top-level
/// `MacAddress` moved into the entry of the container's network.
fn endpoints_config(
    rest: &serde_json::Map<String, serde_json::Value>,
    mode: &str,
) -> Result<BTreeMap<String, EndpointConfig>, String> {
    let mut eps: BTreeMap<String, EndpointConfig> = match rest
        .get("NetworkingConfig")
        .map(|n| &n["EndpointsConfig"])
        .filter(|v| !v.is_null())
    {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| format!("NetworkingConfig.EndpointsConfig: {e}"))?,
        None => BTreeMap::new(),
    };
    if let Some(mac) = rest.get("MacAddress").and_then(|m| m.as_str()) {
        if !mac.is_empty() {
            let network = match mode {
                "" | "default" => "bridge",
                m => m,
            };
            let ep = eps.entry(network.to_string()).or_default();
            if ep.mac_address.is_empty() {
                ep.mac_address = mac.to_string();
            }
        }
    }
    Ok(eps)
}

/// The first field of a `--mount` entry this daemon does not know, so none is ignored.
fn unsupported_mount_field(mounts: &serde_json::Value) -> Option<String> {
    const FIELDS: [&str; 8] = [
        "Type",
        "Source",
        "Target",
        "ReadOnly",
        "Consistency",
        "BindOptions",
        "VolumeOptions",
        "TmpfsOptions",
    ];
    const BIND: [&str; 5] = [
        "Propagation",
        "NonRecursive",
        "CreateMountpoint",
        "ReadOnlyNonRecursive",
        "ReadOnlyForceRecursive",
    ];
    const TMPFS: [&str; 3] = ["SizeBytes", "Mode", "Options"];
    const VOLUME: [&str; 3] = ["NoCopy", "Labels", "DriverConfig"];
    for m in mounts.as_array().into_iter().flatten() {
        for (k, v) in m.as_object().into_iter().flatten() {
            if unset(v) {
                continue;
            }
            if !FIELDS.contains(&k.as_str()) {
                return Some(k.clone());
            }
            let known: &[&str] = match k.as_str() {
                "BindOptions" => &BIND,
                "TmpfsOptions" => &TMPFS,
                "VolumeOptions" => &VOLUME,
                _ => continue,
            };
            for (sub, sv) in v.as_object().into_iter().flatten() {
                if !unset(sv) && !known.contains(&sub.as_str()) {
                    return Some(format!("{k}.{sub}"));
                }
            }
        }
    }
    None
}

/// The restart policy and log settings checked as Docker checks them, with Docker's
/// defaults filled in so inspect shows what applies.
fn check_policies(host: &mut HostConfig) -> Result<(), EngineError> {
    polis_engine::restart::validate(&host.restart_policy, host.auto_remove)?;
    polis_engine::logconfig::validate(&host.log_config)?;
    if host.restart_policy.name.is_empty() {
        host.restart_policy.name = "no".into();
    }
    host.log_config.kind = polis_engine::logconfig::driver_name(&host.log_config).to_string();
    host.log_config.config.get_or_insert_with(Default::default);
    Ok(())
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
    let mut host_config: HostConfig = match serde_json::from_value(host.clone().into()) {
        Ok(h) => h,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("HostConfig: {e}")),
    };
    if let Err(e) = check_policies(&mut host_config) {
        return engine_error(e);
    }
    let entrypoint = match body.entrypoint {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(vec![s]),
        Some(v) => match serde_json::from_value(v) {
            Ok(list) => Some(list),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("Entrypoint: {e}")),
        },
    };
    let endpoints = match endpoints_config(&body.rest, &host_config.network_mode) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let exposed_ports = match body.rest.get("ExposedPorts").filter(|v| !v.is_null()) {
        Some(v) => match serde_json::from_value(v.clone()) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("ExposedPorts: {e}")),
        },
        None => BTreeMap::new(),
    };
    let volumes = match body.rest.get("Volumes").filter(|v| !v.is_null()) {
        Some(v) => match serde_json::from_value(v.clone()) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("Volumes: {e}")),
        },
        None => BTreeMap::new(),
    };
    let healthcheck = match body.rest.get("Healthcheck").filter(|v| !v.is_null()) {
        Some(v) => match serde_json::from_value(v.clone()) {
            Ok(h) => Some(h),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("Healthcheck: {e}")),
        },
        None => None,
    };
    let spec = ContainerSpec {
        healthcheck,
        volumes,
        volume_mounts: Vec::new(),
        exposed_ports,
        endpoints,
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
    if let Err(r) = crate::networks::check_mode(&state, &spec.host.network_mode) {
        return r;
    }
    let name = q.get("name").filter(|n| !n.is_empty()).cloned();
    let st = state.clone();
    match blocking(move || {
        containers::create(
            &st.layout,
            &st.metadata,
            &st.images,
            &st.networks,
            name.as_deref(),
            spec,
        )
    })
    .await
    {
        Ok(c) => {
            crate::volumes::created_for(&state, &c);
            crate::events::container(&state, &c, "create");
            (
                StatusCode::CREATED,
                Json(json!({ "Id": c.id, "Warnings": hostspec::warnings(&c.spec.host) })),
            )
                .into_response()
        }
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
    // A restarting container counts as running, as with Docker.
    if current.status == "running" || state.restarts.restarting(&c.id).is_some() {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    if current.status == "paused" {
        return error(
            StatusCode::CONFLICT,
            "cannot start a paused container, try unpause instead",
        );
    }
    // Exited before: a new runtime container on the same rootfs, as Docker restarts.
    match crate::restart::start(&state, &c, current.status == "created", true).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

/// --rm: once the container has exited, the engine removes it.
pub fn watch_auto_remove(state: Arc<AppState>, c: Container) {
    crate::health::start(&state, &c);
    tokio::spawn(async move {
        let id = c.id.clone();
        let (st, wait_id) = (state.clone(), id.clone());
        let waited = blocking(move || {
            let exit = containers::call(&st.layout, &wait_id, &ShimRequest::Wait)
                .ok()
                .and_then(|r| r.exit);
            // The shim is gone: its exit record says how it ended.
            Ok(exit.or_else(|| containers::state(&st.layout, &wait_id).exit))
        })
        .await;
        state.health.forget(&id);
        // As it is now (a rename while it ran).
        let c = state.metadata.find(&id).unwrap_or(c);
        if let Ok(Some(exit)) = &waited {
            crate::events::died(&state, &c, exit);
        }
        let (st, gone) = (state.clone(), c.clone());
        // --rm takes the container's anonymous volumes with it, as Docker's.
        let removed = blocking(move || {
            containers::remove(&st.layout, &st.metadata, &st.networks, &gone, true)?;
            polis_engine::volume_use::remove_anonymous(&st.layout, &st.metadata, &gone)
        })
        .await;
        if let Ok(volumes) = removed {
            crate::events::destroyed(&state, &c);
            crate::volumes::destroyed(&state, &volumes);
        }
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
    let restarting = state.restarts.restarting(&c.id).is_some();
    if !restarting && !matches!(s.status.as_str(), "running" | "paused") {
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
    // As Docker: SIGKILL or the stop signal (any signal when none is set) means the
    // container is not to be restarted; any kill counts as a stop by the user.
    let number = signal.number().ok();
    let exit_on_next = match (c.spec.stop_signal.as_deref(), number) {
        (_, Some(9)) | (None, _) => true,
        (Some(stop), n) => n.is_some() && polis_runtime::container::parse_signal(stop).ok() == n,
    };
    if let Err(r) = crate::restart::stopped_by_user(&state, &c.id).await {
        return r;
    }
    if !exit_on_next {
        if restarting {
            return StatusCode::NO_CONTENT.into_response();
        }
    } else {
        let _settled = state.restarts.cancel(&c.id).await;
        let (st, id) = (state.clone(), c.id.clone());
        let now = blocking(move || Ok(containers::state(&st.layout, &id).status)).await;
        if !matches!(now.as_deref(), Ok("running" | "paused")) {
            // It was restarting: calling the restart off was the whole job.
            return StatusCode::NO_CONTENT.into_response();
        }
    }
    // Told before it is sent, so that it comes before the exit it may cause.
    if let Some(n) = number {
        crate::events::container_with(&state, &c, "kill", &[("signal", n.to_string())]);
    }
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
    let restarting = state.restarts.restarting(&c.id).is_some();
    if !restarting && !matches!(s.status.as_str(), "running" | "paused") {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    // Stopped by the user: no restart now, and none for unless-stopped later. A restart
    // under way finishes first, then is stopped like any running container.
    if let Err(r) = crate::restart::stopped_by_user(&state, &c.id).await {
        return r;
    }
    let _settled = state.restarts.cancel(&c.id).await;
    let (st, id) = (state.clone(), c.id.clone());
    let now = blocking(move || Ok(containers::state(&st.layout, &id).status)).await;
    if !matches!(now.as_deref(), Ok("running" | "paused")) {
        return StatusCode::NO_CONTENT.into_response();
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
    let signal = match signal.parse::<i32>() {
        Ok(n) => SignalArg::Number(n),
        Err(_) => SignalArg::Name(signal),
    };
    if let Ok(n) = signal.number() {
        crate::events::container_with(&state, &c, "kill", &[("signal", n.to_string())]);
    }
    let term = ShimRequest::Kill { signal, all: false };
    if let Err(r) = shim_call(&state, &c.id, term).await {
        return r;
    }
    let (st, id) = (state.clone(), c.id.clone());
    let waited = tokio::time::timeout(
        Duration::from_secs(u64::try_from(timeout).unwrap_or(u64::MAX / 2)),
        blocking(move || containers::call(&st.layout, &id, &ShimRequest::Wait)),
    )
    .await;
    let exit = match waited {
        Ok(waited) => waited.ok().and_then(|r| r.exit),
        Err(_) => {
            crate::events::container_with(&state, &c, "kill", &[("signal", "9".into())]);
            let kill = ShimRequest::Kill {
                signal: SignalArg::Name("KILL".into()),
                all: true,
            };
            if let Err(r) = shim_call(&state, &c.id, kill).await {
                return r;
            }
            let (st, id) = (state.clone(), c.id.clone());
            blocking(move || containers::call(&st.layout, &id, &ShimRequest::Wait))
                .await
                .ok()
                .and_then(|r| r.exit)
        }
    };
    // Its exit is told before the stop (its watcher may be a moment late).
    if let Some(exit) = &exit {
        crate::events::died(&state, &c, exit);
    }
    // Its host ports are free once `stop` returns (its watcher would be a moment late).
    let (st, id) = (state.clone(), c.id.clone());
    if let Err(r) = blocking(move || {
        st.networks.deactivate(&id)?;
        polis_engine::volume_use::release(&st.layout, &st.metadata, &id)
    })
    .await
    {
        return r;
    }
    crate::events::container(&state, &c, "stop");
    StatusCode::NO_CONTENT.into_response()
}

/// `pause` and `unpause`: the shim freezes or thaws the container's cgroup.
pub async fn pause(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    freeze(state, key, true).await
}

pub async fn unpause(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    freeze(state, key, false).await
}

/// Docker's refusal of pause and exec while a container waits to be restarted.
pub fn is_restarting(id: &str) -> String {
    format!("Container {id} is restarting, wait until the container is running")
}

async fn freeze(state: Arc<AppState>, key: String, pause: bool) -> Response {
    let (c, s) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if pause && state.restarts.restarting(&c.id).is_some() {
        return error(StatusCode::CONFLICT, is_restarting(&c.id));
    }
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
        Ok(_) => {
            crate::events::container(&state, &c, verb);
            StatusCode::NO_CONTENT.into_response()
        }
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
        Ok(_) => {
            let size = [("height", h.to_string()), ("width", w.to_string())];
            crate::events::container_with(&state, &c, "resize", &size);
            StatusCode::OK.into_response()
        }
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
    let started = start(State(state.clone()), Path(key.clone())).await;
    let started = if started.status() == StatusCode::NOT_MODIFIED {
        StatusCode::NO_CONTENT.into_response()
    } else {
        started
    };
    if started.status().is_success() {
        if let Ok(c) = find(&state, &key) {
            crate::events::container(&state, &c, "restart");
        }
    }
    started
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let force = matches!(q.get("force").map(String::as_str), Some("1" | "true"));
    let volumes = matches!(q.get("v").map(String::as_str), Some("1" | "true"));
    let (c, live) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if !force && state.restarts.restarting(&c.id).is_some() {
        return error(
            StatusCode::CONFLICT,
            format!("You cannot remove a restarting container {}. Stop the container before attempting removal or force remove", c.id),
        );
    }
    // No restart may start while it goes (a running one without force is refused
    // below, and keeps its policy).
    let running = matches!(live.status.as_str(), "running" | "paused");
    let _settled = if force || !running {
        Some(state.restarts.cancel(&c.id).await)
    } else {
        None
    };
    if force && running {
        // Killed and waited for first, as Docker does, so that its exit is told before
        // its removal.
        crate::events::container_with(&state, &c, "kill", &[("signal", "9".into())]);
        let (st, id) = (state.clone(), c.id.clone());
        let exit = blocking(move || {
            let kill = ShimRequest::Kill {
                signal: SignalArg::Name("KILL".into()),
                all: true,
            };
            // Already gone is no error: the wait answers at once.
            let _ = containers::call(&st.layout, &id, &kill);
            Ok(containers::call(&st.layout, &id, &ShimRequest::Wait)
                .ok()
                .and_then(|r| r.exit))
        })
        .await;
        if let Ok(Some(exit)) = &exit {
            crate::events::died(&state, &c, exit);
        }
    }
    let st = state.clone();
    let id = c.id.clone();
    // An image removed with force while this container used it leaves its layers to it.
    let image_gone = state.images.resolve(&c.image_id).is_err();
    let gone = c.clone();
    match blocking(move || {
        containers::remove(&st.layout, &st.metadata, &st.networks, &c, force)?;
        if volumes {
            return polis_engine::volume_use::remove_anonymous(&st.layout, &st.metadata, &c);
        }
        Ok(Vec::new())
    })
    .await
    {
        Ok(removed_volumes) => {
            crate::events::destroyed(&state, &gone);
            crate::volumes::destroyed(&state, &removed_volumes);
            crate::exec::forget_container(&state, &id);
            state.restarts.forget(&id);
            state.health.forget(&id);
            if image_gone {
                crate::images::collect_snapshots(&state).await;
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

/// Docker's status word and exit code: "restarting" while the supervisor waits to
/// restart it (with the exit it restarts from), else what the shim says.
pub(crate) fn docker_status(
    s: &polis_shim::protocol::ContainerState,
    restarting: Option<&crate::restart::Restarting>,
) -> (&'static str, i32) {
    if let Some(r) = restarting {
        return ("restarting", r.exit_code);
    }
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
    let restarting = state.restarts.restarting(&c.id);
    let (status, code) = docker_status(&s, restarting.as_ref());
    let up = matches!(status, "running" | "paused");
    let never = || "0001-01-01T00:00:00Z".to_string();
    let finished_at = match &restarting {
        Some(r) => r.finished_at.clone(),
        None => s
            .exit
            .as_ref()
            .map(|e| e.finished_at.clone())
            .or_else(|| c.finished_at.clone())
            .unwrap_or_else(never),
    };
    // Of the last run, once it ended (a start clears it, as Docker's).
    let oom_killed = !up && s.exit.as_ref().is_some_and(|e| e.oom_killed);
    let health = state.health.of(&c.id);
    let healthcheck = c.spec.healthcheck.clone();
    let mut body = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": c.path,
        "Args": c.args,
        "Name": format!("/{}", c.name),
        "Image": c.image_id,
        "RestartCount": c.restart_count,
        "State": {
            "Status": status,
            // Docker counts a restarting container as running.
            "Running": up || status == "restarting",
            "Paused": status == "paused",
            "Restarting": status == "restarting",
            "OOMKilled": oom_killed,
            "Dead": false,
            "Pid": if up { s.pid } else { 0 },
            "ExitCode": code,
            "Error": "",
            "StartedAt": c.started_at.clone().unwrap_or_else(never),
            "FinishedAt": finished_at,
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
            "ExposedPorts": if c.spec.exposed_ports.is_empty() { serde_json::Value::Null } else { json!(c.spec.exposed_ports) },
            "Volumes": if c.spec.volumes.is_empty() { serde_json::Value::Null } else { json!(c.spec.volumes) },
        },
        "HostConfig": c.spec.host,
        "Mounts": mounts::mount_points(&c.spec, &state.layout.root),
        "NetworkSettings": crate::networks::settings(&state, &c),
    });
    // Both only when there are (Docker's omitempty).
    if let Some(h) = health {
        body["State"]["Health"] = h.json();
    }
    if let Some(h) = healthcheck {
        body["Config"]["Healthcheck"] = json!(h);
    }
    Json(body).into_response()
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
    // On a terminal the client's input may end in the detach keys; and, as Docker,
    // a terminal's input is never closed by a client leaving.
    let keys = q
        .get("detachKeys")
        .filter(|k| !k.is_empty())
        .map_or(crate::detach::DEFAULT_KEYS, String::as_str);
    let keys = match crate::detach::parse_keys(keys) {
        Ok(keys) if c.spec.tty => keys,
        Ok(_) => Vec::new(),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let request = ShimRequest::Attach {
        stdin: flag("stdin"),
        stdout: flag("stdout"),
        stderr: flag("stderr"),
        stdin_once: flag("stdin") && !c.spec.tty,
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
    crate::events::container(&state, &c, "attach");
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
            let end = crate::detach::copy_watching(&mut client_read, &mut shim_write, &keys).await;
            if end == crate::detach::InputEnd::Eof {
                // The client's half-close is the container's end of input.
                let _ = shim_write.shutdown().await;
            }
            end
        };
        // A detach drops both connections at once; the container runs on.
        tokio::select! {
            _ = to_client => {}
            crate::detach::InputEnd::Detached = to_shim => {
                crate::events::container(&state, &c, "detach");
            }
        }
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
