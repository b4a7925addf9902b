//! A fault-injecting HTTP proxy in front of a registry (127.0.0.1 only, a thread per
//! connection, one request per connection): it can cut a blob's response at a given
//! offset of the blob, answer 503, or hold a blob's response for a while, and it counts
//! blob GETs and records their `Range` headers. Also a tiny static server for a foreign
//! layer's URL.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One injected fault.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Responses for the blob `digest` stop once the blob's byte `at` is reached (a
    /// resumed response past it is cut at once); for `times` responses, or always.
    Cut {
        digest: String,
        at: u64,
        times: Option<usize>,
    },
    /// The next `times` requests whose path contains `path` get a 503.
    Unavailable { path: String, times: usize },
    /// Responses for the blob `digest` are held back for `delay` first.
    Delay { digest: String, delay: Duration },
}

#[derive(Default)]
struct State {
    faults: Vec<Fault>,
    /// Blob digest → GET requests seen.
    gets: HashMap<String, usize>,
    /// Blob digest → `Range` headers of its GETs, in order.
    ranges: HashMap<String, Vec<String>>,
}

/// Something listening on 127.0.0.1 with a thread per connection; stopped when dropped.
struct Listener {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Listener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let handle = handle.clone();
                std::thread::spawn(move || handle(conn));
            }
        });
        Listener {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request as read off a connection.
struct Request {
    method: String,
    path: String,
    /// Header lines, without the request line.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn read(conn: &mut BufReader<TcpStream>) -> Option<Request> {
        let mut line = String::new();
        conn.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let method = parts.next()?.to_string();
        let path = parts.next()?.to_string();
        if !parts.next()?.starts_with("HTTP/") {
            return None;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            conn.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':')?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len = header(&headers, "content-length").map_or(0, |v| v.parse().unwrap_or(0));
        let mut body = vec![0; len];
        conn.read_exact(&mut body).ok()?;
        Some(Request {
            method,
            path,
            headers,
            body,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The blob digest a `/v2/…/blobs/sha256:…` path names.
    fn blob(&self) -> Option<String> {
        let (_, rest) = self.path.split_once("/blobs/")?;
        rest.starts_with("sha256:")
            .then(|| rest.split('?').next().unwrap_or(rest).to_string())
    }

    /// Where a `Range: bytes=N-` asks the body to start.
    fn range_start(&self) -> u64 {
        self.header("range")
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads a response head (through the blank line).
fn read_head(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            return Some(head);
        }
    }
}

/// Copies at most `limit` bytes (all with `None`) from `from` to `to`.
fn copy_body(from: &mut impl Read, to: &mut TcpStream, limit: Option<u64>) {
    let mut left = limit.unwrap_or(u64::MAX);
    let mut buf = [0u8; 16 * 1024];
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match from.read(&mut buf[..want]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
}

/// The proxy; see the module comment.
pub struct FaultProxy {
    state: Arc<Mutex<State>>,
    listener: Listener,
}

impl FaultProxy {
    /// A proxy to the registry listening on 127.0.0.1:`upstream`.
    pub fn start(upstream: u16) -> FaultProxy {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let listener = Listener::start(move |conn| serve(conn, upstream, &shared));
        FaultProxy { state, listener }
    }

    /// `127.0.0.1:PORT`, to name images through the proxy.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.listener.port)
    }

    pub fn add(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push(fault);
    }

    /// Removes every fault and forgets the counts.
    pub fn reset(&self) {
        *self.state.lock().unwrap() = State::default();
    }

    /// GET requests seen for the blob `digest`.
    pub fn gets(&self, digest: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .gets
            .get(digest)
            .copied()
            .unwrap_or(0)
    }

    /// The `Range` headers of the GETs of the blob `digest` that had one.
    pub fn ranges(&self, digest: &str) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .ranges
            .get(digest)
            .cloned()
            .unwrap_or_default()
    }
}

/// What to do with one request, decided (and counted) under the lock.
enum Plan {
    Unavailable,
    Forward {
        delay: Option<Duration>,
        /// Body bytes to pass before cutting the connection.
        cut_after: Option<u64>,
    },
}

fn plan(req: &Request, state: &Mutex<State>) -> Plan {
    let mut st = state.lock().unwrap();
    let blob = req.blob().filter(|_| req.method == "GET");
    if let Some(b) = &blob {
        *st.gets.entry(b.clone()).or_default() += 1;
        if let Some(r) = req.header("range") {
            st.ranges.entry(b.clone()).or_default().push(r.to_string());
        }
    }
    let mut delay = None;
    let mut cut_after = None;
    for f in st.faults.iter_mut() {
        match f {
            Fault::Unavailable { path, times }
                if *times > 0 && req.path.contains(path.as_str()) =>
            {
                *times -= 1;
                return Plan::Unavailable;
            }
            Fault::Cut { digest, at, times } if blob.as_deref() == Some(digest.as_str()) => {
                if times.is_some_and(|t| t == 0) {
                    continue;
                }
                if let Some(t) = times {
                    *t -= 1;
                }
                cut_after = Some(at.saturating_sub(req.range_start()));
            }
            Fault::Delay { digest, delay: d } if blob.as_deref() == Some(digest.as_str()) => {
                delay = Some(*d);
            }
            _ => {}
        }
    }
    Plan::Forward { delay, cut_after }
}

fn serve(conn: TcpStream, upstream: u16, state: &Mutex<State>) {
    let mut client = BufReader::new(conn);
    // Anything that is not plain HTTP (a TLS probe) is just closed.
    let Some(req) = Request::read(&mut client) else {
        return;
    };
    let mut out = client.get_ref().try_clone().unwrap();
    let (delay, cut_after) = match plan(&req, state) {
        Plan::Unavailable => {
            let _ = out.write_all(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        Plan::Forward { delay, cut_after } => (delay, cut_after),
    };
    if let Some(d) = delay {
        std::thread::sleep(d);
    }
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        if !k.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    if up.write_all(head.as_bytes()).is_err() || up.write_all(&req.body).is_err() {
        return;
    }
    let mut up = BufReader::new(up);
    let Some(resp_head) = read_head(&mut up) else {
        return;
    };
    if out.write_all(&resp_head).is_err() {
        return;
    }
    copy_body(&mut up, &mut out, cut_after);
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Write);
}

/// Serves one blob at every path over plain HTTP, always whole (it ignores `Range`),
/// optionally cutting its first response after `cut_once` bytes; counts GETs.
pub struct BlobServer {
    listener: Listener,
    state: Arc<Mutex<Served>>,
}

#[derive(Default)]
struct Served {
    gets: usize,
    ranges: Vec<String>,
    /// Where to cut the next answer.
    cut: Option<u64>,
}

impl BlobServer {
    pub fn start(blob: Vec<u8>, cut_once: Option<u64>) -> BlobServer {
        let state = Arc::new(Mutex::new(Served {
            cut: cut_once,
            ..Served::default()
        }));
        let shared = state.clone();
        let blob = Arc::new(blob);
        let listener = Listener::start(move |conn| {
            let mut client = BufReader::new(conn);
            let Some(req) = Request::read(&mut client) else {
                return;
            };
            let cut = {
                let mut st = shared.lock().unwrap();
                st.gets += 1;
                if let Some(r) = req.header("range") {
                    st.ranges.push(r.to_string());
                }
                st.cut.take()
            };
            let mut out = client.into_inner();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                blob.len()
            );
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            let end = cut.map_or(blob.len(), |c| (c as usize).min(blob.len()));
            let _ = out.write_all(&blob[..end]);
            let _ = out.shutdown(Shutdown::Write);
        });
        BlobServer { listener, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.listener.port)
    }

    /// GETs served so far.
    pub fn gets(&self) -> usize {
        self.state.lock().unwrap().gets
    }

    /// The `Range` headers asked for.
    pub fn ranges(&self) -> Vec<String> {
        self.state.lock().unwrap().ranges.clone()
    }
}
