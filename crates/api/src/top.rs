//! `GET /containers/{id}/top?ps_args=` (`docker top`): the container's processes as
//! the host's `ps` shows them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::containers::{blocking, docker_status, find_live};
use crate::versioning::error;
use crate::AppState;

pub async fn top(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (c, live) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if !matches!(docker_status(&live, None).0, "running" | "paused") {
        return error(
            StatusCode::CONFLICT,
            format!("Container {} is not running", c.id),
        );
    }
    let args = q.get("ps_args").cloned().unwrap_or_default();
    let (st, id) = (state.clone(), c.id.clone());
    match blocking(move || polis_engine::top::top(&st.layout, &id, &args)).await {
        Ok(top) => {
            crate::events::container(&state, &c, "top");
            Json(top).into_response()
        }
        Err(r) => r,
    }
}
