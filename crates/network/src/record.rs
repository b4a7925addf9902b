//! What a network is, as stored: its settings, its address pools with what they gave out,
//! and its endpoints (one per attached container).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ipam::{AddressPool, Allocations};

/// One address family of a network: the pool and its allocations, kept together so a
/// single write changes both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Family {
    pub pool: AddressPool,
    pub allocations: Allocations,
    /// The subnet was chosen by the daemon (Docker's IPAM shows it all the same).
    pub auto: bool,
}

/// A container's attachment to a network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Random 64-hex id, as Docker's EndpointID.
    pub id: String,
    pub container: String,
    /// The container's name at attach time (resolved by the network's DNS).
    pub name: String,
    pub aliases: Vec<String>,
    pub ipv4: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
    pub mac: String,
    /// Addresses the user asked for (`--ip`, `--ip6`), kept across restarts.
    pub static_ipv4: Option<IpAddr>,
    pub static_ipv6: Option<IpAddr>,
    /// Ports published to this endpoint (`-p`, `-P`).
    #[serde(default)]
    pub ports: Vec<crate::firewall::PortMapping>,
}

/// A network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// "bridge", "host" or "null".
    pub driver: String,
    /// RFC 3339, as Docker's `Created`.
    pub created: String,
    /// The Linux bridge behind a bridge network.
    pub bridge: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub labels: BTreeMap<String, String>,
    /// Driver options (`-o`), as given.
    pub options: BTreeMap<String, String>,
    pub ipv4: Option<Family>,
    pub ipv6: Option<Family>,
    /// Container id → its endpoint.
    pub endpoints: BTreeMap<String, Endpoint>,
}

impl Network {
    /// Gives `container` addresses (the static ones if asked) and records its endpoint;
    /// on failure nothing is taken.
    pub fn attach(&mut self, mut ep: Endpoint) -> Result<Endpoint> {
        if self.endpoints.contains_key(&ep.container) {
            return Err(Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                ep.name, self.name
            )));
        }
        let before = (self.ipv4.clone(), self.ipv6.clone());
        let result = (|| {
            ep.ipv4 = assign(self.ipv4.as_mut(), ep.static_ipv4, &ep.id, "IPv4")?;
            ep.ipv6 = match self.enable_ipv6 {
                true => assign(self.ipv6.as_mut(), ep.static_ipv6, &ep.id, "IPv6")?,
                false if ep.static_ipv6.is_some() => {
                    return Err(Error::InvalidArgument(format!(
                        "network {} does not have IPv6 enabled: --ip6 cannot be used",
                        self.name
                    )))
                }
                false => None,
            };
            Ok(())
        })();
        if let Err(e) = result {
            (self.ipv4, self.ipv6) = before;
            return Err(e);
        }
        self.endpoints.insert(ep.container.clone(), ep.clone());
        Ok(ep)
    }

    /// Removes `container`'s endpoint and frees its addresses; returns it, if any.
    pub fn detach(&mut self, container: &str) -> Option<Endpoint> {
        let ep = self.endpoints.remove(container)?;
        for family in [self.ipv4.as_mut(), self.ipv6.as_mut()]
            .into_iter()
            .flatten()
        {
            family.allocations.release_owner(&ep.id);
        }
        Some(ep)
    }
}

/// An address from `family`: `wanted` if given, else the next free one.
fn assign(
    family: Option<&mut Family>,
    wanted: Option<IpAddr>,
    owner: &str,
    what: &str,
) -> Result<Option<IpAddr>> {
    let Some(f) = family else {
        return match wanted {
            Some(ip) => Err(Error::InvalidArgument(format!(
                "no configured {what} subnet contains the IP address {ip}"
            ))),
            None => Ok(None),
        };
    };
    match wanted {
        Some(ip) => {
            if f.auto {
                return Err(Error::InvalidArgument(
                    "user specified IP address is supported only when connecting to \
                     networks with user configured subnets"
                        .into(),
                ));
            }
            f.allocations.reserve(&f.pool, ip, owner)?;
            Ok(Some(ip))
        }
        None => f.allocations.allocate(&f.pool, owner).map(Some),
    }
}

/// A MAC address for `ip`, as Docker derives it: 02:42 followed by the IPv4 address.
pub fn mac_for(ip: Option<IpAddr>, seed: &[u8]) -> String {
    let tail: [u8; 4] = match ip {
        Some(IpAddr::V4(v4)) => v4.octets(),
        _ => {
            let mut t = [0u8; 4];
            for (i, b) in seed.iter().enumerate() {
                t[i % 4] ^= b;
            }
            t
        }
    };
    format!(
        "02:42:{:02x}:{:02x}:{:02x}:{:02x}",
        tail[0], tail[1], tail[2], tail[3]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(v6: bool, auto: bool) -> Network {
        let family = |s: &str| Family {
            pool: AddressPool::new(s.parse().unwrap(), None, None).unwrap(),
            allocations: Allocations::default(),
            auto,
        };
        Network {
            id: "n".repeat(64),
            name: "net".into(),
            driver: "bridge".into(),
            created: String::new(),
            bridge: Some("br-nnnnnnnnnnnn".into()),
            internal: false,
            attachable: false,
            enable_ipv6: v6,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            ipv4: Some(family("10.9.0.0/24")),
            ipv6: v6.then(|| family("fd00:9::/64")),
            endpoints: BTreeMap::new(),
        }
    }

    fn endpoint(c: &str) -> Endpoint {
        Endpoint {
            id: format!("ep-{c}"),
            container: c.into(),
            name: c.into(),
            ..Endpoint::default()
        }
    }

    #[test]
    fn attach_detach_and_static_addresses() {
        let mut n = network(true, false);
        let a = n.attach(endpoint("a")).unwrap();
        assert_eq!(a.ipv4, Some("10.9.0.2".parse().unwrap()));
        assert_eq!(a.ipv6, Some("fd00:9::2".parse().unwrap()));
        assert!(n.attach(endpoint("a")).is_err());
        let mut b = endpoint("b");
        b.static_ipv4 = Some("10.9.0.50".parse().unwrap());
        let b = n.attach(b).unwrap();
        assert_eq!(b.ipv4, Some("10.9.0.50".parse().unwrap()));
        // A clash on IPv6 leaves the IPv4 address it took free again.
        let mut c = endpoint("c");
        c.static_ipv4 = Some("10.9.0.60".parse().unwrap());
        c.static_ipv6 = a.ipv6;
        assert!(n.attach(c).is_err());
        let mut d = endpoint("d");
        d.static_ipv4 = Some("10.9.0.60".parse().unwrap());
        assert!(n.attach(d).is_ok());
        assert!(n.detach("a").is_some());
        let mut e = endpoint("e");
        e.static_ipv4 = Some("10.9.0.2".parse().unwrap());
        assert!(n.attach(e).is_ok());
    }

    #[test]
    fn static_addresses_need_a_user_subnet() {
        let mut n = network(false, true);
        let mut a = endpoint("a");
        a.static_ipv4 = Some("10.9.0.7".parse().unwrap());
        let e = n.attach(a).unwrap_err().to_string();
        assert!(e.contains("user configured subnets"), "{e}");
        let mut b = endpoint("b");
        b.static_ipv6 = Some("fd00::7".parse().unwrap());
        assert!(n.attach(b).is_err());
        assert!(n.endpoints.is_empty());
    }

    #[test]
    fn macs_follow_the_ipv4_address() {
        assert_eq!(
            mac_for(Some("172.17.0.2".parse().unwrap()), b""),
            "02:42:ac:11:00:02"
        );
        assert!(mac_for(None, b"seed").starts_with("02:42:"));
    }
}
