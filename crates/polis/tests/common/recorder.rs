//! A tiny Engine API on a unix socket for comparing CLIs: it answers pings itself, hands
//! every other request to the test's `answer`, and remembers it, so a test can check
//! that `polis` sends what the unmodified docker CLI sends for the same command line.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One request as the recorder saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// The target without its API version prefix (each CLI sends its newest), query kept.
    pub path: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

/// The whole HTTP response to a request.
pub type Answer = fn(&Request) -> String;

/// A response with a JSON body.
pub fn reply(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";

/// The recorder's answer to what a test did not expect.
pub fn unexpected() -> String {
    reply("500 Internal Server Error", r#"{"message":"recorder"}"#)
}

pub struct Recorder {
    socket: PathBuf,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Recorder {
    /// Listens on `socket` (replacing a stale file) until the test process ends.
    pub fn start(socket: &Path, answer: Answer) -> Recorder {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let log = shared.clone();
                std::thread::spawn(move || serve(conn, &log, answer));
            }
        });
        Recorder {
            socket: socket.to_path_buf(),
            log,
        }
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) {
        self.log.lock().unwrap().clear();
    }

    /// What was recorded since the last `clear` (pings left out).
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(conn: UnixStream, log: &Mutex<Vec<Request>>, answer: Answer) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = match target.strip_prefix("/v") {
            Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or(rest),
            None => target,
        };
        let response = if path == "/_ping" {
            let body = if method == "HEAD" { "" } else { "OK" };
            format!(
                "HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nOstype: linux\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            let request = Request {
                method: method.to_string(),
                path: path.to_string(),
                body,
            };
            let response = answer(&request);
            log.lock().unwrap().push(request);
            response
        };
        if conn.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}
