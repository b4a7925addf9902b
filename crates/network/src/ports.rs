//! Host ports for `-p` and `-P`: Docker's port specs parsed, and host ports chosen so
//! that none is published twice or taken by another program on the host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

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

/// Whether two mappings would claim the same host port.
fn clash(a: &PortMapping, protocol: Protocol, ip: Option<IpAddr>, port: u16) -> bool {
    a.protocol == protocol
        && a.host_port == port
        && match (a.host_ip, ip) {
            (None, _) | (_, None) => true,
            (Some(x), Some(y)) => x == y || x.is_unspecified() || y.is_unspecified(),
        }
}

/// True if a socket can be bound there now: no other program holds the port.
fn free_on_host(protocol: Protocol, ip: Option<IpAddr>, port: u16) -> bool {
    let addr = SocketAddr::new(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port);
    match protocol {
        Protocol::Tcp => TcpListener::bind(addr).is_ok(),
        Protocol::Udp => UdpSocket::bind(addr).is_ok(),
    }
}

/// A free ephemeral port, as the kernel picks them.
fn ephemeral(protocol: Protocol, ip: Option<IpAddr>) -> Result<u16> {
    let addr = SocketAddr::new(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
    let port = match protocol {
        Protocol::Tcp => TcpListener::bind(addr).and_then(|l| l.local_addr()),
        Protocol::Udp => UdpSocket::bind(addr).and_then(|s| s.local_addr()),
    };
    port.map(|a| a.port())
        .map_err(|e| Error::System(format!("choose a free host port: {e}")))
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
            None => {
                let mut chosen = None;
                for _ in 0..64 {
                    let p = ephemeral(r.protocol, r.host_ip)?;
                    if !in_use(p, &out) {
                        chosen = Some(p);
                        break;
                    }
                }
                chosen.ok_or_else(|| {
                    Error::Exhausted("no free host port could be found".to_string())
                })?
            }
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
}
