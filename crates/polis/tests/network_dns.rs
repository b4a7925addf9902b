//! The embedded DNS server of user bridge networks, through the docker CLI with polisd
//! inside a network namespace of the test's own. The host's resolvers the daemon
//! forwards to are played by a small server of the test, on the addresses of the
//! host's /etc/resolv.conf put on `lo` inside that namespace (nothing leaves it): it
//! knows one name and says NXDOMAIN for every other.

mod common;

use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::netns::{daemon_in_netns, NetNs};

/// The one name the fake upstream resolver knows, and its address.
const UPSTREAM_NAME: &str = "upstream.polis.test";
const UPSTREAM_ADDR: [u8; 4] = [192, 0, 2, 7];

fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.docker(args);
    assert_eq!(code, 0, "docker {args:?}: {out}{err}\n{}", d.log());
    out.trim().to_string()
}

fn start(name: &str) -> (NetNs, Daemon) {
    daemon_in_netns(name, "10.198.0.1/16")
}

/// The nameservers of this host's /etc/resolv.conf: those the daemon forwards to.
fn host_nameservers() -> Vec<IpAddr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver"))
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Plays the host's resolvers inside `ns`: their addresses on its `lo`, a UDP server on
/// port 53 of each (sockets bound from a thread that entered `ns`). Returns them.
fn fake_upstream(ns: &NetNs) -> Vec<IpAddr> {
    let servers = host_nameservers();
    for ip in &servers {
        let cidr = match ip {
            IpAddr::V4(_) => format!("{ip}/32"),
            IpAddr::V6(_) => format!("{ip}/128"),
        };
        let mut args = vec!["-n", &ns.name, "addr", "add", &cidr, "dev", "lo"];
        if ip.is_ipv6() {
            args.push("nodad");
        }
        // Loopback addresses are there already.
        let _ = std::process::Command::new("ip").args(&args).output();
    }
    let path = format!("/run/netns/{}", ns.name);
    let sockets = {
        let servers = servers.clone();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap();
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            servers
                .iter()
                .map(|ip| UdpSocket::bind((*ip, 53)).unwrap())
                .collect::<Vec<_>>()
        })
        .join()
        .unwrap()
    };
    for s in sockets {
        std::thread::spawn(move || serve_upstream(s));
    }
    servers
}

/// Answers A queries for [`UPSTREAM_NAME`]; NXDOMAIN for any other name.
fn serve_upstream(socket: UdpSocket) {
    let mut buf = [0u8; 512];
    while let Ok((n, from)) = socket.recv_from(&mut buf) {
        let q = &buf[..n];
        if n < 12 {
            continue;
        }
        // The question: labels up to the root, then type and class.
        let mut i = 12;
        let mut labels = Vec::new();
        while i < n && q[i] != 0 {
            let len = usize::from(q[i]);
            labels.push(String::from_utf8_lossy(&q[i + 1..(i + 1 + len).min(n)]).to_lowercase());
            i += 1 + len;
        }
        let end = (i + 5).min(n);
        let qtype = if end >= i + 3 {
            u16::from_be_bytes([q[i + 1], q[i + 2]])
        } else {
            0
        };
        let known = labels.join(".") == UPSTREAM_NAME;
        let mut r = q[..end].to_vec();
        r[2] = 0x80 | (q[2] & 0x01); // a response; RD copied
        r[3] = 0x80 | if known { 0 } else { 3 }; // RA; NOERROR or NXDOMAIN
        r[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
        if known && qtype == 1 {
            r[7] = 1;
            r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend_from_slice(&UPSTREAM_ADDR);
        }
        let _ = socket.send_to(&r, from);
    }
}

/// `nslookup ARGS` in container `c`: exit code, output, and how long it took.
fn nslookup(d: &Daemon, c: &str, args: &[&str]) -> (i32, String, Duration) {
    let mut all = vec!["exec", c, "nslookup"];
    all.extend_from_slice(args);
    let started = Instant::now();
    let (code, out, err) = d.docker(&all);
    (code, format!("{out}{err}"), started.elapsed())
}

/// Asserts `name` resolves to `ip` from container `c`.
fn resolves(d: &Daemon, c: &str, name: &str, ip: &str) {
    let (code, out, _) = nslookup(d, c, &[name]);
    assert_eq!(code, 0, "nslookup {name} in {c}: {out}\n{}", d.log());
    assert!(
        out.lines()
            .any(|l| l.starts_with("Address") && l.trim_end().ends_with(ip)),
        "nslookup {name} in {c} should give {ip}: {out}"
    );
}

/// Asserts `name` does not resolve from container `c`, with NXDOMAIN and at once.
fn unknown(d: &Daemon, c: &str, name: &str) {
    let (code, out, took) = nslookup(d, c, &[name]);
    assert_ne!(code, 0, "nslookup {name} in {c} should fail: {out}");
    assert!(out.contains("NXDOMAIN"), "nslookup {name} in {c}: {out}");
    assert!(
        took < Duration::from_secs(3),
        "nslookup {name} took {took:?}"
    );
}

fn inspect(d: &Daemon, what: &str, format: &str) -> String {
    ok(d, &["inspect", "--format", format, what])
}

/// An A query for `name` to `server`:53 over TCP, sent from inside `ns`: the answer's
/// response code and the IPv4 addresses it gives.
fn tcp_query(ns: &NetNs, server: &str, name: &str) -> (u8, Vec<std::net::Ipv4Addr>) {
    use std::io::{Read, Write};
    let mut q = vec![0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let path = format!("/run/netns/{}", ns.name);
    let server: IpAddr = server.parse().unwrap();
    let answer = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let mut tcp =
            std::net::TcpStream::connect_timeout(&(server, 53).into(), Duration::from_secs(3))
                .unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        tcp.write_all(&framed).unwrap();
        let mut len = [0u8; 2];
        tcp.read_exact(&mut len).unwrap();
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tcp.read_exact(&mut answer).unwrap();
        answer
    })
    .join()
    .unwrap();
    assert_eq!(answer[..2], [0x12, 0x34], "{answer:?}");
    // Answers follow the question; each starts with its name (labels or a pointer).
    let skip_name = |mut i: usize| loop {
        match answer.get(i) {
            Some(0) => return i + 1,
            Some(l) if l & 0xc0 == 0xc0 => return i + 2,
            Some(l) => i += 1 + usize::from(*l),
            None => return i,
        }
    };
    let mut i = skip_name(12) + 4;
    let mut addresses = Vec::new();
    while i < answer.len() {
        i = skip_name(i);
        if i + 10 > answer.len() {
            break;
        }
        let rdlen = usize::from(u16::from_be_bytes([answer[i + 8], answer[i + 9]]));
        if answer[i + 1] == 1 && rdlen == 4 && i + 14 <= answer.len() {
            let d = &answer[i + 10..i + 14];
            addresses.push(std::net::Ipv4Addr::new(d[0], d[1], d[2], d[3]));
        }
        i += 10 + rdlen;
    }
    (answer[3] & 0x0f, addresses)
}

/// What listens on UDP port 53 in the daemon's namespace.
fn dns_sockets(ns: &NetNs) -> String {
    let out = ns.command("ss").args(["-Hlnu"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(":53 "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn names_resolve_on_their_network_while_running() {
    let (ns, mut d) = start("dns-names");
    let upstreams = fake_upstream(&ns);
    ok(
        &d,
        &[
            "network",
            "create",
            "--subnet",
            "10.61.0.0/24",
            "--ipv6",
            "--subnet",
            "fd00:61::/64",
            "front",
        ],
    );
    ok(
        &d,
        &["network", "create", "--subnet", "10.62.0.0/24", "other"],
    );
    let sleep = ["busybox:local", "sleep", "600"];
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&sleep);
        ok(&d, &args)
    };
    run("web", &["--network", "front"]);
    let api = run("api", &["--network", "front", "--network-alias", "Db"]);
    run("far", &["--network", "other"]);
    let b_ip = inspect(&d, "api", "{{.NetworkSettings.Networks.front.IPAddress}}");
    let b_ip6 = inspect(
        &d,
        "api",
        "{{.NetworkSettings.Networks.front.GlobalIPv6Address}}",
    );
    assert_eq!(b_ip, "10.61.0.3");

    // The network's gateway is the containers' nameserver; the host's options stay.
    let resolv = ok(&d, &["exec", "web", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.lines().any(|l| l == "nameserver 10.61.0.1"),
        "{resolv}"
    );
    assert!(!resolv.contains("nameserver 10.62"), "{resolv}");

    // By name, alias (any case) and short id, on the same network only.
    resolves(&d, "web", "api", &b_ip);
    resolves(&d, "web", "API", &b_ip);
    resolves(&d, "web", "db", &b_ip);
    resolves(&d, "web", &api[..12], &b_ip);
    resolves(&d, "api", "web", "10.61.0.2");
    let (_, out, _) = nslookup(&d, "web", &["-type=AAAA", "api"]);
    assert!(out.contains(&b_ip6), "AAAA of api ({b_ip6}): {out}");
    // The server listens on the IPv6 gateway too.
    let (code, out, _) = nslookup(&d, "web", &["api", "fd00:61::1"]);
    assert!(
        code == 0 && out.contains(&b_ip),
        "api through fd00:61::1: {out}"
    );
    // And over TCP.
    assert_eq!(
        tcp_query(&ns, "10.61.0.1", "api"),
        (0, vec![b_ip.parse().unwrap()])
    );
    // Reverse names of the network's containers.
    let (_, out, _) = nslookup(&d, "web", &[&b_ip]);
    assert!(out.contains("api.front"), "reverse of {b_ip}: {out}");
    // far is on another network: none of front's names is its.
    let resolv_c = ok(&d, &["exec", "far", "cat", "/etc/resolv.conf"]);
    assert!(resolv_c.contains("nameserver 10.62.0.1"), "{resolv_c}");
    if !upstreams.is_empty() {
        unknown(&d, "far", "api");
        unknown(&d, "far", "db");
        // Other names go to the host's resolvers, whose NXDOMAIN comes back at once.
        resolves(&d, "web", UPSTREAM_NAME, "192.0.2.7");
        unknown(&d, "web", "nowhere.invalid");
    }

    // A stopped container drops out at once, and comes back with a start.
    ok(&d, &["stop", "-t", "1", "api"]);
    if !upstreams.is_empty() {
        unknown(&d, "web", "api");
        unknown(&d, "web", "db");
    } else {
        assert_ne!(nslookup(&d, "web", &["api"]).0, 0);
    }
    ok(&d, &["start", "api"]);
    resolves(&d, "web", "api", &b_ip);

    // A restarted daemon serves the same names for the containers that ran on.
    assert_eq!(d.stop(), 0);
    d.spawn();
    resolves(&d, "web", "db", &b_ip);
    resolves(&d, "api", "web", "10.61.0.2");

    // `--dns` still wins over the embedded server.
    let own = ok(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "front",
            "--dns",
            "192.0.2.53",
            "busybox:local",
            "cat",
            "/etc/resolv.conf",
        ],
    );
    assert!(own.contains("nameserver 192.0.2.53"), "{own}");
    assert!(!own.contains("10.61.0.1"), "{own}");

    // A removed network's server is gone with it.
    assert!(
        dns_sockets(&ns).contains("10.62.0.1:53"),
        "{}",
        dns_sockets(&ns)
    );
    ok(&d, &["rm", "-f", "far"]);
    ok(&d, &["network", "rm", "other"]);
    let left = dns_sockets(&ns);
    assert!(!left.contains("10.62.0.1"), "{left}");
    assert!(left.contains("10.61.0.1:53"), "{left}");
    // A new network gets its server at create.
    ok(
        &d,
        &["network", "create", "--subnet", "10.63.0.0/24", "late"],
    );
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "late1",
            "--network",
            "late",
            "busybox:local",
            "sleep",
            "600",
        ],
    );
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "late2",
            "--network",
            "late",
            "busybox:local",
            "sleep",
            "600",
        ],
    );
    resolves(&d, "late1", "late2", "10.63.0.3");
}

#[test]
fn the_default_bridge_has_no_embedded_dns() {
    let (ns, d) = start("dns-default");
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "plain",
            "busybox:local",
            "sleep",
            "600",
        ],
    );
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "other",
            "busybox:local",
            "sleep",
            "600",
        ],
    );
    let gateway = inspect(&d, "plain", "{{.NetworkSettings.Gateway}}");
    assert_eq!(gateway, "172.17.0.1");
    let resolv = ok(&d, &["exec", "plain", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains(&gateway), "{resolv}");
    for server in host_nameservers().iter().filter(|s| !s.is_loopback()) {
        assert!(resolv.contains(&format!("nameserver {server}")), "{resolv}");
    }
    // Nothing answers on the default bridge's gateway.
    let sockets = dns_sockets(&ns);
    assert!(!sockets.contains(&gateway), "{sockets}");
    let (code, out, _) = nslookup(&d, "plain", &["other", &gateway]);
    assert_ne!(code, 0, "{out}");
}

#[test]
fn connected_and_renamed_containers_are_answered() {
    let (_ns, d) = start("dns-connect");
    ok(
        &d,
        &["network", "create", "--subnet", "10.65.0.0/24", "front"],
    );
    ok(
        &d,
        &["network", "create", "--subnet", "10.66.0.0/24", "back"],
    );
    let run = |name: &str, net: &str| {
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
                "600",
            ],
        )
    };
    run("web", "front");
    run("solo", "bridge");
    run("store", "back");
    let hostname = ok(&d, &["exec", "solo", "hostname"]);

    // On the default bridge, solo has the host's name servers; once connected to a user
    // network its resolv.conf points at that network's server and its hosts file
    // names its new address.
    ok(&d, &["network", "connect", "front", "solo"]);
    let resolv = ok(&d, &["exec", "solo", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv
            .lines()
            .filter(|l| l.starts_with("nameserver"))
            .collect::<Vec<_>>(),
        ["nameserver 10.65.0.1"],
        "{resolv}"
    );
    let hosts = ok(&d, &["exec", "solo", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("10.65.0.3\t{hostname}")), "{hosts}");
    resolves(&d, "solo", "web", "10.65.0.2");
    resolves(&d, "web", "solo", "10.65.0.3");
    // Disconnected: the entry and the server go again.
    ok(&d, &["network", "disconnect", "front", "solo"]);
    let hosts = ok(&d, &["exec", "solo", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("10.65.0.3"), "{hosts}");
    let resolv = ok(&d, &["exec", "solo", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("10.65.0.1"), "{resolv}");

    // A renamed container answers to its new name only.
    ok(&d, &["rename", "web", "www"]);
    ok(&d, &["network", "connect", "front", "store"]);
    resolves(&d, "store", "www", "10.65.0.2");
    let (code, out, _) = nslookup(&d, "store", &["web"]);
    assert_ne!(code, 0, "the old name still answers: {out}");
    // store asks back's server, which answers for every network store is on, and only
    // for those: a container on back alone does not see front's names.
    run("far", "back");
    let (code, out, _) = nslookup(&d, "far", &["www"]);
    assert_ne!(code, 0, "front's name resolved on back: {out}");
    resolves(&d, "far", "store", "10.66.0.2");
}
