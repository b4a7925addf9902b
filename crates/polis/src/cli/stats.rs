//! `polis stats`: CPU, memory, network, block I/O and pids per container, computed
//! and printed as docker does (`--no-stream` for one table).

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};

use super::client::{path_escape, Client};
use super::format;

const STATS_FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
const STATS_TITLES: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

#[derive(Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a
    /// Go template such as '{{.Name}} {{.CPUPerc}}'.
    #[arg(long, value_name = "string")]
    format: Option<String>,
    /// Disable streaming stats and only pull the first result.
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Do not truncate output.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    #[arg(value_name = "CONTAINER")]
    containers: Vec<String>,
}

fn u(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// One sample (with its previous CPU reading) → docker's row.
fn stats_row(container: &str, s: &Value, trunc: bool) -> Value {
    let cpu_delta = u(&s["cpu_stats"]["cpu_usage"]["total_usage"])
        - u(&s["precpu_stats"]["cpu_usage"]["total_usage"]);
    let system_delta =
        u(&s["cpu_stats"]["system_cpu_usage"]) - u(&s["precpu_stats"]["system_cpu_usage"]);
    let mut cpus = u(&s["cpu_stats"]["online_cpus"]);
    if cpus == 0.0 {
        cpus = s["cpu_stats"]["cpu_usage"]["percpu_usage"]
            .as_array()
            .map(|a| a.len() as f64)
            .unwrap_or(0.0);
    }
    let cpu = if system_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / system_delta * cpus * 100.0
    } else {
        0.0
    };
    let mem = &s["memory_stats"];
    let usage = u(&mem["usage"]);
    let v1_inactive = mem["stats"].get("total_inactive_file").map(u);
    let v2_inactive = u(&mem["stats"]["inactive_file"]);
    let used = match v1_inactive {
        Some(i) if i < usage => usage - i,
        _ if v2_inactive < usage => usage - v2_inactive,
        _ => usage,
    };
    let limit = u(&mem["limit"]);
    let mem_percent = if limit != 0.0 {
        used / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        rx += u(&n["rx_bytes"]);
        tx += u(&n["tx_bytes"]);
    }
    let (mut read, mut write) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().and_then(|o| o.chars().next()) {
            Some('r' | 'R') => read += u(&e["value"]),
            Some('w' | 'W') => write += u(&e["value"]),
            _ => {}
        }
    }
    let id = s["id"].as_str().unwrap_or_default();
    let name = s["name"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches('/');
    let size = |x: f64| format::human_size_precision(x as i64, 3);
    json!({
        "Container": container,
        "ID": if trunc { format::short_id(id) } else { id.to_string() },
        "Name": if name.is_empty() { "--" } else { name },
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", format::bytes_size(used as i64), format::bytes_size(limit as i64)),
        "MemPerc": format!("{mem_percent:.2}%"),
        "NetIO": format!("{} / {}", size(rx), size(tx)),
        "BlockIO": format!("{} / {}", size(read), size(write)),
        "PIDs": s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

async fn sample(c: &Client, containers: &[String], trunc: bool) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for name in containers {
        match c
            .json(&format!("/containers/{}/stats?stream=0", path_escape(name)))
            .await
        {
            Ok(s) => rows.push(stats_row(name, &s, trunc)),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(rows)
}

pub async fn stats(c: &Client, a: StatsArgs) -> Result<()> {
    let format = match a.format.as_deref() {
        None | Some("") | Some("table") => STATS_FORMAT.to_string(),
        Some(f) => f.to_string(),
    };
    loop {
        // Named containers as named; else the running ones (all with -a).
        let containers = if a.containers.is_empty() {
            let path = if a.all {
                "/containers/json?all=1"
            } else {
                "/containers/json"
            };
            let list = c.json(path).await?;
            list.as_array()
                .into_iter()
                .flatten()
                .filter_map(|ct| {
                    ct["Id"]
                        .as_str()
                        .map(|id| id[..id.len().min(12)].to_string())
                })
                .collect()
        } else {
            a.containers.clone()
        };
        let rows = sample(c, &containers, !a.no_trunc).await?;
        if !a.no_stream {
            // Clear the screen and start over, as docker's live table does.
            print!("\x1b[2J\x1b[H");
        }
        super::images::print_rows(&format, STATS_TITLES, "*container.statsContext", &rows)?;
        std::io::stdout().flush()?;
        if a.no_stream {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_as_docker_prints_it() {
        // The reference payload of `GET /containers/{id}/stats?stream=0` (cgroup v1).
        let s = json!({
            "pids_stats": {"current": 1},
            "blkio_stats": {"io_service_bytes_recursive": [
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 8192}
            ]},
            "cpu_stats": {"cpu_usage": {"total_usage": 131129191u64}, "system_cpu_usage": 751070000000u64, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 121129191u64}, "system_cpu_usage": 749090000000u64, "online_cpus": 2},
            "memory_stats": {"usage": 344064, "stats": {"total_inactive_file": 0}, "limit": 25276502016u64},
            "name": "/web",
            "id": "145bbd5e0b2ad2c1e593b5531839ccfe76591db7da66c5a5627bd7845dd5218a",
            "networks": {"eth0": {"rx_bytes": 1596, "tx_bytes": 653}}
        });
        let row = stats_row("web", &s, true);
        assert_eq!(row["ID"], "145bbd5e0b2a");
        assert_eq!(row["Name"], "web");
        assert_eq!(row["CPUPerc"], "1.01%");
        assert_eq!(row["MemUsage"], "336KiB / 23.54GiB");
        assert_eq!(row["MemPerc"], "0.00%");
        assert_eq!(row["NetIO"], "1.6kB / 653B");
        assert_eq!(row["BlockIO"], "4.1kB / 8.19kB");
        assert_eq!(row["PIDs"], "1");
    }
}
