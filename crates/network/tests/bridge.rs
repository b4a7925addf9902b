//! The bridge driver against the real kernel, inside a network namespace this test makes
//! (no host interface is touched): a bridge network, two "containers" (namespaces kept as
//! files) connected to it, traffic between them over IPv4 and IPv6, and nothing left after
//! teardown.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use nix::sched::{unshare, CloneFlags};
use polis_network::link::Netlink;
use polis_network::record::mac_for;
use polis_network::{bridge, netns, AddressPool, Allocations, Endpoint, Family, Network};

fn family(subnet: &str) -> Family {
    Family {
        pool: AddressPool::new(subnet.parse().unwrap(), None, None).unwrap(),
        allocations: Allocations::default(),
        auto: false,
    }
}

/// Listens on `ip` inside `ns` and answers one connection with "pong".
fn serve_once(ns: &Path, ip: IpAddr) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_path_buf();
    let handle = std::thread::spawn(move || {
        netns::run_in(&ns, || {
            let l = TcpListener::bind(SocketAddr::new(ip, 7000)).unwrap();
            tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"pong").unwrap();
            Ok(())
        })
        .unwrap();
    });
    rx.recv().unwrap();
    handle
}

fn call(from: &Path, to: IpAddr) -> String {
    netns::run_in(from, || {
        let mut s = TcpStream::connect_timeout(&SocketAddr::new(to, 7000), Duration::from_secs(5))
            .map_err(|e| polis_network::Error::System(format!("connect {to}: {e}")))?;
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        Ok(out)
    })
    .unwrap()
}

#[test]
fn containers_on_a_bridge_reach_each_other() {
    std::thread::spawn(|| {
        // This thread's own namespace plays the host.
        unshare(CloneFlags::CLONE_NEWNET).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut net = Network {
            id: "0123456789ab".repeat(5) + "cdef",
            name: "front".into(),
            driver: "bridge".into(),
            created: String::new(),
            bridge: Some("br-test0".into()),
            internal: false,
            attachable: false,
            enable_ipv6: true,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            ipv4: Some(family("10.77.0.0/24")),
            ipv6: Some(family("fd77::/64")),
            endpoints: BTreeMap::new(),
        };
        bridge::ensure(&net).unwrap();
        // Idempotent: a second call (a daemon restart) changes nothing.
        bridge::ensure(&net).unwrap();

        let mut eps = Vec::new();
        for name in ["a", "b"] {
            let ns = dir.path().join(name);
            netns::create(&ns).unwrap();
            let mut ep = net
                .attach(Endpoint {
                    id: format!("{name}{}", "5".repeat(63)),
                    container: name.into(),
                    name: name.into(),
                    ..Endpoint::default()
                })
                .unwrap();
            ep.mac = mac_for(ep.ipv4, ep.id.as_bytes());
            bridge::connect(&net, &ep, &ns, "eth0", true).unwrap();
            eps.push((ns, ep));
        }
        let (a, b) = (&eps[0], &eps[1]);
        assert_eq!(a.1.ipv4, Some("10.77.0.2".parse().unwrap()));

        let inside = netns::run_in(&a.0, || {
            let nl = Netlink::connect()?;
            let idx = nl.index("eth0")?.expect("eth0 exists");
            nl.addresses(idx)
        })
        .unwrap();
        assert!(
            inside.contains(&"10.77.0.2/24".parse().unwrap()),
            "{inside:?}"
        );
        assert!(
            inside.contains(&"fd77::2/64".parse().unwrap()),
            "{inside:?}"
        );

        for ip in [b.1.ipv4.unwrap(), b.1.ipv6.unwrap()] {
            let server = serve_once(&b.0, ip);
            assert_eq!(call(&a.0, ip), "pong", "a -> b at {ip}");
            server.join().unwrap();
        }
        // The "host" reaches a container through the bridge's gateway address.
        let server = serve_once(&a.0, a.1.ipv4.unwrap());
        let mut s = TcpStream::connect((a.1.ipv4.unwrap(), 7000)).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "pong");
        server.join().unwrap();

        for (ns, ep) in &eps {
            bridge::disconnect(ep).unwrap();
            bridge::disconnect(ep).unwrap();
            netns::remove(ns).unwrap();
            assert!(!ns.exists());
            net.detach(&ep.container);
        }
        bridge::remove(&net).unwrap();
        let left: Vec<String> = Netlink::connect().unwrap().links().unwrap();
        assert_eq!(left, ["lo"], "links left behind");
    })
    .join()
    .unwrap();
}
