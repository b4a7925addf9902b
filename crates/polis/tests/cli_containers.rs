//! The `polis` client's container verbs. Against a recorder (a tiny Engine API on a
//! unix socket that answers and remembers every request), polis must send what the
//! unmodified docker CLI sends for the same command line; against polisd, it must
//! print what docker prints and exit with the same codes.

mod common;

use common::daemon::{import_busybox, leftovers, output, Daemon, Output, DOCKER};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POLIS: &str = env!("CARGO_BIN_EXE_polis");

/// One request as the recorder saw it: "METHOD /path?query" and its body.
#[derive(Debug, Clone, PartialEq)]
struct Recorded {
    line: String,
    body: String,
}

/// An Engine API that answers what the CLIs need to get on with a command, and
/// records what they asked.
struct Recorder {
    socket: PathBuf,
    log: Arc<Mutex<Vec<Recorded>>>,
}

const CONTAINER_JSON: &str = r#"{"Id":"0123456789ab0123456789abcdef0123456789abcdef0123456789abcdef","Name":"/x","Config":{"Tty":false,"OpenStdin":false},"State":{"Running":true,"Status":"running"},"HostConfig":{"AutoRemove":false}}"#;

impl Recorder {
    fn start(dir: &Path) -> Recorder {
        let socket = dir.join("recorder.sock");
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let log = shared.clone();
                std::thread::spawn(move || serve(conn, log));
            }
        });
        Recorder { socket, log }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs a CLI with `args` and returns what it sent (pings left out).
    fn record(&self, program: &str, args: &[&str], cwd: &Path) -> (Output, Vec<Recorded>) {
        self.log.lock().unwrap().clear();
        let mut cmd = Command::new(program);
        cmd.env("DOCKER_HOST", self.host())
            .env_remove("POLIS_HOST")
            .env("B", "bee")
            .current_dir(cwd)
            .args(args);
        let out = output(&mut cmd, None);
        let log = self.log.lock().unwrap().clone();
        (out, log)
    }

    /// The same command line through docker and polis: what each sent.
    fn both(&self, args: &[&str], cwd: &Path) -> (Vec<Recorded>, Vec<Recorded>) {
        let (docker_out, docker) = self.record(DOCKER, args, cwd);
        let (polis_out, polis) = self.record(POLIS, args, cwd);
        assert_eq!(
            docker_out.0, polis_out.0,
            "exit codes for {args:?}: docker {docker_out:?} polis {polis_out:?}"
        );
        (docker, polis)
    }
}

fn serve(conn: UnixStream, log: Arc<Mutex<Vec<Recorded>>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut words = line.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        // The version prefix differs by design (each CLI's newest): compare the rest.
        let path = match target.strip_prefix("/v") {
            Some(rest) => rest.find('/').map(|i| &rest[i..]).unwrap_or(rest),
            None => target,
        };
        let reply = |status: &str, body: &str| {
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let response = if path == "/_ping" {
            let body = if method == "HEAD" { "" } else { "OK" };
            format!("HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nOstype: linux\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        } else {
            log.lock().unwrap().push(Recorded {
                line: format!("{method} {path}"),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let p = path.split('?').next().unwrap_or_default();
            if p == "/containers/create" {
                reply(
                    "201 Created",
                    r#"{"Id":"0123456789ab0123456789abcdef0123456789abcdef0123456789abcdef","Warnings":[]}"#,
                )
            } else if p.ends_with("/update") {
                reply("200 OK", r#"{"Warnings":[]}"#)
            } else if p == "/containers/json" {
                reply("200 OK", "[]")
            } else if p.starts_with("/containers/") && p.ends_with("/json") {
                reply("200 OK", CONTAINER_JSON)
            } else if p.ends_with("/exec") {
                reply(
                    "201 Created",
                    r#"{"Id":"e0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"}"#,
                )
            } else if method == "DELETE"
                || p.ends_with("/stop")
                || p.ends_with("/kill")
                || p.ends_with("/restart")
                || p.ends_with("/pause")
                || p.ends_with("/unpause")
                || p.ends_with("/rename")
                || p.ends_with("/start")
            {
                "HTTP/1.1 204 No Content\r\n\r\n".to_string()
            } else if p.ends_with("/wait") {
                reply("200 OK", r#"{"Error":null,"StatusCode":3}"#)
            } else if p.ends_with("/top") {
                reply(
                    "200 OK",
                    r#"{"Titles":["UID","PID","CMD"],"Processes":[["root","1","sleep 1000"]]}"#,
                )
            } else if p == "/containers/prune" {
                reply("200 OK", r#"{"ContainersDeleted":null,"SpaceReclaimed":0}"#)
            } else if p == "/commit" {
                reply("201 Created", r#"{"Id":"sha256:0123"}"#)
            } else if p.ends_with("/changes") {
                reply(
                    "200 OK",
                    r#"[{"Path":"/tmp","Kind":0},{"Path":"/tmp/x","Kind":1}]"#,
                )
            } else {
                reply("500 Internal Server Error", r#"{"message":"recorder"}"#)
            }
        };
        if conn.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A create body as JSON, with `Binds` sorted (docker lists them from a map).
fn create_body(requests: &[Recorded]) -> (String, Value) {
    let create = requests
        .iter()
        .find(|r| r.line.contains("/containers/create"))
        .unwrap_or_else(|| panic!("no create request in {requests:?}"));
    let mut body: Value = serde_json::from_str(&create.body).unwrap();
    // docker lists binds and -e variables out of maps: their order is not its own.
    if let Some(binds) = body["HostConfig"]["Binds"].as_array_mut() {
        binds.sort_by_key(|b| b.to_string());
    }
    if let Some(env) = body["Env"].as_array_mut() {
        env.sort_by_key(|b| b.to_string());
    }
    (create.line.clone(), body)
}

/// Where two JSON values differ, as "path: left != right" lines.
fn json_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (l, r) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if x.contains_key(k) != y.contains_key(k) {
                    out.push(format!(
                        "{path}.{k}: {l} (present: {}) != {r} (present: {})",
                        x.contains_key(k),
                        y.contains_key(k)
                    ));
                } else {
                    json_diff(&format!("{path}.{k}"), l, r, out);
                }
            }
        }
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

fn assert_same_request(polis: (String, Value), docker: (String, Value), what: &str) {
    let mut diff = Vec::new();
    json_diff("", &polis.1, &docker.1, &mut diff);
    assert!(
        polis.0 == docker.0 && diff.is_empty(),
        "{what}: polis {} vs docker {}\n{}",
        polis.0,
        docker.0,
        diff.join("\n")
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polis-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every run/create flag: the create request polis sends is the one docker sends,
/// field for field (names, units, objects, defaults).
#[test]
fn create_requests_match_the_docker_cli() {
    let dir = temp_dir("create-body");
    let rec = Recorder::start(&dir);
    std::fs::write(
        dir.join("seccomp.json"),
        "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\",\n  \"syscalls\": [ {\"names\": [\"mkdir\"], \"action\": \"SCMP_ACT_ERRNO\"} ]\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("env.list"),
        "A=1\n# a comment\n\nB\nNOT_SET_ANYWHERE\nC=x y\n",
    )
    .unwrap();
    std::fs::write(dir.join("labels.list"), "l1=v1\nl2\n").unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--rm", "--name", "n1"],
        vec!["-i", "-t"],
        vec!["-a", "stdout"],
        vec![
            "-e",
            "X=1",
            "-e",
            "B",
            "-e",
            "UNSET_X",
            "--env-file",
            "env.list",
        ],
        vec!["-w", "/tmp", "-u", "1000:1000", "-h", "host.example"],
        vec!["--entrypoint", "/bin/sh"],
        vec!["--entrypoint="],
        vec!["-l", "a=b", "-l", "c", "--label-file", "labels.list"],
        vec!["--restart", "on-failure:3"],
        vec!["--restart", "always"],
        vec!["--stop-signal", "SIGUSR1", "--stop-timeout", "5"],
        vec!["--stop-timeout", "0"],
        vec!["--init"],
        vec!["--init=false"],
        vec!["--read-only", "--tmpfs", "/run:size=64k", "--tmpfs", "/t2"],
        vec![
            "--cap-add",
            "SYS_ADMIN",
            "--cap-add",
            "all",
            "--cap-drop",
            "net_raw",
        ],
        vec!["--privileged"],
        vec![
            "--security-opt",
            "seccomp=seccomp.json",
            "--security-opt",
            "no-new-privileges",
        ],
        vec![
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "systempaths=unconfined",
            "--security-opt",
            "label=disable",
        ],
        vec![
            "-m",
            "512m",
            "--memory-swap",
            "1g",
            "--memory-reservation",
            "256m",
        ],
        vec!["--memory", "1.5g", "--memory-swap", "-1"],
        vec![
            "--cpus",
            "1.5",
            "-c",
            "512",
            "--cpuset-cpus",
            "0-1",
            "--cpuset-mems",
            "0",
        ],
        vec!["--cpus", "0.001"],
        vec!["--pids-limit", "100"],
        vec!["--pids-limit", "-1"],
        vec!["--ulimit", "nofile=1024:2048", "--ulimit", "nproc=50"],
        vec![
            "--device",
            "/dev/null:/dev/mynull:rw",
            "--device",
            "/dev/zero",
            "--device",
            "/dev/fuse:rw",
        ],
        vec![
            "--sysctl",
            "net.core.somaxconn=100",
            "--sysctl",
            "kernel.shmmax=1000",
        ],
        vec!["--shm-size", "128m"],
        vec!["--shm-size", "64"],
        vec!["--network", "none"],
        vec!["--network", "host"],
        vec![
            "-v",
            "/tmp:/data:ro",
            "-v",
            "vol:/v",
            "-v",
            "/anon",
            "-v",
            "./rel:/r",
        ],
        vec![
            "--mount",
            "type=bind,src=/tmp,dst=/m,readonly",
            "--mount",
            "type=tmpfs,dst=/tm,tmpfs-size=1m,tmpfs-mode=1770",
            "--mount",
            "type=volume,src=vv,dst=/vv",
            "--mount",
            "dst=/anon2",
            "--mount",
            "type=bind,source=./rel,target=/x,bind-propagation=rslave",
        ],
        vec![
            "--log-driver",
            "json-file",
            "--log-opt",
            "max-size=1m",
            "--log-opt",
            "max-file=2",
        ],
        vec!["--log-driver", "none"],
    ];
    for flags in &cases {
        let mut args = vec!["create"];
        args.extend(flags.iter().copied());
        args.extend(["busybox:local", "sh", "-c", "echo -h"]);
        let (docker, polis) = rec.both(&args, &dir);
        assert_same_request(
            create_body(&polis),
            create_body(&docker),
            &format!("create {flags:?}"),
        );
        // `polis container create` is the same command.
        args.insert(0, "container");
        let (_, polis) = rec.record(POLIS, &args, &dir);
        assert_same_request(
            create_body(&polis),
            create_body(&docker),
            &format!("container create {flags:?}"),
        );
    }
    // Flags after the image are the command's, as with docker.
    let (docker, polis) = rec.both(&["create", "busybox:local", "-c", "512", "--rm"], &dir);
    assert_eq!(create_body(&polis), create_body(&docker));
    assert_eq!(
        create_body(&polis).1["Cmd"],
        serde_json::json!(["-c", "512", "--rm"])
    );

    // Bad values are refused before anything is created, with docker's exit code.
    for bad in [
        vec!["-m", "abc"],
        vec!["-m", "10x"],
        vec!["--cpus", "0.0000000001"],
        vec!["--cpus", "abc"],
        vec!["--ulimit", "nofile=20:10"],
        vec!["--ulimit", "bogus=1"],
        vec!["--sysctl", "kernel.foo=1"],
        vec!["--device", "/dev/null:rel"],
        vec!["--mount", "type=bind"],
        vec!["--mount", "foo=bar,dst=/x"],
        vec!["--security-opt", "foo"],
        vec!["--security-opt", "seccomp=nosuch.json"],
        vec!["--env-file", "nosuch.list"],
        vec!["--rm", "--restart", "always"],
        vec!["--restart", "on-failure:x"],
        vec!["--pull", "sometimes"],
        vec!["-v", "rel:/x:ro:z"],
        vec!["--no-such-flag"],
    ] {
        let mut args = vec!["run"];
        args.extend(bad.iter().copied());
        args.extend(["busybox:local", "true"]);
        let (docker, polis) = rec.both(&args, &dir);
        assert!(
            !docker
                .iter()
                .chain(&polis)
                .any(|r| r.line.contains("create")),
            "{bad:?} created a container"
        );
        let ((code, _, err), _) = rec.record(POLIS, &args, &dir);
        assert_eq!(code, 125, "{bad:?}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The other verbs send the same requests, in the same order, as docker's.
#[test]
fn verb_requests_match_the_docker_cli() {
    let dir = temp_dir("verb-requests");
    let rec = Recorder::start(&dir);
    let export = dir.join("export.tar");
    let export = export.to_str().unwrap();
    let commands: Vec<Vec<&str>> = vec![
        vec!["ps"],
        vec!["ps", "-a"],
        vec!["ps", "-n", "3"],
        vec!["ps", "-l"],
        vec!["ps", "-s"],
        vec!["ps", "--format", "{{.Names}} {{.Size}}"],
        vec!["ps", "-q", "--format", "{{.Size}}"],
        vec![
            "ps",
            "-f",
            "status=running",
            "-f",
            "name=x",
            "--filter",
            "label=a=b",
        ],
        vec!["container", "ls", "-a"],
        vec!["container", "list", "-q"],
        vec!["stop", "x"],
        vec!["stop", "-t", "3", "-s", "KILL", "x", "y"],
        vec!["kill", "x"],
        vec!["kill", "-s", "HUP", "x"],
        vec!["restart", "-t", "2", "x"],
        vec!["rm", "x"],
        vec!["rm", "-f", "-v", "x"],
        vec!["container", "rm", "-f", "x"],
        vec!["pause", "x", "y"],
        vec!["unpause", "x"],
        vec!["wait", "x"],
        vec!["rename", "x", "y"],
        vec!["top", "x"],
        vec!["top", "x", "aux"],
        vec!["start", "x", "y"],
        vec![
            "update",
            "--memory",
            "64m",
            "--cpus",
            "1",
            "--restart",
            "always",
            "--pids-limit",
            "10",
            "x",
        ],
        vec![
            "update",
            "--cpu-shares",
            "512",
            "--memory-swap",
            "-1",
            "-m",
            "1g",
            "x",
        ],
        vec!["export", "x", "-o", export],
        vec![
            "commit",
            "-a",
            "me",
            "-m",
            "msg",
            "-c",
            "CMD [\"sh\"]",
            "x",
            "repo:tag",
        ],
        vec!["commit", "--pause=false", "x", "me/app"],
        vec!["diff", "x"],
        vec!["container", "prune", "-f"],
        vec![
            "container",
            "prune",
            "-f",
            "--filter",
            "until=1h",
            "--filter",
            "label=a",
        ],
        vec!["stats", "--no-stream", "x"],
        vec!["logs", "x"],
        vec!["logs", "-f", "--tail", "5", "-t", "x"],
        vec![
            "logs",
            "--since",
            "1700000000",
            "--until",
            "2020-01-01T00:00:00Z",
            "x",
        ],
        vec!["inspect", "x"],
        vec!["inspect", "--type", "container", "-s", "x"],
        vec!["container", "inspect", "x"],
        vec!["exec", "x", "true"],
        vec![
            "exec", "-d", "-i", "-t", "-e", "A=1", "-u", "u", "-w", "/w", "x", "sh",
        ],
        vec!["exec", "--privileged", "x", "sh", "-c", "exit 1"],
    ];
    for args in &commands {
        let (docker, polis) = rec.both(args, &dir);
        // docker acts on several containers at once: their requests come in any order.
        let parallel = args.contains(&"y");
        let lines = |r: &[Recorded]| {
            let mut l: Vec<String> = r.iter().map(|r| r.line.clone()).collect();
            if parallel {
                l.sort();
            }
            l
        };
        assert_eq!(lines(&polis), lines(&docker), "{args:?}");
        for (p, d) in polis.iter().zip(&docker).filter(|_| !parallel) {
            let parse = |b: &str| serde_json::from_str::<Value>(b).unwrap_or(Value::Null);
            assert_same_request(
                (p.line.clone(), parse(&p.body)),
                (d.line.clone(), parse(&d.body)),
                &format!("{args:?}"),
            );
        }
    }
    // Same output where it is computed by the client.
    for args in [
        vec!["top", "x"],
        vec!["diff", "x"],
        vec!["wait", "x"],
        vec!["container", "prune", "-f"],
        vec!["ps", "-a"],
        vec!["stop", "x", "y"],
    ] {
        let (docker, _) = rec.record(DOCKER, &args, &dir);
        let (polis, _) = rec.record(POLIS, &args, &dir);
        assert_eq!(polis, docker, "{args:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
