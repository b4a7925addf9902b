//! Restart policies and the json-file log, end to end through the docker CLI: Docker's
//! policies, back-off, "restarting" state, stop/kill/rm during it, daemon restarts;
//! log rotation, and `docker logs` with --since/--until/-t/--details/-f.

mod common;

use common::daemon::{import_busybox, leftovers, Daemon, DOCKER};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn inspect(d: &Daemon, name: &str, format: &str) -> String {
    let (code, out, err) = d.docker(&["inspect", "-f", format, name]);
    assert_eq!(code, 0, "inspect {name}: {err}");
    out.trim().to_string()
}

/// Poll `check` until it holds, or fail with `what` (and the last value seen).
fn wait_until(secs: u64, what: &str, mut check: impl FnMut() -> (bool, String)) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (ok, seen) = check();
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last seen {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.docker(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out.trim().to_string()
}

/// Seconds since the epoch of an RFC 3339 UTC time with a fraction.
fn epoch(ts: &str) -> f64 {
    let num = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (num(0..4), num(5..7), num(8..10));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    let frac: f64 = format!("0{}", ts[19..].trim_end_matches('Z'))
        .parse()
        .unwrap();
    secs as f64 + frac
}

/// `docker logs -t NAME`: (time, line) pairs.
fn timed_logs(d: &Daemon, name: &str) -> Vec<(f64, String)> {
    let out = run_ok(d, &["logs", "-t", name]);
    out.lines()
        .map(|l| {
            let (ts, text) = l.split_once(' ').unwrap();
            // Docker's fixed RFC3339Nano.
            assert_eq!(ts.len(), 30, "{l}");
            assert!(ts.ends_with('Z') && &ts[19..20] == ".", "{l}");
            (epoch(ts), text.to_string())
        })
        .collect()
}

fn host_kill(pid: &str) {
    let pid: i32 = pid.parse().unwrap();
    assert!(pid > 0);
    // SAFETY: kill(2) on the init of a container this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

/// on-failure:N restarts a failing container N times, with Docker's doubling delay,
/// then leaves it exited; a clean exit is not restarted.
#[test]
fn on_failure_restarts_up_to_its_limit() {
    let d = Daemon::start("rp-onfail");
    import_busybox(&d);
    run_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "fail",
            "--restart",
            "on-failure:2",
            "busybox:local",
            "sh",
            "-c",
            "echo boot; exit 3",
        ],
    );
    run_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "clean",
            "--restart",
            "on-failure",
            "busybox:local",
            "true",
        ],
    );
    let state = "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}} {{.State.Restarting}}";
    wait_until(10, "fail to give up after two restarts", || {
        let s = inspect(&d, "fail", state);
        (s == "exited 2 3 false", s)
    });
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(inspect(&d, "fail", state), "exited 2 3 false");
    assert_eq!(inspect(&d, "clean", state), "exited 0 0 false");
    assert_eq!(
        inspect(
            &d,
            "fail",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure:2"
    );
    let boots = timed_logs(&d, "fail");
    assert_eq!(
        boots.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>(),
        ["boot", "boot", "boot"]
    );
    // 100 ms before the first restart, 200 ms before the second.
    let first = boots[1].0 - boots[0].0;
    let second = boots[2].0 - boots[1].0;
    assert!((0.1..1.0).contains(&first), "first delay {first}");
    assert!(second >= 0.2, "second delay {second}");
    let (_, ps, _) = d.docker(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("fail Exited (3)"), "{ps}");
}

/// always: restarted when its process dies, not after `docker kill` or `docker stop`
/// (both are stops by the user, as in Docker); `docker start` resets the count.
#[test]
fn always_restarts_unless_the_user_stops_it() {
    let d = Daemon::start("rp-always");
    import_busybox(&d);
    run_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "box",
            "--restart",
            "always",
            "busybox:local",
            "sh",
            "-c",
            "echo boot; exec sleep 1000",
        ],
    );
    let pid = inspect(&d, "box", "{{.State.Pid}}");
    host_kill(&pid);
    wait_until(10, "box to come back after its process died", || {
        let s = inspect(
            &d,
            "box",
            "{{.State.Status}} {{.RestartCount}} {{.State.Pid}}",
        );
        (
            s.starts_with("running 1 ") && !s.ends_with(&format!(" {pid}")),
            s,
        )
    });
    wait_until(5, "the second boot in the log", || {
        let l = d.docker(&["logs", "box"]).1;
        (l == "boot\nboot\n", l)
    });

    run_ok(&d, &["kill", "box"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        inspect(
            &d,
            "box",
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}"
        ),
        "exited 1 137"
    );

    run_ok(&d, &["start", "box"]);
    assert_eq!(
        inspect(&d, "box", "{{.State.Status}} {{.RestartCount}}"),
        "running 0"
    );
    run_ok(&d, &["stop", "-t", "1", "box"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(inspect(&d, "box", "{{.State.Status}}"), "exited");
    assert_eq!(d.docker(&["logs", "box"]).1, "boot\nboot\nboot\n");
}

/// While it waits to be restarted a container is "restarting" (ps and inspect, as
/// Docker shows it); rm without force is refused, stop and rm -f call it off.
#[test]
fn restarting_state_stop_and_remove() {
    let d = Daemon::start("rp-backoff");
    import_busybox(&d);
    let mut ids = Vec::new();
    for name in ["flap", "flop"] {
        ids.push(run_ok(
            &d,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--restart",
                "always",
                "busybox:local",
                "sh",
                "-c",
                "exit 5",
            ],
        ));
    }
    // From the fifth restart on, the delay is 1.6 s or more.
    for name in ["flap", "flop"] {
        wait_until(15, "a long back-off", || {
            let s = inspect(&d, name, "{{.State.Status}} {{.RestartCount}}");
            let n: i64 = s
                .split(' ')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (s.starts_with("restarting") && n >= 5, s)
        });
    }
    assert_eq!(
        inspect(
            &d,
            "flap",
            "{{.State.Status}} {{.State.Running}} {{.State.Restarting}} {{.State.Pid}} {{.State.ExitCode}}"
        ),
        "restarting true true 0 5"
    );
    let (_, ps, _) = d.docker(&["ps", "--format", "{{.Names}}|{{.Status}}"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with("flap|Restarting (5) ") && l.ends_with(" ago")),
        "{ps}"
    );
    for verb in [vec!["pause", "flap"], vec!["exec", "flap", "true"]] {
        let (code, _, err) = d.docker(&verb);
        assert_ne!(code, 0, "{verb:?}");
        assert!(
            err.contains("is restarting, wait until the container is running"),
            "{verb:?}: {err}"
        );
    }
    let (code, _, err) = d.docker(&["rm", "flap"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("You cannot remove a restarting container"),
        "{err}"
    );
    run_ok(&d, &["rm", "-f", "flap"]);
    run_ok(&d, &["stop", "flop"]);
    let count = inspect(&d, "flop", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        inspect(&d, "flop", "{{.State.Status}} {{.RestartCount}}"),
        format!("exited {count}")
    );
    assert_eq!(run_ok(&d, &["ps", "-aq", "--no-trunc"]), ids[1]);
    run_ok(&d, &["rm", "flop"]);
    assert_eq!(leftovers(&d, &ids), Vec::<String>::new());
}

/// Across a daemon restart: `always` comes back even after a stop, `unless-stopped`
/// only if it was not stopped; running containers keep their supervisor; one that
/// exited while no daemon ran is started by the next.
#[test]
fn policies_across_daemon_restarts() {
    let mut d = Daemon::start("rp-daemon");
    import_busybox(&d);
    for (name, policy) in [
        ("up", "always"),
        ("us", "unless-stopped"),
        ("keep", "unless-stopped"),
    ] {
        run_ok(
            &d,
            &[
                "run",
                "-d",
                "--name",
                name,
                "--restart",
                policy,
                "busybox:local",
                "sleep",
                "1000",
            ],
        );
    }
    run_ok(&d, &["stop", "-t", "1", "up"]);
    run_ok(&d, &["stop", "-t", "1", "us"]);
    assert_eq!(d.stop(), 0);
    d.spawn();
    wait_until(10, "up started by the new daemon", || {
        let s = inspect(&d, "up", "{{.State.Status}} {{.RestartCount}}");
        (s == "running 0", s)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(inspect(&d, "us", "{{.State.Status}}"), "exited");
    assert_eq!(inspect(&d, "keep", "{{.State.Status}}"), "running");
    // The new daemon watches what kept running.
    host_kill(&inspect(&d, "keep", "{{.State.Pid}}"));
    wait_until(10, "keep restarted by the new daemon", || {
        let s = inspect(&d, "keep", "{{.State.Status}} {{.RestartCount}}");
        (s == "running 1", s)
    });

    // Exits while no daemon runs; the next one starts it (its second run stays up).
    run_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "late",
            "--restart",
            "always",
            "busybox:local",
            "sh",
            "-c",
            "if [ -e /ran ]; then exec sleep 1000; fi; touch /ran; sleep 1; exit 2",
        ],
    );
    d.crash();
    std::thread::sleep(Duration::from_millis(1500));
    d.restart_after_crash();
    wait_until(10, "late started again", || {
        let s = inspect(&d, "late", "{{.State.Status}}");
        (s == "running", s)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(inspect(&d, "late", "{{.State.Status}}"), "running");
}

/// Docker's checks of a restart policy.
#[test]
fn restart_policy_validation() {
    let d = Daemon::start("rp-valid");
    import_busybox(&d);
    for (policy, message) in [
        (
            "sometimes",
            "invalid restart policy: unknown policy 'sometimes'",
        ),
        (
            "always:3",
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ),
        (
            "on-failure:-1",
            "invalid restart policy: maximum retry count cannot be negative",
        ),
    ] {
        let (code, _, err) = d.docker(&["run", "-d", "--restart", policy, "busybox:local", "true"]);
        assert_eq!(code, 125, "{policy}: {err}");
        assert!(err.contains(message), "{policy}: {err}");
    }
    // The CLI refuses --rm with --restart itself; the daemon refuses it too.
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(&d.socket)
        .args(["-H", "Content-Type: application/json", "-d"])
        .arg(r#"{"Image":"busybox:local","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}}"#)
        .arg("http://polis/v1.47/containers/create")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.ends_with("\n400"), "{out}");
    assert!(
        out.contains("can't create 'AutoRemove' container with restart policy"),
        "{out}"
    );
    assert_eq!(run_ok(&d, &["ps", "-aq"]), "");
}

fn log_files(d: &Daemon, id: &str) -> Vec<String> {
    let dir = d.dir.join(format!("root/containers/{id}"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-json.log"))
        .collect();
    names.sort();
    names
}

/// max-size and max-file rotate the log; `docker logs` reads the kept files in order.
#[test]
fn log_rotation_and_reading_across_files() {
    let d = Daemon::start("logrot");
    import_busybox(&d);
    let id = run_ok(
        &d,
        &[
            "run",
            "-d",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=3",
            "busybox:local",
            "sh",
            "-c",
            "i=0; while [ $i -lt 100 ]; do echo \"line $i\"; i=$((i+1)); done",
        ],
    );
    wait_until(10, "the writer to finish", || {
        let s = inspect(&d, &id, "{{.State.Status}}");
        (s == "exited", s)
    });
    let log = format!("{id}-json.log");
    assert_eq!(
        log_files(&d, &id),
        [log.clone(), format!("{log}.1"), format!("{log}.2")]
    );
    for f in log_files(&d, &id) {
        let size = std::fs::metadata(d.dir.join(format!("root/containers/{id}/{f}")))
            .unwrap()
            .len();
        // 1k is 1000 bytes (Docker's decimal units); a file rotates after the record
        // that reaches it.
        assert!(size < 1100, "{f}: {size} bytes");
    }
    let out = run_ok(&d, &["logs", &id]);
    let numbers: Vec<usize> = out
        .lines()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    let first = numbers[0];
    assert!(first > 0 && numbers.len() > 20, "{out}");
    assert_eq!(numbers, (first..100).collect::<Vec<_>>());
    assert_eq!(
        inspect(
            &d,
            &id,
            "{{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Config}}"
        ),
        "json-file map[max-file:3 max-size:1k]"
    );
    let (_, tail, _) = d.docker(&["logs", "--tail", "2", &id]);
    assert_eq!(tail, "line 98\nline 99\n");
}

/// `docker logs -f` follows the output across rotations, nothing lost or doubled.
#[test]
fn follow_across_rotations() {
    let d = Daemon::start("logfollow");
    import_busybox(&d);
    run_ok(
        &d,
        &[
            "create",
            "--name",
            "fol",
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=4",
            "busybox:local",
            "sh",
            "-c",
            "i=0; while [ $i -lt 150 ]; do echo \"line $i\"; i=$((i+1)); \
             if [ $((i % 25)) = 0 ]; then sleep 0.3; fi; done",
        ],
    );
    let follower = Command::new(DOCKER)
        .env("DOCKER_HOST", d.host())
        .args(["logs", "-f", "fol"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    run_ok(&d, &["start", "fol"]);
    let out = follower.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let want: String = (0..150).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    assert!(log_files(&d, &inspect(&d, "fol", "{{.Id}}")).len() == 4);
}

/// --since/--until (RFC 3339, unix times with a fraction, relative durations, which
/// the CLI turns into unix times), -t, and --details with labels and env.
#[test]
fn logs_since_until_timestamps_details() {
    let d = Daemon::start("logtimes");
    import_busybox(&d);
    run_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "times",
            "--label",
            "app=shop",
            "-e",
            "REGION=eu west",
            "--log-opt",
            "labels=app",
            "--log-opt",
            "env=REGION",
            "busybox:local",
            "sh",
            "-c",
            "echo a; sleep 1.1; echo b; sleep 1.1; echo c",
        ],
    );
    run_ok(
        &d,
        &["run", "--name", "plain", "busybox:local", "echo", "x"],
    );
    wait_until(10, "times to finish", || {
        let s = inspect(&d, "times", "{{.State.Status}}");
        (s == "exited", s)
    });
    let out = run_ok(&d, &["logs", "-t", "times"]);
    let stamps: Vec<&str> = out.lines().map(|l| &l[..30]).collect();
    assert_eq!(
        out.lines().map(|l| &l[31..]).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let logs = |args: &[&str]| {
        let mut all = vec!["logs"];
        all.extend(args);
        all.push("times");
        let (code, out, err) = d.docker(&all);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    assert_eq!(logs(&["--since", stamps[1]]), "b\nc\n");
    let until_a = format!("{:.3}", epoch(stamps[0]) + 0.5);
    assert_eq!(logs(&["--until", &until_a]), "a\n");
    let since_b = format!("{:.6}", epoch(stamps[1]) - 0.001);
    let until_b = format!("{:.6}", epoch(stamps[2]) - 0.3);
    assert_eq!(logs(&["--since", &since_b, "--until", &until_b]), "b\n");
    assert_eq!(logs(&["--since", "10m"]), "a\nb\nc\n");
    assert_eq!(logs(&["--until", "10m"]), "");
    assert_eq!(logs(&["--tail", "1", "-t"]), format!("{} c\n", stamps[2]));
    // Sorted by key (upper case first), query-escaped; then the timestamp before them.
    assert_eq!(
        logs(&["--details"]),
        "REGION=eu+west,app=shop a\nREGION=eu+west,app=shop b\nREGION=eu+west,app=shop c\n"
    );
    assert_eq!(
        logs(&["--details", "-t", "--tail", "1"]),
        format!("{} REGION=eu+west,app=shop c\n", stamps[2])
    );
    assert_eq!(d.docker(&["logs", "--details", "plain"]).1, " x\n");
    let (code, _, err) = d.docker(&["logs", "--since", "tomorrow-ish", "times"]);
    assert_ne!(code, 0);
    assert!(!err.is_empty());
}

/// Log drivers and options are checked as Docker does; `none` keeps no log at all.
#[test]
fn log_driver_and_option_checks() {
    let d = Daemon::start("logopts");
    import_busybox(&d);
    for (args, message) in [
        (
            vec!["--log-opt", "max-size=10x"],
            "invalid log opt max-size=10x: invalid suffix: 'x'",
        ),
        (
            vec!["--log-opt", "max-file=0"],
            "max-file cannot be less than 1",
        ),
        (
            vec!["--log-opt", "colour=red"],
            "unknown log opt 'colour' for json-file log driver",
        ),
        (
            vec!["--log-driver", "syslog"],
            "log driver 'syslog' is not supported by this daemon",
        ),
        (
            vec!["--log-driver", "bogus"],
            "logger: no log driver named 'bogus' is registered",
        ),
    ] {
        let mut cmd = vec!["run", "-d"];
        cmd.extend(&args);
        cmd.extend(["busybox:local", "true"]);
        let (code, _, err) = d.docker(&cmd);
        assert_eq!(code, 125, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    assert_eq!(run_ok(&d, &["ps", "-aq"]), "");

    let (code, out, err) = d.docker(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "busybox:local",
        "echo",
        "hi",
    ]);
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    let id = inspect(&d, "quiet", "{{.Id}}");
    assert_eq!(log_files(&d, &id), Vec::<String>::new());
    let (code, _, err) = d.docker(&["logs", "quiet"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("configured logging driver does not support reading"),
        "{err}"
    );
}
