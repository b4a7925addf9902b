//! `GET /containers/{id}/logs`: the container's json-file log, its rotated files
//! first (oldest to newest), framed as Docker does without a terminal (raw with one).
//! `tail`, `since`, `until`, `timestamps` and `details` as Docker's; `follow` reads on
//! across rotations until the container stops.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use polis_engine::containers;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::versioning::error;
use crate::AppState;

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(100);

/// What the client asked for.
#[derive(Debug, Clone)]
struct Want {
    stdout: bool,
    stderr: bool,
    follow: bool,
    /// `None`: all.
    tail: Option<usize>,
    since: Option<i128>,
    until: Option<i128>,
    timestamps: bool,
    details: bool,
    tty: bool,
}

impl Want {
    fn parse(q: &HashMap<String, String>, tty: bool) -> Result<Want, String> {
        let flag = |k: &str| matches!(q.get(k).map(String::as_str), Some("1" | "true"));
        let time = |k: &str| -> Result<Option<i128>, String> {
            match q.get(k).map(String::as_str) {
                None | Some("") => Ok(None),
                // Docker's "no limit" for until.
                Some("0") if k == "until" => Ok(None),
                Some(v) => crate::clock::parse_unix(v).map(Some),
            }
        };
        let want = Want {
            stdout: flag("stdout"),
            stderr: flag("stderr"),
            follow: flag("follow"),
            // Docker: anything but a number (such as "all") means every line.
            tail: q
                .get("tail")
                .and_then(|t| t.parse::<i64>().ok())
                .and_then(|n| usize::try_from(n).ok()),
            since: time("since")?,
            until: time("until")?,
            timestamps: flag("timestamps"),
            details: flag("details"),
            tty,
        };
        if !want.stdout && !want.stderr {
            return Err("Bad parameters: you must choose at least one stream".into());
        }
        Ok(want)
    }
}

pub async fn logs(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let c = match state.metadata.find(&key) {
        Ok(c) => c,
        Err(e) => return crate::containers::engine_error(e),
    };
    if polis_engine::logconfig::driver_name(&c.spec.host.log_config) == "none" {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "configured logging driver does not support reading",
        );
    }
    let want = match Want::parse(&q, c.spec.tty) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let path = state.layout.log_path(&c.id);
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || stream_log(&state, &c.id, &path, &want, &tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Body::from_stream(stream).into_response()
}

/// Send the log, then (following) what comes, until the container stops or the client
/// goes away.
fn stream_log(
    state: &AppState,
    id: &str,
    path: &FsPath,
    want: &Want,
    tx: &mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
) {
    let mut reader = Reader::open(path);
    let mut records = reader.read_all();
    if let Some(n) = want.tail {
        records.drain(..records.len().saturating_sub(n));
    }
    if !send(tx, want, records) || !want.follow {
        return;
    }
    loop {
        let fresh = reader.read_new();
        if !send(tx, want, fresh) {
            return;
        }
        if want.until.is_some_and(|u| crate::clock::now_nanos() > u) {
            return;
        }
        let status = containers::state(&state.layout, id).status;
        if !matches!(status.as_str(), "running" | "created" | "paused") {
            // What was written before the exit.
            send(tx, want, reader.read_new());
            return;
        }
        if tx.is_closed() {
            return;
        }
        std::thread::sleep(POLL);
    }
}

/// Format and send the records the client wants; false once it is gone or `until`
/// is passed.
fn send(
    tx: &mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    want: &Want,
    records: Vec<Record>,
) -> bool {
    let mut out = Vec::new();
    let mut more = true;
    for r in records {
        let time = crate::clock::parse_rfc3339(&r.time);
        if let (Some(since), Some(t)) = (want.since, time) {
            if t < since {
                continue;
            }
        }
        if let (Some(until), Some(t)) = (want.until, time) {
            if t > until {
                more = false;
                break;
            }
        }
        let stderr = r.stream == "stderr";
        if (stderr && !want.stderr) || (!stderr && !want.stdout) {
            continue;
        }
        let mut line = Vec::new();
        if want.timestamps {
            line.extend_from_slice(fixed_nanos(&r.time).as_bytes());
            line.push(b' ');
        }
        if want.details {
            line.extend_from_slice(details(&r.attrs).as_bytes());
            line.push(b' ');
        }
        line.extend_from_slice(r.log.as_bytes());
        if !want.tty {
            out.extend_from_slice(&polis_shim::protocol::frame_header(
                if stderr { 2 } else { 1 },
                line.len(),
            ));
        }
        out.extend_from_slice(&line);
    }
    if !out.is_empty() && tx.blocking_send(Ok(out)).is_err() {
        return false;
    }
    more
}

/// Docker's RFC3339NanoFixed: always nine digits of fraction.
fn fixed_nanos(time: &str) -> String {
    let Some(base) = time.get(..19) else {
        return time.to_string();
    };
    let rest = &time[19..];
    let (frac, zone) = match rest.strip_prefix('.') {
        Some(f) => {
            let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            (&f[..end], &f[end..])
        }
        None => ("", rest),
    };
    format!("{base}.{frac:0<9}{zone}")
}

/// `--details`: the record's attributes as `k=v,k2=v2`, sorted, query-escaped.
fn details(attrs: &BTreeMap<String, String>) -> String {
    attrs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// One json-file record.
#[derive(Debug, Deserialize)]
struct Record {
    log: String,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    time: String,
    #[serde(default)]
    attrs: BTreeMap<String, String>,
}

/// Reads a json-file log and its rotations (`FILE.1` newest … `FILE.N` oldest) in
/// order, and on from where it stopped: a rotation (the live file renamed away) is
/// noticed by its inode, so nothing is read twice or skipped.
struct Reader {
    path: PathBuf,
    /// The file read last, its inode, and how far it was read.
    current: Option<(File, u64, u64)>,
    /// An unfinished last line.
    pending: Vec<u8>,
}

fn numbered(path: &FsPath, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn inode(path: &FsPath) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

impl Reader {
    fn open(path: &FsPath) -> Reader {
        Reader {
            path: path.to_path_buf(),
            current: None,
            pending: Vec::new(),
        }
    }

    /// Everything there is: the rotated files oldest first, then the live one.
    fn read_all(&mut self) -> Vec<Record> {
        // The live file first, so a rotation while the others are read shows up as its
        // inode among them (then it is read there, once).
        let live = File::open(&self.path).ok();
        let live_ino = live
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        let mut rotated = Vec::new();
        for n in 1.. {
            match File::open(numbered(&self.path, n)) {
                Ok(f) => rotated.push(f),
                Err(_) => break,
            }
        }
        let mut out = Vec::new();
        for mut f in rotated.into_iter().rev() {
            if f.metadata().ok().map(|m| m.ino()) == live_ino {
                continue;
            }
            out.extend(parse(&read_rest(&mut f)));
        }
        if let (Some(mut f), Some(ino)) = (live, live_ino) {
            let data = read_rest(&mut f);
            let (records, pending) = parse_complete(&data);
            out.extend(records);
            self.pending = pending;
            let pos = data.len() as u64;
            self.current = Some((f, ino, pos));
        }
        out
    }

    /// What was written since the last read, across rotations.
    fn read_new(&mut self) -> Vec<Record> {
        let Some((mut f, ino, pos)) = self.current.take() else {
            // No log file yet (a created container): start from whatever appears.
            return self.read_all();
        };
        let mut data = std::mem::take(&mut self.pending);
        // Rotation by truncation (max-file 1): start the file again.
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let pos = if size < pos {
            data.clear();
            0
        } else {
            pos
        };
        let _ = f.seek(SeekFrom::Start(pos));
        let mut fresh = read_rest(&mut f);
        let mut pos = pos + fresh.len() as u64;
        data.append(&mut fresh);
        let mut out = Vec::new();
        if inode(&self.path).is_some_and(|now| now != ino) {
            // Rotated: finish the old file (written up to the rename), then the files
            // rotated after it, then the new live one from its start.
            let mut tail = read_rest(&mut f);
            data.append(&mut tail);
            out.extend(parse(&data));
            data.clear();
            let mut newer = Vec::new();
            for n in 1.. {
                let p = numbered(&self.path, n);
                match inode(&p) {
                    Some(i) if i == ino => break,
                    Some(_) => newer.push(p),
                    None => break,
                }
            }
            for p in newer.into_iter().rev() {
                if let Ok(mut rf) = File::open(&p) {
                    out.extend(parse(&read_rest(&mut rf)));
                }
            }
            match File::open(&self.path) {
                Ok(mut live) => {
                    let new_ino = live.metadata().map(|m| m.ino()).unwrap_or(0);
                    data = read_rest(&mut live);
                    pos = data.len() as u64;
                    f = live;
                    self.current = Some((f, new_ino, pos));
                }
                Err(_) => self.current = None,
            }
        } else {
            self.current = Some((f, ino, pos));
        }
        let (records, pending) = parse_complete(&data);
        out.extend(records);
        self.pending = pending;
        out
    }
}

fn read_rest(f: &mut File) -> Vec<u8> {
    let mut data = Vec::new();
    let _ = f.read_to_end(&mut data);
    data
}

/// Complete lines as records, and the unfinished rest.
fn parse_complete(data: &[u8]) -> (Vec<Record>, Vec<u8>) {
    let end = data
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    (parse(&data[..end]), data[end..].to_vec())
}

fn parse(data: &[u8]) -> Vec<Record> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn formats_like_docker() {
        assert_eq!(
            fixed_nanos("2024-01-02T03:04:05.5Z"),
            "2024-01-02T03:04:05.500000000Z"
        );
        assert_eq!(
            fixed_nanos("2024-01-02T03:04:05Z"),
            "2024-01-02T03:04:05.000000000Z"
        );
        let attrs: BTreeMap<String, String> = [("b", "x y"), ("a", "1/2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(details(&attrs), "a=1%2F2,b=x+y");
        assert_eq!(details(&BTreeMap::new()), "");
    }

    fn line(n: usize) -> String {
        format!("{{\"log\":\"line {n}\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:05.000000001Z\"}}\n")
    }

    fn logs_of(records: Vec<Record>) -> Vec<String> {
        records.into_iter().map(|r| r.log).collect()
    }

    #[test]
    fn reads_across_rotations_in_order() {
        let dir = std::env::temp_dir().join(format!("polis-logs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.log");
        let write = |p: &FsPath, range: std::ops::Range<usize>| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            for n in range {
                f.write_all(line(n).as_bytes()).unwrap();
            }
        };
        write(&numbered(&path, 2), 0..2);
        write(&numbered(&path, 1), 2..4);
        write(&path, 4..5);
        let mut r = Reader::open(&path);
        let all = logs_of(r.read_all());
        let want: Vec<String> = (0..5).map(|n| format!("line {n}\n")).collect();
        assert_eq!(all, want);
        // More output, then two rotations (as the shim does them), then more.
        write(&path, 5..6);
        let rotate = || {
            let _ = std::fs::remove_file(numbered(&path, 2));
            std::fs::rename(numbered(&path, 1), numbered(&path, 2)).unwrap();
            std::fs::rename(&path, numbered(&path, 1)).unwrap();
        };
        rotate();
        write(&path, 6..7);
        rotate();
        write(&path, 7..9);
        let fresh = logs_of(r.read_new());
        let want: Vec<String> = (5..9).map(|n| format!("line {n}\n")).collect();
        assert_eq!(fresh, want);
        // A half-written line waits for its end.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let l = line(9);
        f.write_all(&l.as_bytes()[..10]).unwrap();
        assert!(r.read_new().is_empty());
        f.write_all(&l.as_bytes()[10..]).unwrap();
        assert_eq!(logs_of(r.read_new()), vec!["line 9\n".to_string()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
