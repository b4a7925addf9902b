//! `polis system df`: docker's summary of what images, containers, local volumes and
//! the build cache take on disk (TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE).

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::Client;
use super::format;

const TABLE: &str = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}";
const RAW: &str =
    "type: {{.Type}}\ntotal: {{.TotalCount}}\nactive: {{.Active}}\nsize: {{.Size}}\nreclaimable: {{.Reclaimable}}\n";
const TITLES: &[(&str, &str)] = &[
    ("Type", "TYPE"),
    ("TotalCount", "TOTAL"),
    ("Active", "ACTIVE"),
    ("Size", "SIZE"),
    ("Reclaimable", "RECLAIMABLE"),
];

#[derive(Args)]
pub struct SystemArgs {
    #[command(subcommand)]
    command: SystemCommand,
}

/// `polis system <verb>`.
#[derive(Subcommand)]
enum SystemCommand {
    /// Show docker disk usage.
    Df(DfArgs),
}

#[derive(Args)]
pub struct DfArgs {
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a Go
    /// template.
    #[arg(long, value_name = "string")]
    format: Option<String>,
}

pub async fn system(c: &Client, a: SystemArgs) -> Result<()> {
    match a.command {
        SystemCommand::Df(a) => df(c, a).await,
    }
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// docker's RECLAIMABLE: the bytes, with their share of `total` when there is one.
fn reclaimable(bytes: i64, total: i64) -> String {
    if total > 0 {
        format!(
            "{} ({}%)",
            format::human_size_precision(bytes, 4),
            bytes * 100 / total
        )
    } else {
        format::human_size_precision(bytes, 4)
    }
}

fn row(kind: &str, total: usize, active: usize, size: i64, reclaim: String) -> Value {
    json!({
        "Type": kind,
        "TotalCount": total.to_string(),
        "Active": active.to_string(),
        "Size": format::human_size_precision(size, 4),
        "Reclaimable": reclaim,
    })
}

/// The four summary rows, computed from the daemon's lists as docker's CLI does.
fn rows(du: &Value) -> Vec<Value> {
    let n = |v: &Value, k: &str| v[k].as_i64().unwrap_or(0);
    let images = list(du, "Images");
    let layers = n(du, "LayersSize");
    let used: i64 = images
        .iter()
        .filter(|i| n(i, "Containers") != 0 && n(i, "Size") != -1 && n(i, "SharedSize") != -1)
        .map(|i| n(i, "Size") - n(i, "SharedSize"))
        .sum();
    let containers = list(du, "Containers");
    let active = |c: &&Value| {
        let s = c["State"].as_str().unwrap_or_default();
        ["running", "paused", "restarting"]
            .iter()
            .any(|a| s.contains(a))
    };
    let rw: i64 = containers.iter().map(|c| n(c, "SizeRw")).sum();
    let idle_rw: i64 = containers
        .iter()
        .filter(|c| !active(c))
        .map(|c| n(c, "SizeRw"))
        .sum();
    let volumes = list(du, "Volumes");
    let measured = volumes.iter().filter(|v| n(&v["UsageData"], "Size") != -1);
    let vol_size: i64 = measured.clone().map(|v| n(&v["UsageData"], "Size")).sum();
    let vol_free: i64 = measured
        .filter(|v| n(&v["UsageData"], "RefCount") == 0)
        .map(|v| n(&v["UsageData"], "Size"))
        .sum();
    let cache = list(du, "BuildCache");
    let cache_size: i64 = cache
        .iter()
        .filter(|b| b["Shared"] != true)
        .map(|b| n(b, "Size"))
        .sum();
    let cache_busy: i64 = cache
        .iter()
        .filter(|b| b["InUse"] == true && b["Shared"] != true)
        .map(|b| n(b, "Size"))
        .sum();
    vec![
        row(
            "Images",
            images.len(),
            images.iter().filter(|i| n(i, "Containers") > 0).count(),
            layers,
            reclaimable(layers - used, layers),
        ),
        row(
            "Containers",
            containers.len(),
            containers.iter().filter(active).count(),
            rw,
            reclaimable(idle_rw, rw),
        ),
        row(
            "Local Volumes",
            volumes.len(),
            volumes
                .iter()
                .filter(|v| n(&v["UsageData"], "RefCount") > 0)
                .count(),
            vol_size,
            reclaimable(vol_free, vol_size),
        ),
        row(
            "Build Cache",
            cache.len(),
            cache.iter().filter(|b| b["InUse"] == true).count(),
            cache_size,
            format::human_size_precision(cache_size - cache_busy, 4),
        ),
    ]
}

async fn df(c: &Client, a: DfArgs) -> Result<()> {
    let du = c.json("/system/df").await?;
    let format = match a.format.as_deref().unwrap_or("table") {
        "" | "table" => TABLE,
        "raw" => RAW,
        "json" => "{{json .}}",
        f => f,
    };
    super::images::print_rows(format, TITLES, "*formatter.diskUsageContext", &rows(&du))
}
