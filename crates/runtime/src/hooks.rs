//! Lifecycle hooks: each runs with the container's state JSON on its stdin, under its
//! timeout; a failing hook fails the step it belongs to, except poststart and poststop
//! hooks, whose failures are warnings.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Run `hooks` in order; stop at the first that fails.
pub fn run_all(hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Result<()> {
    for hook in hooks.into_iter().flatten() {
        run(hook, state_json)?;
    }
    Ok(())
}

/// Run every one of `hooks` in order, even after one fails, and return the failures.
///
/// For poststart and poststop hooks the spec says a failure is a warning and "the
/// remaining hooks and lifecycle continue as if the hook had succeeded".
pub fn run_each(hooks: Option<&Vec<Hook>>, state_json: &[u8]) -> Vec<Error> {
    hooks
        .into_iter()
        .flatten()
        .filter_map(|hook| run(hook, state_json).err())
        .collect()
}

fn run(hook: &Hook, state_json: &[u8]) -> Result<()> {
    let path = hook.path();
    let fail = |reason: String| Error::Hook {
        path: path.clone(),
        reason,
    };
    let mut cmd = Command::new(path);
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(fail(format!("wait: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {} s",
                hook.timeout().unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    Err(fail(format!(
        "{status}{}{}",
        if stderr.is_empty() { "" } else { ": " },
        stderr.trim()
    )))
}
