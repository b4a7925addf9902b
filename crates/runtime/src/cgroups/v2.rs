//! Writing OCI resource limits into cgroup v2 interface files, with runc's
//! conversions from the v1-shaped OCI values.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};

use super::fs::{self, exists, write};
use crate::error::{Error, Result};

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// OCI's swap is memory+swap (the v1 memsw limit); v2's memory.swap.max is swap
/// alone. Same rules as runc's ConvertMemorySwapToCgroupV2Value.
pub fn swap_to_v2(swap: i64, memory: i64) -> Result<i64> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err(Error::InvalidConfig(
            "memory.swap needs a memory.limit on cgroup v2".into(),
        ));
    }
    if memory < 0 {
        return Err(Error::InvalidConfig(format!(
            "memory.limit {memory} is invalid"
        )));
    }
    if swap < memory {
        return Err(Error::InvalidConfig(format!(
            "memory.swap {swap} (memory+swap) is below memory.limit {memory}"
        )));
    }
    Ok(swap - memory)
}

/// cpu.shares (2..262144) to cpu.weight (1..10000), as runc converts.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.saturating_sub(2)) * 9999) / 262142
}

/// blkio.weight (10..1000) to io.weight (1..10000), as runc converts.
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (u64::from(weight).saturating_sub(10)) * 9999 / 990
}

pub fn set_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    let swap = swap_to_v2(m.swap().unwrap_or(0), limit)?;
    if swap != 0 {
        let value = max_or(swap);
        if let Err(e) = write(dir, "memory.swap.max", &value) {
            // Without swap accounting, "max" and "0" mean nothing anyway.
            let missing = !exists(dir, "memory.swap.max");
            if !(missing && (value == "max" || value == "0")) {
                return Err(e);
            }
        }
    }
    if limit != 0 {
        write(dir, "memory.max", &max_or(limit))?;
    }
    if let Some(r) = m.reservation() {
        if r != 0 {
            write(dir, "memory.low", &max_or(r))?;
        }
    }
    if let Some(s) = m.swappiness() {
        return Err(Error::Unsupported(format!(
            "memory.swappiness ({s}) is not supported on cgroup v2"
        )));
    }
    // oom_kill_disable and kernel memory limits have no v2 equivalent; runc
    // ignores them as well.
    Ok(())
}

pub fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(shares) = c.shares() {
        if shares != 0 {
            write(dir, "cpu.weight", &shares_to_weight(shares).to_string())?;
        }
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let mut value = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            value.push_str(&format!(" {period}"));
        }
        write(dir, "cpu.max", &value)?;
    }
    if let Some(burst) = c.burst() {
        write(dir, "cpu.max.burst", &burst.to_string())?;
    }
    if let Some(idle) = c.idle() {
        write(dir, "cpu.idle", &idle.to_string())?;
    }
    if c.realtime_runtime().unwrap_or(0) != 0 || c.realtime_period().unwrap_or(0) != 0 {
        return Err(Error::Unsupported(
            "cpu.realtimeRuntime/realtimePeriod are not supported on cgroup v2".into(),
        ));
    }
    Ok(())
}

pub fn set_io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    if let Some(w) = b.weight() {
        if w != 0 {
            if exists(dir, "io.bfq.weight") {
                write(dir, "io.bfq.weight", &w.to_string())?;
            } else {
                write(dir, "io.weight", &blkio_weight_to_io(w).to_string())?;
            }
        }
    }
    if b.leaf_weight().is_some() {
        return Err(Error::Unsupported(
            "blockIO.leafWeight is not supported on cgroup v2".into(),
        ));
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight() {
            let line = format!("{}:{} {}", wd.major(), wd.minor(), w);
            if exists(dir, "io.bfq.weight") {
                write(dir, "io.bfq.weight", &line)?;
            } else {
                let line = format!("{}:{} {}", wd.major(), wd.minor(), blkio_weight_to_io(w));
                write(dir, "io.weight", &line)?;
            }
        }
    }
    let throttles = [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ];
    for (list, key) in throttles {
        for t in list.iter().flatten() {
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            write(
                dir,
                "io.max",
                &format!("{}:{} {key}={rate}", t.major(), t.minor()),
            )?;
        }
    }
    Ok(())
}

pub fn set_hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let file = format!("hugetlb.{}.max", l.page_size());
        super::v1::check_page_size(dir, l.page_size(), &file)?;
        write(dir, &file, &max_or(l.limit()))?;
    }
    Ok(())
}

/// `unified` entries are written verbatim; each key must name an existing file
/// of this cgroup.
pub fn set_unified(dir: &Path, unified: &HashMap<String, String>) -> Result<()> {
    let mut keys: Vec<&String> = unified.keys().collect();
    keys.sort();
    for key in keys {
        if key.is_empty() || key.contains('/') || key == "." || key == ".." {
            return Err(Error::InvalidConfig(format!(
                "unified key {key:?} is not a cgroup file name"
            )));
        }
        if !exists(dir, key) {
            return Err(Error::InvalidConfig(format!(
                "unified key {key:?}: {} does not exist (unknown file or controller not enabled)",
                dir.join(key).display()
            )));
        }
        write(dir, key, &unified[key])?;
    }
    Ok(())
}

/// Enable `wanted` controllers (those available) in cgroup.subtree_control of every
/// directory from the hierarchy root down to the parent of `dir`.
pub fn enable_controllers(mount_point: &Path, dir: &Path, wanted: &[String]) -> Result<()> {
    if wanted.is_empty() {
        return Ok(());
    }
    let Ok(rel) = dir.strip_prefix(mount_point) else {
        return Ok(());
    };
    let mut current = mount_point.to_path_buf();
    for component in rel.components() {
        let available = fs::read(&current, "cgroup.controllers")?;
        let enabled = fs::read(&current, "cgroup.subtree_control")?;
        for c in wanted {
            let is_available = available.split_whitespace().any(|a| a == c);
            let is_enabled = enabled.split_whitespace().any(|a| a == c);
            if is_available && !is_enabled {
                // Some controllers cannot be enabled everywhere (e.g. cpu with
                // realtime tasks); those limits then fail with a clear error when
                // their file is missing.
                let _ = write(&current, "cgroup.subtree_control", &format!("+{c}"));
            }
        }
        current.push(component);
    }
    Ok(())
}

pub fn freeze(dir: &Path, frozen: bool) -> Result<()> {
    write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let want = if frozen { "frozen 1" } else { "frozen 0" };
    for _ in 0..1000 {
        let events = fs::read(dir, "cgroup.events")?;
        if events.lines().any(|l| l.trim() == want) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Err(Error::Cgroup(format!(
        "{} did not report \"{want}\" in time",
        dir.join("cgroup.events").display()
    )))
}

pub fn is_frozen(dir: &Path) -> Result<bool> {
    Ok(fs::read(dir, "cgroup.freeze")?.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_like_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10000);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(swap_to_v2(0, -1).ok(), Some(-1));
        assert_eq!(swap_to_v2(200, 100).ok(), Some(100));
        assert_eq!(swap_to_v2(-1, 100).ok(), Some(-1));
        assert!(swap_to_v2(50, 100).is_err());
        assert!(swap_to_v2(50, 0).is_err());
    }
}
