//! `polis daemon` end to end: the unmodified docker CLI talks to it, it keeps one
//! daemon per root, takes its settings from file, environment and flags, and stops
//! cleanly on SIGTERM.

mod common;

use common::daemon::{busybox_tar, import_busybox, leftovers, wait_for, Daemon, DOCKER};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polis-daemon-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn docker_cli_version_and_info() {
    let d = Daemon::start("cli");
    let (code, out, err) = d.docker(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}}",
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("{} 1.47", env!("CARGO_PKG_VERSION")));
    let (code, out, err) = d.docker(&[
        "info",
        "--format",
        "{{.ID}}|{{.CgroupDriver}}|{{.DockerRootDir}}",
    ]);
    assert_eq!(code, 0, "{err}");
    let fields: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(fields[0].len(), 32, "{out}");
    assert_eq!(fields[1], "cgroupfs");
    assert_eq!(fields[2], d.dir.join("root").to_str().unwrap());
}

#[test]
fn api_versions_outside_the_range_are_refused() {
    let d = Daemon::start("versions");
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&d.socket)
            .arg(format!("http://polis{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ok = curl("/v1.24/version");
    assert!(ok.ends_with("\n200"), "{ok}");
    let too_new = curl("/v1.99/version");
    assert!(too_new.ends_with("\n400"), "{too_new}");
    assert!(
        too_new.contains("Maximum supported API version is 1.47"),
        "{too_new}"
    );
    let too_old = curl("/v1.12/version");
    assert!(too_old.ends_with("\n400"), "{too_old}");
}

#[test]
fn one_daemon_per_root_and_clean_shutdown() {
    let mut d = Daemon::start("lock");
    let (_, id_before, _) = d.docker(&["info", "--format", "{{.ID}}"]);
    let second = Command::new(env!("CARGO_BIN_EXE_polis"))
        .args(["daemon", "--bridge", "none", "--root"])
        .arg(d.dir.join("root"))
        .arg("--run-root")
        .arg(d.dir.join("run2"))
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already uses root"), "{err}");
    assert_eq!(d.stop(), 0);
    assert!(!d.socket.exists(), "socket left behind");
    // A restart on the same root keeps the daemon's identity.
    d.spawn();
    let (_, id_after, _) = d.docker(&["info", "--format", "{{.ID}}"]);
    assert_eq!(id_before, id_after);
}

#[test]
fn settings_from_file_environment_and_flags() {
    let dir = temp_dir("config");
    let file = dir.join("polisd.toml");
    std::fs::write(
        &file,
        format!(
            "root = \"{}\"\nrun-root = \"/nonexistent/overridden\"\n",
            dir.join("root").display()
        ),
    )
    .unwrap();
    // The environment overrides the file, a flag overrides the environment.
    let socket = dir.join("flag.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_polis"))
        .args(["daemon", "--bridge", "none", "--config-file"])
        .arg(&file)
        .env("POLIS_RUN_ROOT", dir.join("run"))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&socket);
    assert!(dir.join("root/metadata.redb").exists());
    assert!(dir.join("run").is_dir());
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // A malformed file is refused with its name and the problem.
    std::fs::write(&file, "rooot = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_polis"))
        .args(["daemon", "--bridge", "none", "--config-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("polisd.toml") && err.contains("rooot"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn docker_cli_image_verbs() {
    let d = Daemon::start("images");
    let tar = busybox_tar(&d.dir);
    let import = Command::new(DOCKER)
        .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
        .args(["import", "-c", "CMD [\"sh\"]", "-", "busybox:local"])
        .stdin(std::fs::File::open(&tar).unwrap())
        .output()
        .unwrap();
    assert!(import.status.success(), "{import:?}");
    let id = String::from_utf8_lossy(&import.stdout).trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    let (code, out, err) = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("busybox:local {}", &id[7..19]));
    let (code, out, _) = d.docker(&[
        "inspect",
        "--format",
        "{{.Id}} {{json .Config.Cmd}} {{.Os}} {{len .RootFS.Layers}}",
        "busybox:local",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("{id} [\"sh\"] linux 1"));
    let (code, out, _) = d.docker(&["history", "--format", "{{.Comment}}", "busybox:local"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "Imported from -");

    assert_eq!(
        d.docker(&["tag", "busybox:local", "127.0.0.1:5000/bb:v1"])
            .0,
        0
    );
    let (_, out, _) = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut tags: Vec<&str> = out.lines().collect();
    tags.sort();
    assert_eq!(tags, vec!["127.0.0.1:5000/bb:v1", "busybox:local"]);

    let saved = d.dir.join("saved.tar");
    assert_eq!(
        d.docker(&["save", "-o", saved.to_str().unwrap(), "busybox:local"])
            .0,
        0
    );
    let (code, out, _) = d.docker(&["rmi", "127.0.0.1:5000/bb:v1", "busybox:local"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Untagged: busybox:local") && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    assert_eq!(d.docker(&["images", "-q"]).1.trim(), "");

    let (code, out, err) = d.docker(&["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "Loaded image: busybox:local");
    let (_, out, _) = d.docker(&["inspect", "--format", "{{.Id}}", "busybox:local"]);
    assert_eq!(out.trim(), id, "the same image comes back");

    // Errors: Docker's status codes and messages.
    let (code, _, err) = d.docker(&["rmi", "nosuch:latest"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such image: nosuch:latest"), "{err}");
    let (code, _, err) = d.docker(&["tag", "busybox:local", "Bad:Name"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid reference format"), "{err}");
    let garbage = d.dir.join("garbage.tar");
    std::fs::write(&garbage, b"not a tar at all").unwrap();
    let (code, _, err) = d.docker(&["load", "-i", garbage.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    assert_eq!(
        d.docker(&["images", "-q"]).1.lines().count(),
        1,
        "a failed load stores nothing"
    );
}

#[test]
fn docker_cli_runs_containers() {
    let d = Daemon::start("run");
    import_busybox(&d);
    // Foreground, with the exit code and both streams passed through.
    let (code, out, err) = d.docker(&[
        "run",
        "--rm",
        "busybox:local",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));
    // stdin piped with -i.
    let piped = Command::new(DOCKER)
        .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
        .args(["run", "-i", "--rm", "busybox:local", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = piped.stdin.as_ref().unwrap();
        stdin.write_all(b"piped\n").unwrap();
    }
    let mut piped = piped;
    drop(piped.stdin.take());
    let out = piped.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");

    // Detached: ps, logs, inspect, stop, rm.
    let (code, id, err) = d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "busybox:local",
        "sh",
        "-c",
        "echo started; exec sleep 1000",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    let (_, ps, _) = d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.trim().starts_with("web Up "), "{ps}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.docker(&["logs", "web"]).1 != "started\n" {
        assert!(Instant::now() < deadline, "no log line");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, st, _) = d.docker(&["inspect", "--format", "{{.State.Status}} {{.Name}}", "web"]);
    assert_eq!(st.trim(), "running /web");
    // The name is taken while the container exists.
    let (code, _, err) = d.docker(&["create", "--name", "web", "busybox:local"]);
    assert_eq!(code, 1);
    assert!(err.contains("is already in use"), "{err}");
    // rm of a running container needs -f.
    let (code, _, err) = d.docker(&["rm", "web"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("stop the container before removing or force remove"),
        "{err}"
    );
    assert_eq!(d.docker(&["stop", "-t", "1", "web"]).0, 0);
    let (_, ps, _) = d.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    // sleep as pid 1 has no TERM handler: the stop timeout ends in SIGKILL, as with Docker.
    assert!(
        ps.trim().starts_with("web Exited (137) ") && ps.trim().ends_with(" ago"),
        "{ps}"
    );
    assert_eq!(d.docker(&["rm", "web"]).0, 0);
    assert_eq!(d.docker(&["ps", "-aq"]).1.trim(), "");

    // Errors: unknown image, a command that does not exist; nothing stays behind.
    // (the CLI then asks for a pull, from a registry that refuses the connection: no
    // test depends on reaching the internet)
    let (code, _, err) = d.docker(&["create", "127.0.0.1:9/nosuch:latest"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Unable to find image '127.0.0.1:9/nosuch:latest' locally"),
        "{err}"
    );
    let pull_error = err.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert!(
        pull_error.contains("Error response from daemon") && pull_error.contains("nosuch"),
        "{err}"
    );
    let (code, _, err) = d.docker(&["run", "--rm", "busybox:local", "no-such-command"]);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("no-such-command"), "{err}");
    assert_eq!(d.docker(&["ps", "-aq"]).1.trim(), "");
    assert_eq!(leftovers(&d, &[id]), Vec::<String>::new());
}

#[test]
fn docker_cli_exec() {
    let d = Daemon::start("exec");
    import_busybox(&d);
    assert_eq!(
        d.docker(&[
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
    let (code, out, err) = d.docker(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    let (code, out, _) = d.docker(&[
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
    // stdin piped with -i.
    let mut child = Command::new(DOCKER)
        .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
        .args(["exec", "-i", "box", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    // Detached.
    let (code, _, err) = d.docker(&["exec", "-d", "box", "touch", "/tmp/detached"]);
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.docker(&["exec", "box", "ls", "/tmp/detached"]).0 != 0 {
        assert!(Instant::now() < deadline, "detached exec did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A command that does not exist, and a stopped container.
    let (code, _, _) = d.docker(&["exec", "box", "no-such-command"]);
    assert_ne!(code, 0);
    assert_eq!(d.docker(&["rm", "-f", "box"]).0, 0);
    let (code, _, err) = d.docker(&["exec", "box", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("No such container: box"), "{err}");
}

/// Killing polisd with SIGKILL leaves its containers running and logging; the next
/// polisd on the same root finds them through their shims.
#[test]
fn containers_survive_a_daemon_crash() {
    let mut d = Daemon::start("crash");
    import_busybox(&d);
    let (code, id, err) = d.docker(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox:local",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.1; done",
    ]);
    assert_eq!(code, 0, "{err}");
    let id = id.trim().to_string();
    d.crash();
    let log = d.dir.join(format!("root/containers/{id}/{id}-json.log"));
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = lines();
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        lines() > before,
        "the container stopped logging without its daemon"
    );

    d.restart_after_crash();
    let (_, ps, _) = d.docker(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.trim().starts_with("talker Up "), "{ps}");
    let (code, out, err) = d.docker(&["exec", "talker", "echo", "inside"]);
    assert_eq!((code, out.as_str()), (0, "inside\n"), "{err}");
    let (_, logs, _) = d.docker(&["logs", "--tail", "2", "talker"]);
    assert_eq!(logs, "tick\ntick\n");
    assert_eq!(d.docker(&["rm", "-f", "talker"]).0, 0);
    assert_eq!(leftovers(&d, &[id]), Vec::<String>::new());
}

#[test]
fn docker_cli_pause_and_terminals() {
    let d = Daemon::start("tty");
    import_busybox(&d);
    assert_eq!(
        d.docker(&[
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
    assert_eq!(d.docker(&["pause", "box"]).0, 0);
    let status = d.docker(&["ps", "--format", "{{.Status}}"]).1;
    assert!(
        status.starts_with("Up ") && status.trim().ends_with(" (Paused)"),
        "{status}"
    );
    let (code, _, err) = d.docker(&["pause", "box"]);
    assert_eq!(code, 1);
    assert!(err.contains("already paused"), "{err}");
    assert_eq!(d.docker(&["unpause", "box"]).0, 0);
    assert!(d
        .docker(&["ps", "--format", "{{.Status}}"])
        .1
        .starts_with("Up "));
    // Under a pty: the CLI resizes the container's (and the exec's) terminal to its own.
    let under_pty = |cmd: &str| {
        let out = Command::new("script")
            .args(["-qec", cmd, "/dev/null"])
            .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        // script(1) echoes a NUL from its own setup as ^@.
        String::from_utf8_lossy(&out.stdout)
            .replace(['\r', '\0'], "")
            .replace("^@", "")
    };
    let out = under_pty(&format!(
        "stty cols 111 rows 33; {DOCKER} run -it --rm busybox:local sh -c 'sleep 0.3; tty; stty size'"
    ));
    assert_eq!(out.trim(), "/dev/pts/0\n33 111");
    let out = under_pty(&format!(
        "stty cols 101 rows 31; {DOCKER} exec -it box sh -c 'sleep 0.3; stty size'"
    ));
    assert_eq!(out.trim(), "31 101");
    assert_eq!(d.docker(&["rm", "-f", "box"]).0, 0);
}

/// A --rm container that exits while no daemon runs is removed by the next daemon.
#[test]
fn auto_remove_survives_a_daemon_restart() {
    let mut d = Daemon::start("autorm");
    import_busybox(&d);
    let (code, id, err) = d.docker(&["run", "-d", "--rm", "busybox:local", "sleep", "1"]);
    assert_eq!(code, 0, "{err}");
    d.crash();
    std::thread::sleep(Duration::from_millis(1500));
    d.restart_after_crash();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.docker(&["ps", "-aq"]).1.trim().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the exited --rm container was not removed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        leftovers(&d, &[id.trim().to_string()]),
        Vec::<String>::new()
    );
}

/// A stopped container starts again on the same rootfs and log, as with Docker.
#[test]
fn docker_cli_start_again_and_restart() {
    let d = Daemon::start("restart");
    import_busybox(&d);
    let script = "echo boot; echo x >> /count; exec sleep 1000";
    assert_eq!(
        d.docker(&[
            "run",
            "-d",
            "--name",
            "box",
            "busybox:local",
            "sh",
            "-c",
            script
        ])
        .0,
        0
    );
    assert_eq!(d.docker(&["stop", "-t", "1", "box"]).0, 0);
    let status = d.docker(&["ps", "-a", "--format", "{{.Status}}"]).1;
    assert!(status.starts_with("Exited (137) "), "{status}");
    assert_eq!(d.docker(&["start", "box"]).0, 0);
    assert!(d
        .docker(&["ps", "--format", "{{.Status}}"])
        .1
        .starts_with("Up "));
    assert_eq!(d.docker(&["restart", "-t", "1", "box"]).0, 0);
    assert!(d
        .docker(&["ps", "--format", "{{.Status}}"])
        .1
        .starts_with("Up "));
    let deadline = Instant::now() + Duration::from_secs(5);
    while d
        .docker(&["exec", "box", "wc", "-l", "/count"])
        .1
        .split_whitespace()
        .next()
        != Some("3")
    {
        assert!(
            Instant::now() < deadline,
            "the rootfs did not keep its writes across starts"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.docker(&["logs", "box"]).1, "boot\nboot\nboot\n");
    assert_eq!(d.docker(&["rm", "-f", "box"]).0, 0);
}

/// Options this daemon cannot honour yet are refused by name, never run without.
#[test]
fn unsupported_create_options_are_refused() {
    let d = Daemon::start("unsupported");
    import_busybox(&d);
    for (args, option) in [
        (vec!["--blkio-weight", "300"], "HostConfig.BlkioWeight"),
        (vec!["--uts", "host"], "HostConfig.UTSMode"),
        (vec!["--pid", "host"], "HostConfig.PidMode"),
    ] {
        let mut cmd = vec!["run", "--rm"];
        cmd.extend(args);
        cmd.extend(["busybox:local", "true"]);
        let (code, _, err) = d.docker(&cmd);
        assert_eq!(code, 125, "{cmd:?}: {err}");
        assert!(
            err.contains(&format!("{option} is not supported")),
            "{cmd:?}: {err}"
        );
    }
    assert_eq!(d.docker(&["ps", "-aq"]).1.trim(), "");
}

#[test]
fn image_labels_merge_under_the_containers_own() {
    let d = Daemon::start("labels");
    let tar = busybox_tar(&d.dir);
    let (code, _, err) = d.docker_in(
        &[
            "import",
            "-c",
            "LABEL from=image keep=image",
            "-c",
            "CMD [\"true\"]",
            "-",
            "labelled:1",
        ],
        Some(&tar),
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.docker(&[
        "create",
        "--name",
        "lab",
        "-l",
        "from=container",
        "labelled:1",
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, labels, _) = d.docker(&["inspect", "-f", "{{json .Config.Labels}}", "lab"]);
    assert_eq!(labels.trim(), r#"{"from":"container","keep":"image"}"#);
}

/// SIGTERM stops the daemon even while clients follow logs or are attached; the
/// container goes on and the next daemon finds it.
#[test]
fn sigterm_cuts_open_streams() {
    let mut d = Daemon::start("sigterm-streams");
    import_busybox(&d);
    let (code, _, err) = d.docker(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox:local",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.2; done",
    ]);
    assert_eq!(code, 0, "{err}");
    let follow = |args: &[&str]| {
        Command::new(DOCKER)
            .env("DOCKER_HOST", d.host())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut logs = follow(&["logs", "-f", "talker"]);
    let mut attach = follow(&["attach", "--no-stdin", "talker"]);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(d.stop(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for c in [&mut logs, &mut attach] {
        let _ = c.kill();
        let _ = c.wait();
    }
    d.spawn();
    let (_, state, _) = d.docker(&["inspect", "-f", "{{.State.Status}}", "talker"]);
    assert_eq!(state.trim(), "running");
}
