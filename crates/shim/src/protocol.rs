//! The shim socket protocol, and a small blocking client for it.
//!
//! The shim listens on `<state-dir>/shim.sock` (a unix stream socket). Any number of
//! clients may connect at once, and a client may come and go: the shim keeps the
//! container, its logs and its exit status whoever is connected.
//!
//! Requests and replies are single lines of JSON, each ended by `\n`. A request names
//! its operation in `op`; every reply has `ok` and, when `ok` is false, `error`.
//!
//! | request | reply (when `ok`) |
//! |---|---|
//! | `{"op":"state"}` | `{"ok":true,"state":{"id","pid","status","exit"}}`; `status` is created, running, paused or stopped, `exit` is null until the container exited |
//! | `{"op":"start"}` | `{"ok":true}` once the workload runs |
//! | `{"op":"kill","signal":9,"all":false}` | `{"ok":true}`; `signal` is a number or a name (`"TERM"`, `"SIGKILL"`); `all` signals every process of the container |
//! | `{"op":"pause"}`, `{"op":"resume"}` | `{"ok":true}` |
//! | `{"op":"wait"}` | `{"ok":true,"exit":{"exit_code","signal","finished_at"}}`, sent when the container has exited (at once if it already has) |
//! | `{"op":"resize","height":24,"width":80}` | `{"ok":true}`; resizes the container's pty, or with `"exec":PID` that exec's pty |
//! | `{"op":"attach","stdin":true,"stdout":true,"stderr":true,"stdin_once":false}` | `{"ok":true,"tty":BOOL}`, then the connection is a byte stream (below) |
//! | `{"op":"exec","process":{OCI process},"tty":false,"stdin":false}` | `{"ok":true,"pid":PID,"tty":BOOL}`, then the connection is a byte stream (below) |
//! | `{"op":"delete","force":false}` | `{"ok":true}` after the container is deleted; the shim then removes its socket and exits. Without `force` the container must have exited; with it a live one is killed first |
//!
//! Several requests may be sent on one connection, one after another; `wait` holds its
//! connection until the reply.
//!
//! **Attach.** After the reply the shim copies the container's output to the
//! connection live (only what is written from then on; the past is in the log file)
//! and what the client writes to the container's stdin (when the container was made
//! with `--stdin` or has a terminal, and the request asked for `stdin`). With a
//! terminal the output is the raw pty stream. Without one each chunk is framed as
//! Docker's multiplexed streams are: an 8-byte header `[STREAM, 0, 0, 0, SIZE as u32
//! big-endian]` (STREAM 1 = stdout, 2 = stderr) then SIZE bytes. Closing the
//! connection detaches; shutting down only the write side ends the container's stdin
//! when `stdin_once` was set. The shim closes the connection when the container exits.
//!
//! **Exec.** The new process's stdin is what the client writes (when `stdin` was asked
//! for or with `tty`; a write-side shutdown closes it). Its output always comes framed
//! as above (with a terminal all of it as stream 1), and when it has exited a last
//! frame of stream 3 carries `{"exit_code","signal","finished_at"}` as JSON; then the
//! shim closes the connection. A client that goes away leaves the process running.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Stream numbers of a frame header.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// The last frame of an exec stream: the exit status as JSON.
pub const EXIT: u8 = 3;

/// A signal by number or by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SignalArg {
    Number(i32),
    Name(String),
}

impl SignalArg {
    pub fn number(&self) -> Result<i32> {
        match self {
            SignalArg::Number(n) => Ok(*n),
            SignalArg::Name(s) => Ok(polis_runtime::container::parse_signal(s)?),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    State,
    Start,
    Kill {
        signal: SignalArg,
        #[serde(default)]
        all: bool,
    },
    Pause,
    Resume,
    Wait,
    Resize {
        height: u16,
        width: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exec: Option<i32>,
    },
    Attach {
        #[serde(default)]
        stdin: bool,
        #[serde(default)]
        stdout: bool,
        #[serde(default)]
        stderr: bool,
        #[serde(default)]
        stdin_once: bool,
    },
    Exec {
        process: Box<Process>,
        #[serde(default)]
        tty: bool,
        #[serde(default)]
        stdin: bool,
    },
    Delete {
        #[serde(default)]
        force: bool,
    },
}

/// How the container ended, as recorded in `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + the signal that killed it.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
    /// The kernel's OOM killer struck in the container's cgroup during the run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    pub status: String,
    pub exit: Option<ExitStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(message.into()),
            ..Response::default()
        }
    }

    /// The reply as the shim sends it: one line of JSON.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        line.push(b'\n');
        line
    }
}

/// The header of a frame carrying `len` bytes of `stream`.
pub fn frame_header(stream: u8, len: usize) -> [u8; 8] {
    let size = (len as u32).to_be_bytes();
    [stream, 0, 0, 0, size[0], size[1], size[2], size[3]]
}

/// Read one frame: `None` at a clean end of stream.
pub fn read_frame(reader: &mut impl Read) -> Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 8];
    match reader.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::Protocol(format!("read frame header: {e}"))),
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    let mut payload = vec![0u8; len];
    reader
        .read_exact(&mut payload)
        .map_err(|e| Error::Protocol(format!("read frame of {len} bytes: {e}")))?;
    Ok(Some((header[0], payload)))
}

/// A blocking connection to a shim.
pub struct Client {
    reader: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(socket: &Path) -> Result<Client> {
        let stream = UnixStream::connect(socket).map_err(|e| Error::io("connect", socket, e))?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    /// Send a request and read its reply; a reply with `ok: false` is an error.
    pub fn call(&mut self, request: &Request) -> Result<Response> {
        let mut line = serde_json::to_vec(request)
            .map_err(|e| Error::Protocol(format!("encode request: {e}")))?;
        line.push(b'\n');
        self.reader
            .get_mut()
            .write_all(&line)
            .map_err(|e| Error::Protocol(format!("send request: {e}")))?;
        let mut reply = String::new();
        self.reader
            .read_line(&mut reply)
            .map_err(|e| Error::Protocol(format!("read reply: {e}")))?;
        if reply.is_empty() {
            return Err(Error::Protocol("the shim closed the connection".into()));
        }
        let response: Response = serde_json::from_str(&reply)
            .map_err(|e| Error::Protocol(format!("decode reply {reply:?}: {e}")))?;
        if !response.ok {
            return Err(Error::Refused(
                response.error.unwrap_or_else(|| "request failed".into()),
            ));
        }
        Ok(response)
    }

    /// After `attach` or `exec`: the stream (with anything already buffered first).
    pub fn into_stream(self) -> (Vec<u8>, UnixStream) {
        let buffered = self.reader.buffer().to_vec();
        (buffered, self.reader.into_inner())
    }
}
