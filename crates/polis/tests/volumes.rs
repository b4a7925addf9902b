//! Volumes end to end with the unmodified docker CLI: `docker volume` create, ls (with
//! filters), inspect, rm and prune; containers with named, anonymous and image volumes
//! (copy-up of the image's content, nocopy, read-only), `local` volumes mounted from a
//! tmpfs or a host directory, in-use refusals, `rm -v` and `--rm`, data kept across
//! container removal and a daemon restart, and nothing left once all is removed.

mod common;

use common::daemon::{import_busybox, leftovers, Daemon};
use serde_json::Value;

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

fn lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(String::from).collect();
    v.sort();
    v
}

fn run(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "--network", "none"];
    all.extend_from_slice(args);
    ok(d, &all)
}

fn volumes_dir(d: &Daemon) -> std::path::PathBuf {
    d.dir.join("root/volumes")
}

#[test]
fn volume_verbs_and_filters() {
    let d = Daemon::start("vol-verbs");
    assert_eq!(ok(&d, &["volume", "create", "alpha"]).trim(), "alpha");
    // The same name again is the same volume.
    assert_eq!(ok(&d, &["volume", "create", "alpha"]).trim(), "alpha");
    ok(
        &d,
        &[
            "volume", "create", "--label", "tier=db", "--label", "x", "beta",
        ],
    );
    let anon = ok(&d, &["volume", "create"]).trim().to_string();
    assert_eq!(anon.len(), 64, "{anon}");
    let out = ok(&d, &["volume", "ls"]);
    let mut want = vec![
        "DRIVER    VOLUME NAME".to_string(),
        format!("local     {anon}"),
        "local     alpha".to_string(),
        "local     beta".to_string(),
    ];
    want.sort();
    assert_eq!(lines(&out), want, "{out}");
    assert_eq!(
        ok(&d, &["volume", "ls", "-q", "--filter", "label=tier=db"]).trim(),
        "beta"
    );
    assert_eq!(
        ok(&d, &["volume", "ls", "-q", "--filter", "name=alp"]).trim(),
        "alpha"
    );
    assert_eq!(
        lines(&ok(&d, &["volume", "ls", "-q", "--filter", "driver=local"])).len(),
        3
    );
    assert_eq!(
        lines(&ok(
            &d,
            &["volume", "ls", "-q", "--filter", "dangling=true"]
        ))
        .len(),
        3
    );
    assert!(fails(&d, &["volume", "ls", "--filter", "bogus=1"]).contains("invalid filter 'bogus'"));

    let inspect: Value = serde_json::from_str(&ok(&d, &["volume", "inspect", "beta"])).unwrap();
    let v = &inspect[0];
    assert_eq!(v["Name"], "beta");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["tier"], "db");
    assert_eq!(v["Labels"]["x"], "");
    assert_eq!(v["Options"], Value::Null);
    assert_eq!(
        v["Mountpoint"],
        volumes_dir(&d).join("beta/_data").to_str().unwrap()
    );
    assert!(v["CreatedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        ok(
            &d,
            &[
                "volume",
                "inspect",
                "--format",
                "{{.Labels}}",
                anon.as_str()
            ]
        )
        .trim(),
        "map[com.docker.volume.anonymous:]"
    );

    // Docker's refusals, in its words.
    assert!(fails(&d, &["volume", "inspect", "nope"]).contains("get nope: no such volume"));
    assert!(fails(&d, &["volume", "rm", "nope"]).contains("get nope: no such volume"));
    ok(&d, &["volume", "rm", "-f", "nope"]);
    assert!(fails(&d, &["volume", "create", "-d", "nfsx", "z1"])
        .contains("create z1: error looking up volume plugin nfsx: plugin \"nfsx\" not found"));
    assert!(fails(&d, &["volume", "create", "-o", "foo=bar", "z2"])
        .contains("create z2: invalid option: \"foo\""));
    assert!(fails(&d, &["volume", "create", "a/b"]).contains("includes invalid characters"));

    // Prune: anonymous ones only, unless --all; labels filter.
    let out = ok(&d, &["volume", "prune", "-f"]);
    assert!(out.contains(&anon), "{out}");
    assert!(out.contains("Total reclaimed space: 0B"), "{out}");
    let out = ok(
        &d,
        &["volume", "prune", "-f", "-a", "--filter", "label=tier"],
    );
    assert!(out.contains("beta") && !out.contains("alpha"), "{out}");
    ok(&d, &["volume", "rm", "alpha"]);
    assert_eq!(ok(&d, &["volume", "ls", "-q"]).trim(), "");
    assert_eq!(std::fs::read_dir(volumes_dir(&d)).unwrap().count(), 0);
}

#[test]
fn containers_use_named_anonymous_and_image_volumes() {
    let d = Daemon::start("vol-containers");
    import_busybox(&d);
    // An image with a VOLUME over content of its own.
    let (code, _, err) = d.docker(&[
        "run",
        "--name",
        "base",
        "--network",
        "none",
        "busybox:local",
        "sh",
        "-c",
        "mkdir -p /seed/sub && echo seeded > /seed/sub/f && chown -R 1234:5678 /seed && chmod 750 /seed && ln -s /etc/passwd /seed/link",
    ]);
    assert_eq!(code, 0, "{err}");
    ok(
        &d,
        &[
            "commit",
            "--change",
            "VOLUME /seed",
            "base",
            "withvol:local",
        ],
    );
    ok(&d, &["rm", "base"]);

    // -v NAME: made at first use, filled from the image, kept after the container.
    let out = run(
        &d,
        &[
            "-v",
            "named:/seed",
            "withvol:local",
            "sh",
            "-c",
            "cat /seed/sub/f; stat -c '%u:%g %a' /seed /seed/sub/f; readlink /seed/link; echo more > /seed/new",
        ],
    );
    assert_eq!(
        out, "seeded\n1234:5678 750\n1234:5678 644\n/etc/passwd\n",
        "{out}"
    );
    let out = run(
        &d,
        &[
            "-v",
            "named:/data:ro",
            "busybox:local",
            "sh",
            "-c",
            "cat /data/new; touch /data/x 2>&1 || echo refused",
        ],
    );
    assert!(
        out.starts_with("more\n") && out.contains("refused"),
        "{out}"
    );
    // nocopy: an empty volume stays empty.
    let out = run(
        &d,
        &[
            "-v",
            "empty:/seed:nocopy",
            "withvol:local",
            "ls",
            "-A",
            "/seed",
        ],
    );
    assert_eq!(out, "");
    // --mount with a label and nocopy.
    let out = run(
        &d,
        &[
            "--mount",
            "type=volume,source=labelled,target=/seed,volume-nocopy,volume-label=team=a",
            "withvol:local",
            "ls",
            "-A",
            "/seed",
        ],
    );
    assert_eq!(out, "");
    assert_eq!(
        ok(
            &d,
            &[
                "volume",
                "inspect",
                "--format",
                "{{.Labels.team}}",
                "labelled"
            ]
        )
        .trim(),
        "a"
    );

    // A kept container: inspect shows its volumes; rm -v takes the anonymous ones only.
    let id = ok(
        &d,
        &[
            "create",
            "--network",
            "none",
            "-v",
            "named:/n",
            "-v",
            "/anon",
            "withvol:local",
            "true",
        ],
    )
    .trim()
    .to_string();
    let inspect: Value = serde_json::from_str(&ok(&d, &["inspect", &id])).unwrap();
    let mounts = inspect[0]["Mounts"].as_array().unwrap().clone();
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    let by_dest = |dest: &str| {
        mounts
            .iter()
            .find(|m| m["Destination"] == dest)
            .unwrap()
            .clone()
    };
    let n = by_dest("/n");
    assert_eq!(n["Type"], "volume");
    assert_eq!(n["Name"], "named");
    assert_eq!(n["Driver"], "local");
    assert_eq!(n["RW"], true);
    assert_eq!(n["Mode"], "z");
    assert_eq!(n["Propagation"], "");
    assert_eq!(
        n["Source"],
        volumes_dir(&d).join("named/_data").to_str().unwrap()
    );
    let anon = by_dest("/anon")["Name"].as_str().unwrap().to_string();
    let image_vol = by_dest("/seed")["Name"].as_str().unwrap().to_string();
    assert_eq!(anon.len(), 64);
    assert_eq!(inspect[0]["HostConfig"]["Binds"][0], "named:/n");
    assert!(inspect[0]["Config"]["Volumes"]["/anon"].is_object());
    // In use, running or not.
    let err = fails(&d, &["volume", "rm", "named"]);
    assert!(
        err.contains(&format!("remove named: volume is in use - [{id}]")),
        "{err}"
    );
    // (The docker CLI orders names naturally: compared as sets.)
    let mut in_use = vec![anon.clone(), image_vol.clone(), "named".to_string()];
    in_use.sort();
    assert_eq!(
        lines(&ok(
            &d,
            &["volume", "ls", "-q", "--filter", "dangling=false"]
        )),
        in_use
    );
    ok(&d, &["rm", "-v", &id]);
    let left = ok(&d, &["volume", "ls", "-q"]);
    assert_eq!(lines(&left), vec!["empty", "labelled", "named"], "{left}");

    // --rm takes the anonymous volumes with it too (the image's here).
    run(&d, &["withvol:local", "true"]);
    assert_eq!(lines(&ok(&d, &["volume", "ls", "-q"])).len(), 3);

    // Without -v, the anonymous volume stays (and prune takes it).
    let id = ok(
        &d,
        &["create", "--network", "none", "withvol:local", "true"],
    )
    .trim()
    .to_string();
    ok(&d, &["rm", &id]);
    assert_eq!(lines(&ok(&d, &["volume", "ls", "-q"])).len(), 4);
    ok(&d, &["volume", "prune", "-f"]);
    assert_eq!(lines(&ok(&d, &["volume", "ls", "-q"])).len(), 3);

    ok(&d, &["volume", "rm", "named", "empty", "labelled"]);
    assert_eq!(std::fs::read_dir(volumes_dir(&d)).unwrap().count(), 0);
    assert!(leftovers(&d, &[id]).is_empty());
}

#[test]
fn local_driver_tmpfs_and_bind_volumes() {
    let d = Daemon::start("vol-local");
    import_busybox(&d);
    ok(
        &d,
        &[
            "volume",
            "create",
            "--opt",
            "type=tmpfs",
            "--opt",
            "device=tmpfs",
            "--opt",
            "o=size=8m,uid=1000",
            "fast",
        ],
    );
    let data = volumes_dir(&d).join("fast/_data");
    let id = ok(
        &d,
        &[
            "run",
            "-d",
            "--network",
            "none",
            "-v",
            "fast:/fast",
            "busybox:local",
            "sleep",
            "30",
        ],
    )
    .trim()
    .to_string();
    let out = ok(
        &d,
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "df -k /fast | tail -1; stat -c %u /fast",
        ],
    );
    let fields: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(fields[0], "tmpfs", "{out}");
    assert_eq!(fields[1], "8192", "{out}");
    assert_eq!(fields.last(), Some(&"1000"), "{out}");
    ok(&d, &["exec", &id, "sh", "-c", "echo x > /fast/f"]);
    assert!(data.join("f").exists());
    let err = fails(&d, &["volume", "rm", "fast"]);
    assert!(err.contains("volume is in use"), "{err}");
    // Stopped: the tmpfs goes (its data with it, as Docker's).
    ok(&d, &["stop", "-t", "0", &id]);
    assert!(!data.join("f").exists());
    assert!(leftovers(&d, &[]).iter().all(|l| !l.contains("fast")));
    ok(&d, &["rm", &id]);

    // type=none,o=bind: a host directory.
    let host = d.dir.join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("hello"), "from host\n").unwrap();
    let device = format!("device={}", host.display());
    ok(
        &d,
        &[
            "volume",
            "create",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            &device,
            "hostvol",
        ],
    );
    let out = run(
        &d,
        &[
            "-v",
            "hostvol:/h",
            "busybox:local",
            "sh",
            "-c",
            "cat /h/hello; echo back > /h/back",
        ],
    );
    assert_eq!(out, "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.join("back")).unwrap(),
        "back\n"
    );
    // --mount with volume-opt makes the volume with those options.
    let out = run(
        &d,
        &[
            "--mount",
            "type=volume,source=small,target=/s,volume-driver=local,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=4m",
            "busybox:local",
            "sh",
            "-c",
            "df -k /s | tail -1",
        ],
    );
    assert!(out.split_whitespace().nth(1) == Some("4096"), "{out}");
    ok(&d, &["volume", "rm", "fast", "hostvol", "small"]);
    assert!(host.join("hello").exists(), "the host directory stays");
    assert_eq!(std::fs::read_dir(volumes_dir(&d)).unwrap().count(), 0);
    assert!(leftovers(&d, &[id]).is_empty());
}

#[test]
fn volume_data_survives_container_rm_and_daemon_restart() {
    let mut d = Daemon::start("vol-restart");
    import_busybox(&d);
    run(
        &d,
        &[
            "-v",
            "keep:/k",
            "busybox:local",
            "sh",
            "-c",
            "echo kept > /k/f",
        ],
    );
    d.stop();
    d.spawn();
    let out = run(&d, &["-v", "keep:/k", "busybox:local", "cat", "/k/f"]);
    assert_eq!(out, "kept\n");
    assert_eq!(ok(&d, &["volume", "ls", "-q"]).trim(), "keep");

    // --volumes-from: the same volumes at the same places, read-only with :ro.
    let src = ok(
        &d,
        &[
            "create",
            "--name",
            "src",
            "--network",
            "none",
            "-v",
            "keep:/k",
            "-v",
            "/scratch",
            "busybox:local",
            "true",
        ],
    )
    .trim()
    .to_string();
    let out = run(
        &d,
        &[
            "--volumes-from",
            "src:ro",
            "busybox:local",
            "sh",
            "-c",
            "cat /k/f; ls -d /scratch; touch /k/x 2>/dev/null || echo read-only",
        ],
    );
    assert_eq!(
        out,
        "kept
/scratch
read-only
"
    );
    let out = run(
        &d,
        &[
            "--volumes-from",
            "src",
            "busybox:local",
            "sh",
            "-c",
            "echo w > /scratch/w && cat /scratch/w",
        ],
    );
    assert_eq!(
        out,
        "w
"
    );
    let err = fails(
        &d,
        &[
            "run",
            "--rm",
            "--pull",
            "never",
            "--volumes-from",
            "nosuch",
            "busybox:local",
            "true",
        ],
    );
    assert!(err.contains("No such container: nosuch"), "{err}");
    // The --rm containers above took none of src's volumes with them.
    assert_eq!(lines(&ok(&d, &["volume", "ls", "-q"])).len(), 2);
    ok(&d, &["rm", "-v", "src"]);
    ok(&d, &["volume", "rm", "keep"]);
    assert_eq!(ok(&d, &["volume", "ls", "-q"]).trim(), "");
    assert!(leftovers(&d, &[src]).is_empty());
}

/// Now as the docker CLI sends times: `SECONDS.NANOS`.
fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[test]
fn volume_events_as_docker() {
    let d = Daemon::start("vol-events");
    import_busybox(&d);
    let since = now();
    ok(&d, &["volume", "create", "evtvol"]);
    run(
        &d,
        &["-v", "evtvol:/e:ro", "-v", "/anon", "busybox:local", "true"],
    );
    ok(&d, &["volume", "rm", "evtvol"]);
    ok(&d, &["volume", "prune", "-f"]);
    let format = "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}} {{index .Actor.Attributes \"read/write\"}} {{.Actor.Attributes.destination}}";
    let events = |until: &str| {
        ok(
            &d,
            &[
                "events",
                "--since",
                &since,
                "--until",
                until,
                "--filter",
                "type=volume",
                "--format",
                format,
            ],
        )
    };
    // (`index` of a missing attribute is empty, a missing field `<no value>`.)
    // The --rm remover tells its events a moment after run returns.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let out = loop {
        let out = events(&now());
        if out.contains("destroy evtvol") || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    let anon = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("create ")
                .filter(|r| !r.starts_with("evtvol"))
        })
        .map(|r| r.split(' ').next().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(anon.len(), 64, "{out}");
    assert_eq!(
        lines,
        vec![
            "create evtvol local  <no value>".to_string(),
            format!("create {anon} local  <no value>"),
            "mount evtvol local false /e".to_string(),
            format!("mount {anon} local true /anon"),
            "unmount evtvol local  <no value>".to_string(),
            format!("unmount {anon} local  <no value>"),
            format!("destroy {anon} local  <no value>"),
            "destroy evtvol local  <no value>".to_string(),
            "prune  <no value>  <no value>".to_string(),
        ],
        "{out}"
    );
}
