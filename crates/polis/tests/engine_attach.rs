//! Attaching to terminals with the docker CLI: detach keys leave the container
//! running, and the terminal has the client's size from the first moment.

mod common;

use common::daemon::{import_busybox, Daemon, DOCKER};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Run `cmd` under a pty (script(1)), feeding it `input` step by step: each step
/// waits until the output so far contains its marker (so the CLI has its terminal in
/// raw mode, and the shell has answered), then writes its bytes.
fn under_pty(d: &Daemon, cmd: &str, input: &[(&str, &[u8])]) -> (i32, String) {
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("DOCKER_HOST", d.host())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                seen.lock().unwrap().push_str(&text);
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    for (marker, bytes) in input {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.lock().unwrap().contains(marker) {
            assert!(
                Instant::now() < deadline,
                "no {marker:?} in {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let out = seen.lock().unwrap().clone();
    (status.code().unwrap_or(-1), out)
}

fn running(d: &Daemon, name: &str) -> String {
    d.docker(&["inspect", "-f", "{{.State.Running}}", name])
        .1
        .trim()
        .to_string()
}

#[test]
fn detach_keys_leave_the_container_running() {
    let d = Daemon::start("detach");
    import_busybox(&d);
    // run -it, a command, then ctrl-p ctrl-q.
    let (code, out) = under_pty(
        &d,
        &format!("{DOCKER} run -it --name det busybox:local sh"),
        &[("/ #", b"echo fir''st\n"), ("first", b"\x10\x11")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("first"), "{out}");
    assert_eq!(running(&d, "det"), "true");

    // attach again: the same shell, still there; detach with keys of our choosing.
    let (code, out) = under_pty(
        &d,
        &format!("{DOCKER} attach --detach-keys ctrl-a,x det"),
        &[("", b"echo sec''ond $$\n"), ("second", b"\x01x")],
    );
    // The CLI itself ends an attach on the keys, with this message and status 1.
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("read escape sequence"), "{out}");
    assert!(out.contains("second 1"), "{out}");
    assert_eq!(running(&d, "det"), "true");

    // The daemon watches for the keys too, for clients that do not.
    let mut raw = std::os::unix::net::UnixStream::connect(&d.socket).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        raw,
        "POST /containers/det/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-a,x HTTP/1.1\r\n\
         Host: polis\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(raw.read(&mut byte).unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    raw.write_all(b"echo th''ird\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    raw.write_all(b"\x01x").unwrap();
    // The daemon ends the connection; what came before the keys reached the shell.
    let mut rest = Vec::new();
    raw.read_to_end(&mut rest).unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("third"));
    assert_eq!(running(&d, "det"), "true");

    // A broken sequence is input like any other; exit ends the container.
    let (_, out) = under_pty(
        &d,
        &format!("{DOCKER} attach det"),
        &[("", b"echo \x10fou''rth\n"), ("fourth", b"exit 3\n")],
    );
    assert!(out.contains("fourth"), "{out}");
    let (_, code, _) = d.docker(&["wait", "det"]);
    assert_eq!(code.trim(), "3");

    // exec -it detaches the same way; the exec'd process runs on.
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
    let (code, out) = under_pty(
        &d,
        &format!("{DOCKER} exec -it box sh"),
        &[
            ("/ #", b"touch /tmp/mark; echo ma''rked\n"),
            ("marked", b"\x10\x11"),
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("read escape sequence"), "{out}");
    assert_eq!(d.docker(&["exec", "box", "ls", "/tmp/mark"]).0, 0);
    let (_, ps, _) = d.docker(&["exec", "box", "ps"]);
    assert!(ps.lines().any(|l| l.trim_end().ends_with(" sh")), "{ps}");

    // Bad keys are refused (the CLI shows only the status of the refused upgrade).
    let (code, _, err) = d.docker(&["attach", "--detach-keys", "ctrl-", "box"]);
    assert_ne!(code, 0);
    assert!(err.contains("400"), "{err}");
}

#[test]
fn the_terminal_has_the_clients_size_from_the_start() {
    let d = Daemon::start("console-size");
    import_busybox(&d);
    // No pause before stty: the size must be there before any resize request.
    let (code, out) = under_pty(
        &d,
        &format!("stty cols 123 rows 45; {DOCKER} run -it --rm busybox:local stty size"),
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("45 123"), "{out}");
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
    let (code, out) = under_pty(
        &d,
        &format!("stty cols 99 rows 21; {DOCKER} exec -it box stty size"),
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("21 99"), "{out}");
}
