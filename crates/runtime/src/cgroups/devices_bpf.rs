//! The cgroup v2 device controller: OCI device rules compiled into a
//! BPF_PROG_TYPE_CGROUP_DEVICE program (hand-assembled, like runc's devicefilter)
//! and attached to the container's cgroup with BPF_F_ALLOW_MULTI.
//!
//! Semantics: the last rule matching a request decides (as the v1 allow/deny
//! lists behave for the usual "deny all, then allow some" configurations); a
//! request no rule matches is denied. An allow rule matches when it grants every
//! requested access; a deny rule matches when it covers any requested access.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

// struct bpf_cgroup_dev_ctx access bits and types.
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// One eBPF instruction (struct bpf_insn).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Opcodes used (class | op | source).
const LDX_W_MEM: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54;
const ALU32_RSH_K: u8 = 0x74;
const ALU32_MOV_K: u8 = 0xb4;
const ALU32_MOV_X: u8 = 0xbc;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_K: u8 = 0x55;
const JMP_EXIT: u8 = 0x95;

fn access_bits(rule: &LinuxDeviceCgroup) -> Result<i32> {
    let access = rule.access().clone().unwrap_or_default();
    if access.is_empty() {
        return Ok(ACC_MKNOD | ACC_READ | ACC_WRITE);
    }
    let mut bits = 0;
    for c in access.chars() {
        bits |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => {
                return Err(Error::InvalidConfig(format!(
                    "device rule access {access:?}: only 'r', 'w' and 'm' are allowed"
                )))
            }
        };
    }
    Ok(bits)
}

/// Check rules for things neither the v1 controller nor the BPF filter accept.
pub fn validate_rules(rules: &[LinuxDeviceCgroup]) -> Result<()> {
    for rule in rules {
        access_bits(rule)?;
        for n in [rule.major(), rule.minor()].into_iter().flatten() {
            if n < -1 || n > i64::from(u32::MAX) {
                return Err(Error::InvalidConfig(format!(
                    "device rule number {n} is out of range"
                )));
            }
        }
    }
    Ok(())
}

/// Compile device rules into a program; see the module docs for the semantics.
pub fn compile(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    validate_rules(rules)?;
    // r2 = device type, r3 = requested access, r4 = major, r5 = minor.
    let mut prog = vec![
        insn(LDX_W_MEM, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_W_MEM, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_W_MEM, 4, 1, 4, 0),
        insn(LDX_W_MEM, 5, 1, 8, 0),
    ];
    // Later rules take precedence, so test them first.
    for rule in rules.iter().rev() {
        let typ = match rule.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(DEV_BLOCK),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
            LinuxDeviceType::P => continue,
        };
        let access = access_bits(rule)?;
        let full = ACC_MKNOD | ACC_READ | ACC_WRITE;
        // Each jump is a "no match: skip the rest of this block"; offsets are
        // patched once the block length is known.
        let mut block: Vec<Insn> = Vec::new();
        let mut jumps: Vec<usize> = Vec::new();
        if let Some(t) = typ {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 2, 0, 0, t));
        }
        if access != full {
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            if rule.allow() {
                block.push(insn(ALU32_AND_K, 1, 0, 0, !access & full));
                jumps.push(block.len());
                block.push(insn(JMP_JNE_K, 1, 0, 0, 0));
            } else {
                block.push(insn(ALU32_AND_K, 1, 0, 0, access));
                jumps.push(block.len());
                block.push(insn(JMP_JEQ_K, 1, 0, 0, 0));
            }
        }
        if let Some(major) = rule.major().filter(|m| *m >= 0) {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 4, 0, 0, major as u32 as i32));
        }
        if let Some(minor) = rule.minor().filter(|m| *m >= 0) {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, 5, 0, 0, minor as u32 as i32));
        }
        block.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(rule.allow())));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        let unconditional = jumps.is_empty();
        for j in jumps {
            block[j].off = (len - j - 1) as i16;
        }
        prog.extend(block);
        if unconditional {
            // This rule matches every request: anything after it is unreachable,
            // which the verifier rejects.
            return Ok(prog);
        }
    }
    prog.push(insn(ALU32_MOV_K, 0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    Ok(prog)
}

/// The leading fields of union bpf_attr used by BPF_PROG_LOAD.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The fields of union bpf_attr used by BPF_PROG_ATTACH / BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The fields of union bpf_attr used by BPF_PROG_QUERY.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    /// Explicit so the tail padding is zero, as the kernel expects.
    _pad: u32,
}

/// The fields of union bpf_attr used by BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, properly sized #[repr(C)] prefix of union bpf_attr
    // for `cmd`; any pointers inside it refer to buffers the caller keeps alive for
    // the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned_fd(raw: libc::c_long) -> OwnedFd {
    // SAFETY: the bpf syscall just returned this new file descriptor and nothing
    // else owns it.
    unsafe { OwnedFd::from_raw_fd(raw as i32) }
}

fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        ..Default::default()
    };
    attr.prog_name[..12].copy_from_slice(b"polis_device");
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned_fd(fd)),
        Err(first) => {
            // Load again with the verifier log to say why.
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err(Error::Cgroup(format!(
                "load device filter program: {first}: {}",
                String::from_utf8_lossy(&log[..end]).trim()
            )))
        }
    }
}

/// Ids of the device programs attached directly to the cgroup.
fn attached_ids(cgroup: &File) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr)
        .map_err(|e| Error::Cgroup(format!("query device programs of the cgroup: {e}")))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// Replace the device filter of the cgroup at `dir` with one built from `rules`.
pub fn apply(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = compile(rules)?;
    let cgroup = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    let old = attached_ids(&cgroup)?;
    let prog_fd = load(&prog)?;
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| {
        Error::Cgroup(format!(
            "attach device filter program to {}: {e}",
            dir.display()
        ))
    })?;
    // The new program is in force; drop the ones it replaces.
    for id in old {
        let mut get = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        let old_fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
            Ok(fd) => owned_fd(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                return Err(Error::Cgroup(format!(
                    "open old device filter program {id}: {e}"
                )))
            }
        };
        let mut detach = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: old_fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_DETACH, &mut detach).map_err(|e| {
            Error::Cgroup(format!(
                "detach old device filter program {id} from {}: {e}",
                dir.display()
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    /// Interpret the compiled program the way the kernel would.
    fn run(prog: &[Insn], typ: i32, access: i32, major: u32, minor: u32) -> i32 {
        let ctx = [((access << 16) | typ) as u32, major, minor];
        let mut regs = [0u32; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W_MEM => regs[dst] = ctx[i.off as usize / 4],
                ALU32_AND_K => regs[dst] &= i.imm as u32,
                ALU32_RSH_K => regs[dst] >>= i.imm,
                ALU32_MOV_K => regs[dst] = i.imm as u32,
                ALU32_MOV_X => regs[dst] = regs[src],
                JMP_JEQ_K if regs[dst] == i.imm as u32 => pc += i.off as usize,
                JMP_JNE_K if regs[dst] != i.imm as u32 => pc += i.off as usize,
                JMP_JEQ_K | JMP_JNE_K => {}
                JMP_EXIT => return regs[0] as i32,
                c => panic!("unknown opcode {c:#x}"),
            }
        }
    }

    fn rule(
        allow: bool,
        t: LinuxDeviceType,
        maj: Option<i64>,
        min: Option<i64>,
        a: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(t)
            .access(a);
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn last_matching_rule_wins_and_default_denies() {
        let rules = vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rw"),
            rule(true, LinuxDeviceType::C, Some(136), None, "rwm"),
            rule(false, LinuxDeviceType::C, Some(136), Some(5), "w"),
        ];
        let p = compile(&rules).unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 1, 3), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 1, 3), 0);
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 1, 3), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 5), 0);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 9), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 136, 5), 1);
        assert_eq!(run(&p, DEV_CHAR, ACC_READ | ACC_WRITE, 136, 5), 0);
        assert_eq!(run(&compile(&[]).unwrap(), DEV_CHAR, ACC_READ, 1, 3), 0);
        let all = compile(&[rule(true, LinuxDeviceType::A, None, None, "rwm")]).unwrap();
        assert_eq!(run(&all, DEV_BLOCK, ACC_WRITE, 8, 0), 1);
    }

    /// The verifier refuses programs with unreachable instructions.
    fn assert_all_reachable(prog: &[Insn]) {
        let mut seen = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            if seen[pc] {
                continue;
            }
            seen[pc] = true;
            match prog[pc].code {
                JMP_EXIT => {}
                JMP_JEQ_K | JMP_JNE_K => {
                    todo.push(pc + 1);
                    todo.push(pc + 1 + prog[pc].off as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        assert!(
            seen.iter().all(|s| *s),
            "unreachable instructions in {prog:?}"
        );
    }

    #[test]
    fn no_unreachable_code() {
        let deny_all = rule(false, LinuxDeviceType::A, None, None, "rwm");
        let allow_null = rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm");
        for rules in [
            vec![],
            vec![deny_all.clone()],
            vec![deny_all.clone(), allow_null.clone()],
            vec![allow_null.clone(), deny_all.clone()],
            vec![rule(true, LinuxDeviceType::A, None, None, "rwm"), deny_all],
        ] {
            assert_all_reachable(&compile(&rules).unwrap());
        }
        let p = compile(&[
            allow_null.clone(),
            rule(false, LinuxDeviceType::A, None, None, ""),
        ])
        .unwrap();
        assert_eq!(run(&p, DEV_CHAR, ACC_READ, 1, 3), 0);
    }

    #[test]
    fn rejects_bad_access() {
        assert!(compile(&[rule(true, LinuxDeviceType::C, Some(1), Some(3), "rx")]).is_err());
    }
}
