//! Cgroups: v1, v2 and the hybrid layout behind one manager. Every cgroup the
//! runtime creates is recorded so that delete removes exactly those.
//!
//! Hierarchies are found in /proc/self/mountinfo. Each controller is driven through
//! the v1 hierarchy that has it, or else through the cgroup2 hierarchy (pure v2, or
//! the unified mount of a hybrid host when v1 lacks the controller).

mod devices_bpf;
mod fs;
mod stats;
mod v1;
mod v2;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use fs::{Hierarchy, Version};

use crate::error::{Error, Result};

/// The parent of every default cgroup path; shared, so never removed.
const POLIS_PARENT: &str = "polis";

/// How the host's cgroups are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 mount (usually /sys/fs/cgroup/unified).
    Hybrid,
    /// Only cgroup2.
    V2,
}

/// One container's cgroup, on whatever hierarchies this host has.
/// Serialized into the container's state so later commands find the same cgroups.
#[derive(Debug, Serialize, Deserialize)]
pub struct CgroupManager {
    /// The cgroup path as configured: absolute (e.g. `/polis/abc`, the same in every
    /// hierarchy) or relative to the creating process's cgroups.
    pub path: PathBuf,
    pub layout: Layout,
    /// Every hierarchy with the container's directory in it, resolved once by `new`
    /// so later commands use the same directories whatever cgroup they run in.
    pub hierarchies: Vec<Hierarchy>,
    /// Directories `create` made, in creation order (parents first).
    #[serde(default)]
    created: Mutex<Vec<PathBuf>>,
}

impl Clone for CgroupManager {
    fn clone(&self) -> Self {
        Self {
            path: self.path.clone(),
            layout: self.layout,
            hierarchies: self.hierarchies.clone(),
            created: Mutex::new(self.created_dirs()),
        }
    }
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
            None => {
                if container_id.is_empty() || container_id.contains('/') || container_id == ".." {
                    return Err(Error::InvalidId(container_id.to_string()));
                }
                PathBuf::from("/").join(POLIS_PARENT).join(container_id)
            }
        };
        fs::check_cgroup_path(&path)?;
        let mounted = fs::mounted_hierarchies()?;
        let has_v1 = mounted.iter().any(|h| h.version == Version::V1);
        let has_v2 = mounted.iter().any(|h| h.version == Version::V2);
        let layout = match (has_v1, has_v2) {
            (true, true) => Layout::Hybrid,
            (true, false) => Layout::V1,
            _ => Layout::V2,
        };
        let mut hierarchies = Vec::new();
        for m in &mounted {
            let dir = if path.is_absolute() {
                fs::join_relative(&m.mount_point, &path)
            } else {
                let own = fs::own_cgroup(m)?;
                // Inside a bind-mounted sub-tree, the cgroup path is relative to the mount root.
                let own = own.strip_prefix(&m.root).unwrap_or(&own).to_path_buf();
                fs::join_relative(&fs::join_relative(&m.mount_point, &own), &path)
            };
            hierarchies.push(Hierarchy {
                version: m.version,
                mount_point: m.mount_point.clone(),
                controllers: m.controllers.clone(),
                dir,
            });
        }
        Ok(Self {
            path,
            layout,
            hierarchies,
            created: Mutex::new(Vec::new()),
        })
    }

    /// Directories created by `create`, parents first.
    pub fn created_dirs(&self) -> Vec<PathBuf> {
        match self.created.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn record_created(&self, dir: PathBuf) {
        match self.created.lock() {
            Ok(mut g) => g.push(dir),
            Err(poisoned) => poisoned.into_inner().push(dir),
        }
    }

    fn v2(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.version == Version::V2)
    }

    /// The hierarchy that drives `controller` (v1 name), and whether it is cgroup2.
    fn controller(&self, controller: &str) -> Option<&Hierarchy> {
        if let Some(h) = self
            .hierarchies
            .iter()
            .find(|h| h.version == Version::V1 && h.has(controller))
        {
            return Some(h);
        }
        let v2_name = match controller {
            "blkio" => "io",
            "cpuacct" => "cpu",
            // Built into cgroup2 rather than listed as controllers.
            "devices" | "freezer" => return self.v2(),
            other => other,
        };
        self.v2().filter(|h| h.has(v2_name))
    }

    fn require(&self, controller: &str, what: &str) -> Result<&Hierarchy> {
        self.controller(controller).ok_or_else(|| {
            Error::Cgroup(format!(
                "{what} is set but this host has no {controller} cgroup controller"
            ))
        })
    }

    /// The cgroup2 controllers to enable in the ancestors' subtree_control: on a pure
    /// v2 host all available ones (as runc); on a hybrid host only those that drive
    /// limits in `resources` because v1 lacks them, so the shared unified tree is left
    /// as it is unless needed.
    fn v2_controllers_to_enable(&self, resources: Option<&LinuxResources>) -> Vec<String> {
        let Some(h) = self.v2() else {
            return Vec::new();
        };
        if self.layout == Layout::V2 {
            return h.controllers.clone();
        }
        let Some(r) = resources else {
            return Vec::new();
        };
        let mut wanted = Vec::new();
        if r.memory().is_some() {
            wanted.push("memory");
        }
        if r.cpu().is_some() {
            wanted.extend(["cpu", "cpuset"]);
        }
        if r.pids().is_some() {
            wanted.push("pids");
        }
        if r.block_io().is_some() {
            wanted.push("blkio");
        }
        if r.hugepage_limits().as_ref().is_some_and(|l| !l.is_empty()) {
            wanted.push("hugetlb");
        }
        if r.rdma().as_ref().is_some_and(|l| !l.is_empty()) {
            wanted.push("rdma");
        }
        wanted
            .into_iter()
            .filter(|c| {
                self.controller(c)
                    .is_some_and(|owner| owner.version == Version::V2)
            })
            .map(|c| {
                if c == "blkio" {
                    "io".to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    /// Create the cgroup in every hierarchy and apply `resources`.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<()> {
        let result = self.create_dirs(resources).and_then(|()| match resources {
            Some(r) => self.apply(r),
            None => Ok(()),
        });
        if let Err(e) = result {
            if let Err(cleanup) = self.destroy() {
                return Err(Error::Cgroup(format!(
                    "{e}; cleaning up also failed: {cleanup}"
                )));
            }
            return Err(e);
        }
        Ok(())
    }

    fn create_dirs(&self, resources: Option<&LinuxResources>) -> Result<()> {
        let enable = self.v2_controllers_to_enable(resources);
        for h in &self.hierarchies {
            let Ok(rel) = h.dir.strip_prefix(&h.mount_point) else {
                continue;
            };
            let mut current = h.mount_point.clone();
            for component in rel.components() {
                current.push(component);
                match std::fs::create_dir(&current) {
                    Ok(()) => self.record_created(current.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io("create cgroup", &current, e)),
                }
            }
            if h.version == Version::V2 {
                v2::enable_controllers(&h.mount_point, &h.dir, &enable)?;
            }
            if h.version == Version::V1 && h.has("cpuset") {
                v1::init_cpuset(&h.dir, &h.mount_point)?;
            }
        }
        Ok(())
    }

    /// Write every limit in `r`, each through the hierarchy that owns its controller.
    fn apply(&self, r: &LinuxResources) -> Result<()> {
        if let Some(m) = r.memory() {
            let h = self.require("memory", "memory")?;
            match h.version {
                Version::V1 => v1::set_memory(&h.dir, m)?,
                Version::V2 => v2::set_memory(&h.dir, m)?,
            }
        }
        if let Some(c) = r.cpu() {
            let cpu_set = c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.burst().is_some()
                || c.idle().is_some()
                || c.realtime_period().is_some()
                || c.realtime_runtime().is_some();
            if cpu_set {
                let h = self.require("cpu", "cpu")?;
                match h.version {
                    Version::V1 => v1::set_cpu(&h.dir, c)?,
                    Version::V2 => v2::set_cpu(&h.dir, c)?,
                }
            }
            let cpuset_set = c.cpus().as_ref().is_some_and(|s| !s.is_empty())
                || c.mems().as_ref().is_some_and(|s| !s.is_empty());
            if cpuset_set {
                // Same file names on v1 and v2.
                let h = self.require("cpuset", "cpu.cpus/cpu.mems")?;
                v1::set_cpuset(&h.dir, c)?;
            }
        }
        if let Some(p) = r.pids() {
            if p.limit() != 0 {
                let h = self.require("pids", "pids.limit")?;
                v1::set_pids(&h.dir, p.limit())?;
            }
        }
        if let Some(b) = r.block_io() {
            let h = self.require("blkio", "blockIO")?;
            match h.version {
                Version::V1 => v1::set_blkio(&h.dir, b)?,
                Version::V2 => v2::set_io(&h.dir, b)?,
            }
        }
        if let Some(limits) = r.hugepage_limits() {
            if !limits.is_empty() {
                let h = self.require("hugetlb", "hugepageLimits")?;
                match h.version {
                    Version::V1 => v1::set_hugetlb(&h.dir, limits)?,
                    Version::V2 => v2::set_hugetlb(&h.dir, limits)?,
                }
            }
        }
        if let Some(n) = r.network() {
            let dir_of = |c: &str| {
                self.hierarchies
                    .iter()
                    .find(|h| h.version == Version::V1 && h.has(c))
                    .map(|h| h.dir.as_path())
            };
            v1::set_network(dir_of("net_cls"), dir_of("net_prio"), n)?;
        }
        if let Some(rdma) = r.rdma() {
            if !rdma.is_empty() {
                let h = self.require("rdma", "rdma")?;
                v1::set_rdma(&h.dir, rdma)?;
            }
        }
        if let Some(devices) = r.devices() {
            let h = self.require("devices", "devices")?;
            match h.version {
                Version::V1 => v1::set_devices(&h.dir, devices)?,
                Version::V2 => devices_bpf::apply(&h.dir, devices)?,
            }
        }
        if let Some(unified) = r.unified() {
            if !unified.is_empty() {
                if self.layout != Layout::V2 {
                    return Err(Error::InvalidConfig(
                        "unified resources need a pure cgroup v2 host; this one uses cgroup v1 controllers".into(),
                    ));
                }
                if let Some(h) = self.v2() {
                    v2::set_unified(&h.dir, unified)?;
                }
            }
        }
        Ok(())
    }

    /// Move `pid` into the cgroup on every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        for h in &self.hierarchies {
            fs::write(&h.dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Move the calling process, which must be single-threaded, into the cgroup.
    ///
    /// On v1 this writes "0" (the caller) to `tasks`: moving only the current thread
    /// spares the kernel the global threadgroup lock and its RCU grace period, which
    /// writing a pid to `cgroup.procs` waits for (10 ms and more per container start).
    /// For a single-threaded process the result is the same.
    pub fn join_current(&self) -> Result<()> {
        for h in &self.hierarchies {
            match h.version {
                Version::V1 => fs::write(&h.dir, "tasks", "0")?,
                Version::V2 => fs::write(&h.dir, "cgroup.procs", "0")?,
            }
        }
        Ok(())
    }

    /// Apply new limits to a live cgroup (`update`).
    pub fn set(&self, resources: &LinuxResources) -> Result<()> {
        if self.layout == Layout::Hybrid {
            // A limit new to this update may need a unified controller enabled.
            let enable = self.v2_controllers_to_enable(Some(resources));
            if let Some(h) = self.v2() {
                v2::enable_controllers(&h.mount_point, &h.dir, &enable)?;
            }
        }
        self.apply(resources)
    }

    fn freezer(&self) -> Result<&Hierarchy> {
        self.controller("freezer")
            .ok_or_else(|| Error::Unsupported("this host has no cgroup freezer".into()))
    }

    pub fn freeze(&self) -> Result<()> {
        let h = self.freezer()?;
        match h.version {
            Version::V2 => v2::freeze(&h.dir, true),
            Version::V1 => {
                // Tasks in uninterruptible sleep can keep the state at FREEZING;
                // keep asking, then give up and thaw rather than stay half-frozen.
                for attempt in 0..1000u32 {
                    if attempt % 50 == 0 {
                        fs::write(&h.dir, "freezer.state", "FROZEN")?;
                    }
                    if fs::read(&h.dir, "freezer.state")?.trim() == "FROZEN" {
                        return Ok(());
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                let _ = fs::write(&h.dir, "freezer.state", "THAWED");
                Err(Error::Cgroup(format!(
                    "{} did not reach FROZEN in time",
                    h.dir.join("freezer.state").display()
                )))
            }
        }
    }

    pub fn thaw(&self) -> Result<()> {
        let h = self.freezer()?;
        match h.version {
            Version::V2 => v2::freeze(&h.dir, false),
            Version::V1 => {
                fs::write(&h.dir, "freezer.state", "THAWED")?;
                for _ in 0..1000 {
                    if fs::read(&h.dir, "freezer.state")?.trim() == "THAWED" {
                        return Ok(());
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                Err(Error::Cgroup(format!(
                    "{} did not reach THAWED in time",
                    h.dir.join("freezer.state").display()
                )))
            }
        }
    }

    pub fn is_frozen(&self) -> Result<bool> {
        let h = self.freezer()?;
        match h.version {
            Version::V2 => v2::is_frozen(&h.dir),
            Version::V1 => Ok(fs::read(&h.dir, "freezer.state")?.trim() == "FROZEN"),
        }
    }

    /// Every pid in the cgroup (including sub-cgroups).
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for h in &self.hierarchies {
            fs::pids_in_tree(&h.dir, &mut pids)?;
        }
        let unique: BTreeSet<i32> = pids.into_iter().collect();
        Ok(unique.into_iter().collect())
    }

    /// Send `signal` to every process in the cgroup, frozen meanwhile so none can fork
    /// away (as runc's signalAllProcesses). Processes already gone are not an error.
    pub fn kill_all(&self, signal: i32) -> Result<()> {
        let signal = Signal::try_from(signal)
            .map_err(|e| Error::InvalidConfig(format!("signal {signal}: {e}")))?;
        let frozen = self.freezer().is_ok() && self.freeze().is_ok();
        let pids = self.pids();
        let mut result = Ok(());
        if let Ok(pids) = &pids {
            for pid in pids {
                match kill(Pid::from_raw(*pid), signal) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                    Err(e) => {
                        result = Err(Error::sys(format!("kill {pid} with {signal}"), e));
                    }
                }
            }
        }
        if frozen {
            self.thaw()?;
        }
        pids?;
        result
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut data = serde_json::Map::new();
        let cpu = self.controller("cpu");
        match cpu.map(|h| h.version) {
            Some(Version::V2) => {
                if let Some(h) = cpu {
                    data.insert("cpu".into(), stats::cpu_v2(&h.dir)?);
                }
            }
            _ => {
                let cpuacct = self.controller("cpuacct").map(|h| h.dir.as_path());
                data.insert(
                    "cpu".into(),
                    stats::cpu_v1(cpuacct, cpu.map(|h| h.dir.as_path()))?,
                );
            }
        }
        if let Some(h) = self.controller("memory") {
            let memory = match h.version {
                Version::V1 => stats::memory_v1(&h.dir)?,
                Version::V2 => stats::memory_v2(&h.dir)?,
            };
            data.insert("memory".into(), memory);
        }
        if let Some(h) = self.controller("pids") {
            data.insert("pids".into(), stats::pids(&h.dir));
        }
        if let Some(h) = self.controller("blkio") {
            let blkio = match h.version {
                Version::V1 => stats::blkio_v1(&h.dir),
                Version::V2 => stats::io_v2(&h.dir),
            };
            data.insert("blkio".into(), blkio);
        }
        if let Some(h) = self.controller("hugetlb") {
            data.insert(
                "hugetlb".into(),
                stats::hugetlb(&h.dir, h.version == Version::V2),
            );
        } else {
            data.insert("hugetlb".into(), json!({}));
        }
        Ok(Stats(serde_json::Value::Object(data)))
    }

    /// How many times the kernel's OOM killer has struck in this cgroup (for `events`).
    pub fn oom_kills(&self) -> Result<u64> {
        let Some(h) = self.controller("memory") else {
            return Ok(0);
        };
        let file = match h.version {
            Version::V1 => h.dir.join("memory.oom_control"),
            Version::V2 => h.dir.join("memory.events"),
        };
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io("read", &file, e))?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    /// What the container's /sys/fs/cgroup should show.
    pub fn mounts(&self) -> Result<Vec<CgroupMount>> {
        let base = Path::new("/sys/fs/cgroup");
        Ok(self
            .hierarchies
            .iter()
            .map(|h| {
                let name = match h.mount_point.strip_prefix(base) {
                    Ok(rel) => rel.to_string_lossy().into_owned(),
                    Err(_) => match h.version {
                        Version::V2 if self.layout == Layout::V2 => String::new(),
                        Version::V2 => "unified".into(),
                        Version::V1 => h.controllers.join(","),
                    },
                };
                CgroupMount {
                    name,
                    host_dir: h.dir.clone(),
                    v1_options: (h.version == Version::V1).then(|| h.controllers.join(",")),
                }
            })
            .collect())
    }

    /// Remove every directory `create` made. Processes must be gone already.
    pub fn destroy(&self) -> Result<()> {
        let created = self.created_dirs();
        let leaves: BTreeSet<&PathBuf> = self.hierarchies.iter().map(|h| &h.dir).collect();
        let mut first_error = None;
        let mut remaining = Vec::new();
        // Deepest first; the container's own directories lose any sub-cgroups made
        // inside the container too, while created ancestors are left alone when
        // something else lives in them now.
        for dir in created.iter().rev() {
            if self.is_polis_parent(dir) {
                continue;
            }
            // Wait for exiting tasks once; after a failure, fail fast on the rest.
            let patience = if first_error.is_none() {
                Duration::from_secs(1)
            } else {
                Duration::ZERO
            };
            let result = if leaves.contains(dir) {
                fs::remove_tree(dir, patience)
            } else {
                match std::fs::remove_dir(dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e)
                        if matches!(
                            e.raw_os_error(),
                            Some(libc::EBUSY) | Some(libc::ENOTEMPTY)
                        ) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(Error::io("remove cgroup", dir, e)),
                }
            };
            if let Err(e) = result {
                remaining.push(dir.clone());
                first_error.get_or_insert(e);
            }
        }
        remaining.reverse();
        match self.created.lock() {
            Ok(mut g) => *g = remaining,
            Err(poisoned) => *poisoned.into_inner() = remaining,
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn is_polis_parent(&self, dir: &Path) -> bool {
        self.hierarchies
            .iter()
            .any(|h| dir == h.mount_point.join(POLIS_PARENT))
    }
}
