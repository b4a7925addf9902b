//! Bridge networks through the docker CLI, with polisd inside a network namespace this
//! test makes (no host interface, route or rule is touched): user networks with their own
//! subnets, static addresses, IPv6, the default bridge, connect and disconnect, addresses
//! kept across a daemon restart, and nothing left after the containers and networks go.

mod common;

use common::daemon::{import_busybox, Daemon, DaemonOptions};
use common::netns::NetNs;

fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.docker(args);
    assert_eq!(code, 0, "docker {args:?}: {out}{err}\n{}", d.log());
    out.trim().to_string()
}

fn inspect(d: &Daemon, what: &str, format: &str) -> String {
    ok(d, &["inspect", "--format", format, what])
}

/// The interfaces of the daemon's namespace.
fn links(ns: &NetNs) -> Vec<String> {
    let out = ns.command("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn start(name: &str) -> (NetNs, Daemon) {
    let ns = NetNs::new(name, "10.199.0.1/16");
    let d = Daemon::start_with(
        name,
        &DaemonOptions {
            netns: Some(&ns.name),
            ..DaemonOptions::default()
        },
    );
    import_busybox(&d);
    (ns, d)
}

#[test]
fn user_networks_addresses_and_cleanup() {
    let (ns, mut d) = start("net-user");
    ok(
        &d,
        &["network", "create", "--subnet", "10.50.0.0/24", "front"],
    );
    ok(&d, &["network", "create", "back"]);
    let ls = ok(&d, &["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    for n in [
        "bridge bridge",
        "host host",
        "none null",
        "front bridge",
        "back bridge",
    ] {
        assert!(ls.lines().any(|l| l == n), "{n}: {ls}");
    }
    // The default bridge has Docker's subnet; an unnamed one takes the next free /16.
    assert_eq!(
        ok(
            &d,
            &[
                "network",
                "inspect",
                "--format",
                "{{(index .IPAM.Config 0).Subnet}}",
                "back"
            ]
        ),
        "172.18.0.0/16"
    );
    let (code, _, err) = d.docker(&["network", "create", "--subnet", "10.50.0.0/25", "clash"]);
    assert_ne!(code, 0);
    assert!(err.contains("overlaps"), "{err}");

    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "ca",
            "--network",
            "front",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "cb",
            "--network",
            "front",
            "--ip",
            "10.50.0.100",
            "--network-alias",
            "bee",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(
        inspect(&d, "ca", "{{.NetworkSettings.Networks.front.IPAddress}}"),
        "10.50.0.2"
    );
    assert_eq!(
        inspect(&d, "cb", "{{.NetworkSettings.Networks.front.Aliases}}"),
        "[bee]"
    );
    // Traffic between the two, over the bridge.
    ok(
        &d,
        &["exec", "ca", "ping", "-c", "1", "-W", "3", "10.50.0.100"],
    );
    // Docker's files: the container's own address in /etc/hosts, a hostname.
    let hosts = ok(&d, &["exec", "cb", "cat", "/etc/hosts"]);
    let id = inspect(&d, "cb", "{{.Id}}");
    assert!(
        hosts.contains(&format!("10.50.0.100\t{}", &id[..12])),
        "{hosts}"
    );
    let route = ok(&d, &["exec", "ca", "ip", "route"]);
    assert!(route.contains("default via 10.50.0.1 dev eth0"), "{route}");
    let (code, _, err) = d.docker(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--ip",
        "10.50.0.100",
        "busybox:local",
        "true",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("Address already in use"), "{err}");
    let (code, _, err) = d.docker(&[
        "run",
        "--rm",
        "--network",
        "nosuch",
        "busybox:local",
        "true",
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("network nosuch not found"), "{err}");

    // A second network for a running container, then off it again.
    ok(&d, &["network", "connect", "back", "ca"]);
    let addrs = ok(&d, &["exec", "ca", "ip", "-o", "addr"]);
    assert!(
        addrs.contains("eth1") && addrs.contains("172.18.0.2/16"),
        "{addrs}"
    );
    ok(&d, &["network", "disconnect", "back", "ca"]);
    let addrs = ok(&d, &["exec", "ca", "ip", "-o", "addr"]);
    assert!(!addrs.contains("eth1"), "{addrs}");

    // Addresses stay taken across a daemon restart: the next container gets a new one.
    d.stop();
    d.spawn();
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "cc",
            "--network",
            "front",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(
        inspect(&d, "cc", "{{.NetworkSettings.Networks.front.IPAddress}}"),
        "10.50.0.3"
    );
    ok(
        &d,
        &["exec", "cc", "ping", "-c", "1", "-W", "3", "10.50.0.2"],
    );

    let (code, _, err) = d.docker(&["network", "rm", "front"]);
    assert_ne!(code, 0);
    assert!(err.contains("has active endpoints"), "{err}");
    let (code, _, err) = d.docker(&["network", "rm", "bridge"]);
    assert_ne!(code, 0);
    assert!(err.contains("pre-defined network"), "{err}");
    ok(&d, &["rm", "-f", "ca", "cb", "cc"]);
    ok(&d, &["network", "rm", "front", "back"]);
    let left: Vec<String> = links(&ns)
        .into_iter()
        .filter(|l| !["lo", "veth0", "veth1", "polis0"].contains(&l.as_str()))
        .collect();
    assert!(left.is_empty(), "links left: {left:?}");
    let netns_files: Vec<_> = std::fs::read_dir(d.dir.join("run/netns"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(netns_files.is_empty(), "{netns_files:?}");
}

#[test]
fn default_bridge_none_host_and_ipv6() {
    let (_ns, d) = start("net-default");
    // The default network: Docker's 172.17.0.0/16, the gateway as default route.
    let out = ok(
        &d,
        &[
            "run",
            "--rm",
            "busybox:local",
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert!(out.contains("inet 172.17.0.2/16"), "{out}");
    let out = ok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "busybox:local",
            "ip",
            "-o",
            "link",
        ],
    );
    assert_eq!(out.lines().count(), 1, "only lo: {out}");
    let out = ok(
        &d,
        &[
            "run",
            "--rm",
            "--dns",
            "10.9.9.9",
            "--dns-search",
            "example.test",
            "--add-host",
            "db:10.1.2.3",
            "busybox:local",
            "cat",
            "/etc/resolv.conf",
            "/etc/hosts",
        ],
    );
    assert!(out.contains("nameserver 10.9.9.9"), "{out}");
    assert!(out.contains("search example.test"), "{out}");
    assert!(out.contains("10.1.2.3\tdb"), "{out}");

    ok(
        &d,
        &[
            "network",
            "create",
            "--ipv6",
            "--subnet",
            "fd00:50::/64",
            "six",
        ],
    );
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "s1",
            "--network",
            "six",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "s2",
            "--network",
            "six",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    let v6 = inspect(
        &d,
        "s2",
        "{{.NetworkSettings.Networks.six.GlobalIPv6Address}}",
    );
    assert_eq!(v6, "fd00:50::3");
    ok(&d, &["exec", "s1", "ping", "-6", "-c", "1", "-W", "3", &v6]);
    let members = ok(
        &d,
        &[
            "network",
            "inspect",
            "--format",
            "{{len .Containers}}",
            "six",
        ],
    );
    assert_eq!(members, "2");
    ok(&d, &["rm", "-f", "s1", "s2"]);
    ok(&d, &["network", "rm", "six"]);
}
