//! The container's output as Docker's json-file log driver writes it: one JSON object
//! per line of output, `{"log":"…\n","stream":"stdout","time":"RFC 3339 nanos"}`, lines
//! longer than 16 KiB split into partial entries (no trailing newline), and rotation
//! by size into `FILE.1`, `FILE.2`, … up to `max_file` files in all.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Docker's copier buffer: a line that fills it is logged as a partial entry.
const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct LogOptions {
    pub path: PathBuf,
    /// Rotate once the file reaches this many bytes; 0 means never.
    pub max_size: u64,
    /// How many files to keep, the live one included (at least 1).
    pub max_file: u32,
    /// The `attrs` object of every record (a JSON object, as Docker's `--log-opt
    /// labels/env/tag` make it), if any.
    pub attrs: Option<String>,
}

pub struct LogFile {
    opts: LogOptions,
    file: File,
    size: u64,
    /// Bytes of an unfinished line, per stream (stdout, stderr).
    pending: [Vec<u8>; 2],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl LogFile {
    pub fn open(opts: LogOptions) -> Result<LogFile> {
        let file = open_append(&opts.path)?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("stat", &opts.path, e))?
            .len();
        Ok(LogFile {
            opts,
            file,
            size,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Log output of `stream`; complete lines are written, the rest waits for more.
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        let idx = stream as usize;
        self.pending[idx].extend_from_slice(data);
        let mut buf = std::mem::take(&mut self.pending[idx]);
        let mut start = 0;
        let result = loop {
            let rest = &buf[start..];
            let cut = match rest.iter().position(|&b| b == b'\n') {
                Some(nl) if nl < MAX_LINE => nl + 1,
                _ if rest.len() >= MAX_LINE => MAX_LINE,
                _ => break Ok(()),
            };
            if let Err(e) = self.entry(stream, &rest[..cut]) {
                break Err(e);
            }
            start += cut;
        };
        buf.drain(..start);
        self.pending[idx] = buf;
        result
    }

    /// Write out unfinished lines (at the end of the output) as partial entries.
    pub fn flush_partial(&mut self) -> Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.entry(stream, &rest)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, stream: Stream, line: &[u8]) -> Result<()> {
        let mut record = encode(
            stream,
            line,
            self.opts.attrs.as_deref(),
            &polis_runtime::state::now_rfc3339(),
        );
        record.push(b'\n');
        if self.opts.max_size > 0 && self.size > 0 && self.size >= self.opts.max_size {
            self.rotate()?;
        }
        self.file
            .write_all(&record)
            .map_err(|e| Error::io("write", &self.opts.path, e))?;
        self.size += record.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let path = &self.opts.path;
        if self.opts.max_file <= 1 {
            self.file
                .set_len(0)
                .map_err(|e| Error::io("truncate", path, e))?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.opts.max_file - 1).rev() {
            let from = numbered(path, n);
            if from.exists() {
                let to = numbered(path, n + 1);
                std::fs::rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
            }
        }
        let first = numbered(path, 1);
        std::fs::rename(path, &first).map_err(|e| Error::io("rename", path, e))?;
        self.file = open_append(path)?;
        self.size = 0;
        Ok(())
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("open", path, e))
}

/// One json-file record, byte for byte as Docker writes it: invalid UTF-8 becomes
/// U+FFFD and `<`, `>`, `&` are escaped as Go's encoder does; `attrs` (a JSON object)
/// goes between the stream and the time.
fn encode(stream: Stream, line: &[u8], attrs: Option<&str>, time: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(line);
    let log = serde_json::to_string(text.as_ref()).unwrap_or_default();
    let log = log
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    let attrs = attrs.map(|a| format!(",\"attrs\":{a}")).unwrap_or_default();
    format!(
        "{{\"log\":{log},\"stream\":\"{}\"{attrs},\"time\":\"{time}\"}}",
        stream.name()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_docker() {
        let rec = encode(
            Stream::Stdout,
            b"a<b> & \"c\"\n",
            None,
            "2024-01-02T03:04:05.000000001Z",
        );
        assert_eq!(
            String::from_utf8(rec).unwrap(),
            r#"{"log":"a\u003cb\u003e \u0026 \"c\"\n","stream":"stdout","time":"2024-01-02T03:04:05.000000001Z"}"#
        );
        let rec = encode(
            Stream::Stderr,
            b"x\n",
            Some(r#"{"app":"web"}"#),
            "2024-01-02T03:04:05.000000001Z",
        );
        assert_eq!(
            String::from_utf8(rec).unwrap(),
            r#"{"log":"x\n","stream":"stderr","attrs":{"app":"web"},"time":"2024-01-02T03:04:05.000000001Z"}"#
        );
    }

    #[test]
    fn splits_long_lines_and_rotates() {
        let dir = std::env::temp_dir().join(format!("polis-shim-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.log");
        let mut log = LogFile::open(LogOptions {
            path: path.clone(),
            max_size: 0,
            max_file: 1,
            attrs: None,
        })
        .unwrap();
        log.write(Stream::Stdout, &vec![b'x'; MAX_LINE + 10])
            .unwrap();
        log.write(Stream::Stdout, b"\nhalf").unwrap();
        log.flush_partial().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let logs: Vec<String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["log"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(logs.len(), 3);
        assert_eq!(logs[0].len(), MAX_LINE);
        assert_eq!(logs[1], format!("{}\n", "x".repeat(10)));
        assert_eq!(logs[2], "half");

        let path = dir.join("r.log");
        let mut log = LogFile::open(LogOptions {
            path: path.clone(),
            max_size: 200,
            max_file: 3,
            attrs: None,
        })
        .unwrap();
        for i in 0..40 {
            log.write(Stream::Stderr, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(numbered(&path, 1).exists());
        assert!(numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists());
        for p in [path.clone(), numbered(&path, 1)] {
            assert!(std::fs::metadata(&p).unwrap().len() < 400);
        }
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.contains("line 39\\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
