//! `POST /containers/prune?filters=` (`docker container prune`): removes every
//! container that is not running (nor paused), within the `until` and `label` /
//! `label!` filters; reports the ids and the bytes their changes took.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use polis_engine::containers;
use serde_json::json;

use crate::containers::blocking;
use crate::filters::{timestamp, Filters};
use crate::versioning::error;
use crate::AppState;

/// One prune at a time, as Docker.
static RUNNING: AtomicBool = AtomicBool::new(false);

struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::SeqCst);
    }
}

pub async fn prune(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filters = match Filters::from_query(&q, &["label", "label!", "until"]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let until = match filters.values("until").as_slice() {
        [] => None,
        [one] => match timestamp(one, now) {
            Ok(t) => Some(t),
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "more than one until filter specified",
            )
        }
    };
    if RUNNING.swap(true, Ordering::SeqCst) {
        return error(StatusCode::CONFLICT, "a prune operation is already running");
    }
    let guard = Running;
    let st = state.clone();
    let result = blocking(move || {
        let _guard = guard;
        let mut deleted = Vec::new();
        let mut reclaimed = 0u64;
        for row in crate::ps::rows(&st)? {
            if matches!(row.state, "running" | "paused") {
                continue;
            }
            let created = polis_image::config::parse_rfc3339(&row.c.created).unwrap_or(0);
            if until.is_some_and(|u| created > u) {
                continue;
            }
            if !filters.match_labels("label", &row.labels) {
                continue;
            }
            if filters.contains("label!") && filters.match_labels("label!", &row.labels) {
                continue;
            }
            let size = polis_storage::Snapshotter::new(st.layout.snapshots())
                .and_then(|s| s.changes_size(&row.c.id))
                .unwrap_or(0);
            match containers::remove(&st.layout, &st.metadata, &st.networks, &row.c, false) {
                Ok(()) => {
                    crate::events::destroyed(&st, &row.c);
                    crate::exec::forget_container(&st, &row.c.id);
                    reclaimed += size;
                    deleted.push(row.c.id);
                }
                Err(e) => {
                    tracing::warn!(container = %row.c.id, error = %e, "prune could not remove")
                }
            }
        }
        Ok((deleted, reclaimed))
    })
    .await;
    match result {
        Ok((deleted, reclaimed)) => {
            crate::events::pruned(&state, "container", reclaimed);
            let deleted = if deleted.is_empty() {
                serde_json::Value::Null
            } else {
                json!(deleted)
            };
            Json(json!({ "ContainersDeleted": deleted, "SpaceReclaimed": reclaimed }))
                .into_response()
        }
        Err(r) => r,
    }
}
