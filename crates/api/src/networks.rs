//! `/networks`: list, inspect, create, remove, prune, connect and disconnect, in Docker's
//! shapes; and the `NetworkSettings` of a container's inspect.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use polis_engine::hostconfig::EndpointConfig;
use polis_engine::networking::{CreateNetwork, EndpointRequest, PoolRequest};
use polis_network::{Endpoint, Family, Network};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::containers::{blocking, engine_error, find};
use crate::filters::Filters;
use crate::versioning::error;
use crate::AppState;

/// A network as `GET /networks/{id}` shows it; `verbose` adds its containers.
fn network_json(n: &Network, containers: bool) -> Value {
    let config: Vec<Value> = [n.ipv4.as_ref(), n.ipv6.as_ref()]
        .into_iter()
        .flatten()
        .map(pool_json)
        .collect();
    let members: BTreeMap<&String, Value> = if containers {
        n.endpoints
            .iter()
            .map(|(id, ep)| (id, member_json(n, ep)))
            .collect()
    } else {
        BTreeMap::new()
    };
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": n.enable_ipv6,
        "IPAM": { "Driver": "default", "Options": {}, "Config": config },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": members,
        "Options": n.options,
        "Labels": n.labels,
    })
}

fn pool_json(f: &Family) -> Value {
    let mut v =
        json!({ "Subnet": f.pool.subnet.to_string(), "Gateway": f.pool.gateway.to_string() });
    if let Some(r) = f.pool.range {
        v["IPRange"] = json!(r.to_string());
    }
    v
}

fn with_prefix(ip: Option<std::net::IpAddr>, f: Option<&Family>) -> String {
    match (ip, f) {
        (Some(ip), Some(f)) => format!("{ip}/{}", f.pool.subnet.prefix_len()),
        _ => String::new(),
    }
}

fn member_json(n: &Network, ep: &Endpoint) -> Value {
    json!({
        "Name": ep.name,
        "EndpointID": ep.id,
        "MacAddress": ep.mac,
        "IPv4Address": with_prefix(ep.ipv4, n.ipv4.as_ref()),
        "IPv6Address": with_prefix(ep.ipv6, n.ipv6.as_ref()),
    })
}

/// `GET /networks?filters=`: name, id, driver, label, type (builtin|custom), dangling.
pub async fn list(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let accepted = ["name", "id", "driver", "label", "type", "dangling", "scope"];
    let filters = match Filters::from_query(&q, &accepted) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let st = state.clone();
    let all = match blocking(move || st.networks.list()).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let out: Vec<Value> = all
        .iter()
        .filter(|n| matches_filters(n, &filters))
        .map(|n| network_json(n, false))
        .collect();
    Json(out).into_response()
}

fn builtin(n: &Network) -> bool {
    matches!(n.name.as_str(), "bridge" | "host" | "none")
}

fn matches_filters(n: &Network, f: &Filters) -> bool {
    (!f.contains("name") || f.matches("name", &n.name))
        && (!f.contains("id") || f.values("id").iter().any(|v| n.id.starts_with(v)))
        && (!f.contains("driver") || f.exact_match("driver", &n.driver))
        && (!f.contains("scope") || f.exact_match("scope", "local"))
        && f.match_labels("label", &n.labels)
        && (!f.contains("type")
            || f.values("type").iter().any(|t| match *t {
                "builtin" => builtin(n),
                "custom" => !builtin(n),
                _ => false,
            }))
        && (!f.contains("dangling")
            || f.values("dangling").iter().any(|d| {
                let dangling = !builtin(n) && n.endpoints.is_empty();
                matches!(*d, "true" | "1") == dangling
            }))
}

/// `GET /networks/{id}`.
pub async fn inspect(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    let st = state.clone();
    match blocking(move || st.networks.find(&key)).await {
        Ok(n) => Json(network_json(&n, true)).into_response(),
        Err(r) => r,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    name: String,
    driver: String,
    internal: bool,
    attachable: bool,
    ingress: bool,
    config_only: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    config_from: Option<Value>,
    scope: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    driver: String,
    config: Option<Vec<IpamPool>>,
    options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamPool {
    subnet: String,
    #[serde(rename = "IPRange")]
    ip_range: String,
    gateway: String,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

/// `POST /networks/create` → 201 `{Id, Warning}`.
pub async fn create(State(state): State<Arc<AppState>>, body: axum::body::Bytes) -> Response {
    let body: CreateBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON in request body: {e}"),
            )
        }
    };
    if body.name.is_empty() {
        return error(StatusCode::BAD_REQUEST, "network name must not be empty");
    }
    let ipam = body.ipam.unwrap_or_default();
    // What is not applied is refused by name rather than ignored.
    let refused = [
        (body.ingress, "Ingress"),
        (body.config_only, "ConfigOnly"),
        (
            body.config_from.as_ref().is_some_and(|v| !v.is_null()),
            "ConfigFrom",
        ),
        (!matches!(body.scope.as_str(), "" | "local"), "Scope"),
        (
            !matches!(ipam.driver.as_str(), "" | "default"),
            "IPAM.Driver",
        ),
        (
            ipam.options.as_ref().is_some_and(|o| !o.is_empty()),
            "IPAM.Options",
        ),
        (
            ipam.config.iter().flatten().any(|p| {
                p.auxiliary_addresses
                    .as_ref()
                    .is_some_and(|a| !a.is_empty())
            }),
            "IPAM.Config.AuxiliaryAddresses",
        ),
    ];
    if let Some((_, what)) = refused.iter().find(|(set, _)| *set) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{what} is not supported by this daemon"),
        );
    }
    // CheckDuplicate needs nothing: a name is never given twice.
    let req = CreateNetwork {
        name: body.name,
        driver: if body.driver.is_empty() {
            "bridge".into()
        } else {
            body.driver
        },
        pools: ipam
            .config
            .unwrap_or_default()
            .into_iter()
            .map(|p| PoolRequest {
                subnet: Some(p.subnet).filter(|s| !s.is_empty()),
                ip_range: Some(p.ip_range).filter(|s| !s.is_empty()),
                gateway: Some(p.gateway).filter(|s| !s.is_empty()),
            })
            .collect(),
        enable_ipv6: body.enable_ipv6.unwrap_or(false),
        internal: body.internal,
        attachable: body.attachable,
        labels: body.labels.unwrap_or_default(),
        options: body.options.unwrap_or_default(),
    };
    let st = state.clone();
    match blocking(move || st.networks.create(req)).await {
        Ok(n) => {
            crate::events::network(&state, &n, "create", None);
            (
                StatusCode::CREATED,
                Json(json!({ "Id": n.id, "Warning": "" })),
            )
                .into_response()
        }
        Err(r) => r,
    }
}

/// `DELETE /networks/{id}` → 204.
pub async fn remove(State(state): State<Arc<AppState>>, Path(key): Path<String>) -> Response {
    let st = state.clone();
    match blocking(move || st.networks.remove(&key)).await {
        Ok(n) => {
            crate::events::network(&state, &n, "destroy", None);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

/// `POST /networks/prune?filters=` (until, label): user networks without containers.
pub async fn prune(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let filters = match Filters::from_query(&q, &["until", "label", "label!"]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let until = match crate::filters::until(&filters) {
        Ok(u) => u,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let st = state.clone();
    let result = blocking(move || {
        let mut deleted = Vec::new();
        for n in st.networks.list()? {
            let created = crate::clock::parse_rfc3339(&n.created)
                .map(|ns| (ns / 1_000_000_000) as i64)
                .unwrap_or(0);
            let keep = builtin(&n)
                || !n.endpoints.is_empty()
                || until.is_some_and(|u| created >= u)
                || !filters.match_labels("label", &n.labels)
                || (filters.contains("label!") && filters.match_labels("label!", &n.labels));
            if !keep && st.networks.remove(&n.id).is_ok() {
                crate::events::network(&st, &n, "destroy", None);
                deleted.push(n.name);
            }
        }
        Ok(deleted)
    })
    .await;
    match result {
        Ok(deleted) => {
            crate::events::pruned(&state, "network", 0);
            Json(json!({ "NetworksDeleted": deleted })).into_response()
        }
        Err(r) => r,
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointConfig>,
    force: bool,
}

/// A connect or disconnect body, and the container it names.
fn connect_request(
    state: &AppState,
    body: &[u8],
) -> Result<(ConnectBody, polis_engine::containers::Container), Response> {
    let body: ConnectBody = serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))?;
    let c = find(state, &body.container)?;
    Ok((body, c))
}

/// `POST /networks/{id}/connect`.
pub async fn connect(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (body, c) = match connect_request(&state, &body) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let ep = body.endpoint_config.unwrap_or_default();
    let ipam = ep.ipam_config.clone().unwrap_or_default();
    let parse = |s: &str| -> Result<Option<std::net::IpAddr>, Response> {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| error(StatusCode::BAD_REQUEST, format!("invalid IP address {s:?}")))
    };
    let request = match (parse(&ipam.ipv4_address), parse(&ipam.ipv6_address)) {
        (Ok(ipv4), Ok(ipv6)) => EndpointRequest {
            aliases: ep.aliases.clone().unwrap_or_default(),
            ipv4,
            ipv6,
            mac: Some(ep.mac_address.clone()).filter(|m| !m.is_empty()),
            ports: Vec::new(),
        },
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let st = state.clone();
    match blocking(move || {
        st.networks.connect(&c.id, &c.name, &key, &request)?;
        refresh_files(&st, &c);
        Ok((st.networks.find(&key).ok(), c.id))
    })
    .await
    {
        Ok((n, id)) => {
            if let Some(n) = n {
                crate::events::network(&state, &n, "connect", Some(&id));
            }
            StatusCode::OK.into_response()
        }
        Err(r) => r,
    }
}

/// The container's hosts and resolv.conf after a connect or disconnect; the network
/// change stands even if they cannot be written.
fn refresh_files(state: &AppState, c: &polis_engine::containers::Container) {
    if let Err(e) = polis_engine::netmode::refresh(&state.layout, &state.networks, c) {
        tracing::warn!(container = %c.id, error = %e, "hosts and resolv.conf not updated");
    }
}

/// `POST /networks/{id}/disconnect`.
pub async fn disconnect(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let (body, c) = match connect_request(&state, &body) {
        Ok(found) => found,
        Err(r) => return r,
    };
    let st = state.clone();
    // Forced, a container that is not (or no longer) on the network is no error.
    let force = body.force;
    match blocking(move || {
        // Forced and not on it: nothing happened, nothing to tell.
        let was_on = st
            .networks
            .find(&key)
            .ok()
            .filter(|n| n.endpoints.contains_key(&c.id));
        st.networks.disconnect(&c.id, &c.name, &key, force)?;
        refresh_files(&st, &c);
        Ok((was_on, c.id))
    })
    .await
    {
        Ok((was_on, id)) => {
            if let Some(n) = was_on {
                crate::events::network(&state, &n, "disconnect", Some(&id));
            }
            StatusCode::OK.into_response()
        }
        Err(r) => r,
    }
}

/// A container's `NetworkSettings`: its endpoints, or the predefined network its mode
/// names (`host`, `none`).
pub fn settings(state: &AppState, c: &polis_engine::containers::Container) -> Value {
    let eps = state.networks.endpoints_of(&c.id).unwrap_or_default();
    let mut networks = serde_json::Map::new();
    let mut top = json!({
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": "",
        "Ports": {},
        "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": "",
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
    });
    let asked = &c.spec.endpoints;
    for (n, ep) in &eps {
        let gw = |f: Option<&Family>, ip: Option<std::net::IpAddr>| match (f, ip) {
            (Some(f), Some(_)) => f.pool.gateway.to_string(),
            _ => String::new(),
        };
        let prefix = |f: Option<&Family>, ip: Option<std::net::IpAddr>| match (f, ip) {
            (Some(f), Some(_)) => f.pool.subnet.prefix_len(),
            _ => 0,
        };
        let mut dns_names = vec![c.name.clone(), c.id[..12].to_string()];
        dns_names.extend(ep.aliases.iter().cloned());
        let entry = json!({
            "IPAMConfig": asked.get(&n.name).and_then(|e| e.ipam_config.clone()),
            "Links": null,
            "Aliases": if ep.aliases.is_empty() { Value::Null } else { json!(ep.aliases) },
            "MacAddress": ep.mac,
            "NetworkID": n.id,
            "EndpointID": ep.id,
            "Gateway": gw(n.ipv4.as_ref(), ep.ipv4),
            "IPAddress": ep.ipv4.map(|i| i.to_string()).unwrap_or_default(),
            "IPPrefixLen": prefix(n.ipv4.as_ref(), ep.ipv4),
            "IPv6Gateway": gw(n.ipv6.as_ref(), ep.ipv6),
            "GlobalIPv6Address": ep.ipv6.map(|i| i.to_string()).unwrap_or_default(),
            "GlobalIPv6PrefixLen": prefix(n.ipv6.as_ref(), ep.ipv6),
            "DriverOpts": null,
            "DNSNames": if n.name == "bridge" { Value::Null } else { json!(dns_names) },
        });
        if n.name == "bridge" {
            for k in [
                "Gateway",
                "IPAddress",
                "IPPrefixLen",
                "MacAddress",
                "IPv6Gateway",
                "GlobalIPv6Address",
                "GlobalIPv6PrefixLen",
            ] {
                top[k] = entry[k].clone();
            }
        }
        networks.insert(n.name.clone(), entry);
    }
    if !eps.is_empty() {
        top["SandboxKey"] = json!(state.networks.namespace_path(&c.id));
    }
    // Docker shows no ports for a container that does not run.
    if state.networks.is_running(&c.id) {
        top["Ports"] = ports_json(c, &eps);
    }
    if eps.is_empty() {
        let mode = match c.spec.host.network_mode.as_str() {
            "host" => Some("host"),
            "none" => Some("none"),
            _ => None,
        };
        if let Some(mode) = mode {
            let id = state.networks.find(mode).map(|n| n.id).unwrap_or_default();
            networks.insert(
                mode.to_string(),
                json!({
                    "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "",
                    "NetworkID": id, "EndpointID": "", "Gateway": "", "IPAddress": "",
                    "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                    "GlobalIPv6PrefixLen": 0, "DriverOpts": null, "DNSNames": null,
                }),
            );
        }
    }
    top["Networks"] = Value::Object(networks);
    top
}

/// `NetworkSettings.Ports`: every exposed or published port (`80/tcp`), with its host
/// bindings (null when not published), IPv4 and, where the container has IPv6, IPv6.
fn ports_json(c: &polis_engine::containers::Container, eps: &[(Network, Endpoint)]) -> Value {
    let mut ports: BTreeMap<String, Value> = c
        .spec
        .exposed_ports
        .keys()
        .map(|k| {
            let key = if k.contains('/') {
                k.clone()
            } else {
                format!("{k}/tcp")
            };
            (key, Value::Null)
        })
        .collect();
    for (_, ep) in eps {
        for m in &ep.ports {
            let key = format!("{}/{}", m.container_port, m.protocol.as_str());
            let entry = ports.entry(key).or_insert(Value::Null);
            if entry.is_null() {
                *entry = json!([]);
            }
            let list = entry.as_array_mut().expect("a list");
            let ips: Vec<String> = match m.host_ip {
                Some(ip) => vec![ip.to_string()],
                None if ep.ipv6.is_some() => vec!["0.0.0.0".into(), "::".into()],
                None => vec!["0.0.0.0".into()],
            };
            for ip in ips {
                list.push(json!({ "HostIp": ip, "HostPort": m.host_port.to_string() }));
            }
        }
    }
    json!(ports)
}

/// Refuses a create whose network does not exist before anything is made. Not a 404:
/// the docker CLI takes a 404 from create for a missing image and would pull.
pub fn check_mode(state: &AppState, mode: &str) -> Result<(), Response> {
    match mode {
        "" | "default" | "bridge" | "host" | "none" => Ok(()),
        m if m.starts_with("container:") => Ok(()),
        m => match state.networks.find(m) {
            Ok(_) => Ok(()),
            Err(polis_engine::Error::Network(polis_network::Error::NotFound(e))) => {
                Err(error(StatusCode::BAD_REQUEST, e))
            }
            Err(e) => Err(engine_error(e)),
        },
    }
}
