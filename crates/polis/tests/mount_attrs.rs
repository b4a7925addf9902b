//! Recursive mount attributes (`rro`, `rnoexec`, …): they reach every submount of a
//! recursive bind, where a plain `ro` only changes the top one.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;

/// A host directory with a tmpfs mounted on its `sub`; unmounted on drop.
struct TreeWithSubmount {
    dir: TempDir,
}

impl TreeWithSubmount {
    fn new(name: &str) -> Self {
        let dir = TempDir::new(name);
        std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(dir.join("tree/sub"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs for the test");
        TreeWithSubmount { dir }
    }
}

impl Drop for TreeWithSubmount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(self.dir.join("tree/sub"))
            .status();
    }
}

fn writes(opts: &[&str]) -> String {
    let tree = TreeWithSubmount::new("rattr-host");
    let mut c = Container::new("rattr");
    c.add_mount(json!({
        "destination": "/data",
        "type": "bind",
        "source": tree.dir.join("tree").to_str().unwrap(),
        "options": opts,
    }));
    c.sh("touch /data/top 2>/dev/null && echo top-rw || echo top-ro; touch /data/sub/x 2>/dev/null && echo sub-rw || echo sub-ro");
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    out.stdout
}

#[test]
fn rro_reaches_submounts() {
    assert_eq!(writes(&["rbind", "rro"]), "top-ro\nsub-ro\n");
}

#[test]
fn plain_ro_leaves_submounts_writable() {
    assert_eq!(writes(&["rbind", "ro"]), "top-ro\nsub-rw\n");
}

#[test]
fn tmpcopyup_fills_the_tmpfs_with_the_image_content() {
    let mut c = Container::new("copyup");
    std::fs::create_dir_all(c.rootfs().join("seed/dir")).unwrap();
    std::fs::write(c.rootfs().join("seed/dir/file"), "from the image\n").unwrap();
    std::os::unix::fs::symlink("dir/file", c.rootfs().join("seed/link")).unwrap();
    c.add_mount(json!({
        "destination": "/seed",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["tmpcopyup", "mode=755"],
    }));
    c.sh("grep -q ' /seed tmpfs ' /proc/mounts && echo tmpfs; cat /seed/link; echo new > /seed/dir/other && echo writable");
    let out = c.run();
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "tmpfs\nfrom the image\nwritable\n");
    // The image itself is untouched.
    assert!(!c.rootfs().join("seed/dir/other").exists());
}
