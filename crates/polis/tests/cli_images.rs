//! The `polis` client's image verbs against a daemon, side by side with the unmodified
//! docker CLI on the same daemon: where docker's output is deterministic, polis must
//! print the same bytes and exit with the same code.

mod common;

use common::daemon::{busybox_tar, output, Daemon, Output, DOCKER};
use std::path::Path;
use std::process::Command;

const POLIS: &str = env!("CARGO_BIN_EXE_polis");

/// The `polis` client next to the docker CLI on the same daemon.
trait BothClis {
    fn polis_in(&self, args: &[&str], stdin: Option<&Path>) -> Output;
    fn polis(&self, args: &[&str]) -> Output {
        self.polis_in(args, None)
    }
    fn same(&self, args: &[&str]) -> Output;
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
}

fn sorted_lines(s: &str) -> Vec<String> {
    let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn polis_and_docker_print_the_same_for_image_verbs() {
    let d = Daemon::start("verbs");
    let tar = busybox_tar(&d.dir);

    // import: from stdin with a change, and from a file with a message.
    let (code, out, err) = d.polis_in(
        &["import", "-c", "CMD [\"sh\"]", "-", "busybox:local"],
        Some(&tar),
    );
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    let (code, out, err) = d.polis(&[
        "image",
        "import",
        "-m",
        "from a file",
        tar.to_str().unwrap(),
        "other:v2",
    ]);
    assert_eq!(code, 0, "{err}");
    let other = out.trim().to_string();
    assert_ne!(other, id);

    // images, in every deterministic form.
    let (_, out, _) = d.same(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(
        sorted_lines(&out),
        vec![
            format!("busybox:local {}", &id[7..19]),
            format!("other:v2 {}", &other[7..19]),
        ]
    );
    d.same(&[
        "images",
        "--format",
        "table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.Size}}",
    ]);
    d.same(&["images", "-q"]);
    d.same(&[
        "images",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}}\t{{.Size}}",
    ]);
    d.same(&[
        "image",
        "ls",
        "--format",
        "{{json .Repository}} {{.CreatedAt}}",
    ]);
    d.same(&["image", "list", "--no-trunc", "-q"]);
    let (_, out, _) = d.polis(&["images"]);
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED    ")
            && header.ends_with("   SIZE"),
        "{header}"
    );

    // inspect: the JSON array docker prints, and templates.
    let (_, out, _) = d.same(&["image", "inspect", "busybox:local", "other:v2"]);
    assert!(
        out.starts_with("[\n    {\n        \"Id\": \"sha256:"),
        "{out}"
    );
    let (_, out, _) = d.same(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{json .Config.Cmd}} {{.Os}} {{len .RootFS.Layers}}",
        "busybox:local",
    ]);
    assert_eq!(out.trim(), format!("{id} [\"sh\"] linux 1"));
    d.same(&["image", "inspect", "-f", "{{.Comment}}", "other:v2"]);

    // history.
    d.same(&["history", "-q", "busybox:local"]);
    d.same(&["history", "-q", "--no-trunc", "other:v2"]);
    let (_, out, _) = d.same(&[
        "image",
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}|{{.Size}}|{{.Comment}}|{{.CreatedAt}}",
        "other:v2",
    ]);
    assert!(out.contains("|from a file|"), "{out}");

    // tag, then rmi: the same Untagged:/Deleted: lines from both.
    assert_eq!(
        d.polis(&["tag", "busybox:local", "127.0.0.1:5000/bb:v1"]).0,
        0
    );
    assert_eq!(d.polis(&["image", "tag", "busybox:local", "plain"]).0, 0);
    let (_, out, _) = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(
        sorted_lines(&out),
        vec![
            "127.0.0.1:5000/bb:v1",
            "busybox:local",
            "other:v2",
            "plain:latest"
        ]
    );
    let polis = d.polis(&["rmi", "127.0.0.1:5000/bb:v1", "plain"]);
    assert_eq!(
        polis,
        (
            0,
            "Untagged: 127.0.0.1:5000/bb:v1\nUntagged: plain:latest\n".to_string(),
            String::new()
        )
    );
    d.polis(&["tag", "busybox:local", "plain"]);
    assert_eq!(d.docker(&["rmi", "plain"]).1, "Untagged: plain:latest\n");

    // save: the same archive from both; refused on a terminal is checked elsewhere.
    let (code, _, err) = d.polis(&["save", "-o", "polis.tar", "busybox:local", "other:v2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        d.docker(&["save", "-o", "docker.tar", "busybox:local", "other:v2"])
            .0,
        0
    );
    let polis_tar = std::fs::read(d.dir.join("polis.tar")).unwrap();
    assert_eq!(polis_tar, std::fs::read(d.dir.join("docker.tar")).unwrap());
    let piped = Command::new(POLIS)
        .arg("-H")
        .arg(d.host())
        .args(["image", "save", "busybox:local"])
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert!(piped.stdout.len() > 1024 * 1024);

    // rmi that deletes, then load brings the same images back, as docker says it.
    let (code, out, _) = d.polis(&["rmi", "busybox:local"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("Untagged: busybox:local\nDeleted: {id}\n")),
        "{out}"
    );
    let (code, out, _) = d.docker(&["rmi", "other:v2"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("Untagged: other:v2\nDeleted: {other}\n")),
        "{out}"
    );
    assert_eq!(d.docker(&["images", "-q"]).1, "");
    let (code, out, err) = d.polis(&["load", "-i", "polis.tar"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Loaded image: busybox:local\nLoaded image: other:v2\n");
    let docker = d.docker_in(&["load"], Some(&d.dir.join("docker.tar")));
    let polis = d.polis_in(&["image", "load", "-q"], Some(&d.dir.join("docker.tar")));
    assert_eq!(polis, docker);
    let (_, out, _) = d.same(&["image", "inspect", "-f", "{{.Id}}", "busybox:local"]);
    assert_eq!(out.trim(), id, "the same image comes back");
}

#[test]
fn errors_read_as_docker_prints_them() {
    let d = Daemon::start("errors");
    let tar = busybox_tar(&d.dir);
    let (code, _, err) = d.polis_in(&["import", "-", "busybox:local"], Some(&tar));
    assert_eq!(code, 0, "{err}");

    for args in [
        &["rmi", "nosuch"][..],
        &["image", "inspect", "nosuch", "Bad"],
        &["rmi", "nosuch:1", "nosuch:2"],
        &["image", "rm", "nosuch"],
        &["image", "inspect", "nosuch:latest"],
        &["image", "inspect", "-f", "{{.Id}}", "nosuch:latest"],
        &["image", "inspect", "-f", "{{.Nope.X}}", "busybox:local"],
        &["history", "nosuch:latest"],
        &["history", "--format", "{{.Nope}}", "busybox:local"],
        &["images", "--format", "{{.ID}} {{.Nope}}"],
        &["images", "--format", "{{.ID"],
        &["tag", "nosuch:latest", "x:y"],
        &["save", "-o", "x.tar", "nosuch:latest"],
    ] {
        let (code, _, err) = d.same(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(!err.is_empty(), "{args:?}");
    }
    // With --force a missing image is reported but is no failure, as in docker.
    let (code, _, err) = d.same(&["rmi", "-f", "nosuch", "nosuch:2"]);
    assert_eq!(code, 0, "{err}");
    let (_, _, err) = d.polis(&["rmi", "nosuch"]);
    assert_eq!(
        err,
        "Error response from daemon: No such image: nosuch:latest\n"
    );
    assert!(
        !d.dir.join("x.tar").exists(),
        "a failed save leaves no file"
    );

    let garbage = d.dir.join("garbage.tar");
    std::fs::write(&garbage, b"not a tar at all").unwrap();
    d.same(&["load", "-i", "garbage.tar"]);
    let (code, _, err) = d.polis(&["load", "-i", "nosuch.tar"]);
    assert_eq!(code, 1);
    assert!(err.contains("nosuch.tar"), "{err}");

    // No daemon: a clear message and exit code 1, from every verb.
    let gone = format!("unix://{}", d.dir.join("gone.sock").display());
    for args in [&["images"][..], &["info"], &["version"], &["rmi", "x"]] {
        let out = Command::new(POLIS)
            .env("POLIS_HOST", &gone)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err,
            format!("Cannot connect to the Polis daemon at {gone}. Is the polis daemon running?\n")
        );
    }
    // DOCKER_HOST is honoured when POLIS_HOST is not set.
    let out = Command::new(POLIS)
        .env_remove("POLIS_HOST")
        .env("DOCKER_HOST", d.host())
        .args([
            "version",
            "--format",
            "{{.Server.Version}} {{.Server.APIVersion}}",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} 1.47", env!("CARGO_PKG_VERSION"))
    );
    let (code, out, _) = d.polis(&["info", "--format", "{{.Images}} {{.DockerRootDir}}"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("1 {}", d.dir.join("root").display()));
}

#[test]
fn save_refuses_a_terminal() {
    let d = Daemon::start("tty");
    // script(1) gives the command a pty for its stdout.
    let run = |cli: &str| {
        let out = Command::new("script")
            .args(["-qec", &format!("{cli} save busybox:local"), "/dev/null"])
            .env("DOCKER_HOST", d.host())
            .env("POLIS_HOST", d.host())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    };
    let polis = run(POLIS);
    assert_eq!(
        polis,
        (
            Some(1),
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".to_string()
        )
    );
    assert_eq!(polis, run(DOCKER));
}
