//! The container's filesystem: readonly root, mounts and their options,
//! default devices, linux.devices, masked and readonly paths, sysctls,
//! --no-pivot, symlinked mount destinations and rootfs propagation.

mod common;

use common::*;
use serde_json::json;
use std::fs;
use std::path::Path;

fn run_sh(c: &mut Container, script: &str) -> String {
    c.sh(script);
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    out.stdout
}

/// A mountinfo line split in the parts the tests look at.
struct MountInfo {
    mount_point: String,
    mount_options: Vec<String>,
    optional: Vec<String>,
    fstype: String,
    super_options: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let lf: Vec<&str> = left.split_whitespace().collect();
            let rf: Vec<&str> = right.split_whitespace().collect();
            Some(MountInfo {
                mount_point: lf.get(4)?.to_string(),
                mount_options: lf.get(5)?.split(',').map(str::to_string).collect(),
                optional: lf[6..].iter().map(|s| s.to_string()).collect(),
                fstype: rf.first()?.to_string(),
                super_options: rf
                    .get(2)
                    .map(|o| o.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// The last (topmost) mount at `point`.
fn mount_at<'a>(mounts: &'a [MountInfo], point: &str) -> &'a MountInfo {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == point)
        .unwrap_or_else(|| panic!("no mount at {point}"))
}

fn container_mounts(c: &mut Container, extra_script: &str) -> (Vec<MountInfo>, String) {
    let out = run_sh(
        c,
        &format!("{extra_script}\necho ===; cat /proc/self/mountinfo"),
    );
    let (pre, mi) = out.split_once("===\n").expect("marker");
    (parse_mountinfo(mi), pre.to_string())
}

#[test]
fn readonly_root() {
    let mut c = Container::new("ro-root");
    c.readonly_root(true);
    let (mounts, pre) = container_mounts(
        &mut c,
        "touch /newfile 2>/dev/null && echo wrote || echo denied",
    );
    assert_eq!(pre, "denied\n");
    assert!(mount_at(&mounts, "/")
        .mount_options
        .contains(&"ro".to_string()));
    assert!(!c.rootfs().join("newfile").exists());
}

#[test]
fn writable_root() {
    let mut c = Container::new("rw-root");
    c.readonly_root(false);
    let out = run_sh(&mut c, "echo data > /newfile && cat /newfile");
    assert_eq!(out, "data\n");
    assert_eq!(
        fs::read_to_string(c.rootfs().join("newfile")).unwrap(),
        "data\n"
    );
}

#[test]
fn tmpfs_mount_with_size_and_mode() {
    let mut c = Container::new("tmpfs");
    c.add_mount(json!({
        "destination": "/data", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=0710"]
    }));
    let (mounts, pre) = container_mounts(&mut c, "stat -c %a /data");
    assert_eq!(pre, "710\n");
    let m = mount_at(&mounts, "/data");
    assert_eq!(m.fstype, "tmpfs");
    for o in ["nosuid", "nodev", "noexec", "rw"] {
        assert!(
            m.mount_options.contains(&o.to_string()),
            "{o} in {:?}",
            m.mount_options
        );
    }
    assert!(
        m.super_options.contains(&"size=1024k".to_string()),
        "{:?}",
        m.super_options
    );
    assert!(
        m.super_options.contains(&"mode=710".to_string()),
        "{:?}",
        m.super_options
    );
}

#[test]
fn bind_mount_readonly() {
    let mut c = Container::new("bind-ro");
    let host = c.dir.join("hostdir");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("file"), "from-host\n").unwrap();
    c.add_mount(json!({
        "destination": "/mnt/host", "type": "bind", "source": host.to_str().unwrap(),
        "options": ["rbind", "ro"]
    }));
    let (mounts, pre) = container_mounts(
        &mut c,
        "cat /mnt/host/file; touch /mnt/host/new 2>/dev/null && echo wrote || echo denied",
    );
    assert_eq!(pre, "from-host\ndenied\n");
    assert!(mount_at(&mounts, "/mnt/host")
        .mount_options
        .contains(&"ro".to_string()));
    assert!(!host.join("new").exists());
}

#[test]
fn bind_mount_readwrite_and_file_bind() {
    let mut c = Container::new("bind-rw");
    let host = c.dir.join("hostdir");
    fs::create_dir_all(&host).unwrap();
    let file = c.dir.join("single-file");
    fs::write(&file, "one file\n").unwrap();
    c.add_mount(json!({
        "destination": "/mnt/rw", "type": "bind", "source": host.to_str().unwrap(),
        "options": ["bind", "rw"]
    }));
    c.add_mount(json!({
        "destination": "/etc/single", "type": "none", "source": file.to_str().unwrap(),
        "options": ["bind", "ro"]
    }));
    let out = run_sh(&mut c, "echo written > /mnt/rw/out; cat /etc/single");
    assert_eq!(out, "one file\n");
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "written\n");
}

#[test]
fn rbind_includes_submounts_bind_does_not() {
    let mut c = Container::new("rbind");
    let host = c.dir.join("outer");
    let inner = host.join("inner");
    fs::create_dir_all(&inner).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "polis-inner"])
        .arg(&inner)
        .status()
        .unwrap();
    assert!(st.success());
    fs::write(inner.join("deep"), "deep\n").unwrap();
    let h = host.to_str().unwrap();
    c.add_mount(json!({"destination": "/r", "type": "bind", "source": h, "options": ["rbind"]}));
    c.add_mount(json!({"destination": "/b", "type": "bind", "source": h, "options": ["bind"]}));
    let out = run_sh(&mut c, "cat /r/inner/deep; ls /b/inner | wc -l");
    let _ = std::process::Command::new("umount").arg(&inner).status();
    assert_eq!(out, "deep\n0\n");
}

#[test]
fn mount_propagation_options() {
    let mut c = Container::new("propagation");
    let host = c.dir.join("hostdir");
    fs::create_dir_all(&host).unwrap();
    let h = host.to_str().unwrap();
    c.add_mount(
        json!({"destination": "/shared", "type": "bind", "source": h,
                       "options": ["rbind", "rshared"]}),
    );
    c.add_mount(
        json!({"destination": "/private", "type": "bind", "source": h,
                       "options": ["rbind", "rprivate"]}),
    );
    let (mounts, _) = container_mounts(&mut c, "true");
    let shared = mount_at(&mounts, "/shared");
    assert!(
        shared.optional.iter().any(|o| o.starts_with("shared:")),
        "{:?}",
        shared.optional
    );
    let private = mount_at(&mounts, "/private");
    assert!(private.optional.is_empty(), "{:?}", private.optional);
}

/// A host tmpfs made shared, bind-mounted into a running container with
/// `propagation`; returns whether a mount made on the host afterwards is seen inside.
fn host_mount_propagates(name: &str, propagation: &str) -> bool {
    let mut c = Container::new(name);
    let host = c.dir.join("shared-src");
    fs::create_dir_all(&host).unwrap();
    let sh = |cmd: &str| {
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .status()
            .unwrap();
        assert!(st.success(), "{cmd}");
    };
    let h = host.to_str().unwrap().to_string();
    sh(&format!(
        "mount -t tmpfs polis-prop {h} && mount --make-shared {h} && mkdir {h}/sub"
    ));
    c.add_mount(json!({"destination": "/m", "type": "bind", "source": h,
                       "options": ["rbind", propagation]}));
    c.args(&["sleep", "1000"]);
    c.create_start();
    sh(&format!(
        "mount -t tmpfs polis-prop-sub {h}/sub && echo late > {h}/sub/f"
    ));
    let out = c.exec(
        &[],
        &["sh", "-c", "cat /m/sub/f 2>/dev/null || echo missing"],
    );
    c.delete_force();
    sh(&format!("umount -R {h}"));
    drop(c);
    assert_eq!(out.code, 0, "{out:#?}");
    match out.stdout.as_str() {
        "late\n" => true,
        "missing\n" => false,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn rslave_bind_receives_host_mounts() {
    assert!(host_mount_propagates("prop-rslave", "rslave"));
}

#[test]
fn rprivate_bind_does_not_receive_host_mounts() {
    assert!(!host_mount_propagates("prop-rprivate", "rprivate"));
}

#[test]
fn special_filesystems_mounted() {
    let mut c = Container::new("special-fs");
    let (mounts, _) = container_mounts(&mut c, "true");
    assert_eq!(mount_at(&mounts, "/proc").fstype, "proc");
    assert_eq!(mount_at(&mounts, "/sys").fstype, "sysfs");
    assert!(mount_at(&mounts, "/sys")
        .mount_options
        .contains(&"ro".to_string()));
    assert_eq!(mount_at(&mounts, "/dev").fstype, "tmpfs");
    assert_eq!(mount_at(&mounts, "/dev/pts").fstype, "devpts");
    assert_eq!(mount_at(&mounts, "/dev/shm").fstype, "tmpfs");
    assert_eq!(mount_at(&mounts, "/dev/mqueue").fstype, "mqueue");
    let cg = mount_at(&mounts, "/sys/fs/cgroup");
    if cgroup_v2() {
        assert_eq!(cg.fstype, "cgroup2");
    } else {
        // v1: a tmpfs holding one cgroup mount per hierarchy.
        assert_eq!(cg.fstype, "tmpfs");
        let memory = mounts
            .iter()
            .find(|m| {
                m.mount_point.starts_with("/sys/fs/cgroup/")
                    && m.super_options.contains(&"memory".to_string())
            })
            .expect("memory hierarchy mounted");
        assert_eq!(memory.fstype, "cgroup");
        assert!(memory.mount_options.contains(&"ro".to_string()));
    }
    let devpts = mount_at(&mounts, "/dev/pts");
    for o in ["mode=620", "ptmxmode=666", "gid=5"] {
        assert!(
            devpts.super_options.contains(&o.to_string()),
            "{o}: {:?}",
            devpts.super_options
        );
    }
}

#[test]
fn default_devices() {
    let mut c = Container::new("devices");
    let out = run_sh(
        &mut c,
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T %a' /dev/$d; done; \
         stat -c %F /dev/pts /dev/shm; readlink /dev/ptmx; readlink /dev/fd; \
         echo x > /dev/null && head -c 4 /dev/zero | wc -c",
    );
    let want = "/dev/null character special file 1:3 666\n\
                /dev/zero character special file 1:5 666\n\
                /dev/full character special file 1:7 666\n\
                /dev/random character special file 1:8 666\n\
                /dev/urandom character special file 1:9 666\n\
                /dev/tty character special file 5:0 666\n\
                directory\ndirectory\npts/ptmx\n/proc/self/fd\n4\n";
    assert_eq!(out, want);
}

#[test]
fn linux_devices_created() {
    let mut c = Container::new("linux-devices");
    c.config["linux"]["devices"] = json!([
        {"path": "/dev/polis-null", "type": "c", "major": 1, "minor": 3,
         "fileMode": 0o640, "uid": 1000, "gid": 65534},
        {"path": "/dev/polis-blk", "type": "b", "major": 7, "minor": 200,
         "fileMode": 0o600, "uid": 0, "gid": 0}
    ]);
    let out = run_sh(
        &mut c,
        "stat -c '%F %t %T %a %u %g' /dev/polis-null /dev/polis-blk",
    );
    assert_eq!(
        out,
        "character special file 1 3 640 1000 65534\nblock special file 7 c8 600 0 0\n"
    );
}

#[test]
fn masked_paths() {
    let mut c = Container::new("masked");
    c.readonly_root(false);
    fs::create_dir_all(c.rootfs().join("secret")).unwrap();
    fs::write(c.rootfs().join("secret/key"), "s3cr3t").unwrap();
    fs::write(c.rootfs().join("secret-file"), "hidden").unwrap();
    c.config["linux"]["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .extend([
            json!("/secret"),
            json!("/secret-file"),
            json!("/does/not/exist"),
        ]);
    let out = run_sh(
        &mut c,
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; ls /secret | wc -l; \
         wc -c < /secret-file; echo x > /secret/new 2>/dev/null && echo wrote || echo denied",
    );
    assert_eq!(out, "0\n0\n0\n0\ndenied\n");
}

#[test]
fn readonly_paths() {
    let mut c = Container::new("ro-paths");
    c.readonly_root(false);
    fs::create_dir_all(c.rootfs().join("frozen")).unwrap();
    c.config["linux"]["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/frozen"));
    let (mounts, pre) = container_mounts(
        &mut c,
        "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo wrote || echo denied; \
         touch /frozen/x 2>/dev/null && echo wrote || echo denied; \
         touch /writable && echo wrote",
    );
    assert_eq!(pre, "denied\ndenied\nwrote\n");
    for p in ["/proc/sys", "/proc/bus", "/proc/sysrq-trigger", "/frozen"] {
        // Paths this kernel does not have are skipped by the runtime.
        if p.starts_with("/proc/") && !Path::new(p).exists() {
            continue;
        }
        assert!(
            mount_at(&mounts, p)
                .mount_options
                .contains(&"ro".to_string()),
            "{p}"
        );
    }
}

#[test]
fn sysctls_in_new_namespaces() {
    let host_fwd = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shm = fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap();
    let mut c = Container::new("sysctl");
    let want_fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
    let want_shm = if host_shm.trim() == "1" { "0" } else { "1" };
    c.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": want_fwd,
        "kernel.shm_rmid_forced": want_shm
    });
    let out = run_sh(
        &mut c,
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced",
    );
    assert_eq!(out, format!("{want_fwd}\n{want_shm}\n"));
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap(),
        host_shm
    );
}

#[test]
fn sysctl_of_host_namespace_is_refused() {
    let mut c = Container::new("sysctl-host");
    c.remove_namespace("network");
    c.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| !m["destination"].as_str().unwrap().starts_with("/sys"));
    c.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    c.args(&["true"]);
    let before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let out = c.run();
    assert_ne!(out.code, 0, "{out:#?}");
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        before
    );
}

#[test]
fn no_pivot() {
    let mut c = Container::new("no-pivot");
    c.sh("ls /; cat /etc/hostname");
    c.write_config();
    let bundle = c.bundle.to_string_lossy().into_owned();
    let out = c.runtime(&["run", "--no-pivot", "--bundle", &bundle, &c.id]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.ends_with("busybox\n"), "{out:#?}");
    assert!(out.stdout.contains("bin\n"), "{out:#?}");
    assert!(!out.stdout.contains("work\n"), "host / visible: {out:#?}");
}

#[test]
fn mount_on_symlink_to_host_path_stays_in_rootfs() {
    let mut c = Container::new("symlink-escape");
    let target = c.dir.join("host-target");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("canary"), "untouched\n").unwrap();
    // rootfs/evil -> <absolute host path>: must resolve inside the rootfs.
    std::os::unix::fs::symlink(&target, c.rootfs().join("evil")).unwrap();
    c.add_mount(json!({
        "destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]
    }));
    let out = run_sh(&mut c, "echo pwned > /evil/marker; ls /evil");
    assert_eq!(out, "marker\n");
    let host_entries: Vec<String> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(host_entries, vec!["canary".to_string()]);
    assert_eq!(
        fs::read_to_string(target.join("canary")).unwrap(),
        "untouched\n"
    );
    let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host_mounts.contains(target.to_str().unwrap()),
        "host target got mounted over"
    );
}

#[test]
fn bind_source_symlink_to_host_is_followed_on_host() {
    // The *source* is a host path and is resolved on the host; only the
    // destination is confined to the rootfs.
    let mut c = Container::new("bind-src-link");
    let real = c.dir.join("real");
    fs::create_dir_all(&real).unwrap();
    fs::write(real.join("f"), "real\n").unwrap();
    let link = c.dir.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    c.add_mount(json!({"destination": "/m", "type": "bind",
                       "source": link.to_str().unwrap(), "options": ["rbind", "ro"]}));
    let out = run_sh(&mut c, "cat /m/f");
    assert_eq!(out, "real\n");
}

#[test]
fn rootfs_propagation_private() {
    let mut c = Container::new("rootfs-prop-private");
    c.config["linux"]["rootfsPropagation"] = json!("private");
    let (mounts, _) = container_mounts(&mut c, "true");
    let root = mount_at(&mounts, "/");
    assert!(
        !root.optional.iter().any(|o| o.starts_with("shared:")),
        "{:?}",
        root.optional
    );
}

#[test]
fn rootfs_propagation_shared() {
    // runc 1.1 makes the rootfs's parent mount private for pivot_root, so "/"
    // never ends up shared there.
    if !require_polis("rootfsPropagation shared") {
        return;
    }
    let mut c = Container::new("rootfs-prop-shared");
    c.config["linux"]["rootfsPropagation"] = json!("shared");
    let (mounts, _) = container_mounts(&mut c, "true");
    let root = mount_at(&mounts, "/");
    assert!(
        root.optional.iter().any(|o| o.starts_with("shared:")),
        "{:?}",
        root.optional
    );
}

#[test]
fn relative_mount_destination_in_bundle_dir_is_not_created_on_host() {
    // Mount destinations that do not exist are created inside the rootfs.
    let mut c = Container::new("mkdir-dest");
    c.add_mount(json!({"destination": "/new/deep/dir", "type": "tmpfs", "source": "tmpfs"}));
    let out = run_sh(&mut c, "stat -c %F /new/deep/dir");
    assert_eq!(out, "directory\n");
    assert!(c.rootfs().join("new/deep/dir").is_dir());
    assert!(!Path::new("/new/deep/dir").exists());
}
