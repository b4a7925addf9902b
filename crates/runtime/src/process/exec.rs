//! `exec`: a new process in a running container. It joins the init's namespaces and
//! cgroup, then goes through the same finishing steps as the init.

use std::path::PathBuf;

use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::Process;

use super::create::write_pid_file;
use super::finalize;
use super::namespaces::Plan;
use super::{exit_child, Started};
use crate::console;
use crate::error::{Error, Result};
use crate::state::{Record, Root, Status};
use crate::sync::{channel_pair, Channel, Message};

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Keep the pty master (foreground exec with a terminal and no console socket).
    pub keep_pty: bool,
    /// Allow exec into a paused container (the new process starts frozen).
    pub ignore_paused: bool,
}

/// Start `process` in the container; returns once it is running (the caller may wait).
pub fn exec(root: &Root, id: &str, process: &Process, opts: &ExecOptions) -> Result<Started> {
    let record = root.load(id)?;
    let status = record.status(root);
    match status {
        Status::Running | Status::Created => {}
        Status::Paused if opts.ignore_paused => {}
        other => {
            return Err(Error::BadState {
                id: id.to_string(),
                state: other.to_string(),
                action: "exec",
                wanted: "running",
            })
        }
    }
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && !opts.keep_pty {
        return Err(Error::InvalidConfig(
            "process.terminal is true: a --console-socket is needed to receive the terminal".into(),
        ));
    }
    crate::spec::validate_process(process)?;
    let prepared = finalize::prepare(process)?;
    let plan = Plan::for_exec(record.pid)?;
    // In a frozen cgroup the new process could not finish its setup: it joins once ready.
    let frozen = status == Status::Paused;
    let (parent, child) = channel_pair()?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // SAFETY: single-threaded; the child only runs our code and ends in exec or _exit.
    let stage1 = match unsafe { fork() }.map_err(|e| Error::sys("fork", e))? {
        ForkResult::Child => {
            drop(parent);
            // Join the cgroup ourselves (see `join_current`); a frozen one only once
            // set up, by the parent.
            let joined = if frozen {
                Ok(())
            } else {
                record.cgroup.join_current()
            };
            if let Err(e) =
                joined.and_then(|()| stage1(&record, process, &plan, &prepared, &child, opts))
            {
                let _ = child.send(&Message::Failed(e.to_string()));
                exit_child(1);
            }
            exit_child(0);
        }
        ForkResult::Parent { child } => child,
    };
    drop(child);
    parent.send(&Message::Go)?;
    let mut pid = None;
    let mut pty_master = None;
    loop {
        let Some((msg, fd)) = parent.recv()? else {
            return Err(Error::Init(
                "exec process exited before it was ready".into(),
            ));
        };
        match msg {
            Message::InitPid(p) => {
                let _ = waitpid(stage1, None);
                pid = Some(p);
            }
            Message::ConsoleMaster { slave } => {
                pty_master = console::deliver(fd, &slave, opts.console_socket.as_deref())?;
                parent.send(&Message::Ack)?;
            }
            Message::SeccompListener => {
                // The listener of an exec'd process goes nowhere: the agent has the init's.
                parent.send(&Message::Ack)?;
            }
            Message::Ready => break,
            Message::Failed(why) => {
                if let Some(p) = pid {
                    let _ = waitpid(nix::unistd::Pid::from_raw(p), None);
                }
                return Err(Error::Reported(why));
            }
            other => return Err(Error::Init(format!("unexpected message {other:?}"))),
        }
    }
    let pid = pid.ok_or_else(|| Error::Init("exec pid never reported".into()))?;
    if frozen {
        record.cgroup.add_process(pid)?;
    }
    parent.send(&Message::Ack)?;
    if let Some(f) = &opts.pid_file {
        write_pid_file(f, pid)?;
    }
    Ok(Started { pid, pty_master })
}

fn stage1(
    record: &Record,
    process: &Process,
    plan: &Plan,
    prepared: &finalize::Prepared,
    ch: &Channel,
    opts: &ExecOptions,
) -> Result<()> {
    ch.expect(Message::Go)?;
    plan.join_all()?;
    if super::fork_reporting_pid(ch)? {
        if let Err(e) = run(record, process, prepared, ch, opts) {
            let _ = ch.send(&Message::Failed(e.to_string()));
            exit_child(1);
        }
        exit_child(0)
    }
    Ok(())
}

fn run(
    record: &Record,
    process: &Process,
    prepared: &finalize::Prepared,
    ch: &Channel,
    opts: &ExecOptions,
) -> Result<()> {
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    finalize::open_terminal(process, ch, false)?;
    let ready = finalize::become_workload(
        process,
        prepared,
        record.config.linux().as_ref(),
        opts.preserve_fds,
        ch,
    )?;
    ch.send(&Message::Ready)?;
    // The parent may still have to put us in a frozen cgroup: wait until it has.
    ch.expect(Message::Ack)?;
    if let Some(sc) = ready.late_seccomp {
        sc.load()?;
    }
    Err(finalize::exec(&ready.program, process, &ready.env))
}
