//! `GET /events?since=&until=&filters=`: the past events asked for, then the live ones,
//! one JSON object per chunk, each sent as it happens. With `until` in the past the
//! stream ends after the past events; in the future, at that time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

use super::filter::{EventFilter, KEYS};
use super::{Listener, Message};
use crate::filters::Filters;
use crate::versioning::error;
use crate::AppState;

/// A `since`/`until` value in nanoseconds: Docker's `SECONDS[.FRACTION]` (what the docker
/// CLI sends once it has converted its input), or what the CLI would have converted: a
/// Go duration back from `now`, an RFC 3339 time, a date.
pub fn event_time(value: &str, now: i128) -> Result<Option<i128>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = crate::clock::parse_unix(value) {
        return Ok(Some(t));
    }
    if let Some(secs) = crate::filters::go_duration(value) {
        return Ok(Some(now - i128::from(secs) * 1_000_000_000));
    }
    let full = match value.len() {
        10 => format!("{value}T00:00:00Z"),
        19 => format!("{value}Z"),
        _ => value.to_string(),
    };
    crate::clock::parse_rfc3339(&full)
        .map(Some)
        .ok_or_else(|| format!("failed to parse value as time or duration: {value:?}"))
}

fn clamp(t: i128) -> i64 {
    i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
}

/// One subscriber's stream.
struct Feed {
    past: std::vec::IntoIter<Arc<Message>>,
    /// None when only past events were asked for.
    live: Option<tokio::sync::broadcast::Receiver<Arc<Message>>>,
    filter: EventFilter,
    since: Option<i64>,
    deadline: Option<Instant>,
    _listener: Listener,
}

impl Feed {
    async fn next(&mut self) -> Option<Arc<Message>> {
        if let Some(m) = self.past.next() {
            return Some(m);
        }
        let live = self.live.as_mut()?;
        loop {
            let received = match self.deadline {
                Some(end) => tokio::select! {
                    r = live.recv() => r,
                    () = tokio::time::sleep_until(end) => return None,
                },
                None => live.recv().await,
            };
            match received {
                Ok(m) if self.filter.include(&m) && self.since.is_none_or(|s| m.time_nano >= s) => {
                    return Some(m)
                }
                Ok(_) => {}
                // A subscriber too slow to keep up misses events, as with Docker.
                Err(RecvError::Lagged(n)) => tracing::debug!(missed = n, "event subscriber behind"),
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

pub async fn events(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = crate::clock::now_nanos();
    let raw = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let (since, until) = match (event_time(raw("since"), now), event_time(raw("until"), now)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    if let Some(u) = until {
        if u < since.unwrap_or(0) {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "`since` time ({}) cannot be after `until` time ({})",
                    raw("since"),
                    raw("until")
                ),
            );
        }
    }
    let filter = match Filters::from_query(&q, &KEYS) {
        Ok(f) => EventFilter::new(f),
        Err(r) => return r,
    };
    let sub = state
        .events
        .subscribe(since.map(clamp), until.map(clamp), &filter);
    let only_past = until.is_some_and(|u| u < now);
    let deadline = until.filter(|_| !only_past).map(|u| {
        let wait = u64::try_from(u - now).unwrap_or(u64::MAX);
        Instant::now() + Duration::from_nanos(wait)
    });
    let feed = Feed {
        past: sub.past.into_iter(),
        live: (!only_past).then_some(sub.live),
        filter,
        since: since.map(clamp),
        deadline,
        _listener: sub.listener,
    };
    let body = futures_util::stream::unfold(feed, |mut feed| async move {
        let m = feed.next().await?;
        let mut line = serde_json::to_string(&*m).unwrap_or_default();
        line.push('\n');
        Some((Ok::<_, std::io::Error>(line), feed))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_the_cli_sends_them_and_more() {
        let now = 2_000_000_000_000_000_000i128;
        assert_eq!(event_time("", now), Ok(None));
        assert_eq!(
            event_time("1700000000.5", now),
            Ok(Some(1_700_000_000_500_000_000))
        );
        assert_eq!(
            event_time("1700000000", now),
            Ok(Some(1_700_000_000_000_000_000))
        );
        assert_eq!(event_time("10m", now), Ok(Some(now - 600_000_000_000)));
        assert_eq!(
            event_time("1970-01-01T00:01:00.25Z", now),
            Ok(Some(60_250_000_000))
        );
        assert_eq!(event_time("1970-01-02", now), Ok(Some(86_400_000_000_000)));
        assert!(event_time("soon", now).unwrap_err().contains("\"soon\""));
    }
}
