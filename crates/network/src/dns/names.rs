//! What a name means to the container asking: the names a running container answers
//! to (its name, its network aliases and its short id, as Docker's DNSNames), compared
//! without regard to case, and the reverse name of each of its addresses. A container
//! resolves the names of every network with names it is attached to (as Docker's
//! embedded resolver and aardvark-dns), each to the addresses on those networks only.

use std::collections::HashMap;
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

/// The networks whose names a query may resolve, the served one first.
pub struct Scope<'a> {
    networks: Vec<&'a Network>,
}

impl<'a> Scope<'a> {
    /// The names of `net` alone.
    pub fn network(net: &'a Network) -> Self {
        Scope {
            networks: vec![net],
        }
    }

    /// What a query that reached the server of network `served` (an id) from `source`
    /// may resolve, among `all` networks: the networks with names (`has_names`: those
    /// with an embedded DNS server) that the container having `source` on `served` is
    /// attached to. Addresses are unique only within a network, so `source` is looked
    /// for on `served` alone; a source that is no endpoint there (the host, say) sees
    /// `served` alone. None when `served` is not in `all`.
    pub fn asked_from(
        all: &'a [Network],
        served: &str,
        source: IpAddr,
        has_names: &dyn Fn(&Network) -> bool,
    ) -> Option<Self> {
        let served = all.iter().find(|n| n.id == served)?;
        let source = source.to_canonical();
        let askers: Vec<&str> = served
            .endpoints
            .values()
            .filter(|ep| ep.ipv4 == Some(source) || ep.ipv6 == Some(source))
            .map(|ep| ep.container.as_str())
            .collect();
        let mut networks = vec![served];
        networks.extend(all.iter().filter(|n| {
            n.id != served.id && askers.iter().any(|c| n.endpoints.contains_key(*c)) && has_names(n)
        }));
        Some(Scope { networks })
    }

    /// The addresses `name` (with or without its final dot) stands for: those of each
    /// running container answering to it, on the scope's networks. None when no
    /// running container there answers to it (the name is then not the networks').
    /// `running` is asked only about the containers the name matches, once each.
    pub fn lookup(&self, name: &str, running: &dyn Fn(&str) -> bool) -> Option<Vec<IpAddr>> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() {
            return None;
        }
        let mut states = States::new(running);
        let mut found: Option<Vec<IpAddr>> = None;
        for net in &self.networks {
            for ep in net.endpoints.values() {
                if dns_names(ep).any(|n| n.eq_ignore_ascii_case(name))
                    && states.running(&ep.container)
                {
                    let addresses = found.get_or_insert_with(Vec::new);
                    for ip in [ep.ipv4, ep.ipv6].into_iter().flatten() {
                        if !addresses.contains(&ip) {
                            addresses.push(ip);
                        }
                    }
                }
            }
        }
        found
    }

    /// The name of a running container's address `ip` on the first of the scope's
    /// networks that has it: `NAME.NETWORK.`, as Docker's reverse answers.
    pub fn reverse(&self, ip: IpAddr, running: &dyn Fn(&str) -> bool) -> Option<String> {
        let mut states = States::new(running);
        self.networks.iter().find_map(|net| {
            net.endpoints
                .values()
                .filter(|ep| ep.ipv4 == Some(ip) || ep.ipv6 == Some(ip))
                .find(|ep| states.running(&ep.container))
                .map(|ep| format!("{}.{}.", ep.name.trim_start_matches('/'), net.name))
        })
    }
}

/// The containers' states as asked during one query: a container on several networks
/// is asked about once.
struct States<'r> {
    running: &'r dyn Fn(&str) -> bool,
    known: HashMap<String, bool>,
}

impl<'r> States<'r> {
    fn new(running: &'r dyn Fn(&str) -> bool) -> Self {
        States {
            running,
            known: HashMap::new(),
        }
    }

    fn running(&mut self, id: &str) -> bool {
        if let Some(known) = self.known.get(id) {
            return *known;
        }
        let now = (self.running)(id);
        self.known.insert(id.to_string(), now);
        now
    }
}

/// The addresses `name` stands for on `net` alone (see [`Scope::lookup`]).
pub fn lookup(net: &Network, name: &str, running: &dyn Fn(&str) -> bool) -> Option<Vec<IpAddr>> {
    Scope::network(net).lookup(name, running)
}

/// The name of a running container's address `ip` on `net` alone (see
/// [`Scope::reverse`]).
pub fn reverse(net: &Network, ip: IpAddr, running: &dyn Fn(&str) -> bool) -> Option<String> {
    Scope::network(net).reverse(ip, running)
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

    /// Networks `front` (a), `back` (b), `other` (c) and `plain` (d, without names, as
    /// the default bridge): p is on front, back and plain; s on front and back; q on
    /// front only; x on back only; y on other only; z on plain only; gone (stopped) on
    /// back.
    fn networks() -> Vec<Network> {
        let net = |c: char, name: &str, subnet: u8, eps: &[(&str, &str, u8)]| {
            let mut n = network();
            n.id = c.to_string().repeat(64);
            n.name = name.into();
            n.endpoints = eps
                .iter()
                .map(|(container, ep_name, host)| {
                    let ep = Endpoint {
                        id: format!("ep-{container}-{name}"),
                        container: container.repeat(64 / container.len()),
                        name: ep_name.to_string(),
                        ipv4: Some(IpAddr::from([10, subnet, 0, *host])),
                        ..Endpoint::default()
                    };
                    (ep.container.clone(), ep)
                })
                .collect();
            n
        };
        vec![
            net(
                'a',
                "front",
                1,
                &[("p", "p", 2), ("q", "q", 3), ("s", "s", 4)],
            ),
            net(
                'b',
                "back",
                2,
                &[
                    ("p", "p", 2),
                    ("x", "x", 3),
                    ("s", "s", 4),
                    ("g", "gone", 5),
                ],
            ),
            net('c', "other", 3, &[("y", "y", 2)]),
            net('d', "plain", 4, &[("p", "p", 2), ("z", "z", 3)]),
        ]
    }

    fn has_names(n: &Network) -> bool {
        n.name != "plain"
    }

    fn alive(id: &str) -> bool {
        !id.starts_with('g')
    }

    /// What `name` resolves to for a query from `source` to the server of network `net`.
    fn ask(all: &[Network], net: char, source: &str, name: &str) -> Option<Vec<IpAddr>> {
        let served = net.to_string().repeat(64);
        Scope::asked_from(all, &served, source.parse().unwrap(), &has_names)
            .unwrap()
            .lookup(name, &alive)
    }

    #[test]
    fn containers_resolve_names_of_every_network_they_share() {
        let all = networks();
        // p asks front's server: q is on front, x on back, s on both (front first).
        assert_eq!(ask(&all, 'a', "10.1.0.2", "q"), ips(&["10.1.0.3"]));
        assert_eq!(ask(&all, 'a', "10.1.0.2", "X."), ips(&["10.2.0.3"]));
        assert_eq!(
            ask(&all, 'a', "10.1.0.2", "s"),
            ips(&["10.1.0.4", "10.2.0.4"])
        );
        // The same asker through back's server: back's addresses first.
        assert_eq!(
            ask(&all, 'b', "10.2.0.2", "s"),
            ips(&["10.2.0.4", "10.1.0.4"])
        );
        assert_eq!(ask(&all, 'b', "10.2.0.2", "q"), ips(&["10.1.0.3"]));
        // An IPv4 source seen through an IPv6 socket is the same asker.
        assert_eq!(ask(&all, 'a', "::ffff:10.1.0.2", "x"), ips(&["10.2.0.3"]));
        // Stopped containers stay unknown; s, on two networks, is asked about once.
        assert_eq!(ask(&all, 'a', "10.1.0.2", "gone"), None);
        let asked = std::cell::RefCell::new(Vec::new());
        let ask_state = |id: &str| {
            asked.borrow_mut().push(id.to_string());
            true
        };
        let scope = Scope::asked_from(
            &all,
            &"a".repeat(64),
            "10.1.0.2".parse().unwrap(),
            &has_names,
        );
        scope.unwrap().lookup("s", &ask_state);
        assert_eq!(*asked.borrow(), vec!["s".repeat(64)]);
    }

    #[test]
    fn networks_not_shared_stay_isolated() {
        let all = networks();
        // q is on front only: back's and other's containers are unknown to it, and s
        // only has its front address.
        assert_eq!(ask(&all, 'a', "10.1.0.3", "x"), None);
        assert_eq!(ask(&all, 'a', "10.1.0.3", "y"), None);
        assert_eq!(ask(&all, 'a', "10.1.0.3", "s"), ips(&["10.1.0.4"]));
        // p is not on other; plain, which it is on, has no names.
        assert_eq!(ask(&all, 'a', "10.1.0.2", "y"), None);
        assert_eq!(ask(&all, 'a', "10.1.0.2", "z"), None);
        // p's back address is not an address on front: there it is a stranger.
        assert_eq!(ask(&all, 'a', "10.2.0.2", "x"), None);
    }

    #[test]
    fn unknown_sources_see_the_served_network_alone() {
        let all = networks();
        // The host, through the gateway.
        assert_eq!(ask(&all, 'a', "10.1.0.1", "q"), ips(&["10.1.0.3"]));
        assert_eq!(ask(&all, 'a', "10.1.0.1", "s"), ips(&["10.1.0.4"]));
        assert_eq!(ask(&all, 'a', "10.1.0.1", "x"), None);
        assert_eq!(ask(&all, 'b', "fd00::1", "x"), ips(&["10.2.0.3"]));
        // A network that is gone has no scope.
        let none = Scope::asked_from(
            &all,
            &"e".repeat(64),
            "10.1.0.2".parse().unwrap(),
            &has_names,
        );
        assert!(none.is_none());
    }

    #[test]
    fn reverse_names_cross_shared_networks_only() {
        let all = networks();
        let r = |net: char, source: &str, ip: &str| {
            let served = net.to_string().repeat(64);
            Scope::asked_from(&all, &served, source.parse().unwrap(), &has_names)
                .unwrap()
                .reverse(ip.parse().unwrap(), &alive)
        };
        // p, through front, names x by its back address, and q by its front one.
        assert_eq!(r('a', "10.1.0.2", "10.2.0.3").as_deref(), Some("x.back."));
        assert_eq!(r('a', "10.1.0.2", "10.1.0.3").as_deref(), Some("q.front."));
        assert_eq!(r('b', "10.2.0.2", "10.1.0.4").as_deref(), Some("s.front."));
        // Not for q (front only), nor the host, nor a stopped container, nor plain's.
        assert_eq!(r('a', "10.1.0.3", "10.2.0.3"), None);
        assert_eq!(r('a', "10.1.0.1", "10.2.0.3"), None);
        assert_eq!(r('a', "10.1.0.2", "10.2.0.5"), None);
        assert_eq!(r('a', "10.1.0.2", "10.4.0.3"), None);
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
