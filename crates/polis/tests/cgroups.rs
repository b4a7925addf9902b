//! Cgroup resources: limits from linux.resources land in the container's
//! cgroup (read back on the host and from inside a cgroup namespace), are
//! enforced, change with `update`, show in `events --stats`, and are removed on
//! delete. Works on the hybrid v1 layout and on pure cgroup v2.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::time::Duration;

const MIB: u64 = 1024 * 1024;

/// Path of a control file inside the container (cgroup namespace + the
/// default /sys/fs/cgroup mount).
fn inside_path(controller: &str, file: &str) -> String {
    if cgroup_v2() {
        format!("/sys/fs/cgroup/{file}")
    } else {
        format!("/sys/fs/cgroup/{controller}/{file}")
    }
}

/// A sleeping container in a cgroup namespace with `resources`, created and started.
fn limited_container(name: &str, resources: Value) -> Container {
    let mut c = Container::new(name);
    c.set_namespace("cgroup", None);
    let devices = c.config["linux"]["resources"]["devices"].clone();
    c.config["linux"]["resources"] = resources;
    c.config["linux"]["resources"]["devices"] = devices;
    c.args(&["sleep", "1000"]);
    c.create_start();
    c
}

/// `cat` of control files inside the container, one value per line.
fn read_inside(c: &Container, files: &[(&str, &str)]) -> Vec<String> {
    let paths: Vec<String> = files.iter().map(|(ctl, f)| inside_path(ctl, f)).collect();
    let mut args = vec!["cat"];
    args.extend(paths.iter().map(String::as_str));
    let out = c.exec(&[], &args).ok();
    out.stdout.lines().map(str::to_string).collect()
}

fn host(c: &Container, controller: &str, file: &str) -> String {
    read_cgroup_file(controller, &c.cgroup_path, file)
}

#[test]
fn process_is_in_the_configured_cgroup() {
    let c = limited_container("cg-member", json!({}));
    let pid = c.pid.unwrap();
    let procs = host(&c, "pids", "cgroup.procs");
    assert_eq!(procs, pid.to_string());
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    if cgroup_v2() {
        assert!(own.contains(&format!("0::{}\n", c.cgroup_path)), "{own}");
    } else {
        for ctl in ["memory", "pids", "cpu", "cpuset", "freezer", "devices"] {
            assert!(
                own.lines().any(|l| l.split(':').nth(1) == Some(ctl)
                    && l.ends_with(&format!(":{}", c.cgroup_path))),
                "{ctl} not at {} in {own}",
                c.cgroup_path
            );
        }
    }
}

#[test]
fn memory_limits() {
    let c = limited_container(
        "cg-memory",
        json!({"memory": {"limit": 64 * MIB, "reservation": 32 * MIB, "swap": 128 * MIB}}),
    );
    if cgroup_v2() {
        let want = vec![
            (64 * MIB).to_string(),
            (32 * MIB).to_string(),
            (64 * MIB).to_string(),
        ];
        assert_eq!(host(&c, "memory", "memory.max"), want[0]);
        assert_eq!(host(&c, "memory", "memory.low"), want[1]);
        // v2 swap.max is the swap alone: swap - limit.
        assert_eq!(host(&c, "memory", "memory.swap.max"), want[2]);
        let inside = read_inside(
            &c,
            &[
                ("", "memory.max"),
                ("", "memory.low"),
                ("", "memory.swap.max"),
            ],
        );
        assert_eq!(inside, want);
    } else {
        let want = vec![
            (64 * MIB).to_string(),
            (32 * MIB).to_string(),
            (128 * MIB).to_string(),
        ];
        assert_eq!(host(&c, "memory", "memory.limit_in_bytes"), want[0]);
        assert_eq!(host(&c, "memory", "memory.soft_limit_in_bytes"), want[1]);
        assert_eq!(host(&c, "memory", "memory.memsw.limit_in_bytes"), want[2]);
        let inside = read_inside(
            &c,
            &[
                ("memory", "memory.limit_in_bytes"),
                ("memory", "memory.soft_limit_in_bytes"),
                ("memory", "memory.memsw.limit_in_bytes"),
            ],
        );
        assert_eq!(inside, want);
    }
}

#[test]
fn memory_limit_is_enforced() {
    let mut c = Container::new("cg-oom");
    c.config["linux"]["resources"]["memory"] = json!({"limit": 16 * MIB, "swap": 16 * MIB});
    // dd allocates and fills a 64 MiB buffer: the OOM killer must stop it.
    c.args(&["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    let out = c.run();
    assert_eq!(out.code, 137, "expected SIGKILL by OOM: {out:#?}");
}

#[test]
fn cpu_shares_quota_period() {
    let c = limited_container(
        "cg-cpu",
        json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000}}),
    );
    if cgroup_v2() {
        assert_eq!(host(&c, "cpu", "cpu.max"), "50000 100000");
        // runc's conversion: weight = 1 + (shares - 2) * 9999 / 262142.
        assert_eq!(host(&c, "cpu", "cpu.weight"), "20");
        assert_eq!(
            read_inside(&c, &[("", "cpu.max"), ("", "cpu.weight")]),
            ["50000 100000", "20"]
        );
    } else {
        assert_eq!(host(&c, "cpu", "cpu.shares"), "512");
        assert_eq!(host(&c, "cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(host(&c, "cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(
            read_inside(
                &c,
                &[
                    ("cpu", "cpu.shares"),
                    ("cpu", "cpu.cfs_quota_us"),
                    ("cpu", "cpu.cfs_period_us")
                ]
            ),
            ["512", "50000", "100000"]
        );
    }
}

#[test]
fn cpuset() {
    let c = limited_container("cg-cpuset", json!({"cpu": {"cpus": "0", "mems": "0"}}));
    assert_eq!(host(&c, "cpuset", "cpuset.cpus"), "0");
    assert_eq!(host(&c, "cpuset", "cpuset.mems"), "0");
    // The kernel applies it to the task too.
    let status = fs::read_to_string(format!("/proc/{}/status", c.pid.unwrap())).unwrap();
    assert_eq!(status_field(&status, "Cpus_allowed_list").unwrap(), "0");
    let ctl = if cgroup_v2() { "" } else { "cpuset" };
    assert_eq!(read_inside(&c, &[(ctl, "cpuset.cpus")]), ["0"]);
}

#[test]
fn pids_limit() {
    let c = limited_container("cg-pids", json!({"pids": {"limit": 42}}));
    assert_eq!(host(&c, "pids", "pids.max"), "42");
    let ctl = if cgroup_v2() { "" } else { "pids" };
    assert_eq!(read_inside(&c, &[(ctl, "pids.max")]), ["42"]);
}

/// Runs a shell that starts 8 background sleeps under a pids limit.
fn fork_eight(name: &str, limit: i64) -> RunOutput {
    let mut c = Container::new(name);
    c.config["linux"]["resources"]["pids"] = json!({"limit": limit});
    c.sh("for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; echo started 8; wait");
    c.run()
}

#[test]
fn pids_limit_is_enforced() {
    let out = fork_eight("cg-pids-enforced", 4);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("fork"), "{out:#?}");
    assert_eq!(out.stdout, "");
}

#[test]
fn pids_limit_high_enough_allows_forks() {
    let out = fork_eight("cg-pids-allowed", 20);
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "started 8\n");
}

#[test]
fn update_changes_limits() {
    let c = limited_container("cg-update", json!({"pids": {"limit": 100}}));
    c.runtime(&[
        "update",
        "--memory",
        &(96 * MIB).to_string(),
        // runc's flag name (singular).
        "--cpu-share",
        "256",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "10",
        &c.id,
    ])
    .ok();
    assert_eq!(host(&c, "pids", "pids.max"), "10");
    assert_eq!(host(&c, "cpuset", "cpuset.cpus"), "0");
    if cgroup_v2() {
        assert_eq!(host(&c, "memory", "memory.max"), (96 * MIB).to_string());
        assert_eq!(host(&c, "cpu", "cpu.max"), "20000 100000");
        // 1 + (256 - 2) * 9999 / 262142
        assert_eq!(host(&c, "cpu", "cpu.weight"), "10");
    } else {
        assert_eq!(
            host(&c, "memory", "memory.limit_in_bytes"),
            (96 * MIB).to_string()
        );
        assert_eq!(host(&c, "cpu", "cpu.shares"), "256");
        assert_eq!(host(&c, "cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(host(&c, "cpu", "cpu.cfs_period_us"), "100000");
    }
    assert_eq!(c.status(), "running");
}

#[test]
fn update_from_resources_file() {
    let c = limited_container("cg-update-r", json!({}));
    let file = c.dir.join("resources.json");
    fs::write(
        &file,
        json!({"memory": {"limit": 80 * MIB}, "pids": {"limit": 7}}).to_string(),
    )
    .unwrap();
    c.runtime(&["update", "-r", file.to_str().unwrap(), &c.id])
        .ok();
    assert_eq!(host(&c, "pids", "pids.max"), "7");
    let mem_file = if cgroup_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    assert_eq!(host(&c, "memory", mem_file), (80 * MIB).to_string());
}

#[test]
fn update_of_unknown_container_fails() {
    let c = Container::new("cg-update-missing");
    let out = c.runtime(&["update", "--pids-limit", "5", "no-such-container"]);
    assert_ne!(out.code, 0);
}

#[test]
fn events_stats_json() {
    let c = limited_container(
        "cg-events",
        json!({"memory": {"limit": 64 * MIB}, "pids": {"limit": 50}}),
    );
    // Some work so cpu usage is non-zero.
    c.exec(
        &[],
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done",
        ],
    )
    .ok();
    let out = c.runtime(&["events", "--stats", &c.id]).ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).expect("events --stats JSON");
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], c.id.as_str());
    let data = &v["data"];
    assert_eq!(data["pids"]["current"].as_u64(), Some(1), "{v}");
    assert_eq!(data["pids"]["limit"].as_u64(), Some(50), "{v}");
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert_eq!(
        data["memory"]["usage"]["limit"].as_u64(),
        Some(64 * MIB),
        "{v}"
    );
}

#[test]
fn cgroups_removed_on_delete() {
    let mut c = limited_container("cg-delete", json!({"pids": {"limit": 20}}));
    let pid = c.pid.unwrap();
    assert!(cgroup_dir("pids", &c.cgroup_path).exists());
    c.kill("KILL").ok();
    c.wait_status("stopped", Duration::from_secs(10));
    c.delete().ok();
    assert_no_leaks(&c.id, &c.cgroup_path, &c.root, Some(pid));
    c.skip_leak_check = true;
}
