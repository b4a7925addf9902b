//! `/volumes`: create, list, inspect, remove and prune, in Docker's shapes and words.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use polis_engine::volume_use;
use polis_engine::volumes::{CreateVolume, Volume, Volumes};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::containers::blocking;
use crate::events::{Actor, Events};
use crate::filters::Filters;
use crate::versioning::{error, RequestVersion, MAX_API_VERSION};
use crate::AppState;

/// A volume event: its name, driver `local`, and `extra` attributes.
fn publish(bus: &Events, name: &str, action: &str, extra: &[(&str, String)]) {
    let mut attributes: BTreeMap<String, String> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    attributes.insert("driver".into(), "local".into());
    bus.publish(
        "volume",
        action,
        Actor {
            id: name.to_string(),
            attributes,
        },
    );
}

/// The volumes a container's create made.
pub fn created_for(state: &AppState, c: &polis_engine::containers::Container) {
    for v in c.spec.volume_mounts.iter().filter(|v| v.created) {
        publish(&state.events, &v.name, "create", &[]);
    }
}

/// A start: each of the container's volumes is mounted for it.
pub fn mounted(state: &AppState, c: &polis_engine::containers::Container) {
    for v in &c.spec.volume_mounts {
        publish(
            &state.events,
            &v.name,
            "mount",
            &[
                ("container", c.id.clone()),
                ("destination", v.destination.clone()),
                ("propagation", String::new()),
                ("read/write", (!v.read_only).to_string()),
            ],
        );
    }
}

/// An exit: each of the container's volumes is unmounted for it.
pub fn unmounted(bus: &Events, c: &polis_engine::containers::Container) {
    for v in &c.spec.volume_mounts {
        publish(bus, &v.name, "unmount", &[("container", c.id.clone())]);
    }
}

/// Volumes removed.
pub fn destroyed(state: &AppState, names: &[String]) {
    for name in names {
        publish(&state.events, name, "destroy", &[]);
    }
}

/// A volume as Docker shows it: null labels and options when there are none.
pub(crate) fn volume_json(state: &AppState, v: &Volume) -> Value {
    let map_or_null = |m: &BTreeMap<String, String>| {
        if m.is_empty() {
            Value::Null
        } else {
            json!(m)
        }
    };
    json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": map_or_null(&v.labels),
        "Mountpoint": Volumes::new(&state.layout.root).mountpoint(&v.name),
        "Name": v.name,
        "Options": map_or_null(&v.options),
        "Scope": "local",
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    /// Swarm's cluster volumes: not for this daemon.
    cluster_volume_spec: Option<Value>,
}

/// `POST /volumes/create`: 201 with the volume (an existing one of that name too).
pub async fn create(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let body: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    };
    if body
        .cluster_volume_spec
        .as_ref()
        .is_some_and(|v| !v.is_null())
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.",
        );
    }
    let st = state.clone();
    let req = CreateVolume {
        name: (!body.name.is_empty()).then_some(body.name),
        driver: body.driver,
        options: body.driver_opts.unwrap_or_default(),
        labels: body.labels.unwrap_or_default(),
    };
    match blocking(move || Volumes::new(&st.layout.root).create(req)).await {
        Ok((v, created)) => {
            if created {
                publish(&state.events, &v.name, "create", &[]);
            }
            (StatusCode::CREATED, Json(volume_json(&state, &v))).into_response()
        }
        Err(r) => r,
    }
}

/// Whether a filter's boolean value (dangling, all) is true; Docker's 400 otherwise.
fn bool_filter(f: &Filters, key: &str) -> Result<Option<bool>, Response> {
    let values = f.values(key);
    let Some(first) = values.first() else {
        return Ok(None);
    };
    match first.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            format!("invalid filter '{key}={first}'"),
        )),
    }
}

/// Every volume with the names of the containers using it.
pub(crate) fn with_users(state: &AppState) -> polis_engine::Result<Vec<(Volume, usize)>> {
    let all = Volumes::new(&state.layout.root).list()?;
    let containers = state.metadata.containers()?;
    Ok(all
        .into_iter()
        .map(|v| {
            let n = containers
                .iter()
                .filter(|c| c.spec.volume_mounts.iter().any(|m| m.name == v.name))
                .count();
            (v, n)
        })
        .collect())
}

/// `GET /volumes?filters=`: dangling, driver, label, name.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filters = match Filters::from_query(&q, &["dangling", "driver", "label", "name"]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let dangling = match bool_filter(&filters, "dangling") {
        Ok(d) => d,
        Err(r) => return r,
    };
    let st = state.clone();
    let all = match blocking(move || with_users(&st)).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let volumes: Vec<Value> = all
        .iter()
        .filter(|(v, users)| {
            (!filters.contains("name") || filters.matches("name", &v.name))
                && (!filters.contains("driver") || filters.matches("driver", &v.driver))
                && filters.match_labels("label", &v.labels)
                && dangling.is_none_or(|d| d == (*users == 0))
        })
        .map(|(v, _)| volume_json(&state, v))
        .collect();
    Json(json!({ "Volumes": volumes, "Warnings": Value::Null })).into_response()
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    let st = state.clone();
    match blocking(move || Volumes::new(&st.layout.root).get(&name)).await {
        Ok(v) => Json(volume_json(&state, &v)).into_response(),
        Err(r) => r,
    }
}

/// `DELETE /volumes/{name}?force=`: 204; 409 while a container uses it; with force a
/// missing volume is no error.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let force = matches!(q.get("force").map(String::as_str), Some("1" | "true"));
    let (st, asked) = (state.clone(), name.clone());
    let existed = Volumes::new(&state.layout.root).get(&name).is_ok();
    match blocking(move || volume_use::remove_volume(&st.layout, &st.metadata, &asked, force)).await
    {
        Ok(()) => {
            if existed {
                publish(&state.events, &name, "destroy", &[]);
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

/// `POST /volumes/prune?filters=`: the volumes no container uses (from API 1.42 only
/// anonymous ones unless `all=true`), within the `label` / `label!` filters.
pub async fn prune(
    State(state): State<Arc<AppState>>,
    version: Option<Extension<RequestVersion>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let version = version.map_or(MAX_API_VERSION, |Extension(v)| v.0);
    let mut accepted = vec!["label", "label!"];
    if version >= (1, 42) {
        accepted.push("all");
    }
    let filters = match Filters::from_query(&q, &accepted) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let all = match bool_filter(&filters, "all") {
        Ok(a) => a.unwrap_or(false) || version < (1, 42),
        Err(r) => return r,
    };
    let st = state.clone();
    let result = blocking(move || {
        let store = Volumes::new(&st.layout.root);
        let mut deleted = Vec::new();
        let mut reclaimed = 0i64;
        for (v, users) in with_users(&st)? {
            if users > 0 || (!all && !v.anonymous()) {
                continue;
            }
            if !filters.match_labels("label", &v.labels) {
                continue;
            }
            if filters.contains("label!") && filters.match_labels("label!", &v.labels) {
                continue;
            }
            let size = store.size(&v.name).max(0);
            match volume_use::remove_volume(&st.layout, &st.metadata, &v.name, false) {
                Ok(()) => {
                    reclaimed += size;
                    deleted.push(v.name);
                }
                // Taken by a container meanwhile: not pruned.
                Err(polis_engine::Error::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((deleted, reclaimed))
    })
    .await;
    match result {
        Ok((deleted, reclaimed)) => {
            destroyed(&state, &deleted);
            crate::events::pruned(&state, "volume", reclaimed as u64);
            Json(json!({
                "VolumesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) },
                "SpaceReclaimed": reclaimed,
            }))
            .into_response()
        }
        Err(r) => r,
    }
}
