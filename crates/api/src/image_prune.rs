//! `POST /images/prune?filters=` (`docker image prune [-a]`): removes the dangling images,
//! or with `dangling=false` every image no container uses (stopped ones included), within
//! the `until` and `label` / `label!` filters, then the snapshots no image needs; reports
//! Docker's Untagged/Deleted lines and the bytes freed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::filters::Filters;
use crate::images::{collect_snapshots, dangling_filter, image_users, removed_json};
use crate::versioning::error;
use crate::AppState;

/// One image prune at a time, as Docker.
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
    let filters = match Filters::from_query(&q, &["dangling", "label", "label!", "until"]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let dangling_only = match dangling_filter(&filters, &["true", "1"], &["false", "0"]) {
        Ok(d) => d.unwrap_or(true),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let until = match crate::filters::until(&filters) {
        Ok(u) => u,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if RUNNING.swap(true, Ordering::SeqCst) {
        return error(StatusCode::CONFLICT, "a prune operation is already running");
    }
    let running = Running;
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        let users = image_users(&st).map_err(|e| e.to_string())?;
        let using = |id: &polis_image::ImageId| users.get(id.as_str()).cloned();
        let mut items = Vec::new();
        let mut bytes = 0;
        for image in st.images.list().map_err(|e| e.to_string())? {
            if until.is_some_and(|u| image.created > u)
                || !filters.match_labels("label", &image.labels)
                || (filters.contains("label!") && filters.match_labels("label!", &image.labels))
                || users.contains_key(image.id.as_str())
            {
                continue;
            }
            // Dangling: no tag (digest references alone do not keep an image).
            if dangling_only && !image.repo_tags.is_empty() {
                continue;
            }
            let names: Vec<String> = if image.repo_tags.is_empty() && image.repo_digests.is_empty()
            {
                vec![image.id.to_string()]
            } else {
                image
                    .repo_tags
                    .iter()
                    .chain(&image.repo_digests)
                    .cloned()
                    .collect()
            };
            for name in names {
                let doomed = crate::events::doomed(&st, &name);
                // Gone with an earlier reference, or taken by a new container: skipped.
                match st.images.remove_reclaiming(&name, false, &using) {
                    Ok(r) => {
                        crate::events::removed(&st, doomed, &r.items);
                        items.extend(r.items);
                        bytes += r.bytes;
                    }
                    Err(e) => tracing::debug!(image = %name, error = %e, "prune skipped"),
                }
            }
        }
        Ok::<_, String>((items, bytes))
    })
    .await;
    let (items, mut bytes) = match result {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if !items.is_empty() {
        bytes += collect_snapshots(&state).await;
    }
    drop(running);
    crate::events::pruned(&state, "image", bytes);
    let deleted = if items.is_empty() {
        serde_json::Value::Null
    } else {
        json!(removed_json(items))
    };
    Json(json!({ "ImagesDeleted": deleted, "SpaceReclaimed": bytes })).into_response()
}
