//! Namespaces: new pid/uts/ipc/net/mount/cgroup/user/time namespaces as
//! configured, and joining existing namespaces by path.

mod common;

use common::*;
use serde_json::json;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

fn run_sh(c: &mut Container, script: &str) -> String {
    c.sh(script);
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    out.stdout
}

fn host_ns(kind: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn pid_namespace_init_is_pid_1() {
    let mut c = Container::new("ns-pid");
    let out = run_sh(
        &mut c,
        "echo $$; readlink /proc/self/ns/pid; ls -d /proc/[0-9]* | wc -l",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1");
    assert_ne!(lines[1], host_ns("pid"));
    // Only sh itself and the `ls`, `wc` of the pipeline are visible.
    assert!(lines[2].trim().parse::<u32>().unwrap() <= 3, "{out}");
}

#[test]
fn uts_namespace_hostname() {
    let mut c = Container::new("ns-uts");
    c.config["hostname"] = json!("ctr-host");
    let out = run_sh(&mut c, "hostname; readlink /proc/self/ns/uts");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "ctr-host");
    assert_ne!(lines[1], host_ns("uts"));
    // The host's hostname is unchanged.
    assert_ne!(
        fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "ctr-host"
    );
}

#[test]
fn uts_namespace_domainname() {
    if !require_polis("domainname (runc 1.1 ignores it)") {
        return;
    }
    let mut c = Container::new("ns-domain");
    c.config["domainname"] = json!("example.test");
    let out = run_sh(&mut c, "cat /proc/sys/kernel/domainname");
    assert_eq!(out, "example.test\n");
}

#[test]
fn ipc_namespace_is_new() {
    let mut c = Container::new("ns-ipc");
    let out = run_sh(&mut c, "readlink /proc/self/ns/ipc");
    assert_ne!(out.trim(), host_ns("ipc"));
    assert!(out.starts_with("ipc:["), "{out}");
}

#[test]
fn net_namespace_has_only_lo() {
    let mut c = Container::new("ns-net");
    let out = run_sh(
        &mut c,
        "ls /sys/class/net; readlink /proc/self/ns/net; cat /sys/class/net/lo/operstate",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo", "{out}");
    assert!(lines[1].starts_with("net:["));
    assert_ne!(lines[1], host_ns("net"));
    // Like runc, the runtime brings lo up in a new network namespace.
    assert_eq!(lines[2], "unknown", "lo state: {out}");
}

#[test]
fn without_net_namespace_shares_host_network() {
    let mut c = Container::new("ns-net-host");
    c.remove_namespace("network");
    // sysfs of the host netns cannot be mounted without a netns of our own: drop /sys.
    c.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| !m["destination"].as_str().unwrap().starts_with("/sys"));
    let out = run_sh(&mut c, "readlink /proc/self/ns/net");
    assert_eq!(out.trim(), host_ns("net"));
}

#[test]
fn mount_namespace_is_new() {
    let mut c = Container::new("ns-mnt");
    let out = run_sh(
        &mut c,
        "readlink /proc/self/ns/mnt; cat /proc/self/mountinfo",
    );
    assert_ne!(out.lines().next().unwrap(), host_ns("mnt"));
    // The root of the container is the bundle's rootfs: no host mounts like /work.
    assert!(!out.contains(" /work "), "{out}");
}

#[test]
fn cgroup_namespace_root_is_slash() {
    let mut c = Container::new("ns-cgroup");
    c.set_namespace("cgroup", None);
    let out = run_sh(
        &mut c,
        "cat /proc/self/cgroup; readlink /proc/self/ns/cgroup",
    );
    let (cgroups, ns) = out.trim_end().rsplit_once('\n').unwrap();
    assert_ne!(ns, host_ns("cgroup"));
    for l in cgroups.lines() {
        assert!(
            l.ends_with(":/"),
            "cgroup line not at ns root: {l} in {out}"
        );
    }
}

#[test]
fn without_cgroup_namespace_sees_full_path() {
    let mut c = Container::new("ns-nocgroup");
    let out = run_sh(&mut c, "cat /proc/self/cgroup");
    let want = format!(":{}", c.cgroup_path);
    assert!(
        out.lines().any(|l| l.ends_with(&want)),
        "expected {want} in {out}"
    );
}

/// Chowns every file of the rootfs (not following symlinks) by +offset.
fn shift_rootfs_owner(rootfs: &Path, offset: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg("-h")
        .arg(format!("{offset}:{offset}"))
        .arg(rootfs)
        .status()
        .unwrap();
    assert!(st.success());
    // user 1000's home keeps its own shifted owner.
    let st = Command::new("chown")
        .arg("-h")
        .arg(format!("{}:{}", offset + 1000, offset + 1000))
        .arg(rootfs.join("home/user"))
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn user_namespace_with_mappings() {
    let mut c = Container::new("ns-user");
    c.set_namespace("user", None);
    c.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // A v1 cgroup bind mount is not allowed to an unprivileged user ns owner.
    c.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/sys/fs/cgroup");
    shift_rootfs_owner(&c.rootfs(), 100000);
    c.sh(
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c %u:%g /bin/busybox; \
          touch /dev/shm/x && stat -c %u /dev/shm/x; echo $$ > /dev/null; sleep 1000",
    );
    c.create_start();
    let pid = c.pid.unwrap();
    // Seen from the host the container's root is uid 100000.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(
        status_field(&status, "Uid").unwrap(),
        "100000\t100000\t100000\t100000"
    );
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        fs::read_link("/proc/self/ns/user").unwrap()
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.stdout().lines().count() < 5 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = c.stdout();
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[1], ["0", "100000", "65536"], "{out}");
    assert_eq!(lines[2], ["0"], "{out}");
    assert_eq!(lines[3], ["0:0"], "{out}");
    assert_eq!(lines[4], ["0"], "{out}");
}

#[test]
fn time_namespace_offsets() {
    if !require_polis("time namespace offsets") {
        return;
    }
    let mut c = Container::new("ns-time");
    c.set_namespace("time", None);
    c.config["linux"]["timeOffsets"] = json!({
        "monotonic": {"secs": 864000, "nanosecs": 0},
        "boottime": {"secs": 1728000, "nanosecs": 0}
    });
    let host_uptime: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let out = run_sh(
        &mut c,
        "cat /proc/self/timens_offsets; cut -d' ' -f1 /proc/uptime",
    );
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["monotonic", "864000", "0"], "{out}");
    assert_eq!(lines[1], ["boottime", "1728000", "0"], "{out}");
    let uptime: f64 = lines[2][0].parse().unwrap();
    assert!(
        uptime >= host_uptime + 1728000.0 && uptime < host_uptime + 1728000.0 + 60.0,
        "uptime {uptime} host {host_uptime}"
    );
}

/// A network namespace held by an `unshare --net sleep` child, with an
/// address on lo that identifies it; the child is killed on drop.
struct NetNs {
    holder: std::process::Child,
}

impl NetNs {
    fn new() -> NetNs {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "1000"])
            .spawn()
            .expect("spawn unshare");
        let ns = NetNs { holder };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while fs::read_link(ns.path()).ok() == fs::read_link("/proc/self/ns/net").ok()
            || fs::read_to_string(format!("/proc/{}/cmdline", ns.holder.id()))
                .unwrap_or_default()
                .starts_with("unshare")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "unshare --net never ran"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let st = Command::new("nsenter")
            .arg(format!("--net={}", ns.path()))
            .args(["ip", "addr", "add", "10.123.45.67/32", "dev", "lo"])
            .status()
            .unwrap();
        assert!(st.success(), "add an address in the held netns");
        ns
    }
    fn path(&self) -> String {
        format!("/proc/{}/ns/net", self.holder.id())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

#[test]
fn join_network_namespace_by_path() {
    let ns = NetNs::new();
    let ino = fs::metadata(ns.path()).unwrap().ino();
    let mut c = Container::new("ns-join-net");
    c.set_namespace("network", Some(&ns.path()));
    let out = run_sh(
        &mut c,
        "ls /sys/class/net; grep -q 10.123.45.67 /proc/net/fib_trie && echo has-addr; readlink /proc/self/ns/net",
    );
    assert_eq!(out, format!("lo\nhas-addr\nnet:[{ino}]\n"));
}

#[test]
fn join_ipc_and_uts_of_another_container() {
    let mut a = Container::new("ns-join-a");
    a.config["hostname"] = json!("first");
    a.args(&["sleep", "1000"]);
    a.create_start();
    let pid = a.pid.unwrap();
    let ipc = fs::read_link(format!("/proc/{pid}/ns/ipc")).unwrap();
    let mut b = Container::new("ns-join-b");
    b.set_namespace("ipc", Some(&format!("/proc/{pid}/ns/ipc")));
    b.set_namespace("uts", Some(&format!("/proc/{pid}/ns/uts")));
    // Joining a uts namespace: the hostname must not be set again.
    b.config.as_object_mut().unwrap().remove("hostname");
    let out = run_sh(&mut b, "readlink /proc/self/ns/ipc; hostname");
    assert_eq!(out, format!("{}\nfirst\n", ipc.display()));
}

#[test]
fn join_nonexistent_namespace_path_fails() {
    let mut c = Container::new("ns-join-bad");
    c.set_namespace("network", Some("/run/netns/does-not-exist-polis"));
    c.args(&["true"]);
    let out = c.run();
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(!out.stderr.is_empty());
}
