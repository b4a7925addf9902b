//! Address management for one network and address family: the pool (subnet, optional
//! `--ip-range`, gateway) and the addresses given out from it. Addresses are handed out
//! serially, continuing after the last one given (as Docker's IPAM does), so an address
//! just released is not reused at once by the next container.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The addresses of one family of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPool {
    pub subnet: IpNet,
    /// Where container addresses come from (`--ip-range`); the whole subnet when absent.
    pub range: Option<IpNet>,
    pub gateway: IpAddr,
}

impl AddressPool {
    /// Checks a user's `--subnet`, `--ip-range` and `--gateway` as Docker does; the
    /// gateway defaults to the subnet's first address.
    pub fn new(subnet: IpNet, range: Option<IpNet>, gateway: Option<IpAddr>) -> Result<Self> {
        if subnet.trunc() != subnet {
            return Err(Error::InvalidArgument(format!(
                "invalid subnet {subnet}: it should be {}",
                subnet.trunc()
            )));
        }
        let host_bits = subnet.max_prefix_len() - subnet.prefix_len();
        if host_bits < 2 {
            return Err(Error::InvalidArgument(format!(
                "invalid subnet {subnet}: too small to hold a gateway and a container"
            )));
        }
        if let Some(r) = range {
            if r.trunc() != r {
                return Err(Error::InvalidArgument(format!(
                    "invalid ip-range {r}: it should be {}",
                    r.trunc()
                )));
            }
            if !subnet.contains(&r) {
                return Err(Error::InvalidArgument(format!(
                    "invalid ip-range {r}: it must be within the subnet {subnet}"
                )));
            }
        }
        let gateway = match gateway {
            Some(g) => {
                if !subnet.contains(&g) {
                    return Err(Error::InvalidArgument(format!(
                        "invalid gateway {g}: it must be within the subnet {subnet}"
                    )));
                }
                g
            }
            None => from_offset(subnet.network(), 1),
        };
        Ok(AddressPool {
            subnet,
            range,
            gateway,
        })
    }

    /// Where allocations are taken from.
    fn source(&self) -> IpNet {
        self.range.unwrap_or(self.subnet)
    }

    /// True if `ip` may be given to a container: in the subnet, neither the subnet's
    /// own address nor (IPv4) its broadcast address, and not the gateway.
    fn assignable(&self, ip: IpAddr) -> bool {
        self.subnet.contains(&ip)
            && ip != self.subnet.network()
            && (ip.is_ipv6() || ip != self.subnet.broadcast())
            && ip != self.gateway
    }
}

/// The addresses given out from one pool, each with its owner (an endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocations {
    owners: BTreeMap<IpAddr, String>,
    /// Where the serial search resumes.
    last: Option<IpAddr>,
}

impl Allocations {
    /// Gives `owner` the next free address after the last one given, wrapping around.
    pub fn allocate(&mut self, pool: &AddressPool, owner: &str) -> Result<IpAddr> {
        let source = pool.source();
        let first = to_u128(source.network());
        let size = 1u128 << (source.max_prefix_len() - source.prefix_len());
        let start = match self.last.filter(|ip| source.contains(ip)) {
            Some(ip) => (to_u128(ip) - first + 1) % size,
            None => 0,
        };
        // Among any `taken + 3` consecutive candidates one is free (the gateway, the
        // subnet address and the broadcast address are the only other exclusions), so
        // the search is bounded by what is allocated, not by the size of the subnet.
        let taken = self.owners.keys().filter(|ip| source.contains(*ip)).count() as u128;
        let steps = size.min(taken + 4);
        for i in 0..steps {
            let ip = from_u128(source.network(), first + (start + i) % size);
            if pool.assignable(ip) && !self.owners.contains_key(&ip) {
                self.owners.insert(ip, owner.to_string());
                self.last = Some(ip);
                return Ok(ip);
            }
        }
        Err(Error::Exhausted(format!(
            "no available IPv{} addresses on this network's address pools: {} ({})",
            if source.network().is_ipv4() { 4 } else { 6 },
            pool.subnet,
            source
        )))
    }

    /// Gives `owner` exactly `ip` (`--ip`), which must be in the subnet and free.
    pub fn reserve(&mut self, pool: &AddressPool, ip: IpAddr, owner: &str) -> Result<()> {
        if !pool.subnet.contains(&ip) {
            return Err(Error::InvalidArgument(format!(
                "no configured subnet or ip-range contain the IP address {ip}"
            )));
        }
        if !pool.assignable(ip) {
            return Err(Error::Conflict(format!(
                "address {ip} is reserved in the subnet {} (network, broadcast or gateway)",
                pool.subnet
            )));
        }
        if let Some(holder) = self.owners.get(&ip) {
            if holder != owner {
                return Err(Error::Conflict("Address already in use".into()));
            }
        }
        self.owners.insert(ip, owner.to_string());
        Ok(())
    }

    /// Returns `ip` to the pool (nothing if it was not given out).
    pub fn release(&mut self, ip: IpAddr) {
        self.owners.remove(&ip);
    }

    /// Returns every address `owner` holds; returns them.
    pub fn release_owner(&mut self, owner: &str) -> Vec<IpAddr> {
        let mine: Vec<IpAddr> = self
            .owners
            .iter()
            .filter(|(_, o)| o.as_str() == owner)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &mine {
            self.owners.remove(ip);
        }
        mine
    }

    /// The addresses given out, with their owners.
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &String)> {
        self.owners.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address numbered `n`, in the family of `like`.
fn from_u128(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

fn from_offset(base: IpAddr, offset: u128) -> IpAddr {
    from_u128(base, to_u128(base) + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(subnet: &str, range: Option<&str>, gw: Option<&str>) -> Result<AddressPool> {
        AddressPool::new(
            subnet.parse().unwrap(),
            range.map(|r| r.parse().unwrap()),
            gw.map(|g| g.parse().unwrap()),
        )
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pools_are_checked_as_docker_checks_them() {
        let p = pool("172.20.0.0/16", None, None).unwrap();
        assert_eq!(p.gateway, ip("172.20.0.1"));
        let e = pool("172.20.0.5/16", None, None).unwrap_err().to_string();
        assert!(e.contains("it should be 172.20.0.0/16"), "{e}");
        let e = pool("172.20.0.0/16", Some("10.0.0.0/24"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("within the subnet"), "{e}");
        let e = pool("172.20.0.0/16", None, Some("10.0.0.1"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid gateway"), "{e}");
        assert!(pool("10.0.0.0/31", None, None).is_err());
        let v6 = pool("fd00:1::/64", None, None).unwrap();
        assert_eq!(v6.gateway, ip("fd00:1::1"));
    }

    #[test]
    fn serial_allocation_skips_gateway_and_wraps() {
        let p = pool("10.1.0.0/29", None, None).unwrap();
        let mut a = Allocations::default();
        let got: Vec<IpAddr> = (0..5)
            .map(|i| a.allocate(&p, &format!("c{i}")).unwrap())
            .collect();
        // .0 is the subnet, .1 the gateway, .7 the broadcast address.
        assert_eq!(
            got,
            ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
                .map(ip)
                .to_vec()
        );
        let e = a.allocate(&p, "c5").unwrap_err().to_string();
        assert!(e.contains("no available IPv4 addresses"), "{e}");
        // A released address is reused only after the search wraps around.
        a.release(ip("10.1.0.3"));
        assert_eq!(a.allocate(&p, "c6").unwrap(), ip("10.1.0.3"));
        assert_eq!(a.release_owner("c6"), vec![ip("10.1.0.3")]);
        a.release(ip("10.1.0.6"));
        assert_eq!(a.allocate(&p, "c7").unwrap(), ip("10.1.0.6"));
        assert_eq!(a.allocate(&p, "c8").unwrap(), ip("10.1.0.3"));
    }

    #[test]
    fn ranges_and_static_addresses() {
        let p = pool("10.2.0.0/16", Some("10.2.5.0/24"), Some("10.2.0.254")).unwrap();
        let mut a = Allocations::default();
        // As Docker: the range is a window of the subnet, so its first address is usable.
        assert_eq!(a.allocate(&p, "x").unwrap(), ip("10.2.5.0"));
        // A static address may be anywhere in the subnet, once.
        a.reserve(&p, ip("10.2.9.9"), "y").unwrap();
        let e = a.reserve(&p, ip("10.2.9.9"), "z").unwrap_err().to_string();
        assert_eq!(e, "Address already in use");
        a.reserve(&p, ip("10.2.9.9"), "y").unwrap();
        let e = a.reserve(&p, ip("10.3.0.1"), "z").unwrap_err().to_string();
        assert!(e.contains("no configured subnet"), "{e}");
        assert!(a.reserve(&p, ip("10.2.0.254"), "z").is_err());
        assert!(a.reserve(&p, ip("10.2.0.0"), "z").is_err());
    }

    #[test]
    fn ipv6_has_no_broadcast_and_huge_subnets_stay_cheap() {
        let p = pool("fd00:2::/64", None, None).unwrap();
        let mut a = Allocations::default();
        assert_eq!(a.allocate(&p, "a").unwrap(), ip("fd00:2::2"));
        assert_eq!(a.allocate(&p, "b").unwrap(), ip("fd00:2::3"));
        a.reserve(&p, ip("fd00:2::ffff:ffff:ffff:ffff"), "c")
            .unwrap();
        let json = serde_json::to_string(&a).unwrap();
        let back: Allocations = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
    }
}
