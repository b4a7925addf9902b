//! The `polis volume` verbs. Against a recorder (a tiny Engine API on a unix socket
//! that answers and remembers every request), polis must send what the unmodified
//! docker CLI sends for the same command line and print what it prints; against
//! polisd, `volume create/ls/inspect/rm/prune` must print what docker prints.

mod common;

use common::daemon::{output, Daemon, Output, DOCKER};
use common::recorder::{self, reply, unexpected, Request, NO_CONTENT};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const POLIS: &str = env!("CARGO_BIN_EXE_polis");

const VOLUME_JSON: &str = r#"{"CreatedAt":"2024-01-01T00:00:00Z","Driver":"local","Labels":{"a":"1"},"Mountpoint":"/var/lib/polis/volumes/v1/_data","Name":"v1","Options":null,"Scope":"local"}"#;

/// One request as the recorder saw it: "METHOD /path?query" and its body.
type Recorded = (String, Value);

struct Recorder(recorder::Recorder);

impl Recorder {
    fn start(dir: &Path) -> Recorder {
        Recorder(recorder::Recorder::start(
            &dir.join("recorder.sock"),
            answer,
        ))
    }

    /// Runs a CLI with `args`: its output and what it sent (pings left out).
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
            .map(|r| {
                let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                (format!("{} {}", r.method, r.path), body)
            })
            .collect();
        (out, log)
    }
}

/// What the CLIs need to get on with a volume command.
fn answer(r: &Request) -> String {
    match (r.method.as_str(), r.route()) {
        ("POST", "/volumes/create") => reply("201 Created", VOLUME_JSON),
        ("POST", "/containers/create") => reply(
            "201 Created",
            r#"{"Id":"0123456789ab0123456789abcdef0123456789abcdef0123456789abcdef","Warnings":[]}"#,
        ),
        ("POST", "/volumes/prune") => reply(
            "200 OK",
            r#"{"VolumesDeleted":["a","b"],"SpaceReclaimed":1234567}"#,
        ),
        ("GET", "/volumes") => reply(
            "200 OK",
            &format!(r#"{{"Volumes":[{VOLUME_JSON}],"Warnings":null}}"#),
        ),
        ("GET", _) => reply("200 OK", VOLUME_JSON),
        ("DELETE", _) => NO_CONTENT.to_string(),
        _ => unexpected(),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polis-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every volume verb (one label only: docker joins labels in Go's random map order):
/// polis sends what docker sends, request for request, and prints
/// what docker prints from the same answers.
#[test]
fn volume_requests_and_output_match_the_docker_cli() {
    let dir = temp_dir("vol-requests");
    let rec = Recorder::start(&dir);
    let cases: Vec<Vec<&str>> = vec![
        vec!["volume", "create", "v1"],
        // The volume flags of create.
        vec![
            "create", "--volumes-from", "a:ro", "--volumes-from", "b", "-v", "x:/y:nocopy",
            "-v", "/anon", "--mount",
            "type=volume,src=m,dst=/m,volume-opt=type=tmpfs,volume-label=l=1,volume-nocopy",
            "busybox:local",
        ],
        vec!["volume", "create"],
        vec![
            "volume", "create", "-d", "local", "--opt", "type=tmpfs", "-o", "device=tmpfs",
            "--opt", "o=size=1m,uid=1000", "--label", "a=b", "--label", "c", "v2",
        ],
        vec!["volume", "ls"],
        vec!["volume", "ls", "-q", "--filter", "dangling=true", "--filter", "label=a"],
        vec!["volume", "ls", "--format", "{{.Name}}|{{.Labels}}|{{.Mountpoint}}|{{.Scope}}|{{.Links}}|{{.Size}}|{{.Label \"a\"}}"],
        vec!["volume", "ls", "--format", "table {{.Name}}\t{{.Scope}}\t{{.Mountpoint}}"],
        vec!["volume", "ls", "--format", "json"],
        vec!["volume", "inspect", "v1"],
        vec!["volume", "inspect", "--format", "{{.Name}} {{.Labels.a}}", "v1", "v2"],
        vec!["volume", "rm", "v1"],
        vec!["volume", "rm", "-f", "v1", "v2"],
        vec!["volume", "prune", "-f"],
        vec!["volume", "prune", "-f", "-a", "--filter", "label=a"],
        vec!["volume", "prune", "--force", "--filter", "label!=keep"],
    ];
    for args in cases {
        let (want, want_reqs) = rec.record(DOCKER, &args);
        let (got, got_reqs) = rec.record(POLIS, &args);
        assert_eq!(want.0, 0, "docker {args:?}: {}", want.2);
        assert_eq!(got_reqs, want_reqs, "polis {args:?} sent other requests");
        assert_eq!(got.0, want.0, "polis {args:?}: {}", got.2);
        assert_eq!(got.1, want.1, "polis {args:?} printed otherwise");
    }
    // Refused before any request, as docker refuses it.
    let args = ["volume", "prune", "-f", "-a", "--filter", "all=1"];
    let (want, want_reqs) = rec.record(DOCKER, &args);
    let (got, got_reqs) = rec.record(POLIS, &args);
    assert!(want_reqs.is_empty() && got_reqs.is_empty());
    assert_ne!(got.0, 0);
    assert!(
        got.2
            .contains("conflicting options: cannot specify both --all and --filter all=1"),
        "{}",
        got.2
    );
    assert!(want.2.contains("conflicting options"), "{}", want.2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Against polisd: what polis prints is what docker prints, errors included.
#[test]
fn volume_verbs_print_as_docker_against_polisd() {
    let d = Daemon::start("cli-volumes");
    let polis = |args: &[&str]| -> Output {
        output(
            Command::new(POLIS)
                .env_remove("DOCKER_HOST")
                .env_remove("POLIS_HOST")
                .arg("-H")
                .arg(d.host())
                .args(args),
            None,
        )
    };
    let created = polis(&["volume", "create", "--label", "team=a", "one"]);
    assert_eq!(
        (created.0, created.1.as_str()),
        (0, "one\n"),
        "{}",
        created.2
    );
    let created = d.docker(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "two",
    ]);
    assert_eq!(created.0, 0, "{}", created.2);
    let anon = polis(&["volume", "create"]);
    assert_eq!(anon.1.trim().len(), 64);
    for args in [
        vec!["volume", "ls"],
        vec!["volume", "ls", "-q"],
        vec!["volume", "ls", "--filter", "label=team=a"],
        vec![
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}} {{.Mountpoint}}",
        ],
        vec!["volume", "ls", "--format", "json"],
        vec!["volume", "inspect", "one", "two"],
        vec![
            "volume",
            "inspect",
            "--format",
            "{{.Options}} {{.Labels}}",
            "two",
            "one",
        ],
        vec!["volume", "inspect", "one", "nope"],
        vec!["volume", "rm", "nope"],
        vec!["volume", "create", "-o", "bad=1", "three"],
        vec!["volume", "create", "-d", "other", "three"],
    ] {
        let want = d.docker(&args);
        let got = polis(&args);
        assert_eq!(got.0, want.0, "polis {args:?}: {}", got.2);
        assert_eq!(got.1, want.1, "polis {args:?} printed otherwise");
        assert_eq!(
            got.2.trim(),
            want.2.trim(),
            "polis {args:?} erred otherwise"
        );
    }
    // Prune (anonymous only, then all) and rm print as docker's: compared on twins.
    let pruned = polis(&["volume", "prune", "-f"]);
    assert_eq!(
        pruned.1,
        format!(
            "Deleted Volumes:\n{}\n\nTotal reclaimed space: 0B\n",
            anon.1.trim()
        )
    );
    let again = polis(&["volume", "prune", "-f"]);
    let want = d.docker(&["volume", "prune", "-f"]);
    assert_eq!(again.1, want.1);
    assert_eq!(again.1, "Total reclaimed space: 0B\n");
    let removed = polis(&["volume", "rm", "two", "-f", "nope"]);
    // With -f a missing volume is no error (the daemon's 204), and is named as removed.
    assert_eq!(
        (removed.0, removed.1.as_str()),
        (0, "two\nnope\n"),
        "{}",
        removed.2
    );
    assert_eq!(d.docker(&["volume", "rm", "-f", "nope"]).1, "nope\n");
    let pruned = polis(&["volume", "prune", "-a", "-f", "--filter", "label=team"]);
    assert_eq!(
        pruned.1,
        "Deleted Volumes:\none\n\nTotal reclaimed space: 0B\n"
    );
    assert_eq!(polis(&["volume", "ls", "-q"]).1, "");
}
