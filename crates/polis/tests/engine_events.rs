//! `docker events` against polisd: each verb's events in Docker's order and with
//! Docker's attributes, the replay of past events (`--since`/`--until`), the live
//! stream, the filters, and `polis events`.

mod common;

use common::daemon::{import_busybox, output, Daemon, DOCKER};
use common::netns::daemon_in_netns;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const POLIS: &str = env!("CARGO_BIN_EXE_polis");

/// Now as the docker CLI sends times: `SECONDS.NANOS`.
fn now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.docker(args);
    assert_eq!(code, 0, "docker {args:?}: {out}{err}");
    out
}

/// The events since `since` up to now that `filters` (`--filter` values) let through.
fn past(d: &Daemon, since: &str, filters: &[&str]) -> Vec<Value> {
    let until = now();
    let mut args = vec![
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--format",
        "{{json .}}",
    ];
    for f in filters {
        args.extend(["--filter", f]);
    }
    ok(d, &args)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// [`past`], asked again until `done` holds of it (exits and removals are told by
/// watchers, a moment after the command that caused them returns).
fn past_until(
    d: &Daemon,
    since: &str,
    filters: &[&str],
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = past(d, since, filters);
        if done(&events) || Instant::now() > deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `Type Action` of each event.
fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {}", text(e, "Type"), text(e, "Action")))
        .collect()
}

fn text<'a>(e: &'a Value, key: &str) -> &'a str {
    e[key].as_str().unwrap_or_default()
}

fn attr<'a>(e: &'a Value, key: &str) -> &'a str {
    e["Actor"]["Attributes"][key].as_str().unwrap_or_default()
}

fn has(events: &[Value], action: &str) -> bool {
    events.iter().any(|e| text(e, "Action") == action)
}

#[test]
fn a_containers_life_in_dockers_order() {
    let d = Daemon::start("ev-life");
    import_busybox(&d);
    let first = now();
    let since = first.clone();
    ok(
        &d,
        &[
            "run",
            "--rm",
            "--name",
            "once",
            "--label",
            "tier=web",
            "busybox:local",
            "true",
        ],
    );
    let events = past_until(&d, &since, &[], |e| has(e, "destroy"));
    assert_eq!(
        actions(&events),
        [
            "container create",
            "container attach",
            "container start",
            "container die",
            "container destroy"
        ],
        "{events:#?}"
    );
    let id = text(&events[0], "id").to_string();
    assert_eq!(id.len(), 64);
    for e in &events {
        assert_eq!(e["Actor"]["ID"], id.as_str());
        assert_eq!(text(e, "status"), text(e, "Action"));
        assert_eq!(text(e, "from"), "busybox:local");
        assert_eq!(text(e, "scope"), "local");
        assert_eq!(attr(e, "name"), "once");
        assert_eq!(attr(e, "image"), "busybox:local");
        assert_eq!(attr(e, "tier"), "web", "labels are attributes");
        let nanos = e["timeNano"].as_i64().unwrap();
        assert_eq!(e["time"].as_i64().unwrap(), nanos / 1_000_000_000);
    }
    assert_eq!(attr(&events[3], "exitCode"), "0");
    assert_eq!(attr(&events[3], "execDuration"), "0");

    let since = now();
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "busybox:local",
            "sleep",
            "100",
        ],
    );
    assert_eq!(d.docker(&["exec", "web", "sh", "-c", "exit 3"]).0, 3);
    ok(&d, &["exec", "web", "true"]);
    ok(&d, &["pause", "web"]);
    ok(&d, &["unpause", "web"]);
    // PID 1 ignores USR1; the kill is told all the same.
    ok(&d, &["kill", "-s", "USR1", "web"]);
    ok(&d, &["rename", "web", "site"]);
    ok(&d, &["stop", "-t", "1", "site"]);
    ok(&d, &["start", "site"]);
    ok(&d, &["rm", "-f", "site"]);
    ok(&d, &["tag", "busybox:local", "bb:two"]);
    ok(&d, &["rmi", "bb:two"]);
    let events = past_until(&d, &since, &[], |e| has(e, "untag"));
    let exec_id = attr(&events[2], "execID").to_string();
    assert_eq!(exec_id.len(), 64, "{events:#?}");
    assert_eq!(
        actions(&events),
        [
            "container create",
            "container start",
            "container exec_create: sh -c exit 3",
            "container exec_start: sh -c exit 3",
            "container exec_die",
            // A command alone keeps Docker's trailing space.
            "container exec_create: true ",
            "container exec_start: true ",
            "container exec_die",
            "container pause",
            "container unpause",
            "container kill",
            "container rename",
            // stop: the stop signal, then SIGKILL after the timeout.
            "container kill",
            "container kill",
            "container die",
            "container stop",
            "container start",
            // rm -f: killed, then removed.
            "container kill",
            "container die",
            "container destroy",
            "image tag",
            "image untag",
        ],
        "{events:#?}"
    );
    assert_eq!(attr(&events[3], "execID"), exec_id);
    assert_eq!(attr(&events[4], "execID"), exec_id);
    assert_eq!(attr(&events[4], "exitCode"), "3");
    assert_eq!(attr(&events[10], "signal"), "10");
    assert_eq!(attr(&events[11], "oldName"), "/web");
    assert_eq!(attr(&events[11], "name"), "site");
    assert_eq!(attr(&events[12], "signal"), "15");
    assert_eq!(attr(&events[13], "signal"), "9");
    assert_eq!(attr(&events[14], "exitCode"), "137");
    assert_eq!(attr(&events[14], "name"), "site");
    assert_eq!(attr(&events[17], "signal"), "9");
    assert_eq!(attr(&events[18], "exitCode"), "137");
    let image_id = text(&events[20], "id");
    assert!(image_id.starts_with("sha256:"), "{events:#?}");
    assert_eq!(attr(&events[20], "name"), "bb:two");
    assert_eq!(text(&events[21], "id"), image_id);
    assert_eq!(attr(&events[21], "name"), image_id);
    assert!(events[20].get("from").is_none(), "images have no from");

    // Filters: by name (prefix), label, event, type, image; keys all hold.
    let only = |filters: &[&str]| actions(&past(&d, &since, filters));
    assert_eq!(
        only(&["container=sit", "event=rename"]),
        ["container rename"]
    );
    assert_eq!(
        only(&["event=exec_create"]).len(),
        2,
        "exec_create by prefix"
    );
    assert_eq!(only(&["type=image"]), ["image tag", "image untag"]);
    assert_eq!(only(&["image=bb:two"]), ["image tag"]);
    assert_eq!(
        only(&["image=busybox", "event=create"]),
        ["container create"]
    );
    assert_eq!(only(&["label=tier=web"]), Vec::<String>::new());
    assert_eq!(past(&d, &first, &["label=tier=web"]).len(), 5);
    assert_eq!(past(&d, &first, &["label=tier"]).len(), 5);
    assert_eq!(
        only(&["type=container", "event=die", "event=destroy"]),
        ["container die", "container die", "container destroy"]
    );
    // Docker's daemon ignores keys it does not know; Polis refuses them.
    let (code, _, err) = d.docker(&["events", "--until", "1", "--filter", "colour=red"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Error response from daemon: invalid filter 'colour'"),
        "{err}"
    );
    let (code, _, err) = d.docker(&["events", "--since", "1000", "--until", "10"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("`since` time (1000) cannot be after `until` time (10)"),
        "{err}"
    );
}

#[test]
fn the_live_stream_and_its_listeners() {
    let d = Daemon::start("ev-live");
    import_busybox(&d);
    let mut cli = d
        .command(DOCKER)
        .env("DOCKER_HOST", d.host())
        .args([
            "events",
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--filter",
            "event=die",
            "--format",
            "{{json .}}",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = cli.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let listeners = || {
        ok(&d, &["info", "--format", "{{.NEventsListener}}"])
            .trim()
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while listeners() != "1" {
        assert!(Instant::now() < deadline, "the CLI never subscribed");
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(
        &d,
        &["run", "--rm", "--name", "live", "busybox:local", "true"],
    );
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no live event; got {seen:?}"));
        let e: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(attr(&e, "name"), "live");
        seen.push(text(&e, "Action").to_string());
    }
    assert_eq!(seen, ["start", "die"]);
    cli.kill().unwrap();
    cli.wait().unwrap();
    // The daemon notices the subscriber gone without another event.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listeners() != "0" {
        assert!(Instant::now() < deadline, "the subscriber is still counted");
        std::thread::sleep(Duration::from_millis(50));
    }

    // An `until` in the future ends the stream then, with what came before it.
    let since = now();
    let until = format!(
        "{:.3}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + 1.5
    );
    let started = Instant::now();
    let waiter = std::thread::spawn({
        let host = d.host();
        let since = since.clone();
        move || {
            output(
                Command::new(DOCKER).env("DOCKER_HOST", host).args([
                    "events",
                    "--since",
                    &since,
                    "--until",
                    &until,
                    "--format",
                    "{{.Action}}",
                ]),
                None,
            )
        }
    });
    ok(&d, &["create", "--name", "later", "busybox:local"]);
    let (code, out, err) = waiter.join().unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "create");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1000) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn each_restart_dies_and_starts_once() {
    let d = Daemon::start("ev-restart");
    import_busybox(&d);
    let since = now();
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "flaky",
            "--restart",
            "on-failure:2",
            "busybox:local",
            "sh",
            "-c",
            "exit 4",
        ],
    );
    // The first run and two restarts: three exits.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let state = ok(
            &d,
            &[
                "inspect",
                "-f",
                "{{.State.Status}} {{.RestartCount}}",
                "flaky",
            ],
        );
        if state.trim() == "exited 2" {
            break;
        }
        assert!(Instant::now() < deadline, "{state}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let events = past_until(&d, &since, &["container=flaky"], |e| {
        e.iter().filter(|e| text(e, "Action") == "die").count() >= 3
    });
    assert_eq!(
        actions(&events),
        [
            "container create",
            "container start",
            "container die",
            "container start",
            "container die",
            "container start",
            "container die"
        ],
        "{events:#?}"
    );
    for die in events.iter().filter(|e| text(e, "Action") == "die") {
        assert_eq!(attr(die, "exitCode"), "4");
    }
    // Nothing more comes of it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(past(&d, &since, &["container=flaky"]).len(), 7);
}

#[test]
fn networks_connect_at_start_and_disconnect_at_exit() {
    let (_ns, d) = daemon_in_netns("ev-net", "10.197.0.1/16");
    let since = now();
    ok(&d, &["network", "create", "front"]);
    ok(
        &d,
        &["run", "--rm", "--name", "brief", "busybox:local", "true"],
    );
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "app",
            "--network",
            "front",
            "busybox:local",
            "sleep",
            "100",
        ],
    );
    ok(&d, &["network", "connect", "bridge", "app"]);
    ok(&d, &["network", "disconnect", "bridge", "app"]);
    ok(&d, &["rm", "-f", "app"]);
    ok(&d, &["network", "rm", "front"]);
    let events = past_until(&d, &since, &[], |e| {
        e.iter()
            .any(|e| text(e, "Type") == "network" && text(e, "Action") == "destroy")
    });
    assert_eq!(
        actions(&events),
        [
            "network create",
            // run --rm on the default bridge.
            "container create",
            "container attach",
            "network connect",
            "container start",
            "container die",
            "network disconnect",
            "container destroy",
            // run -d on a network of the user's, connect and disconnect while it runs.
            "container create",
            "network connect",
            "container start",
            "network connect",
            "network disconnect",
            "container kill",
            "container die",
            "network disconnect",
            "container destroy",
            "network destroy",
        ],
        "{events:#?}"
    );
    assert!(events[0].get("status").is_none(), "{:#?}", events[0]);
    let front_id = events[0]["Actor"]["ID"].as_str().unwrap();
    assert_eq!(attr(&events[0], "name"), "front");
    assert_eq!(attr(&events[0], "type"), "bridge");
    let brief = events[1]["Actor"]["ID"].as_str().unwrap();
    for i in [3, 6] {
        assert_eq!(attr(&events[i], "name"), "bridge");
        assert_eq!(attr(&events[i], "container"), brief);
        assert!(events[i].get("status").is_none());
    }
    let app = events[8]["Actor"]["ID"].as_str().unwrap();
    for (i, net) in [(9, "front"), (11, "bridge"), (12, "bridge"), (15, "front")] {
        assert_eq!(attr(&events[i], "name"), net, "{:#?}", events[i]);
        assert_eq!(attr(&events[i], "container"), app);
    }
    assert_eq!(events[9]["Actor"]["ID"], front_id);
    assert_eq!(events[17]["Actor"]["ID"], front_id);
    // A network filter: its own events only.
    let only_front = actions(&past(&d, &since, &["network=front"]));
    assert_eq!(
        only_front,
        [
            "network create",
            "network connect",
            "network disconnect",
            "network destroy"
        ]
    );
}

#[test]
fn polis_events_prints_as_docker() {
    let d = Daemon::start("ev-polis");
    import_busybox(&d);
    let since = now();
    ok(
        &d,
        &[
            "create",
            "--name",
            "quiet",
            "--label",
            "b=2",
            "--label",
            "a=1",
            "busybox:local",
        ],
    );
    let until = now();
    let polis = |args: &[&str]| {
        output(
            Command::new(POLIS).env("DOCKER_HOST", d.host()).args(args),
            None,
        )
    };
    // docker prints local time: UTC here, as polis prints it.
    let docker = |args: &[&str]| {
        let (code, out, err) = output(
            Command::new(DOCKER)
                .env("DOCKER_HOST", d.host())
                .env("TZ", "UTC")
                .args(args),
            None,
        );
        assert_eq!(code, 0, "{err}");
        out
    };
    let docker_out = docker(&["events", "--since", &since, "--until", &until]);
    let (code, out, err) = polis(&["events", "--since", &since, "--until", &until]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, docker_out);
    let line = out.trim();
    let (time, rest) = line.split_once(' ').unwrap();
    assert_eq!(time.len(), "2026-11-28T12:27:06.408947043Z".len(), "{line}");
    assert!(time.ends_with('Z'));
    assert!(rest.starts_with("container create "), "{line}");
    assert!(
        rest.ends_with(" (a=1, b=2, image=busybox:local, name=quiet)"),
        "{line}"
    );
    let format = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.none}}";
    let (code, out, _) = polis(&[
        "events", "--since", &since, "--until", &until, "--format", format,
    ]);
    assert_eq!(code, 0);
    assert_eq!(out, "container create quiet <no value>\n");
    let docker_out = docker(&[
        "events", "--since", &since, "--until", &until, "--format", format,
    ]);
    assert_eq!(out, docker_out);
    let (_, json_line, _) = polis(&[
        "events", "--since", &since, "--until", &until, "--format", "json",
    ]);
    let e: Value = serde_json::from_str(json_line.trim()).unwrap();
    assert_eq!(attr(&e, "a"), "1");
    let (code, _, err) = polis(&["events", "--filter", "colour=red"]);
    assert_eq!(
        (code, err.trim()),
        (1, "Error response from daemon: invalid filter 'colour'")
    );
    let (code, _, err) = polis(&["events", "--format", "{{.Nope}}"]);
    assert_eq!(code, 64, "{err}");
}
