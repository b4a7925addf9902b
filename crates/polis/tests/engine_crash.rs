//! polisd killed with SIGKILL in the middle of its work: containers running, a log
//! being followed, creates in flight, and a shim killed on its own. The next daemon
//! finds every container, loses no output, and after rm nothing of them remains.

mod common;

use common::daemon::{import_busybox, leftovers, Daemon, DOCKER};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn docker_child(d: &Daemon, args: &[&str]) -> Child {
    Command::new(DOCKER)
        .env("DOCKER_HOST", d.host())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Read `child`'s stdout until a line satisfies `want` (or fail after 10 s).
fn read_until(child: &mut Child, want: impl Fn(&str) -> bool) -> String {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if want(&line) => {
                let _ = child.kill();
                let _ = child.wait();
                return line;
            }
            Ok(_) => {}
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no wanted line within 10 s");
            }
        }
    }
}

fn line_number(line: &str) -> u64 {
    line.trim()
        .strip_prefix("line ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Processes whose cgroup names one of `ids`, anywhere on the host.
fn processes_in(ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cgroup) = std::fs::read_to_string(e.path().join("cgroup")) else {
            continue;
        };
        if ids
            .iter()
            .any(|id| cgroup.contains(&format!("/polis/{id}")))
        {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn id_of(d: &Daemon, name: &str) -> String {
    let (code, id, err) = d.docker(&["inspect", "-f", "{{.Id}}", name]);
    assert_eq!(code, 0, "{err}");
    id.trim().to_string()
}

#[test]
fn a_killed_daemon_loses_nothing_and_leaks_nothing() {
    let mut d = Daemon::start("crash-all");
    import_busybox(&d);
    let (code, _, err) = d.docker(&[
        "run",
        "-d",
        "--name",
        "logger",
        "busybox:local",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.02; done",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.docker(&[
        "run",
        "-d",
        "--name",
        "victim",
        "busybox:local",
        "sleep",
        "1000",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.docker(&[
        "create",
        "--name",
        "dormant",
        "busybox:local",
        "echo",
        "woke",
    ]);
    assert_eq!(code, 0, "{err}");
    let mut known = vec![
        id_of(&d, "logger"),
        id_of(&d, "victim"),
        id_of(&d, "dormant"),
    ];

    // A follower of the log, and creates in flight, when the daemon is killed.
    let mut follower = docker_child(&d, &["logs", "-f", "logger"]);
    // Each thread creates containers until the daemon is gone: some creates are cut.
    let inflight: Vec<_> = (0..3)
        .map(|t| {
            let host = d.host();
            std::thread::spawn(move || {
                let mut tried = Vec::new();
                for j in 0.. {
                    let name = format!("inflight-{t}-{j}");
                    tried.push(name.clone());
                    let out = Command::new(DOCKER)
                        .env("DOCKER_HOST", &host)
                        .args(["run", "-d", "--name", &name])
                        .args(["busybox:local", "sleep", "1000"])
                        .output()
                        .unwrap();
                    if !out.status.success() {
                        break;
                    }
                }
                tried
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    d.crash();
    let tried: Vec<String> = inflight
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let _ = follower.kill();
    let _ = follower.wait();

    // A shim dies while no daemon watches: its container dies with it.
    let victim = known[1].clone();
    let shim_dir = d.dir.join("run/c").join(&victim[..16]);
    let shim_pid: i32 = std::fs::read_to_string(shim_dir.join("shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the pid of a shim this test's daemon started.
    unsafe { libc::kill(shim_pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{shim_pid}/cmdline")).exists()
        && std::fs::read(format!("/proc/{shim_pid}/cmdline")).is_ok_and(|c| !c.is_empty())
    {
        assert!(Instant::now() < deadline, "the shim did not die");
        std::thread::sleep(Duration::from_millis(10));
    }

    // The logger keeps logging with no daemon.
    let log = d
        .dir
        .join(format!("root/containers/{0}/{0}-json.log", known[0]));
    let lines = || std::fs::read_to_string(&log).unwrap().lines().count();
    let before = lines();
    std::thread::sleep(Duration::from_millis(300));
    assert!(lines() > before, "output stopped without the daemon");

    d.restart_after_crash();
    let (_, ps, _) = d.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    let status = |name: &str| {
        ps.lines()
            .find(|l| l.split(' ').next() == Some(name))
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .unwrap_or_else(|| panic!("{name} missing from ps -a:\n{ps}\n{}", d.log()))
    };
    assert!(status("logger").starts_with("Up"), "{ps}");
    assert!(status("victim").starts_with("Exited (137)"), "{ps}");
    assert_eq!(status("dormant"), "Created", "{ps}");

    // Nothing lost from the logger's output: every line, in order, across the crash.
    let (code, logs, _) = d.docker(&["logs", "logger"]);
    assert_eq!(code, 0);
    let numbers: Vec<u64> = logs.lines().map(line_number).collect();
    assert!(numbers.len() > 20, "{logs}");
    assert!(
        numbers.iter().enumerate().all(|(i, n)| *n == i as u64 + 1),
        "lines lost or out of order: {numbers:?}"
    );
    let last = *numbers.last().unwrap();
    // logs -f, attach and exec on a container the previous daemon started.
    let mut follow = docker_child(&d, &["logs", "-f", "--tail", "1", "logger"]);
    read_until(&mut follow, |l| line_number(l) > last);
    let mut attach = docker_child(&d, &["attach", "--no-stdin", "logger"]);
    read_until(&mut attach, |l| line_number(l) > last);
    let (code, out, err) = d.docker(&["exec", "logger", "echo", "inside"]);
    assert_eq!((code, out.as_str()), (0, "inside\n"), "{err}");

    // The creates in flight: each finished (and works) or left nothing, not even its name.
    for name in &tried {
        if d.docker(&["inspect", name]).0 == 0 {
            known.push(id_of(&d, name));
            let (code, _, err) = d.docker(&["start", name]);
            assert_eq!(code, 0, "{name}: {err}");
            assert_eq!(d.docker(&["rm", "-f", name]).0, 0);
        }
        let (code, id, err) = d.docker(&["create", "--name", name, "busybox:local"]);
        assert_eq!(code, 0, "{name} not reusable: {err}");
        known.push(id.trim().to_string());
    }

    // The settled containers work as any other.
    let (code, _, err) = d.docker(&["start", "-a", "dormant"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.docker(&["start", "victim"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = d.docker(&["stop", "-t", "1", "logger"]);
    assert_eq!(code, 0, "{err}");

    // Nothing of any of them remains after rm.
    let (_, all, _) = d.docker(&["ps", "-aq"]);
    for id in all.split_whitespace() {
        let (code, _, err) = d.docker(&["rm", "-f", id]);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(leftovers(&d, &known), Vec::<String>::new());
    assert_eq!(processes_in(&known), Vec::<String>::new());
    for dir in [
        "root/containers",
        "root/storage/containers",
        "run/c",
        "run/runtime",
    ] {
        let left: Vec<String> = entries(&d.dir.join(dir))
            .into_iter()
            .filter(|e| !e.starts_with('.') && e != "runtime.lock")
            .collect();
        assert_eq!(left, Vec::<String>::new(), "{dir}");
    }
    // And the next daemon finds nothing to repair.
    d.crash();
    let seen = d.log().len();
    d.restart_after_crash();
    std::thread::sleep(Duration::from_millis(100));
    let fresh = d.log()[seen..].to_string();
    assert!(!fresh.contains("leftover"), "{fresh}");
    assert!(!fresh.contains("recovery step failed"), "{fresh}");
}
