//! Resource usage read from controller files, shaped like the "data" object of
//! runc's `events --stats` (libcontainer's types.Stats JSON).

use std::fs as stdfs;
use std::path::Path;

use serde_json::{json, Map, Value};

use super::fs::{self, read_key_values, read_u64_or_zero};
use crate::error::Result;

/// Hugepage sizes this kernel supports, in the cgroup file spelling ("2MB", "1GB").
pub fn hugepage_sizes() -> Vec<String> {
    let Ok(entries) = stdfs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<(u64, String)> = entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let label = if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else if kb >= 1 << 10 {
                format!("{}MB", kb >> 10)
            } else {
                format!("{kb}KB")
            };
            Some((kb, label))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, l)| l).collect()
}

fn kv_map(pairs: Vec<(String, u64)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k, json!(v))).collect()
}

fn get(pairs: &[(String, u64)], key: &str) -> u64 {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

fn entry(dir: &Path, prefix: &str) -> Value {
    let file = |suffix: &str| {
        if prefix.is_empty() {
            format!("memory.{suffix}")
        } else {
            format!("memory.{prefix}.{suffix}")
        }
    };
    json!({
        "limit": read_u64_or_zero(dir, &file("limit_in_bytes")),
        "usage": read_u64_or_zero(dir, &file("usage_in_bytes")),
        "max": read_u64_or_zero(dir, &file("max_usage_in_bytes")),
        "failcnt": read_u64_or_zero(dir, &file("failcnt")),
    })
}

pub fn memory_v1(dir: &Path) -> Result<Value> {
    let raw = read_key_values(dir, "memory.stat")?;
    let cache = get(&raw, "total_cache").max(get(&raw, "cache"));
    Ok(json!({
        "cache": cache,
        "usage": entry(dir, ""),
        "swap": entry(dir, "memsw"),
        "kernel": entry(dir, "kmem"),
        "kernelTCP": entry(dir, "kmem.tcp"),
        "raw": kv_map(raw),
    }))
}

pub fn memory_v2(dir: &Path) -> Result<Value> {
    let raw = read_key_values(dir, "memory.stat")?;
    let usage = read_u64_or_zero(dir, "memory.current");
    let limit = read_u64_or_zero(dir, "memory.max");
    let swap_usage = read_u64_or_zero(dir, "memory.swap.current");
    let swap_limit = read_u64_or_zero(dir, "memory.swap.max");
    let events = read_key_values(dir, "memory.events").unwrap_or_default();
    // runc reports v2 swap as memory+swap, matching the v1 memsw numbers.
    Ok(json!({
        "cache": get(&raw, "file"),
        "usage": {
            "limit": limit,
            "usage": usage,
            "max": read_u64_or_zero(dir, "memory.peak"),
            "failcnt": get(&events, "max"),
        },
        "swap": {
            "limit": if swap_limit == u64::MAX || limit == u64::MAX { u64::MAX } else { swap_limit + limit },
            "usage": swap_usage + usage,
            "max": 0,
            "failcnt": 0,
        },
        "kernel": {"limit": 0, "usage": get(&raw, "kernel"), "max": 0, "failcnt": 0},
        "kernelTCP": {"limit": 0, "usage": get(&raw, "sock"), "max": 0, "failcnt": 0},
        "raw": kv_map(raw),
    }))
}

fn throttling(pairs: &[(String, u64)], time_key: &str, time_scale: u64) -> Value {
    json!({
        "periods": get(pairs, "nr_periods"),
        "throttledPeriods": get(pairs, "nr_throttled"),
        "throttledTime": get(pairs, time_key) * time_scale,
    })
}

/// v1 CPU stats: usage from cpuacct, throttling from cpu.stat.
pub fn cpu_v1(cpuacct: Option<&Path>, cpu: Option<&Path>) -> Result<Value> {
    let mut usage = json!({"total": 0, "percpu": [], "kernel": 0, "user": 0});
    if let Some(dir) = cpuacct {
        usage["total"] = json!(fs::read_u64(dir, "cpuacct.usage")?);
        let percpu: Vec<u64> = fs::read(dir, "cpuacct.usage_percpu")?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        usage["percpu"] = json!(percpu);
        // cpuacct.stat counts USER_HZ ticks; report nanoseconds as runc does.
        // SAFETY: sysconf has no memory-safety preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let stat = read_key_values(dir, "cpuacct.stat")?;
        usage["user"] = json!(get(&stat, "user") * 1_000_000_000 / hz);
        usage["kernel"] = json!(get(&stat, "system") * 1_000_000_000 / hz);
    }
    let throttle = match cpu {
        Some(dir) => throttling(&read_key_values(dir, "cpu.stat")?, "throttled_time", 1),
        None => throttling(&[], "", 1),
    };
    Ok(json!({"usage": usage, "throttling": throttle}))
}

pub fn cpu_v2(dir: &Path) -> Result<Value> {
    let stat = read_key_values(dir, "cpu.stat")?;
    Ok(json!({
        "usage": {
            "total": get(&stat, "usage_usec") * 1000,
            "percpu": [],
            "kernel": get(&stat, "system_usec") * 1000,
            "user": get(&stat, "user_usec") * 1000,
        },
        "throttling": throttling(&stat, "throttled_usec", 1000),
    }))
}

pub fn pids(dir: &Path) -> Value {
    let limit = read_u64_or_zero(dir, "pids.max");
    json!({
        "current": read_u64_or_zero(dir, "pids.current"),
        // runc reports an unlimited pids.max as 0.
        "limit": if limit == u64::MAX { 0 } else { limit },
    })
}

/// "8:0 Read 123" lines of a v1 blkio file as runc's BlkioStatEntry list.
fn blkio_entries(dir: &Path, file: &str) -> Vec<Value> {
    let Ok(text) = fs::read(dir, file) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (maj, min) = f.first()?.split_once(':')?;
            let (major, minor): (u64, u64) = (maj.parse().ok()?, min.parse().ok()?);
            let (op, value) = match f.len() {
                3 => (f[1], f[2].parse::<u64>().ok()?),
                2 => ("", f[1].parse::<u64>().ok()?),
                _ => return None,
            };
            Some(json!({"major": major, "minor": minor, "op": op, "value": value}))
        })
        .collect()
}

pub fn blkio_v1(dir: &Path) -> Value {
    // CFQ's recursive files when present, otherwise the throttle layer's counters.
    let pick = |cfq: &str, throttle: &str| {
        let v = blkio_entries(dir, cfq);
        if v.is_empty() {
            blkio_entries(dir, throttle)
        } else {
            v
        }
    };
    json!({
        "ioServiceBytesRecursive": pick("blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive"),
        "ioServicedRecursive": pick("blkio.io_serviced_recursive", "blkio.throttle.io_serviced_recursive"),
        "ioQueueRecursive": blkio_entries(dir, "blkio.io_queued_recursive"),
        "ioServiceTimeRecursive": blkio_entries(dir, "blkio.io_service_time_recursive"),
        "ioWaitTimeRecursive": blkio_entries(dir, "blkio.io_wait_time_recursive"),
        "ioMergedRecursive": blkio_entries(dir, "blkio.io_merged_recursive"),
        "ioTimeRecursive": blkio_entries(dir, "blkio.time_recursive"),
        "sectorsRecursive": blkio_entries(dir, "blkio.sectors_recursive"),
    })
}

pub fn io_v2(dir: &Path) -> Value {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    if let Ok(text) = fs::read(dir, "io.stat") {
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let Some((maj, min)) = f.next().and_then(|d| d.split_once(':')) else {
                continue;
            };
            let (Ok(major), Ok(minor)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
                continue;
            };
            for kv in f {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(value) = v.parse::<u64>() else {
                    continue;
                };
                let (list, op) = match k {
                    "rbytes" => (&mut bytes, "Read"),
                    "wbytes" => (&mut bytes, "Write"),
                    "dbytes" => (&mut bytes, "Discard"),
                    "rios" => (&mut ios, "Read"),
                    "wios" => (&mut ios, "Write"),
                    "dios" => (&mut ios, "Discard"),
                    _ => continue,
                };
                list.push(json!({"major": major, "minor": minor, "op": op, "value": value}));
            }
        }
    }
    json!({
        "ioServiceBytesRecursive": bytes,
        "ioServicedRecursive": ios,
        "ioQueueRecursive": [],
        "ioServiceTimeRecursive": [],
        "ioWaitTimeRecursive": [],
        "ioMergedRecursive": [],
        "ioTimeRecursive": [],
        "sectorsRecursive": [],
    })
}

pub fn hugetlb(dir: &Path, v2: bool) -> Value {
    let mut out = Map::new();
    for size in hugepage_sizes() {
        let v = if v2 {
            let events =
                read_key_values(dir, &format!("hugetlb.{size}.events")).unwrap_or_default();
            json!({
                "usage": read_u64_or_zero(dir, &format!("hugetlb.{size}.current")),
                "max": 0,
                "failcnt": get(&events, "max"),
            })
        } else {
            json!({
                "usage": read_u64_or_zero(dir, &format!("hugetlb.{size}.usage_in_bytes")),
                "max": read_u64_or_zero(dir, &format!("hugetlb.{size}.max_usage_in_bytes")),
                "failcnt": read_u64_or_zero(dir, &format!("hugetlb.{size}.failcnt")),
            })
        };
        out.insert(size, v);
    }
    Value::Object(out)
}
