//! The bridge driver: a Linux bridge per network holding the gateway addresses, and for
//! each endpoint a veth pair whose host end is on the bridge and whose other end is the
//! container's interface, configured inside the container's namespace before it starts.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use crate::error::{Error, Result};
use crate::link::{parse_mac, Netlink};
use crate::netns;
use crate::record::{Endpoint, Network};

/// `-o com.docker.network.driver.mtu=N`: the MTU of the bridge and of every veth on it.
pub const MTU_OPTION: &str = "com.docker.network.driver.mtu";

/// The network's MTU option, checked.
pub fn mtu(net: &Network) -> Result<Option<u32>> {
    match net.options.get(MTU_OPTION) {
        None => Ok(None),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|m| (68..=65535).contains(m))
            .map(Some)
            .ok_or_else(|| Error::InvalidArgument(format!("invalid MTU {v:?}: 68 to 65535"))),
    }
}

/// The gateway addresses a network's bridge carries, with the subnets' prefixes.
fn gateway_addresses(net: &Network) -> Vec<IpNet> {
    [net.ipv4.as_ref(), net.ipv6.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|f| IpNet::new(f.pool.gateway, f.pool.subnet.prefix_len()).ok())
        .collect()
}

fn bridge_name(net: &Network) -> Result<&str> {
    net.bridge
        .as_deref()
        .ok_or_else(|| Error::InvalidArgument(format!("network {} has no bridge", net.name)))
}

/// Runs `f` with a netlink connection on a thread of its own, in the caller's namespace.
fn with_netlink<T: Send>(f: impl FnOnce(&Netlink) -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| f(&Netlink::connect()?))
            .join()
            .unwrap_or_else(|_| Err(Error::System("netlink thread panicked".into())))
    })
}

/// Makes sure the network's bridge exists, carries its gateways and is up; IPv6 is
/// switched on for it when the network has IPv6.
pub fn ensure(net: &Network) -> Result<()> {
    let name = bridge_name(net)?.to_string();
    let addresses = gateway_addresses(net);
    let ipv6 = net.enable_ipv6;
    let mtu = mtu(net)?;
    with_netlink(move |nl| {
        let index = nl.ensure_bridge(&name, &[], mtu)?;
        // The host's own 127.0.0.1 may reach published ports: DNAT sends such packets
        // out of the bridge, which the kernel allows only with route_localnet.
        sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")?;
        if ipv6 {
            sysctl(&format!("net/ipv6/conf/{name}/disable_ipv6"), "0")?;
        }
        let present = nl.addresses(index)?;
        for a in addresses.iter().filter(|a| !present.contains(a)) {
            nl.add_address(index, *a)?;
        }
        Ok(())
    })
}

/// Deletes the network's bridge (nothing if it is gone).
pub fn remove(net: &Network) -> Result<()> {
    let name = bridge_name(net)?.to_string();
    with_netlink(move |nl| nl.delete(&name))
}

/// The host end of an endpoint's veth pair.
pub fn host_veth(ep: &Endpoint) -> String {
    format!("veth{}", &ep.id[..7.min(ep.id.len())])
}

/// Connects the namespace at `ns_path` to the network through a veth pair: the container
/// end becomes `ifname` with the endpoint's MAC and addresses; with `default_route`, the
/// network's gateways become the container's default routes.
pub fn connect(
    net: &Network,
    ep: &Endpoint,
    ns_path: &Path,
    ifname: &str,
    default_route: bool,
) -> Result<()> {
    let bridge = bridge_name(net)?.to_string();
    let host = host_veth(ep);
    let ns = std::fs::File::open(ns_path)
        .map_err(|e| Error::System(format!("open {}: {e}", ns_path.display())))?;
    let mtu = mtu(net)?;
    let mac = parse_mac(&ep.mac)?;
    // The container's end is made inside its namespace under its final name.
    let made = with_netlink(|nl| {
        let bridge_index = nl.index(&bridge)?.ok_or_else(|| {
            Error::NotFound(format!("bridge {bridge} of network {} not found", net.name))
        })?;
        nl.add_veth_into(&host, ifname, &ns, Some(mac), mtu)?;
        let host_index = nl
            .index(&host)?
            .ok_or_else(|| Error::NotFound(host.clone()))?;
        nl.attach_to_bridge(host_index, bridge_index)
    });
    if let Err(e) = made {
        let _ = with_netlink(|nl| nl.delete(&host));
        return Err(e);
    }
    let addresses: Vec<IpNet> = [(ep.ipv4, net.ipv4.as_ref()), (ep.ipv6, net.ipv6.as_ref())]
        .into_iter()
        .filter_map(|(ip, f)| IpNet::new(ip?, f?.pool.subnet.prefix_len()).ok())
        .collect();
    let gateways: Vec<IpAddr> = if default_route && !net.internal {
        [
            ep.ipv4.and(net.ipv4.as_ref()),
            ep.ipv6.and(net.ipv6.as_ref()),
        ]
        .into_iter()
        .flatten()
        .map(|f| f.pool.gateway)
        .collect()
    } else {
        Vec::new()
    };
    let inside = netns::run_in(ns_path, || {
        let nl = Netlink::connect()?;
        if let Some(lo) = nl.index("lo")? {
            nl.set_up(lo)?;
        }
        let index = nl
            .index(ifname)?
            .ok_or_else(|| Error::NotFound(ifname.to_string()))?;
        nl.set_up(index)?;
        if ep.ipv6.is_some() {
            sysctl(&format!("net/ipv6/conf/{ifname}/disable_ipv6"), "0")?;
        }
        for a in &addresses {
            nl.add_address(index, *a)?;
        }
        for g in &gateways {
            nl.add_default_route(index, *g)?;
        }
        Ok(())
    });
    if let Err(e) = inside {
        let _ = with_netlink(|nl| nl.delete(&host));
        return Err(e);
    }
    Ok(())
}

/// Removes an endpoint's veth pair (both ends go with the host end); nothing if gone.
pub fn disconnect(ep: &Endpoint) -> Result<()> {
    let host = host_veth(ep);
    with_netlink(move |nl| nl.delete(&host))
}

/// Writes a value under /proc/sys in the calling thread's network namespace.
pub fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value)
        .map_err(|e| Error::System(format!("write {}: {e}", path.display())))
}
