//! `polis shim` end to end: busybox containers under a detached shim, driven over its
//! socket; logs, exit status, attach, stdin, tty resize, exec, kill, delete, and that
//! the shim outlives whoever started it and leaves nothing behind.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{process_alive, Container};
use polis_shim::protocol::{read_frame, Request, SignalArg, EXIT, STDERR, STDOUT};
use polis_shim::{Client, Ready};
use serde_json::Value;

struct Shim {
    state_dir: PathBuf,
    log: PathBuf,
    ready: Ready,
}

impl Shim {
    fn socket(&self) -> PathBuf {
        self.state_dir.join(polis_shim::SOCKET)
    }
    fn client(&self) -> Client {
        Client::connect(&self.socket()).expect("connect to shim")
    }
    fn call(&self, req: Request) -> polis_shim::Response {
        self.client()
            .call(&req)
            .unwrap_or_else(|e| panic!("{req:?}: {e}"))
    }
    /// Delete through the shim and check that the shim and its socket are gone.
    fn delete(&self, force: bool) {
        self.call(Request::Delete { force });
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(self.ready.shim_pid) {
            assert!(Instant::now() < deadline, "shim still running after delete");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!self.socket().exists(), "shim socket left behind");
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if std::thread::panicking() && process_alive(self.ready.shim_pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.ready.shim_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn shim_command(c: &Container, extra: &[&str]) -> (Command, PathBuf, PathBuf) {
    c.write_config();
    let state_dir = c.dir.join("shim");
    let log = c.dir.join("container.log");
    // POLIS_SHIM_BIN: measure another build (a release one) with the same tests.
    let bin =
        std::env::var_os("POLIS_SHIM_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_polis").into());
    let mut cmd = Command::new(bin);
    cmd.arg("shim")
        .args(["--id", &c.id])
        .arg("--bundle")
        .arg(&c.bundle)
        .arg("--state-dir")
        .arg(&state_dir)
        .arg("--runtime-root")
        .arg(&c.root)
        .arg("--log-path")
        .arg(&log)
        .args(extra);
    (cmd, state_dir, log)
}

fn launch(c: &mut Container, extra: &[&str]) -> Shim {
    let (mut cmd, state_dir, log) = shim_command(c, extra);
    let out = cmd.output().expect("run polis shim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "polis shim failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready: Ready = serde_json::from_str(stdout.trim()).expect("ready line");
    assert!(
        ready.ready && ready.pid > 0 && ready.shim_pid > 0,
        "{ready:?}"
    );
    c.pid = Some(ready.pid);
    Shim {
        state_dir,
        log,
        ready,
    }
}

fn log_entries(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}")))
        .collect()
}

/// Open an attach or exec stream: (bytes already read, the socket).
fn stream(shim: &Shim, req: Request) -> (Vec<u8>, UnixStream) {
    let mut client = shim.client();
    client.call(&req).unwrap_or_else(|e| panic!("{req:?}: {e}"));
    client.into_stream()
}

/// Read framed output until `want` shows up in stream `which`.
fn read_frames_until(buffered: Vec<u8>, sock: &mut UnixStream, which: u8, want: &str) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = std::io::Cursor::new(buffered).chain(sock);
    let mut got = String::new();
    while !got.contains(want) {
        let (s, data) = read_frame(&mut reader)
            .expect("read frame")
            .unwrap_or_else(|| panic!("stream ended before {want:?}; got {got:?}"));
        if s == which {
            got.push_str(&String::from_utf8_lossy(&data));
        }
    }
    got
}

#[test]
fn logs_exit_status_and_wait() {
    let mut c = Container::new("shim-logs");
    c.sh("echo one; echo '<two>' >&2; printf partial; exit 3");
    let shim = launch(&mut c, &["--start"]);
    let wait = shim.call(Request::Wait);
    let exit = wait.exit.expect("exit in wait reply");
    assert_eq!((exit.exit_code, exit.signal), (3, None));
    let recorded: polis_shim::ExitStatus = serde_json::from_slice(
        &std::fs::read(shim.state_dir.join(polis_shim::EXIT_FILE)).expect("exit.json"),
    )
    .expect("parse exit.json");
    assert_eq!(recorded, exit);
    let state = shim.call(Request::State).state.expect("state");
    assert_eq!(state.status, "stopped");

    let mut entries = log_entries(&shim.log);
    entries.sort_by_key(|e| e["stream"].as_str().unwrap_or_default().to_string());
    let pairs: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')));
            (e["stream"].to_string(), e["log"].to_string())
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("\"stderr\"".into(), "\"<two>\\n\"".into()),
            ("\"stdout\"".into(), "\"one\\n\"".into()),
            ("\"stdout\"".into(), "\"partial\"".into()),
        ]
    );
    // Docker's encoding, byte for byte.
    let raw = std::fs::read_to_string(&shim.log).unwrap();
    assert!(
        raw.contains(r#"{"log":"\u003ctwo\u003e\n","stream":"stderr","time":""#),
        "{raw}"
    );
    shim.delete(false);
}

#[test]
fn outlives_its_launcher_attach_stdin_exec_kill() {
    let mut c = Container::new("shim-live");
    c.sh("echo started; exec cat");
    let (cmd, state_dir, log) = shim_command(&c, &["--stdin"]);
    // The launcher: a shell that starts the shim, then lingers until killed.
    let ready_file = c.dir.join("ready");
    let mut launcher = Command::new("sh")
        .arg("-c")
        .arg(r#"out="$1"; shift; "$@" > "$out"; exec sleep 600"#)
        .arg("sh")
        .arg(&ready_file)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .spawn()
        .expect("spawn launcher");
    let deadline = Instant::now() + Duration::from_secs(20);
    let ready: Ready = loop {
        let text = std::fs::read_to_string(&ready_file).unwrap_or_default();
        if text.ends_with('\n') {
            break serde_json::from_str(text.trim()).expect("ready line");
        }
        assert!(Instant::now() < deadline, "shim never reported");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(ready.ready, "{ready:?}");
    c.pid = Some(ready.pid);
    let shim = Shim {
        state_dir,
        log,
        ready,
    };
    launcher.kill().expect("SIGKILL the launcher");
    launcher.wait().expect("reap launcher");
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        process_alive(shim.ready.shim_pid),
        "shim died with its launcher"
    );
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", shim.ready.shim_pid)).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let own = std::fs::read_to_string("/proc/self/stat").unwrap();
    let own: Vec<&str> = own.rsplit(')').next().unwrap().split_whitespace().collect();
    assert_ne!(fields[3], own[3], "shim left in its caller's session");

    // Created, not started: a start request runs it.
    assert_eq!(shim.call(Request::State).state.unwrap().status, "created");
    let (buffered, mut attach) = stream(
        &shim,
        Request::Attach {
            stdin: true,
            stdout: true,
            stderr: true,
            stdin_once: false,
        },
    );
    shim.call(Request::Start);
    read_frames_until(Vec::new(), &mut attach, STDOUT, "started");
    attach.write_all(b"hello through stdin\n").unwrap();
    read_frames_until(buffered, &mut attach, STDOUT, "hello through stdin");
    // A second attacher sees live output too.
    let (b2, mut attach2) = stream(
        &shim,
        Request::Attach {
            stdin: true,
            stdout: true,
            stderr: false,
            stdin_once: false,
        },
    );
    attach2.write_all(b"second\n").unwrap();
    read_frames_until(b2, &mut attach2, STDOUT, "second");
    read_frames_until(Vec::new(), &mut attach, STDOUT, "second");
    drop(attach2);

    // Nothing of the shim's in the container: only cat's stdio.
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", shim.ready.pid))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"]);
    // Nor its blocked signals or ignored SIGPIPE.
    let status = std::fs::read_to_string(format!("/proc/{}/status", shim.ready.pid)).unwrap();
    let mask =
        |key: &str| u64::from_str_radix(&common::status_field(&status, key).unwrap(), 16).unwrap();
    assert_eq!(mask("SigBlk"), 0);
    // Standard signals at their defaults (32 and 33 belong to the C library).
    assert_eq!(mask("SigIgn") & 0x7fff_ffff, 0, "ignored signals inherited");

    // exec: output by stream, then the exit code.
    let mut process: Value = serde_json::from_str(
        r#"{"args":["sh","-c","read x; echo out $x; echo err >&2; exit 7"],"cwd":"/","user":{"uid":0,"gid":0},
            "env":["PATH=/bin"]}"#,
    )
    .unwrap();
    process["terminal"] = false.into();
    let (eb, mut exec) = stream(
        &shim,
        Request::Exec {
            process: serde_json::from_value(process).unwrap(),
            tty: false,
            stdin: true,
        },
    );
    exec.write_all(b"ping\n").unwrap();
    exec.shutdown(std::net::Shutdown::Write).unwrap();
    exec.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = std::io::Cursor::new(eb).chain(&mut exec);
    let (mut out, mut err, mut code) = (String::new(), String::new(), None);
    while let Some((s, data)) = read_frame(&mut reader).expect("exec frame") {
        match s {
            STDOUT => out.push_str(&String::from_utf8_lossy(&data)),
            STDERR => err.push_str(&String::from_utf8_lossy(&data)),
            EXIT => {
                let v: Value = serde_json::from_slice(&data).unwrap();
                code = v["exit_code"].as_i64();
            }
            other => panic!("frame of stream {other}"),
        }
    }
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("out ping\n", "err\n", Some(7))
    );

    // kill: wait says 137, the attach stream ends.
    let mut waiter = shim.client();
    let kill = shim.client().call(&Request::Kill {
        signal: SignalArg::Name("KILL".into()),
        all: false,
    });
    kill.expect("kill");
    let exit = waiter.call(&Request::Wait).unwrap().exit.unwrap();
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
    attach
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    attach
        .read_to_end(&mut rest)
        .expect("attach stream ends at exit");
    let logged: Vec<String> = log_entries(&shim.log)
        .iter()
        .map(|e| e["log"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logged, ["started\n", "hello through stdin\n", "second\n"]);
    shim.delete(false);
}

#[test]
fn tty_resize_and_stty_size() {
    let mut c = Container::new("shim-tty");
    c.config["process"]["terminal"] = true.into();
    c.args(&["sh"]);
    let shim = launch(&mut c, &["--start"]);
    shim.call(Request::Resize {
        height: 33,
        width: 111,
        exec: None,
    });
    let (buffered, mut attach) = stream(
        &shim,
        Request::Attach {
            stdin: true,
            stdout: true,
            stderr: true,
            stdin_once: false,
        },
    );
    attach.write_all(b"stty size; exit 5\n").unwrap();
    attach
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = buffered;
    let _ = attach.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("33 111"), "{text:?}");
    let exit = shim.call(Request::Wait).exit.unwrap();
    assert_eq!(exit.exit_code, 5);
    assert!(log_entries(&shim.log)
        .iter()
        .any(|e| e["log"].as_str().unwrap().contains("33 111")));
    shim.delete(false);
}

#[test]
fn log_rotation() {
    let mut c = Container::new("shim-rotate");
    c.sh("i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done");
    let shim = launch(
        &mut c,
        &["--start", "--log-max-size", "2k", "--log-max-file", "3"],
    );
    assert_eq!(shim.call(Request::Wait).exit.unwrap().exit_code, 0);
    let numbered = |n: u32| PathBuf::from(format!("{}.{n}", shim.log.display()));
    assert!(numbered(1).exists() && numbered(2).exists());
    assert!(!numbered(3).exists());
    for p in [shim.log.clone(), numbered(1), numbered(2)] {
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size <= 2048 + 100, "{} is {size} bytes", p.display());
    }
    let last = log_entries(&shim.log);
    assert_eq!(last.last().unwrap()["log"], "line 299\n");
    shim.delete(false);
}

#[test]
fn idle_memory_and_forced_delete() {
    let mut c = Container::new("shim-idle");
    c.args(&["sleep", "1000"]);
    let shim = launch(&mut c, &["--start"]);
    std::thread::sleep(Duration::from_millis(200));
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", shim.ready.shim_pid))
        .expect("smaps_rollup");
    let field = |k: &str| common::status_field(&rollup, k).unwrap_or_default();
    eprintln!(
        "shim {} ({:?}) idle: {rollup}\nRss {} Pss {}",
        shim.ready.shim_pid,
        std::fs::read_link(format!("/proc/{}/exe", shim.ready.shim_pid)),
        field("Rss"),
        field("Pss")
    );
    // A running container is not deleted without force.
    let refused = shim.client().call(&Request::Delete { force: false });
    assert!(refused.is_err());
    shim.delete(true);
    assert!(!process_alive(shim.ready.pid));
}
