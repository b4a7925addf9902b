//! Container health checks against polisd with the docker CLI: probes as execs in the
//! container (CMD and CMD-SHELL, exit codes, output, timeouts), the healthy/unhealthy
//! rules, `State.Health` in inspect, ps's status text and `health` filter, the
//! `health_status` events, the reset at each start, the monitor resumed after a daemon
//! restart, the image's HEALTHCHECK and --no-healthcheck, Docker's refusals; and the
//! `polis run/create` health flags sending docker's request body.

mod common;

use common::daemon::{import_busybox, Daemon, DOCKER};
use common::recorder::{reply, unexpected, Recorder};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const POLIS: &str = env!("CARGO_BIN_EXE_polis");

fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.docker(args);
    assert_eq!(code, 0, "docker {args:?}: {out}{err}\n{}", d.log());
    out.trim().to_string()
}

fn health(d: &Daemon, name: &str) -> Value {
    let out = ok(d, &["inspect", "-f", "{{json .State.Health}}", name]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"))
}

/// `State.Health` once `done` holds of it (within 10 s).
fn health_until(d: &Daemon, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(d, name);
        if done(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "{name}: {h}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status_is(s: &'static str) -> impl Fn(&Value) -> bool {
    move |h| h["Status"] == s
}

fn now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// The actions of `name`'s events since `since`.
fn actions(d: &Daemon, since: &str, name: &str) -> Vec<String> {
    let until = now();
    let filter = format!("container={name}");
    let out = ok(
        d,
        &[
            "events",
            "--since",
            since,
            "--until",
            &until,
            "--filter",
            &filter,
            "--format",
            "{{.Action}}",
        ],
    );
    out.lines().map(str::to_string).collect()
}

fn run_d(d: &Daemon, name: &str, flags: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend(flags);
    args.extend(["busybox:local", "sleep", "1000"]);
    ok(d, &args);
}

#[test]
fn probes_make_health_states_ps_and_events() {
    let d = Daemon::start("health-states");
    import_busybox(&d);
    let since = now();
    run_d(
        &d,
        "good",
        &[
            "--health-cmd",
            "echo fine; echo err >&2",
            "--health-interval",
            "200ms",
        ],
    );
    run_d(
        &d,
        "bad",
        &[
            "--health-cmd",
            "echo oops; exit 3",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
    );
    run_d(
        &d,
        "slow",
        &[
            "--health-cmd",
            "sleep 5",
            "--health-interval",
            "200ms",
            "--health-timeout",
            "300ms",
            "--health-retries",
            "1",
        ],
    );
    // Failures within the start period do not count.
    run_d(
        &d,
        "early",
        &[
            "--health-cmd",
            "exit 1",
            "--health-interval",
            "5s",
            "--health-start-period",
            "30s",
            "--health-start-interval",
            "200ms",
            "--health-retries",
            "1",
        ],
    );
    run_d(&d, "plain", &[]);
    let h = health_until(&d, "good", status_is("healthy"));
    assert_eq!(h["FailingStreak"], 0);
    let last = &h["Log"][0];
    assert_eq!(last["ExitCode"], 0);
    assert_eq!(last["Output"], "fine\nerr\n");
    assert!(last["Start"].as_str().unwrap() <= last["End"].as_str().unwrap());

    let h = health_until(&d, "bad", status_is("unhealthy"));
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h}");
    let log = h["Log"].as_array().unwrap();
    assert!(!log.is_empty() && log.len() <= 5, "{h}");
    assert!(
        log.iter()
            .all(|r| r["ExitCode"] == 3 && r["Output"] == "oops\n"),
        "{h}"
    );
    // The last five only.
    let h = health_until(&d, "bad", |h| h["FailingStreak"].as_u64() > Some(6));
    assert_eq!(h["Log"].as_array().unwrap().len(), 5);

    let h = health_until(&d, "slow", status_is("unhealthy"));
    assert_eq!(h["Log"][0]["ExitCode"], -1);
    assert_eq!(
        h["Log"][0]["Output"],
        "Health check exceeded timeout (300ms)"
    );

    let h = health_until(&d, "early", |h| h["Log"].as_array().unwrap().len() >= 2);
    assert_eq!(
        (&h["Status"], &h["FailingStreak"]),
        (&"starting".into(), &0.into())
    );

    let status = |name: &str| {
        let f = format!("name=^{name}$");
        ok(&d, &["ps", "--filter", &f, "--format", "{{.Status}}"])
    };
    assert!(status("good").ends_with(" (healthy)"), "{}", status("good"));
    assert!(status("bad").ends_with(" (unhealthy)"), "{}", status("bad"));
    assert!(status("early").ends_with(" (health: starting)"));
    assert!(!status("plain").contains('('), "{}", status("plain"));
    let names = |filter: &str| {
        let f = format!("health={filter}");
        let mut v: Vec<String> = ok(&d, &["ps", "--filter", &f, "--format", "{{.Names}}"])
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("healthy"), ["good"]);
    assert_eq!(names("unhealthy"), ["bad", "slow"]);
    assert_eq!(names("starting"), ["early"]);
    assert_eq!(names("none"), ["plain"]);
    let (code, _, err) = d.docker(&["ps", "--filter", "health=sick"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Unrecognised filter value for health: sick"),
        "{err}"
    );

    // Status changes are events; probes are execs, with Docker's exec events.
    let good = actions(&d, &since, "good");
    assert_eq!(
        good.iter()
            .filter(|a| *a == "health_status: healthy")
            .count(),
        1,
        "{good:?}"
    );
    assert!(
        good.iter()
            .any(|a| a == "exec_create: /bin/sh -c echo fine; echo err >&2"),
        "{good:?}"
    );
    assert!(
        good.iter()
            .any(|a| a == "exec_start: /bin/sh -c echo fine; echo err >&2"),
        "{good:?}"
    );
    assert!(good.iter().any(|a| a == "exec_die"), "{good:?}");
    let (code, out, _) = d.docker(&[
        "events",
        "--since",
        &since,
        "--until",
        &now(),
        "--filter",
        "container=bad",
        "--filter",
        "event=exec_die",
        "--format",
        "{{.Actor.Attributes.exitCode}}",
    ]);
    assert_eq!(code, 0);
    assert!(
        out.lines().count() >= 2 && out.lines().all(|l| l == "3"),
        "{out}"
    );
    let bad = actions(&d, &since, "bad");
    assert_eq!(
        bad.iter()
            .filter(|a| *a == "health_status: unhealthy")
            .count(),
        1,
        "{bad:?}"
    );

    // A paused container is not probed.
    ok(&d, &["pause", "good"]);
    let before = health(&d, "good")["Log"].clone();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(health(&d, "good")["Log"], before);
    ok(&d, &["unpause", "good"]);
    health_until(&d, "good", |h| h["Log"] != before);

    // Each start begins at "starting" again: a second unhealthy event after a restart.
    let since = now();
    ok(&d, &["restart", "-t", "0", "bad"]);
    health_until(&d, "bad", status_is("unhealthy"));
    let bad = actions(&d, &since, "bad");
    let restart = bad.iter().position(|a| a == "restart").unwrap();
    assert!(
        bad[restart..]
            .iter()
            .any(|a| a == "health_status: unhealthy"),
        "{bad:?}"
    );
    // Stopped: no more probes.
    ok(&d, &["stop", "-t", "0", "good"]);
    let before = health(&d, "good")["Log"].clone();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(health(&d, "good")["Log"], before);
}

#[test]
fn image_healthcheck_exec_form_no_healthcheck_and_refusals() {
    let d = Daemon::start("health-image");
    import_busybox(&d);
    ok(&d, &["create", "--name", "base", "busybox:local"]);
    ok(
        &d,
        &[
            "commit",
            "--change",
            r#"HEALTHCHECK --interval=200ms --retries=1 CMD ["cat", "/nope"]"#,
            "base",
            "checked:1",
        ],
    );
    let test = ok(
        &d,
        &[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Healthcheck}}",
            "checked:1",
        ],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&test).unwrap(),
        serde_json::json!({"Test": ["CMD", "cat", "/nope"], "Interval": 200_000_000, "Retries": 1})
    );

    // CMD runs its arguments directly (no shell: cat's own message and exit code).
    ok(
        &d,
        &["run", "-d", "--name", "img", "checked:1", "sleep", "1000"],
    );
    let h = health_until(&d, "img", status_is("unhealthy"));
    assert_eq!(h["Log"][0]["ExitCode"], 1);
    assert!(
        h["Log"][0]["Output"].as_str().unwrap().contains("/nope"),
        "{h}"
    );
    // The request's fields over the image's: its own command, the image's interval.
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "over",
            "--health-cmd",
            "true",
            "checked:1",
            "sleep",
            "1000",
        ],
    );
    let hc = ok(
        &d,
        &["inspect", "-f", "{{json .Config.Healthcheck}}", "over"],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&hc).unwrap(),
        serde_json::json!({"Test": ["CMD-SHELL", "true"], "Interval": 200_000_000, "Retries": 1})
    );
    health_until(&d, "over", status_is("healthy"));
    // A commit keeps the container's health check in the new image.
    ok(&d, &["commit", "over", "checked:2"]);
    let hc = ok(
        &d,
        &[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Healthcheck.Test}}",
            "checked:2",
        ],
    );
    assert_eq!(hc, r#"["CMD-SHELL","true"]"#);

    // --no-healthcheck: no probes, no health.
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "off",
            "--no-healthcheck",
            "checked:1",
            "sleep",
            "1000",
        ],
    );
    // (The image's other fields are merged in, as Docker merges them.)
    let hc = ok(
        &d,
        &["inspect", "-f", "{{json .Config.Healthcheck.Test}}", "off"],
    );
    assert_eq!(hc, r#"["NONE"]"#);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        ok(&d, &["inspect", "-f", "{{json .State.Health}}", "off"]),
        "null"
    );
    let status = ok(
        &d,
        &["ps", "--filter", "name=off", "--format", "{{.Status}}"],
    );
    assert!(!status.contains('('), "{status}");

    // Docker's refusals: too small by the daemon, negative by the CLI.
    for (flag, value, msg) in [
        (
            "--health-interval",
            "500us",
            "Interval in Healthcheck cannot be less than 1ms",
        ),
        (
            "--health-timeout",
            "1ns",
            "Timeout in Healthcheck cannot be less than 1ms",
        ),
        (
            "--health-start-period",
            "10us",
            "StartPeriod in Healthcheck cannot be less than 1ms",
        ),
        (
            "--health-start-interval",
            "10us",
            "StartInterval in Healthcheck cannot be less than 1ms",
        ),
        (
            "--health-retries",
            "-1",
            "--health-retries cannot be negative",
        ),
        (
            "--health-interval",
            "-1s",
            "--health-interval cannot be negative",
        ),
    ] {
        let (code, _, err) = d.docker(&["run", "-d", flag, value, "busybox:local"]);
        assert_eq!(code, 125, "{flag} {value}: {err}");
        assert!(err.contains(msg), "{flag} {value}: {err}");
    }
    // Negative retries sent by another client: the daemon's own check.
    let body = r#"{"Image":"busybox:local","Healthcheck":{"Test":["CMD","true"],"Retries":-1}}"#;
    let out = d
        .command("curl")
        .args(["-s", "--unix-socket"])
        .arg(d.dir.join("run/polis.sock"))
        .args(["-H", "Content-Type: application/json", "-d", body])
        .arg("http://x/containers/create")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Retries in Healthcheck cannot be negative"),
        "{text}"
    );
    let all = ok(&d, &["ps", "-a", "--format", "{{.Names}}"]);
    assert_eq!(all.lines().count(), 4, "{all}");
}

#[test]
fn monitor_resumes_after_a_daemon_restart() {
    let mut d = Daemon::start("health-daemon");
    import_busybox(&d);
    run_d(
        &d,
        "bad",
        &[
            "--health-cmd",
            "exit 2",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
    );
    health_until(&d, "bad", status_is("unhealthy"));
    d.crash();
    d.restart_after_crash();
    let h = health_until(&d, "bad", |h| {
        h["Status"] == "unhealthy" && h["Log"].as_array().is_some_and(|l| !l.is_empty())
    });
    assert_eq!(h["Log"][0]["ExitCode"], 2);
    let hc = ok(
        &d,
        &["inspect", "-f", "{{json .Config.Healthcheck}}", "bad"],
    );
    assert_eq!(
        serde_json::from_str::<Value>(&hc).unwrap(),
        serde_json::json!({"Test": ["CMD-SHELL", "exit 2"], "Interval": 200_000_000, "Retries": 2})
    );
}

/// A CLI run against a recorder: its exit code, stderr and the create body it sent.
fn record_create(program: &str, args: &[&str]) -> (i32, String, Option<Value>) {
    let dir = std::env::temp_dir().join(format!(
        "polis-health-rec-{}-{}",
        std::process::id(),
        program.len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let rec = Recorder::start(&dir.join("rec.sock"), |r| {
        if r.route() == "/containers/create" {
            let b = format!(r#"{{"Id":"{}","Warnings":[]}}"#, "ab".repeat(32));
            reply("201 Created", &b)
        } else {
            unexpected()
        }
    });
    let out = Command::new(program)
        .env("DOCKER_HOST", rec.host())
        .env_remove("POLIS_HOST")
        .args(args)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let recorded = rec
        .requests()
        .into_iter()
        .find(|r| r.route() == "/containers/create")
        .and_then(|r| serde_json::from_slice(&r.body).ok());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        recorded,
    )
}

#[test]
fn health_flags_send_what_docker_sends() {
    let cases: Vec<Vec<&str>> = vec![
        vec![
            "--health-cmd",
            "curl -f http://x/ || exit 1",
            "--health-interval",
            "1m30s",
            "--health-timeout",
            "200ms",
            "--health-start-period",
            "2s",
            "--health-start-interval",
            "300ms",
            "--health-retries",
            "4",
        ],
        vec!["--health-retries", "2"],
        vec!["--health-interval", "1.5s"],
        vec!["--no-healthcheck"],
        vec![],
    ];
    for flags in &cases {
        let mut args = vec!["create"];
        args.extend(flags.iter().copied());
        args.extend(["busybox:local", "true"]);
        let (dcode, derr, docker) = record_create(DOCKER, &args);
        let (pcode, perr, polis) = record_create(POLIS, &args);
        assert_eq!((pcode, dcode), (0, 0), "{args:?}: {derr} / {perr}");
        let (docker, polis) = (docker.unwrap(), polis.unwrap());
        assert_eq!(polis["Healthcheck"], docker["Healthcheck"], "{args:?}");
        assert_eq!(polis, docker, "{args:?}");
    }
    for flags in [
        vec!["--health-interval", "-1s"],
        vec!["--health-timeout", "-1s"],
        vec!["--health-start-period", "-1s"],
        vec!["--health-start-interval", "-2ms"],
        vec!["--health-retries", "-1"],
        vec!["--no-healthcheck", "--health-cmd", "true"],
    ] {
        let mut args = vec!["create"];
        args.extend(flags.iter().copied());
        args.extend(["busybox:local", "true"]);
        let (dcode, derr, docker) = record_create(DOCKER, &args);
        let (pcode, perr, polis) = record_create(POLIS, &args);
        assert!(docker.is_none() && polis.is_none(), "{args:?}");
        assert_eq!(dcode, pcode, "{args:?}: {derr} / {perr}");
        let first = |s: &str| s.lines().next().unwrap_or("").replace("docker", "polis");
        assert_eq!(first(&perr), first(&derr), "{args:?}");
    }
}
