//! Behaviour checked by the OCI runtime-tools validations (see tests/conformance.sh):
//! seccomp profiles that predate newer syscalls, and poststart/poststop hook failures.

mod common;

use common::*;
use serde_json::{json, Value};
use std::fs;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Without noNewPrivileges the filter is loaded before the runtime's last steps; a
/// profile denying close_range (as older default profiles do) must not break them,
/// and the runtime's own descriptors must still not leak into the workload.
#[test]
fn seccomp_denying_close_range_without_no_new_privileges() {
    let mut c = Container::new("seccomp-close-range");
    c.config["process"]["noNewPrivileges"] = json!(false);
    c.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    // ls holds one descriptor of its own on /proc/self/fd.
    c.sh("ls /proc/self/fd | wc -l");
    let out = c.run().ok();
    assert_eq!(out.stdout.trim(), "4", "{out:#?}");
}

/// A hook that records its name in `order` and then exits with `code`.
fn hook(dir: &str, name: &str, code: i32) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat > /dev/null; echo {name} >> {dir}/order; exit {code}")]
    })
}

/// "If any poststart/poststop hook fails, the runtime MUST log a warning, but the
/// remaining hooks and lifecycle continue as if the hook had succeeded."
#[test]
fn failing_poststart_and_poststop_hooks_do_not_stop_the_rest() {
    // runc 1.1 fails `start` on a poststart failure and stops at a failed poststop hook.
    if !require_polis("runc 1.1 stops at a failing poststart/poststop hook") {
        return;
    }
    let mut c = Container::new("hook-failures");
    c.args(&["sleep", "1000"]);
    let host = c.dir.join("hooks");
    fs::create_dir_all(&host).unwrap();
    let h = host.to_str().unwrap().to_string();
    c.config["hooks"] = json!({
        "poststart": [hook(&h, "poststart-fails", 1), hook(&h, "poststart-next", 0)],
        "poststop": [hook(&h, "poststop-fails", 1), hook(&h, "poststop-next", 0)]
    });
    c.create().ok();
    let out = c.start().ok();
    assert!(out.stderr.contains("warning"), "{out:#?}");
    assert_eq!(c.state()["status"], "running");
    c.runtime(&["kill", &c.id, "KILL"]).ok();
    c.wait_status("stopped", WAIT);
    c.delete().ok();
    let order = fs::read_to_string(host.join("order")).unwrap_or_default();
    assert_eq!(
        order,
        "poststart-fails\npoststart-next\npoststop-fails\npoststop-next\n"
    );
}
