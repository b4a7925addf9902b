//! A foreground `run` or `exec`: forward signals to the container process, shuttle a
//! terminal between our stdio and the pty, and return the process's exit code the way
//! a shell would (128 + signal for a killed process).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const FORWARDED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

/// Restores the terminal mode on drop.
struct RawMode {
    saved: Option<termios::Termios>,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Self {
        let Ok(saved) = termios::tcgetattr(fd) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(fd, termios::SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), termios::SetArg::TCSANOW, saved);
        }
    }
}

fn copy_size(from: BorrowedFd<'_>, to: &OwnedFd) {
    let mut ws: libc::winsize = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ/TIOCSWINSZ read or write one winsize struct that lives for the call.
    unsafe {
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Wait for `pid` (our child: we are its subreaper) and return its exit code.
pub fn wait(pid: i32, pty: Option<OwnedFd>) -> i32 {
    let target = Pid::from_raw(pid);
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    let _ = mask.thread_block();
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ok();
    let stdin = std::io::stdin();
    let _raw = pty
        .as_ref()
        .filter(|_| termios::tcgetattr(stdin.as_fd()).is_ok())
        .map(|_| RawMode::enter(stdin.as_fd()));
    if let Some(master) = &pty {
        copy_size(stdin.as_fd(), master);
    }
    let mut stdin_open = pty.is_some();
    let mut code = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // Reap whatever has exited; ours decides the exit code.
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    if status.pid() == Some(target) {
                        code = exit_code(status);
                    }
                }
            }
        }
        if let Some(c) = code {
            if let Some(master) = &pty {
                drain(master, &mut buf);
            }
            return c;
        }
        let mut fds = Vec::new();
        if let Some(s) = &sfd {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        if let Some(master) = &pty {
            fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        let timeout = if sfd.is_some() {
            PollTimeout::from(1000u16)
        } else {
            PollTimeout::from(50u16)
        };
        if poll(&mut fds, timeout).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 0;
        if let Some(s) = &sfd {
            if ready[i] {
                while let Ok(Some(info)) = s.read_signal() {
                    let sig = info.ssi_signo as i32;
                    if sig == libc::SIGCHLD {
                        continue;
                    }
                    if sig == libc::SIGWINCH {
                        if let Some(master) = &pty {
                            copy_size(stdin.as_fd(), master);
                        }
                        continue;
                    }
                    // SAFETY: kill(2) with integer arguments.
                    unsafe { libc::kill(pid, sig) };
                }
            }
            i += 1;
        }
        if let Some(master) = &pty {
            if ready[i] {
                match nix::unistd::read(master, &mut buf) {
                    Ok(n) if n > 0 => write_all(std::io::stdout().as_fd(), &buf[..n]),
                    _ => {}
                }
            }
            if stdin_open && ready.get(i + 1).copied().unwrap_or(false) {
                match nix::unistd::read(&stdin, &mut buf) {
                    Ok(n) if n > 0 => write_all(master.as_fd(), &buf[..n]),
                    // End of our input: send the terminal's EOF character.
                    _ => {
                        stdin_open = false;
                        write_all(master.as_fd(), &[4]);
                    }
                }
            }
        }
    }
}

fn drain(master: &OwnedFd, buf: &mut [u8]) {
    let _ = nix::fcntl::fcntl(
        master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    while let Ok(n) = nix::unistd::read(master, buf) {
        if n == 0 {
            break;
        }
        write_all(std::io::stdout().as_fd(), &buf[..n]);
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) if n > 0 => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            _ => return,
        }
    }
}
