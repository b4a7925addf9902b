//! Hijacked connections (attach, exec): our stdin to the container, watched for the
//! detach keys and half-closed at its end; the container's output raw with a tty, or
//! demultiplexed (docker's stdcopy frames) to our stdout and stderr without one; the
//! local terminal in raw mode meanwhile, and its size passed on as it changes.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Result};
use hyper::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::client::{self, Client};

/// ctrl-p, ctrl-q.
const DEFAULT_DETACH_KEYS: [u8; 2] = [16, 17];

pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub detach_keys: Option<String>,
}

/// How a stream ended.
#[derive(Debug, PartialEq)]
pub enum Ended {
    /// The container's output ended.
    Output,
    /// The user typed the detach keys.
    Detached,
}

/// moby/term's `ToBytes`: "ctrl-p,ctrl-q" → [16, 17]; a plain character stands for
/// itself.
pub fn detach_key_bytes(keys: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for key in keys.split(',') {
        let key = key.trim();
        if let Some(c) = key.strip_prefix("ctrl-") {
            let code = match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => bail!("Unknown character: '{c}'"),
            };
            out.push(code);
        } else if key.len() == 1 {
            out.push(key.as_bytes()[0]);
        } else {
            bail!("Unknown character: '{key}'");
        }
    }
    Ok(out)
}

/// Watches input for the detach sequence, holding back a partial match until it is
/// decided (moby/term's `EscapeProxy`).
struct EscapeProxy {
    keys: Vec<u8>,
    matched: usize,
}

impl EscapeProxy {
    /// The bytes to pass on, or `None` once the whole sequence was typed.
    fn filter(&mut self, input: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return None;
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return None;
                }
            } else {
                out.push(b);
            }
        }
        Some(out)
    }
}

/// The local terminal in raw mode until restored (or dropped).
#[derive(Clone, Default)]
pub struct RawTerminal(Arc<Mutex<Option<nix::sys::termios::Termios>>>);

impl RawTerminal {
    /// Puts stdin in raw mode when it is a terminal.
    pub fn enable() -> Result<RawTerminal> {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return Ok(RawTerminal::default());
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw)
            .map_err(|e| anyhow::anyhow!("unable to set IO streams as raw terminal: {e}"))?;
        Ok(RawTerminal(Arc::new(Mutex::new(Some(saved)))))
    }

    pub fn restore(&self) {
        let saved = self.0.lock().ok().and_then(|mut s| s.take());
        if let Some(saved) = saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if Arc::strong_count(&self.0) == 1 {
            self.restore();
        }
    }
}

/// Copies between the hijacked connection and our stdio until the output ends or the
/// user detaches.
pub async fn stream(conn: UnixStream, o: StreamOptions) -> Result<Ended> {
    let raw = if o.stdin && o.tty {
        RawTerminal::enable()?
    } else {
        RawTerminal::default()
    };
    let keys = match o.detach_keys.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => detach_key_bytes(k).unwrap_or_else(|_| DEFAULT_DETACH_KEYS.to_vec()),
        None => DEFAULT_DETACH_KEYS.to_vec(),
    };
    let (mut read_half, mut write_half) = conn.into_split();
    let output_raw = raw.clone();
    let output = async move {
        let result = if o.tty {
            copy_raw(&mut read_half, o.stdout).await
        } else {
            demux(&mut read_half, o.stdout, o.stderr).await
        };
        output_raw.restore();
        result
    };
    let input_raw = raw.clone();
    let input = async move {
        if !o.stdin {
            let _ = write_half.shutdown().await;
            return (Ended::Output, write_half);
        }
        let mut proxy = o.tty.then_some(EscapeProxy { keys, matched: 0 });
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let data = match proxy.as_mut() {
                Some(p) => match p.filter(&buf[..n]) {
                    Some(d) => d,
                    None => {
                        input_raw.restore();
                        return (Ended::Detached, write_half);
                    }
                },
                None => buf[..n].to_vec(),
            };
            if write_half.write_all(&data).await.is_err() {
                break;
            }
        }
        input_raw.restore();
        // Our end of input is the container's: half-close, keep reading its output.
        let _ = write_half.shutdown().await;
        (Ended::Output, write_half)
    };
    tokio::pin!(output);
    tokio::pin!(input);
    tokio::select! {
        r = &mut output => r.map(|_| Ended::Output),
        (ended, _write_half) = &mut input => {
            if ended == Ended::Detached {
                return Ok(Ended::Detached);
            }
            output.await.map(|_| Ended::Output)
        }
    }
}

async fn copy_raw(conn: &mut (impl AsyncRead + Unpin), to_stdout: bool) -> Result<()> {
    let mut out = tokio::io::stdout();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = conn.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return Ok(());
        }
        if to_stdout {
            out.write_all(&buf[..n]).await?;
            out.flush().await?;
        }
    }
}

/// docker's stdcopy: `[stream, 0, 0, 0, len (big endian u32)]` then `len` bytes.
pub async fn demux(
    conn: &mut (impl AsyncRead + Unpin),
    to_stdout: bool,
    to_stderr: bool,
) -> Result<()> {
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    let mut header = [0u8; 8];
    loop {
        match conn.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(_) => return Ok(()),
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut frame = vec![0u8; len];
        if conn.read_exact(&mut frame).await.is_err() {
            return Ok(());
        }
        match header[0] {
            0 | 1 if to_stdout => {
                out.write_all(&frame).await?;
                out.flush().await?;
            }
            2 if to_stderr => {
                err.write_all(&frame).await?;
                err.flush().await?;
            }
            3 => bail!("{}", String::from_utf8_lossy(&frame)),
            0..=2 => {}
            other => bail!("Unrecognized input header: {other}"),
        }
    }
}

/// The size of the terminal on our stdout: (rows, columns).
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let fd = std::io::stdout().as_raw_fd();
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let r = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some((ws.ws_row, ws.ws_col))
}

/// Resizes the container's (or exec's) terminal to ours now and whenever ours changes
/// (SIGWINCH). `path` is `/containers/{id}` or `/exec/{id}`.
pub fn monitor_size(c: Arc<Client>, path: String, retry: bool) {
    tokio::spawn(async move {
        let resize = |c: Arc<Client>, path: String| async move {
            let Some((h, w)) = terminal_size() else {
                return Ok(());
            };
            let query = client::query(&[("h", &h.to_string()), ("w", &w.to_string())]);
            c.send(
                Method::POST,
                &format!("{path}/resize?{query}"),
                client::empty(),
                None,
            )
            .await
            .map(|_| ())
        };
        // An exec's terminal may not be there yet: docker tries again a few times.
        let tries = if retry { 10 } else { 1 };
        for i in 0..tries {
            if resize(c.clone(), path.clone()).await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10 * (i + 1))).await;
        }
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            let _ = resize(c.clone(), path.clone()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys() {
        assert_eq!(detach_key_bytes("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(detach_key_bytes("ctrl-@,a").unwrap(), vec![0, b'a']);
        assert!(detach_key_bytes("ctrl-é").is_err());
        let mut p = EscapeProxy {
            keys: vec![16, 17],
            matched: 0,
        };
        assert_eq!(p.filter(b"ab\x10"), Some(b"ab".to_vec()));
        // A partial match that fails is passed on whole.
        assert_eq!(p.filter(b"c"), Some(b"\x10c".to_vec()));
        assert_eq!(p.filter(b"\x10"), Some(vec![]));
        assert_eq!(p.filter(b"\x11rest"), None);
    }
}
