//! Cgroup manager against the real kernel: needs root. Creates cgroups under
//! /polis/test-cg-*, checks the kernel's files, and removes them again. Runs on
//! v1, hybrid and pure v2 hosts, asserting the files of whichever layout it finds.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};
use polis_runtime::cgroups::{CgroupManager, Hierarchy, Layout, Version};

fn unique_path() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    PathBuf::from(format!(
        "/polis/test-cg-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst),
        nanos
    ))
}

/// The hierarchy that holds `controller`: a v1 one, or else cgroup2.
fn hierarchy<'a>(m: &'a CgroupManager, controller: &str) -> &'a Hierarchy {
    m.hierarchies
        .iter()
        .find(|h| h.version == Version::V1 && h.controllers.iter().any(|c| c == controller))
        .or_else(|| m.hierarchies.iter().find(|h| h.version == Version::V2))
        .expect("no hierarchy")
}

fn read(m: &CgroupManager, controller: &str, file: &str) -> String {
    let path = hierarchy(m, controller).dir.join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn is_v2(m: &CgroupManager, controller: &str) -> bool {
    hierarchy(m, controller).version == Version::V2
}

fn assert_no_dirs(m: &CgroupManager) {
    for h in &m.hierarchies {
        assert!(!h.dir.exists(), "{} still exists", h.dir.display());
    }
}

/// Kills its children and removes the cgroup even when an assertion fails.
struct Fixture {
    manager: CgroupManager,
    children: Vec<Child>,
}

impl Fixture {
    fn new(resources: Option<&LinuxResources>) -> Self {
        let manager = CgroupManager::new(Some(&unique_path()), "unused").expect("new");
        manager.create(resources).expect("create");
        Fixture {
            manager,
            children: Vec::new(),
        }
    }

    /// A sleeping child moved into the cgroup.
    fn spawn_sleeper(&mut self) -> i32 {
        let child = Command::new("sleep")
            .arg("1000")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        self.children.push(child);
        self.manager.add_process(pid).expect("add_process");
        pid
    }

    fn kill_children(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.manager.thaw();
        self.kill_children();
        let _ = self.manager.destroy();
    }
}

fn device(
    allow: bool,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if major >= 0 {
        b = b.major(major);
    }
    if minor >= 0 {
        b = b.minor(minor);
    }
    b.build().unwrap()
}

fn deny_all() -> LinuxDeviceCgroup {
    device(false, LinuxDeviceType::A, -1, -1, "rwm")
}

fn resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .swap(128 << 20)
                .reservation(32 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(50).build().unwrap())
        .devices(vec![
            deny_all(),
            device(true, LinuxDeviceType::C, 1, 3, "rwm"),
            device(true, LinuxDeviceType::C, 1, 5, "r"),
        ])
        .build()
        .unwrap()
}

#[test]
fn full_lifecycle() {
    let mut fx = Fixture::new(Some(&resources()));
    let m = &fx.manager;
    eprintln!("layout {:?}", m.layout);

    // Every hierarchy has the directory, including name=systemd and the unified
    // mount of a hybrid host.
    for h in &m.hierarchies {
        assert!(h.dir.is_dir(), "{} missing", h.dir.display());
    }
    if m.layout == Layout::Hybrid {
        assert!(m.hierarchies.iter().any(|h| h.version == Version::V2));
    }

    // Limits are in the kernel before any process joins.
    if is_v2(m, "memory") {
        assert_eq!(read(m, "memory", "memory.max"), (64u64 << 20).to_string());
        assert_eq!(read(m, "memory", "memory.low"), (32u64 << 20).to_string());
        if hierarchy(m, "memory").dir.join("memory.swap.max").exists() {
            assert_eq!(
                read(m, "memory", "memory.swap.max"),
                (64u64 << 20).to_string()
            );
        }
        assert_eq!(read(m, "cpu", "cpu.weight"), "20");
        assert_eq!(read(m, "cpu", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(
            read(m, "memory", "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read(m, "memory", "memory.soft_limit_in_bytes"),
            (32u64 << 20).to_string()
        );
        assert_eq!(
            read(m, "memory", "memory.memsw.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
        assert_eq!(read(m, "cpu", "cpu.shares"), "512");
        assert_eq!(read(m, "cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(m, "cpu", "cpu.cfs_period_us"), "100000");
        let devices = read(m, "devices", "devices.list");
        assert_eq!(devices, "c 1:3 rwm\nc 1:5 r");
    }
    assert_eq!(read(m, "pids", "pids.max"), "50");
    assert_eq!(read(m, "cpuset", "cpuset.cpus"), "0");
    assert_eq!(read(m, "cpuset", "cpuset.mems"), "0");

    let pid = fx.spawn_sleeper();
    let m = &fx.manager;
    assert_eq!(m.pids().unwrap(), vec![pid]);

    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    if is_v2(m, "freezer") {
        assert_eq!(read(m, "freezer", "cgroup.freeze"), "1");
    } else {
        assert_eq!(read(m, "freezer", "freezer.state"), "FROZEN");
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    eprintln!(
        "{}",
        status.lines().find(|l| l.starts_with("State")).unwrap()
    );
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());

    let stats = m.stats().unwrap().0;
    assert_eq!(stats["pids"]["current"], 1);
    assert_eq!(stats["pids"]["limit"], 50);
    assert_eq!(stats["memory"]["usage"]["limit"], 64u64 << 20);
    assert!(stats["memory"]["usage"]["usage"].is_u64());
    assert!(stats["memory"]["raw"].as_object().unwrap().len() > 5);
    assert!(stats["cpu"]["usage"]["total"].is_u64());
    assert!(stats["cpu"]["throttling"]["periods"].is_u64());
    assert!(stats["blkio"]["ioServiceBytesRecursive"].is_array());
    assert!(stats["hugetlb"].is_object());

    // update on the live cgroup, lowering memory below the old memsw limit.
    let update = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(32 << 20)
                .swap(48 << 20)
                .build()
                .unwrap(),
        )
        .cpu(LinuxCpuBuilder::default().quota(20_000).build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
        .build()
        .unwrap();
    m.set(&update).unwrap();
    if is_v2(m, "memory") {
        assert_eq!(read(m, "memory", "memory.max"), (32u64 << 20).to_string());
        assert_eq!(read(m, "cpu", "cpu.max"), "20000 100000");
    } else {
        assert_eq!(
            read(m, "memory", "memory.limit_in_bytes"),
            (32u64 << 20).to_string()
        );
        assert_eq!(
            read(m, "memory", "memory.memsw.limit_in_bytes"),
            (48u64 << 20).to_string()
        );
        assert_eq!(read(m, "cpu", "cpu.cfs_quota_us"), "20000");
    }
    assert_eq!(read(m, "pids", "pids.max"), "max");
    // Raising the limit above the current memsw limit needs the other write order.
    let raise = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(256 << 20)
                .swap(512 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    m.set(&raise).unwrap();

    // The state file round trip: a later command destroys what create made.
    let saved = serde_json::to_string(&fx.manager).unwrap();
    let reloaded: CgroupManager = serde_json::from_str(&saved).unwrap();
    assert!(!reloaded.created_dirs().is_empty());

    fx.kill_children();
    reloaded.destroy().unwrap();
    assert_no_dirs(&reloaded);
    for h in &reloaded.hierarchies {
        assert!(
            h.mount_point.join("polis").is_dir(),
            "the shared /polis parent must stay"
        );
    }
}

#[test]
fn kill_all_signals_every_process() {
    let mut fx = Fixture::new(None);
    fx.spawn_sleeper();
    fx.spawn_sleeper();
    assert_eq!(fx.manager.pids().unwrap().len(), 2);
    fx.manager.kill_all(libc::SIGKILL).unwrap();
    for c in &mut fx.children {
        let status = c.wait().unwrap();
        assert!(!status.success());
    }
    fx.children.clear();
    assert!(!fx.manager.is_frozen().unwrap());
    fx.manager.destroy().unwrap();
    assert_no_dirs(&fx.manager);
}

#[test]
fn destroy_reports_busy_cgroup() {
    let mut fx = Fixture::new(None);
    fx.spawn_sleeper();
    let err = fx.manager.destroy().unwrap_err().to_string();
    assert!(err.contains("rmdir"), "{err}");
    fx.kill_children();
    fx.manager.destroy().unwrap();
    assert_no_dirs(&fx.manager);
}

/// Run `sh` inside the cgroup and report whether it could open `dev` for reading
/// and writing.
fn try_open_in_cgroup(m: &CgroupManager, dev: &str) -> String {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "read go; if true <>{dev}; then echo OPEN; else echo DENIED; fi"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    m.add_process(child.id() as i32).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if line.trim() == "DENIED" {
        assert!(
            stderr.contains("not permitted"),
            "expected EPERM, got {stderr:?}"
        );
    }
    line.trim().to_string()
}

#[test]
fn device_rules_are_enforced() {
    let r = LinuxResourcesBuilder::default()
        .devices(vec![
            deny_all(),
            device(true, LinuxDeviceType::C, 1, 5, "rw"),
        ])
        .build()
        .unwrap();
    let fx = Fixture::new(Some(&r));
    let m = &fx.manager;
    assert_eq!(try_open_in_cgroup(m, "/dev/zero"), "OPEN");
    assert_eq!(try_open_in_cgroup(m, "/dev/null"), "DENIED");

    // update replaces the rules (on v2: a new program replaces the old one).
    let r = LinuxResourcesBuilder::default()
        .devices(vec![
            deny_all(),
            device(true, LinuxDeviceType::C, 1, 3, "rwm"),
        ])
        .build()
        .unwrap();
    m.set(&r).unwrap();
    assert_eq!(try_open_in_cgroup(m, "/dev/null"), "OPEN");
    assert_eq!(try_open_in_cgroup(m, "/dev/zero"), "DENIED");
    if is_v2(m, "devices") {
        // The BPF filter lets a later deny narrow an earlier wildcard allow
        // (v1's exception lists cannot).
        let r = LinuxResourcesBuilder::default()
            .devices(vec![
                deny_all(),
                device(true, LinuxDeviceType::C, 1, -1, "rwm"),
                device(false, LinuxDeviceType::C, 1, 5, "w"),
            ])
            .build()
            .unwrap();
        m.set(&r).unwrap();
        assert_eq!(try_open_in_cgroup(m, "/dev/null"), "OPEN");
        assert_eq!(try_open_in_cgroup(m, "/dev/zero"), "DENIED");
    } else {
        assert_eq!(read(m, "devices", "devices.list"), "c 1:3 rwm");
    }
    drop(fx);
}

fn assert_create_fails(r: &LinuxResources, expect: &str) {
    let m = CgroupManager::new(Some(&unique_path()), "unused").unwrap();
    let err = m.create(Some(r)).unwrap_err().to_string();
    assert!(err.contains(expect), "error {err:?} lacks {expect:?}");
    assert_no_dirs(&m);
}

#[test]
fn invalid_input_is_rejected_and_leaves_nothing() {
    let bad_key = LinuxResourcesBuilder::default()
        .unified(HashMap::from([(
            "memory.no_such_file".to_string(),
            "1".to_string(),
        )]))
        .build()
        .unwrap();
    assert_create_fails(&bad_key, "unified");
    let slash_key = LinuxResourcesBuilder::default()
        .unified(HashMap::from([(
            "../cgroup.procs".to_string(),
            "1".to_string(),
        )]))
        .build()
        .unwrap();
    assert_create_fails(&slash_key, "unified");

    let bad_cpu = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("999").build().unwrap())
        .build()
        .unwrap();
    assert_create_fails(&bad_cpu, "cpuset.cpus");

    let bad_swap = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .swap(32 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(CgroupManager::new(Some(&unique_path()), "x")
        .unwrap()
        .create(Some(&bad_swap))
        .is_err());

    for path in ["../escape", "a/../../b", "/polis/../etc"] {
        assert!(
            CgroupManager::new(Some(Path::new(path)), "x").is_err(),
            "{path} accepted"
        );
    }
}

#[test]
fn unified_keys_on_pure_v2() {
    let probe = CgroupManager::new(Some(&unique_path()), "x").unwrap();
    let r = LinuxResourcesBuilder::default()
        .unified(HashMap::from([("pids.max".to_string(), "7".to_string())]))
        .build()
        .unwrap();
    if probe.layout != Layout::V2 {
        let err = probe.create(Some(&r)).unwrap_err().to_string();
        assert!(err.contains("v2"), "{err}");
        assert_no_dirs(&probe);
        return;
    }
    let fx = Fixture::new(Some(&r));
    assert_eq!(read(&fx.manager, "pids", "pids.max"), "7");
}

#[test]
fn paths_resolve_like_runc() {
    let default = CgroupManager::new(None, "abc").unwrap();
    assert_eq!(default.path, PathBuf::from("/polis/abc"));
    for h in &default.hierarchies {
        assert_eq!(h.dir, h.mount_point.join("polis/abc"));
    }
    let cgroup_file = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let relative = CgroupManager::new(Some(Path::new("rel/x")), "abc").unwrap();
    for h in &relative.hierarchies {
        assert!(h.dir.ends_with("rel/x"));
        let own = h.dir.parent().unwrap().parent().unwrap();
        let own = own.strip_prefix(&h.mount_point).unwrap();
        let own = format!("/{}", own.display());
        assert!(
            cgroup_file.lines().any(|l| l.ends_with(&format!(":{own}"))),
            "{own} is not one of our cgroups: {cgroup_file}"
        );
    }
}

#[test]
fn mounts_describe_every_hierarchy() {
    let m = CgroupManager::new(None, "mounts-test").unwrap();
    let mounts = m.mounts().unwrap();
    assert_eq!(mounts.len(), m.hierarchies.len());
    for (mount, h) in mounts.iter().zip(&m.hierarchies) {
        assert_eq!(mount.host_dir, h.dir);
        match h.version {
            Version::V1 => {
                assert_eq!(
                    mount.v1_options.as_deref(),
                    Some(h.controllers.join(",").as_str())
                );
                assert_eq!(Path::new("/sys/fs/cgroup").join(&mount.name), h.mount_point);
            }
            Version::V2 => {
                assert!(mount.v1_options.is_none());
                let expected = if m.layout == Layout::V2 {
                    ""
                } else {
                    "unified"
                };
                assert_eq!(mount.name, expected);
            }
        }
    }
    if m.layout == Layout::Hybrid {
        assert!(mounts
            .iter()
            .any(|x| x.v1_options.as_deref() == Some("name=systemd")));
    }
}

#[test]
fn hugetlb_limits() {
    let probe = CgroupManager::new(Some(&unique_path()), "x").unwrap();
    let v1_hugetlb = probe
        .hierarchies
        .iter()
        .any(|h| h.version == Version::V1 && h.controllers.iter().any(|c| c == "hugetlb"));
    // On a hybrid host without v1 hugetlb the limit would go through the shared
    // unified tree's root; leave that host-wide setting alone in tests.
    if probe.layout != Layout::V2 && !v1_hugetlb {
        eprintln!("no hugetlb hierarchy of our own to test here");
        return;
    }
    let Some(size) = std::fs::read_dir("/sys/kernel/mm/hugepages")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .and_then(|e| e.file_name().into_string().ok())
        .and_then(|n| {
            let kb: u64 = n
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(if kb >= 1 << 20 {
                format!("{}GB", kb >> 20)
            } else {
                format!("{}MB", kb >> 10)
            })
        })
    else {
        eprintln!("kernel has no hugepages");
        return;
    };
    let limit = oci_spec::runtime::LinuxHugepageLimitBuilder::default()
        .page_size(size.clone())
        .limit(64i64 << 20)
        .build()
        .unwrap();
    let r = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![limit])
        .build()
        .unwrap();
    let fx = Fixture::new(Some(&r));
    let file = if v1_hugetlb {
        format!("hugetlb.{size}.limit_in_bytes")
    } else {
        format!("hugetlb.{size}.max")
    };
    let got: u64 = read(&fx.manager, "hugetlb", &file).parse().unwrap();
    // The kernel rounds down to whole pages.
    assert!(got <= 64 << 20 && got > 0, "{file} = {got}");
    assert!(fx.manager.stats().unwrap().0["hugetlb"][&size].is_object());

    let bad = oci_spec::runtime::LinuxHugepageLimitBuilder::default()
        .page_size("3MB")
        .limit(1i64)
        .build()
        .unwrap();
    let r = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![bad])
        .build()
        .unwrap();
    assert_create_fails(&r, "3MB");
}

#[test]
fn blkio_weight_is_applied_or_clearly_refused() {
    let r = LinuxResourcesBuilder::default()
        .block_io(
            oci_spec::runtime::LinuxBlockIoBuilder::default()
                .weight(500u16)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let m = CgroupManager::new(Some(&unique_path()), "x").unwrap();
    match m.create(Some(&r)) {
        Ok(()) => {
            let dir = &hierarchy(&m, "blkio").dir;
            let candidates = [
                ("blkio.bfq.weight", "500"),
                ("blkio.weight", "500"),
                ("io.bfq.weight", "500"),
                ("io.weight", "4950"),
            ];
            let (file, want) = candidates
                .iter()
                .find(|(f, _)| dir.join(f).exists())
                .expect("weight applied but no weight file exists");
            let got = std::fs::read_to_string(dir.join(file)).unwrap();
            assert!(got.contains(want), "{file}: {got}");
            m.destroy().unwrap();
        }
        Err(e) => {
            let e = e.to_string();
            assert!(e.contains("weight") || e.contains("io"), "{e}");
        }
    }
    assert_no_dirs(&m);
}
