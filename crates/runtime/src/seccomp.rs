//! Seccomp: the OCI profile compiled with libseccomp and loaded in the container's init.
//!
//! Compilation follows the OCI runtime spec (config-linux.md, "Seccomp") and runc's
//! behaviour: syscall names this architecture does not know are skipped, rules whose
//! action equals the default action are skipped (libseccomp refuses them), and several
//! comparisons of one argument turn every comparison of that rule into its own rule.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
    ScmpVersion,
};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::error::{Error, Result};

/// Syscalls take at most six arguments; seccomp sees exactly these.
const MAX_SYSCALL_ARGS: usize = 6;

/// Every action the spec defines, in the spec's order.
const ALL_ACTIONS: [LinuxSeccompAction; 9] = [
    LinuxSeccompAction::ScmpActKill,
    LinuxSeccompAction::ScmpActKillProcess,
    LinuxSeccompAction::ScmpActKillThread,
    LinuxSeccompAction::ScmpActTrap,
    LinuxSeccompAction::ScmpActErrno,
    LinuxSeccompAction::ScmpActTrace,
    LinuxSeccompAction::ScmpActAllow,
    LinuxSeccompAction::ScmpActLog,
    LinuxSeccompAction::ScmpActNotify,
];

/// Every comparison operator the spec defines.
const ALL_OPERATORS: [LinuxSeccompOperator; 7] = [
    LinuxSeccompOperator::ScmpCmpNe,
    LinuxSeccompOperator::ScmpCmpLt,
    LinuxSeccompOperator::ScmpCmpLe,
    LinuxSeccompOperator::ScmpCmpEq,
    LinuxSeccompOperator::ScmpCmpGe,
    LinuxSeccompOperator::ScmpCmpGt,
    LinuxSeccompOperator::ScmpCmpMaskedEq,
];

/// Every architecture the spec defines.
const ALL_ARCHS: [Arch; 24] = [
    Arch::ScmpArchNative,
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
];

/// Every filter flag the spec defines.
const ALL_FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

/// A compiled filter, built before the init drops privileges and loaded at the last moment.
///
/// The filter does not set no_new_privs itself (as runc): the caller sets it when the
/// config asks for `noNewPrivileges`, otherwise it must load while it still holds
/// CAP_SYS_ADMIN.
pub struct SeccompProgram {
    filter: ScmpFilterContext,
    uses_notify: bool,
}

impl SeccompProgram {
    /// Check and compile `seccomp`; every bad name, action or argument is an error here.
    pub fn compile(seccomp: &LinuxSeccomp) -> Result<Self> {
        let default_action = scmp_action(
            seccomp.default_action(),
            seccomp.default_errno_ret(),
            "defaultAction",
        )?;
        if default_action == ScmpAction::Notify {
            return Err(Error::Seccomp(
                "SCMP_ACT_NOTIFY cannot be the default action".into(),
            ));
        }

        let syscalls: &[LinuxSyscall] = seccomp.syscalls().as_deref().unwrap_or_default();
        let uses_notify = syscalls
            .iter()
            .any(|rule| rule.action() == LinuxSeccompAction::ScmpActNotify);
        if uses_notify {
            check_notify_possible(seccomp)?;
        }

        let mut filter = ScmpFilterContext::new(default_action)
            .map_err(|e| seccomp_error("create filter", e))?;
        // no_new_privs is the caller's decision (the config's noNewPrivileges), as in runc.
        filter
            .set_ctl_nnp(false)
            .map_err(|e| seccomp_error("clear the no_new_privs attribute", e))?;

        for arch in seccomp.architectures().as_deref().unwrap_or_default() {
            add_arch(&mut filter, *arch)?;
        }
        for flag in seccomp.flags().as_deref().unwrap_or_default() {
            set_flag(&mut filter, *flag)?;
        }
        for rule in syscalls {
            add_syscall_rule(&mut filter, rule, default_action)?;
        }

        Ok(SeccompProgram {
            filter,
            uses_notify,
        })
    }

    /// Whether loading yields a notify listener fd (some rule uses SCMP_ACT_NOTIFY).
    pub fn needs_listener(&self) -> bool {
        self.uses_notify
    }

    /// Load into the calling thread's process; returns the listener fd for SCMP_ACT_NOTIFY.
    pub fn load(self) -> Result<Option<OwnedFd>> {
        self.filter
            .load()
            .map_err(|e| seccomp_error("load filter", e))?;
        if !self.uses_notify {
            return Ok(None);
        }
        let raw = self
            .filter
            .get_notify_fd()
            .map_err(|e| seccomp_error("get the notify listener fd", e))?;
        if raw < 0 {
            return Err(Error::Seccomp(format!(
                "load filter: no notify listener fd (got {raw})"
            )));
        }
        // SAFETY: libseccomp created this listener fd in seccomp_load and never closes it
        // on its own (only seccomp_reset(NULL) would); from here on we are its only owner.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }))
    }
}

/// Hand the notify listener to the agent at `listener_path` as the spec says: SCM_RIGHTS
/// with the container process state (JSON) as the message.
pub fn send_listener(
    listener_path: &Path,
    state_json: &[u8],
    listener: BorrowedFd<'_>,
) -> Result<()> {
    if state_json.is_empty() {
        return Err(Error::Seccomp(format!(
            "send listener to {}: empty container process state",
            listener_path.display()
        )));
    }
    let socket = UnixStream::connect(listener_path)
        .map_err(|e| Error::io("connect to seccomp agent", listener_path, e))?;

    let fds = [listener.as_raw_fd()];
    let with_fd = [ControlMessage::ScmRights(&fds)];
    // The fd travels with the first bytes; a stream socket may take the rest in pieces.
    // MSG_NOSIGNAL: an agent that hangs up is an error, not a SIGPIPE.
    let mut sent = 0;
    while sent < state_json.len() {
        let cmsgs: &[ControlMessage] = if sent == 0 { &with_fd } else { &[] };
        let iov = [IoSlice::new(&state_json[sent..])];
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::sys(
                    format!(
                        "send seccomp listener and container state to {}",
                        listener_path.display()
                    ),
                    e,
                ))
            }
        }
    }
    Ok(())
}

/// The actions this build can put in a filter, by their spec names (for `features`).
pub fn supported_actions() -> Vec<String> {
    ALL_ACTIONS
        .iter()
        .filter(|action| action_supported(**action))
        .map(spec_name)
        .collect()
}

/// The argument comparison operators this build supports, by their spec names.
pub fn supported_operators() -> Vec<String> {
    // libseccomp has supported all of them since its first release.
    ALL_OPERATORS.iter().map(spec_name).collect()
}

/// The architectures a filter here can hold (libseccomp knows them and they share the
/// native byte order), by their spec names.
pub fn supported_archs() -> Vec<String> {
    ALL_ARCHS
        .iter()
        .filter(|arch| arch_supported(**arch))
        .map(spec_name)
        .collect()
}

/// Every filter flag the spec defines, whether or not this build can set it.
pub fn known_flags() -> Vec<String> {
    ALL_FLAGS.iter().map(spec_name).collect()
}

/// The filter flags both libseccomp and the kernel support here, by their spec names.
pub fn supported_flags() -> Vec<String> {
    ALL_FLAGS
        .iter()
        .filter(|flag| flag_supported(**flag))
        .map(spec_name)
        .collect()
}

/// The name a spec enum value has in config.json.
fn spec_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::new(),
    }
}

fn seccomp_error(what: &str, e: libseccomp::error::SeccompError) -> Error {
    Error::Seccomp(format!("{what}: {e}"))
}

/// Map a spec action (with its optional errno) to libseccomp's; `place` names it in errors.
fn scmp_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    place: &str,
) -> Result<ScmpAction> {
    let with_errno = matches!(
        action,
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
    );
    if let Some(errno) = errno_ret {
        if !with_errno {
            return Err(Error::Seccomp(format!(
                "{place}: errno return {errno} given for {}, which returns no errno \
                 (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE do)",
                spec_name(&action)
            )));
        }
    }
    // The value travels in the 16-bit SECCOMP_RET_DATA field; EPERM is the spec's default.
    let data = match errno_ret {
        None => libc::EPERM as u16,
        Some(errno) => u16::try_from(errno).map_err(|_| {
            Error::Seccomp(format!(
                "{place}: errno return {errno} out of range (at most {})",
                u16::MAX
            ))
        })?,
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(data)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(data),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Add `arch` to the filter; the native one is always there already.
fn add_arch(filter: &mut ScmpFilterContext, arch: Arch) -> Result<()> {
    let scmp = scmp_arch(arch);
    // An architecture libseccomp does not know is an error here too; add_arch reports it.
    if filter.is_arch_present(scmp).unwrap_or(false) {
        return Ok(());
    }
    filter.add_arch(scmp).map_err(|e| {
        let name = spec_name(&arch);
        if arch_known(arch) {
            // libseccomp keeps one byte order per filter, and the native one is always in.
            Error::Seccomp(format!(
                "architecture {name}: cannot be combined with the native or other listed \
                 architectures (different byte order?): {e}"
            ))
        } else {
            Error::Seccomp(format!(
                "architecture {name}: not supported by libseccomp {}: {e}",
                libseccomp_version()
            ))
        }
    })?;
    Ok(())
}

/// Whether a filter here can hold `arch` next to the native architecture (filters cannot
/// mix byte orders, so e.g. s390x is out on x86_64).
fn arch_supported(arch: Arch) -> bool {
    let Ok(mut probe) = ScmpFilterContext::new(ScmpAction::Allow) else {
        return false;
    };
    let scmp = scmp_arch(arch);
    probe.is_arch_present(scmp).unwrap_or(false) || probe.add_arch(scmp).is_ok()
}

/// Whether libseccomp knows `arch` at all.
fn arch_known(arch: Arch) -> bool {
    let Ok(mut probe) = ScmpFilterContext::new(ScmpAction::Allow) else {
        return false;
    };
    probe.remove_arch(ScmpArch::Native).is_ok() && probe.add_arch(scmp_arch(arch)).is_ok()
}

fn libseccomp_version() -> String {
    ScmpVersion::current()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "(unknown version)".into())
}

/// The libseccomp API level and version each flag needs (the library checks both).
fn flag_requirement(flag: LinuxSeccompFilterFlag) -> (u32, (u32, u32, u32)) {
    match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => (2, (2, 2, 0)),
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => (3, (2, 4, 0)),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => (4, (2, 5, 0)),
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => (7, (2, 6, 0)),
    }
}

fn flag_supported(flag: LinuxSeccompFilterFlag) -> bool {
    let (level, version) = flag_requirement(flag);
    libseccomp::check_api(level, ScmpVersion::from(version)).unwrap_or(false)
}

fn set_flag(filter: &mut ScmpFilterContext, flag: LinuxSeccompFilterFlag) -> Result<()> {
    let name = spec_name(&flag);
    if !flag_supported(flag) {
        let (level, (major, minor, micro)) = flag_requirement(flag);
        return Err(Error::Seccomp(format!(
            "flag {name}: needs libseccomp >= {major}.{minor}.{micro} and API level >= {level} \
             (have libseccomp {}, API level {})",
            libseccomp_version(),
            libseccomp::get_api()
        )));
    }
    let set = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => filter.set_ctl_tsync(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => filter.set_ctl_log(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => filter.set_ctl_ssb(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => filter.set_ctl_waitkill(true),
    };
    set.map_err(|e| seccomp_error(&format!("flag {name}"), e))?;
    Ok(())
}

/// Whether libseccomp and the kernel accept `action` in a rule.
fn action_supported(action: LinuxSeccompAction) -> bool {
    if action == LinuxSeccompAction::ScmpActNotify && !notify_supported() {
        return false;
    }
    let Ok(scmp) = scmp_action(action, None, "probe") else {
        return false;
    };
    // A rule may not repeat the default action, so probe against a different one.
    let default = if scmp == ScmpAction::Allow {
        ScmpAction::KillThread
    } else {
        ScmpAction::Allow
    };
    let Ok(mut probe) = ScmpFilterContext::new(default) else {
        return false;
    };
    let Ok(getpid) = ScmpSyscall::from_name("getpid") else {
        return false;
    };
    probe.add_rule(scmp, getpid).is_ok()
}

/// User notification needs libseccomp API level 6 (kernel listener plus TSYNC_ESRCH).
fn notify_supported() -> bool {
    libseccomp::check_api(6, ScmpVersion::from((2, 5, 0))).unwrap_or(false)
}

fn check_notify_possible(seccomp: &LinuxSeccomp) -> Result<()> {
    let has_listener = seccomp
        .listener_path()
        .as_ref()
        .is_some_and(|path| !path.as_os_str().is_empty());
    if !has_listener {
        return Err(Error::Seccomp(
            "SCMP_ACT_NOTIFY is used but listenerPath is not set".into(),
        ));
    }
    if !notify_supported() {
        return Err(Error::Seccomp(format!(
            "SCMP_ACT_NOTIFY needs libseccomp >= 2.5.0 and API level >= 6 \
             (have libseccomp {}, API level {})",
            libseccomp_version(),
            libseccomp::get_api()
        )));
    }
    Ok(())
}

fn scmp_condition(arg: &LinuxSeccompArg, syscall: &str) -> Result<ScmpArgCompare> {
    let index = arg.index();
    if index >= MAX_SYSCALL_ARGS {
        return Err(Error::Seccomp(format!(
            "syscall \"{syscall}\": argument index {index} out of range (0..{MAX_SYSCALL_ARGS})"
        )));
    }
    let value = arg.value();
    let (op, datum) = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // As runc: (argument & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => (
            ScmpCompareOp::MaskedEqual(value),
            arg.value_two().unwrap_or(0),
        ),
    };
    // index < 6 was checked above.
    Ok(ScmpArgCompare::new(index as u32, op, datum))
}

fn add_syscall_rule(
    filter: &mut ScmpFilterContext,
    rule: &LinuxSyscall,
    default_action: ScmpAction,
) -> Result<()> {
    let first_name = rule.names().first().map(String::as_str).unwrap_or("");
    if rule.names().is_empty() {
        return Err(Error::Seccomp("syscall rule without names".into()));
    }
    let action = scmp_action(
        rule.action(),
        rule.errno_ret(),
        &format!("syscall \"{first_name}\""),
    )?;
    let args: &[LinuxSeccompArg] = rule.args().as_deref().unwrap_or_default();
    let conditions = args
        .iter()
        .map(|arg| scmp_condition(arg, first_name))
        .collect::<Result<Vec<_>>>()?;
    // libseccomp refuses a rule that repeats the default action; it would change nothing.
    if action == default_action {
        return Ok(());
    }

    // libseccomp refuses two comparisons of one argument in a rule; like runc, such a rule
    // becomes one rule per comparison (they then match when any of them does).
    let mut per_index = [0usize; MAX_SYSCALL_ARGS];
    for arg in args {
        per_index[arg.index()] += 1;
    }
    let split = per_index.iter().any(|count| *count > 1);

    for name in rule.names() {
        if name.is_empty() {
            return Err(Error::Seccomp("syscall rule with an empty name".into()));
        }
        // Names unknown on this architecture are skipped, as runc does: profiles list
        // syscalls of every architecture and of newer kernels.
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            continue;
        };
        let added = if conditions.is_empty() {
            filter.add_rule(action, syscall).map(|_| ())
        } else if split {
            conditions.iter().try_for_each(|condition| {
                filter
                    .add_rule_conditional(action, syscall, std::slice::from_ref(condition))
                    .map(|_| ())
            })
        } else {
            filter
                .add_rule_conditional(action, syscall, &conditions)
                .map(|_| ())
        };
        added.map_err(|e| seccomp_error(&format!("add rule for syscall \"{name}\""), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).expect("test profile parses")
    }

    fn compile_error(json: &str) -> String {
        match SeccompProgram::compile(&profile(json)) {
            Ok(_) => panic!("profile compiled but should not: {json}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn compiles_a_profile_with_every_action_and_operator() {
        let program = SeccompProgram::compile(&profile(
            r#"{
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 38,
                "architectures": ["SCMP_ARCH_NATIVE", "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                "listenerPath": "/run/agent.sock",
                "syscalls": [
                    {"names": ["read", "write", "no_such_syscall_anywhere"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42},
                    {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
                    {"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"},
                    {"names": ["gettid"], "action": "SCMP_ACT_KILL_PROCESS"},
                    {"names": ["getuid"], "action": "SCMP_ACT_TRAP"},
                    {"names": ["getgid"], "action": "SCMP_ACT_TRACE", "errnoRet": 1},
                    {"names": ["geteuid"], "action": "SCMP_ACT_LOG"},
                    {"names": ["getegid"], "action": "SCMP_ACT_NOTIFY"},
                    {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
                        {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                        {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}
                    ]},
                    {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [
                        {"index": 0, "value": 1, "op": "SCMP_CMP_NE"},
                        {"index": 1, "value": 2, "op": "SCMP_CMP_LT"},
                        {"index": 2, "value": 3, "op": "SCMP_CMP_LE"},
                        {"index": 3, "value": 4, "op": "SCMP_CMP_GE"},
                        {"index": 4, "value": 5, "op": "SCMP_CMP_GT"},
                        {"index": 5, "value": 255, "valueTwo": 6, "op": "SCMP_CMP_MASKED_EQ"}
                    ]},
                    {"names": ["getpgrp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
                ]
            }"#,
        ))
        .expect("profile compiles");
        assert!(program.needs_listener());
    }

    #[test]
    fn no_listener_without_notify() {
        let program = SeccompProgram::compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}"#,
        ))
        .expect("profile compiles");
        assert!(!program.needs_listener());
    }

    #[test]
    fn unknown_action_operator_or_arch_is_refused_when_parsing() {
        for json in [
            r#"{"defaultAction": "SCMP_ACT_FROBNICATE"}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NOPE"]}"#,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
        ] {
            let parsed: std::result::Result<LinuxSeccomp, _> = serde_json::from_str(json);
            let err = parsed.expect_err(json).to_string();
            assert!(err.contains("unknown variant"), "{json}: {err}");
        }
    }

    #[test]
    fn notify_needs_listener_path() {
        let err = compile_error(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}"#,
        );
        assert!(err.contains("listenerPath"), "{err}");
    }

    #[test]
    fn notify_cannot_be_default() {
        let err = compile_error(
            r#"{"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/agent.sock"}"#,
        );
        assert!(err.contains("default action"), "{err}");
    }

    #[test]
    fn errno_ret_only_with_errno_or_trace() {
        let err = compile_error(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}"#,
        );
        assert!(
            err.contains("getcwd") && err.contains("SCMP_ACT_KILL"),
            "{err}"
        );

        let err = compile_error(r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}"#);
        assert!(err.contains("defaultAction"), "{err}");

        let err = compile_error(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}"#,
        );
        assert!(err.contains("out of range"), "{err}");

        let err = compile_error(r#"{"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 65536}"#);
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn argument_index_must_exist() {
        let err = compile_error(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
                "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(err.contains("argument index 6"), "{err}");
    }

    #[test]
    fn rule_without_names_is_refused() {
        let err = compile_error(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}"#,
        );
        assert!(err.contains("without names"), "{err}");
    }

    #[test]
    fn rule_repeating_the_default_action_is_skipped() {
        SeccompProgram::compile(&profile(
            r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
                {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"},
                {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
        ))
        .expect("default-action rules are skipped");
    }

    #[test]
    fn unsupported_arch_is_a_clear_error() {
        let supported = supported_archs();
        for arch in ALL_ARCHS.iter().map(spec_name) {
            if supported.contains(&arch) {
                continue;
            }
            let err = compile_error(&format!(
                r#"{{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["{arch}"]}}"#
            ));
            assert!(
                err.contains(&arch)
                    && (err.contains("not supported") || err.contains("cannot be combined")),
                "{err}"
            );
        }
    }

    #[test]
    fn unsupported_flag_is_a_clear_error() {
        let supported = supported_flags();
        for flag in known_flags() {
            if supported.contains(&flag) {
                continue;
            }
            let err = compile_error(&format!(
                r#"{{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["{flag}"]}}"#
            ));
            assert!(
                err.contains(&flag) && err.contains("needs libseccomp"),
                "{err}"
            );
        }
    }

    #[test]
    fn feature_lists_use_spec_names() {
        let actions = supported_actions();
        for action in [
            "SCMP_ACT_ALLOW",
            "SCMP_ACT_ERRNO",
            "SCMP_ACT_KILL",
            "SCMP_ACT_TRAP",
        ] {
            assert!(actions.contains(&action.to_string()), "{actions:?}");
        }
        assert_eq!(supported_operators().len(), 7);
        assert!(supported_operators().contains(&"SCMP_CMP_MASKED_EQ".to_string()));
        let archs = supported_archs();
        assert!(archs.contains(&"SCMP_ARCH_NATIVE".to_string()), "{archs:?}");
        assert!(archs.contains(&"SCMP_ARCH_X86_64".to_string()), "{archs:?}");
        assert!(known_flags().contains(&"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV".to_string()));
        for flag in supported_flags() {
            assert!(known_flags().contains(&flag));
        }
    }
}
