//! `GET /containers/{id}/stats` (`docker stats`): one JSON object (`stream=false`,
//! two readings a second apart so the CPU share can be computed; `one-shot=true` skips
//! the first) or one per second (`stream=true`) until the client goes or the container
//! is removed. A container that is not running gives Docker's empty stats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use polis_engine::containers;
use polis_engine::stats::{frame, sample, Sample};

use crate::containers::{blocking, docker_status, find, find_live};
use crate::AppState;

const INTERVAL: Duration = Duration::from_secs(1);

/// A reading of container `key`, or None when it is not running; Err once it is gone.
async fn read(
    state: &Arc<AppState>,
    key: &str,
) -> Result<(String, String, Option<Sample>), Response> {
    let c = find(state, key)?;
    let st = state.clone();
    blocking(move || {
        let live = containers::state(&st.layout, &c.id);
        let sample = match docker_status(&live, None).0 {
            "running" | "paused" => match sample(&st.layout, &c.id, live.pid) {
                Ok(s) => Some(s),
                // It stopped while we read its cgroup: nothing to report.
                Err(_)
                    if docker_status(&containers::state(&st.layout, &c.id), None).0 == "exited" =>
                {
                    None
                }
                Err(e) => return Err(e),
            },
            _ => None,
        };
        Ok((c.name, c.id, sample))
    })
    .await
}

pub async fn stats(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let flag = |k: &str, default: bool| match q.get(k).map(String::as_str) {
        Some("1" | "true" | "True") => true,
        Some("0" | "false" | "False") => false,
        _ => default,
    };
    let stream = flag("stream", true);
    let one_shot = flag("one-shot", false);
    let (c, live) = match find_live(&state, &key).await {
        Ok(found) => found,
        Err(r) => return r,
    };
    if !stream {
        if !matches!(docker_status(&live, None).0, "running" | "paused") {
            return Json(frame(&c.name, &c.id, None, None)).into_response();
        }
        let first = match read(&state, &c.id).await {
            Ok((_, _, s)) => s,
            Err(r) => return r,
        };
        if one_shot {
            return Json(frame(&c.name, &c.id, first.as_ref(), None)).into_response();
        }
        tokio::time::sleep(INTERVAL).await;
        return match read(&state, &c.id).await {
            Ok((name, id, second)) => {
                Json(frame(&name, &id, second.as_ref(), first.as_ref())).into_response()
            }
            Err(r) => r,
        };
    }
    let id = c.id.clone();
    let frames = futures_util::stream::unfold(
        (state, id, None::<Sample>, true),
        |(state, id, previous, first)| async move {
            if !first {
                tokio::time::sleep(INTERVAL).await;
            }
            // The container removed: the stream ends.
            let (name, cid, current) = read(&state, &id).await.ok()?;
            let mut line =
                serde_json::to_vec(&frame(&name, &cid, current.as_ref(), previous.as_ref()))
                    .unwrap_or_default();
            line.push(b'\n');
            Some((Ok::<_, std::io::Error>(line), (state, id, current, false)))
        },
    );
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(frames),
    )
        .into_response()
}
