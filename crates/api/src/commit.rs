//! `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=` (`docker
//! commit`): the container's changes become a new image; the body may carry config
//! overrides. Answers `{"Id":"sha256:…"}`.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use polis_engine::commit::{self, CommitRequest};
use polis_image::config::ContainerConfig;
use serde_json::{json, Value};

use crate::containers::{blocking, find};
use crate::versioning::error;
use crate::AppState;

/// The body's config: Docker's container config, whose `Cmd` and `Entrypoint` may be a
/// string; empty means none.
fn body_config(body: &[u8]) -> Result<ContainerConfig, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ContainerConfig::default());
    }
    let mut v: Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON in request body: {e}"))?;
    if v.is_null() {
        return Ok(ContainerConfig::default());
    }
    for key in ["Cmd", "Entrypoint"] {
        if let Some(s) = v[key].as_str().map(str::to_string) {
            v[key] = json!([s]);
        }
    }
    serde_json::from_value(v).map_err(|e| format!("invalid config in request body: {e}"))
}

pub async fn commit(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or_default()).unwrap_or_default();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let Some(key) = get("container") else {
        return error(StatusCode::NOT_FOUND, "No such container: ");
    };
    let config = match body_config(&body) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let reference = match (get("repo"), get("tag")) {
        (Some(r), Some(t)) => Some(format!("{r}:{t}")),
        (Some(r), None) => Some(r),
        (None, Some(_)) => {
            return error(StatusCode::BAD_REQUEST, "tag is given without a repository")
        }
        (None, None) => None,
    };
    // Docker pauses by default; pause=0 (or false) does not.
    let pause = !matches!(get("pause").as_deref(), Some("0" | "false" | "False"));
    let request = CommitRequest {
        config,
        changes: pairs
            .iter()
            .filter(|(k, v)| k == "changes" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect(),
        author: get("author"),
        comment: get("comment"),
        reference,
        pause,
    };
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (st, committed) = (state.clone(), c.clone());
    let (comment, reference) = (
        request.comment.clone().unwrap_or_default(),
        request.reference.clone(),
    );
    match blocking(move || commit::commit(&st.layout, &st.images, &c, request)).await {
        Ok(id) => {
            // As Docker: the new image's tag, then the commit.
            let image_ref = match &reference {
                Some(r) => polis_image::Reference::parse(r).map_or(r.clone(), |r| r.familiar()),
                None => String::new(),
            };
            if !image_ref.is_empty() {
                crate::events::image(&state, "tag", id.as_str(), &image_ref);
            }
            let attrs = [
                ("comment", comment),
                ("imageID", id.as_str().to_string()),
                ("imageRef", image_ref),
            ];
            crate::events::container_with(&state, &committed, "commit", &attrs);
            (StatusCode::CREATED, Json(json!({ "Id": id.as_str() }))).into_response()
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_forms() {
        assert_eq!(body_config(b"").unwrap(), ContainerConfig::default());
        assert_eq!(body_config(b"null").unwrap(), ContainerConfig::default());
        let c = body_config(br#"{"Cmd":"sh","Hostname":"x","Env":["A=1"]}"#).unwrap();
        assert_eq!(c.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(c.env, Some(vec!["A=1".to_string()]));
        assert!(body_config(b"{").is_err());
    }
}
