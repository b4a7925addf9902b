//! The `polis` client's container verbs. Against a recorder (a tiny Engine API on a
//! unix socket that answers and remembers every request), polis must send what the
//! unmodified docker CLI sends for the same command line; against polisd, it must
//! print what docker prints and exit with the same codes.

mod common;

use common::daemon::{import_busybox, leftovers, output, Daemon, Output, DOCKER};
use common::recorder::{self, reply, unexpected, Request, NO_CONTENT};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
struct Recorder(recorder::Recorder);

const CONTAINER_JSON: &str = r#"{"Id":"0123456789ab0123456789abcdef0123456789abcdef0123456789abcdef","Name":"/x","Config":{"Tty":false,"OpenStdin":false},"State":{"Running":true,"Status":"running"},"HostConfig":{"AutoRemove":false}}"#;

impl Recorder {
    fn start(dir: &Path) -> Recorder {
        Recorder(recorder::Recorder::start(
            &dir.join("recorder.sock"),
            answer,
        ))
    }

    fn host(&self) -> String {
        self.0.host()
    }

    /// Runs a CLI with `args` and returns what it sent (pings left out).
    fn record(&self, program: &str, args: &[&str], cwd: &Path) -> (Output, Vec<Recorded>) {
        self.0.clear();
        let mut cmd = Command::new(program);
        cmd.env("DOCKER_HOST", self.host())
            .env_remove("POLIS_HOST")
            .env("B", "bee")
            .current_dir(cwd)
            .args(args);
        let out = output(&mut cmd, None);
        let log = self
            .0
            .requests()
            .into_iter()
            .map(|r| Recorded {
                line: format!("{} {}", r.method, r.path),
                body: String::from_utf8_lossy(&r.body).into_owned(),
            })
            .collect();
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

fn answer(r: &Request) -> String {
    let (method, p) = (r.method.as_str(), r.route());
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
        NO_CONTENT.to_string()
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
        unexpected()
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

/// The `polis` client next to the docker CLI on the same daemon.
trait BothClis {
    fn polis_in(&self, args: &[&str], stdin: Option<&Path>) -> Output;
    fn polis(&self, args: &[&str]) -> Output {
        self.polis_in(args, None)
    }
    fn same(&self, args: &[&str]) -> Output;
    fn polis_piped(&self, args: &[&str], input: &[u8]) -> Output;
}

impl BothClis for Daemon {
    /// `polis -H … ARGS`: the host comes from the flag, not the environment.
    fn polis_in(&self, args: &[&str], stdin: Option<&Path>) -> Output {
        output(
            Command::new(POLIS)
                .env_remove("DOCKER_HOST")
                .env_remove("POLIS_HOST")
                .current_dir(&self.dir)
                .arg("-H")
                .arg(self.host())
                .args(args),
            stdin,
        )
    }

    /// Runs `args` with both CLIs and requires the same exit code and output.
    fn same(&self, args: &[&str]) -> Output {
        let polis = self.polis(args);
        let docker = self.docker(args);
        assert_eq!(polis, docker, "polis vs docker for {args:?}");
        polis
    }

    /// `polis ARGS` with `input` on a pipe as its stdin (the host from POLIS_HOST).
    fn polis_piped(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = Command::new(POLIS)
            .env("POLIS_HOST", self.host())
            .env_remove("DOCKER_HOST")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A command under a pseudo-terminal of the given size (script(1)); its output with
/// the terminal's carriage returns and script's NUL left out.
fn under_pty(d: &Daemon, rows: u16, cols: u16, cmd: &str) -> String {
    under_pty_typing(d, rows, cols, cmd, None)
}

/// [`under_pty`], with `typed` written to the terminal a second after the start.
fn under_pty_typing(d: &Daemon, rows: u16, cols: u16, cmd: &str, typed: Option<&[u8]>) -> String {
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("stty cols {cols} rows {rows}; {cmd}"),
            "/dev/null",
        ])
        .env("POLIS_HOST", d.host())
        .env("DOCKER_HOST", d.host())
        .stdin(if typed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(bytes) = typed {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::sleep(Duration::from_secs(1));
        stdin.write_all(bytes).unwrap();
        // Held open a little: script ends its session at our EOF.
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .replace(['\r', '\0'], "")
        .replace("^@", "")
}

#[test]
fn run_passes_streams_and_exit_codes_through() {
    let d = Daemon::start("cli-run");
    import_busybox(&d);
    // Foreground: both streams, the exit code.
    let (code, out, err) = d.polis(&[
        "run",
        "--rm",
        "busybox:local",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    // stdin piped with -i, ended by its EOF.
    let (code, out, err) =
        d.polis_piped(&["run", "-i", "--rm", "busybox:local", "cat"], b"piped\n");
    assert_eq!((code, out.as_str()), (0, "piped\n"), "{err}");
    // Without -i the container's stdin is closed at once.
    let (code, out, _) = d.polis_piped(&["run", "--rm", "busybox:local", "cat"], b"ignored\n");
    assert_eq!((code, out.as_str()), (0, ""));
    // `container run` is the same verb.
    let (code, out, _) = d.polis(&["container", "run", "--rm", "busybox:local", "echo", "hi"]);
    assert_eq!((code, out.as_str()), (0, "hi\n"));

    // Errors and their codes: the command is missing (127) or cannot run (126); an
    // unknown image or a bad flag is the engine's error (125).
    let (code, _, err) = d.polis(&["run", "--rm", "busybox:local", "no-such-command"]);
    assert_eq!(code, 127, "{err}");
    assert!(
        err.starts_with("polis: Error response from daemon: "),
        "{err}"
    );
    assert!(err.contains("no-such-command"), "{err}");
    assert!(
        err.ends_with("\n\nRun 'polis run --help' for more information\n"),
        "{err}"
    );
    let (code, _, err) = d.polis(&["run", "--rm", "busybox:local", "/etc"]);
    assert_eq!(code, 126, "{err}");
    // (a registry that refuses the connection: no test reaches for the internet)
    let (code, _, err) = d.polis(&["run", "--rm", "127.0.0.1:9/nosuch:latest"]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.starts_with("Unable to find image '127.0.0.1:9/nosuch:latest' locally\n"),
        "{err}"
    );
    let (code, _, err) = d.polis(&["run", "--no-such-flag", "busybox:local"]);
    assert_eq!(code, 125, "{err}");
    let (code, _, err) = d.polis(&["run", "-m", "lots", "busybox:local"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("invalid size: 'lots'"), "{err}");
    // Options the daemon refuses: docker's code and message.
    let (polis_code, _, polis_err) =
        d.polis(&["run", "--rm", "--memory", "64m", "busybox:local", "true"]);
    let (docker_code, _, docker_err) =
        d.docker(&["run", "--rm", "--memory", "64m", "busybox:local", "true"]);
    assert_eq!(polis_code, docker_code);
    assert_eq!(polis_err.replace("polis", "docker"), docker_err);
    // Same codes as docker for all of them; nothing left behind.
    for args in [
        vec!["run", "--rm", "busybox:local", "no-such-command"],
        vec!["run", "--rm", "busybox:local", "/etc"],
        vec!["run", "--rm", "127.0.0.1:9/nosuch:latest"],
        vec!["create", "127.0.0.1:9/nosuch:latest"],
        vec!["run", "--rm", "busybox:local", "sh", "-c", "exit 3"],
    ] {
        assert_eq!(d.polis(&args).0, d.docker(&args).0, "{args:?}");
    }
    assert_eq!(d.docker(&["ps", "-aq"]).1, "");
}

#[test]
fn detached_containers_listed_inspected_stopped_and_removed() {
    let d = Daemon::start("cli-ps");
    import_busybox(&d);
    let (code, id, err) = d.polis(&[
        "run",
        "-d",
        "--name",
        "web",
        "-l",
        "tier=front",
        "busybox:local",
        "sh",
        "-c",
        "echo started; exec sleep 1000",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let (code, created, err) = d.polis(&[
        "create",
        "--name",
        "later",
        "busybox:local",
        "echo",
        "created",
    ]);
    assert_eq!(code, 0, "{err}");
    let created = created.trim().to_string();

    // ps in every form, byte for byte as docker prints it.
    // (.Status counts seconds, which may tick between the two CLIs.)
    let (_, out, _) = d.same(&["ps", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(out, "web running\n");
    d.same(&["ps", "-q"]);
    d.same(&["ps", "-aq"]);
    d.same(&[
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}}\t{{.Command}}\t{{.State}}",
    ]);
    d.same(&[
        "ps",
        "--format",
        "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.Names}}",
    ]);
    d.same(&[
        "ps",
        "--format",
        "{{.Label \"tier\"}} {{.Labels}} {{.Mounts}} {{.Ports}}",
    ]);
    d.same(&[
        "ps",
        "-a",
        "--format",
        "{{json .State}} {{.Image}} {{.CreatedAt}}",
    ]);
    d.same(&["container", "ls", "-a", "--format", "{{.Names}}"]);
    let (_, table, _) = d.polis(&["ps"]);
    // The CREATED column's width depends on the second the rows were made.
    let header = table.lines().next().unwrap_or_default();
    let titles: Vec<&str> = header
        .split("   ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(
        titles,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ]
    );
    assert!(
        header.starts_with("CONTAINER ID   IMAGE           COMMAND                  CREATED "),
        "{header}"
    );
    // Arguments with spaces quoted, as Docker lists them.
    assert!(table.contains("   \"sh -c 'echo started…\"   "), "{table}");

    // logs and inspect.
    wait_until("the first log line", || {
        d.polis(&["logs", "web"]).1 == "started\n"
    });
    d.same(&["logs", "web"]);
    d.same(&["logs", "--tail", "1", "web"]);
    let (_, out, _) = d.same(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.Name}} {{.Config.Labels}}",
        "web",
    ]);
    assert_eq!(out, "running /web map[tier:front]\n");
    d.same(&["inspect", "web", "later"]);
    d.same(&[
        "container",
        "inspect",
        "--format",
        "{{json .Config.Cmd}}",
        "later",
    ]);
    d.same(&[
        "inspect",
        "--type",
        "image",
        "-f",
        "{{.Id}}",
        "busybox:local",
    ]);
    let (code, out, err) = d.same(&["inspect", "nosuch"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (1, "[]\n", "Error: No such object: nosuch\n")
    );
    d.same(&["container", "inspect", "nosuch"]);

    // start -a runs the created container attached, with its exit code.
    let (code, out, _) = d.polis(&["start", "-a", "later"]);
    assert_eq!((code, out.as_str()), (0, "created\n"));
    d.same(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);

    // stop, wait, rm, and their errors.
    let (code, out, _) = d.polis(&["stop", "-t", "1", "web"]);
    assert_eq!((code, out.as_str()), (0, "web\n"));
    let (_, out, _) = d.polis(&[
        "ps",
        "-a",
        "--filter",
        "status=exited",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(out.contains("web Exited (137) "), "{out}");
    let (code, out, _) = d.same(&["wait", "web", "later"]);
    assert_eq!((code, out.as_str()), (0, "137\n0\n"));
    let (code, out, _) = d.polis(&["rm", "web", "later"]);
    assert_eq!((code, out.as_str()), (0, "web\nlater\n"));
    let (code, out, err) = d.same(&["rm", "web"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (
            1,
            "",
            "Error response from daemon: No such container: web\n"
        )
    );
    d.same(&["stop", "nosuch"]);
    d.same(&["wait", "nosuch"]);
    d.same(&["logs", "nosuch"]);

    // kill and rm -f.
    let (_, k, _) = d.polis(&[
        "run",
        "-d",
        "--name",
        "killed",
        "busybox:local",
        "sleep",
        "1000",
    ]);
    let (code, out, _) = d.polis(&["kill", "-s", "KILL", "killed"]);
    assert_eq!((code, out.as_str()), (0, "killed\n"));
    let (code, out, _) = d.polis(&["wait", "killed"]);
    assert_eq!((code, out.as_str()), (0, "137\n"));
    let (_, f, _) = d.polis(&[
        "run",
        "-d",
        "--name",
        "forced",
        "busybox:local",
        "sleep",
        "1000",
    ]);
    let (code, _, err) = d.polis(&["rm", "forced"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("stop the container before removing or force remove"),
        "{err}"
    );
    let (code, out, _) = d.polis(&["container", "rm", "-f", "forced", "killed"]);
    assert_eq!((code, out.as_str()), (0, "forced\nkilled\n"));
    assert_eq!(d.polis(&["ps", "-aq"]).1, "");
    let ids = [id, created, k.trim().to_string(), f.trim().to_string()];
    assert_eq!(leftovers(&d, &ids), Vec::<String>::new());
}

#[test]
fn exec_attach_logs_follow_and_signals() {
    let d = Daemon::start("cli-exec");
    import_busybox(&d);
    assert_eq!(
        d.polis(&[
            "run",
            "-d",
            "--name",
            "box",
            "busybox:local",
            "sleep",
            "1000"
        ])
        .0,
        0
    );
    let (code, out, err) = d.polis(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    let (code, out, _) = d.polis(&[
        "exec",
        "-u",
        "nobody",
        "-w",
        "/tmp",
        "-e",
        "FOO=bar",
        "box",
        "sh",
        "-c",
        "id -u; pwd; echo $FOO",
    ]);
    assert_eq!((code, out.as_str()), (0, "65534\n/tmp\nbar\n"));
    let (code, out, _) = d.polis_piped(&["exec", "-i", "box", "cat"], b"piped\n");
    assert_eq!((code, out.as_str()), (0, "piped\n"));
    let (code, _, err) = d.polis(&["exec", "-d", "box", "touch", "/tmp/detached"]);
    assert_eq!(code, 0, "{err}");
    wait_until("the detached exec", || {
        d.polis(&["exec", "box", "ls", "/tmp/detached"]).0 == 0
    });
    assert_eq!(
        d.polis(&["exec", "box", "no-such-command"]).0,
        d.docker(&["exec", "box", "no-such-command"]).0
    );
    d.same(&["exec", "nosuch", "true"]);
    let (code, _, err) = d.polis(&["exec", "--bogus", "box", "true"]);
    assert_eq!(code, 125, "{err}");

    // logs -f follows until the container ends.
    assert_eq!(
        d.polis(&[
            "run",
            "-d",
            "--name",
            "counter",
            "busybox:local",
            "sh",
            "-c",
            "for i in 1 2 3; do echo $i; sleep 0.3; done; echo done >&2",
        ])
        .0,
        0
    );
    let (code, out, err) = d.polis(&["logs", "-f", "counter"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (0, "1\n2\n3\n", "done\n")
    );

    // attach to a running container: its output, and its exit code at the end.
    assert_eq!(
        d.polis(&[
            "run",
            "-d",
            "--name",
            "late",
            "busybox:local",
            "sh",
            "-c",
            "sleep 0.5; echo late; exit 4"
        ])
        .0,
        0
    );
    let (code, out, _) = d.polis(&["attach", "late"]);
    assert_eq!((code, out.as_str()), (4, "late\n"));
    let (code, _, err) = d.same(&["attach", "late"]);
    assert_eq!(code, 1, "{err}");

    // A signal to a foreground `polis run` reaches the container (--sig-proxy).
    let mut child = Command::new(POLIS)
        .env("POLIS_HOST", d.host())
        .args([
            "run",
            "--rm",
            "busybox:local",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    // SAFETY: kill(2) on the child we just spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!((status.code(), rest.as_str()), (Some(3), "got TERM\n"));
    assert_eq!(d.polis(&["rm", "-f", "box", "counter", "late"]).0, 0);
}

#[test]
fn terminals_and_pause() {
    let d = Daemon::start("cli-tty");
    import_busybox(&d);
    assert_eq!(
        d.polis(&[
            "run",
            "-d",
            "--name",
            "box",
            "busybox:local",
            "sleep",
            "1000"
        ])
        .0,
        0
    );
    let (code, out, _) = d.polis(&["pause", "box"]);
    assert_eq!((code, out.as_str()), (0, "box\n"));
    d.same(&["ps", "--format", "{{.State}}"]);
    let (code, _, err) = d.same(&["pause", "box"]);
    assert_eq!(code, 1);
    assert!(err.contains("already paused"), "{err}");
    let (code, out, _) = d.polis(&["unpause", "box"]);
    assert_eq!((code, out.as_str()), (0, "box\n"));
    let status = d.polis(&["ps", "--format", "{{.Status}}"]).1;
    assert!(
        status.starts_with("Up ") && !status.contains("Paused"),
        "{status}"
    );

    // Under a pty: raw terminal, the container's terminal sized as ours, stderr merged.
    let out = under_pty(
        &d,
        33,
        111,
        &format!(
            "{POLIS} run -it --rm busybox:local sh -c 'sleep 0.3; tty; stty size; echo err >&2'"
        ),
    );
    assert_eq!(out.trim(), "/dev/pts/0\n33 111\nerr");
    let out = under_pty(
        &d,
        31,
        101,
        &format!("{POLIS} exec -it box sh -c 'sleep 0.3; stty size'"),
    );
    assert_eq!(out.trim(), "31 101");
    // Typed input reaches the shell, and its exit code comes back.
    let out = under_pty(
        &d,
        24,
        80,
        &format!("(sleep 1; printf 'echo typed-$((40+2))\\nexit 5\\n') | {POLIS} run -i --rm busybox:local sh; echo code=$?"),
    );
    assert!(out.contains("typed-42") && out.contains("code=5"), "{out}");
    // ctrl-p ctrl-q detaches: polis exits 0, the container runs on.
    let out = under_pty_typing(
        &d,
        24,
        80,
        &format!("{POLIS} run -it --name detached busybox:local sh; echo code=$?"),
        Some(b"\x10\x11"),
    );
    assert!(out.contains("code=0"), "{out}");
    assert_eq!(
        d.polis(&["inspect", "-f", "{{.Name}} {{.State.Status}}", "detached"])
            .1,
        "/detached running\n"
    );
    // A tty without a terminal on stdin is refused, as by docker.
    let (code, _, err) = d.polis_piped(&["run", "-it", "--rm", "busybox:local", "true"], b"");
    assert_eq!((code, err.as_str()), (1, "the input device is not a TTY\n"));
    // -t alone: the output comes raw, with the terminal's line endings.
    let (code, out, _) = d.polis(&["run", "-t", "--rm", "busybox:local", "echo", "hi"]);
    assert_eq!((code, out.as_str()), (0, "hi\r\n"));
    assert_eq!(d.polis(&["rm", "-f", "box", "detached"]).0, 0);
}

/// rename, top, cp, commit, export, diff, stats, update, prune, logs
/// --since/--until/-t and ps -n/--filter, through the polis CLI.
#[test]
fn filesystem_and_management_verbs() {
    let d = Daemon::start("cli-more");
    import_busybox(&d);
    assert_eq!(
        d.polis(&[
            "run",
            "-d",
            "--name",
            "box",
            "busybox:local",
            "sh",
            "-c",
            "echo hello > /greeting; echo one; echo two; exec sleep 1000"
        ])
        .0,
        0
    );
    wait_until("the greeting", || {
        d.polis(&["exec", "box", "cat", "/greeting"]).1 == "hello\n"
    });
    // rename
    let (code, _, err) = d.polis(&["rename", "box", "renamed"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(d.polis(&["ps", "--format", "{{.Names}}"]).1, "renamed\n");
    // top
    // (Columns that do not change between the two CLIs' calls.)
    let (code, out, err) = d.same(&["top", "renamed", "-o", "pid,args"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("PID ") && out.contains("sleep 1000"),
        "{out}"
    );
    // diff
    let (code, out, _) = d.same(&["diff", "renamed"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l == "A /greeting"), "{out}");
    // cp both ways, and through a tar on stdout.
    let local = d.dir.join("copied");
    let (code, _, err) = d.polis(&["cp", "renamed:/greeting", local.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "hello\n");
    std::fs::write(d.dir.join("up.txt"), "up\n").unwrap();
    let (code, _, err) = d.polis(&[
        "cp",
        d.dir.join("up.txt").to_str().unwrap(),
        "renamed:/tmp/",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        d.polis(&["exec", "renamed", "cat", "/tmp/up.txt"]).1,
        "up\n"
    );
    let (code, _, err) = d.polis(&[
        "cp",
        d.dir.join("up.txt").to_str().unwrap(),
        "renamed:/tmp/renamed.txt",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        d.polis(&["exec", "renamed", "cat", "/tmp/renamed.txt"]).1,
        "up\n"
    );
    let tar = Command::new(POLIS)
        .env("POLIS_HOST", d.host())
        .args(["cp", "renamed:/greeting", "-"])
        .output()
        .unwrap();
    assert!(tar.status.success());
    assert_eq!(&tar.stdout[..8], b"greeting");
    // export and commit
    let exported = d.dir.join("export.tar");
    let (code, _, err) = d.polis(&["export", "-o", exported.to_str().unwrap(), "renamed"]);
    assert_eq!(code, 0, "{err}");
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&exported)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout)
        .lines()
        .any(|l| l.trim_start_matches("./") == "greeting"));
    let (code, image, err) = d.polis(&[
        "commit",
        "-c",
        "CMD [\"cat\", \"/greeting\"]",
        "renamed",
        "committed:v1",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(image.starts_with("sha256:"), "{image}");
    let (code, out, _) = d.polis(&["run", "--rm", "committed:v1"]);
    assert_eq!((code, out.as_str()), (0, "hello\n"));
    // stats, one table.
    let (code, out, err) = d.polis(&["stats", "--no-stream", "renamed"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = out.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("CONTAINER ID   NAME      CPU %"),
        "{out}"
    );
    assert!(lines.next().unwrap().contains(" renamed "), "{out}");
    let (_, out, _) = d.same(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}}",
        "renamed",
    ]);
    assert_eq!(out, "renamed 1\n");
    // update
    let (code, out, err) = d.polis(&["update", "--pids-limit", "50", "renamed"]);
    assert_eq!((code, out.as_str()), (0, "renamed\n"), "{err}");
    d.same(&["inspect", "-f", "{{.HostConfig.PidsLimit}}", "renamed"]);
    // logs with timestamps, since and until; ps -n and filters.
    let (_, out, _) = d.polis(&["logs", "-t", "renamed"]);
    assert!(
        out.lines().all(|l| l.len() > 30 && l.contains('T')),
        "{out}"
    );
    assert_eq!(
        d.polis(&["logs", "--until", "2000-01-01T00:00:00Z", "renamed"])
            .1,
        ""
    );
    d.same(&["logs", "--since", "1h", "renamed"]);
    assert_eq!(d.polis(&["run", "-d", "busybox:local", "true"]).0, 0);
    d.same(&["ps", "-a", "-n", "1", "--format", "{{.Image}} {{.Command}}"]);
    d.same(&[
        "ps",
        "-a",
        "--filter",
        "name=renamed",
        "--format",
        "{{.Names}}",
    ]);
    // prune removes the stopped one.
    wait_until("the short container to stop", || {
        d.polis(&["ps", "-aq"]).1.lines().count() == 2
            && d.polis(&["ps", "-q"]).1.lines().count() == 1
    });
    let (code, out, _) = d.polis(&["container", "prune", "-f"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Deleted Containers:\n") && out.ends_with("Total reclaimed space: 0B\n"),
        "{out}"
    );
    assert_eq!(d.polis(&["ps", "-aq"]).1.lines().count(), 1);
    assert_eq!(d.polis(&["rm", "-f", "renamed"]).0, 0);
}
