//! Writing OCI resource limits into cgroup v1 controller files, following runc's
//! file choices and write order.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory,
    LinuxNetwork, LinuxRdma,
};

use super::fs::{self, exists, write};
use crate::error::{Error, Result};

fn limit_str(v: i64) -> String {
    if v < 0 {
        "-1".into()
    } else {
        v.to_string()
    }
}

pub fn set_memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    if limit == -1 && swap == 0 {
        // Unlimited memory with swap unset means both unlimited, as runc does.
        swap = -1;
    }
    let has_memsw = exists(dir, "memory.memsw.limit_in_bytes");
    if swap != 0 && !has_memsw {
        if m.swap().is_some() && swap != -1 {
            return Err(Error::Cgroup(format!(
                "memory.swap is set but {} has no memory.memsw.limit_in_bytes (swap accounting is off)",
                dir.display()
            )));
        }
        swap = 0;
    }
    let set_limit = |v: i64| write(dir, "memory.limit_in_bytes", &limit_str(v));
    let set_swap = |v: i64| write(dir, "memory.memsw.limit_in_bytes", &limit_str(v));
    // The kernel requires limit <= memsw at every step, so the order depends on
    // whether the new memsw limit is above the current memory limit.
    if limit != 0 && swap != 0 {
        let current = fs::read_u64(dir, "memory.limit_in_bytes")?;
        if swap == -1 || current < swap as u64 {
            set_swap(swap)?;
            set_limit(limit)?;
        } else {
            set_limit(limit)?;
            set_swap(swap)?;
        }
    } else {
        if limit != 0 {
            set_limit(limit)?;
        }
        if swap != 0 {
            set_swap(swap)?;
        }
    }
    if let Some(r) = m.reservation() {
        if r != 0 {
            write(dir, "memory.soft_limit_in_bytes", &limit_str(r))?;
        }
    }
    // kernel (kmem) limits are deprecated and ignored, as by runc; kernelTCP still
    // exists on v1 and is honoured where the kernel offers it.
    if let Some(tcp) = m.kernel_tcp() {
        if tcp != 0 && exists(dir, "memory.kmem.tcp.limit_in_bytes") {
            write(dir, "memory.kmem.tcp.limit_in_bytes", &limit_str(tcp))?;
        }
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(Error::InvalidConfig(format!(
                "memory.swappiness {s} is out of range 0-100"
            )));
        }
        write(dir, "memory.swappiness", &s.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

pub fn set_cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(shares) = c.shares() {
        if shares != 0 {
            write(dir, "cpu.shares", &shares.to_string())?;
            let got = fs::read_u64(dir, "cpu.shares")?;
            if got != shares {
                return Err(Error::Cgroup(format!(
                    "cpu.shares {shares} is out of the kernel's range (it set {got})"
                )));
            }
        }
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    let mut period_pending = false;
    if period != 0 {
        // A smaller period can be refused while the old quota still applies;
        // retry it after the quota is written, as runc does.
        if let Err(e) = write(dir, "cpu.cfs_period_us", &period.to_string()) {
            if quota == 0 {
                return Err(e);
            }
            period_pending = true;
        }
    }
    if quota != 0 {
        write(dir, "cpu.cfs_quota_us", &limit_str(quota))?;
        if period_pending {
            write(dir, "cpu.cfs_period_us", &period.to_string())?;
        }
    }
    if let Some(burst) = c.burst() {
        write(dir, "cpu.cfs_burst_us", &burst.to_string())?;
    }
    if let Some(idle) = c.idle() {
        if idle != 0 {
            write(dir, "cpu.idle", &idle.to_string())?;
        }
    }
    let rt_period = c.realtime_period().unwrap_or(0);
    let rt_runtime = c.realtime_runtime().unwrap_or(0);
    if (rt_period != 0 || rt_runtime != 0) && !exists(dir, "cpu.rt_runtime_us") {
        return Err(Error::Cgroup(
            "realtimeRuntime/realtimePeriod are set but this kernel has no cpu.rt_runtime_us (no RT group scheduling)".into(),
        ));
    }
    if rt_period != 0 {
        write(dir, "cpu.rt_period_us", &rt_period.to_string())?;
    }
    if rt_runtime != 0 {
        write(dir, "cpu.rt_runtime_us", &rt_runtime.to_string())?;
    }
    Ok(())
}

/// New v1 cpuset cgroups start with empty cpus/mems, which forbids adding tasks:
/// copy them from the parent, from the top down.
pub fn init_cpuset(dir: &Path, mount_point: &Path) -> Result<()> {
    let mut chain = Vec::new();
    let mut d = dir;
    while d != mount_point {
        chain.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for d in chain.iter().rev() {
        let Some(parent) = d.parent() else { continue };
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if fs::read(d, file)?.trim().is_empty() {
                let value = fs::read(parent, file)?;
                write(d, file, value.trim())?;
            }
        }
    }
    Ok(())
}

pub fn set_cpuset(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(cpus) = c.cpus() {
        if !cpus.is_empty() {
            write(dir, "cpuset.cpus", cpus)?;
        }
    }
    if let Some(mems) = c.mems() {
        if !mems.is_empty() {
            write(dir, "cpuset.mems", mems)?;
        }
    }
    Ok(())
}

pub fn set_pids(dir: &Path, limit: i64) -> Result<()> {
    if limit == 0 {
        return Ok(());
    }
    let value = if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    };
    write(dir, "pids.max", &value)
}

fn weight_file(dir: &Path, plain: &'static str, bfq: &'static str) -> Result<&'static str> {
    if exists(dir, bfq) {
        Ok(bfq)
    } else if exists(dir, plain) {
        Ok(plain)
    } else {
        Err(Error::Cgroup(format!(
            "blkio weights are set but {} has neither {plain} nor {bfq} (no CFQ/BFQ I/O scheduler)",
            dir.display()
        )))
    }
}

pub fn set_blkio(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    if let Some(w) = b.weight() {
        if w != 0 {
            write(
                dir,
                weight_file(dir, "blkio.weight", "blkio.bfq.weight")?,
                &w.to_string(),
            )?;
        }
    }
    if let Some(w) = b.leaf_weight() {
        if w != 0 {
            if !exists(dir, "blkio.leaf_weight") {
                return Err(Error::Cgroup(format!(
                    "blockIO.leafWeight is set but {} has no blkio.leaf_weight",
                    dir.display()
                )));
            }
            write(dir, "blkio.leaf_weight", &w.to_string())?;
        }
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight() {
            let file = weight_file(dir, "blkio.weight_device", "blkio.bfq.weight_device")?;
            write(dir, file, &format!("{}:{} {}", wd.major(), wd.minor(), w))?;
        }
        if let Some(w) = wd.leaf_weight() {
            write(
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {}", wd.major(), wd.minor(), w),
            )?;
        }
    }
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ];
    for (list, file) in throttles {
        for t in list.iter().flatten() {
            write(
                dir,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

pub fn set_hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<()> {
    for l in limits {
        let file = format!("hugetlb.{}.limit_in_bytes", l.page_size());
        check_page_size(dir, l.page_size(), &file)?;
        write(dir, &file, &limit_str(l.limit()))?;
    }
    Ok(())
}

pub fn check_page_size(dir: &Path, size: &str, file: &str) -> Result<()> {
    if size.contains('/') || !exists(dir, file) {
        return Err(Error::Cgroup(format!(
            "hugepage size {size:?} is not supported here ({} does not exist)",
            dir.join(file).display()
        )));
    }
    Ok(())
}

fn device_rule(rule: &LinuxDeviceCgroup) -> Option<String> {
    let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => "a",
        LinuxDeviceType::B => "b",
        LinuxDeviceType::C | LinuxDeviceType::U => "c",
        // The devices cgroup has no notion of FIFOs; runc skips them too.
        LinuxDeviceType::P => return None,
    };
    let num = |n: Option<i64>| match n {
        Some(n) if n >= 0 => n.to_string(),
        _ => "*".into(),
    };
    let access = match rule.access().as_deref() {
        None | Some("") => "rwm",
        Some(a) => a,
    };
    Some(format!(
        "{typ} {}:{} {access}",
        num(rule.major()),
        num(rule.minor())
    ))
}

pub fn set_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    super::devices_bpf::validate_rules(rules)?;
    write(dir, "devices.deny", "a")?;
    for rule in rules {
        if let Some(line) = device_rule(rule) {
            let file = if rule.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write(dir, file, &line)?;
        }
    }
    Ok(())
}

pub fn set_network(
    net_cls: Option<&Path>,
    net_prio: Option<&Path>,
    n: &LinuxNetwork,
) -> Result<()> {
    if let Some(id) = n.class_id() {
        let dir = net_cls.ok_or_else(|| {
            Error::Cgroup("network.classID is set but no net_cls hierarchy is mounted".into())
        })?;
        write(dir, "net_cls.classid", &id.to_string())?;
    }
    if let Some(prios) = n.priorities() {
        if !prios.is_empty() {
            let dir = net_prio.ok_or_else(|| {
                Error::Cgroup(
                    "network.priorities are set but no net_prio hierarchy is mounted".into(),
                )
            })?;
            for p in prios {
                write(
                    dir,
                    "net_prio.ifpriomap",
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
    }
    Ok(())
}

/// rdma.max has the same format on v1 and v2.
pub fn set_rdma(dir: &Path, rdma: &HashMap<String, LinuxRdma>) -> Result<()> {
    for (device, limits) in rdma {
        if device.contains(char::is_whitespace) || device.is_empty() {
            return Err(Error::InvalidConfig(format!(
                "rdma device name {device:?} is invalid"
            )));
        }
        let mut line = device.clone();
        if let Some(h) = limits.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = limits.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        if line != *device {
            write(dir, "rdma.max", &line)?;
        }
    }
    Ok(())
}
