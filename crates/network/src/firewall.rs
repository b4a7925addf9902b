//! The firewall behind container networks: masquerade for traffic leaving a network,
//! isolation between networks, `--internal` networks with no way out, and the DNAT of
//! published ports (from other hosts, and from the host itself through 127.0.0.1).
//!
//! The whole policy is derived from the networks' records and applied at once, so the
//! rules always match the records (after a crash too: the next daemon applies them
//! again). The nftables driver keeps everything in a table of its own, `inet polis`,
//! replaced atomically, never touching anyone else's rules.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::record::Network;

/// TCP or UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port: traffic to `host_ip:host_port` goes to
/// `container_ip:container_port`. Any local address when `host_ip` is None (IPv4 and
/// IPv6) or a wildcard (`0.0.0.0`: IPv4 only, `::`: IPv6 only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
}

/// What the firewall must do for one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    pub bridge: String,
    pub subnets: Vec<IpNet>,
    pub internal: bool,
    /// Members may talk to each other (`com.docker.network.bridge.enable_icc`).
    pub icc: bool,
    /// Outbound traffic is masqueraded (`com.docker.network.bridge.enable_ip_masquerade`).
    pub masquerade: bool,
}

/// A published port, with where it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    pub mapping: PortMapping,
    pub container_ip: IpAddr,
}

/// The whole policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub networks: Vec<NetworkRules>,
    pub ports: Vec<PortRule>,
}

impl Policy {
    /// The policy for `networks` as recorded: every bridge network, and the published
    /// ports of their endpoints (leading to the endpoint's address of the same family).
    pub fn of(networks: &[Network]) -> Policy {
        let mut policy = Policy::default();
        for n in networks {
            let Some(bridge) = &n.bridge else { continue };
            policy.networks.push(NetworkRules {
                bridge: bridge.clone(),
                subnets: [n.ipv4.as_ref(), n.ipv6.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(|f| f.pool.subnet)
                    .collect(),
                internal: n.internal,
                icc: option_enabled(n, ICC_OPTION),
                masquerade: option_enabled(n, MASQUERADE_OPTION),
            });
            for ep in n.endpoints.values() {
                for m in &ep.ports {
                    let targets = match m.host_ip {
                        Some(IpAddr::V4(_)) => vec![ep.ipv4],
                        Some(IpAddr::V6(_)) => vec![ep.ipv6],
                        None => vec![ep.ipv4, ep.ipv6],
                    };
                    for ip in targets.into_iter().flatten() {
                        policy.ports.push(PortRule {
                            mapping: m.clone(),
                            container_ip: ip,
                        });
                    }
                }
            }
        }
        policy
    }
}

/// `-o com.docker.network.bridge.enable_icc=false`: members cannot reach each other.
pub const ICC_OPTION: &str = "com.docker.network.bridge.enable_icc";
/// `-o com.docker.network.bridge.enable_ip_masquerade=false`: no masquerade on the way out.
pub const MASQUERADE_OPTION: &str = "com.docker.network.bridge.enable_ip_masquerade";

/// A boolean driver option, true unless set to false.
fn option_enabled(n: &Network, key: &str) -> bool {
    n.options
        .get(key)
        .is_none_or(|v| !matches!(v.to_ascii_lowercase().as_str(), "false" | "0"))
}

/// Applies a policy to the kernel.
pub trait FirewallDriver: Send + Sync {
    /// Makes the kernel's rules exactly `policy` (none of ours left when it is empty).
    fn apply(&self, policy: &Policy) -> Result<()>;
}

/// The nftables driver: `nft -j -f -` with the policy as one JSON batch.
#[derive(Debug, Default)]
pub struct Nftables;

const TABLE: &str = "polis";

impl FirewallDriver for Nftables {
    fn apply(&self, policy: &Policy) -> Result<()> {
        let batch = ruleset(policy);
        let mut child = Command::new("nft")
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::System(format!("run nft (is nftables installed?): {e}")))?;
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(batch.to_string().as_bytes())
            .map_err(|e| Error::System(format!("write to nft: {e}")))?;
        let out = child
            .wait_with_output()
            .map_err(|e| Error::System(format!("wait for nft: {e}")))?;
        if !out.status.success() {
            return Err(Error::System(format!(
                "nft refused the firewall rules: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

/// The JSON batch, one transaction: without networks our table goes; otherwise the
/// table and its chains are made if missing and their rules replaced. (The chains stay:
/// removing a base chain makes the kernel wait for every CPU, some 20 ms.)
pub fn ruleset(policy: &Policy) -> Value {
    let table = json!({ "family": "inet", "name": TABLE });
    let mut cmds = vec![json!({ "add": { "table": table } })];
    if policy.networks.is_empty() {
        cmds.push(json!({ "delete": { "table": table } }));
        return json!({ "nftables": cmds });
    }
    let chains = [
        ("forward", "filter", "forward", 0),
        ("prerouting", "nat", "prerouting", -100),
        ("output", "nat", "output", -100),
        ("postrouting", "nat", "postrouting", 100),
    ];
    for (name, kind, hook, prio) in chains {
        cmds.push(json!({ "add": { "chain": {
            "family": "inet", "table": TABLE, "name": name,
            "type": kind, "hook": hook, "prio": prio, "policy": "accept",
        }}}));
        cmds.push(
            json!({ "flush": { "chain": { "family": "inet", "table": TABLE, "name": name } } }),
        );
    }
    let rule = |chain: &str, expr: Vec<Value>| json!({ "add": { "rule": { "family": "inet", "table": TABLE, "chain": chain, "expr": expr }}});
    let bridges: Vec<&str> = policy.networks.iter().map(|n| n.bridge.as_str()).collect();
    for n in &policy.networks {
        let br = n.bridge.as_str();
        if n.internal {
            // Nothing in or out but between its own members.
            cmds.push(rule(
                "forward",
                vec![is("iifname", br), not("oifname", br), drop()],
            ));
            cmds.push(rule(
                "forward",
                vec![is("oifname", br), not("iifname", br), drop()],
            ));
            continue;
        }
        if !n.icc {
            cmds.push(rule(
                "forward",
                vec![is("iifname", br), is("oifname", br), drop()],
            ));
        }
        // Isolation: nothing from this network into another one.
        for other in bridges.iter().filter(|b| **b != br) {
            cmds.push(rule(
                "forward",
                vec![is("iifname", br), is("oifname", other), drop()],
            ));
        }
        for subnet in n.subnets.iter().filter(|_| n.masquerade) {
            // Leaving through anything but its own bridge: masquerade.
            cmds.push(rule(
                "postrouting",
                vec![
                    saddr(subnet),
                    not("oifname", br),
                    json!({ "masquerade": null }),
                ],
            ));
        }
        // Hairpin: a member reaching a published port gets an answer from the host.
        cmds.push(rule(
            "postrouting",
            vec![
                is("iifname", br),
                is("oifname", br),
                json!({ "match": { "op": "in", "left": { "ct": { "key": "status" } }, "right": "dnat" } }),
                json!({ "masquerade": null }),
            ],
        ));
        // Connections from the host's 127.0.0.1 (routed to the bridge, see route_localnet).
        cmds.push(rule(
            "postrouting",
            vec![
                saddr(&"127.0.0.0/8".parse().expect("valid prefix")),
                is("oifname", br),
                json!({ "masquerade": null }),
            ],
        ));
    }
    for p in &policy.ports {
        let family = if p.container_ip.is_ipv4() {
            "ip"
        } else {
            "ip6"
        };
        let mut m = vec![json!({ "match": { "op": "==",
            "left": { "meta": { "key": "nfproto" } }, "right": if family == "ip" { "ipv4" } else { "ipv6" } } })];
        match p.mapping.host_ip.filter(|ip| !ip.is_unspecified()) {
            Some(ip) => m.push(json!({ "match": { "op": "==",
                "left": { "payload": { "protocol": family, "field": "daddr" } }, "right": ip.to_string() } })),
            None => m.push(json!({ "match": { "op": "==",
                "left": { "fib": { "result": "type", "flags": ["daddr"] } }, "right": "local" } })),
        }
        m.push(json!({ "match": { "op": "==",
            "left": { "payload": { "protocol": p.mapping.protocol.as_str(), "field": "dport" } },
            "right": p.mapping.host_port } }));
        let dnat = json!({ "dnat": {
            "family": family, "addr": p.container_ip.to_string(), "port": p.mapping.container_port } });
        // Arriving from outside or from a container (prerouting), or sent by the host
        // itself (output).
        let mut outside = m.clone();
        outside.push(dnat.clone());
        cmds.push(rule("prerouting", outside));
        let mut local = m;
        local.push(dnat);
        cmds.push(rule("output", local));
    }
    json!({ "nftables": cmds })
}

fn is(key: &str, value: &str) -> Value {
    json!({ "match": { "op": "==", "left": { "meta": { "key": key } }, "right": value } })
}

fn not(key: &str, value: &str) -> Value {
    json!({ "match": { "op": "!=", "left": { "meta": { "key": key } }, "right": value } })
}

fn saddr(net: &IpNet) -> Value {
    let family = if net.addr().is_ipv4() { "ip" } else { "ip6" };
    json!({ "match": { "op": "==",
        "left": { "payload": { "protocol": family, "field": "saddr" } },
        "right": { "prefix": { "addr": net.network().to_string(), "len": net.prefix_len() } } } })
}

fn drop() -> Value {
    json!({ "drop": null })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_policy_only_removes_our_table() {
        let v = ruleset(&Policy::default());
        let cmds = v["nftables"].as_array().unwrap();
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[1]["delete"]["table"]["name"], "polis");
    }

    #[test]
    fn networks_are_isolated_and_ports_published() {
        let policy = Policy {
            networks: vec![
                NetworkRules {
                    bridge: "br-a".into(),
                    subnets: vec!["10.1.0.0/24".parse().unwrap()],
                    internal: false,
                    icc: false,
                    masquerade: true,
                },
                NetworkRules {
                    bridge: "br-b".into(),
                    subnets: vec!["10.2.0.0/24".parse().unwrap()],
                    internal: true,
                    icc: true,
                    masquerade: true,
                },
            ],
            ports: vec![PortRule {
                mapping: PortMapping {
                    protocol: Protocol::Udp,
                    host_ip: None,
                    host_port: 5353,
                    container_port: 53,
                },
                container_ip: "10.1.0.2".parse().unwrap(),
            }],
        };
        let batch = ruleset(&policy);
        let rules: Vec<(String, String)> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| {
                let r = &c["add"]["rule"];
                Some((r["chain"].as_str()?.to_string(), r["expr"].to_string()))
            })
            .collect();
        let has = |chain: &str, parts: &[&str]| {
            rules
                .iter()
                .any(|(c, e)| c == chain && parts.iter().all(|p| e.contains(p)))
        };
        // a → b dropped; b (internal) neither in nor out; a masqueraded, b not.
        assert!(has(
            "forward",
            &[r#""right":"br-a""#, r#""right":"br-b""#, "drop"]
        ));
        assert!(has(
            "forward",
            &[r#""op":"!=""#, r#""right":"br-b""#, "drop"]
        ));
        assert!(has("postrouting", &[r#""addr":"10.1.0.0""#, "masquerade"]));
        // icc off: a → a dropped.
        assert!(rules.iter().any(|(c, e)| c == "forward"
            && e.matches(r#""right":"br-a""#).count() == 2
            && e.contains("drop")));
        assert!(!has("postrouting", &[r#""addr":"10.2.0.0""#]));
        for chain in ["prerouting", "output"] {
            assert!(has(
                chain,
                &["5353", r#""addr":"10.1.0.2""#, r#""port":53"#, "udp"]
            ));
        }
    }

    #[test]
    fn a_wildcard_host_ip_is_any_local_address_of_its_family() {
        let rule = |host_ip: &str, container_ip: &str| PortRule {
            mapping: PortMapping {
                protocol: Protocol::Tcp,
                host_ip: Some(host_ip.parse().unwrap()),
                host_port: 8080,
                container_port: 80,
            },
            container_ip: container_ip.parse().unwrap(),
        };
        let policy = Policy {
            networks: vec![NetworkRules {
                bridge: "br-a".into(),
                subnets: vec!["10.1.0.0/24".parse().unwrap()],
                internal: false,
                icc: true,
                masquerade: true,
            }],
            ports: vec![
                rule("0.0.0.0", "10.1.0.2"),
                rule("::", "fd00:1::2"),
                rule("127.0.0.1", "10.1.0.3"),
            ],
        };
        let batch = ruleset(&policy);
        let exprs: Vec<String> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["add"]["rule"]["chain"] == "prerouting")
            .map(|c| c["add"]["rule"]["expr"].to_string())
            .collect();
        let of = |to: &str| {
            exprs
                .iter()
                .find(|e| e.contains(&format!(r#""addr":"{to}""#)))
                .unwrap()
                .clone()
        };
        for (to, family) in [("10.1.0.2", "ipv4"), ("fd00:1::2", "ipv6")] {
            let e = of(to);
            assert!(e.contains(r#""fib""#) && e.contains(family), "{e}");
            assert!(!e.contains(r#""field":"daddr""#), "{e}");
        }
        let e = of("10.1.0.3");
        assert!(
            e.contains(r#""field":"daddr""#) && e.contains(r#""right":"127.0.0.1""#),
            "{e}"
        );
    }
}
