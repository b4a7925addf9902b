//! The image endpoints: import, list, inspect, history, tag, remove, save and load,
//! over the local image store. Store work is blocking: it runs on the blocking pool,
//! and request and response bodies are streamed, never held whole in memory.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::TryStreamExt;
use polis_image::Error as ImageError;
use serde_json::json;
use tokio_util::io::{ReaderStream, StreamReader, SyncIoBridge};

use crate::filters::{path_match, Filters};
use crate::versioning::error;
use crate::AppState;

/// Docker's status code for each store error.
pub fn image_error(e: ImageError) -> Response {
    let status = match &e {
        ImageError::ImageNotFound(_) | ImageError::BlobNotFound(_) | ImageError::NotLocal(_) => {
            StatusCode::NOT_FOUND
        }
        ImageError::InvalidReference(_)
        | ImageError::InvalidDigest(_)
        | ImageError::InvalidArchive(_)
        | ImageError::DigestMismatch { .. }
        | ImageError::InvalidMetadata { .. }
        | ImageError::AmbiguousId(_) => StatusCode::BAD_REQUEST,
        ImageError::ManifestUnknown(_) => StatusCode::NOT_FOUND,
        ImageError::UnsupportedManifest(_) => StatusCode::BAD_REQUEST,
        ImageError::Conflict(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ImageError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(image_error),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// A request body as a blocking reader, for use on the blocking pool.
pub(crate) fn body_reader(body: Body) -> impl Read + Send + 'static {
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    SyncIoBridge::new(StreamReader::new(stream))
}

/// All query values of a key (`names=a&names=b`).
fn query_all(raw: Option<&str>, key: &str) -> Vec<String> {
    url_pairs(raw.unwrap_or_default())
        .into_iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect()
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default()
}

fn truthy(q: &HashMap<String, String>, key: &str) -> bool {
    matches!(q.get(key).map(String::as_str), Some("1" | "true" | "True"))
}

/// `POST /images/create`: `fromImage=` pulls from a registry, `fromSrc=-` imports the
/// request body.
pub async fn create(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let pairs = url_pairs(raw.as_deref().unwrap_or_default());
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    if let Some(from) = get("fromImage") {
        return crate::registry::pull(state, from, get("tag"), get("platform"), &headers).await;
    }
    match get("fromSrc").as_deref() {
        Some("-") => {}
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("import from {other:?}: only the request body (fromSrc=-) is supported"),
            )
        }
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "either fromImage (pull) or fromSrc (import) is required",
            )
        }
    }
    let reference = match (get("repo"), get("tag")) {
        (Some(r), Some(t)) if !r.is_empty() && !t.is_empty() => Some(format!("{r}:{t}")),
        (Some(r), _) if !r.is_empty() => Some(r),
        _ => None,
    };
    let changes = query_all(raw.as_deref(), "changes");
    let message = get("message");
    let tagged = reference.clone();
    let store = state.images.clone();
    let mut reader = body_reader(body);
    let result = blocking(move || {
        store.import(
            &mut reader,
            reference.as_deref(),
            &changes,
            message.as_deref(),
        )
    })
    .await;
    match result {
        Ok(id) => {
            crate::events::imported(&state, &id, tagged.as_deref());
            Json(json!({ "status": id.as_str() })).into_response()
        }
        Err(r) => r,
    }
}

/// `GET /images/json?filters=`: Docker's `dangling`, `label`, `before`, `since` and
/// `reference` filters. (Every image is a top-level one here, so `all` shows no more.)
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filters =
        match Filters::from_query(&q, &["dangling", "label", "before", "since", "reference"]) {
            Ok(f) => f,
            Err(r) => return r,
        };
    let dangling = match dangling_filter(&filters, &["true"], &["false"]) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let store = state.images.clone();
    let result = blocking(move || {
        // The creation time of the image a before/since value names.
        let created_of = |key: &str| -> Result<Option<i64>, ImageError> {
            match filters.values(key).last() {
                None => Ok(None),
                Some(name) => {
                    let id = store.resolve(name)?;
                    let rec = store.record(&id)?;
                    Ok(Some(
                        rec.created
                            .as_deref()
                            .and_then(polis_image::config::parse_rfc3339)
                            .unwrap_or(0),
                    ))
                }
            }
        };
        let before = created_of("before")?;
        let since = created_of("since")?;
        let patterns = filters.values("reference");
        let mut out = Vec::new();
        for mut i in store.list()? {
            if before.is_some_and(|b| i.created >= b) || since.is_some_and(|s| i.created <= s) {
                continue;
            }
            if filters.contains("label") && !filters.match_labels("label", &i.labels) {
                continue;
            }
            if !patterns.is_empty() {
                let keep = |r: &String| -> Result<bool, ImageError> {
                    for p in &patterns {
                        if reference_matches(p, r).map_err(ImageError::InvalidReference)? {
                            return Ok(true);
                        }
                    }
                    Ok(false)
                };
                let mut tags = Vec::new();
                for t in i.repo_tags.drain(..) {
                    if keep(&t)? {
                        tags.push(t);
                    }
                }
                let mut digests = Vec::new();
                for d in i.repo_digests.drain(..) {
                    if keep(&d)? {
                        digests.push(d);
                    }
                }
                if tags.is_empty() && digests.is_empty() {
                    continue;
                }
                (i.repo_tags, i.repo_digests) = (tags, digests);
            }
            let is_dangling = i.repo_tags.is_empty() && i.repo_digests.is_empty();
            match dangling {
                Some(false) if is_dangling => continue,
                Some(true) if !i.repo_tags.is_empty() => continue,
                _ => {}
            }
            out.push(i);
        }
        Ok(out)
    })
    .await;
    let images = match result {
        Ok(images) => images,
        Err(r) => return r,
    };
    // Sizes as df counts them (unpacked files), measured once per layer.
    let st = state.clone();
    let sized = tokio::task::spawn_blocking(move || {
        let snapshots = st.layout.snapshotter().ok();
        images
            .into_iter()
            .map(|i| {
                let unpacked = snapshots
                    .as_ref()
                    .and_then(|s| crate::df::image_size(&st, s, i.id.as_str()));
                let size = unpacked.unwrap_or(i.size as i64);
                (i, size)
            })
            .collect::<Vec<_>>()
    })
    .await;
    match sized.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())) {
        Ok(images) => {
            let out: Vec<_> = images
                .into_iter()
                .map(|(i, size)| {
                    json!({
                        "Id": i.id.as_str(),
                        "ParentId": "",
                        "RepoTags": i.repo_tags,
                        "RepoDigests": i.repo_digests,
                        "Created": i.created,
                        "Size": size,
                        "VirtualSize": size,
                        "SharedSize": -1,
                        "Labels": i.labels,
                        "Containers": -1,
                    })
                })
                .collect();
            Json(out).into_response()
        }
        Err(r) => r,
    }
}

/// The `dangling` filter: Some(true) for one of `yes`, Some(false) for one of `no`, None
/// when absent; anything else is refused as Docker refuses it.
pub(crate) fn dangling_filter(
    filters: &Filters,
    yes: &[&str],
    no: &[&str],
) -> Result<Option<bool>, String> {
    if !filters.contains("dangling") {
        return Ok(None);
    }
    if yes.iter().any(|v| filters.exact_match("dangling", v)) {
        return Ok(Some(true));
    }
    if no.iter().any(|v| filters.exact_match("dangling", v)) {
        return Ok(Some(false));
    }
    Err(format!(
        "Invalid filter 'dangling=[{}]'",
        filters.values("dangling").join(" ")
    ))
}

/// Docker's `FamiliarMatch`: the glob `pattern` against `repo:tag` (or `repo@digest`),
/// then against the repository alone.
fn reference_matches(pattern: &str, reference: &str) -> Result<bool, String> {
    if path_match(pattern, reference)? {
        return Ok(true);
    }
    let repo = match reference.split_once('@') {
        Some((repo, _)) => repo,
        None => {
            let name_start = reference.rfind('/').map_or(0, |i| i + 1);
            match reference[name_start..].rfind(':') {
                Some(i) => &reference[..name_start + i],
                None => reference,
            }
        }
    };
    path_match(pattern, repo)
}

/// `GET /images/get?names=…`: a docker-archive, streamed as it is written.
pub async fn save(State(state): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    let names = query_all(raw.as_deref(), "names");
    if names.is_empty() {
        return error(StatusCode::BAD_REQUEST, "no image names given");
    }
    // Resolve first, so a missing image is a clean 404 rather than a cut stream.
    for n in &names {
        if let Err(e) = state.images.resolve(n) {
            return image_error(e);
        }
    }
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let store = state.images.clone();
    let mut sink = SyncIoBridge::new(writer);
    let saving = crate::events::saving(&state, &names);
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        match store.save(&refs, &mut sink) {
            Ok(()) => saving.done(),
            Err(e) => tracing::warn!(error = %e, "image save failed mid-stream"),
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(ReaderStream::new(reader)),
    )
        .into_response()
}

/// `POST /images/load`: a docker-archive or OCI layout in the request body.
pub async fn load(State(state): State<Arc<AppState>>, body: Body) -> Response {
    let store = state.images.clone();
    let mut reader = body_reader(body);
    match blocking(move || store.load(&mut reader)).await {
        Ok(loaded) => {
            crate::events::loaded(&state, &loaded);
            let mut lines = String::new();
            for image in loaded {
                if image.references.is_empty() {
                    let msg = format!("Loaded image ID: {}\n", image.id.as_str());
                    lines.push_str(&json!({ "stream": msg }).to_string());
                }
                for r in image.references {
                    let msg = format!("Loaded image: {}\n", r.familiar());
                    lines.push_str(&json!({ "stream": msg }).to_string());
                }
            }
            ([(header::CONTENT_TYPE, "application/json")], lines).into_response()
        }
        Err(r) => r,
    }
}

/// Everything under `/images/{name}…`: names may contain slashes, so the action is the
/// last path element (`json`, `history`, `tag`).
pub async fn by_name_get(State(state): State<Arc<AppState>>, Path(rest): Path<String>) -> Response {
    let store = state.images.clone();
    if let Some(name) = rest.strip_suffix("/json") {
        let name = name.to_string();
        let st = state.clone();
        return match blocking(move || {
            let mut i = store.inspect(&name)?;
            // The size `docker images` shows.
            if let Some(n) = st
                .layout
                .snapshotter()
                .ok()
                .and_then(|s| crate::df::image_size(&st, &s, &i.id))
            {
                i.size = n as u64;
            }
            Ok(i)
        })
        .await
        {
            Ok(i) => Json(i).into_response(),
            Err(r) => r,
        };
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let name = name.to_string();
        let st = state.clone();
        let history = move || {
            // Docker's sizes: each layer unpacked.
            let sizes = st.layout.snapshotter().ok().and_then(|s| {
                let id = st.images.resolve(&name).ok()?;
                crate::df::layer_sizes(&st, &s, id.as_str())
            });
            store.history_sized(&name, sizes.as_deref())
        };
        return match blocking(history).await {
            Ok(items) => {
                let out: Vec<_> = items
                    .into_iter()
                    .map(|h| {
                        json!({
                            "Id": h.id, "Created": h.created, "CreatedBy": h.created_by,
                            "Tags": h.tags, "Size": h.size, "Comment": h.comment,
                        })
                    })
                    .collect();
                Json(out).into_response()
            }
            Err(r) => r,
        };
    }
    error(
        StatusCode::NOT_FOUND,
        format!("page not found: /images/{rest}"),
    )
}

pub async fn by_name_post(
    State(state): State<Arc<AppState>>,
    Path(rest): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(name) = rest.strip_suffix("/push") {
        let tag = q.get("tag").cloned();
        return crate::registry::push(state, name.to_string(), tag, &headers).await;
    }
    let Some(name) = rest.strip_suffix("/tag") else {
        return error(
            StatusCode::NOT_FOUND,
            format!("page not found: /images/{rest}"),
        );
    };
    let Some(repo) = q.get("repo").filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "repository name must have at least one component",
        );
    };
    let target = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.clone(),
    };
    let (store, name) = (state.images.clone(), name.to_string());
    match blocking(move || store.tag(&name, &target)).await {
        Ok(r) => {
            crate::events::tagged(&state, &r);
            StatusCode::CREATED.into_response()
        }
        Err(r) => r,
    }
}

/// What a boxed handler returns.
type Responding = std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// `DELETE /images/NAME` for an image whose name is one of the fixed routes.
pub fn remove_fixed(
    name: &'static str,
) -> impl Fn(State<Arc<AppState>>, Query<HashMap<String, String>>) -> Responding
       + Clone
       + Send
       + Sync
       + 'static {
    move |state, query| Box::pin(remove(state, Path(name.to_string()), query))
}

pub async fn remove(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let force = truthy(&q, "force");
    let doomed = crate::events::doomed(&state, &name);
    let st = state.clone();
    let removal = match tokio::task::spawn_blocking(move || {
        let users = image_users(&st).map_err(crate::containers::engine_error)?;
        st.images
            .remove_reclaiming(&name, force, &|id| users.get(id.as_str()).cloned())
            .map_err(image_error)
    })
    .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(r)) => return r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    crate::events::removed(&state, doomed, &removal.items);
    if removal
        .items
        .iter()
        .any(|r| matches!(r, polis_image::Removed::Deleted(_)))
    {
        collect_snapshots(&state).await;
    }
    Json(removed_json(removal.items)).into_response()
}

/// Docker's `[{"Untagged": …}, {"Deleted": …}]`.
pub(crate) fn removed_json(items: Vec<polis_image::Removed>) -> Vec<serde_json::Value> {
    items
        .into_iter()
        .map(|r| match r {
            polis_image::Removed::Untagged(t) => json!({ "Untagged": t }),
            polis_image::Removed::Deleted(d) => json!({ "Deleted": d }),
        })
        .collect()
}

/// The container that uses each image (by image ID): a running one if there is one,
/// as removal conflicts name it.
pub(crate) fn image_users(
    state: &AppState,
) -> Result<HashMap<String, polis_image::ImageUser>, polis_engine::Error> {
    let mut users: HashMap<String, polis_image::ImageUser> = HashMap::new();
    for c in state.metadata.containers()? {
        if users.get(&c.image_id).is_some_and(|u| u.running) {
            continue;
        }
        let live = polis_engine::containers::state(&state.layout, &c.id);
        let running = matches!(live.status.as_str(), "running" | "paused")
            || state.restarts.restarting(&c.id).is_some();
        users.insert(
            c.image_id.clone(),
            polis_image::ImageUser { id: c.id, running },
        );
    }
    Ok(users)
}

/// Removes the snapshots no image needs any more; returns the bytes they took. Failures
/// are logged: the images are gone either way, and the next collection tries again.
pub(crate) async fn collect_snapshots(state: &Arc<AppState>) -> u64 {
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        polis_engine::snapshot_gc::remove_unused(&st.layout, &st.images)
    })
    .await;
    match result {
        Ok(Ok(report)) => {
            for e in &report.errors {
                tracing::warn!(error = %e, "snapshot removal failed");
            }
            report.bytes
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "snapshot collection failed");
            0
        }
        Err(e) => {
            tracing::warn!(error = %e, "snapshot collection failed");
            0
        }
    }
}
