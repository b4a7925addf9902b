//! Seccomp profiles in Docker's format, and their conversion to the OCI filter the
//! runtime loads. Docker's format adds to OCI's an `archMap` (the native architecture
//! with the ones its kernel also runs) and per-rule conditions (`includes`/`excludes`
//! on capabilities, architectures and kernel version), resolved here for one container.
//! The default profile is Docker's, kept as data in `profiles/seccomp-default.json`.

use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Docker's default profile.
pub const DEFAULT_PROFILE: &str = include_str!("../profiles/seccomp-default.json");

/// A whole profile as Docker reads it (`--security-opt seccomp=FILE`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    default_action: Option<LinuxSeccompAction>,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    /// The older form: the architectures, listed outright.
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Rule {
    /// The older form: one syscall.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    /// Documentation in the profile.
    #[serde(default, rename = "comment")]
    _comment: Option<String>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Arg {
    index: usize,
    value: u64,
    #[serde(default)]
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
}

/// When a rule applies: all capabilities held, one of the architectures, a kernel at
/// least this version ("4.8").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What a profile is resolved against.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    /// The container's bounding set, as "CAP_…" names.
    pub caps: &'a [String],
    /// The architecture as Docker names it ("amd64", "arm64", …).
    pub arch: &'a str,
    /// The kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Target<'_> {
    fn has_cap(&self, name: &str) -> bool {
        self.caps.iter().any(|c| c.eq_ignore_ascii_case(name))
    }
}

impl Profile {
    /// Read a profile; every malformed part is refused, named as serde finds it.
    pub fn parse(json: &str) -> Result<Self> {
        serde_json::from_str(json)
            .map_err(|e| Error::InvalidInput(format!("Decoding seccomp profile failed: {e}")))
    }

    /// The OCI filter for `target`, or None when the profile asks for nothing (no
    /// default action and no rules: Docker runs such a container unconfined).
    pub fn resolve(&self, target: &Target) -> Result<Option<LinuxSeccomp>> {
        let rules = self.syscalls.as_deref().unwrap_or_default();
        let Some(default_action) = self.default_action else {
            if rules.is_empty() {
                return Ok(None);
            }
            return Err(invalid("defaultAction is missing"));
        };
        if self.architectures.as_ref().is_some_and(|a| !a.is_empty())
            && self.arch_map.as_ref().is_some_and(|a| !a.is_empty())
        {
            return Err(invalid(
                "both 'architectures' and 'archMap' are specified in the seccomp profile, \
                 use either 'architectures' or 'archMap'",
            ));
        }
        let mut architectures = self.architectures.clone().unwrap_or_default();
        if let Some(native) = seccomp_arch(target.arch) {
            if let Some(m) = self
                .arch_map
                .iter()
                .flatten()
                .find(|m| m.architecture == native)
            {
                architectures.push(m.architecture);
                architectures.extend(m.sub_architectures.iter().flatten().copied());
            }
        }
        let mut syscalls = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let names = rule_names(rule, i)?;
            if !applies(rule, target, i)? {
                continue;
            }
            let mut out = LinuxSyscall::default();
            out.set_names(names);
            out.set_action(rule.action);
            out.set_errno_ret(rule.errno_ret);
            if let Some(args) = &rule.args {
                out.set_args(Some(args.iter().map(oci_arg).collect::<Result<_>>()?));
            }
            syscalls.push(out);
        }
        let mut seccomp = LinuxSeccomp::default();
        seccomp.set_default_action(default_action);
        seccomp.set_default_errno_ret(self.default_errno_ret);
        seccomp.set_architectures((!architectures.is_empty()).then_some(architectures));
        seccomp.set_flags(self.flags.clone());
        seccomp.set_listener_path(self.listener_path.clone());
        seccomp.set_listener_metadata(self.listener_metadata.clone());
        seccomp.set_syscalls(Some(syscalls));
        Ok(Some(seccomp))
    }
}

fn oci_arg(a: &Arg) -> Result<LinuxSeccompArg> {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(a.index)
        .value(a.value)
        .op(a.op);
    if let Some(two) = a.value_two {
        b = b.value_two(two);
    }
    b.build().map_err(|e| invalid(&e.to_string()))
}

fn invalid(what: &str) -> Error {
    Error::InvalidInput(format!("seccomp profile: {what}"))
}

fn rule_names(rule: &Rule, i: usize) -> Result<Vec<String>> {
    let names = match (&rule.name, &rule.names) {
        (Some(_), Some(n)) if !n.is_empty() => {
            return Err(invalid(&format!(
                "syscalls[{i}]: use either 'name' or 'names'"
            )))
        }
        (Some(name), _) => vec![name.clone()],
        (None, Some(n)) => n.clone(),
        (None, None) => Vec::new(),
    };
    if names.is_empty() || names.iter().any(String::is_empty) {
        return Err(invalid(&format!("syscalls[{i}]: no syscall names")));
    }
    Ok(names)
}

/// Whether a rule's conditions hold for `target` (Docker's semantics: an exclusion
/// drops the rule when any of its capabilities is held; an inclusion needs all).
fn applies(rule: &Rule, target: &Target, i: usize) -> Result<bool> {
    if let Some(ex) = &rule.excludes {
        if ex.arches.iter().flatten().any(|a| a == target.arch) {
            return Ok(false);
        }
        if ex.caps.iter().flatten().any(|c| target.has_cap(c)) {
            return Ok(false);
        }
        if let Some(v) = &ex.min_kernel {
            if target.kernel >= kernel_version(v, i)? {
                return Ok(false);
            }
        }
    }
    if let Some(inc) = &rule.includes {
        if let Some(arches) = inc.arches.as_ref().filter(|a| !a.is_empty()) {
            if !arches.iter().any(|a| a == target.arch) {
                return Ok(false);
            }
        }
        if !inc.caps.iter().flatten().all(|c| target.has_cap(c)) {
            return Ok(false);
        }
        if let Some(v) = &inc.min_kernel {
            if target.kernel < kernel_version(v, i)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// "major.minor" as a profile writes it.
fn kernel_version(v: &str, i: usize) -> Result<(u32, u32)> {
    let bad = || {
        invalid(&format!(
            "syscalls[{i}]: invalid minKernel {v:?} (want e.g. \"4.8\")"
        ))
    };
    let (major, minor) = v.split_once('.').ok_or_else(bad)?;
    Ok((
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    ))
}

/// The kernel this daemon runs on, as (major, minor).
pub fn host_kernel() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// This machine's architecture as Docker (Go) names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// The seccomp architecture a Docker arch name runs natively.
fn seccomp_arch(arch: &str) -> Option<Arch> {
    Some(match arch {
        "x86" => Arch::ScmpArchX86,
        "amd64" => Arch::ScmpArchX86_64,
        "x32" => Arch::ScmpArchX32,
        "arm" => Arch::ScmpArchArm,
        "arm64" => Arch::ScmpArchAarch64,
        "mips" => Arch::ScmpArchMips,
        "mips64" => Arch::ScmpArchMips64,
        "mips64n32" => Arch::ScmpArchMips64n32,
        "mipsel" => Arch::ScmpArchMipsel,
        "mipsel64" => Arch::ScmpArchMipsel64,
        "mipsel64n32" => Arch::ScmpArchMipsel64n32,
        "ppc" => Arch::ScmpArchPpc,
        "ppc64" => Arch::ScmpArchPpc64,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "s390" => Arch::ScmpArchS390,
        "s390x" => Arch::ScmpArchS390x,
        "riscv64" => Arch::ScmpArchRiscv64,
        "loong64" => Arch::ScmpArchLoongarch64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_CAPS: [&str; 14] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];

    fn resolve(caps: &[&str], arch: &str) -> LinuxSeccomp {
        let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        let target = Target {
            caps: &caps,
            arch,
            kernel: (6, 1),
        };
        Profile::parse(DEFAULT_PROFILE)
            .unwrap()
            .resolve(&target)
            .unwrap()
            .unwrap()
    }

    /// The rules naming `syscall`: (action, errno, args).
    fn rules_for(s: &LinuxSeccomp, syscall: &str) -> Vec<LinuxSyscall> {
        s.syscalls()
            .iter()
            .flatten()
            .filter(|r| r.names().iter().any(|n| n == syscall))
            .cloned()
            .collect()
    }

    fn allowed_outright(s: &LinuxSeccomp, syscall: &str) -> bool {
        rules_for(s, syscall)
            .iter()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
    }

    #[test]
    fn default_profile_denies_with_eperm_and_maps_the_native_arches() {
        let s = resolve(&DEFAULT_CAPS, "amd64");
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(s.default_errno_ret(), Some(1));
        assert_eq!(
            s.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let arm = resolve(&DEFAULT_CAPS, "arm64");
        assert_eq!(
            arm.architectures().as_deref(),
            Some(&[Arch::ScmpArchAarch64, Arch::ScmpArchArm][..])
        );
        for ok in [
            "read",
            "write",
            "execve",
            "getpid",
            "mkdir",
            "chroot",
            "arch_prctl",
        ] {
            assert!(allowed_outright(&s, ok), "{ok} must be allowed");
        }
        for blocked in [
            "add_key",
            "keyctl",
            "request_key",
            "kexec_load",
            "mount",
            "unshare",
        ] {
            assert!(
                rules_for(&s, blocked).is_empty(),
                "{blocked} must be denied"
            );
        }
        // arm-only rules are gone on amd64, amd64-only ones on arm64.
        assert!(rules_for(&s, "set_tls").is_empty());
        assert!(allowed_outright(&arm, "set_tls"));
        assert!(rules_for(&arm, "arch_prctl").is_empty());
    }

    #[test]
    fn capability_conditions_follow_the_bounding_set() {
        let plain = resolve(&DEFAULT_CAPS, "amd64");
        // Without CAP_SYS_ADMIN: clone only without namespace flags, clone3 says ENOSYS.
        let clone = rules_for(&plain, "clone");
        assert_eq!(clone.len(), 1);
        let arg = clone[0].args().as_ref().unwrap()[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.op()),
            (0, 0x7E02_0000, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        let clone3 = rules_for(&plain, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
        for gated in [
            "kcmp",
            "init_module",
            "reboot",
            "settimeofday",
            "setns",
            "bpf",
        ] {
            assert!(
                rules_for(&plain, gated).is_empty(),
                "{gated} needs a capability"
            );
        }
        // ptrace comes with kernels >= 4.8 for everyone.
        assert!(allowed_outright(&plain, "ptrace"));

        let mut caps = DEFAULT_CAPS.to_vec();
        caps.extend(["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE"]);
        let admin = resolve(&caps, "amd64");
        for now in [
            "mount", "umount2", "unshare", "setns", "clone", "clone3", "kcmp",
        ] {
            assert!(allowed_outright(&admin, now), "{now} with the added caps");
        }
        for now in ["init_module", "finit_module", "delete_module"] {
            assert!(allowed_outright(&admin, now), "{now} with CAP_SYS_MODULE");
        }
        // The conditional clone and the clone3 ENOSYS rule are gone.
        assert_eq!(rules_for(&admin, "clone").len(), 1);
        assert!(rules_for(&admin, "clone3")
            .iter()
            .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow));
        assert!(rules_for(&admin, "reboot").is_empty());

        // Dropping a default capability drops its rule (chroot needs CAP_SYS_CHROOT).
        let fewer: Vec<&str> = DEFAULT_CAPS
            .iter()
            .copied()
            .filter(|c| *c != "CAP_SYS_CHROOT")
            .collect();
        assert!(rules_for(&resolve(&fewer, "amd64"), "chroot").is_empty());
    }

    #[test]
    fn default_profile_compiles_with_libseccomp() {
        let mut caps = DEFAULT_CAPS.to_vec();
        for s in [resolve(&caps, host_arch()), {
            caps.push("CAP_SYS_ADMIN");
            resolve(&caps, host_arch())
        }] {
            polis_runtime::seccomp::SeccompProgram::compile(&s).unwrap();
        }
    }

    #[test]
    fn kernel_conditions() {
        let caps: Vec<String> = Vec::new();
        let old = Target {
            caps: &caps,
            arch: "amd64",
            kernel: (4, 4),
        };
        let s = Profile::parse(DEFAULT_PROFILE)
            .unwrap()
            .resolve(&old)
            .unwrap()
            .unwrap();
        assert!(rules_for(&s, "ptrace").is_empty());
    }

    #[test]
    fn custom_profiles_and_their_errors() {
        let caps: Vec<String> = Vec::new();
        let t = Target {
            caps: &caps,
            arch: "amd64",
            kernel: (6, 1),
        };
        let p = Profile::parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"name":"mkdir","action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
        )
        .unwrap();
        let s = p.resolve(&t).unwrap().unwrap();
        assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
        assert_eq!(s.architectures(), &None);
        assert_eq!(rules_for(&s, "mkdir")[0].errno_ret(), Some(13));
        // An empty profile is no filter at all.
        assert!(Profile::parse("{}").unwrap().resolve(&t).unwrap().is_none());

        let err = |json: &str| match Profile::parse(json).and_then(|p| p.resolve(&t)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{json} was accepted"),
        };
        assert!(err("{").contains("Decoding seccomp profile failed"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).contains("SCMP_ACT_NOPE"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscals":[]}"#).contains("syscals"));
        assert!(
            err(r#"{"syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#)
                .contains("defaultAction is missing")
        );
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}"#
        )
        .contains("syscalls[0]: no syscall names"));
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],
                "archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":null}]}"#
        )
        .contains("use either 'architectures' or 'archMap'"));
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],
                "action":"SCMP_ACT_ALLOW","includes":{"minKernel":"four"}}]}"#
        )
        .contains("invalid minKernel"));
    }
}
