//! Detach keys: on a terminal, a key sequence (ctrl-p ctrl-q unless the client names
//! another) on the attached input ends the attachment and leaves the container
//! running, as Docker's daemon does. The sequence itself never reaches the container;
//! a partial match that breaks off is passed on whole.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const DEFAULT_KEYS: &str = "ctrl-p,ctrl-q";

/// Docker's key list: comma-separated, each a single character or `ctrl-X` with X in
/// a-z, @, [, \, ], ^ or _.
pub fn parse_keys(spec: &str) -> Result<Vec<u8>, String> {
    let invalid = || format!("Invalid detach keys ({spec}) provided");
    let mut keys = Vec::new();
    for key in spec.split(',') {
        let key = key.trim();
        if let Some(c) = key.strip_prefix("ctrl-") {
            let &[c] = c.as_bytes() else {
                return Err(invalid());
            };
            let code = match c.to_ascii_lowercase() {
                c @ b'a'..=b'z' => c - b'a' + 1,
                b'@' => 0,
                c @ (b'[' | b'\\' | b']' | b'^' | b'_') => c - b'[' + 27,
                _ => return Err(invalid()),
            };
            keys.push(code);
        } else if let &[c] = key.as_bytes() {
            keys.push(c);
        } else {
            return Err(invalid());
        }
    }
    Ok(keys)
}

/// How a copy of the client's input ended.
#[derive(Debug, PartialEq, Eq)]
pub enum InputEnd {
    /// The client closed its input (or the connection failed).
    Eof,
    /// The client typed the detach keys.
    Detached,
}

/// Copy `from` to `to`, watching for `keys` (an empty list watches for nothing).
pub async fn copy_watching(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    keys: &[u8],
) -> InputEnd {
    let mut buf = vec![0u8; 32 * 1024];
    let mut matched = 0usize;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                // Keys held back for a match that never completed.
                let _ = to.write_all(&keys[..matched]).await;
                let _ = to.flush().await;
                return InputEnd::Eof;
            }
            Ok(n) => n,
        };
        let mut out = Vec::with_capacity(n + matched);
        for &b in &buf[..n] {
            if !keys.is_empty() && b == keys[matched] {
                matched += 1;
                if matched == keys.len() {
                    // What came before the sequence still goes in.
                    let _ = to.write_all(&out).await;
                    let _ = to.flush().await;
                    return InputEnd::Detached;
                }
                continue;
            }
            // A partial match broken off: its keys were input after all.
            out.extend_from_slice(&keys[..matched]);
            matched = 0;
            if !keys.is_empty() && b == keys[0] {
                matched = 1;
            } else {
                out.push(b);
            }
        }
        if to.write_all(&out).await.is_err() || to.flush().await.is_err() {
            return InputEnd::Eof;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_key_lists() {
        assert_eq!(parse_keys(DEFAULT_KEYS).unwrap(), vec![16, 17]);
        assert_eq!(parse_keys("ctrl-a,x").unwrap(), vec![1, b'x']);
        assert_eq!(parse_keys("ctrl-@,ctrl-[,ctrl-_").unwrap(), vec![0, 27, 31]);
        assert!(parse_keys("ctrl-").is_err());
        assert!(parse_keys("ctrl-1").is_err());
        assert!(parse_keys("ab").is_err());
        assert!(parse_keys("").is_err());
    }

    async fn run(input: &[u8], keys: &[u8]) -> (Vec<u8>, InputEnd) {
        let mut out = Vec::new();
        let end = copy_watching(input, &mut out, keys).await;
        (out, end)
    }

    #[tokio::test]
    async fn detaches_on_the_sequence_and_passes_broken_matches_on() {
        let keys = [16, 17];
        assert_eq!(
            run(b"ls\n\x10\x11rest", &keys).await,
            (b"ls\n".to_vec(), InputEnd::Detached)
        );
        assert_eq!(
            run(b"a\x10b\x10\x10\x11", &keys).await,
            (b"a\x10b\x10".to_vec(), InputEnd::Detached)
        );
        assert_eq!(
            run(b"plain\x10", &keys).await,
            (b"plain\x10".to_vec(), InputEnd::Eof)
        );
        assert_eq!(
            run(b"\x10\x11", &[]).await,
            (b"\x10\x11".to_vec(), InputEnd::Eof)
        );
    }
}
