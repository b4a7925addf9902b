//! The daemon's networks: the predefined `bridge`, `host` and `none`, the user's bridge
//! networks, and each container's place on them. A container on a bridge network gets a
//! network namespace kept as a file under the run root, made and wired (veth, addresses,
//! routes) before its process exists; the runtime joins it by path, so a restart reuses
//! it. Everything is undone at `rm`, and whatever a crash left is found again at start.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use polis_network::firewall::{FirewallDriver, Nftables, Policy};
use polis_network::ports::{self, PortRequest};
use polis_network::{bridge, netns, pools, AddressPool, Allocations, Endpoint, Family, Network};
use polis_network::{record::mac_for, NetworkStore};

use crate::error::{Error, Result};
use crate::metadata::random_hex;

/// The default bridge network's name, as Docker's.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The network modes that are not networks one can create or remove.
const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// One `IPAM.Config` entry of a create request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolRequest {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
}

/// `docker network create`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub pools: Vec<PoolRequest>,
    pub enable_ipv6: bool,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// What a container asks of one network (`--ip`, `--ip6`, `--network-alias`, `--mac-address`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointRequest {
    pub aliases: Vec<String>,
    pub ipv4: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
    pub mac: Option<String>,
    /// Ports the container publishes (`-p`, `-P`) while it runs, on its first network:
    /// checked at create, published by [`Networks::activate`].
    pub ports: Vec<PortRequest>,
}

/// Where a container's network namespace comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespace {
    /// The host's (`--network host`).
    Host,
    /// A new one with only lo (`--network none`, or no default bridge).
    Private,
    /// A namespace kept as a file (a bridge network's, or another container's).
    Path(PathBuf),
}

/// A container's networking as its files and runtime spec need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub namespace: Namespace,
    /// Its own addresses, for its /etc/hosts.
    pub addresses: Vec<IpAddr>,
    /// Its network's embedded DNS server, for its /etc/resolv.conf; empty when the
    /// network has none (the default bridge, host, none).
    pub nameservers: Vec<IpAddr>,
}

pub struct Networks {
    store: Arc<NetworkStore>,
    netns_dir: PathBuf,
    /// The default bridge's interface; None when the daemon runs without one.
    default_bridge: Option<String>,
    /// Serialises network creation and removal with attachments.
    lock: Mutex<()>,
    firewall: Box<dyn FirewallDriver>,
    /// The policy the firewall holds, once applied by this daemon.
    applied: Mutex<Option<Policy>>,
    /// The embedded DNS servers of the user's bridge networks, once `serve_dns` ran.
    dns: polis_network::dns::Servers,
    /// The containers that run now: their ports are published and their names answered.
    running: Arc<Mutex<HashSet<String>>>,
}

impl Networks {
    /// Opens the networks under `root`; with `default_bridge`, makes sure the default
    /// network and its bridge exist. Every user network's bridge is made again if it is
    /// gone (after a reboot), and IP forwarding is switched on as Docker does.
    pub fn open(root: &Path, run_root: &Path, default_bridge: Option<&str>) -> Result<Networks> {
        let store = NetworkStore::open(&root.join("network")).map_err(Error::Network)?;
        let netns_dir = run_root.join("netns");
        std::fs::create_dir_all(&netns_dir).map_err(|e| Error::io("create", &netns_dir, e))?;
        let networks = Networks {
            store: Arc::new(store),
            netns_dir,
            default_bridge: default_bridge.map(str::to_string),
            lock: Mutex::new(()),
            firewall: Box::new(Nftables),
            applied: Mutex::new(None),
            dns: Default::default(),
            running: Default::default(),
        };
        if let Some(name) = default_bridge {
            if networks.store.find(DEFAULT_NETWORK).is_err() {
                let mut net = networks.new_record(DEFAULT_NETWORK, "bridge");
                net.bridge = Some(name.to_string());
                net.ipv4 = Some(Family {
                    pool: AddressPool::new(pools::default_bridge_subnet(), None, None)
                        .map_err(Error::Network)?,
                    allocations: Allocations::default(),
                    auto: true,
                });
                networks.store.create(&net).map_err(Error::Network)?;
            }
        }
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if networks.store.find(name).is_err() {
                networks
                    .store
                    .create(&networks.new_record(name, driver))
                    .map_err(Error::Network)?;
            }
        }
        let mut any_bridge = false;
        for net in networks.store.list().map_err(Error::Network)? {
            if net.bridge.is_some() && (net.name != DEFAULT_NETWORK || default_bridge.is_some()) {
                bridge::ensure(&net).map_err(Error::Network)?;
                any_bridge = true;
            }
        }
        if any_bridge {
            bridge::sysctl("net/ipv4/ip_forward", "1").map_err(Error::Network)?;
            networks.sync_firewall()?;
        }
        Ok(networks)
    }

    /// Starts the embedded DNS server of every user bridge network, on the tokio runtime
    /// of the caller's context; networks created later get theirs at create. Names
    /// other than the containers' go to the nameservers of the daemon's
    /// /etc/resolv.conf, read now. Only running containers' names are answered. The
    /// networks whose server could not start are returned with why.
    pub fn serve_dns(&self) -> Vec<Error> {
        let set = self.running.clone();
        let running: polis_network::dns::Running =
            Arc::new(move |id: &str| lock(&set).contains(id));
        let upstreams = match std::fs::read_to_string("/etc/resolv.conf") {
            Ok(text) => polis_network::dns::upstreams(&text),
            Err(_) => Vec::new(),
        };
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.dns.enable(self.store.clone(), running, upstreams) {
            return vec![Error::Network(e)];
        }
        let mut errors = Vec::new();
        for net in self.store.list().unwrap_or_default() {
            if has_dns(&net) {
                if let Err(e) = self.dns.start(&net) {
                    errors.push(Error::Network(e));
                }
            }
        }
        errors
    }

    fn new_record(&self, name: &str, driver: &str) -> Network {
        let id = random_hex(32);
        Network {
            bridge: None,
            name: name.to_string(),
            driver: driver.to_string(),
            created: polis_runtime::state::now_rfc3339(),
            internal: false,
            attachable: false,
            enable_ipv6: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            ipv4: None,
            ipv6: None,
            endpoints: BTreeMap::new(),
            id,
        }
    }

    /// Every network, the predefined ones included.
    pub fn list(&self) -> Result<Vec<Network>> {
        self.store.list().map_err(Error::Network)
    }

    /// The network `name_or_id` designates.
    pub fn find(&self, name_or_id: &str) -> Result<Network> {
        self.store.find(name_or_id).map_err(Error::Network)
    }

    /// `docker network create` for the bridge driver.
    pub fn create(&self, req: CreateNetwork) -> Result<Network> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if req.driver != "bridge" {
            return Err(Error::InvalidInput(format!(
                "plugin \"{}\" not found: only the bridge driver is available",
                req.driver
            )));
        }
        if PREDEFINED.contains(&req.name.as_str()) {
            return Err(Error::Forbidden(format!(
                "{} is a pre-defined network and cannot be created",
                req.name
            )));
        }
        if !crate::containers::valid_name(&req.name) && req.name.len() != 1 {
            return Err(Error::InvalidInput(format!(
                "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                req.name
            )));
        }
        if let Some(o) = req
            .options
            .keys()
            .find(|k| !KNOWN_OPTIONS.contains(&k.as_str()))
        {
            return Err(Error::InvalidInput(format!(
                "network option {o:?} is not supported by the bridge driver (supported: {})",
                KNOWN_OPTIONS.join(", ")
            )));
        }
        let mut net = self.new_record(&req.name, "bridge");
        let in_use = self.subnets_in_use()?;
        let (mut v4, mut v6) = (None, None);
        for p in &req.pools {
            let subnet: IpNet = parse(p.subnet.as_deref(), "subnet")?
                .ok_or_else(|| Error::InvalidInput("an IPAM pool needs a subnet".to_string()))?;
            if let Some(u) = in_use.iter().find(|u| overlaps(u, &subnet)) {
                return Err(Error::Forbidden(format!(
                    "Pool overlaps with other one on this address space: {subnet} overlaps {u}"
                )));
            }
            let family = Family {
                pool: AddressPool::new(
                    subnet,
                    parse(p.ip_range.as_deref(), "ip-range")?,
                    parse(p.gateway.as_deref(), "gateway")?,
                )
                .map_err(Error::Network)?,
                allocations: Allocations::default(),
                auto: false,
            };
            let slot = if subnet.addr().is_ipv4() {
                &mut v4
            } else {
                &mut v6
            };
            if slot.replace(family).is_some() {
                return Err(Error::InvalidInput(
                    "only one subnet per address family is supported".into(),
                ));
            }
        }
        if v4.is_none() {
            v4 = Some(Family {
                pool: AddressPool::new(
                    pools::pick_ipv4(&in_use).map_err(Error::Network)?,
                    None,
                    None,
                )
                .map_err(Error::Network)?,
                allocations: Allocations::default(),
                auto: true,
            });
        }
        if v6.is_some() && !req.enable_ipv6 {
            return Err(Error::InvalidInput(
                "an IPv6 subnet was given without --ipv6".to_string(),
            ));
        }
        if req.enable_ipv6 && v6.is_none() {
            v6 = Some(Family {
                pool: AddressPool::new(
                    pools::pick_ipv6(net.id.as_bytes(), &in_use).map_err(Error::Network)?,
                    None,
                    None,
                )
                .map_err(Error::Network)?,
                allocations: Allocations::default(),
                auto: true,
            });
        }
        net.ipv4 = v4;
        net.ipv6 = v6;
        net.enable_ipv6 = req.enable_ipv6;
        net.internal = req.internal;
        net.attachable = req.attachable;
        net.labels = req.labels;
        net.bridge = Some(
            req.options
                .get("com.docker.network.bridge.name")
                .cloned()
                .unwrap_or_else(|| format!("br-{}", &net.id[..12])),
        );
        net.options = req.options;
        self.store.create(&net).map_err(Error::Network)?;
        let made = bridge::ensure(&net)
            .and_then(|()| bridge::sysctl("net/ipv4/ip_forward", "1"))
            .and_then(|()| self.dns.start(&net))
            .map_err(Error::Network)
            .and_then(|()| self.sync_firewall());
        if let Err(e) = made {
            self.dns.stop(&net.id);
            let _ = bridge::remove(&net);
            let _ = self.store.remove(&net.id);
            let _ = self.sync_firewall();
            return Err(e);
        }
        Ok(net)
    }

    /// `docker network rm`: refused for the predefined networks and while containers
    /// are attached.
    pub fn remove(&self, name_or_id: &str) -> Result<Network> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let net = self.find(name_or_id)?;
        if PREDEFINED.contains(&net.name.as_str()) {
            return Err(Error::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            )));
        }
        if !net.endpoints.is_empty() {
            return Err(Error::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                net.name, net.id
            )));
        }
        self.dns.stop(&net.id);
        bridge::remove(&net).map_err(Error::Network)?;
        self.store.remove(&net.id).map_err(Error::Network)?;
        self.sync_firewall()?;
        Ok(net)
    }

    /// Makes the firewall match the networks' records.
    /// Only when the policy changed (most containers publish nothing): an `nft` run is
    /// the dearest step of a container's start.
    /// Serialised on its own lock, taken before the records are read, so the last apply
    /// always holds the latest records.
    fn sync_firewall(&self) -> Result<()> {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        let all = self.store.list().map_err(Error::Network)?;
        let policy = Policy::of(&all);
        if applied.as_ref() == Some(&policy) {
            return Ok(());
        }
        // Unknown until it succeeds: a failed apply may have changed part of it.
        *applied = None;
        self.firewall.apply(&policy).map_err(Error::Network)?;
        *applied = Some(policy);
        Ok(())
    }

    /// The subnets of every network, so a new one overlaps none.
    fn subnets_in_use(&self) -> Result<Vec<IpNet>> {
        Ok(self
            .store
            .list()
            .map_err(Error::Network)?
            .iter()
            .flat_map(|n| [n.ipv4.as_ref(), n.ipv6.as_ref()])
            .flatten()
            .map(|f| f.pool.subnet)
            .collect())
    }

    /// The default bridge's gateway: what `--add-host NAME:host-gateway` resolves to.
    pub fn host_gateway(&self) -> Option<IpAddr> {
        self.default_bridge.as_ref()?;
        let net = self.store.find(DEFAULT_NETWORK).ok()?;
        Some(net.ipv4?.pool.gateway)
    }

    /// The namespace file of container `id`.
    pub fn namespace_path(&self, id: &str) -> PathBuf {
        self.netns_dir.join(id)
    }

    /// Puts container `id` (named `name`) on the network its `mode` names, before its
    /// process exists. On failure nothing stays.
    pub fn join(
        &self,
        id: &str,
        name: &str,
        mode: &str,
        request: &EndpointRequest,
    ) -> Result<Joined> {
        let network = match mode {
            "host" => {
                return Ok(Joined {
                    namespace: Namespace::Host,
                    addresses: Vec::new(),
                    nameservers: Vec::new(),
                })
            }
            "none" => return Ok(private()),
            "" | "default" | "bridge" if self.default_bridge.is_none() => {
                if !request.ports.is_empty() {
                    return Err(Error::InvalidInput(
                        "cannot publish ports: the daemon runs without a default bridge \
                         (--bridge none); put the container on a user network"
                            .into(),
                    ));
                }
                return Ok(private());
            }
            "" | "default" => DEFAULT_NETWORK,
            m if m.starts_with("container:") => {
                return Err(Error::InvalidInput(format!(
                    "network mode {m:?}: the container's namespace is joined by join_container"
                )))
            }
            m => m,
        };
        let net = self.store.find(network).map_err(Error::Network)?;
        if net.name == DEFAULT_NETWORK && (!request.aliases.is_empty()) {
            return Err(Error::InvalidInput(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
        let ns = self.namespace_path(id);
        netns::create(&ns).map_err(Error::Network)?;
        let plug = Plug {
            ns: &ns,
            ifname: "eth0",
            default_route: true,
        };
        let joined =
            self.attach(&net, id, name, request, plug)
                .and_then(|ep| match self.sync_firewall() {
                    Ok(()) => Ok(ep),
                    Err(e) => {
                        let _ = bridge::disconnect(&ep);
                        self.detach(&net.id, id);
                        let _ = self.sync_firewall();
                        Err(e)
                    }
                });
        if joined.is_err() {
            let _ = netns::remove(&ns);
        }
        let ep = joined?;
        Ok(Joined {
            namespace: Namespace::Path(ns),
            addresses: [ep.ipv4, ep.ipv6].into_iter().flatten().collect(),
            nameservers: self.dns.addresses(&net.id),
        })
    }

    /// `--network container:NAME`: the namespace of that running container, its
    /// hostname and addresses; None for every other mode. Docker's conflicts (a hostname,
    /// ports, DNS settings of one's own) are refused.
    pub fn join_container(
        &self,
        layout: &crate::containers::Layout,
        md: &crate::metadata::Metadata,
        spec: &mut crate::containers::ContainerSpec,
    ) -> Result<Option<Joined>> {
        let Some(other) = spec.host.network_mode.strip_prefix("container:") else {
            return Ok(None);
        };
        let h = &spec.host;
        let conflict = if spec.hostname.is_some() {
            Some("hostname")
        } else if h.publish_all_ports || h.port_bindings.as_ref().is_some_and(|p| !p.is_empty()) {
            Some("port publishing")
        } else if h.dns.as_ref().is_some_and(|d| !d.is_empty()) {
            Some("dns")
        } else if h.extra_hosts.as_ref().is_some_and(|e| !e.is_empty()) {
            Some("add-host")
        } else if !spec.exposed_ports.is_empty() && h.publish_all_ports {
            Some("expose")
        } else {
            None
        };
        if let Some(what) = conflict {
            return Err(Error::InvalidInput(format!(
                "conflicting options: {what} and the network mode"
            )));
        }
        // Not a 404: the docker CLI takes a 404 from create for a missing image.
        let target = md
            .find(other)
            .map_err(|_| Error::InvalidInput(format!("No such container: {other}")))?;
        let state = crate::containers::state(layout, &target.id);
        if state.status != "running" || state.pid <= 0 {
            return Err(Error::Conflict(format!(
                "cannot join network namespace of a non running container: container {other} is {}",
                state.status
            )));
        }
        spec.hostname = Some(
            target
                .spec
                .hostname
                .clone()
                .unwrap_or_else(|| target.id[..12].to_string()),
        );
        let own = self.namespace_path(&target.id);
        let namespace = if target.spec.host.network_mode == "host" {
            Namespace::Host
        } else if own.exists() {
            Namespace::Path(own)
        } else {
            Namespace::Path(PathBuf::from(format!("/proc/{}/ns/net", state.pid)))
        };
        let endpoints = self.endpoints_of(&target.id)?;
        let addresses = endpoints
            .iter()
            .flat_map(|(_, ep)| [ep.ipv4, ep.ipv6])
            .flatten()
            .collect();
        // The name servers are the other container's: its first network's DNS server.
        let nameservers = endpoints
            .first()
            .map(|(net, _)| self.dns.addresses(&net.id))
            .unwrap_or_default();
        Ok(Some(Joined {
            namespace,
            addresses,
            nameservers,
        }))
    }

    /// Gives the container an endpoint on `net` and wires it into `ns`. Only the record
    /// is made under the lock: the netlink work of concurrent starts runs side by side.
    fn attach(
        &self,
        net: &Network,
        id: &str,
        name: &str,
        request: &EndpointRequest,
        plug: Plug<'_>,
    ) -> Result<Endpoint> {
        let wanted = Endpoint {
            id: random_hex(32),
            container: id.to_string(),
            name: name.to_string(),
            aliases: request.aliases.clone(),
            static_ipv4: request.ipv4,
            static_ipv6: request.ipv6,
            ..Endpoint::default()
        };
        let mac = request.mac.clone();
        let guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let ep = self
            .store
            .update(&net.id, |n| {
                let mut ep = n.attach(wanted)?;
                ep.mac = match &mac {
                    Some(m) => {
                        polis_network::link::parse_mac(m)?;
                        m.to_lowercase()
                    }
                    None => mac_for(ep.ipv4, ep.id.as_bytes()),
                };
                n.endpoints.insert(id.to_string(), ep.clone());
                Ok(ep)
            })
            .map_err(Error::Network)?;
        let current = self.store.find(&net.id).map_err(Error::Network);
        drop(guard);
        let connected = current.and_then(|current| {
            bridge::connect(&current, &ep, plug.ns, plug.ifname, plug.default_route)
                .map_err(Error::Network)
        });
        if let Err(e) = connected {
            self.detach(&net.id, id);
            return Err(e);
        }
        Ok(ep)
    }

    /// Drops container `id`'s endpoint record on network `net` (undoing an attach).
    fn detach(&self, net: &str, id: &str) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.store.update(net, |n| Ok(n.detach(id)));
    }

    /// `docker network connect`: puts a container that has a namespace of its own (made
    /// by a bridge network) on one more network, as its next `ethN`.
    pub fn connect(
        &self,
        id: &str,
        name: &str,
        network: &str,
        request: &EndpointRequest,
    ) -> Result<Endpoint> {
        let net = self.store.find(network).map_err(Error::Network)?;
        if PREDEFINED.contains(&net.name.as_str()) && net.name != DEFAULT_NETWORK {
            return Err(Error::Forbidden(format!(
                "container cannot be disconnected from host network or connected to {} network",
                net.name
            )));
        }
        let ns = self.namespace_path(id);
        if !ns.exists() {
            return Err(Error::Forbidden(format!(
                "container {name} has no network namespace of its own to connect \
                 (its network mode is host, none or another container's)"
            )));
        }
        if net.endpoints.contains_key(id) {
            return Err(Error::Forbidden(format!(
                "endpoint with name {name} already exists in network {}",
                net.name
            )));
        }
        let current = self.endpoints_locked(id)?.len();
        let ifname = format!("eth{current}");
        let plug = Plug {
            ns: &ns,
            ifname: &ifname,
            default_route: current == 0,
        };
        let ep = self.attach(&net, id, name, request, plug)?;
        self.sync_firewall()?;
        Ok(ep)
    }

    /// `docker network disconnect [-f]`: takes the container off one network (forced:
    /// nothing to do is no error).
    pub fn disconnect(&self, id: &str, name: &str, network: &str, force: bool) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let net = self.store.find(network).map_err(Error::Network)?;
        let Some(ep) = net.endpoints.get(id) else {
            if force {
                return Ok(());
            }
            return Err(Error::Forbidden(format!(
                "container {name} is not connected to network {}",
                net.name
            )));
        };
        let unplugged = bridge::disconnect(ep).map_err(Error::Network);
        self.store
            .update(&net.id, |n| Ok(n.detach(id)))
            .map_err(Error::Network)?;
        self.sync_firewall()?;
        unplugged
    }

    /// Takes container `id` off every network and deletes its namespace. Every step
    /// runs; the first error is returned.
    pub fn leave(&self, id: &str) -> Result<()> {
        lock(&self.running).remove(id);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut first = None;
        let mut had_endpoints = false;
        let mut unplugged = Vec::new();
        for net in self.store.list().map_err(Error::Network)? {
            let Some(ep) = net.endpoints.get(id) else {
                continue;
            };
            had_endpoints = true;
            unplugged.push(ep.clone());
            if let Err(e) = self.store.update(&net.id, |n| Ok(n.detach(id))) {
                first.get_or_insert(Error::Network(e));
            }
        }
        // Deleting a veth waits for the kernel (some 20 ms): done after `rm` returns.
        // With the namespace gone the kernel drops the pair anyway; this is for a
        // namespace still held by another process.
        if !unplugged.is_empty() {
            std::thread::spawn(move || {
                for ep in unplugged {
                    if let Err(e) = bridge::disconnect(&ep) {
                        tracing::warn!(error = %e, endpoint = %ep.id, "veth not deleted");
                    }
                }
            });
        }
        if let Err(e) = netns::remove(&self.namespace_path(id)) {
            first.get_or_insert(Error::Network(e));
        }
        if had_endpoints {
            if let Err(e) = self.sync_firewall() {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Container `id` starts: the ports its `spec` asks for are published on its first
    /// network (free host ports chosen now, as Docker does at start) and its names are
    /// answered. A taken host port fails the start with nothing published.
    pub fn activate(&self, id: &str, spec: &crate::containers::ContainerSpec) -> Result<()> {
        let requests = port_requests(spec)?;
        if !requests.is_empty() {
            let mode = match spec.host.network_mode.as_str() {
                "" | "default" => DEFAULT_NETWORK,
                m => m,
            };
            let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.publish_locked(id, mode, &requests)?;
        }
        lock(&self.running).insert(id.to_string());
        Ok(())
    }

    fn publish_locked(&self, id: &str, network: &str, requests: &[PortRequest]) -> Result<()> {
        let all = self.store.list().map_err(Error::Network)?;
        let net = all
            .iter()
            .find(|n| n.id == network || n.name == network)
            .and_then(|n| Some((n, n.endpoints.get(id)?)));
        let Some((net, ep)) = net else {
            return Err(Error::InvalidInput(format!(
                "cannot publish ports: the container has no endpoint on network {network}"
            )));
        };
        if !ep.ports.is_empty() {
            return Ok(());
        }
        let taken: Vec<_> = all
            .iter()
            .flat_map(|n| n.endpoints.iter())
            .filter(|(container, _)| container.as_str() != id)
            .flat_map(|(_, e)| e.ports.iter().cloned())
            .collect();
        let published = ports::allocate(requests, &taken).map_err(|e| match e {
            polis_network::Error::Conflict(m) => {
                Error::Network(polis_network::Error::Conflict(format!(
                    "driver failed programming external connectivity on endpoint {} ({}): {m}",
                    ep.name, ep.id
                )))
            }
            e => Error::Network(e),
        })?;
        self.set_ports(&net.id, id, published)?;
        if let Err(e) = self.sync_firewall() {
            let _ = self.set_ports(&net.id, id, Vec::new());
            let _ = self.sync_firewall();
            return Err(e);
        }
        Ok(())
    }

    fn set_ports(
        &self,
        network: &str,
        id: &str,
        ports: Vec<polis_network::firewall::PortMapping>,
    ) -> Result<()> {
        self.store
            .update(network, |n| {
                if let Some(ep) = n.endpoints.get_mut(id) {
                    ep.ports = ports;
                }
                Ok(())
            })
            .map_err(Error::Network)
    }

    /// Container `id` stopped (or is found stopped): its ports are unpublished and its
    /// names no longer answered. Nothing to do is no error.
    pub fn deactivate(&self, id: &str) -> Result<()> {
        lock(&self.running).remove(id);
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        for (net, ep) in self.endpoints_locked(id)? {
            if !ep.ports.is_empty() {
                self.set_ports(&net.id, id, Vec::new())?;
                changed = true;
            }
        }
        if changed {
            self.sync_firewall()?;
        }
        Ok(())
    }

    /// Container `id` was found running at daemon start: its published ports are in
    /// the records already.
    pub fn mark_running(&self, id: &str) {
        lock(&self.running).insert(id.to_string());
    }

    /// Whether container `id` runs, as far as its networking knows.
    pub fn is_running(&self, id: &str) -> bool {
        lock(&self.running).contains(id)
    }

    /// A renamed container answers to its new name on its networks.
    pub fn rename(&self, id: &str, name: &str) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        for (net, _) in self.endpoints_locked(id)? {
            self.store
                .update(&net.id, |n| {
                    if let Some(ep) = n.endpoints.get_mut(id) {
                        ep.name = name.to_string();
                    }
                    Ok(())
                })
                .map_err(Error::Network)?;
        }
        Ok(())
    }

    /// Makes container `id`'s namespace again if its endpoints are recorded but the file
    /// is gone (the run root is lost at reboot): same interfaces, same addresses.
    pub fn restore(&self, id: &str) -> Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let ns = self.namespace_path(id);
        let eps = self.endpoints_locked(id)?;
        if ns.exists() || eps.is_empty() {
            return Ok(());
        }
        netns::create(&ns).map_err(Error::Network)?;
        let made = eps.iter().enumerate().try_for_each(|(i, (net, ep))| {
            let _ = bridge::disconnect(ep);
            bridge::ensure(net)?;
            bridge::connect(net, ep, &ns, &format!("eth{i}"), i == 0)
        });
        if let Err(e) = made {
            for (_, ep) in &eps {
                let _ = bridge::disconnect(ep);
            }
            let _ = netns::remove(&ns);
            return Err(Error::Network(e));
        }
        Ok(())
    }

    /// The embedded DNS server a container on networks of `mode` (its first) and others
    /// asks: its first network's if it has one, else another of its networks'.
    pub fn nameservers_of(&self, id: &str, mode: &str) -> Result<Vec<IpAddr>> {
        let first = match mode {
            "" | "default" => DEFAULT_NETWORK,
            m => m,
        };
        let mut eps = self.endpoints_of(id)?;
        eps.sort_by_key(|(n, _)| n.name != first && n.id != first);
        Ok(eps
            .iter()
            .map(|(n, _)| self.dns.addresses(&n.id))
            .find(|a| !a.is_empty())
            .unwrap_or_default())
    }

    /// The endpoints of container `id`, with their network.
    pub fn endpoints_of(&self, id: &str) -> Result<Vec<(Network, Endpoint)>> {
        self.endpoints_locked(id)
    }

    fn endpoints_locked(&self, id: &str) -> Result<Vec<(Network, Endpoint)>> {
        Ok(self
            .store
            .list()
            .map_err(Error::Network)?
            .into_iter()
            .filter_map(|n| {
                let ep = n.endpoints.get(id)?.clone();
                Some((n, ep))
            })
            .collect())
    }

    /// Containers whose endpoints or namespace files remain although they are gone
    /// (a crash between create and rm): `known` says which containers exist.
    pub fn reconcile(&self, known: &dyn Fn(&str) -> bool) -> Vec<String> {
        let mut orphans: Vec<String> = self
            .store
            .list()
            .unwrap_or_default()
            .iter()
            .flat_map(|n| n.endpoints.keys().cloned().collect::<Vec<_>>())
            .filter(|c| !known(c))
            .collect();
        if let Ok(rd) = std::fs::read_dir(&self.netns_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !known(&name) && !orphans.contains(&name) {
                    orphans.push(name);
                }
            }
        }
        for id in &orphans {
            let _ = self.leave(id);
        }
        orphans
    }
}

/// Where an endpoint's veth ends up: the namespace, the interface name there, and
/// whether the network's gateways become its default routes.
struct Plug<'a> {
    ns: &'a Path,
    ifname: &'a str,
    default_route: bool,
}

/// What container `spec` asks of the network its mode names (`--ip`, `--ip6`, aliases,
/// `--mac-address`), from its `NetworkingConfig` entry for that network.
pub fn endpoint_request(spec: &crate::containers::ContainerSpec) -> Result<EndpointRequest> {
    let mode = match spec.host.network_mode.as_str() {
        "" | "default" => DEFAULT_NETWORK,
        m => m,
    };
    let ports = port_requests(spec)?;
    let Some(ep) = spec.endpoints.get(mode) else {
        return Ok(EndpointRequest {
            ports,
            ..EndpointRequest::default()
        });
    };
    let ipam = ep.ipam_config.clone().unwrap_or_default();
    Ok(EndpointRequest {
        aliases: ep.aliases.clone().unwrap_or_default(),
        ipv4: parse(Some(&ipam.ipv4_address), "IPv4 address")?,
        ipv6: parse(Some(&ipam.ipv6_address), "IPv6 address")?,
        mac: Some(ep.mac_address.clone()).filter(|m| !m.is_empty()),
        ports,
    })
}

/// The ports container `spec` publishes: its `-p` bindings, and with `-P` every exposed
/// port not bound already, each to a free host port.
pub fn port_requests(spec: &crate::containers::ContainerSpec) -> Result<Vec<PortRequest>> {
    let h = &spec.host;
    let mut out = Vec::new();
    let bindings = h.port_bindings.clone().unwrap_or_default();
    for (key, list) in &bindings {
        let (container_port, protocol) =
            ports::parse_container_port(key).map_err(Error::Network)?;
        let list = list.clone().unwrap_or_default();
        let list = if list.is_empty() {
            vec![Default::default()]
        } else {
            list
        };
        for b in list {
            let (host_ip, host_ports) =
                ports::parse_host(&b.host_ip, &b.host_port).map_err(Error::Network)?;
            out.push(PortRequest {
                protocol,
                host_ip,
                host_ports,
                container_port,
            });
        }
    }
    if h.publish_all_ports {
        for key in spec
            .exposed_ports
            .keys()
            .filter(|k| !bindings.contains_key(*k))
        {
            let (container_port, protocol) =
                ports::parse_container_port(key).map_err(Error::Network)?;
            out.push(PortRequest {
                protocol,
                host_ip: None,
                host_ports: None,
                container_port,
            });
        }
    }
    if !out.is_empty() && matches!(h.network_mode.as_str(), "none") {
        return Err(Error::InvalidInput(
            "conflicting options: port publishing and the container type network mode".into(),
        ));
    }
    Ok(out)
}

/// Options of the bridge driver that are applied.
const KNOWN_OPTIONS: [&str; 4] = [
    "com.docker.network.bridge.name",
    polis_network::firewall::ICC_OPTION,
    polis_network::firewall::MASQUERADE_OPTION,
    polis_network::bridge::MTU_OPTION,
];

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn private() -> Joined {
    Joined {
        namespace: Namespace::Private,
        addresses: Vec::new(),
        nameservers: Vec::new(),
    }
}

/// Whether `net` has an embedded DNS server: the user's bridge networks do, the default
/// bridge does not (as Docker's).
fn has_dns(net: &Network) -> bool {
    net.driver == "bridge" && net.bridge.is_some() && net.name != DEFAULT_NETWORK
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn parse<T: std::str::FromStr>(s: Option<&str>, what: &str) -> Result<Option<T>> {
    match s.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| Error::InvalidInput(format!("invalid {what}: {s:?}"))),
    }
}
