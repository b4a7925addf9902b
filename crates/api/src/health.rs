//! Container health checks: one monitor task per running container with a health
//! check. Each probe is an exec through the container's shim (as `docker exec` runs,
//! without a terminal, output captured, with Docker's exec_create/exec_start/exec_die
//! events), killed at its timeout. The
//! results make `State.Health` (status, failing streak, the last five probes) and the
//! `health_status: …` events, as Docker's daemon keeps them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use polis_engine::containers::{self, Container};
use polis_engine::health::Probe;
use polis_shim::protocol::Request as ShimRequest;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// Docker keeps this many probe results.
const MAX_LOG: usize = 5;
/// And this many bytes of each probe's output.
const MAX_OUTPUT: usize = 4096;

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// One probe's result, as inspect shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProbeResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// A container's health as its monitor found it.
#[derive(Debug, Clone)]
pub struct Health {
    pub status: &'static str,
    pub failing_streak: u32,
    pub log: VecDeque<ProbeResult>,
}

impl Health {
    fn starting() -> Self {
        Health {
            status: STARTING,
            failing_streak: 0,
            log: VecDeque::new(),
        }
    }

    /// inspect's `State.Health`.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": self.log,
        })
    }

    /// What `docker ps` puts after "Up …": Docker's `Health.String()`.
    pub fn ps_text(&self) -> String {
        match self.status {
            STARTING => "health: starting".into(),
            s => s.into(),
        }
    }

    /// Docker's rules: a success makes it healthy; a failure counts (past the start
    /// period, or once it was healthy) and `retries` in a row make it unhealthy.
    fn record(&mut self, result: ProbeResult, retries: u32, in_start_period: bool) {
        let ok = result.exit_code == 0;
        if self.log.len() >= MAX_LOG {
            self.log.pop_front();
        }
        self.log.push_back(result);
        if ok {
            self.failing_streak = 0;
            self.status = HEALTHY;
            return;
        }
        if self.status == STARTING && in_start_period {
            return;
        }
        self.failing_streak += 1;
        if self.failing_streak >= retries {
            self.status = UNHEALTHY;
        }
    }
}

struct Entry {
    generation: u64,
    cancel: CancellationToken,
    health: Health,
}

/// The monitors of the daemon's containers, and the health they found, by id.
#[derive(Default)]
pub struct Monitors {
    entries: Mutex<HashMap<String, Entry>>,
    generations: AtomicU64,
}

impl Monitors {
    /// The container's health, if it has a health check and ran with it.
    pub fn of(&self, id: &str) -> Option<Health> {
        let entries = self.entries.lock().ok()?;
        entries.get(id).map(|e| e.health.clone())
    }

    /// The container stopped: its monitor ends, its last health stays for inspect.
    pub fn stop(&self, id: &str) {
        if let Ok(entries) = self.entries.lock() {
            if let Some(e) = entries.get(id) {
                e.cancel.cancel();
            }
        }
    }

    /// A removed container's entry.
    pub fn forget(&self, id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            if let Some(e) = entries.remove(id) {
                e.cancel.cancel();
            }
        }
    }

    /// A fresh "starting" entry for `id`, calling off any older monitor.
    fn begin(&self, id: &str) -> (u64, CancellationToken) {
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        let cancel = CancellationToken::new();
        if let Ok(mut entries) = self.entries.lock() {
            let old = entries.insert(
                id.to_string(),
                Entry {
                    generation,
                    cancel: cancel.clone(),
                    health: Health::starting(),
                },
            );
            if let Some(old) = old {
                old.cancel.cancel();
            }
        }
        (generation, cancel)
    }

    fn status(&self, id: &str, generation: u64) -> Option<&'static str> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(id)
            .filter(|e| e.generation == generation)
            .map(|e| e.health.status)
    }

    /// Record a result of monitor `generation` (dropped if it was called off meanwhile);
    /// the status before and after.
    fn record(
        &self,
        id: &str,
        generation: u64,
        result: ProbeResult,
        retries: u32,
        in_start_period: bool,
    ) -> Option<(&'static str, &'static str)> {
        let mut entries = self.entries.lock().ok()?;
        let e = entries
            .get_mut(id)
            .filter(|e| e.generation == generation && !e.cancel.is_cancelled())?;
        let before = e.health.status;
        e.health.record(result, retries, in_start_period);
        Some((before, e.health.status))
    }
}

/// Start the health monitor of a container that has just started (health back to
/// "starting"); a container without a health check has none, and no health.
pub fn start(state: &Arc<AppState>, c: &Container) {
    let Some(probe) = polis_engine::health::probe(c.spec.healthcheck.as_ref()) else {
        state.health.forget(&c.id);
        return;
    };
    let (generation, cancel) = state.health.begin(&c.id);
    let state = state.clone();
    let id = c.id.clone();
    let started_at = c.started_at.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = monitor(&state, &id, started_at.as_deref(), &probe, generation, &cancel) => {}
        }
    });
}

/// Time since the container started, by the clock of its record.
fn running_for(started_at: Option<&str>) -> Duration {
    let now = polis_runtime::state::now_rfc3339();
    started_at
        .map(|s| crate::clock::between(s, &now))
        .unwrap_or_default()
}

async fn monitor(
    state: &Arc<AppState>,
    id: &str,
    started_at: Option<&str>,
    probe: &Probe,
    generation: u64,
    cancel: &CancellationToken,
) {
    loop {
        let starting = state.health.status(id, generation) == Some(STARTING);
        let interval = if starting && running_for(started_at) < probe.start_period {
            probe.start_interval
        } else {
            probe.interval
        };
        tokio::time::sleep(interval).await;
        match live_status(state, id).await.as_deref() {
            Some("running") => {}
            // A paused container is not probed.
            Some("paused") => continue,
            _ => return,
        }
        let start = polis_runtime::state::now_rfc3339();
        let in_start_period = running_for(started_at) < probe.start_period;
        let (exit_code, output) = match run_probe(state, id, probe).await {
            Ok(done) => done,
            Err(e) => {
                if live_status(state, id).await.as_deref() != Some("running") {
                    continue;
                }
                (-1, e)
            }
        };
        if cancel.is_cancelled() {
            return;
        }
        let result = ProbeResult {
            start,
            end: polis_runtime::state::now_rfc3339(),
            exit_code,
            output,
        };
        let changed = state
            .health
            .record(id, generation, result, probe.retries, in_start_period);
        match changed {
            None => return,
            Some((before, after)) if before != after => {
                if let Ok(c) = state.metadata.find(id) {
                    crate::events::container(state, &c, &format!("health_status: {after}"));
                }
            }
            Some(_) => {}
        }
    }
}

async fn live_status(state: &Arc<AppState>, id: &str) -> Option<String> {
    let (st, id) = (state.clone(), id.to_string());
    tokio::task::spawn_blocking(move || containers::state(&st.layout, &id).status)
        .await
        .ok()
}

/// One probe: its exit code and output (stdout and stderr as they came, cut at
/// Docker's limit), or -1 and Docker's message past the timeout (the process is
/// killed). `Err` when the exec could not be started.
async fn run_probe(
    state: &Arc<AppState>,
    id: &str,
    probe: &Probe,
) -> Result<(i64, String), String> {
    let mut process = crate::exec::container_process(state, id)?;
    process.set_args(Some(probe.args.clone()));
    process.set_terminal(Some(false));
    process.set_console_size(None);
    let socket = state.layout.shim_dir(id).join(polis_shim::SOCKET);
    let mut shim = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(|e| format!("Container {id} is not running: {e}"))?;
    let request = ShimRequest::Exec {
        process: Box::new(process),
        tty: false,
        stdin: false,
    };
    let mut line = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    line.push(b'\n');
    shim.write_all(&line).await.map_err(|e| e.to_string())?;
    // Docker's probes are execs, and tell their events as such.
    let exec_id = polis_engine::metadata::random_hex(32);
    let create = crate::events::exec_action("exec_create", &probe.args);
    crate::events::exec(state, id, &create, &exec_id, &[]);
    let reply = crate::containers::read_reply(&mut shim)
        .await
        .map_err(|e| e.to_string())?;
    if !reply.ok {
        return Err(reply.error.unwrap_or_else(|| "exec refused".into()));
    }
    let start = crate::events::exec_action("exec_start", &probe.args);
    crate::events::exec(state, id, &start, &exec_id, &[]);
    let died = |code: Option<i32>| {
        let code = code.unwrap_or(-1).to_string();
        crate::events::exec(state, id, "exec_die", &exec_id, &[("exitCode", code)]);
    };
    let mut output = Output::default();
    match tokio::time::timeout(probe.timeout, read_frames(&mut shim, &mut output)).await {
        Ok(Some(code)) => {
            died(Some(code));
            Ok((i64::from(code), output.text()))
        }
        Ok(None) => {
            died(None);
            Err("the probe's output ended without its exit status".into())
        }
        Err(_) => {
            if let Some(pid) = reply.pid.filter(|p| *p > 0) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            // Its exit, once killed, for exec_die.
            let mut rest = Output::default();
            let code =
                tokio::time::timeout(Duration::from_secs(2), read_frames(&mut shim, &mut rest))
                    .await
                    .ok()
                    .flatten();
            died(code);
            Ok((
                -1,
                format!(
                    "Health check exceeded timeout ({})",
                    go_duration(probe.timeout)
                ),
            ))
        }
    }
}

/// A probe's output, kept up to Docker's limit ("..." marks a cut).
#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    truncated: bool,
}

impl Output {
    fn push(&mut self, data: &[u8]) {
        let room = MAX_OUTPUT - self.bytes.len();
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            s.push_str("...");
        }
        s
    }
}

/// The exec stream's frames until its exit frame: the exit code.
async fn read_frames(shim: &mut tokio::net::UnixStream, out: &mut Output) -> Option<i32> {
    let mut header = [0u8; 8];
    loop {
        shim.read_exact(&mut header).await.ok()?;
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut data = vec![0u8; len];
        shim.read_exact(&mut data).await.ok()?;
        if header[0] == polis_shim::protocol::EXIT {
            let status: polis_shim::protocol::ExitStatus = serde_json::from_slice(&data).ok()?;
            return Some(status.exit_code);
        }
        out.push(&data);
    }
}

/// A duration as Go prints it (`500ms`, `1s`, `1.5s`, `1m30s`), as Docker's message has it.
fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", trim(ns as f64 / 1e3));
    }
    if ns < 1_000_000_000 {
        return format!("{}ms", trim(ns as f64 / 1e6));
    }
    let total = d.as_secs();
    let (h, m) = (total / 3600, (total % 3600) / 60);
    let secs = trim((total % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9);
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.9}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i64) -> ProbeResult {
        ProbeResult {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn failures_count_past_the_start_period_and_success_resets() {
        let mut h = Health::starting();
        h.record(result(1), 2, true);
        assert_eq!((h.status, h.failing_streak), (STARTING, 0));
        h.record(result(1), 2, false);
        assert_eq!((h.status, h.failing_streak), (STARTING, 1));
        h.record(result(1), 2, false);
        assert_eq!((h.status, h.failing_streak), (UNHEALTHY, 2));
        h.record(result(0), 2, false);
        assert_eq!((h.status, h.failing_streak), (HEALTHY, 0));
        // Once healthy, the start period no longer shields failures.
        h.record(result(1), 2, true);
        assert_eq!((h.status, h.failing_streak), (HEALTHY, 1));
        for _ in 0..4 {
            h.record(result(0), 2, false);
        }
        assert_eq!(h.log.len(), MAX_LOG);
        assert_eq!(h.ps_text(), "healthy");
        assert_eq!(Health::starting().ps_text(), "health: starting");
    }

    #[test]
    fn output_is_cut_at_docker_limit() {
        let mut o = Output::default();
        o.push(&[b'a'; 4000]);
        o.push(&[b'b'; 200]);
        let t = o.text();
        assert_eq!(t.len(), MAX_OUTPUT + 3);
        assert!(t.ends_with("bb..."));
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
