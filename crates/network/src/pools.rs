//! The subnets networks get when the user names none, as Docker's default address pools:
//! 172.17.0.0/16 for the default bridge, then 172.18.0.0/16 … 172.31.0.0/16, then the /20s
//! of 192.168.0.0/16; each skipped when it overlaps a subnet already in use (another
//! network, or a route of the host). IPv6 subnets are unique local /64s.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::{Error, Result};

/// The default bridge's subnet.
pub fn default_bridge_subnet() -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::new(172, 17, 0, 0), 16).expect("valid prefix"))
}

/// Every candidate, in the order Docker tries them.
fn candidates() -> impl Iterator<Item = IpNet> {
    let private_16s =
        (17..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16).expect("valid prefix"));
    let private_20s = (0..16)
        .map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20).expect("valid prefix"));
    private_16s.chain(private_20s).map(IpNet::V4)
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first default IPv4 subnet that overlaps none of `in_use`.
pub fn pick_ipv4(in_use: &[IpNet]) -> Result<IpNet> {
    candidates()
        .find(|c| !in_use.iter().any(|u| overlaps(c, u)))
        .ok_or_else(|| {
            Error::Exhausted("all predefined address pools have been fully subnetted".to_string())
        })
}

/// A unique local IPv6 /64 (fd00::/8) for a network: its 40-bit global ID is taken from
/// `seed` (the network's random ID), skipping any that overlaps `in_use`.
pub fn pick_ipv6(seed: &[u8], in_use: &[IpNet]) -> Result<IpNet> {
    for attempt in 0..16u8 {
        let mut id = [0u8; 5];
        for (i, b) in seed.iter().enumerate() {
            id[i % 5] ^= b.wrapping_add(attempt);
        }
        let mut octets = [0u8; 16];
        octets[0] = 0xfd;
        octets[1..6].copy_from_slice(&id);
        let net = IpNet::V6(Ipv6Net::new(Ipv6Addr::from(octets), 64).expect("valid prefix"));
        if !in_use.iter().any(|u| overlaps(&net, u)) {
            return Ok(net);
        }
    }
    Err(Error::Exhausted(
        "no free unique local IPv6 subnet could be chosen".to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn docker_order_skipping_what_is_used() {
        assert_eq!(pick_ipv4(&[]).unwrap(), net("172.17.0.0/16"));
        let used = [net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(pick_ipv4(&used).unwrap(), net("172.19.0.0/16"));
        // A host route covering all of 172.16.0.0/12 pushes networks to 192.168.
        let used = [net("172.16.0.0/12"), net("192.168.0.0/24")];
        assert_eq!(pick_ipv4(&used).unwrap(), net("192.168.16.0/20"));
        let all = [net("172.16.0.0/12"), net("192.168.0.0/16")];
        assert!(pick_ipv4(&all).is_err());
    }

    #[test]
    fn ula_subnets_differ_by_seed_and_avoid_overlaps() {
        let a = pick_ipv6(b"network-a", &[]).unwrap();
        let b = pick_ipv6(b"network-b", &[]).unwrap();
        assert_ne!(a, b);
        assert!(net("fd00::/8").contains(&a));
        assert_eq!(a.prefix_len(), 64);
        let c = pick_ipv6(b"network-a", &[a]).unwrap();
        assert_ne!(a, c);
    }
}
