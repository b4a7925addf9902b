//! Cgroups: v1, v2 and the hybrid layout behind one manager. Every cgroup the
//! runtime creates is recorded so that delete removes exactly those.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One container's cgroup, on whatever hierarchies this host has.
/// Serialized into the container's state so later commands find the same cgroups.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CgroupManager {
    /// The absolute cgroup path (e.g. `/polis/abc`), the same in every hierarchy.
    pub path: PathBuf,
}

/// What to mount at /sys/fs/cgroup inside the container for one hierarchy.
#[derive(Debug, Clone)]
pub struct CgroupMount {
    /// Directory name under /sys/fs/cgroup ("memory", "cpu,cpuacct", "unified", "" for a pure v2 host).
    pub name: String,
    /// The container's own cgroup directory on the host.
    pub host_dir: PathBuf,
    /// v1 mount options naming the controllers ("memory", "name=systemd"); None for cgroup2.
    pub v1_options: Option<String>,
}

/// Resource usage, shaped like runc's `events --stats` data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats(pub serde_json::Value);

impl CgroupManager {
    /// Resolve `cgroups_path` as runc does: absolute paths as given, relative ones under the
    /// caller's own cgroup, none at all as `/polis/<id>`.
    pub fn new(cgroups_path: Option<&Path>, container_id: &str) -> Result<Self> {
        let path = match cgroups_path {
            Some(p) => p.to_path_buf(),
            None => PathBuf::from("/polis").join(container_id),
        };
        Ok(Self { path })
    }
    /// Create the cgroup in every hierarchy and apply `resources`.
    pub fn create(&self, _resources: Option<&LinuxResources>) -> Result<()> {
        unimplemented!()
    }
    /// Move `pid` into the cgroup on every hierarchy.
    pub fn add_process(&self, _pid: i32) -> Result<()> {
        unimplemented!()
    }
    /// Apply new limits to a live cgroup (`update`).
    pub fn set(&self, _resources: &LinuxResources) -> Result<()> {
        unimplemented!()
    }
    pub fn freeze(&self) -> Result<()> {
        unimplemented!()
    }
    pub fn thaw(&self) -> Result<()> {
        unimplemented!()
    }
    pub fn is_frozen(&self) -> Result<bool> {
        unimplemented!()
    }
    /// Every pid in the cgroup (including sub-cgroups).
    pub fn pids(&self) -> Result<Vec<i32>> {
        unimplemented!()
    }
    pub fn stats(&self) -> Result<Stats> {
        unimplemented!()
    }
    /// What the container's /sys/fs/cgroup should show.
    pub fn mounts(&self) -> Result<Vec<CgroupMount>> {
        unimplemented!()
    }
    /// Signal every process in the cgroup (frozen first, so none can fork away).
    pub fn kill_all(&self, _signal: i32) -> Result<()> {
        unimplemented!()
    }
    /// Remove every directory `create` made. Processes must be gone already.
    pub fn destroy(&self) -> Result<()> {
        unimplemented!()
    }
}
