//! Resource usage of a running container, in the JSON of Docker's
//! `GET /containers/{id}/stats`: read from its cgroup (the runtime's stats), the host's
//! `/proc/stat` and `/proc/meminfo`, and its network namespace's `/proc/<pid>/net/dev`.

use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::archive::rfc3339_nano;
use crate::containers::Layout;
use crate::error::{Error, Result};

/// The memory.stat keys Docker reports on cgroup v1.
const V1_MEMORY_KEYS: [&str; 32] = [
    "active_anon",
    "active_file",
    "cache",
    "dirty",
    "hierarchical_memory_limit",
    "hierarchical_memsw_limit",
    "inactive_anon",
    "inactive_file",
    "mapped_file",
    "pgfault",
    "pgmajfault",
    "pgpgin",
    "pgpgout",
    "rss",
    "rss_huge",
    "total_active_anon",
    "total_active_file",
    "total_cache",
    "total_dirty",
    "total_inactive_anon",
    "total_inactive_file",
    "total_mapped_file",
    "total_pgfault",
    "total_pgmajfault",
    "total_pgpgin",
    "total_pgpgout",
    "total_rss",
    "total_rss_huge",
    "total_unevictable",
    "total_writeback",
    "unevictable",
    "writeback",
];

/// The memory.stat keys Docker reports on cgroup v2.
const V2_MEMORY_KEYS: [&str; 31] = [
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
];

/// One reading of a container's usage.
#[derive(Debug, Clone)]
pub struct Sample {
    pub read: String,
    pub pids: Value,
    pub blkio: Value,
    pub cpu: Value,
    pub memory: Value,
    /// Interfaces other than `lo`, by name; None when there are none.
    pub networks: Option<Value>,
}

/// The container's cgroup path, as its bundle's config.json gives it.
fn cgroups_path(layout: &Layout, id: &str) -> PathBuf {
    let config = layout.bundle(id).join("config.json");
    std::fs::read(&config)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["linux"]["cgroupsPath"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(format!("/polis/{id}")))
}

/// The container's cgroup, for stats and its processes.
pub fn cgroup(layout: &Layout, id: &str) -> Result<polis_runtime::cgroups::CgroupManager> {
    polis_runtime::cgroups::CgroupManager::new(Some(&cgroups_path(layout, id)), id)
        .map_err(|e| Error::Container(format!("cgroup of container {id}: {e}")))
}

fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339_nano(d.as_secs() as i64, d.subsec_nanos().into())
}

/// Host CPU time in nanoseconds (the first 7 fields of /proc/stat's `cpu` line, as
/// Docker sums them) and the number of online CPUs.
fn system_cpu() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mut usage = 0;
    let mut cpus = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: u64 = fields.take(7).filter_map(|f| f.parse::<u64>().ok()).sum();
                usage = ticks * 1_000_000_000 / hz;
            }
            Some(c) if c.len() > 3 && c.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    (usage, cpus)
}

fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// `/proc/<pid>/net/dev` of the container's network namespace, `lo` left out.
fn networks(pid: i32) -> Option<Value> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let mut out = Map::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        if f.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            json!({
                "rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11],
            }),
        );
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn blkio_list(v: &Value) -> Value {
    let entries: Vec<Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| json!({"major": e["major"], "minor": e["minor"], "op": e["op"], "value": e["value"]}))
        .collect();
    Value::Array(entries)
}

/// Reads the usage of the running container `id` whose init is `pid`.
pub fn sample(layout: &Layout, id: &str, pid: i32) -> Result<Sample> {
    let stats = cgroup(layout, id)?
        .stats()
        .map_err(|e| Error::Container(format!("stats of container {id}: {e}")))?
        .0;
    let read = now();
    let (system, online) = system_cpu();
    let usage = &stats["cpu"]["usage"];
    let mut cpu_usage = json!({
        "total_usage": usage["total"].as_u64().unwrap_or(0),
        "usage_in_kernelmode": usage["kernel"].as_u64().unwrap_or(0),
        "usage_in_usermode": usage["user"].as_u64().unwrap_or(0),
    });
    if usage["percpu"].as_array().is_some_and(|p| !p.is_empty()) {
        cpu_usage["percpu_usage"] = usage["percpu"].clone();
    }
    let throttling = &stats["cpu"]["throttling"];
    let cpu = json!({
        "cpu_usage": cpu_usage,
        "system_cpu_usage": system,
        "online_cpus": online,
        "throttling_data": {
            "periods": throttling["periods"].as_u64().unwrap_or(0),
            "throttled_periods": throttling["throttledPeriods"].as_u64().unwrap_or(0),
            "throttled_time": throttling["throttledTime"].as_u64().unwrap_or(0),
        },
    });
    let mem = &stats["memory"];
    let raw = mem["raw"].as_object().cloned().unwrap_or_default();
    let keys: &[&str] = if raw.contains_key("total_cache") {
        &V1_MEMORY_KEYS
    } else {
        &V2_MEMORY_KEYS
    };
    let mem_stats: Map<String, Value> = keys
        .iter()
        .map(|k| {
            (
                k.to_string(),
                json!(raw.get(*k).and_then(Value::as_u64).unwrap_or(0)),
            )
        })
        .collect();
    let mut limit = mem["usage"]["limit"].as_u64().unwrap_or(0);
    let machine = machine_memory();
    if machine > 0 && (limit == 0 || limit > machine) {
        limit = machine;
    }
    let mut memory = json!({
        "usage": mem["usage"]["usage"].as_u64().unwrap_or(0),
        "stats": mem_stats,
        "limit": limit,
    });
    for (key, from) in [("max_usage", "max"), ("failcnt", "failcnt")] {
        if let Some(v) = mem["usage"][from].as_u64().filter(|v| *v > 0) {
            memory[key] = json!(v);
        }
    }
    let mut pids = json!({});
    if let Some(n) = stats["pids"]["current"].as_u64().filter(|n| *n > 0) {
        pids["current"] = json!(n);
    }
    if let Some(n) = stats["pids"]["limit"].as_u64().filter(|n| *n > 0) {
        pids["limit"] = json!(n);
    }
    let b = &stats["blkio"];
    let blkio = json!({
        "io_service_bytes_recursive": blkio_list(&b["ioServiceBytesRecursive"]),
        "io_serviced_recursive": blkio_list(&b["ioServicedRecursive"]),
        "io_queue_recursive": blkio_list(&b["ioQueueRecursive"]),
        "io_service_time_recursive": blkio_list(&b["ioServiceTimeRecursive"]),
        "io_wait_time_recursive": blkio_list(&b["ioWaitTimeRecursive"]),
        "io_merged_recursive": blkio_list(&b["ioMergedRecursive"]),
        "io_time_recursive": blkio_list(&b["ioTimeRecursive"]),
        "sectors_recursive": blkio_list(&b["sectorsRecursive"]),
    });
    Ok(Sample {
        read,
        pids,
        blkio,
        cpu,
        memory,
        networks: networks(pid),
    })
}

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn empty_cpu() -> Value {
    json!({
        "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    })
}

/// One stats object: `current` with `previous` as its `pre…` part. Without `current`
/// (a container that is not running) Docker's empty stats, with only name and id.
pub fn frame(name: &str, id: &str, current: Option<&Sample>, previous: Option<&Sample>) -> Value {
    let null_blkio = json!({
        "io_service_bytes_recursive": null, "io_serviced_recursive": null,
        "io_queue_recursive": null, "io_service_time_recursive": null,
        "io_wait_time_recursive": null, "io_merged_recursive": null,
        "io_time_recursive": null, "sectors_recursive": null,
    });
    let mut out = json!({
        "read": current.map_or(ZERO_TIME.to_string(), |s| s.read.clone()),
        "preread": previous.map_or(ZERO_TIME.to_string(), |s| s.read.clone()),
        "pids_stats": current.map_or(json!({}), |s| s.pids.clone()),
        "blkio_stats": current.map_or(null_blkio, |s| s.blkio.clone()),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": current.map_or_else(empty_cpu, |s| s.cpu.clone()),
        "precpu_stats": previous.map_or_else(empty_cpu, |s| s.cpu.clone()),
        "memory_stats": current.map_or(json!({}), |s| s.memory.clone()),
        "name": format!("/{name}"),
        "id": id,
    });
    if let Some(n) = current.and_then(|s| s.networks.clone()) {
        out["networks"] = n;
    }
    out
}

/// The pids in the container's cgroup.
pub fn pids(layout: &Layout, id: &str) -> Result<Vec<i32>> {
    cgroup(layout, id)?
        .pids()
        .map_err(|e| Error::Container(format!("processes of container {id}: {e}")))
}
