//! The lifecycle operations on an existing container: start, state, kill, delete,
//! pause, resume, update, and what `ps`, `list` and `events` read.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::hooks;
use crate::state::{self, OciState, Record, Root, Status};

fn bad_state(id: &str, state: Status, action: &'static str, wanted: &'static str) -> Error {
    Error::BadState {
        id: id.to_string(),
        state: state.to_string(),
        action,
        wanted,
    }
}

/// The OCI state of a container.
pub fn state(root: &Root, id: &str) -> Result<OciState> {
    let record = root.load(id)?;
    let status = record.status(root);
    Ok(record.oci_state(status))
}

/// Let a created container's init exec the workload; then run poststart hooks.
pub fn start(root: &Root, id: &str) -> Result<()> {
    let record = root.load(id)?;
    let status = record.status(root);
    if status != Status::Created {
        return Err(bad_state(id, status, "start", "created"));
    }
    let fifo = state::exec_fifo(&root.container_dir(id));
    let reader = nix::fcntl::open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", fifo.display()), e))?;
    // The init opens the other end as soon as we hold this one, runs the startContainer
    // hooks and writes one byte; its close-on-exec writer then closes at the exec.
    let mut buf = [0u8; 1];
    let mut got_byte = false;
    loop {
        let mut fds = [nix::poll::PollFd::new(
            reader.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16));
        match nix::unistd::read(&reader, &mut buf) {
            Ok(1) => got_byte = true,
            // End of file before the byte only means the init has not opened it yet.
            Ok(_) if got_byte => break,
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {
                if !record.init_alive() {
                    let _ = std::fs::remove_file(&fifo);
                    return Err(Error::Init(format!(
                        "container {id}: init exited before its process started"
                    )));
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::sys("read exec fifo", e)),
        }
    }
    let _ = std::fs::remove_file(&fifo);
    let json = serde_json::to_vec(&record.oci_state(Status::Running))
        .map_err(|e| Error::Init(e.to_string()))?;
    // A failed poststart hook is a warning; the remaining hooks still run.
    for e in hooks::run_each(
        record
            .config
            .hooks()
            .as_ref()
            .and_then(|h| h.poststart().as_ref()),
        &json,
    ) {
        eprintln!("polis: warning: poststart: {e}");
    }
    Ok(())
}

/// Parse a signal as runc does: a name with or without SIG, or a number.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('+').parse().unwrap_or(-1)
        };
        if off >= 0 && libc::SIGRTMIN() + off <= libc::SIGRTMAX() {
            return Ok(libc::SIGRTMIN() + off);
        }
    }
    name.parse::<Signal>()
        .map(|s| s as i32)
        .map_err(|_| Error::InvalidConfig(format!("unknown signal {s:?}")))
}

/// Send `signal` to the init (or, with `all`, to every process of the container).
pub fn kill(root: &Root, id: &str, signal: i32, all: bool) -> Result<()> {
    let record = root.load(id)?;
    let status = record.status(root);
    if status == Status::Stopped {
        return Err(bad_state(id, status, "kill", "running"));
    }
    if all {
        return record.cgroup.kill_all(signal);
    }
    signal_pid(record.pid, signal)
}

fn signal_pid(pid: i32, signal: i32) -> Result<()> {
    // SAFETY: kill(2) with integer arguments only.
    let ret = unsafe { libc::kill(pid, signal) };
    if ret != 0 {
        return Err(Error::sys(
            format!("kill {pid} with signal {signal}"),
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

/// Remove a container. A running one needs `force` (its processes are killed).
pub fn delete(root: &Root, id: &str, force: bool) -> Result<()> {
    let record = match root.load(id) {
        Ok(r) => r,
        // A create killed halfway may have left a directory without a record.
        Err(Error::NotFound(_)) if force => return root.remove(id),
        Err(e) => return Err(e),
    };
    let status = record.status(root);
    match status {
        Status::Stopped => {}
        Status::Created => kill_and_wait(&record)?,
        _ if force => kill_and_wait(&record)?,
        _ => return Err(bad_state(id, status, "delete", "stopped (or use --force)")),
    }
    destroy(root, &record)
}

fn kill_and_wait(record: &Record) -> Result<()> {
    let _ = record.cgroup.kill_all(libc::SIGKILL);
    if record.init_alive() {
        let _ = send_signal(Pid::from_raw(record.pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while record.init_alive() || !record.cgroup.pids().unwrap_or_default().is_empty() {
        if Instant::now() > deadline {
            return Err(Error::Init(format!(
                "container {}: processes did not exit after SIGKILL",
                record.id
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Tear down a stopped container: poststop hooks, cgroup, state. Every step runs even if
/// an earlier one failed; the first error is returned.
fn destroy(root: &Root, record: &Record) -> Result<()> {
    let mut first_error = None;
    let json = serde_json::to_vec(&record.oci_state(Status::Stopped)).unwrap_or_default();
    // A failed poststop hook is a warning; the remaining hooks still run.
    for e in hooks::run_each(
        record
            .config
            .hooks()
            .as_ref()
            .and_then(|h| h.poststop().as_ref()),
        &json,
    ) {
        eprintln!("polis: warning: poststop: {e}");
    }
    // Processes may still be leaving the cgroup; wait a moment for them.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !record.cgroup.pids().unwrap_or_default().is_empty() && Instant::now() < deadline {
        let _ = record.cgroup.kill_all(libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Err(e) = record.cgroup.destroy() {
        first_error.get_or_insert(e);
    }
    if let Err(e) = root.remove(&record.id) {
        first_error.get_or_insert(e);
    }
    first_error.map_or(Ok(()), Err)
}

pub fn pause(root: &Root, id: &str) -> Result<()> {
    let record = root.load(id)?;
    let status = record.status(root);
    if status != Status::Running && status != Status::Created {
        return Err(bad_state(id, status, "pause", "running"));
    }
    record.cgroup.freeze()
}

pub fn resume(root: &Root, id: &str) -> Result<()> {
    let record = root.load(id)?;
    let status = record.status(root);
    if status != Status::Paused {
        return Err(bad_state(id, status, "resume", "paused"));
    }
    record.cgroup.thaw()
}

/// Apply new resource limits and remember them.
pub fn update(root: &Root, id: &str, resources: &LinuxResources) -> Result<()> {
    let mut record = root.load(id)?;
    let status = record.status(root);
    if status == Status::Stopped {
        return Err(bad_state(id, status, "update", "running"));
    }
    record.cgroup.set(resources)?;
    if let Some(linux) = record.config.linux_mut() {
        linux.set_resources(Some(merge_resources(linux.resources().clone(), resources)));
    }
    root.save(&record)
}

/// New values replace old ones field by field; what `update` leaves out is kept.
fn merge_resources(old: Option<LinuxResources>, new: &LinuxResources) -> LinuxResources {
    let mut merged = serde_json::to_value(old.unwrap_or_default()).unwrap_or_default();
    merge_json(&mut merged, serde_json::to_value(new).unwrap_or_default());
    serde_json::from_value(merged).unwrap_or_else(|_| new.clone())
}

fn merge_json(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    continue;
                }
                merge_json(a.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// Pids of every process in the container.
pub fn pids(root: &Root, id: &str) -> Result<Vec<i32>> {
    let record = root.load(id)?;
    record.cgroup.pids()
}

/// Every container of this root with its state.
pub fn list(root: &Root) -> Result<Vec<OciState>> {
    let mut out = Vec::new();
    for id in root.ids()? {
        if let Ok(record) = root.load(&id) {
            let status = record.status(root);
            out.push(record.oci_state(status));
        }
    }
    Ok(out)
}
