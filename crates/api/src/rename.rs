//! `POST /containers/{id}/rename?name=` (`docker rename`), with Docker's refusals: an
//! empty, invalid or unchanged name, or one another container has.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::containers::{blocking, find};
use crate::versioning::error;
use crate::AppState;

pub async fn rename(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let new = q.get("name").map(String::as_str).unwrap_or("");
    if new.is_empty() || key.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Neither old nor new names may be empty",
        );
    }
    let new = new.trim_start_matches('/').to_string();
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if c.name == new {
        return error(
            StatusCode::BAD_REQUEST,
            "Renaming a container with the same name as its current name",
        );
    }
    if !polis_engine::containers::valid_name(&new) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Error when allocating new name: Invalid container name (/{new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"),
        );
    }
    let st = state.clone();
    let (id, old) = (c.id.clone(), c.name.clone());
    let renamed = blocking(move || {
        let renamed = st.metadata.rename(&id, &new)?;
        st.networks.rename(&id, &new)?;
        Ok(renamed)
    });
    match renamed.await {
        Ok(c) => {
            let old = [("oldName", format!("/{old}"))];
            crate::events::container_with(&state, &c, "rename", &old);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}
