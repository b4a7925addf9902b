//! `GET /containers/json` (`docker ps`): containers newest first, Docker's filters
//! (status, name, id, label, ancestor, exited, before, since…), `limit` (`-n`, `-l`),
//! `size` (`-s`) and the fields the CLI's table and `--format` read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use polis_engine::containers::{self, Container};
use polis_engine::Error as EngineError;
use serde_json::json;

use crate::containers::{blocking, docker_status};
use crate::filters::Filters;
use crate::versioning::error;
use crate::AppState;

const ACCEPTED: [&str; 15] = [
    "ancestor",
    "before",
    "exited",
    "id",
    "isolation",
    "label",
    "name",
    "status",
    "health",
    "since",
    "volume",
    "network",
    "is-task",
    "publish",
    "expose",
];

const STATES: [&str; 7] = [
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];

/// Docker's `units.HumanDuration` of a number of seconds.
fn human_duration(secs: i64) -> String {
    crate::clock::human(std::time::Duration::from_secs(secs.max(0).unsigned_abs()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn since(time: Option<&str>) -> i64 {
    let t = time
        .and_then(polis_image::config::parse_rfc3339)
        .unwrap_or_else(now);
    (now() - t).max(0)
}

/// What the list needs of one container.
pub struct Row {
    pub c: Container,
    pub state: &'static str,
    pub exit_code: i32,
    pub finished_at: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The health its monitor found, if it has a health check.
    pub health: Option<crate::health::Health>,
}

impl Row {
    /// Docker's `Running`: also true while paused or waiting to restart.
    fn running(&self) -> bool {
        matches!(self.state, "running" | "paused" | "restarting")
    }

    /// Docker's `State.String()`: `Up 3 seconds`, `Exited (0) 2 minutes ago`, `Created`.
    pub fn status(&self) -> String {
        match self.state {
            "running" => match &self.health {
                Some(h) => format!(
                    "Up {} ({})",
                    human_duration(since(self.c.started_at.as_deref())),
                    h.ps_text()
                ),
                None => format!("Up {}", human_duration(since(self.c.started_at.as_deref()))),
            },
            "paused" => format!(
                "Up {} (Paused)",
                human_duration(since(self.c.started_at.as_deref()))
            ),
            "created" => "Created".to_string(),
            "restarting" => format!(
                "Restarting ({}) {} ago",
                self.exit_code,
                human_duration(since(self.finished_at.as_deref()))
            ),
            _ => match &self.finished_at {
                Some(f) => format!(
                    "Exited ({}) {} ago",
                    self.exit_code,
                    human_duration(since(Some(f)))
                ),
                None => String::new(),
            },
        }
    }
}

/// Every container with its live state, newest first.
pub fn rows(state: &AppState) -> Result<Vec<Row>, EngineError> {
    let mut rows = Vec::new();
    for c in state.metadata.containers()? {
        let live = containers::state(&state.layout, &c.id);
        let restarting = state.restarts.restarting(&c.id);
        let (st, code) = docker_status(&live, restarting.as_ref());
        let finished_at = match restarting {
            Some(r) => Some(r.finished_at),
            None => live.exit.as_ref().map(|e| e.finished_at.clone()),
        };
        // The image's labels are merged into the container's at create.
        let labels = c.spec.labels.clone();
        rows.push(Row {
            health: state.health.of(&c.id),
            state: st,
            exit_code: code,
            finished_at,
            labels,
            c,
        });
    }
    rows.sort_by(|a, b| b.c.created.cmp(&a.c.created));
    Ok(rows)
}

/// A container by id, name or id prefix among `rows` (the before/since filters).
fn pick<'a>(rows: &'a [Row], key: &str) -> Result<&'a Row, String> {
    let key = key.trim_start_matches('/');
    if let Some(r) = rows.iter().find(|r| r.c.id == key || r.c.name == key) {
        return Ok(r);
    }
    let found: Vec<&Row> = rows.iter().filter(|r| r.c.id.starts_with(key)).collect();
    match found.as_slice() {
        [one] if !key.is_empty() => Ok(one),
        _ => Err(format!("No such container: {key}")),
    }
}

/// The image IDs `ancestor` values designate, with the images committed from them
/// (whose layers extend theirs).
fn ancestors(state: &AppState, filters: &Filters) -> Option<Vec<Vec<String>>> {
    if !filters.contains("ancestor") {
        return None;
    }
    Some(
        filters
            .values("ancestor")
            .iter()
            .filter_map(|name| state.images.resolve(name).ok())
            .filter_map(|id| state.images.record(&id).ok())
            .map(|rec| rec.layers.iter().map(|l| l.digest.to_string()).collect())
            .collect(),
    )
}

fn image_layers(state: &AppState, image_id: &str) -> Vec<String> {
    state
        .images
        .resolve(image_id)
        .and_then(|id| state.images.record(&id))
        .map(|rec| rec.layers.iter().map(|l| l.digest.to_string()).collect())
        .unwrap_or_default()
}

/// Mount sources and destinations of a container, for the `volume` filter.
fn mount_points(c: &Container) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = c
        .spec
        .host
        .binds
        .iter()
        .flatten()
        .filter_map(|b| {
            let mut parts = b.split(':');
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    out.extend(
        c.spec
            .host
            .mounts
            .iter()
            .flatten()
            .map(|m| (m.source.clone(), m.target.clone())),
    );
    out.extend(
        c.spec
            .volume_mounts
            .iter()
            .map(|v| (v.name.clone(), v.destination.clone())),
    );
    out
}

fn bad(msg: String) -> Response {
    error(StatusCode::BAD_REQUEST, msg)
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let flag = |k: &str| matches!(q.get(k).map(String::as_str), Some("1" | "true" | "True"));
    let mut all = flag("all");
    let size = flag("size");
    let limit: i64 = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(-1);
    let filters = match Filters::from_query(&q, &ACCEPTED) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut exited = Vec::new();
    for v in filters.values("exited") {
        match v.parse::<i32>() {
            Ok(n) => exited.push(n),
            Err(_) => return bad(format!("strconv.Atoi: parsing {v:?}: invalid syntax")),
        }
    }
    for v in filters.values("status") {
        if !STATES.contains(&v) {
            return bad(format!("invalid filter 'status={v}'"));
        }
        all = true;
    }
    for v in filters.values("health") {
        if !["starting", "healthy", "unhealthy", "none"].contains(&v) {
            return bad(format!("Unrecognised filter value for health: {v}"));
        }
    }
    let is_task: Vec<String> = filters
        .values("is-task")
        .iter()
        .map(|v| v.to_string())
        .collect();
    if filters.contains("is-task") && !(is_task == ["true"] || is_task == ["false"]) {
        return bad(format!("invalid filter 'is-task={}'", is_task.join(",")));
    }
    for key in ["publish", "expose"] {
        if let Some(v) = filters.values(key).iter().find(|v| v.contains(':')) {
            return bad(format!("filter for '{key}' should not contain ':': {v}"));
        }
    }
    let st = state.clone();
    let result = blocking(move || {
        let rows = rows(&st)?;
        let mut before = match filters.values("before").last() {
            Some(v) => Some(pick(&rows, v).map_err(EngineError::NotFound)?.c.id.clone()),
            None => None,
        };
        let since_id = match filters.values("since").last() {
            Some(v) => Some(pick(&rows, v).map_err(EngineError::NotFound)?.c.id.clone()),
            None => None,
        };
        let ancestors = ancestors(&st, &filters);
        let mut out = Vec::new();
        for row in &rows {
            if let Some(b) = &before {
                if *b == row.c.id {
                    before = None;
                }
                continue;
            }
            if since_id.as_deref() == Some(row.c.id.as_str()) {
                break;
            }
            if !row.running() && !all && limit <= 0 {
                continue;
            }
            let slash_name = format!("/{}", row.c.name);
            if !filters.matches("name", &slash_name) && !filters.matches("name", &row.c.name) {
                continue;
            }
            if !filters.matches("id", &row.c.id) {
                continue;
            }
            if filters.contains("is-task") && is_task == ["true"] {
                continue;
            }
            if !filters.match_labels("label", &row.labels) {
                continue;
            }
            if !filters.matches("isolation", "default") {
                continue;
            }
            if limit > 0 && out.len() as i64 == limit {
                break;
            }
            if !exited.is_empty()
                && (row.running() || row.c.started_at.is_none() || !exited.contains(&row.exit_code))
            {
                continue;
            }
            if !filters.matches("status", row.state) {
                continue;
            }
            let health = row.health.as_ref().map_or("none", |h| h.status);
            if !filters.exact_match("health", health) {
                continue;
            }
            if filters.contains("volume") {
                let points = mount_points(&row.c);
                let hit = filters
                    .values("volume")
                    .iter()
                    .any(|v| points.iter().any(|(src, dst)| src == v || dst == v));
                if !hit {
                    continue;
                }
            }
            if let Some(ancestors) = &ancestors {
                let mine = image_layers(&st, &row.c.image_id);
                let derived = ancestors
                    .iter()
                    .any(|a| !a.is_empty() && mine.starts_with(a));
                if !derived {
                    continue;
                }
            }
            if filters.contains("network") {
                let networks: &[&str] = if row.c.spec.host.network_mode == "none" {
                    &["none"]
                } else {
                    &[]
                };
                if !filters
                    .values("network")
                    .iter()
                    .any(|n| networks.contains(n))
                {
                    continue;
                }
            }
            // No container publishes or exposes ports yet.
            if filters.contains("publish") || filters.contains("expose") {
                continue;
            }
            out.push(summary(&st, row, size));
        }
        Ok(out)
    })
    .await;
    match result {
        Ok(rows) => Json(rows).into_response(),
        Err(r) => r,
    }
}

/// One container as `docker ps` reads it.
pub(crate) fn summary(state: &AppState, row: &Row, size: bool) -> serde_json::Value {
    let c = &row.c;
    // The name it was created from, while that still designates its image.
    let image = match state.images.resolve(&c.spec.image) {
        Ok(id) if id.as_str() == c.image_id => c.spec.image.clone(),
        _ => c.image_id.clone(),
    };
    let args: Vec<String> = c
        .args
        .iter()
        .map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        })
        .collect();
    let command = if args.is_empty() {
        c.path.clone()
    } else {
        format!("{} {}", c.path, args.join(" "))
    };
    let network_mode = match c.spec.host.network_mode.as_str() {
        "" => "default",
        m => m,
    };
    let mut out = json!({
        "Id": c.id,
        "Names": [format!("/{}", c.name)],
        "Image": image,
        "ImageID": c.image_id,
        "Command": command,
        "Created": polis_image::config::parse_rfc3339(&c.created).unwrap_or(0),
        "Ports": [],
        "Labels": row.labels,
        "State": row.state,
        "Status": row.status(),
        "HostConfig": { "NetworkMode": network_mode },
        "NetworkSettings": { "Networks": {} },
        "Mounts": polis_engine::mounts::mount_points(&c.spec, &state.layout.root),
    });
    if size {
        let rw = polis_storage::Snapshotter::new(state.layout.snapshots())
            .and_then(|s| s.changes_size(&c.id))
            .map(|n| n as i64)
            .unwrap_or(-1);
        let image_size = state
            .images
            .resolve(&c.image_id)
            .and_then(|id| state.images.record(&id))
            .map(|r| r.size as i64)
            .unwrap_or(0);
        if rw > 0 {
            out["SizeRw"] = json!(rw);
        }
        let root = image_size + rw.max(0);
        if root > 0 {
            out["SizeRootFs"] = json!(root);
        }
    }
    out
}
