//! Bridge networks through the docker CLI, with polisd inside a network namespace this
//! test makes (no host interface, route or rule is touched): user networks with their own
//! subnets, static addresses, IPv6, the default bridge, connect and disconnect, addresses
//! kept across a daemon restart, and nothing left after the containers and networks go.

mod common;

use common::daemon::Daemon;
use common::netns::{daemon_in_netns, NetNs};

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

/// Only the namespace's own links and the default bridge remain, once the veths
/// deleted in the background after `rm` are gone (within 3 s).
fn assert_no_links_left(ns: &NetNs) {
    let mut left = Vec::new();
    for _ in 0..30 {
        left = links(ns)
            .into_iter()
            .filter(|l| !["lo", "veth0", "veth1", "polis0"].contains(&l.as_str()))
            .collect();
        if left.is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("links left: {left:?}");
}

fn start(name: &str) -> (NetNs, Daemon) {
    daemon_in_netns(name, "10.199.0.1/16")
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
    assert_no_links_left(&ns);
    let netns_files: Vec<_> = std::fs::read_dir(d.dir.join("run/netns"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(netns_files.is_empty(), "{netns_files:?}");
}

#[test]
fn default_bridge_none_host_and_ipv6() {
    let (ns, d) = start("net-default");
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

    // Another container's namespace: same address, same hostname.
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "base",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    let base_ip = inspect(&d, "base", "{{.NetworkSettings.IPAddress}}");
    let shared = ok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "container:base",
            "busybox:local",
            "sh",
            "-c",
            "ip -o -4 addr show eth0; hostname",
        ],
    );
    assert!(shared.contains(&format!("inet {base_ip}/16")), "{shared}");
    let base_id = inspect(&d, "base", "{{.Id}}");
    assert!(shared.ends_with(&base_id[..12]), "{shared}");
    let (code, _, err) = d.docker(&[
        "run",
        "--rm",
        "--network",
        "container:base",
        "-p",
        "80:80",
        "busybox:local",
        "true",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("conflicting options"), "{err}");
    ok(&d, &["stop", "-t", "0", "base"]);
    let (code, _, err) = d.docker(&[
        "run",
        "--rm",
        "--network",
        "container:base",
        "busybox:local",
        "true",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("non running container"), "{err}");
    ok(&d, &["rm", "base"]);

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
    // A port published over IPv6: the namespace's own IPv6 address reaches it.
    let added = ns
        .command("ip")
        .args(["-6", "addr", "add", "fd99::1/64", "dev", "veth0", "nodad"])
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web6",
            "--network",
            "six",
            "-p",
            "8086:80",
            "busybox:local",
            "sh",
            "-c",
            "mkdir /www && echo six > /www/i && httpd -f -p 80 -h /www",
        ],
    );
    let mut got = String::new();
    for _ in 0..30 {
        let out = ns
            .command("curl")
            .args(["-s", "--max-time", "3", "-g", "http://[fd99::1]:8086/i"])
            .output()
            .unwrap();
        got = String::from_utf8_lossy(&out.stdout).into_owned();
        if got == "six\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(got, "six\n");
    let ports = ok(&d, &["port", "web6", "80"]);
    assert!(
        ports.contains("0.0.0.0:8086") && ports.contains("[::]:8086"),
        "{ports}"
    );
    ok(&d, &["rm", "-f", "s1", "s2", "web6"]);
    ok(&d, &["network", "rm", "six"]);
}

/// Polls `docker logs NAME` until it contains `what`.
fn wait_for_log(d: &Daemon, name: &str, what: &str) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        let (_, out, err) = d.docker(&["logs", name]);
        last = out + &err;
        if last.contains(what) {
            return last;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{what:?} never logged by {name}: {last}");
}

#[test]
fn published_ports_isolation_and_internal_networks() {
    let (ns, d) = start("net-ports");
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "-p",
            "8080:80",
            "busybox:local",
            "sh",
            "-c",
            "mkdir -p /www && echo hello > /www/index.html && echo ready && httpd -f -p 80 -h /www",
        ],
    );
    wait_for_log(&d, "web", "ready");
    // TCP through the host's 127.0.0.1 and through the namespace's own address.
    for host in ["127.0.0.1", "10.199.0.1"] {
        let out = ns
            .command("curl")
            .args([
                "-s",
                "--max-time",
                "5",
                &format!("http://{host}:8080/index.html"),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "hello\n",
            "{host}: {out:?}"
        );
    }
    // UDP: busybox has no UDP server, so the host's python runs in the container (its
    // /usr bound read-only).
    let server = "import socket\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.bind(('0.0.0.0', 5000))\n\
        print('ready', flush=True)\n\
        d, a = s.recvfrom(100)\n\
        s.sendto(b'pong ' + d, a)\n";
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "udp",
            "-p",
            "5001:5000/udp",
            "-v",
            "/usr:/usr:ro",
            "-v",
            "/lib:/lib:ro",
            "-v",
            "/lib64:/lib64:ro",
            "busybox:local",
            "/usr/bin/python3",
            "-c",
            server,
        ],
    );
    wait_for_log(&d, "udp", "ready");
    // Shown while it runs (its server answers once, then exits).
    assert!(
        ok(&d, &["port", "udp"]).contains("5000/udp -> 0.0.0.0:5001"),
        "udp port"
    );
    let client = "import socket\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.settimeout(5)\n\
        s.sendto(b'datagram', ('10.199.0.1', 5001))\n\
        print(s.recvfrom(100)[0].decode())\n";
    let out = ns.command("python3").args(["-c", client]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "pong datagram\n",
        "{out:?}"
    );
    let ports = ok(&d, &["port", "web"]);
    assert!(ports.contains("80/tcp -> 0.0.0.0:8080"), "{ports}");
    // A host port published already fails the start (the container stays created, as
    // Docker's), and nothing of it is published.
    let (code, _, err) = d.docker(&[
        "run",
        "-d",
        "--name",
        "clash",
        "-p",
        "8080:80",
        "busybox:local",
        "sleep",
        "100",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("port is already allocated"), "{err}");
    assert_eq!(inspect(&d, "clash", "{{.State.Status}}"), "created");
    assert_eq!(ok(&d, &["port", "clash"]), "");
    ok(&d, &["rm", "clash"]);
    // -P: the exposed ports get free host ports.
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "auto",
            "--expose",
            "90",
            "-P",
            "busybox:local",
            "sleep",
            "100",
        ],
    );
    let auto = ok(&d, &["port", "auto", "90"]);
    assert!(auto.starts_with("0.0.0.0:"), "{auto}");

    // Networks are isolated from each other; an internal network has no way out.
    ok(
        &d,
        &["network", "create", "--subnet", "10.61.0.0/24", "left"],
    );
    ok(
        &d,
        &["network", "create", "--subnet", "10.62.0.0/24", "right"],
    );
    ok(
        &d,
        &[
            "network",
            "create",
            "--internal",
            "--subnet",
            "10.63.0.0/24",
            "inner",
        ],
    );
    for (name, net) in [
        ("l1", "left"),
        ("l2", "left"),
        ("r1", "right"),
        ("i1", "inner"),
    ] {
        ok(
            &d,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                net,
                "busybox:local",
                "sleep",
                "1000",
            ],
        );
    }
    ok(
        &d,
        &["exec", "l1", "ping", "-c", "1", "-W", "2", "10.61.0.3"],
    );
    let (code, _, _) = d.docker(&["exec", "l1", "ping", "-c", "1", "-W", "1", "10.62.0.2"]);
    assert_ne!(code, 0, "left reached right");
    let (code, _, _) = d.docker(&["exec", "r1", "ping", "-c", "1", "-W", "1", "10.61.0.2"]);
    assert_ne!(code, 0, "right reached left");
    let route = ok(&d, &["exec", "i1", "ip", "route"]);
    assert!(!route.contains("default"), "{route}");
    let (code, _, _) = d.docker(&["exec", "i1", "ping", "-c", "1", "-W", "1", "10.61.0.2"]);
    assert_ne!(code, 0, "internal reached left");

    // Driver options: the MTU of every link, no traffic between members without icc;
    // an option not applied is refused.
    ok(
        &d,
        &[
            "network",
            "create",
            "--subnet",
            "10.64.0.0/24",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "-o",
            "com.docker.network.bridge.enable_icc=false",
            "quiet",
        ],
    );
    for name in ["q1", "q2"] {
        ok(
            &d,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "quiet",
                "busybox:local",
                "sleep",
                "1000",
            ],
        );
    }
    let link = ok(&d, &["exec", "q1", "ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains("mtu 1400"), "{link}");
    let (code, _, _) = d.docker(&["exec", "q1", "ping", "-c", "1", "-W", "1", "10.64.0.3"]);
    assert_ne!(code, 0, "icc=false let members talk");
    let (code, _, err) = d.docker(&["network", "create", "-o", "com.example.unknown=1", "odd"]);
    assert_ne!(code, 0);
    assert!(err.contains("not supported by the bridge driver"), "{err}");
    ok(&d, &["rm", "-f", "q1", "q2"]);
    ok(&d, &["network", "rm", "quiet"]);

    // Everything goes with the containers and networks: no DNAT rule, no link.
    ok(
        &d,
        &["rm", "-f", "web", "udp", "auto", "l1", "l2", "r1", "i1"],
    );
    ok(&d, &["network", "rm", "left", "right", "inner"]);
    let rules = ns
        .command("nft")
        .args(["list", "table", "inet", "polis"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains("dport"), "{rules}");
    assert!(!rules.contains("br-"), "{rules}");
    assert_no_links_left(&ns);
}

#[test]
fn crash_and_lost_namespaces_are_recovered() {
    let (ns, mut d) = start("net-crash");
    ok(
        &d,
        &["network", "create", "--subnet", "10.70.0.0/24", "mesh"],
    );
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "keep",
            "--network",
            "mesh",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    let later = [
        "run",
        "-d",
        "--name",
        "later",
        "--network",
        "mesh",
        "busybox:local",
        "sleep",
        "1000",
    ];
    ok(&d, &later);
    ok(&d, &["stop", "-t", "0", "later"]);
    // Creates in flight when the daemon is killed.
    let racers: Vec<_> = (0..4)
        .map(|i| {
            let mut c = d.command("/usr/local/bin/docker");
            c.env("DOCKER_HOST", d.host()).args([
                "run",
                "-d",
                "--name",
                &format!("race{i}"),
                "--network",
                "mesh",
                "busybox:local",
                "sleep",
                "1000",
            ]);
            c.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            c.spawn().unwrap()
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(150));
    d.crash();
    for mut r in racers {
        let _ = r.wait();
    }
    // As after a reboot: the stopped container's namespace and veth are gone.
    let id = {
        d.restart_after_crash();
        let id = inspect(&d, "later", "{{.Id}}");
        d.crash();
        id
    };
    let netns = d.dir.join("run/netns").join(&id);
    let out = std::process::Command::new("umount")
        .arg("-l")
        .arg(&netns)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?} {}", d.log());
    std::fs::remove_file(&netns).unwrap();
    d.restart_after_crash();
    // The running container kept its network; the stopped one gets its own back.
    ok(&d, &["start", "later"]);
    assert_eq!(
        inspect(&d, "later", "{{.NetworkSettings.Networks.mesh.IPAddress}}"),
        "10.70.0.3"
    );
    ok(
        &d,
        &["exec", "later", "ping", "-c", "1", "-W", "3", "10.70.0.2"],
    );
    let all = ok(&d, &["ps", "-aq"]);
    for c in all.split_whitespace() {
        ok(&d, &["rm", "-f", c]);
    }
    ok(&d, &["network", "rm", "mesh"]);
    assert_no_links_left(&ns);
    let files: Vec<_> = std::fs::read_dir(d.dir.join("run/netns"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

/// The DNAT rules of the namespace's firewall that name host port `port`.
fn dnat_rules(ns: &NetNs, port: u16) -> usize {
    let out = ns
        .command("nft")
        .args(["list", "table", "inet", "polis"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("dport {port} ")) && l.contains("dnat"))
        .count()
}

fn http_get(ns: &NetNs, url: &str) -> String {
    let out = ns
        .command("curl")
        .args(["-s", "--max-time", "5", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ports_are_published_while_the_container_runs() {
    let (ns, mut d) = start("net-portlife");
    let serve =
        "mkdir -p /www && echo $0 > /www/index.html && echo ready && httpd -f -p 80 -h /www";
    // Two created containers may ask for the same host port: it is taken at start.
    for name in ["one", "two"] {
        ok(
            &d,
            &[
                "create",
                "--name",
                name,
                "-p",
                "8090:80",
                "busybox:local",
                "sh",
                "-c",
                serve,
                name,
            ],
        );
    }
    assert_eq!(dnat_rules(&ns, 8090), 0, "published before start");
    assert_eq!(inspect(&d, "one", "{{json .NetworkSettings.Ports}}"), "{}");
    ok(&d, &["start", "one"]);
    wait_for_log(&d, "one", "ready");
    assert_eq!(http_get(&ns, "http://127.0.0.1:8090/"), "one\n");
    let (code, _, err) = d.docker(&["start", "two"]);
    assert_ne!(code, 0);
    assert!(err.contains("port is already allocated"), "{err}");
    assert_eq!(inspect(&d, "two", "{{.State.Status}}"), "created");
    // Stopped: the port goes with it, and the other container can have it.
    ok(&d, &["stop", "-t", "1", "one"]);
    assert_eq!(dnat_rules(&ns, 8090), 0, "left published after stop");
    assert_eq!(ok(&d, &["port", "one"]), "");
    assert_eq!(inspect(&d, "one", "{{json .NetworkSettings.Ports}}"), "{}");
    ok(&d, &["start", "two"]);
    wait_for_log(&d, "two", "ready");
    assert_eq!(http_get(&ns, "http://10.199.0.1:8090/"), "two\n");
    let (code, _, err) = d.docker(&["start", "one"]);
    assert_ne!(code, 0, "both started on one port");
    assert!(err.contains("port is already allocated"), "{err}");
    ok(&d, &["rm", "-f", "two"]);

    // A container that exits on its own unpublishes too; a restart publishes again.
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "brief",
            "-p",
            "8091:80",
            "busybox:local",
            "sh",
            "-c",
            "sleep 1",
        ],
    );
    assert!(dnat_rules(&ns, 8091) > 0, "not published while running");
    ok(&d, &["wait", "brief"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while dnat_rules(&ns, 8091) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "exited, still published"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ok(&d, &["start", "brief"]);
    assert!(dnat_rules(&ns, 8091) > 0, "not published again at start");
    ok(&d, &["wait", "brief"]);

    // With a restart policy the port is back after a restart (the first run fails).
    let fail_once = format!("test -f /ran || {{ touch /ran; exit 1; }}; {serve}");
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "again",
            "--restart",
            "on-failure",
            "-p",
            "8092:80",
            "busybox:local",
            "sh",
            "-c",
            &fail_once,
            "again",
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while inspect(&d, "again", "{{.RestartCount}}") == "0" {
        assert!(std::time::Instant::now() < deadline, "never restarted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while http_get(&ns, "http://127.0.0.1:8092/") != "again\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "restarted, not published"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // A container that exits while no daemon runs is unpublished when one starts.
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "orphan",
            "-p",
            "8093:80",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    let pid = inspect(&d, "orphan", "{{.State.Pid}}");
    d.crash();
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    d.restart_after_crash();
    assert_eq!(
        dnat_rules(&ns, 8093),
        0,
        "an exited container's port survived"
    );
    assert!(
        dnat_rules(&ns, 8092) > 0,
        "a running container's port was lost"
    );
    assert_eq!(http_get(&ns, "http://127.0.0.1:8092/"), "again\n");

    // An explicit wildcard host address publishes as well.
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "wild",
            "-p",
            "0.0.0.0:8094:80",
            "busybox:local",
            "sh",
            "-c",
            serve,
            "wild",
        ],
    );
    wait_for_log(&d, "wild", "ready");
    assert_eq!(http_get(&ns, "http://127.0.0.1:8094/"), "wild\n");
    assert_eq!(http_get(&ns, "http://10.199.0.1:8094/"), "wild\n");

    for name in ["one", "brief", "again", "orphan", "wild"] {
        ok(&d, &["rm", "-f", name]);
    }
    assert_eq!(dnat_rules(&ns, 8092), 0);
    assert_no_links_left(&ns);
}

#[test]
fn concurrent_starts_on_one_network_get_their_own_addresses() {
    let (ns, d) = start("net-concurrent");
    ok(
        &d,
        &["network", "create", "--subnet", "10.71.0.0/24", "busy"],
    );
    let runs: Vec<_> = (0..6)
        .map(|i| {
            let mut c = d.command("/usr/local/bin/docker");
            c.env("DOCKER_HOST", d.host()).args([
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                "--network",
                "busy",
                "busybox:local",
                "sleep",
                "600",
            ]);
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let mut addresses: Vec<String> = (0..6)
        .map(|i| {
            inspect(
                &d,
                &format!("c{i}"),
                "{{.NetworkSettings.Networks.busy.IPAddress}}",
            )
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 6, "{addresses:?}");
    for i in 0..6 {
        ok(
            &d,
            &[
                "exec",
                &format!("c{i}"),
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "10.71.0.1",
            ],
        );
    }
    for i in 0..6 {
        ok(&d, &["rm", "-f", &format!("c{i}")]);
    }
    ok(&d, &["network", "rm", "busy"]);
    assert_no_links_left(&ns);
}
