//! Interfaces, addresses and routes through rtnetlink, in the network namespace of the
//! thread that opens the connection. Each `Netlink` drives its own single-threaded
//! runtime, so it can be used from the plain thread that entered a namespace.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use tokio::runtime::Runtime;

use crate::error::{Error, Result};

/// A netlink connection in the current thread's network namespace.
pub struct Netlink {
    rt: Runtime,
    handle: Handle,
}

/// The kernel's "no such device" (the link is gone already).
const ENODEV: i32 = libc::ENODEV;

impl Netlink {
    pub fn connect() -> Result<Netlink> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::System(format!("netlink runtime: {e}")))?;
        let handle = rt.block_on(async {
            let (connection, handle, _) = rtnetlink::new_connection()
                .map_err(|e| Error::System(format!("netlink socket: {e}")))?;
            tokio::spawn(connection);
            Ok::<_, Error>(handle)
        })?;
        Ok(Netlink { rt, handle })
    }

    /// The index of link `name`, if it exists.
    pub fn index(&self, name: &str) -> Result<Option<u32>> {
        let found = self.rt.block_on(
            self.handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute()
                .try_next(),
        );
        match found {
            Ok(Some(m)) => Ok(Some(m.header.index)),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(None),
            Err(e) => Err(failed(&format!("look up link {name}"), e)),
        }
    }

    fn require(&self, name: &str) -> Result<u32> {
        self.index(name)?
            .ok_or_else(|| Error::NotFound(format!("network interface {name} not found")))
    }

    /// Creates bridge `name` unless it exists, with `addresses`, and brings it up.
    pub fn ensure_bridge(&self, name: &str, addresses: &[IpNet], mtu: Option<u32>) -> Result<u32> {
        if self.index(name)?.is_none() {
            let mut b = LinkBridge::new(name);
            if let Some(mtu) = mtu {
                b = b.mtu(mtu);
            }
            self.rt
                .block_on(self.handle.link().add(b.build()).execute())
                .map_err(|e| failed(&format!("create bridge {name}"), e))?;
        }
        let index = self.require(name)?;
        let present = self.addresses(index)?;
        for a in addresses.iter().filter(|a| !present.contains(a)) {
            self.add_address(index, *a)?;
        }
        self.set_up(index)?;
        Ok(index)
    }

    /// The addresses on link `index`.
    pub fn addresses(&self, index: u32) -> Result<Vec<IpNet>> {
        let msgs: Vec<_> = self
            .rt
            .block_on(
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect(),
            )
            .map_err(|e| failed("list addresses", e))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => IpNet::new(*ip, m.header.prefix_len).ok(),
                    _ => None,
                })
            })
            .collect())
    }

    /// Adds `address` to link `index`, usable at once (no duplicate address detection
    /// wait for IPv6: the addresses come from our own IPAM).
    pub fn add_address(&self, index: u32, address: IpNet) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, address.addr(), address.prefix_len());
        if address.addr().is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.rt
            .block_on(req.execute())
            .map_err(|e| failed(&format!("add address {address}"), e))
    }

    pub fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        self.set(
            LinkUnspec::new_with_index(index).mtu(mtu).build(),
            "set link MTU",
        )
    }

    pub fn set_up(&self, index: u32) -> Result<()> {
        self.set(
            LinkUnspec::new_with_index(index).up().build(),
            "bring up link",
        )
    }

    fn set(&self, msg: LinkMessage, what: &str) -> Result<()> {
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(|e| failed(what, e))
    }

    /// Creates the veth pair `host` — `peer` with `peer` made directly inside the
    /// namespace open as `ns` (moving a link between namespaces makes the kernel wait
    /// for an RCU grace period, tens of milliseconds), with its MAC and MTU.
    pub fn add_veth_into(
        &self,
        host: &str,
        peer: &str,
        ns: &std::fs::File,
        mac: Option<[u8; 6]>,
        mtu: Option<u32>,
    ) -> Result<()> {
        let mut inside = LinkUnspec::new_with_name(peer).setns_by_fd(ns.as_raw_fd());
        if let Some(mac) = mac {
            inside = inside.address(mac.to_vec());
        }
        if let Some(m) = mtu {
            inside = inside.mtu(m);
        }
        let mut pair =
            LinkVeth::new(host, peer).set_info_data(InfoData::Veth(InfoVeth::Peer(inside.build())));
        if let Some(m) = mtu {
            pair = pair.mtu(m);
        }
        self.rt
            .block_on(self.handle.link().add(pair.build()).execute())
            .map_err(|e| failed(&format!("create veth pair {host}"), e))
    }

    /// Enslaves link `index` to bridge `bridge` and brings it up.
    pub fn attach_to_bridge(&self, index: u32, bridge: u32) -> Result<()> {
        self.set(
            LinkUnspec::new_with_index(index)
                .controller(bridge)
                .up()
                .build(),
            "attach link to bridge",
        )
    }

    /// Adds a default route through `gateway`, out of link `index`.
    pub fn add_default_route(&self, index: u32, gateway: IpAddr) -> Result<()> {
        let route = match gateway {
            IpAddr::V4(g) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .gateway(g)
                .output_interface(index)
                .build(),
            IpAddr::V6(g) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .gateway(g)
                .output_interface(index)
                .build(),
        };
        self.rt
            .block_on(self.handle.route().add(route).execute())
            .map_err(|e| failed(&format!("add default route via {gateway}"), e))
    }

    /// Deletes link `name`; a link that is gone already is not an error.
    pub fn delete(&self, name: &str) -> Result<()> {
        let Some(index) = self.index(name)? else {
            return Ok(());
        };
        match self.rt.block_on(self.handle.link().del(index).execute()) {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(()),
            Err(e) => Err(failed(&format!("delete link {name}"), e)),
        }
    }

    /// Every link's name.
    pub fn links(&self) -> Result<Vec<String>> {
        let msgs: Vec<LinkMessage> = self
            .rt
            .block_on(self.handle.link().get().execute().try_collect())
            .map_err(|e| failed("list links", e))?;
        Ok(msgs
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })
            })
            .collect())
    }
}

/// The errno a netlink error carries, if it is a kernel refusal.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn failed(what: &str, e: rtnetlink::Error) -> Error {
    match errno(&e) {
        Some(code) => Error::System(format!(
            "{what}: {}",
            std::io::Error::from_raw_os_error(code)
        )),
        None => Error::System(format!("{what}: {e}")),
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    let bad = || Error::InvalidArgument(format!("invalid MAC address: {s}"));
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    Ok(mac)
}
