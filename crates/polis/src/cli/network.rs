//! `polis network create|ls|inspect|rm|connect|disconnect|prune` and `polis port`: the
//! requests docker sends for the same flags, and its output (table, templates, JSON).

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};

use super::client::{self, path_escape, query, Client, DaemonError};
use super::format::{self, Template};
use super::netopts::{join_host_port, natural_less, parse_u16_text};
use super::StatusError;

const LS_FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";
const LS_RAW: &str =
    "network_id: {{.ID}}\\nname: {{.Name}}\\ndriver: {{.Driver}}\\nscope: {{.Scope}}\\n";
const LS_TITLES: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv4", "IPV4"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

#[derive(Args)]
pub struct NetworkArgs {
    #[command(subcommand)]
    command: NetworkCommand,
}

/// `polis network <verb>`.
#[derive(Subcommand)]
enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks.
    Inspect(InspectArgs),
    /// Remove one or more networks.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Remove all unused networks.
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver to manage the Network.
    #[arg(short, long, value_name = "string", default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment.
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    subnet: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet.
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    gateway: Vec<String>,
    /// Allocate container ip from a sub-range.
    #[arg(long = "ip-range", value_name = "strings", value_delimiter = ',')]
    ip_range: Vec<String>,
    /// Enable or disable IPv6 networking.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    ipv6: Option<bool>,
    /// Restrict external access to the network.
    #[arg(long)]
    internal: bool,
    /// Enable manual container attachment.
    #[arg(long)]
    attachable: bool,
    /// Set metadata on a network.
    #[arg(long = "label", value_name = "list")]
    labels: Vec<String>,
    /// Set driver specific options.
    #[arg(short = 'o', long = "opt", value_name = "map")]
    opts: Vec<String>,
    #[arg(value_name = "NETWORK")]
    name: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Provide filter values (e.g. "driver=bridge").
    #[arg(short, long, value_name = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a
    /// Go template.
    #[arg(long, value_name = "string")]
    format: Option<String>,
    /// Do not truncate the output.
    #[arg(long)]
    no_trunc: bool,
    /// Only display network IDs.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format output using a custom template: 'json' or a Go template.
    #[arg(short, long, value_name = "string")]
    format: Option<String>,
    /// Verbose output for diagnostics.
    #[arg(short, long)]
    verbose: bool,
    #[arg(value_name = "NETWORK", required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist.
    #[arg(short, long)]
    force: bool,
    #[arg(value_name = "NETWORK", required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct ConnectArgs {
    /// IPv4 address (e.g., "172.30.100.104").
    #[arg(long, value_name = "ip")]
    ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33").
    #[arg(long, value_name = "ip")]
    ip6: Option<String>,
    /// Add network-scoped alias for the container.
    #[arg(long, value_name = "strings", value_delimiter = ',')]
    alias: Vec<String>,
    #[arg(value_name = "NETWORK")]
    network: String,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

#[derive(Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network.
    #[arg(short, long)]
    force: bool,
    #[arg(value_name = "NETWORK")]
    network: String,
    #[arg(value_name = "CONTAINER")]
    container: String,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>").
    #[arg(long, value_name = "filter")]
    filter: Vec<String>,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
}

#[derive(Args)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    container: String,
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

pub async fn network(c: &Client, a: NetworkArgs) -> Result<()> {
    match a.command {
        NetworkCommand::Create(a) => create(c, a).await,
        NetworkCommand::Ls(a) => ls(c, a).await,
        NetworkCommand::Inspect(a) => inspect(c, a).await,
        NetworkCommand::Rm(a) => remove(c, a).await,
        NetworkCommand::Connect(a) => connect(c, a).await,
        NetworkCommand::Disconnect(a) => disconnect(c, a).await,
        NetworkCommand::Prune(a) => prune(c, a).await,
    }
}

/// `KEY=VALUE` strings as a map (a bare key maps to ""; the last one wins).
fn kv_map(list: &[String]) -> Map<String, Value> {
    list.iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (l.clone(), json!("")),
        })
        .collect()
}

/// Go's `net.ParseCIDR`: the address and the prefix length.
fn parse_cidr(s: &str) -> Option<(std::net::IpAddr, u32)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bits: u32 = bits.parse().ok().filter(|b| *b <= max)?;
    Some((ip, bits))
}

/// The address as a 128-bit number, IPv4 in the low bits, and its family's width.
fn ip_bits(ip: std::net::IpAddr) -> (u128, u32) {
    match ip {
        std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        std::net::IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

/// docker's `subnetMatches`: whether `data` (an address or a CIDR) is in `subnet`.
fn subnet_matches(subnet: &str, data: &str) -> Result<bool> {
    let (net, prefix) = parse_cidr(subnet)
        .ok_or_else(|| anyhow::anyhow!("invalid subnet: invalid CIDR address: {subnet}"))?;
    let ip = if data.contains('/') {
        parse_cidr(data)
            .ok_or_else(|| anyhow::anyhow!("invalid CIDR address: {data}"))?
            .0
    } else {
        match data.parse() {
            Ok(ip) => ip,
            Err(_) => return Ok(false),
        }
    };
    let ((n, width), (a, other)) = (ip_bits(net), ip_bits(ip));
    if width != other {
        return Ok(false);
    }
    let shift = width - prefix;
    Ok(prefix == 0 || (n >> shift) == (a >> shift))
}

/// `IPAM.Config`: one entry per subnet, each range and gateway placed in its subnet.
fn ipam_config(a: &CreateArgs) -> Result<Vec<Value>> {
    if a.subnet.len() < a.ip_range.len() || a.subnet.len() < a.gateway.len() {
        bail!("every ip-range or gateway must have a corresponding subnet");
    }
    let mut configs: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    for s in &a.subnet {
        for (k, _, _) in &configs {
            if subnet_matches(s, k)? || subnet_matches(k, s)? {
                bail!("multiple overlapping subnet configuration is not supported");
            }
        }
        configs.push((s.clone(), None, None));
    }
    for (list, what) in [(&a.ip_range, "range"), (&a.gateway, "gateway")] {
        for r in list {
            let mut matched = false;
            for entry in configs.iter_mut() {
                if !subnet_matches(&entry.0, r)? {
                    continue;
                }
                let slot = if what == "range" {
                    &mut entry.1
                } else {
                    &mut entry.2
                };
                if let Some(old) = slot {
                    let kind = if what == "range" {
                        "multiple ranges"
                    } else {
                        "multiple gateways"
                    };
                    let on = if what == "range" { "on" } else { "for" };
                    bail!(
                        "cannot configure {kind} ({r}, {old}) {on} the same subnet ({})",
                        entry.0
                    );
                }
                *slot = Some(r.clone());
                matched = true;
            }
            if !matched {
                bail!("no matching subnet for {what} {r}");
            }
        }
    }
    Ok(configs
        .into_iter()
        .map(|(subnet, range, gateway)| {
            let mut v = Map::new();
            v.insert("Subnet".into(), json!(subnet));
            if let Some(r) = range {
                v.insert("IPRange".into(), json!(r));
            }
            if let Some(g) = gateway {
                v.insert("Gateway".into(), json!(g));
            }
            Value::Object(v)
        })
        .collect())
}

async fn create(c: &Client, a: CreateArgs) -> Result<()> {
    let mut body = json!({
        "Driver": a.driver,
        "Scope": "",
        "IPAM": { "Driver": "default", "Options": {}, "Config": ipam_config(&a)? },
        "Internal": a.internal,
        "Attachable": a.attachable,
        "Ingress": false,
        "ConfigOnly": false,
        "ConfigFrom": null,
        "Options": kv_map(&a.opts),
        "Labels": kv_map(&a.labels),
        "Name": a.name,
    });
    if let Some(v6) = a.ipv6 {
        body["EnableIPv6"] = json!(v6);
    }
    let created = c.post_json("/networks/create", &body).await?;
    if let Some(w) = created["Warning"].as_str().filter(|w| !w.is_empty()) {
        eprintln!("WARNING: {w}");
    }
    println!("{}", created["Id"].as_str().unwrap_or_default());
    Ok(())
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Go's `time.Time.String()` of an RFC 3339 time as the API sends it.
fn go_time_text(rfc3339: &str) -> String {
    let Some((date, rest)) = rfc3339.split_once('T') else {
        return rfc3339.to_string();
    };
    let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let clock = match clock.split_once('.') {
        Some((hms, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                hms.to_string()
            } else {
                format!("{hms}.{frac}")
            }
        }
        None => clock.to_string(),
    };
    let zone = match zone {
        "" | "Z" => "+0000 UTC".to_string(),
        z => {
            let offset = z.replace(':', "");
            format!("{offset} {offset}")
        }
    };
    format!("{date} {clock} {zone}")
}

/// One row of `network ls` with the fields docker's template knows.
fn network_row(n: &Value, trunc: bool) -> Value {
    let id = text(n, "Id");
    let labels = n["Labels"].as_object().cloned().unwrap_or_default();
    let mut joined: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    joined.sort();
    let flag = |key: &str| n[key].as_bool().unwrap_or(false).to_string();
    json!({
        "ID": if trunc { format::short_id(id) } else { id.to_string() },
        "Name": text(n, "Name"),
        "Driver": text(n, "Driver"),
        "Scope": text(n, "Scope"),
        "IPv4": flag("EnableIPv4"),
        "IPv6": flag("EnableIPv6"),
        "Internal": flag("Internal"),
        "Labels": joined.join(","),
        "Label": labels,
        "CreatedAt": go_time_text(text(n, "Created")),
    })
}

async fn ls(c: &Client, a: LsArgs) -> Result<()> {
    let path = match super::containers::filters_query(&a.filter)? {
        Some(f) => format!("/networks?{}", query(&[("filters", &f)])),
        None => "/networks".to_string(),
    };
    let list = c.json(&path).await?;
    let mut networks = list.as_array().cloned().unwrap_or_default();
    networks.sort_by(|x, y| {
        let (x, y) = (text(x, "Name"), text(y, "Name"));
        if natural_less(x, y) {
            std::cmp::Ordering::Less
        } else if natural_less(y, x) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let rows: Vec<Value> = networks
        .iter()
        .map(|n| network_row(n, !a.no_trunc))
        .collect();
    let format = match a.format.as_deref().unwrap_or("table") {
        "table" if a.quiet => "{{.ID}}",
        "table" => LS_FORMAT,
        "raw" if a.quiet => "network_id: {{.ID}}",
        "raw" => LS_RAW,
        f => f,
    };
    super::images::print_rows(format, LS_TITLES, "*network.networkContext", &rows)
}

fn not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<DaemonError>()
        .is_some_and(|d| d.status == hyper::StatusCode::NOT_FOUND)
}

async fn inspect(c: &Client, a: InspectArgs) -> Result<()> {
    let template = match a.format.as_deref() {
        None | Some("") => None,
        Some(f) => Some(Template::parse(f)?),
    };
    let mut raws = Vec::new();
    let mut errors = Vec::new();
    for name in &a.networks {
        let mut path = format!("/networks/{}", path_escape(name));
        if a.verbose {
            path.push_str("?verbose=true");
        }
        match c.bytes(Method::GET, &path).await {
            Ok(raw) => raws.push(raw),
            Err(e) if not_found(&e) => errors.push(format!("{e:#}")),
            Err(e) => return Err(e),
        }
    }
    format::print_inspect(&raws, template.as_ref())?;
    if !errors.is_empty() {
        return Err(StatusError {
            code: 1,
            message: errors.join("\n"),
        }
        .into());
    }
    Ok(())
}

async fn remove(c: &Client, a: RmArgs) -> Result<()> {
    let mut failed = false;
    for name in &a.networks {
        let path = format!("/networks/{}", path_escape(name));
        // docker looks first (to warn about an ingress network); a failure there is
        // the removal's to report.
        let _ = c.bytes(Method::GET, &path).await;
        match c.send(Method::DELETE, &path, client::empty(), None).await {
            Ok(_) => println!("{name}"),
            Err(e) if a.force && not_found(&e) => {}
            Err(e) => {
                eprintln!("{e:#}");
                failed = true;
            }
        }
    }
    if failed {
        // docker's status error without a message of its own.
        return Err(StatusError {
            code: 1,
            message: "exit status 1".into(),
        }
        .into());
    }
    Ok(())
}

async fn connect(c: &Client, a: ConnectArgs) -> Result<()> {
    let mut ipam = Map::new();
    if let Some(ip) = a.ip.as_ref().filter(|ip| !ip.is_empty()) {
        ipam.insert("IPv4Address".into(), json!(ip));
    }
    if let Some(ip) = a.ip6.as_ref().filter(|ip| !ip.is_empty()) {
        ipam.insert("IPv6Address".into(), json!(ip));
    }
    let body = json!({
        "Container": a.container,
        "EndpointConfig": {
            "IPAMConfig": ipam, "Links": null, "Aliases": a.alias, "MacAddress": "",
            "DriverOpts": {}, "GwPriority": 0, "NetworkID": "", "EndpointID": "",
            "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "",
            "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
        },
    });
    let path = format!("/networks/{}/connect", path_escape(&a.network));
    c.send_json(Method::POST, &path, &body).await?;
    Ok(())
}

async fn disconnect(c: &Client, a: DisconnectArgs) -> Result<()> {
    let body = json!({ "Container": a.container, "Force": a.force });
    let path = format!("/networks/{}/disconnect", path_escape(&a.network));
    c.send_json(Method::POST, &path, &body).await?;
    Ok(())
}

async fn prune(c: &Client, a: PruneArgs) -> Result<()> {
    if !a.force {
        let mut out = std::io::stdout();
        write!(
            out,
            "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
        )?;
        out.flush()?;
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("read the answer")?;
        if !answer.trim().eq_ignore_ascii_case("y") {
            return Ok(());
        }
    }
    let path = match super::containers::filters_query(&a.filter)? {
        Some(f) => format!("/networks/prune?{}", query(&[("filters", &f)])),
        None => "/networks/prune".to_string(),
    };
    let response = c.send(Method::POST, &path, client::empty(), None).await?;
    let raw = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes();
    let report: Value = serde_json::from_slice(&raw).context("decode the prune report")?;
    let deleted: Vec<&str> = report["NetworksDeleted"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !deleted.is_empty() {
        let mut out = String::from("Deleted Networks:\n");
        for name in deleted {
            out.push_str(name);
            out.push('\n');
        }
        out.push('\n');
        std::io::stdout().write_all(out.as_bytes())?;
    }
    Ok(())
}

/// `polis port CONTAINER [PRIVATE_PORT[/PROTO]]`: the container's published ports, in
/// docker's natural order.
pub async fn port(c: &Client, a: PortArgs) -> Result<()> {
    let inspect = c
        .json(&format!("/containers/{}/json", path_escape(&a.container)))
        .await?;
    let ports = inspect["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let bindings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|b| join_host_port(text(b, "HostIp"), text(b, "HostPort")))
            .collect()
    };
    let mut out = Vec::new();
    match &a.port {
        Some(spec) => {
            let (number, proto) = spec.split_once('/').unwrap_or((spec, ""));
            let proto = if proto.is_empty() { "tcp" } else { proto };
            if let Err(e) = parse_u16_text(number) {
                bail!("Error: invalid port ({number}): {e}");
            }
            let found = ports
                .get(&format!("{number}/{proto}"))
                .map(bindings)
                .unwrap_or_default();
            if found.is_empty() {
                bail!(
                    "Error: No public port '{spec}' published for {}",
                    a.container
                );
            }
            out = found;
        }
        None => {
            for (from, frontends) in &ports {
                for b in bindings(frontends) {
                    out.push(format!("{from} -> {b}"));
                }
            }
        }
    }
    if !out.is_empty() {
        out.sort_by(|x, y| {
            if natural_less(x, y) {
                std::cmp::Ordering::Less
            } else if natural_less(y, x) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        println!("{}", out.join("\n"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_go_prints_them() {
        assert_eq!(
            go_time_text("2024-01-01T00:00:00Z"),
            "2024-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            go_time_text("2026-05-01T10:11:12.345600000Z"),
            "2026-05-01 10:11:12.3456 +0000 UTC"
        );
        assert_eq!(
            go_time_text("2026-05-01T10:11:12+02:00"),
            "2026-05-01 10:11:12 +0200 +0200"
        );
    }

    #[test]
    fn ipam_config_places_ranges_and_gateways() {
        let a = CreateArgs {
            driver: "bridge".into(),
            subnet: vec!["10.9.0.0/24".into(), "fd00:9::/64".into()],
            gateway: vec!["10.9.0.1".into()],
            ip_range: vec!["10.9.0.128/25".into()],
            ipv6: None,
            internal: false,
            attachable: false,
            labels: vec![],
            opts: vec![],
            name: "n".into(),
        };
        assert_eq!(
            ipam_config(&a).unwrap(),
            vec![
                json!({"Subnet": "10.9.0.0/24", "IPRange": "10.9.0.128/25", "Gateway": "10.9.0.1"}),
                json!({"Subnet": "fd00:9::/64"}),
            ]
        );
    }
}
