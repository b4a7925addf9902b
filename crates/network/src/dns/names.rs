//! What a name means on one network: the names a running container answers to there
//! (its name, its network aliases and its short id, as Docker's DNSNames), compared
//! without regard to case, and the reverse name of each of its addresses.

use std::net::IpAddr;

use crate::record::{Endpoint, Network};

/// The names `ep` answers to on its network.
pub fn dns_names(ep: &Endpoint) -> impl Iterator<Item = &str> {
    let short = &ep.container[..12.min(ep.container.len())];
    std::iter::once(ep.name.trim_start_matches('/'))
        .chain(ep.aliases.iter().map(String::as_str))
        .chain(std::iter::once(short))
        .filter(|n| !n.is_empty())
}

/// The addresses `name` (with or without its final dot) stands for on `net`: None when
/// no running container there answers to it (the name is then not the network's).
/// `running` is asked only about the containers the name matches.
pub fn lookup(net: &Network, name: &str, running: &dyn Fn(&str) -> bool) -> Option<Vec<IpAddr>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    let mut found: Option<Vec<IpAddr>> = None;
    for ep in net.endpoints.values() {
        if dns_names(ep).any(|n| n.eq_ignore_ascii_case(name)) && running(&ep.container) {
            let addresses = found.get_or_insert_with(Vec::new);
            for ip in [ep.ipv4, ep.ipv6].into_iter().flatten() {
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
        }
    }
    found
}

/// The name a running container's address `ip` has on `net`: `NAME.NETWORK.`, as
/// Docker's reverse answers.
pub fn reverse(net: &Network, ip: IpAddr, running: &dyn Fn(&str) -> bool) -> Option<String> {
    net.endpoints
        .values()
        .filter(|ep| ep.ipv4 == Some(ip) || ep.ipv6 == Some(ip))
        .find(|ep| running(&ep.container))
        .map(|ep| format!("{}.{}.", ep.name.trim_start_matches('/'), net.name))
}

/// The address a full reverse name stands for (`4.3.2.1.in-addr.arpa.` → 1.2.3.4,
/// `ip6.arpa.` names with all 32 nibbles); None for any other name.
pub fn arpa_address(name: &str) -> Option<IpAddr> {
    let lower = name.to_ascii_lowercase();
    let lower = lower.strip_suffix('.').unwrap_or(&lower);
    if let Some(rest) = lower.strip_suffix(".in-addr.arpa") {
        let mut octets: Vec<u8> = rest
            .split('.')
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        if octets.len() != 4 {
            return None;
        }
        octets.reverse();
        return Some(IpAddr::from([octets[0], octets[1], octets[2], octets[3]]));
    }
    let rest = lower.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|p| match p.len() {
            1 => u8::from_str_radix(p, 16).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::from(bytes))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn network() -> Network {
        let ep = |id: &str, name: &str, aliases: &[&str], v4: &str, v6: Option<&str>| Endpoint {
            id: format!("ep{id}"),
            container: id.repeat(64 / id.len()),
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ipv4: Some(v4.parse().unwrap()),
            ipv6: v6.map(|a| a.parse().unwrap()),
            ..Endpoint::default()
        };
        let endpoints = [
            ep("a", "web", &["Front", "lb"], "10.9.0.2", Some("fd00:9::2")),
            ep("b", "db", &["lb"], "10.9.0.3", None),
            ep("c", "stopped", &[], "10.9.0.4", None),
        ];
        Network {
            id: "n".repeat(64),
            name: "backend".into(),
            driver: "bridge".into(),
            created: String::new(),
            bridge: Some("br-n".into()),
            internal: false,
            attachable: false,
            enable_ipv6: true,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            ipv4: None,
            ipv6: None,
            endpoints: endpoints
                .into_iter()
                .map(|e| (e.container.clone(), e))
                .collect(),
        }
    }

    fn running(id: &str) -> bool {
        !id.starts_with('c')
    }

    fn ips(list: &[&str]) -> Option<Vec<IpAddr>> {
        Some(list.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn names_aliases_and_short_ids_resolve_without_case() {
        let net = network();
        assert_eq!(
            lookup(&net, "web", &running),
            ips(&["10.9.0.2", "fd00:9::2"])
        );
        assert_eq!(
            lookup(&net, "WEB.", &running),
            ips(&["10.9.0.2", "fd00:9::2"])
        );
        assert_eq!(
            lookup(&net, "front", &running),
            ips(&["10.9.0.2", "fd00:9::2"])
        );
        assert_eq!(lookup(&net, "bbbbbbbbbbbb", &running), ips(&["10.9.0.3"]));
        // The full id is not a DNS name, nor a longer or shorter prefix.
        assert_eq!(lookup(&net, &"b".repeat(64), &running), None);
        assert_eq!(lookup(&net, "bbbbbbbbbbb", &running), None);
    }

    #[test]
    fn a_shared_alias_gives_every_running_container() {
        let net = network();
        assert_eq!(
            lookup(&net, "lb", &running),
            ips(&["10.9.0.2", "fd00:9::2", "10.9.0.3"])
        );
    }

    #[test]
    fn stopped_containers_and_other_names_are_unknown() {
        let net = network();
        assert_eq!(lookup(&net, "stopped", &running), None);
        assert_eq!(lookup(&net, "example.com", &running), None);
        assert_eq!(lookup(&net, "web.backend", &running), None);
        assert_eq!(lookup(&net, ".", &running), None);
        // Only the matching container's state is asked.
        let asked = std::cell::RefCell::new(Vec::new());
        let ask = |id: &str| {
            asked.borrow_mut().push(id.to_string());
            true
        };
        lookup(&net, "db", &ask);
        assert_eq!(*asked.borrow(), vec!["b".repeat(64)]);
    }

    #[test]
    fn reverse_names_running_containers() {
        let net = network();
        let r = |ip: &str| reverse(&net, ip.parse().unwrap(), &running);
        assert_eq!(r("10.9.0.3").as_deref(), Some("db.backend."));
        assert_eq!(r("fd00:9::2").as_deref(), Some("web.backend."));
        assert_eq!(r("10.9.0.4"), None);
        assert_eq!(r("10.9.0.99"), None);
    }

    #[test]
    fn arpa_names_parse() {
        assert_eq!(
            arpa_address("3.0.9.10.in-addr.arpa."),
            Some("10.9.0.3".parse().unwrap())
        );
        assert_eq!(
            arpa_address("3.0.9.10.IN-ADDR.ARPA"),
            Some("10.9.0.3".parse().unwrap())
        );
        let v6 = "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.9.0.0.0.0.0.d.f.ip6.arpa.";
        assert_eq!(arpa_address(v6), Some("fd00:9::2".parse().unwrap()));
        assert_eq!(arpa_address("0.9.10.in-addr.arpa."), None);
        assert_eq!(arpa_address("300.0.9.10.in-addr.arpa."), None);
        assert_eq!(arpa_address("0.9.0.0.d.f.ip6.arpa."), None);
        assert_eq!(arpa_address("example.com."), None);
    }
}
