//! Container lifecycle through the runtime CLI: create/start/state/kill/delete,
//! run, list, ps, pause/resume, exec, pid files and OCI hooks.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn create_start_kill_delete() {
    let mut c = Container::new("lifecycle");
    c.args(&["sleep", "1000"]);
    c.create().ok();
    let st = c.state();
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["bundle"], c.bundle.to_str().unwrap());
    assert!(st["ociVersion"].is_string(), "{st}");
    let pid = st["pid"].as_i64().expect("pid in state") as i32;
    assert!(pid > 1 && process_alive(pid), "init pid {pid} not alive");

    c.start().ok();
    assert_eq!(c.status(), "running");
    assert_eq!(c.state()["pid"].as_i64(), Some(pid as i64));

    c.kill("KILL").ok();
    c.wait_status("stopped", WAIT);
    c.delete().ok();
    let gone = c.try_state().expect_err("state after delete must fail");
    assert_ne!(gone.code, 0);
    assert_no_leaks(&c.id, &c.cgroup_path, &c.root, Some(pid));
}

#[test]
fn run_passes_exit_code_and_stdout() {
    let mut c = Container::new("run-exit");
    c.sh("echo hello; echo oops >&2; exit 7");
    let out = c.run();
    assert_eq!(out.code, 7, "{out:#?}");
    assert_eq!(out.stdout, "hello\n");
    assert!(out.stderr.contains("oops"), "{out:#?}");
    // After a foreground run the container is deleted (no --keep).
    assert!(c.try_state().is_err());
}

#[test]
fn run_exit_code_zero() {
    let mut c = Container::new("run-zero");
    c.sh("echo zero-ok");
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "zero-ok\n");
}

#[test]
fn run_keep_leaves_stopped_container() {
    let mut c = Container::new("run-keep");
    c.sh("exit 3");
    c.write_config();
    let bundle = c.bundle.to_string_lossy().into_owned();
    let out = c.runtime(&["run", "--keep", "--bundle", &bundle, &c.id]);
    assert_eq!(out.code, 3, "{out:#?}");
    assert_eq!(c.status(), "stopped");
    c.delete().ok();
}

#[test]
fn run_detach() {
    let mut c = Container::new("run-detach");
    c.sh("echo started; exec sleep 1000");
    let started = Instant::now();
    c.run_detached().ok();
    assert!(started.elapsed() < Duration::from_secs(8), "run -d blocked");
    assert_eq!(c.status(), "running");
    let pid = c.pid.expect("pid");
    assert!(process_alive(pid));
    let deadline = Instant::now() + WAIT;
    while !c.stdout().contains("started") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.stdout(), "started\n");
}

#[test]
fn state_of_unknown_container_fails() {
    let c = Container::new("unknown");
    let out = c.runtime(&["state", "no-such-container"]);
    assert_ne!(out.code, 0);
    assert!(out.stdout.is_empty(), "{out:#?}");
    assert!(
        out.stderr.contains("no-such-container") || out.stderr.contains("does not exist"),
        "stderr should say which container is missing: {out:#?}"
    );
}

#[test]
fn create_with_existing_id_fails() {
    let mut c = Container::new("dup-id");
    c.args(&["sleep", "1000"]);
    c.create().ok();
    let again = c.create();
    assert_ne!(again.code, 0, "{again:#?}");
    assert!(!again.stderr.is_empty());
    // The first container is untouched.
    assert_eq!(c.status(), "created");
    assert!(process_alive(c.pid.unwrap()));
}

#[test]
fn delete_running_without_force_fails() {
    let mut c = Container::new("del-running");
    c.args(&["sleep", "1000"]);
    c.create_start();
    let out = c.delete();
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(!out.stderr.is_empty());
    assert_eq!(c.status(), "running");
    assert!(process_alive(c.pid.unwrap()));
}

#[test]
fn delete_force_kills_running_container() {
    let mut c = Container::new("del-force");
    c.args(&["sleep", "1000"]);
    c.create_start();
    let pid = c.pid.unwrap();
    c.delete_force().ok();
    assert!(c.try_state().is_err());
    assert_no_leaks(&c.id, &c.cgroup_path, &c.root, Some(pid));
}

#[test]
fn delete_force_of_created_container() {
    let mut c = Container::new("del-created");
    c.args(&["sleep", "1000"]);
    c.create().ok();
    let pid = c.pid.unwrap();
    c.delete_force().ok();
    assert_no_leaks(&c.id, &c.cgroup_path, &c.root, Some(pid));
}

#[test]
fn list_text_and_json() {
    let mut a = Container::new("list");
    a.args(&["sleep", "1000"]);
    a.create().ok();
    // A second container in the same --root.
    let mut b = Container::new("list-b");
    b.root = a.root.clone();
    b.args(&["sleep", "1000"]);
    b.create_start();

    let text = a.runtime(&["list"]).ok();
    let header = text.stdout.lines().next().unwrap_or("");
    assert!(header.starts_with("ID"), "{text:#?}");
    assert!(header.contains("STATUS"), "{text:#?}");
    let line_a = text
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(a.id.as_str()))
        .unwrap_or_else(|| panic!("{} not listed: {}", a.id, text.stdout));
    assert!(line_a.contains("created"), "{line_a}");
    let line_b = text
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(b.id.as_str()))
        .unwrap_or_else(|| panic!("{} not listed: {}", b.id, text.stdout));
    assert!(line_b.contains("running"), "{line_b}");

    let js = a.runtime(&["list", "--format", "json"]).ok();
    let v: Value = serde_json::from_str(&js.stdout).expect("list json");
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 2, "{v}");
    let ea = arr.iter().find(|e| e["id"] == a.id.as_str()).expect("a");
    assert_eq!(ea["status"], "created");
    assert_eq!(ea["pid"].as_i64(), a.pid.map(i64::from));
    assert_eq!(ea["bundle"], a.bundle.to_str().unwrap());
    let eb = arr.iter().find(|e| e["id"] == b.id.as_str()).expect("b");
    assert_eq!(eb["status"], "running");
    drop(b);
}

#[test]
fn list_empty_root() {
    let c = Container::new("list-empty");
    let js = c.runtime(&["list", "--format", "json"]).ok();
    let v: Value = serde_json::from_str(js.stdout.trim()).expect("list json");
    assert!(
        v.is_null() || v.as_array().is_some_and(|a| a.is_empty()),
        "{v}"
    );
}

#[test]
fn ps_json_lists_init_pid() {
    let mut c = Container::new("ps");
    c.args(&["sleep", "1000"]);
    c.create_start();
    let out = c.runtime(&["ps", "--format", "json", &c.id]).ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("ps json");
    let pids: Vec<i64> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p.as_i64().expect("pid"))
        .collect();
    assert_eq!(pids, vec![c.pid.unwrap() as i64]);
}

#[test]
fn pause_and_resume() {
    let mut c = Container::new("pause");
    c.args(&["sleep", "1000"]);
    c.create_start();
    let pid = c.pid.unwrap();
    c.runtime(&["pause", &c.id]).ok();
    assert_eq!(c.status(), "paused");
    // The kernel reports the frozen task as stopped (D or T in /proc), never running.
    let freezer_state = if cgroup_v2() {
        read_cgroup_file("", &c.cgroup_path, "cgroup.freeze")
    } else {
        read_cgroup_file("freezer", &c.cgroup_path, "freezer.state")
    };
    assert!(
        freezer_state == "1" || freezer_state == "FROZEN",
        "freezer: {freezer_state}"
    );
    c.runtime(&["resume", &c.id]).ok();
    assert_eq!(c.status(), "running");
    assert!(process_alive(pid));
    let freezer_state = if cgroup_v2() {
        read_cgroup_file("", &c.cgroup_path, "cgroup.freeze")
    } else {
        read_cgroup_file("freezer", &c.cgroup_path, "freezer.state")
    };
    assert!(
        freezer_state == "0" || freezer_state == "THAWED",
        "freezer: {freezer_state}"
    );
}

fn kill_with(signal: &str) {
    let mut c = Container::new("kill-sig");
    c.sh("trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done");
    c.create_start();
    let deadline = Instant::now() + WAIT;
    while !c.stdout().contains("ready") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    c.kill(signal).ok();
    c.wait_status("stopped", WAIT);
    assert_eq!(c.stdout(), "ready\ngot-term\n", "signal {signal}");
}

#[test]
fn kill_signal_name_term() {
    kill_with("TERM");
}

#[test]
fn kill_signal_name_sigterm() {
    kill_with("SIGTERM");
}

#[test]
fn kill_signal_number() {
    kill_with("15");
}

#[test]
fn kill_default_signal_is_term() {
    let mut c = Container::new("kill-default");
    c.sh("trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done");
    c.create_start();
    let deadline = Instant::now() + WAIT;
    while !c.stdout().contains("ready") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    c.runtime(&["kill", &c.id]).ok();
    c.wait_status("stopped", WAIT);
    assert!(c.stdout().contains("got-term"));
}

#[test]
fn kill_invalid_signal_fails() {
    let mut c = Container::new("kill-bad");
    c.args(&["sleep", "1000"]);
    c.create_start();
    let out = c.kill("NOTASIGNAL");
    assert_ne!(out.code, 0);
    assert_eq!(c.status(), "running");
}

#[test]
fn pid_file_is_written() {
    let mut c = Container::new("pidfile");
    c.args(&["sleep", "1000"]);
    let pid_file = c.dir.join("init.pid");
    c.create_with(&["--pid-file", pid_file.to_str().unwrap()])
        .ok();
    let text = fs::read_to_string(&pid_file).expect("pid file");
    assert_eq!(text.trim().parse::<i32>().ok(), c.pid, "pid file {text:?}");
}

fn running_sleeper(name: &str) -> Container {
    let mut c = Container::new(name);
    c.args(&["sleep", "1000"]);
    c.create_start();
    c
}

#[test]
fn exec_args_and_exit_code() {
    let c = running_sleeper("exec");
    let out = c.exec(&[], &["sh", "-c", "echo $$ inside; exit 5"]);
    assert_eq!(out.code, 5, "{out:#?}");
    assert!(out.stdout.ends_with(" inside\n"), "{out:#?}");
    let pid: i32 = out
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pid > 1, "exec'd process must not be the init");
    // The exec'd process is in the container's pid namespace: it sees sleep as 1.
    let out = c.exec(&[], &["cat", "/proc/1/cmdline"]).ok();
    assert_eq!(out.stdout, "sleep\u{0}1000\u{0}");
    assert_eq!(c.status(), "running");
}

#[test]
fn exec_env_cwd_user() {
    let c = running_sleeper("exec-opts");
    let out = c
        .exec(
            &[
                "--env",
                "FOO=bar baz",
                "--cwd",
                "/tmp",
                "--user",
                "1000:1000",
            ],
            &["sh", "-c", "echo \"$FOO\"; pwd; id -u; id -g"],
        )
        .ok();
    assert_eq!(out.stdout, "bar baz\n/tmp\n1000\n1000\n");
}

#[test]
fn exec_process_file() {
    let c = running_sleeper("exec-process");
    let process = json!({
        "terminal": false,
        "user": {"uid": 65534, "gid": 65534},
        "args": ["sh", "-c", "echo $GREETING; pwd; id -u; exit 9"],
        "env": ["PATH=/bin", "GREETING=hi-from-process-json"],
        "cwd": "/proc",
        "noNewPrivileges": true
    });
    let p = c.dir.join("process.json");
    fs::write(&p, process.to_string()).unwrap();
    let out = c.exec(&["--process", p.to_str().unwrap()], &[]);
    assert_eq!(out.code, 9, "{out:#?}");
    assert_eq!(out.stdout, "hi-from-process-json\n/proc\n65534\n");
}

#[test]
fn exec_into_stopped_container_fails() {
    let mut c = Container::new("exec-stopped");
    c.sh("exit 0");
    c.create_start();
    c.wait_status("stopped", WAIT);
    let out = c.exec(&[], &["true"]);
    assert_ne!(out.code, 0, "{out:#?}");
}

#[test]
fn exec_detach() {
    let c = running_sleeper("exec-detach");
    // The detached process keeps its stdio: send it to files, not our pipes.
    let out = c.spawn_to_files(&["exec", "--detach", &c.id, "sh", "-c", "exec sleep 999"]);
    assert_eq!(out.code, 0, "{out:#?}");
    // Both processes are now in the container.
    let deadline = Instant::now() + WAIT;
    loop {
        let ps = c.runtime(&["ps", "--format", "json", &c.id]).ok();
        let v: Value = serde_json::from_str(&ps.stdout).unwrap();
        if v.as_array().unwrap().len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "exec --detach process missing: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A hook that records its name in `order` and its stdin (the state) in `<name>.json`.
fn hook(dir: &str, name: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat > {dir}/{name}.json; echo {name} >> {dir}/order")]
    })
}

#[test]
fn hooks_run_in_order_with_state_on_stdin() {
    let mut c = Container::new("hooks");
    c.sh("echo main > /hooks/main-ran; exit 0");
    let host = c.dir.join("hooks");
    fs::create_dir_all(&host).unwrap();
    let h = host.to_str().unwrap().to_string();
    c.add_mount(json!({
        "destination": "/hooks", "type": "bind", "source": h, "options": ["rbind", "rw"]
    }));
    c.config["hooks"] = json!({
        "prestart": [hook(&h, "prestart")],
        "createRuntime": [hook(&h, "createRuntime")],
        // createContainer runs in the container's mount namespace before pivot_root.
        "createContainer": [hook(&h, "createContainer")],
        // startContainer runs inside the container: the host dir is at /hooks.
        "startContainer": [hook("/hooks", "startContainer")],
        "poststart": [hook(&h, "poststart")],
        "poststop": [hook(&h, "poststop")]
    });
    c.create().ok();
    let order = || fs::read_to_string(host.join("order")).unwrap_or_default();
    // runc 1.1 runs poststart hooks at create time; the spec says after start.
    let runc_poststart = if is_polis() { "" } else { "poststart\n" };
    assert_eq!(
        order(),
        format!("prestart\ncreateRuntime\ncreateContainer\n{runc_poststart}")
    );
    let st: Value =
        serde_json::from_str(&fs::read_to_string(host.join("createRuntime.json")).unwrap())
            .expect("state JSON on hook stdin");
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["bundle"], c.bundle.to_str().unwrap());
    assert_eq!(st["status"], "creating");
    assert_eq!(st["pid"].as_i64(), c.pid.map(i64::from));

    c.start().ok();
    c.wait_status("stopped", WAIT);
    let started = if is_polis() {
        "prestart\ncreateRuntime\ncreateContainer\nstartContainer\npoststart\n"
    } else {
        "prestart\ncreateRuntime\ncreateContainer\npoststart\nstartContainer\n"
    };
    assert_eq!(order(), started);
    assert!(host.join("main-ran").exists());
    let st: Value =
        serde_json::from_str(&fs::read_to_string(host.join("poststart.json")).unwrap()).unwrap();
    assert_eq!(st["id"], c.id.as_str());
    c.delete().ok();
    assert_eq!(order(), format!("{started}poststop\n"));
    let st: Value =
        serde_json::from_str(&fs::read_to_string(host.join("poststop.json")).unwrap()).unwrap();
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["status"], "stopped");
}

#[test]
fn failing_hook_fails_create_and_leaves_nothing() {
    let mut c = Container::new("hook-fail");
    c.args(&["sleep", "1000"]);
    c.config["hooks"] = json!({
        "createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]
    });
    let out = c.create();
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(!out.stderr.is_empty());
    assert!(
        c.try_state().is_err(),
        "container must not exist after failed create"
    );
    assert_no_leaks(&c.id, &c.cgroup_path, &c.root, None);
}

#[test]
fn hook_timeout_fails_create() {
    let mut c = Container::new("hook-timeout");
    c.args(&["sleep", "1000"]);
    c.config["hooks"] = json!({
        "prestart": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]
    });
    let t = Instant::now();
    let out = c.create();
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "hook timeout not enforced"
    );
    assert!(c.try_state().is_err());
    assert_no_leaks(&c.id, &c.cgroup_path, &c.root, None);
}

#[test]
fn exec_into_paused_container() {
    let mut c = Container::new("exec-paused");
    c.args(&["sleep", "1000"]);
    c.create_start();
    c.runtime(&["pause", &c.id]).ok();
    // Refused by default…
    let out = c.exec(&[], &["true"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("paused"), "{}", out.stderr);
    // …allowed with --ignore-paused: the process starts frozen and runs on resume.
    let marker = "/dev/shm/ran";
    // Its stdio goes to files: a frozen process would hold a pipe open.
    let id = c.id.clone();
    let out = c.spawn_to_files(&["exec", "--detach", "--ignore-paused", &id, "touch", marker]);
    assert_eq!(out.code, 0, "{out:#?}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = c.pid.unwrap();
    let inside = format!("/proc/{pid}/root{marker}");
    assert!(!std::path::Path::new(&inside).exists(), "ran while frozen");
    c.runtime(&["resume", &c.id]).ok();
    assert!(
        wait_for_file(
            std::path::Path::new(&inside),
            std::time::Duration::from_secs(5)
        ),
        "did not run after resume"
    );
}
