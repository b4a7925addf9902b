//! The `polis` client's network verbs and flags. Against a recorder (a tiny Engine API
//! on a unix socket that answers and remembers every request), polis must send what the
//! unmodified docker CLI sends for the same command line, and refuse bad `-p` specs with
//! docker's message; against polisd (in a network namespace of the test's own, so
//! bridges may be made), `network ls/inspect/rm/prune` and `port` must print what
//! docker prints.

mod common;

use common::daemon::{import_busybox, output, Daemon, DaemonOptions, Output, DOCKER};
use common::netns::NetNs;
use common::recorder::{self, reply, unexpected, Request, NO_CONTENT};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const POLIS: &str = env!("CARGO_BIN_EXE_polis");

/// One request as the recorder saw it: "METHOD /path?query" and its body (as JSON,
/// `null` when there was none).
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    line: String,
    body: Value,
}

struct Recorder(recorder::Recorder);

const CONTAINER_ID: &str = "0123456789ab0123456789abcdef0123456789abcdef0123456789abcdef";
const NETWORK_JSON: &str = r#"{"Name":"front","Id":"f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0","Created":"2024-01-01T00:00:00Z","Scope":"local","Driver":"bridge","EnableIPv6":false,"IPAM":{"Driver":"default","Options":{},"Config":[]},"Internal":false,"Attachable":false,"Ingress":false,"ConfigFrom":{"Network":""},"ConfigOnly":false,"Containers":{},"Options":{},"Labels":{}}"#;

impl Recorder {
    fn start(dir: &Path) -> Recorder {
        Recorder(recorder::Recorder::start(
            &dir.join("recorder.sock"),
            answer,
        ))
    }

    /// Runs a CLI with `args` and returns its output and what it sent (pings left out).
    fn record(&self, program: &str, args: &[&str]) -> (Output, Vec<Recorded>) {
        self.0.clear();
        let mut cmd = Command::new(program);
        cmd.env("DOCKER_HOST", self.0.host())
            .env_remove("POLIS_HOST")
            .args(args);
        let out = output(&mut cmd, None);
        let log = self
            .0
            .requests()
            .into_iter()
            .map(|r| Recorded {
                line: format!("{} {}", r.method, r.path),
                body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
            })
            .collect();
        (out, log)
    }
}

/// What the CLIs need to get on with a network command.
fn answer(r: &Request) -> String {
    let (method, p) = (r.method.as_str(), r.route());
    if p == "/containers/create" {
        reply(
            "201 Created",
            &format!(r#"{{"Id":"{CONTAINER_ID}","Warnings":[]}}"#),
        )
    } else if p == "/networks/create" {
        reply("201 Created", r#"{"Id":"f0f0","Warning":""}"#)
    } else if p == "/networks/prune" {
        reply("200 OK", r#"{"NetworksDeleted":["a"]}"#)
    } else if p == "/networks" {
        reply("200 OK", &format!("[{NETWORK_JSON}]"))
    } else if p.starts_with("/networks/") && method == "GET" {
        reply("200 OK", NETWORK_JSON)
    } else if method == "DELETE" || p.ends_with("connect") {
        NO_CONTENT.to_string()
    } else {
        unexpected()
    }
}

/// A request body as compared: `IPAM.Config` sorted (docker builds it from a map).
fn normalized(r: &Recorded) -> (String, Value) {
    let mut body = r.body.clone();
    if let Some(config) = body
        .pointer_mut("/IPAM/Config")
        .and_then(Value::as_array_mut)
    {
        config.sort_by_key(|c| c.to_string());
    }
    (r.line.clone(), body)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polis-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The network flags of run/create, and the network verbs: polis sends what docker
/// sends, field for field, in the same order of requests.
#[test]
fn network_requests_match_the_docker_cli() {
    let dir = temp_dir("net-requests");
    let rec = Recorder::start(&dir);
    let create_cases: Vec<Vec<&str>> = vec![
        vec!["-p", "8080:80", "-p", "127.0.0.1:9000-9001:90-91/udp"],
        vec![
            "-p",
            "[::1]:70:70",
            "-p",
            "8000-8010:81",
            "-p",
            "1.2.3.4::82/SCTP",
        ],
        vec!["-p", "80", "-p", "published=8080,target=90,protocol=udp"],
        vec!["-P", "--expose", "100-101", "--expose", "53/udp"],
        vec![
            "--network",
            "front",
            "--ip",
            "10.5.0.9",
            "--ip6",
            "fd00::9",
            "--network-alias",
            "a1",
            "--network-alias",
            "a2",
            "--mac-address",
            "02:42:ac:11:00:02",
        ],
        vec!["--network", "front"],
        vec!["--network", "bridge"],
        vec!["--network", "none", "--ip", "1.2.3.4"],
        vec!["--ip", "172.17.0.9"],
        vec!["--mac-address", "02:42:ac:11:00:03"],
        vec![
            "--dns",
            "8.8.8.8",
            "--dns",
            "::ffff:1.2.3.4",
            "--dns-search",
            "ex.com",
            "--dns-search",
            ".",
            "--dns-option",
            "ndots:2",
            "--dns-opt",
            "rotate",
        ],
        vec![
            "--add-host",
            "h:1.2.3.4",
            "--add-host",
            "g:host-gateway",
            "--add-host",
            "six=[::1]",
        ],
    ];
    for flags in &create_cases {
        for verb in ["create", "run"] {
            let mut args = vec![verb, "-d"];
            if verb == "create" {
                args.pop();
            }
            args.extend(flags.iter().copied());
            args.extend(["busybox:local", "true"]);
            let (_, docker) = rec.record(DOCKER, &args);
            let (_, polis) = rec.record(POLIS, &args);
            let create = |r: &[Recorded]| {
                r.iter()
                    .find(|r| r.line.starts_with("POST /containers/create"))
                    .map(normalized)
                    .unwrap_or_else(|| panic!("{args:?}: no create in {r:?}"))
            };
            assert_eq!(create(&polis), create(&docker), "{args:?}");
        }
    }

    let verbs: Vec<Vec<&str>> = vec![
        vec!["network", "create", "n1"],
        vec![
            "network",
            "create",
            "-d",
            "bridge",
            "--subnet",
            "10.9.0.0/24",
            "--gateway",
            "10.9.0.1",
            "--ip-range",
            "10.9.0.128/25",
            "--ipv6",
            "--subnet",
            "fd00:9::/64",
            "--internal",
            "--attachable",
            "--label",
            "a=b",
            "--label",
            "c",
            "-o",
            "com.docker.network.bridge.name=br9",
            "--opt",
            "x",
            "n2",
        ],
        vec![
            "network",
            "create",
            "--ipv6=false",
            "--subnet",
            "10.1.0.0/16,10.2.0.0/16",
            "n3",
        ],
        vec!["network", "connect", "front", "x"],
        vec![
            "network", "connect", "--ip", "10.5.0.7", "--ip6", "fd00::7", "--alias", "a",
            "--alias", "b,c", "front", "x",
        ],
        vec!["network", "disconnect", "front", "x"],
        vec!["network", "disconnect", "-f", "front", "x"],
        vec!["network", "rm", "a", "b"],
        vec!["network", "remove", "-f", "a"],
        vec!["network", "prune", "-f"],
        vec![
            "network", "prune", "-f", "--filter", "until=1h", "--filter", "label=a",
        ],
        vec!["network", "ls", "--filter", "driver=bridge", "-f", "name=x"],
        vec!["network", "inspect", "front"],
        vec!["network", "inspect", "-v", "front"],
        vec!["port", "x"],
        vec!["container", "port", "x", "80"],
    ];
    for args in &verbs {
        let (docker_out, docker) = rec.record(DOCKER, args);
        let (polis_out, polis) = rec.record(POLIS, args);
        assert_eq!(
            polis_out.0, docker_out.0,
            "{args:?}: {polis_out:?} {docker_out:?}"
        );
        let all = |r: &[Recorded]| r.iter().map(normalized).collect::<Vec<_>>();
        assert_eq!(all(&polis), all(&docker), "{args:?}");
    }
    // What the client prints of the recorder's answers.
    for args in [
        vec!["network", "ls"],
        vec!["network", "prune", "-f"],
        vec!["network", "rm", "a", "b"],
        vec!["network", "create", "n1"],
    ] {
        let (docker, _) = rec.record(DOCKER, &args);
        let (polis, _) = rec.record(POLIS, &args);
        assert_eq!(polis, docker, "{args:?}");
    }
    // Subnets, ranges and gateways that do not fit are refused before any request.
    for args in [
        vec!["network", "create", "--gateway", "10.0.0.1", "n"],
        vec![
            "network",
            "create",
            "--subnet",
            "10.0.0.0/24",
            "--gateway",
            "10.1.0.1",
            "n",
        ],
        vec![
            "network",
            "create",
            "--subnet",
            "10.0.0.0/8",
            "--subnet",
            "10.1.0.0/16",
            "n",
        ],
        vec![
            "network",
            "create",
            "--subnet",
            "10.0.0.0/8",
            "--ip-range",
            "10.1.0.0/16",
            "--ip-range",
            "10.2.0.0/16",
            "n",
        ],
    ] {
        let ((dcode, _, derr), docker) = rec.record(DOCKER, &args);
        let ((pcode, _, perr), polis) = rec.record(POLIS, &args);
        assert!(docker.is_empty() && polis.is_empty(), "{args:?}");
        assert_eq!((pcode, perr.trim()), (dcode, derr.trim()), "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad specs are refused with docker's message (its first line, "docker" read as
/// "polis") and exit 125, before anything is created.
#[test]
fn bad_network_flags_are_refused_as_docker_refuses_them() {
    let dir = temp_dir("net-bad");
    let rec = Recorder::start(&dir);
    for bad in [
        vec!["-p", "80:70-71"],
        vec!["-p", "1.2.3:80:80"],
        vec!["-p", "[::1:80:80"],
        vec!["-p", "[::1]x:80:80"],
        vec!["-p", "80/xyz"],
        vec!["-p", "99999"],
        vec!["-p", "a:b"],
        vec!["-p", "8000-7000:80"],
        vec!["-p", "80:"],
        vec!["-p", ""],
        vec!["-p", "published=8080,x"],
        vec!["--expose", "80:90"],
        vec!["--expose", "90-80"],
        vec!["--expose", "abc"],
        vec!["--mac-address", "zz"],
        vec!["--network-alias", "a"],
        vec!["--network", "host", "--network-alias", "a"],
        vec!["--dns", "1.2"],
        vec!["--dns-search", "-bad"],
        vec!["--add-host", "x"],
        vec!["--add-host", "x:1.2"],
        vec!["--add-host", ":1.2.3.4"],
    ] {
        let mut args = vec!["run"];
        args.extend(bad.iter().copied());
        args.extend(["busybox:local", "true"]);
        let ((dcode, _, derr), docker) = rec.record(DOCKER, &args);
        let ((pcode, _, perr), polis) = rec.record(POLIS, &args);
        assert!(
            docker.is_empty() && polis.is_empty(),
            "{bad:?}: {docker:?} {polis:?}"
        );
        assert_eq!((pcode, dcode), (125, 125), "{bad:?}: {perr}");
        let first = |s: &str| s.lines().next().unwrap_or_default().to_string();
        assert_eq!(
            first(&perr),
            first(&derr).replace("docker:", "polis:"),
            "{bad:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The two CLIs against one daemon in a namespace of the test's own.
struct Both {
    d: Daemon,
    _ns: NetNs,
}

impl Both {
    fn start(name: &str) -> Both {
        let ns = NetNs::new(name, "10.198.0.1/16");
        let d = Daemon::start_with(
            name,
            &DaemonOptions {
                netns: Some(&ns.name),
                ..DaemonOptions::default()
            },
        );
        Both { d, _ns: ns }
    }

    fn polis(&self, args: &[&str]) -> Output {
        output(
            Command::new(POLIS)
                .env_remove("DOCKER_HOST")
                .env_remove("POLIS_HOST")
                .arg("-H")
                .arg(self.d.host())
                .args(args),
            None,
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.polis(args);
        assert_eq!(code, 0, "polis {args:?}: {out}{err}\n{}", self.d.log());
        out
    }

    /// Both CLIs print the same and exit the same.
    fn same(&self, args: &[&str]) -> Output {
        let polis = self.polis(args);
        let docker = self.d.docker(args);
        assert_eq!(polis, docker, "polis vs docker for {args:?}");
        polis
    }
}

#[test]
fn network_and_port_outputs_match_the_docker_cli() {
    let b = Both::start("cli-net");
    import_busybox(&b.d);
    b.ok(&[
        "network",
        "create",
        "--subnet",
        "10.61.0.0/24",
        // One label: docker joins several in Go's random map order.
        "--label",
        "a=1",
        "n10",
    ]);
    b.ok(&["network", "create", "--internal", "--ipv6", "n2"]);
    for args in [
        vec!["network", "ls"],
        vec!["network", "ls", "--no-trunc"],
        vec!["network", "ls", "-q"],
        vec!["network", "ls", "--format", "json"],
        vec![
            "network",
            "ls",
            "--format",
            "table {{.Name}}\t{{.IPv6}}\t{{.Internal}}\t{{.Labels}}\t{{.CreatedAt}}",
        ],
        vec!["network", "ls", "--format", "{{.Name}} {{.Label \"a\"}}"],
        vec!["network", "ls", "--filter", "name=n1"],
        vec!["network", "inspect", "n10", "n2"],
        vec!["network", "inspect", "-f", "{{.Name}} {{.Internal}}", "n2"],
        vec!["network", "inspect", "n10", "nosuch"],
        vec!["network", "rm", "nosuch"],
        vec!["network", "rm", "-f", "nosuch"],
    ] {
        b.same(&args);
    }
    // (Keys of `{{json}}` come sorted from polis, in struct order from docker.)
    let config: Value =
        serde_json::from_str(&b.ok(&["network", "inspect", "-f", "{{json .IPAM.Config}}", "n10"]))
            .unwrap();
    assert_eq!(
        config,
        serde_json::json!([{"Subnet": "10.61.0.0/24", "Gateway": "10.61.0.1"}])
    );

    // A container with published ports, on a user network, its address and aliases.
    b.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "n10",
        "--ip",
        "10.61.0.50",
        "--network-alias",
        "www",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1:9000:90/udp",
        "--expose",
        "7000",
        "--dns",
        "10.61.0.1",
        "--add-host",
        "db:10.61.0.9",
        "busybox:local",
        "sleep",
        "1000",
    ]);
    for args in [
        vec!["port", "web"],
        vec!["port", "web", "80"],
        vec!["container", "port", "web", "90/udp"],
        vec!["port", "web", "81"],
        vec!["port", "web", "7000"],
        vec!["port", "web", "x"],
        vec!["port", "nosuch"],
    ] {
        b.same(&args);
    }
    let ports = b.ok(&["port", "web"]);
    assert!(ports.contains("80/tcp -> 0.0.0.0:8080"), "{ports}");
    assert!(ports.contains("90/udp -> 127.0.0.1:9000"), "{ports}");
    let ip = b.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.n10.IPAddress}} {{.NetworkSettings.Networks.n10.Aliases}}",
        "web",
    ]);
    assert_eq!(ip.trim(), "10.61.0.50 [www]");
    let hosts =
        b.d.docker(&["exec", "web", "cat", "/etc/hosts", "/etc/resolv.conf"])
            .1;
    assert!(hosts.contains("10.61.0.9\tdb"), "{hosts}");
    assert!(hosts.contains("nameserver 10.61.0.1"), "{hosts}");

    // Onto a second network with an address and an alias, and off it again.
    b.ok(&["network", "rm", "n2"]);
    b.ok(&["network", "create", "--subnet", "10.61.1.0/24", "n3"]);
    b.ok(&[
        "network",
        "connect",
        "--ip",
        "10.61.1.7",
        "--alias",
        "w2",
        "n3",
        "web",
    ]);
    b.same(&["network", "inspect", "n3"]);
    let addrs = b.d.docker(&["exec", "web", "ip", "-o", "addr"]).1;
    assert!(addrs.contains("10.61.1.7/24"), "{addrs}");
    b.same(&["network", "rm", "n3"]);
    b.ok(&["network", "disconnect", "n3", "web"]);
    let addrs = b.d.docker(&["exec", "web", "ip", "-o", "addr"]).1;
    assert!(!addrs.contains("10.61.1.7"), "{addrs}");

    // Prune: what is unused goes, what a container uses stays.
    b.ok(&["network", "create", "n4"]);
    let pruned = b.ok(&["network", "prune", "-f"]);
    let mut lines: Vec<&str> = pruned.lines().collect();
    lines[1..3].sort();
    assert_eq!(lines, ["Deleted Networks:", "n3", "n4", ""], "{pruned}");
    b.same(&["network", "prune", "-f"]);
    b.ok(&["rm", "-f", "web"]);
    assert_eq!(b.ok(&["network", "rm", "n10"]), "n10\n");
    b.same(&["network", "ls"]);
}
