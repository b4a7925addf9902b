//! The mount, resource and device options of `docker run`, end to end through the
//! docker CLI: binds, --mount, --tmpfs, --shm-size, --sysctl, --ulimit, --device,
//! cgroup limits and `docker update`, --network host, and inspect's Mounts.

mod common;

use common::daemon::{import_busybox, leftovers, Daemon};
use std::path::Path;

fn ok(out: (i32, String, String)) -> String {
    assert_eq!(out.0, 0, "stdout: {}\nstderr: {}", out.1, out.2);
    out.1
}

/// A `docker run` that must fail as Docker's does: exit 125 and `message` in stderr.
fn refused(d: &Daemon, args: &[&str], message: &str) {
    let (code, out, err) = d.docker(args);
    assert_eq!(code, 125, "{args:?} should fail: {out} {err}");
    assert!(
        err.contains(message),
        "{args:?}: expected {message:?} in {err}"
    );
}

fn cgroup_file(controller: &str, id: &str, file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}/polis/{id}/{file}"))
        .unwrap_or_else(|e| panic!("{controller}/polis/{id}/{file}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn binds_mounts_tmpfs_and_shm() {
    let d = Daemon::start("res-mounts");
    import_busybox(&d);
    let host = d.dir.join("share");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let h = host.to_str().unwrap();

    // -v rw: the container reads the host's file and its write shows on the host.
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{h}:/data"),
        "busybox:local",
        "sh",
        "-c",
        "cat /data/in && echo from container > /data/out",
    ]));
    assert_eq!(out, "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "from container\n"
    );
    // :ro and --mount readonly: writes refused, recursively read-only.
    for args in [
        vec!["-v".to_string(), format!("{h}:/data:ro")],
        vec![
            "--mount".to_string(),
            format!("type=bind,src={h},dst=/data,readonly"),
        ],
    ] {
        let mut run = vec!["run", "--rm"];
        run.extend(args.iter().map(String::as_str));
        run.extend([
            "busybox:local",
            "sh",
            "-c",
            "cat /data/in; echo x > /data/ro 2>/dev/null && echo wrote || echo refused",
        ]);
        assert_eq!(ok(d.docker(&run)), "from host\nrefused\n", "{args:?}");
    }
    assert!(!host.join("ro").exists());
    // -v with a missing absolute host path creates it, as Docker does.
    let made = d.dir.join("made/by/v");
    ok(d.docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/m", made.display()),
        "busybox:local",
        "true",
    ]));
    assert!(made.is_dir());

    // --mount tmpfs, --tmpfs with options and --shm-size, as /proc/mounts shows them.
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/scratch,tmpfs-size=2m",
        "--tmpfs",
        "/run:exec,size=3m,mode=700",
        "--shm-size",
        "96m",
        "busybox:local",
        "sh",
        "-c",
        "grep -E ' /(scratch|run|dev/shm) ' /proc/mounts; df -k /dev/shm | tail -1",
    ]));
    let line = |dest: &str| {
        out.lines()
            .find(|l| l.split(' ').nth(1) == Some(dest))
            .unwrap_or_else(|| panic!("no {dest} in {out}"))
            .to_string()
    };
    let scratch = line("/scratch");
    assert!(
        scratch.starts_with("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec"),
        "{scratch}"
    );
    assert!(scratch.contains("size=2048k"), "{scratch}");
    let run = line("/run");
    assert!(
        run.contains("nosuid,nodev") && !run.contains("noexec"),
        "{run}"
    );
    assert!(
        run.contains("size=3072k") && run.contains("mode=700"),
        "{run}"
    );
    assert!(line("/dev/shm").contains("size=98304k"), "{out}");
    let df: Vec<&str> = out.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(df[1], "98304", "{out}");

    // Errors in Docker's words; nothing is left of the refused containers.
    refused(
        &d,
        &["run", "--rm", "--mount", "type=bind,src=/nonexistent-polis,dst=/x", "busybox:local", "true"],
        "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-polis",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "-v",
            "my/volume:/data",
            "busybox:local",
            "true",
        ],
        "create my/volume: \"my/volume\" includes invalid characters for a local volume name",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "-v",
            &format!("{h}:/x"),
            "-v",
            &format!("{h}:/x:ro"),
            "busybox:local",
            "true",
        ],
        "Duplicate mount point: /x",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--tmpfs",
            "/t:bogus",
            "busybox:local",
            "true",
        ],
        "invalid tmpfs option [\"bogus\"]",
    );
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");

    // inspect's Mounts: binds and --mount entries, not --tmpfs.
    let id = ok(d.docker(&[
        "create",
        "-v",
        &format!("{h}:/data:ro"),
        "--mount",
        "type=tmpfs,dst=/t",
        "--tmpfs",
        "/run",
        "busybox:local",
    ]))
    .trim()
    .to_string();
    let mounts: serde_json::Value =
        serde_json::from_str(&ok(d.docker(&["inspect", "-f", "{{json .Mounts}}", &id]))).unwrap();
    assert_eq!(
        mounts,
        serde_json::json!([
            {"Type": "bind", "Source": h, "Destination": "/data", "Mode": "ro", "RW": false, "Propagation": "rprivate"},
            {"Type": "tmpfs", "Source": "", "Destination": "/t", "Mode": "", "RW": true, "Propagation": ""},
        ])
    );
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.HostConfig.ShmSize}}", &id])).trim(),
        "67108864"
    );
    ok(d.docker(&["rm", &id]));
    assert!(leftovers(&d, &[id]).is_empty());
}

#[test]
fn sysctls_ulimits_and_devices() {
    let d = Daemon::start("res-kernel");
    import_busybox(&d);
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--sysctl",
        "kernel.shmmax=123456789",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--ulimit",
        "nofile=1000:2000",
        "busybox:local",
        "sh",
        "-c",
        "cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_forward; ulimit -n; ulimit -Hn",
    ]));
    assert_eq!(out, "123456789\n1\n1000\n2000\n");
    // The host's own value is untouched.
    let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    assert_ne!(host_shmmax.trim(), "123456789");
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "busybox:local",
            "true",
        ],
        "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--ulimit",
            "nofile=30:20",
            "busybox:local",
            "true",
        ],
        "soft limit must be less than or equal to hard limit",
    );

    // --device: the node made in the container, usable through the device cgroup.
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--device",
        "/dev/null:/dev/mynull",
        "busybox:local",
        "sh",
        "-c",
        "ls -l /dev/mynull && echo data > /dev/mynull && echo written",
    ]));
    assert!(out.starts_with("crw-rw-rw-"), "{out}");
    assert!(
        out.contains("1,   3") && out.ends_with("written\n"),
        "{out}"
    );
    let (code, _, err) = d.docker(&[
        "run",
        "--rm",
        "--device",
        "/dev/nonexistent-polis",
        "busybox:local",
        "true",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("error gathering device information while adding custom device \"/dev/nonexistent-polis\": no such file or directory"),
        "{err}"
    );
    assert_eq!(ok(d.docker(&["ps", "-aq"])), "");
}

#[test]
fn cgroup_limits_and_live_update() {
    let d = Daemon::start("res-limits");
    import_busybox(&d);
    let id = ok(d.docker(&[
        "run",
        "-d",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "--cpu-shares",
        "512",
        "busybox:local",
        "sleep",
        "1000",
    ]))
    .trim()
    .to_string();
    assert_eq!(
        cgroup_file("memory", &id, "memory.limit_in_bytes"),
        "67108864"
    );
    // Docker's default swap: twice the memory.
    assert_eq!(
        cgroup_file("memory", &id, "memory.memsw.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(cgroup_file("cpu", &id, "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file("cpu", &id, "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup_file("cpu", &id, "cpu.shares"), "512");
    assert_eq!(cgroup_file("pids", &id, "pids.max"), "50");

    // docker update: live, shown by inspect, kept over a restart.
    let out = ok(d.docker(&[
        "update",
        "--memory",
        "100m",
        "--cpus",
        "1.5",
        "--pids-limit",
        "70",
        &id,
    ]));
    assert_eq!(out.trim(), id);
    let check = |when: &str| {
        assert_eq!(
            cgroup_file("memory", &id, "memory.limit_in_bytes"),
            "104857600",
            "{when}"
        );
        assert_eq!(
            cgroup_file("cpu", &id, "cpu.cfs_quota_us"),
            "150000",
            "{when}"
        );
        assert_eq!(cgroup_file("pids", &id, "pids.max"), "70", "{when}");
    };
    check("after update");
    let shown = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}",
        &id,
    ]));
    assert_eq!(shown.trim(), "104857600 134217728 1500000000 70");
    ok(d.docker(&["restart", "-t", "0", &id]));
    check("after restart");
    // Docker's refusals.
    let (code, _, err) = d.docker(&["update", "--memory", "300m", &id]);
    assert_eq!(code, 1);
    assert!(
        err.contains("Memory limit should be smaller than already set memoryswap limit"),
        "{err}"
    );
    let (code, _, err) = d.docker(&["update", "--cpu-quota", "20000", &id]);
    assert_eq!(code, 1);
    assert!(
        err.contains("CPU Quota cannot be updated as NanoCPUs has already been set"),
        "{err}"
    );
    assert_eq!(
        cgroup_file("memory", &id, "memory.limit_in_bytes"),
        "104857600"
    );
    // The restart policy is only stored.
    ok(d.docker(&["update", "--restart", "on-failure:3", &id]));
    assert_eq!(
        ok(d.docker(&[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}",
            &id
        ]))
        .trim(),
        "on-failure:3"
    );
    ok(d.docker(&["rm", "-f", &id]));
    assert!(leftovers(&d, &[id]).is_empty());

    refused(
        &d,
        &["run", "--rm", "--memory", "2m", "busybox:local", "true"],
        "Minimum memory limit allowed is 6MB",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--memory",
            "64m",
            "--memory-swap",
            "32m",
            "busybox:local",
            "true",
        ],
        "Minimum memoryswap limit should be larger than memory limit",
    );
    refused(
        &d,
        &[
            "run",
            "--rm",
            "--cpuset-cpus",
            "4000",
            "busybox:local",
            "true",
        ],
        "Requested CPUs are not available - requested 4000, available: ",
    );
}

/// Interface names in a /proc/net/dev listing.
fn interfaces(dev: &str) -> Vec<String> {
    let mut names: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn host_and_none_networks() {
    let d = Daemon::start("res-net");
    import_busybox(&d);
    let host_dev = std::fs::read_to_string("/proc/net/dev").unwrap();
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox:local",
        "sh",
        "-c",
        "cat /proc/net/dev; echo ==; hostname; cat /etc/resolv.conf",
    ]));
    let (dev, rest) = out.split_once("==\n").unwrap();
    assert_eq!(interfaces(dev), interfaces(&host_dev));
    let hostname = nix::unistd::gethostname().unwrap();
    let (name, resolv) = rest.split_once('\n').unwrap();
    assert_eq!(name, hostname.to_str().unwrap());
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(resolv, host_resolv);
    let out = ok(d.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox:local",
        "cat",
        "/proc/net/dev",
    ]));
    assert_eq!(interfaces(&out), vec!["lo"]);
    let id = ok(d.docker(&["create", "--network", "host", "busybox:local"]))
        .trim()
        .to_string();
    assert_eq!(
        ok(d.docker(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &id])).trim(),
        "host"
    );
    ok(d.docker(&["rm", &id]));
    assert!(!Path::new(&format!("/sys/fs/cgroup/pids/polis/{id}")).exists());
}

#[test]
fn oom_kills_and_finish_times_are_reported() {
    let d = Daemon::start("res-oom");
    import_busybox(&d);
    // Past its memory (swap included) the kernel kills it: 137 and OOMKilled.
    let (code, _, _) = d.docker(&[
        "run",
        "--name",
        "hungry",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        "busybox:local",
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(code, 137);
    let state = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.ExitCode}}",
        "hungry",
    ]));
    assert_eq!(state.trim(), "true 137");
    // And the event stream tells it, before the exit.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let told = ok(d.docker(&[
        "events",
        "--since",
        &(now - 60).to_string(),
        "--until",
        &(now + 1).to_string(),
        "--filter",
        "container=hungry",
        "--filter",
        "event=oom",
        "--filter",
        "event=die",
        "--format",
        "{{.Action}}",
    ]));
    assert_eq!(told, "oom\ndie\n");

    // An ordinary exit is no OOM; while a container runs again, FinishedAt is its last
    // run's end (its second run sleeps).
    let (code, _, _) = d.docker(&[
        "run",
        "--name",
        "calm",
        "busybox:local",
        "sh",
        "-c",
        "test -f /ran && sleep 30; touch /ran; exit 3",
    ]);
    assert_eq!(code, 3);
    let first = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.State.OOMKilled}} {{.State.FinishedAt}}",
        "calm",
    ]));
    let (oom, finished) = first.trim().split_once(' ').unwrap();
    assert_eq!(oom, "false");
    assert!(!finished.starts_with("0001"), "{finished}");
    ok(d.docker(&["start", "calm"]));
    let again = ok(d.docker(&[
        "inspect",
        "-f",
        "{{.State.Running}} {{.State.FinishedAt}}",
        "calm",
    ]));
    assert_eq!(again.trim(), format!("true {finished}"));
    ok(d.docker(&["rm", "-f", "hungry", "calm"]));
}
