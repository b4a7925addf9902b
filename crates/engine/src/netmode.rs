//! A container's network namespace and its /etc/hosts, /etc/resolv.conf and /etc/hostname,
//! written for every container and bind-mounted as Docker does. With `--network host` the
//! container has no namespace of its own and gets copies of the host's files; otherwise it
//! runs in the namespace `networking::join` prepared (a private one with only lo for
//! `none`), with a hosts file naming its own addresses.

use std::net::IpAddr;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Mount, Spec};

use crate::containers::{Container, ContainerSpec, Layout};
use crate::error::{Error, Result};
use crate::networking::{Joined, Namespace, Networks};

/// Whether the container shares the host's network namespace.
pub fn is_host(spec: &ContainerSpec) -> bool {
    spec.host.network_mode == "host"
}

/// At create: a host-network container without a hostname takes the host's (Docker);
/// DNS servers and extra hosts are checked.
pub fn prepare(spec: &mut ContainerSpec) -> Result<()> {
    if is_host(spec) && spec.hostname.is_none() {
        let name = nix::unistd::gethostname()
            .map_err(|e| Error::Container(format!("gethostname: {e}")))?;
        spec.hostname = Some(name.to_string_lossy().into_owned());
    }
    for d in spec.host.dns.iter().flatten() {
        d.parse::<IpAddr>()
            .map_err(|_| Error::InvalidInput(format!("{d} is not an ip address")))?;
    }
    for h in spec.host.extra_hosts.iter().flatten() {
        parse_extra_host(h)?;
    }
    Ok(())
}

/// `name:ip` (or `name=ip`); `host-gateway` is kept as is.
fn parse_extra_host(entry: &str) -> Result<(String, String)> {
    let bad = || Error::InvalidInput(format!("invalid IP address in add-host: {entry:?}"));
    let (name, ip) = entry
        .split_once('=')
        .or_else(|| entry.split_once(':'))
        .ok_or_else(bad)?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || (ip != "host-gateway" && ip.parse::<IpAddr>().is_err()) {
        return Err(bad());
    }
    Ok((name.to_string(), ip.to_string()))
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    match std::fs::read(from) {
        Ok(data) => std::fs::write(to, data).map_err(|e| Error::io("write", to, e)),
        // A host without the file gives the container an empty one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(to, b"").map_err(|e| Error::io("write", to, e))
        }
        Err(e) => Err(Error::io("read", from, e)),
    }
}

/// The spec's network namespace for what `networking::join` prepared, and the mounts of
/// the container's hosts, resolv.conf and hostname files. `host_gateway` is what
/// `--add-host NAME:host-gateway` resolves to.
pub fn apply(
    layout: &Layout,
    id: &str,
    spec: &ContainerSpec,
    joined: &Joined,
    host_gateway: Option<IpAddr>,
    oci: &mut Spec,
) -> Result<Vec<Mount>> {
    if let Some(linux) = oci.linux_mut() {
        let mut namespaces: Vec<LinuxNamespace> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Network)
            .collect();
        match &joined.namespace {
            Namespace::Host => {}
            Namespace::Private => namespaces.push(network_namespace(None)),
            Namespace::Path(p) => namespaces.push(network_namespace(Some(p))),
        }
        linux.set_namespaces(Some(namespaces));
    }
    let dir = layout.container_dir(id);
    // As the runtime's: the container's own, else the short id.
    let hostname = spec
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12.min(id.len())].to_string());
    write(&dir.join("hostname"), &format!("{hostname}\n"))?;
    let extra = extra_hosts(spec, host_gateway)?;
    if joined.namespace == Namespace::Host {
        copy_file(Path::new("/etc/hosts"), &dir.join("hosts"))?;
        append(&dir.join("hosts"), &extra)?;
    } else {
        write(
            &dir.join("hosts"),
            &hosts_file(&hostname, &joined.addresses, &extra),
        )?;
    }
    write(&dir.join("resolv.conf"), &resolv_conf(spec, joined)?)?;
    let mode = if spec.host.readonly_rootfs {
        "ro"
    } else {
        "rw"
    };
    Ok(["resolv.conf", "hostname", "hosts"]
        .iter()
        .map(|name| {
            let mut m = Mount::default();
            m.set_destination(Path::new("/etc").join(name));
            m.set_typ(Some("bind".into()));
            m.set_source(Some(dir.join(name)));
            m.set_options(Some(vec!["rbind".into(), "rprivate".into(), mode.into()]));
            m
        })
        .collect())
}

/// After `network connect` or `disconnect` of container `c`: its /etc/hosts names the
/// addresses it has now (other lines, the user's own included, are kept) and its
/// resolv.conf points at the embedded DNS of one of its networks, as Docker rebuilds it.
/// The container sees both at once: the files are rewritten in place, under its mounts.
pub fn refresh(layout: &Layout, networks: &Networks, c: &Container) -> Result<()> {
    let dir = layout.container_dir(&c.id);
    let addresses: Vec<IpAddr> = networks
        .endpoints_of(&c.id)?
        .iter()
        .flat_map(|(_, ep)| [ep.ipv4, ep.ipv6])
        .flatten()
        .collect();
    let joined = Joined {
        namespace: Namespace::Path(networks.namespace_path(&c.id)),
        nameservers: networks.nameservers_of(&c.id, &c.spec.host.network_mode)?,
        addresses,
    };
    let hostname = c
        .spec
        .hostname
        .clone()
        .unwrap_or_else(|| c.id[..12.min(c.id.len())].to_string());
    let hosts = dir.join("hosts");
    let text = std::fs::read_to_string(&hosts).map_err(|e| Error::io("read", &hosts, e))?;
    write(&hosts, &own_entries(&text, &hostname, &joined.addresses))?;
    write(&dir.join("resolv.conf"), &resolv_conf(&c.spec, &joined)?)
}

/// `hosts` with the lines naming only `hostname` made those of `addresses`: lines of
/// addresses it no longer has dropped, new ones appended.
fn own_entries(hosts: &str, hostname: &str, addresses: &[IpAddr]) -> String {
    let own = |line: &str| -> Option<IpAddr> {
        let mut words = line.split_whitespace();
        let ip = words.next()?.parse().ok()?;
        (words.next() == Some(hostname) && words.next().is_none()).then_some(ip)
    };
    let mut out = String::new();
    let mut listed = Vec::new();
    for line in hosts.lines() {
        match own(line) {
            Some(ip) if !addresses.contains(&ip) => continue,
            Some(ip) => listed.push(ip),
            None => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    for ip in addresses.iter().filter(|ip| !listed.contains(ip)) {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

fn network_namespace(path: Option<&Path>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(LinuxNamespaceType::Network);
    ns.set_path(path.map(Path::to_path_buf));
    ns
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io("write", path, e))
}

fn append(path: &Path, text: &str) -> Result<()> {
    let mut all = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    all.push_str(text);
    write(path, &all)
}

/// `--add-host` lines, `host-gateway` made the default bridge's gateway.
fn extra_hosts(spec: &ContainerSpec, host_gateway: Option<IpAddr>) -> Result<String> {
    let mut out = String::new();
    for h in spec.host.extra_hosts.iter().flatten() {
        let (name, ip) = parse_extra_host(h)?;
        let ip = match ip.as_str() {
            "host-gateway" => host_gateway
                .ok_or_else(|| {
                    Error::InvalidInput(
                        "unable to derive the IP value for host-gateway: no default bridge".into(),
                    )
                })?
                .to_string(),
            _ => ip,
        };
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    Ok(out)
}

/// Docker's /etc/hosts for a container with a namespace of its own.
fn hosts_file(hostname: &str, addresses: &[IpAddr], extra: &str) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    out.push_str(extra);
    for ip in addresses {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

/// The container's resolv.conf: the host's, without loopback name servers when the
/// container has its own namespace (they cannot be reached from it; Google's are used if
/// none is left, as Docker does); on a network with an embedded DNS server, that server
/// in place of the host's name servers; `--dns`, `--dns-search` and `--dns-option`
/// replacing their lines.
fn resolv_conf(spec: &ContainerSpec, joined: &Joined) -> Result<String> {
    let host = match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("read", "/etc/resolv.conf", e)),
    };
    let own_namespace = joined.namespace != Namespace::Host;
    let mut servers = Vec::new();
    let mut search = Vec::new();
    let mut options = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(s) = words.next() {
                    let loopback = s.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                    if !(own_namespace && loopback) {
                        servers.push(s.to_string());
                    }
                }
            }
            Some("search" | "domain") => search = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    if !joined.nameservers.is_empty() {
        // The network's embedded DNS, which forwards what is not its own to the host's.
        servers = joined.nameservers.iter().map(IpAddr::to_string).collect();
    } else if servers.is_empty() && own_namespace {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    let h = &spec.host;
    if let Some(d) = h.dns.as_ref().filter(|d| !d.is_empty()) {
        servers = d.clone();
    }
    if let Some(s) = h.dns_search.as_ref().filter(|s| !s.is_empty()) {
        search = s.iter().filter(|s| s.as_str() != ".").cloned().collect();
    }
    if let Some(o) = h.dns_options.as_ref().filter(|o| !o.is_empty()) {
        options = o.clone();
    }
    let mut out = String::new();
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_hosts_are_checked() {
        assert_eq!(
            parse_extra_host("db:10.0.0.5").unwrap(),
            ("db".to_string(), "10.0.0.5".to_string())
        );
        assert_eq!(parse_extra_host("v6:[fd00::1]").unwrap().1, "fd00::1");
        assert_eq!(
            parse_extra_host("gw=host-gateway").unwrap().1,
            "host-gateway"
        );
        assert!(parse_extra_host("nohost").is_err());
        assert!(parse_extra_host("x:not-an-ip").is_err());
    }

    #[test]
    fn own_entries_follow_the_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let before = "127.0.0.1\tlocalhost\n10.0.0.5\tdb\n10.1.0.2\tweb\n# mine\n";
        let after = own_entries(before, "web", &[ip("10.1.0.2"), ip("10.2.0.3")]);
        assert_eq!(after, format!("{before}10.2.0.3\tweb\n"));
        let back = own_entries(&after, "web", &[ip("10.2.0.3")]);
        assert_eq!(
            back,
            "127.0.0.1\tlocalhost\n10.0.0.5\tdb\n# mine\n10.2.0.3\tweb\n"
        );
        // An entry naming the host among others is the user's: kept.
        let shared = own_entries("10.9.9.9\tweb alias\n", "web", &[]);
        assert_eq!(shared, "10.9.9.9\tweb alias\n");
    }

    #[test]
    fn hosts_file_names_the_container() {
        let h = hosts_file("web", &["10.1.0.2".parse().unwrap()], "10.0.0.5\tdb\n");
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"), "{h}");
        assert!(h.contains("10.0.0.5\tdb\n10.1.0.2\tweb\n"), "{h}");
    }
}
