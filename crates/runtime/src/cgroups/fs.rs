//! Finding the host's cgroup hierarchies (from /proc/self/mountinfo) and small
//! helpers for reading and writing cgroup control files with useful errors.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which cgroup version a hierarchy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// One mounted cgroup hierarchy and the container's directory in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    pub version: Version,
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// v1: the controllers of the mount ("cpu", "name=systemd"); v2: the controllers
    /// available at the mount's root (cgroup.controllers).
    pub controllers: Vec<String>,
    /// The container's cgroup directory in this hierarchy.
    pub dir: PathBuf,
}

impl Hierarchy {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

/// A cgroup mount found in mountinfo, before the container's path is known.
#[derive(Debug, Clone)]
pub struct MountedHierarchy {
    pub version: Version,
    pub mount_point: PathBuf,
    /// The cgroup path of the mount's root (`/` unless a sub-tree is bind-mounted).
    pub root: PathBuf,
    pub controllers: Vec<String>,
}

/// Options of a v1 cgroup mount that are not controller names.
const V1_NON_CONTROLLER_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "clone_children",
    "noprefix",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
    "nofavordynmods",
];

/// Undo the octal escapes (`\040` for a space) mountinfo uses in paths.
fn unescape_mount_path(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|oct| u8::from_str_radix(oct, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse the text of a mountinfo file into the cgroup hierarchies it mounts.
/// A hierarchy mounted more than once is reported once (its first mount).
pub fn parse_mountinfo(text: &str) -> Vec<MountedHierarchy> {
    let mut found: Vec<MountedHierarchy> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 5 || fields.len() < sep + 4 {
            continue;
        }
        let fstype = fields[sep + 1];
        let super_options = fields[sep + 3];
        let root = PathBuf::from(unescape_mount_path(fields[3]));
        let mount_point = PathBuf::from(unescape_mount_path(fields[4]));
        let (version, controllers) = match fstype {
            "cgroup2" => (Version::V2, Vec::new()),
            "cgroup" => {
                let controllers: Vec<String> = super_options
                    .split(',')
                    .filter(|o| {
                        !V1_NON_CONTROLLER_OPTIONS.contains(o) && !o.starts_with("release_agent=")
                    })
                    .map(str::to_string)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                (Version::V1, controllers)
            }
            _ => continue,
        };
        let duplicate = found.iter().any(|h| {
            h.version == version
                && (version == Version::V2 || same_set(&h.controllers, &controllers))
        });
        if duplicate {
            continue;
        }
        found.push(MountedHierarchy {
            version,
            mount_point,
            root,
            controllers,
        });
    }
    found
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// The cgroup hierarchies mounted in this process's mount namespace.
pub fn mounted_hierarchies() -> Result<Vec<MountedHierarchy>> {
    let path = "/proc/self/mountinfo";
    let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let mut found = parse_mountinfo(&text);
    for h in found.iter_mut().filter(|h| h.version == Version::V2) {
        h.controllers = read_controllers(&h.mount_point.join("cgroup.controllers"))?;
    }
    if found.is_empty() {
        return Err(Error::Cgroup(
            "no cgroup hierarchy is mounted (none in /proc/self/mountinfo)".into(),
        ));
    }
    Ok(found)
}

fn read_controllers(path: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    Ok(text.split_whitespace().map(str::to_string).collect())
}

/// This process's own cgroup in `hierarchy`, from /proc/self/cgroup.
pub fn own_cgroup(hierarchy: &MountedHierarchy) -> Result<PathBuf> {
    let path = "/proc/self/cgroup";
    let text = fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    own_cgroup_in(&text, hierarchy).ok_or_else(|| {
        Error::Cgroup(format!(
            "{path} has no entry for the hierarchy mounted at {}",
            hierarchy.mount_point.display()
        ))
    })
}

pub fn own_cgroup_in(text: &str, hierarchy: &MountedHierarchy) -> Option<PathBuf> {
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(cgroup)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let matches = match hierarchy.version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => {
                let list: Vec<String> = controllers.split(',').map(str::to_string).collect();
                !controllers.is_empty() && same_set(&list, &hierarchy.controllers)
            }
        };
        if matches {
            return Some(PathBuf::from(cgroup));
        }
    }
    None
}

/// Reject cgroup paths that could climb out of their parent.
pub fn check_cgroup_path(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::InvalidConfig("cgroupsPath is empty".into()));
    }
    for c in path.components() {
        if matches!(c, Component::ParentDir) {
            return Err(Error::InvalidConfig(format!(
                "cgroupsPath {}: \"..\" is not allowed",
                path.display()
            )));
        }
    }
    Ok(())
}

/// `base` joined with `path` taken as relative (leading `/` and `.` dropped).
pub fn join_relative(base: &Path, path: &Path) -> PathBuf {
    let mut out = base.to_path_buf();
    for c in path.components() {
        if let Component::Normal(n) = c {
            out.push(n);
        }
    }
    out
}

pub fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|e| Error::io("write", path, e))
}

pub fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|e| Error::io("read", path, e))
}

/// Read a file holding one number ("max" counts as u64::MAX).
pub fn read_u64(dir: &Path, file: &str) -> Result<u64> {
    let text = read(dir, file)?;
    parse_u64(text.trim()).ok_or_else(|| {
        Error::Cgroup(format!(
            "{}: expected a number, found {:?}",
            dir.join(file).display(),
            text.trim()
        ))
    })
}

pub fn parse_u64(s: &str) -> Option<u64> {
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// Like [`read_u64`] but 0 when the file does not exist (optional kernel features).
pub fn read_u64_or_zero(dir: &Path, file: &str) -> u64 {
    read_u64(dir, file).unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat) as pairs.
pub fn read_key_values(dir: &Path, file: &str) -> Result<Vec<(String, u64)>> {
    let text = read(dir, file)?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = parse_u64(it.next()?)?;
            Some((k.to_string(), v))
        })
        .collect())
}

pub fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// rmdir, retrying for up to `patience` while the kernel still reports the cgroup
/// busy (tasks that were killed take a moment to leave it).
pub fn remove_dir_retrying(path: &Path, patience: Duration) -> Result<()> {
    let deadline = Instant::now() + patience;
    let mut delay = Duration::from_millis(2);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(e) => {
                let busy = e.raw_os_error() == Some(libc::EBUSY);
                return Err(Error::Cgroup(format!(
                    "rmdir {}: {e}{}",
                    path.display(),
                    if busy {
                        " (processes are still in the cgroup)"
                    } else {
                        ""
                    }
                )));
            }
        }
    }
}

/// Remove `dir` and every cgroup below it, deepest first.
pub fn remove_tree(dir: &Path, patience: Duration) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path(), patience)?;
        }
    }
    remove_dir_retrying(dir, patience)
}

/// Every pid listed in `cgroup.procs` of `dir` and its sub-cgroups.
pub fn pids_in_tree(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    match fs::read_to_string(&procs) {
        Ok(text) => out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("read", procs, e)),
    }
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            pids_in_tree(&entry.path(), out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 /x /mnt/mem\\040dir rw,relatime - cgroup cgroup rw,memory
";

    #[test]
    fn parses_hybrid_mountinfo() {
        let h = parse_mountinfo(HYBRID);
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].controllers, vec!["cpu"]);
        assert_eq!(h[2].controllers, vec!["name=systemd"]);
        assert_eq!(h[3].version, Version::V2);
        assert_eq!(h[3].mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn unescapes_paths() {
        assert_eq!(unescape_mount_path("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }

    #[test]
    fn finds_own_cgroup() {
        let h = parse_mountinfo(HYBRID);
        let text = "4:memory:/process_api/x\n1:cpu:/\n9:name=systemd:/s\n0::/u\n";
        assert_eq!(
            own_cgroup_in(text, &h[1]),
            Some(PathBuf::from("/process_api/x"))
        );
        assert_eq!(own_cgroup_in(text, &h[2]), Some(PathBuf::from("/s")));
        assert_eq!(own_cgroup_in(text, &h[3]), Some(PathBuf::from("/u")));
    }

    #[test]
    fn rejects_parent_components() {
        assert!(check_cgroup_path(Path::new("a/../b")).is_err());
        assert!(check_cgroup_path(Path::new("/polis/x")).is_ok());
    }
}
