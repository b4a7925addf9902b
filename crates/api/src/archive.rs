//! `docker cp` and `docker export`: `HEAD`/`GET`/`PUT /containers/{id}/archive?path=`
//! (stat, archive out, extract in) and `GET /containers/{id}/export`, on running and
//! stopped containers alike. The file system work is the engine's (resolved inside the
//! container's rootfs); tars are streamed, never held whole in memory.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use polis_engine::archive::{self, ExtractOptions, PathStat};
use polis_engine::Error as EngineError;
use tokio_util::io::{ReaderStream, SyncIoBridge};

use crate::containers::{blocking, find};
use crate::versioning::error;
use crate::AppState;

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// Standard base64 with padding, for the stat header.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn stat_header(stat: &PathStat) -> String {
    base64(&serde_json::to_vec(stat).unwrap_or_default())
}

fn path_param(q: &HashMap<String, String>) -> Result<String, Response> {
    match q.get("path") {
        Some(p) if !p.is_empty() => Ok(p.clone()),
        _ => Err(error(StatusCode::BAD_REQUEST, "Path cannot be empty")),
    }
}

/// `HEAD /containers/{id}/archive?path=`: the path's stat in a header.
pub async fn head(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = match path_param(&q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let st = state.clone();
    let stat = blocking(move || {
        let rootfs = archive::mounted_rootfs(&st.layout, &c.id)?;
        archive::stat(&rootfs, &path, &key)
    })
    .await;
    match stat {
        Ok(stat) => (StatusCode::OK, [(STAT_HEADER, stat_header(&stat))]).into_response(),
        Err(r) => r,
    }
}

/// `GET /containers/{id}/archive?path=`: a tar of the path, its stat in a header.
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = match path_param(&q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let (st, id) = (state.clone(), c.id.clone());
    let resource = blocking(move || {
        let rootfs = archive::mounted_rootfs(&st.layout, &id)?;
        archive::open(&rootfs, &path, &key)
    })
    .await;
    let resource = match resource {
        Ok(r) => r,
        Err(r) => return r,
    };
    crate::events::container(&state, &c, "archive-path");
    let stat = stat_header(&resource.stat);
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let mut sink = SyncIoBridge::new(writer);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = resource.write_tar(&mut sink) {
            tracing::warn!(error = %e, "container archive failed mid-stream");
        }
    });
    (
        [
            (
                header::CONTENT_TYPE.as_str(),
                "application/x-tar".to_string(),
            ),
            (STAT_HEADER, stat),
        ],
        Body::from_stream(ReaderStream::new(reader)),
    )
        .into_response()
}

/// `PUT /containers/{id}/archive?path=`: extracts the tar of the body into the
/// directory `path`.
pub async fn put(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Body,
) -> Response {
    let path = match path_param(&q) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let flag = |k: &str| matches!(q.get(k).map(String::as_str), Some("1" | "true" | "True"));
    let no_overwrite = flag("noOverwriteDirNonDir");
    let copy_owner = flag("copyUIDGID");
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if c.spec.host.readonly_rootfs {
        return error(
            StatusCode::BAD_REQUEST,
            "container rootfs is marked read-only",
        );
    }
    let (st, copied) = (state.clone(), c.clone());
    let mut reader = crate::images::body_reader(body);
    let result = blocking(move || {
        let rootfs = archive::mounted_rootfs(&st.layout, &c.id)?;
        // `cp -a`: everything belongs to the container's user, as Docker does.
        let owner = if copy_owner {
            let user = polis_engine::commit::container_config(&st.images, &c)?
                .user
                .filter(|u| !u.is_empty());
            match user {
                Some(u) => {
                    let resolved =
                        polis_image::spec::resolve_user(&u, &rootfs).map_err(EngineError::Image)?;
                    Some((resolved.uid, resolved.gid))
                }
                None => None,
            }
        } else {
            None
        };
        let opts = ExtractOptions {
            no_overwrite_dir_non_dir: no_overwrite,
            owner,
        };
        archive::extract(&rootfs, &path, &key, opts, &mut reader)
    })
    .await;
    match result {
        Ok(()) => {
            crate::events::container(&state, &copied, "extract-to-dir");
            StatusCode::OK.into_response()
        }
        Err(r) => r,
    }
}

/// `GET /containers/{id}/export`: the container's whole file system as a tar.
pub async fn export(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    let c = match find(&state, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let st = state.clone();
    let id = c.id.clone();
    let rootfs = match blocking(move || archive::mounted_rootfs(&st.layout, &id)).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    crate::events::container(&state, &c, "export");
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let mut sink = SyncIoBridge::new(writer);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = archive::export(&rootfs, &mut sink) {
            tracing::warn!(container = %c.id, error = %e, "export failed mid-stream");
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-tar")],
        Body::from_stream(ReaderStream::new(reader)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_as_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
