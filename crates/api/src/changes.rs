//! `GET /containers/{id}/changes` (`docker diff`): what the container changed in its
//! file system, from its overlay upper directory, in Docker's order and numbers
//! (0 modified, 1 added, 2 deleted).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use polis_engine::Error as EngineError;
use serde_json::{json, Value};

use crate::containers::{blocking, find};
use crate::AppState;

pub async fn changes(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let st = state.clone();
    let list = blocking(move || {
        polis_storage::Snapshotter::new(st.layout.snapshots())
            .and_then(|s| s.changes(&c.id))
            .map_err(EngineError::Storage)
    })
    .await;
    match list {
        // Docker answers null, not [], when nothing changed.
        Ok(list) if list.is_empty() => Json(Value::Null).into_response(),
        Ok(list) => {
            let out: Vec<Value> = list
                .into_iter()
                .map(|ch| json!({ "Path": ch.path, "Kind": ch.kind as u8 }))
                .collect();
            Json(out).into_response()
        }
        Err(r) => r,
    }
}
