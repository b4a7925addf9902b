//! What a daemon that was killed leaves behind, put right when the next one starts.
//!
//! A container's record, its directories, its snapshot, its name and its shim are made
//! in steps; a daemon killed between two of them leaves a part without the rest. And a
//! shim killed on its own leaves a container nobody watches. At start-up, before the
//! API serves, every part is checked against the records: parts without a record go,
//! records whose shim died are settled.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use polis_runtime::state::Root;
use polis_storage::Snapshotter;

use crate::containers::{self, Container, Layout};
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::networking::Networks;

/// The exit code recorded for a container whose shim died: it was killed with it, as
/// containerd reports a task whose shim is gone (128 + SIGKILL).
pub const SHIM_DIED_EXIT_CODE: i32 = 137;

/// What the recovery did, for the daemon's log.
#[derive(Debug, Default)]
pub struct Report {
    /// Leftovers without a record: names, directories, snapshots, shims.
    pub orphans_removed: Vec<String>,
    /// Started containers whose shim had died: now exited.
    pub marked_exited: Vec<String>,
    /// Containers created but never started whose shim had died: a new shim again.
    pub recreated: Vec<String>,
    /// Steps that failed; the daemon still starts.
    pub errors: Vec<String>,
}

pub fn reconcile(layout: &Layout, md: &Metadata, networks: &Networks) -> Result<Report> {
    let mut report = Report::default();
    let records = md.containers()?;
    let ids: BTreeSet<&str> = records.iter().map(|c| c.id.as_str()).collect();

    for (name, id) in md.names()? {
        if !ids.contains(id.as_str()) {
            md.release_name(&name)?;
            report.orphans_removed.push(format!("name {name}"));
        }
    }
    remove_orphan_containers(layout, &ids, &mut report);
    remove_orphan_shims(layout, &ids, &mut report);
    // Endpoints and namespaces of containers that are gone (made or removed in part).
    for id in networks.reconcile(&|id| ids.contains(id)) {
        report
            .orphans_removed
            .push(format!("network endpoints of {id}"));
    }
    for c in &records {
        settle(layout, networks, c, &mut report);
        // Ports stay published and names answered only for containers still running.
        let status = containers::state(layout, &c.id).status;
        let result = match status.as_str() {
            "running" | "paused" => {
                networks.mark_running(&c.id);
                Ok(())
            }
            _ => networks.deactivate(&c.id),
        };
        if let Err(e) = result {
            report
                .errors
                .push(format!("{}: unpublish ports: {e}", c.id));
        }
    }
    Ok(report)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Container directories, snapshots and runtime state whose create never got as far
/// as the record.
fn remove_orphan_containers(layout: &Layout, ids: &BTreeSet<&str>, report: &mut Report) {
    let runtime = Root::new(layout.runtime_root());
    let mut orphans: BTreeSet<String> = BTreeSet::new();
    orphans.extend(entries(&layout.root.join("containers")));
    orphans.extend(entries(&layout.snapshots().join("containers")));
    if let Ok(states) = polis_runtime::container::list(&runtime) {
        orphans.extend(states.into_iter().map(|s| s.id));
    }
    orphans.retain(|id| !ids.contains(id.as_str()));
    for id in orphans {
        let mut failed = |what: &str, e: String| report.errors.push(format!("{id}: {what}: {e}"));
        if let Err(e) = polis_runtime::container::delete(&runtime, &id, true) {
            if !matches!(e, polis_runtime::Error::NotFound(_)) {
                failed("runtime delete", e.to_string());
            }
        }
        let rootfs = layout.bundle(&id).join("rootfs");
        if containers::is_mounted(&rootfs) {
            if let Err(e) = polis_storage::unmount(&rootfs) {
                failed("unmount", e.to_string());
            }
        }
        match Snapshotter::new(layout.snapshots()).and_then(|s| s.remove_container(&id)) {
            Ok(()) | Err(polis_storage::Error::NotFound(_)) => {}
            Err(e) => failed("remove snapshot", e.to_string()),
        }
        for dir in [layout.container_dir(&id), layout.shim_dir(&id)] {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    failed("remove", format!("{}: {e}", dir.display()));
                }
            }
        }
        report.orphans_removed.push(format!("container {id}"));
    }
}

/// Shim directories of no container: their shim, if alive, is stopped.
fn remove_orphan_shims(layout: &Layout, ids: &BTreeSet<&str>, report: &mut Report) {
    let dir = layout.run_root.join("c");
    for key in entries(&dir) {
        if ids.iter().any(|id| layout.shim_dir(id).ends_with(&key)) {
            continue;
        }
        let shim_dir = dir.join(&key);
        if let Some(pid) = live_shim_pid(&shim_dir) {
            // SAFETY: kill(2) on a pid read from the shim's own pid file, checked to be
            // a live `polis shim` process.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Err(e) = std::fs::remove_dir_all(&shim_dir) {
            report
                .errors
                .push(format!("remove {}: {e}", shim_dir.display()));
        }
        report.orphans_removed.push(format!("shim {key}"));
    }
}

/// The pid in the shim's pid file, if that process is alive and is a shim.
fn live_shim_pid(shim_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(shim_dir.join(polis_shim::PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let shim = cmdline
        .split(|b| *b == 0)
        .any(|arg| arg == b"shim".as_slice());
    shim.then_some(pid)
}

fn shim_answers(layout: &Layout, id: &str) -> bool {
    containers::call(layout, id, &polis_shim::protocol::Request::State).is_ok()
}

/// A record whose shim does not answer: wait for a shim still starting up; otherwise
/// the container is gone with its shim, and its record says so.
fn settle(layout: &Layout, networks: &Networks, c: &Container, report: &mut Report) {
    let id = c.id.as_str();
    let shim_dir = layout.shim_dir(id);
    if shim_answers(layout, id) {
        return;
    }
    if live_shim_pid(&shim_dir).is_some() {
        // A launcher orphaned by the daemon's death may still be creating it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if shim_answers(layout, id) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let exit_file = shim_dir.join(polis_shim::EXIT_FILE);
    let exited = exit_file.exists();
    let runtime = Root::new(layout.runtime_root());
    if let Err(e) = polis_runtime::container::delete(&runtime, id, true) {
        if !matches!(e, polis_runtime::Error::NotFound(_)) {
            report.errors.push(format!("{id}: runtime delete: {e}"));
        }
    }
    let _ = std::fs::remove_file(shim_dir.join(polis_shim::SOCKET));
    if exited {
        return;
    }
    if c.started_at.is_some() {
        match write_exit(&shim_dir, SHIM_DIED_EXIT_CODE) {
            Ok(()) => report.marked_exited.push(id.to_string()),
            Err(e) => report.errors.push(format!("{id}: {e}")),
        }
    } else {
        match containers::recreate(layout, networks, c) {
            Ok(()) => report.recreated.push(id.to_string()),
            Err(e) => report.errors.push(format!("{id}: recreate: {e}")),
        }
    }
}

fn write_exit(shim_dir: &Path, code: i32) -> Result<()> {
    let status = polis_shim::protocol::ExitStatus {
        exit_code: code,
        signal: Some(code - 128),
        finished_at: polis_runtime::state::now_rfc3339(),
        oom_killed: false,
    };
    std::fs::create_dir_all(shim_dir).map_err(|e| Error::io("create", shim_dir, e))?;
    let path = shim_dir.join(polis_shim::EXIT_FILE);
    let tmp = shim_dir.join(".exit.json.tmp");
    let json = serde_json::to_vec(&status).map_err(|e| Error::InvalidInput(e.to_string()))?;
    std::fs::write(&tmp, json).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
}
