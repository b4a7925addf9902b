//! The channel between the runtime and the processes it forks: a SOCK_SEQPACKET
//! socketpair carrying one JSON message per packet, with file descriptors attached
//! where a message hands one over (a pty master, a seccomp listener).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What the stages tell each other while a container is being set up.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Parent to child: the child is in its cgroup and may go on.
    Go,
    /// Child to parent: write my uid/gid maps (I have just unshared the user namespace).
    MapIds,
    /// Parent to child: done.
    Ack,
    /// First child to parent: the container's init has this pid (as the parent sees it).
    InitPid(i32),
    /// Init to parent: mounts are done, run prestart and createRuntime hooks now.
    RunCreateRuntimeHooks,
    /// Init to parent: here is the pty master (attached); pass it to the console socket.
    ConsoleMaster { slave: String },
    /// Init to parent: here is the seccomp notify listener (attached).
    SeccompListener,
    /// Init to parent: all set; waiting for `start`.
    Ready,
    /// Any stage to parent: setup failed.
    Failed(String),
}

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

const MAX_MESSAGE: usize = 64 * 1024;

/// A connected pair: (parent end, child end). Both are close-on-exec.
pub fn channel_pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair", e))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Message) -> Result<()> {
        self.send_with_fd(msg, None)
    }

    pub fn send_with_fd(&self, msg: &Message, fd: Option<RawFd>) -> Result<()> {
        let payload = serde_json::to_vec(msg)
            .map_err(|e| Error::Init(format!("encode sync message: {e}")))?;
        let iov = [IoSlice::new(&payload)];
        let fds;
        let cmsgs: Vec<ControlMessage> = match fd {
            Some(fd) => {
                fds = [fd];
                vec![ControlMessage::ScmRights(&fds)]
            }
            None => Vec::new(),
        };
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)
            .map_err(|e| Error::sys("send on sync socket", e))?;
        Ok(())
    }

    /// Receive one message; `Ok(None)` when the other side closed without a word.
    pub fn recv(&self) -> Result<Option<(Message, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut cmsg_space = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fd = None;
                    for c in msg
                        .cmsgs()
                        .map_err(|e| Error::sys("read control message", e))?
                    {
                        if let ControlMessageOwned::ScmRights(fds) = c {
                            for raw in fds {
                                // SAFETY: the kernel just installed this descriptor in our
                                // table for us; nothing else owns it.
                                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                                fd.get_or_insert(owned);
                            }
                        }
                    }
                    break (msg.bytes, fd);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(Error::sys("receive on sync socket", e)),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..len])
            .map_err(|e| Error::Init(format!("decode sync message: {e}")))?;
        Ok(Some((msg, fd)))
    }

    /// Wait for exactly `expected`; a `Failed` or anything else is an error.
    pub fn expect(&self, expected: Message) -> Result<()> {
        match self.recv()? {
            Some((Message::Failed(why), _)) => Err(Error::Reported(why)),
            Some((m, _)) if m == expected => Ok(()),
            Some((m, _)) => Err(Error::Init(format!(
                "unexpected sync message {m:?} while waiting for {expected:?}"
            ))),
            None => Err(Error::Init(format!(
                "peer exited while waiting for {expected:?}"
            ))),
        }
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
