//! The container's terminal: a pty made inside the container's devpts, its slave as the
//! process's stdio and /dev/console, its master handed to whoever asked for it over
//! the console socket (runc's protocol: the pty name as the message, the fd attached).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use crate::error::{Error, Result};

/// A pty pair: the master, and the slave's path inside the container.
pub struct Pty {
    pub master: OwnedFd,
    pub slave_path: String,
}

/// Open a new pty from the container's /dev/ptmx and size it.
pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| Error::sys("open /dev/ptmx", e))?;
    nix::pty::grantpt(&master).map_err(|e| Error::sys("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| Error::sys("unlockpt", e))?;
    let slave_path = nix::pty::ptsname_r(&master).map_err(|e| Error::sys("ptsname", e))?;
    if let Some((height, width)) = size {
        set_size(master.as_raw_fd(), height, width)?;
    }
    let fd: OwnedFd = master.into();
    Ok(Pty {
        master: fd,
        slave_path,
    })
}

pub fn set_size(fd: RawFd, height: u16, width: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the call.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
    if ret != 0 {
        return Err(Error::sys("set terminal size", nix::errno::Errno::last()));
    }
    Ok(())
}

/// Make the pty slave the calling process's controlling terminal and stdio, and bind it
/// on /dev/console. The caller has already called setsid().
pub fn become_terminal(pty: &Pty) -> Result<()> {
    let console = Path::new("/dev/console");
    if !console.exists() {
        std::fs::File::create(console).map_err(|e| Error::io("create", console, e))?;
    }
    nix::mount::mount(
        Some(pty.slave_path.as_str()),
        console,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::sys(format!("bind {} on /dev/console", pty.slave_path), e))?;
    attach_stdio(&pty.slave_path)
}

/// Open the slave as stdio and controlling terminal (no /dev/console: used by exec).
pub fn attach_stdio(slave_path: &str) -> Result<()> {
    let slave = nix::fcntl::open(
        slave_path,
        OFlag::O_RDWR | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {slave_path}"), e))?;
    // SAFETY: TIOCSCTTY takes an integer argument; `slave` is an open tty.
    let ret = unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret != 0 {
        return Err(Error::sys(
            "make the pty the controlling terminal",
            nix::errno::Errno::last(),
        ));
    }
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which we mean to replace.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(Error::sys("dup2 pty slave", nix::errno::Errno::last()));
        }
    }
    Ok(())
}

/// Where a new pty master goes: to the console socket if there is one (and closed
/// here), else back to the caller, which serves the terminal itself.
pub fn deliver(
    master: Option<OwnedFd>,
    slave: &str,
    socket: Option<&Path>,
) -> Result<Option<OwnedFd>> {
    let master = master.ok_or_else(|| Error::Init("pty master missing".into()))?;
    match socket {
        Some(sock) => send_to_socket(sock, &master, slave).map(|()| None),
        None => Ok(Some(master)),
    }
}

/// Send the master to the console socket.
pub fn send_to_socket(socket: &Path, master: &OwnedFd, slave_path: &str) -> Result<()> {
    let stream =
        UnixStream::connect(socket).map_err(|e| Error::io("connect console socket", socket, e))?;
    let fds = [master.as_raw_fd()];
    let iov = [IoSlice::new(slave_path.as_bytes())];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| Error::sys(format!("send pty master to {}", socket.display()), e))?;
    Ok(())
}
