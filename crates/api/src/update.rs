//! `POST /containers/{id}/update` (`docker update`): new cgroup limits, applied live,
//! and a new restart policy. Fields this daemon does not apply are refused by name.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use polis_engine::update::{self, UpdateConfig};
use serde_json::json;

use crate::containers::engine_error;
use crate::containers::unset;
use crate::versioning::error;
use crate::AppState;

/// The fields of the update body Polis applies.
const APPLIED: [&str; 11] = [
    "Memory",
    "MemorySwap",
    "MemoryReservation",
    "NanoCpus",
    "CpuShares",
    "CpuPeriod",
    "CpuQuota",
    "CpusetCpus",
    "CpusetMems",
    "PidsLimit",
    "RestartPolicy",
];

/// Not set, down to the leaves: the CLI sends every resource field of an update, its
/// objects filled with zero values.
fn unset_deep(v: &serde_json::Value) -> bool {
    unset(v) || v.as_object().is_some_and(|o| o.values().all(unset_deep))
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let raw: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON in request body: {e}"),
            )
        }
    };
    if let Some((k, _)) = raw
        .iter()
        .find(|(k, v)| !APPLIED.contains(&k.as_str()) && !unset_deep(v))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{k} cannot be updated by this daemon yet"),
        );
    }
    let request: UpdateConfig = match serde_json::from_value(raw.into()) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("update: {e}")),
    };
    let (st, name) = (state.clone(), key.clone());
    let result = tokio::task::spawn_blocking(move || {
        update::update(&st.layout, &st.metadata, &key, &request)
    })
    .await;
    match result {
        Ok(Ok(warnings)) => {
            if let Ok(c) = state.metadata.find(&name) {
                crate::events::container(&state, &c, "update");
            }
            Json(json!({ "Warnings": warnings })).into_response()
        }
        Ok(Err(e)) => engine_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
