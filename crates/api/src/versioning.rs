//! API versions: clients send `/v1.NN/…`; requests outside the versions we speak are
//! refused with Docker's message, and the prefix is dropped before routing.

use axum::extract::Request;
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const MIN_API_VERSION: (u32, u32) = (1, 24);
pub const MAX_API_VERSION: (u32, u32) = (1, 47);

pub fn format_version(v: (u32, u32)) -> String {
    format!("{}.{}", v.0, v.1)
}

/// `/v1.41/info` → (Some((1, 41)), "/info"); `/info` → (None, "/info").
pub fn split_version(path: &str) -> Option<(Option<(u32, u32)>, &str)> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Some((None, path));
    };
    let (version, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (major, minor) = version.split_once('.')?;
    Some((Some((major.parse().ok()?, minor.parse().ok()?)), tail))
}

/// The API version a request was made with (its `/vX.Y` prefix), for handlers whose
/// behaviour changed between versions; unversioned requests get the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RequestVersion(pub (u32, u32));

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "message": message.into() });
    (status, axum::Json(body)).into_response()
}

pub async fn strip_version_prefix(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let Some((version, tail)) = split_version(&path) else {
        return next.run(req).await;
    };
    if let Some(v) = version {
        if v > MAX_API_VERSION {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "client version {} is too new. Maximum supported API version is {}",
                    format_version(v),
                    format_version(MAX_API_VERSION)
                ),
            );
        }
        if v < MIN_API_VERSION {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "client version {} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                    format_version(v),
                    format_version(MIN_API_VERSION)
                ),
            );
        }
        let pq = match req.uri().query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_string(),
        };
        if let Ok(uri) = pq.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
        req.extensions_mut().insert(RequestVersion(v));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_versions() {
        assert_eq!(split_version("/v1.41/info"), Some((Some((1, 41)), "/info")));
        assert_eq!(split_version("/_ping"), Some((None, "/_ping")));
        assert_eq!(split_version("/v1.41"), Some((Some((1, 41)), "/")));
        assert_eq!(split_version("/vx/info"), None);
    }
}
