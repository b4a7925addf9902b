//! The docker CLI's container verbs against `polis daemon`: cp both ways (and that no
//! path planted in a container leads out of it), export, diff, commit, top, rename,
//! stats, container prune, ps filters and sizes, rm -v.

mod common;

use common::daemon::{import_busybox, leftovers, Daemon, DOCKER};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn ok(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.docker(args);
    assert_eq!(code, 0, "docker {args:?}: {err}");
    out
}

fn fails(d: &Daemon, args: &[&str]) -> String {
    let (code, out, err) = d.docker(args);
    assert_ne!(code, 0, "docker {args:?} succeeded: {out}");
    err
}

/// One ustar member (`kind` b'0' file, b'2' symlink, b'5' directory).
fn tar_member(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0width$o}", width = len - 1);
        h[at..at + len - 1].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, if kind == b'5' { 0o755 } else { 0o644 });
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, data.len() as u64);
    octal(&mut h, 136, 12, 1_700_000_000);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn tar_end(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; 1024]);
}

#[test]
fn cp_both_ways_and_never_out_of_the_rootfs() {
    let d = Daemon::start("verbs-cp");
    import_busybox(&d);
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "up",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    ok(&d, &["create", "--name", "down", "busybox:local", "true"]);

    let src = d.dir.join("src");
    std::fs::create_dir_all(src.join("tree/sub")).unwrap();
    std::fs::write(src.join("note.txt"), "hello from the host\n").unwrap();
    std::fs::set_permissions(src.join("note.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(src.join("tree/sub/deep"), "deep\n").unwrap();
    std::os::unix::fs::symlink("sub/deep", src.join("tree/link")).unwrap();
    let note = src.join("note.txt");
    let note = note.to_str().unwrap();
    let tree = src.join("tree");
    let tree = tree.to_str().unwrap();

    // Into a running and a stopped container; content and mode kept.
    ok(&d, &["cp", note, "up:/tmp/"]);
    ok(&d, &["cp", note, "down:/root/renamed.txt"]);
    let out = ok(
        &d,
        &[
            "exec",
            "up",
            "sh",
            "-c",
            "stat -c %a /tmp/note.txt; cat /tmp/note.txt",
        ],
    );
    assert_eq!(out, "640\nhello from the host\n");
    ok(&d, &["cp", tree, "up:/tmp/copied"]);
    let out = ok(
        &d,
        &[
            "exec",
            "up",
            "sh",
            "-c",
            "cat /tmp/copied/sub/deep; readlink /tmp/copied/link",
        ],
    );
    assert_eq!(out, "deep\nsub/deep\n");

    // Out of both, a file and a directory.
    let back = d.dir.join("back");
    std::fs::create_dir_all(&back).unwrap();
    ok(
        &d,
        &["cp", "down:/root/renamed.txt", back.to_str().unwrap()],
    );
    let got = back.join("renamed.txt");
    assert_eq!(
        std::fs::read_to_string(&got).unwrap(),
        "hello from the host\n"
    );
    assert_eq!(
        std::fs::metadata(&got).unwrap().permissions().mode() & 0o777,
        0o640
    );
    ok(
        &d,
        &["cp", "up:/tmp/copied", back.join("dir").to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(back.join("dir/sub/deep")).unwrap(),
        "deep\n"
    );
    assert_eq!(
        std::fs::read_link(back.join("dir/link")).unwrap(),
        Path::new("sub/deep")
    );
    let err = fails(&d, &["cp", "up:/no/such/file", back.to_str().unwrap()]);
    assert!(
        err.contains("Could not find the file /no/such/file in container up"),
        "{err}"
    );

    // Symlinks planted in the container resolve inside it, never on the host.
    let marker = format!("polis-cp-escape-{}", std::process::id());
    ok(
        &d,
        &[
            "exec",
            "up",
            "sh",
            "-c",
            "ln -s /etc /tmp/abs && ln -s ../../../../../../etc /tmp/rel",
        ],
    );
    let evil = src.join(&marker);
    std::fs::write(&evil, "not on the host\n").unwrap();
    ok(&d, &["cp", evil.to_str().unwrap(), "up:/tmp/abs/"]);
    ok(
        &d,
        &[
            "cp",
            evil.to_str().unwrap(),
            &format!("up:/tmp/rel/{marker}.2"),
        ],
    );
    assert!(
        !Path::new("/etc").join(&marker).exists(),
        "escaped to the host's /etc"
    );
    assert!(!Path::new("/etc").join(format!("{marker}.2")).exists());
    let out = ok(
        &d,
        &[
            "exec",
            "up",
            "cat",
            &format!("/etc/{marker}"),
            &format!("/etc/{marker}.2"),
        ],
    );
    assert_eq!(out, "not on the host\nnot on the host\n");
    let container_passwd = ok(&d, &["exec", "up", "cat", "/etc/passwd"]);
    let (code, tar, err) = d.docker(&["cp", "up:/tmp/rel/passwd", "-"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        tar.contains(container_passwd.trim()),
        "read the host's passwd: {tar}"
    );

    // An archive whose own symlink points at /etc extracts inside the container; one
    // pointing above the destination is refused.
    let mut archive = Vec::new();
    tar_member(&mut archive, "hop", b'2', "/etc", b"");
    tar_member(
        &mut archive,
        &format!("hop/{marker}.3"),
        b'0',
        "",
        b"via the archive\n",
    );
    tar_end(&mut archive);
    let archive_path = d.dir.join("hop.tar");
    std::fs::write(&archive_path, &archive).unwrap();
    let (code, _, err) = d.docker_in(&["cp", "-", "up:/tmp"], Some(&archive_path));
    assert_eq!(code, 0, "{err}");
    assert!(!Path::new("/etc").join(format!("{marker}.3")).exists());
    assert_eq!(
        ok(&d, &["exec", "up", "cat", &format!("/etc/{marker}.3")]),
        "via the archive\n"
    );
    let mut archive = Vec::new();
    tar_member(&mut archive, "up", b'2', "../../../../..", b"");
    tar_end(&mut archive);
    std::fs::write(&archive_path, &archive).unwrap();
    let (code, _, err) = d.docker_in(&["cp", "-", "up:/tmp"], Some(&archive_path));
    assert_ne!(code, 0);
    assert!(err.contains("invalid symlink"), "{err}");
}

#[test]
fn export_diff_and_commit() {
    let d = Daemon::start("verbs-commit");
    import_busybox(&d);
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "box",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    assert_eq!(ok(&d, &["diff", "box"]), "");
    ok(
        &d,
        &[
            "exec",
            "box",
            "sh",
            "-c",
            "rm /bin/ls && mkdir /newdir && echo made > /etc/made && touch /tmp/t",
        ],
    );
    assert_eq!(
        ok(&d, &["diff", "box"]),
        "C /bin\nD /bin/ls\nC /etc\nA /etc/made\nA /newdir\nC /tmp\nA /tmp/t\n"
    );

    let exported = d.dir.join("box.tar");
    ok(&d, &["export", "-o", exported.to_str().unwrap(), "box"]);
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&exported)
        .output()
        .unwrap();
    assert!(list.status.success());
    let list = String::from_utf8_lossy(&list.stdout);
    let names: Vec<&str> = list.lines().collect();
    for want in ["bin/", "bin/busybox", "etc/made", "newdir/", "tmp/t"] {
        assert!(names.contains(&want), "{want} missing from export: {list}");
    }
    assert!(!names.contains(&"bin/ls"), "deleted file exported");

    let id = ok(
        &d,
        &["commit", "-m", "snapshot", "-a", "tester", "box", "snap:1"],
    );
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(
        ok(&d, &["run", "--rm", "snap:1", "cat", "/etc/made"]),
        "made\n"
    );
    let err = fails(&d, &["run", "--rm", "snap:1", "ls", "/"]);
    assert!(err.contains("not found"), "{err}");
    let out = ok(
        &d,
        &[
            "image",
            "inspect",
            "--format",
            "{{.Comment}}|{{.Author}}|{{len .RootFS.Layers}}|{{json .Config.Cmd}}",
            "snap:1",
        ],
    );
    assert_eq!(out.trim(), "snapshot|tester|2|[\"sleep\",\"1000\"]");

    ok(
        &d,
        &[
            "commit",
            "--change",
            "CMD [\"echo\",\"hi\"]",
            "--change",
            "ENV GREETING=hey",
            "box",
            "snap:2",
        ],
    );
    assert_eq!(ok(&d, &["run", "--rm", "snap:2"]), "hi\n");
    assert_eq!(
        ok(&d, &["run", "--rm", "snap:2", "sh", "-c", "echo $GREETING"]),
        "hey\n"
    );
    let err = fails(&d, &["commit", "--change", "RUN true", "box"]);
    assert!(err.contains("RUN"), "{err}");
    // The container was paused for the commit and runs on.
    assert_eq!(
        ok(&d, &["inspect", "--format", "{{.State.Status}}", "box"]).trim(),
        "running"
    );
}

#[test]
fn top_rename_stats_prune_and_ps() {
    let d = Daemon::start("verbs-ps");
    import_busybox(&d);
    ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--label",
            "team=a",
            "busybox:local",
            "sleep",
            "1000",
        ],
    );
    ok(&d, &["create", "--name", "fresh", "busybox:local", "true"]);
    let (code, _, err) = d.docker(&[
        "run",
        "--name",
        "done",
        "busybox:local",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(code, 3, "{err}");

    let top = ok(&d, &["top", "web"]);
    assert!(top.starts_with("UID") && top.contains("PID"), "{top}");
    assert!(top.contains("sleep 1000"), "{top}");
    let top = ok(&d, &["top", "web", "-o", "pid,comm"]);
    assert_eq!(top.lines().count(), 2, "{top}");
    let err = fails(&d, &["top", "fresh"]);
    assert!(err.contains("is not running"), "{err}");

    ok(&d, &["rename", "web", "site"]);
    assert_eq!(ok(&d, &["ps", "--format", "{{.Names}}"]), "site\n");
    let err = fails(&d, &["rename", "site", "fresh"]);
    assert!(
        err.contains("Conflict. The container name \"/fresh\" is already in use by container"),
        "{err}"
    );
    let err = fails(&d, &["rename", "site", "no good"]);
    assert!(err.contains("Invalid container name (/no good)"), "{err}");

    let stats = ok(
        &d,
        &[
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}|{{.MemUsage}}|{{.PIDs}}",
            "site",
        ],
    );
    let fields: Vec<&str> = stats.trim().split('|').collect();
    assert_eq!(fields[0], "site", "{stats}");
    let (used, limit) = fields[1].split_once(" / ").unwrap();
    assert!(used != "0B" && limit != "0B", "{stats}");
    assert_eq!(fields[2], "1", "{stats}");
    // Streaming: a fresh reading every second.
    let out = Command::new(DOCKER)
        .env("DOCKER_HOST", d.host())
        .args(["stats", "--format", "{{.Name}} {{.MemUsage}}", "site"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(out.id() as i32, libc::SIGKILL) };
    let out = out.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let readings = text.matches("site ").count();
    assert!(readings >= 2, "{text}");

    // ps: Docker's filters, limit and sizes.
    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["ps", "--format", "{{.Names}}"];
        all.extend_from_slice(args);
        ok(&d, &all).lines().map(String::from).collect()
    };
    assert_eq!(names(&["-a"]), ["done", "fresh", "site"]);
    assert_eq!(names(&["--filter", "status=exited"]), ["done"]);
    assert_eq!(names(&["--filter", "status=created"]), ["fresh"]);
    assert_eq!(names(&["-a", "--filter", "exited=3"]), ["done"]);
    assert_eq!(names(&["-a", "--filter", "label=team=a"]), ["site"]);
    assert_eq!(names(&["-a", "--filter", "name=^f"]), ["fresh"]);
    assert_eq!(names(&["-a", "--filter", "before=fresh"]), ["site"]);
    assert_eq!(names(&["-a", "--filter", "since=site"]), ["done", "fresh"]);
    assert_eq!(
        names(&["-a", "--filter", "ancestor=busybox:local"]).len(),
        3
    );
    assert_eq!(names(&["-n", "2"]), ["done", "fresh"]);
    assert_eq!(names(&["-l"]), ["done"]);
    let status = ok(&d, &["ps", "-a", "--format", "{{.Names}}:{{.Status}}"]);
    assert!(status.contains("fresh:Created"), "{status}");
    assert!(status.contains("done:Exited (3) "), "{status}");
    assert!(status.contains("site:Up "), "{status}");
    ok(
        &d,
        &[
            "exec",
            "site",
            "sh",
            "-c",
            "head -c 3000 /bin/busybox > /tmp/blob",
        ],
    );
    let size = ok(&d, &["ps", "-s", "--format", "{{.Size}}"]);
    assert!(size.starts_with("3kB (virtual "), "{size}");
    let err = fails(&d, &["ps", "--filter", "bogus=1"]);
    assert!(err.contains("invalid filter 'bogus'"), "{err}");

    // prune removes what is not running, and only that.
    let ids: Vec<String> = ok(&d, &["ps", "-aq", "--no-trunc"])
        .lines()
        .map(String::from)
        .collect();
    let fresh = ok(&d, &["inspect", "--format", "{{.Id}}", "fresh"]);
    let out = ok(&d, &["container", "prune", "-f"]);
    assert!(
        out.contains("Deleted Containers:") && out.contains(fresh.trim()),
        "{out}"
    );
    assert_eq!(names(&["-a"]), ["site"]);

    // rm -v: no anonymous volumes to remove, as with Docker.
    ok(&d, &["rm", "-v", "-f", "site"]);
    assert_eq!(ok(&d, &["ps", "-aq"]), "");
    assert_eq!(leftovers(&d, &ids), Vec::<String>::new());
}
