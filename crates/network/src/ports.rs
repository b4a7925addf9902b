//! Host ports for `-p` and `-P`: Docker's port specs parsed, and host ports chosen so
//! that none is published twice or taken by another program on the host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

use crate::error::{Error, Result};
use crate::firewall::{PortMapping, Protocol};

/// One port to publish, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub protocol: Protocol,
    pub host_ip: Option<IpAddr>,
    /// The host ports to choose from; `None`: any free port.
    pub host_ports: Option<PortRange>,
    pub container_port: u16,
}

/// `80/tcp`, `53/udp`, `8080` (tcp): a container port as Docker's API keys them.
pub fn parse_container_port(key: &str) -> Result<(u16, Protocol)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let protocol = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => {
            return Err(Error::InvalidArgument(format!(
                "invalid proto {other:?} in port {key:?}: only tcp and udp are supported"
            )))
        }
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::InvalidArgument(format!("invalid port {key:?}")))?;
    Ok((port, protocol))
}

/// An inclusive range of host ports.
pub type PortRange = (u16, u16);

/// A binding's `HostIp` and `HostPort` (`""`, `8080` or `8000-8010`).
pub fn parse_host(host_ip: &str, host_port: &str) -> Result<(Option<IpAddr>, Option<PortRange>)> {
    let ip = match host_ip.trim_start_matches('[').trim_end_matches(']') {
        "" => None,
        s => Some(
            s.parse::<IpAddr>()
                .map_err(|_| Error::InvalidArgument(format!("invalid host IP {host_ip:?}")))?,
        ),
    };
    let bad = || Error::InvalidArgument(format!("invalid host port {host_port:?}"));
    let ports = match host_port {
        "" | "0" => None,
        s => {
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            let a: u16 = a.parse().map_err(|_| bad())?;
            let b: u16 = b.parse().map_err(|_| bad())?;
            if a == 0 || b < a {
                return Err(bad());
            }
            Some((a, b))
        }
    };
    Ok((ip, ports))
}

/// Whether two mappings would claim the same host port. No host IP claims both
/// families; a wildcard host IP (`0.0.0.0`, `::`) its own family only.
fn clash(a: &PortMapping, protocol: Protocol, ip: Option<IpAddr>, port: u16) -> bool {
    a.protocol == protocol
        && a.host_port == port
        && match (a.host_ip, ip) {
            (None, _) | (_, None) => true,
            (Some(x), Some(y)) => {
                x == y || (x.is_ipv4() == y.is_ipv4() && (x.is_unspecified() || y.is_unspecified()))
            }
        }
}

/// The host addresses a binding takes: both wildcards without a host IP (the DNAT is
/// made for IPv4 and IPv6), else the one asked only (as Docker binds what was asked).
fn host_addresses(ip: Option<IpAddr>) -> Vec<IpAddr> {
    match ip {
        Some(ip) => vec![ip],
        None => vec![
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ],
    }
}

/// True if no other program holds `port` on the addresses the binding takes.
fn free_on_host(protocol: Protocol, ip: Option<IpAddr>, port: u16) -> bool {
    host_addresses(ip)
        .into_iter()
        .all(|a| free_at(protocol, SocketAddr::new(a, port)))
}

/// True if a socket can be bound on `at` now. A host without IPv6 has nothing bound
/// on the IPv6 wildcard.
fn free_at(protocol: Protocol, at: SocketAddr) -> bool {
    match bind(protocol, at) {
        Ok(_) => true,
        Err(e) => {
            at.is_ipv6()
                && at.ip().is_unspecified()
                && matches!(
                    e.raw_os_error(),
                    Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                )
        }
    }
}

/// A socket bound on `at`, as a program serving there would bind it (a TCP one
/// listening). An IPv6 socket is IPv6-only: it meets the programs on IPv6 alone, so a
/// wildcard binding is checked on each family apart.
fn bind(protocol: Protocol, at: SocketAddr) -> std::io::Result<Socket> {
    let (typ, proto) = match protocol {
        Protocol::Tcp => (Type::STREAM, socket2::Protocol::TCP),
        Protocol::Udp => (Type::DGRAM, socket2::Protocol::UDP),
    };
    let socket = Socket::new(Domain::for_address(at), typ, Some(proto))?;
    if at.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if protocol == Protocol::Tcp {
        // As the standard library's listeners: a port left in TIME_WAIT is free.
        socket.set_reuse_address(true)?;
    }
    socket.bind(&at.into())?;
    if protocol == Protocol::Tcp {
        socket.listen(128)?;
    }
    Ok(socket)
}

/// A free host port for `protocol` on `ip` (both wildcards when None), as the kernel
/// picks ephemeral ones, that `in_use` does not reject.
fn ephemeral(protocol: Protocol, ip: Option<IpAddr>, in_use: impl Fn(u16) -> bool) -> Result<u16> {
    let first = ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let others: Vec<IpAddr> = host_addresses(ip)
        .into_iter()
        .filter(|a| *a != first)
        .collect();
    // The candidates turned down stay bound, so the kernel offers another each time.
    let mut turned_down = Vec::new();
    for _ in 0..64 {
        let socket = bind(protocol, SocketAddr::new(first, 0))
            .map_err(|e| Error::System(format!("choose a free host port: {e}")))?;
        let port = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .ok_or_else(|| Error::System("choose a free host port: no local address".into()))?;
        let free = !in_use(port)
            && others
                .iter()
                .all(|a| free_at(protocol, SocketAddr::new(*a, port)));
        if free {
            return Ok(port);
        }
        turned_down.push(socket);
    }
    Err(Error::Exhausted(
        "no free host port could be found".to_string(),
    ))
}

/// Host ports for `requests`, none clashing with `taken` (ports published already) or
/// with a port a program on the host holds. All or nothing.
pub fn allocate(requests: &[PortRequest], taken: &[PortMapping]) -> Result<Vec<PortMapping>> {
    let mut out: Vec<PortMapping> = Vec::new();
    for r in requests {
        let in_use = |port: u16, out: &[PortMapping]| {
            taken
                .iter()
                .chain(out)
                .any(|m| clash(m, r.protocol, r.host_ip, port))
        };
        let port = match r.host_ports {
            Some((a, b)) => (a..=b)
                .find(|p| !in_use(*p, &out) && free_on_host(r.protocol, r.host_ip, *p))
                .ok_or_else(|| {
                    let shown_ip = r.host_ip.map_or("0.0.0.0".to_string(), |ip| ip.to_string());
                    let shown_port = if a == b {
                        a.to_string()
                    } else {
                        format!("{a}-{b}")
                    };
                    Error::Conflict(format!(
                        "Bind for {shown_ip}:{shown_port} failed: port is already allocated"
                    ))
                })?,
            None => ephemeral(r.protocol, r.host_ip, |p| in_use(p, &out))?,
        };
        out.push(PortMapping {
            protocol: r.protocol,
            host_ip: r.host_ip,
            host_port: port,
            container_port: r.container_port,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn specs_parse_as_docker_writes_them() {
        assert_eq!(parse_container_port("80/tcp").unwrap(), (80, Protocol::Tcp));
        assert_eq!(parse_container_port("53/udp").unwrap(), (53, Protocol::Udp));
        assert_eq!(parse_container_port("8080").unwrap(), (8080, Protocol::Tcp));
        assert!(parse_container_port("80/sctp").is_err());
        assert!(parse_container_port("0/tcp").is_err());
        assert_eq!(parse_host("", "").unwrap(), (None, None));
        assert_eq!(
            parse_host("127.0.0.1", "8000-8010").unwrap(),
            (Some("127.0.0.1".parse().unwrap()), Some((8000, 8010)))
        );
        assert_eq!(
            parse_host("[::1]", "80").unwrap().0,
            Some("::1".parse().unwrap())
        );
        assert!(parse_host("", "9-8").is_err());
        assert!(parse_host("nope", "80").is_err());
    }

    /// Runs `f` in a network namespace of its own (with lo up), so the ports the test
    /// binds are never the host's.
    fn in_private_namespace(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let nl = crate::link::Netlink::connect().unwrap();
            nl.set_up(nl.index("lo").unwrap().unwrap()).unwrap();
            f();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn ports_are_never_given_twice() {
        in_private_namespace(never_twice);
    }

    fn never_twice() {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let held = holder.local_addr().unwrap().port();
        let req = |ip: Option<&str>, ports: Option<(u16, u16)>| PortRequest {
            protocol: Protocol::Tcp,
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_ports: ports,
            container_port: 80,
        };
        // Held by another program.
        let e = allocate(&[req(Some("127.0.0.1"), Some((held, held)))], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("port is already allocated"), "{e}");
        // Published already (on all addresses) by another container.
        let taken = [PortMapping {
            protocol: Protocol::Tcp,
            host_ip: None,
            host_port: 18080,
            container_port: 80,
        }];
        assert!(allocate(&[req(Some("127.0.0.1"), Some((18080, 18080)))], &taken).is_err());
        // UDP on the same number is another port.
        let udp = PortRequest {
            protocol: Protocol::Udp,
            ..req(None, Some((18080, 18080)))
        };
        assert_eq!(allocate(&[udp], &taken).unwrap()[0].host_port, 18080);
        // A range skips what is taken; any port is an ephemeral one.
        let got = allocate(&[req(None, Some((18080, 18081)))], &taken).unwrap();
        assert_eq!(got[0].host_port, 18081);
        let any = allocate(&[req(None, None)], &taken).unwrap();
        assert_ne!(any[0].host_port, 0);
    }

    #[test]
    fn wildcards_claim_their_family_only() {
        let published = |ip: Option<&str>| PortMapping {
            protocol: Protocol::Tcp,
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: 8080,
            container_port: 80,
        };
        let ip = |s: &str| Some(s.parse().unwrap());
        let clashes =
            |a: Option<&str>, b: Option<IpAddr>| clash(&published(a), Protocol::Tcp, b, 8080);
        assert!(clashes(None, ip("::1")));
        assert!(clashes(Some("0.0.0.0"), None));
        assert!(clashes(Some("0.0.0.0"), ip("127.0.0.1")));
        assert!(clashes(Some("::"), ip("::1")));
        assert!(clashes(Some("127.0.0.1"), ip("127.0.0.1")));
        assert!(!clashes(Some("0.0.0.0"), ip("::")));
        assert!(!clashes(Some("::"), ip("127.0.0.1")));
        assert!(!clashes(Some("127.0.0.1"), ip("127.0.0.2")));
        assert!(!clash(&published(None), Protocol::Udp, None, 8080));
        assert!(!clash(&published(None), Protocol::Tcp, None, 8081));
    }

    /// A socket another program would hold on `[::]:port` with IPV6_V6ONLY.
    fn ipv6_only_holder(protocol: Protocol, port: u16) -> (Socket, u16) {
        let typ = match protocol {
            Protocol::Tcp => Type::STREAM,
            Protocol::Udp => Type::DGRAM,
        };
        let s = Socket::new(Domain::IPV6, typ, None).unwrap();
        s.set_only_v6(true).unwrap();
        let at: SocketAddr = (Ipv6Addr::UNSPECIFIED, port).into();
        s.bind(&at.into()).unwrap();
        if protocol == Protocol::Tcp {
            s.listen(8).unwrap();
        }
        let port = s.local_addr().unwrap().as_socket().unwrap().port();
        (s, port)
    }

    #[test]
    fn a_port_held_on_ipv6_only_is_taken_without_a_host_ip() {
        in_private_namespace(ipv6_only_holders);
    }

    fn ipv6_only_holders() {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let (_holder, held) = ipv6_only_holder(protocol, 0);
            let req = |ip: Option<&str>| PortRequest {
                protocol,
                host_ip: ip.map(|i| i.parse().unwrap()),
                host_ports: Some((held, held)),
                container_port: 80,
            };
            // Without a host IP the port is published on IPv4 and IPv6: refused.
            let e = allocate(&[req(None)], &[]).unwrap_err().to_string();
            assert_eq!(
                e,
                format!("Bind for 0.0.0.0:{held} failed: port is already allocated"),
                "{protocol:?}"
            );
            assert!(allocate(&[req(Some("::"))], &[]).is_err(), "{protocol:?}");
            // 0.0.0.0 asked explicitly is IPv4 only, where the port is free.
            let got = allocate(&[req(Some("0.0.0.0"))], &[]).unwrap();
            assert_eq!(got[0].host_port, held, "{protocol:?}");
        }
    }

    #[test]
    fn any_port_skips_those_held_on_ipv6_only() {
        in_private_namespace(any_port_skips);
    }

    fn any_port_skips() {
        // Two ephemeral ports in this namespace; a program holds one on IPv6 only.
        std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "40000 40001").unwrap();
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let (_holder, _) = ipv6_only_holder(protocol, 40001);
            for _ in 0..4 {
                let any = PortRequest {
                    protocol,
                    host_ip: None,
                    host_ports: None,
                    container_port: 80,
                };
                let got = allocate(&[any], &[]).unwrap();
                assert_eq!(got[0].host_port, 40000, "{protocol:?}");
            }
        }
    }
}
