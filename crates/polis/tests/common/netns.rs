//! A network namespace of the test's own (`ip netns`), named uniquely per test, with
//! `lo` up and a veth pair (both ends inside; this kernel has no dummy driver) whose
//! first end holds a private address: servers in it listen on a non-loopback address
//! without touching the host's interfaces. Deleted when dropped
//! (also when the test fails); processes in it must be gone by then.

use std::process::Command;

use super::daemon::{import_busybox, Daemon, DaemonOptions};

pub struct NetNs {
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

impl NetNs {
    /// `polis-<test>-<pid>`, with `address` (CIDR, e.g. `10.123.0.1/16`) on `veth0`.
    pub fn new(test: &str, address: &str) -> NetNs {
        let name = format!("polis-{test}-{}", std::process::id());
        // A namespace a killed earlier run of this test left behind.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = NetNs { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &ns.name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ]);
        ip(&["-n", &ns.name, "addr", "add", address, "dev", "veth0"]);
        for dev in ["veth0", "veth1"] {
            ip(&["-n", &ns.name, "link", "set", dev, "up"]);
        }
        ns
    }

    /// `program` run inside the namespace (its network only: same files, same mounts).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A namespace `polis-NAME-PID` holding `address`, and polisd (with busybox:local)
/// running in it. Drop order: the daemon goes first, then the namespace.
pub fn daemon_in_netns(name: &str, address: &str) -> (NetNs, Daemon) {
    let ns = NetNs::new(name, address);
    let d = Daemon::start_with(
        name,
        &DaemonOptions {
            netns: Some(&ns.name),
            ..DaemonOptions::default()
        },
    );
    import_busybox(&d);
    (ns, d)
}
