//! The shim's event loop: creates the container, then polls the socket, the clients,
//! the container's (and execs') stdio and a signalfd until a `delete` ends it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{send, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Process;
use polis_runtime::container;
use polis_runtime::process::{self, CreateOptions, ExecOptions};
use polis_runtime::state::Root;

use crate::daemon::{Options, Ready, EXIT_FILE, PID_FILE, SOCKET};
use crate::error::{Error, Result};
use crate::logfile::{LogFile, Stream};
use crate::protocol::{self, ContainerState, ExitStatus, Request, Response};

/// Read size for any stream.
const CHUNK: usize = 64 * 1024;
/// Stop reading a client's input while this much waits for the process's stdin.
const INPUT_HIGH_WATER: usize = 256 * 1024;
/// A client that lets this much output pile up is dropped.
const OUTPUT_LIMIT: usize = 16 * 1024 * 1024;

/// Write the report line and close the pipe.
pub(crate) fn send_report(fd: OwnedFd, ready: &Ready) {
    let mut line = serde_json::to_vec(ready).unwrap_or_default();
    line.push(b'\n');
    let _ = std::fs::File::from(fd).write_all(&line);
}

/// Run the shim; returns the process's exit code.
pub(crate) fn serve(opts: &Options, report: OwnedFd) -> i32 {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut shim = match Shim::new(opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("polis shim {}: {e}", opts.id);
            let _ = std::fs::remove_file(opts.state_dir.join(SOCKET));
            send_report(
                report,
                &Ready {
                    error: Some(e.to_string()),
                    ..Ready::default()
                },
            );
            return 1;
        }
    };
    let _ = std::fs::write(
        opts.state_dir.join(PID_FILE),
        std::process::id().to_string(),
    );
    send_report(
        report,
        &Ready {
            ready: true,
            shim_pid: std::process::id() as i32,
            pid: shim.init_pid,
            error: None,
        },
    );
    shim.run();
    0
}

/// The stdio of the container or of one exec, seen from the shim.
#[derive(Default)]
struct Stdio {
    /// Write end of the process's stdin (or the pty master).
    input: Option<OwnedFd>,
    input_pending: Vec<u8>,
    /// Close `input` once `input_pending` is written.
    close_input: bool,
    /// Read end of stdout (or the pty master).
    out: Option<OwnedFd>,
    err: Option<OwnedFd>,
    /// The pty master, for resizing.
    pty: Option<OwnedFd>,
}

/// The descriptors a new process gets as its 0, 1 and 2.
struct ChildStdio {
    fds: [OwnedFd; 3],
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Owner {
    Container,
    Exec(i32),
}

#[derive(Clone, Copy, Debug)]
enum Token {
    Signals,
    Listener,
    Out(Owner, Stream),
    In(Owner),
    Conn(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Requests,
    Waiting,
    /// Waiting for the container to be gone, then deleted.
    Deleting,
    Attached {
        stdin: bool,
        stdout: bool,
        stderr: bool,
        stdin_once: bool,
    },
    Exec {
        pid: i32,
    },
}

struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    mode: Mode,
    read_closed: bool,
    close_when_flushed: bool,
    dead: bool,
}

struct ExecSession {
    io: Stdio,
    tty: bool,
    conn: Option<u64>,
}

struct Shim {
    id: String,
    root: Root,
    state_dir: PathBuf,
    listener: UnixListener,
    signals: SignalFd,
    /// The mask the shim runs with; lifted while the runtime forks processes.
    blocked: SigSet,
    /// What 0, 1 and 2 point at between forks: /dev/null and the shim's log.
    own_stdio: ChildStdio,
    init_pid: i32,
    tty: bool,
    io: Stdio,
    log: Option<LogFile>,
    exit: Option<ExitStatus>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    execs: HashMap<i32, ExecSession>,
    quit: bool,
}

impl Shim {
    fn new(opts: &Options) -> Result<Shim> {
        let mut blocked = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGPIPE,
            Signal::SIGHUP,
            Signal::SIGTERM,
            Signal::SIGINT,
        ] {
            blocked.add(s);
        }
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None)
            .map_err(|e| Error::sys("block signals", e))?;
        // Blocked now, read from the signalfd. What the container inherits must be the
        // defaults, not Rust's ignored SIGPIPE nor whatever our caller ignored.
        for sig in Signal::iterator() {
            if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
                // SAFETY: installs the default disposition; no handler code is involved.
                let _ =
                    unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
            }
        }
        let signals =
            SignalFd::with_flags(&blocked, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
                .map_err(|e| Error::sys("signalfd", e))?;

        let sock = opts.state_dir.join(SOCKET);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).map_err(|e| Error::io("bind", &sock, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("set non-blocking", &sock, e))?;
        let log = match &opts.log {
            Some(l) => Some(LogFile::open(l.clone())?),
            None => None,
        };
        let own_stdio = ChildStdio {
            fds: [
                dup_cloexec(std::io::stdin().as_fd())?,
                dup_cloexec(std::io::stdout().as_fd())?,
                dup_cloexec(std::io::stderr().as_fd())?,
            ],
        };
        let mut shim = Shim {
            id: opts.id.clone(),
            root: Root::new(&opts.runtime_root),
            state_dir: opts.state_dir.clone(),
            listener,
            signals,
            blocked,
            own_stdio,
            init_pid: 0,
            tty: false,
            io: Stdio::default(),
            log,
            exit: None,
            conns: HashMap::new(),
            next_conn: 0,
            execs: HashMap::new(),
            quit: false,
        };
        shim.create(opts)?;
        if opts.start {
            if let Err(e) = container::start(&shim.root, &shim.id) {
                let _ = container::delete(&shim.root, &shim.id, true);
                return Err(e.into());
            }
        }
        Ok(shim)
    }

    fn create(&mut self, opts: &Options) -> Result<()> {
        let bundle = polis_runtime::spec::Bundle::load(&opts.bundle)?;
        self.tty = bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let (child, io) = self.new_stdio(self.tty, opts.stdin)?;
        let create = CreateOptions {
            id: opts.id.clone(),
            bundle: opts.bundle.clone(),
            keep_pty: self.tty,
            ..CreateOptions::default()
        };
        let root = self.root.clone();
        let started = self.with_stdio(&child, || process::create(&root, &create))?;
        drop(child);
        self.init_pid = started.pid;
        self.io = io;
        if let Some(master) = started.pty_master {
            self.attach_pty(master, Owner::Container)?;
        }
        Ok(())
    }

    /// Pipes for a new process (or /dev/null where a pty will take over).
    fn new_stdio(&self, tty: bool, stdin: bool) -> Result<(ChildStdio, Stdio)> {
        let null = || -> Result<OwnedFd> {
            Ok(std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| Error::io("open", "/dev/null", e))?
                .into())
        };
        let mut io = Stdio::default();
        if tty {
            return Ok((
                ChildStdio {
                    fds: [null()?, null()?, null()?],
                },
                io,
            ));
        }
        let child_in = if stdin {
            let (r, w) = pipe()?;
            set_nonblocking(&w)?;
            io.input = Some(w);
            r
        } else {
            null()?
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        set_nonblocking(&out_r)?;
        set_nonblocking(&err_r)?;
        io.out = Some(out_r);
        io.err = Some(err_r);
        Ok((
            ChildStdio {
                fds: [child_in, out_w, err_w],
            },
            io,
        ))
    }

    fn attach_pty(&mut self, master: OwnedFd, owner: Owner) -> Result<()> {
        set_nonblocking(&master)?;
        let input = master
            .try_clone()
            .map_err(|e| Error::io("dup", "pty master", e))?;
        let resize = master
            .try_clone()
            .map_err(|e| Error::io("dup", "pty master", e))?;
        let io = match owner {
            Owner::Container => &mut self.io,
            Owner::Exec(pid) => match self.execs.get_mut(&pid) {
                Some(s) => &mut s.io,
                None => return Ok(()),
            },
        };
        io.out = Some(master);
        io.input = Some(input);
        io.pty = Some(resize);
        Ok(())
    }

    /// Run `f` (which forks a container process) with `child` as our 0, 1 and 2 and
    /// no signals blocked, since the new process inherits both.
    fn with_stdio<T>(
        &mut self,
        child: &ChildStdio,
        f: impl FnOnce() -> polis_runtime::Result<T>,
    ) -> Result<T> {
        // A pending SIGPIPE would kill us once unblocked: take it off the signalfd.
        while let Ok(Some(_)) = self.signals.read_signal() {}
        let set = |fds: &[OwnedFd; 3]| -> Result<()> {
            nix::unistd::dup2_stdin(&fds[0]).map_err(|e| Error::sys("dup2 stdin", e))?;
            nix::unistd::dup2_stdout(&fds[1]).map_err(|e| Error::sys("dup2 stdout", e))?;
            nix::unistd::dup2_stderr(&fds[2]).map_err(|e| Error::sys("dup2 stderr", e))
        };
        set(&child.fds)?;
        let _ =
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
        let result = f();
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.blocked), None);
        set(&self.own_stdio.fds)?;
        Ok(result?)
    }

    fn run(&mut self) {
        // Children that ended while signals were unblocked sent a SIGCHLD nobody saw.
        self.reap();
        while !self.quit {
            let ready = {
                let watched = self.watched();
                let mut fds: Vec<PollFd> = watched
                    .iter()
                    .map(|(_, fd, ev)| PollFd::new(*fd, *ev))
                    .collect();
                match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("polis shim {}: poll: {e}", self.id);
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    }
                }
                let ready: Vec<(Token, PollFlags)> = watched
                    .iter()
                    .zip(fds.iter())
                    .filter_map(|((tok, _, _), fd)| {
                        fd.revents().filter(|r| !r.is_empty()).map(|r| (*tok, r))
                    })
                    .collect();
                ready
            };
            for (token, events) in ready {
                self.handle(token, events);
            }
            self.collect_conns();
        }
    }

    /// Every descriptor to poll, with what to wait for.
    fn watched(&self) -> Vec<(Token, BorrowedFd<'_>, PollFlags)> {
        let mut v = vec![
            (Token::Signals, self.signals.as_fd(), PollFlags::POLLIN),
            (Token::Listener, self.listener.as_fd(), PollFlags::POLLIN),
        ];
        push_io(&mut v, Owner::Container, &self.io);
        for (pid, s) in &self.execs {
            push_io(&mut v, Owner::Exec(*pid), &s.io);
        }
        for (id, c) in &self.conns {
            let mut ev = PollFlags::empty();
            if !c.read_closed && self.accepts_input(c) {
                ev |= PollFlags::POLLIN;
            }
            if !c.outbuf.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            v.push((Token::Conn(*id), c.stream.as_fd(), ev));
        }
        v
    }

    /// Whether a client's bytes can be taken now (its process's stdin is not backed up).
    fn accepts_input(&self, c: &Conn) -> bool {
        match c.mode {
            Mode::Attached { .. } => self.io.input_pending.len() < INPUT_HIGH_WATER,
            Mode::Exec { pid } => self
                .execs
                .get(&pid)
                .is_none_or(|s| s.io.input_pending.len() < INPUT_HIGH_WATER),
            _ => true,
        }
    }

    fn handle(&mut self, token: Token, events: PollFlags) {
        match token {
            Token::Signals => {
                while let Ok(Some(_)) = self.signals.read_signal() {}
                self.reap();
            }
            Token::Listener => self.accept(),
            Token::Out(owner, stream) => {
                self.read_output(owner, stream);
            }
            Token::In(owner) => {
                if let Some(io) = self.stdio_mut(owner) {
                    flush_input(io);
                }
            }
            Token::Conn(id) => self.conn_event(id, events),
        }
    }

    fn stdio_mut(&mut self, owner: Owner) -> Option<&mut Stdio> {
        match owner {
            Owner::Container => Some(&mut self.io),
            Owner::Exec(pid) => self.execs.get_mut(&pid).map(|s| &mut s.io),
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let id = self.next_conn;
                    self.next_conn += 1;
                    self.conns.insert(
                        id,
                        Conn {
                            stream,
                            inbuf: Vec::new(),
                            outbuf: Vec::new(),
                            mode: Mode::Requests,
                            read_closed: false,
                            close_when_flushed: false,
                            dead: false,
                        },
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    eprintln!("polis shim {}: accept: {e}", self.id);
                    return;
                }
            }
        }
    }

    /// Read what a process wrote and pass it on; false once the stream has ended.
    fn read_output(&mut self, owner: Owner, stream: Stream) -> bool {
        let mut buf = vec![0u8; CHUNK];
        let Some(io) = self.stdio_mut(owner) else {
            return false;
        };
        let slot = match stream {
            Stream::Stdout => &mut io.out,
            Stream::Stderr => &mut io.err,
        };
        let Some(fd) = slot.as_ref() else {
            return false;
        };
        let n = match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(Errno::EIO) => {
                // End of output (EIO: the pty's last slave is closed).
                *slot = None;
                return false;
            }
            Ok(n) => n,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return false,
            Err(e) => {
                *slot = None;
                eprintln!("polis shim: read output: {e}");
                return false;
            }
        };
        let data = &buf[..n];
        match owner {
            Owner::Container => {
                if let Some(log) = &mut self.log {
                    if let Err(e) = log.write(stream, data) {
                        eprintln!("polis shim {}: log: {e}", self.id);
                    }
                }
                let tty = self.tty;
                let mut framed = None;
                let targets: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| match c.mode {
                        Mode::Attached { stdout, stderr, .. } => match stream {
                            Stream::Stdout => stdout,
                            Stream::Stderr => stderr,
                        },
                        _ => false,
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in targets {
                    if tty {
                        self.send(id, data);
                    } else {
                        let bytes =
                            framed.get_or_insert_with(|| frame(stream_number(stream), data));
                        let bytes = bytes.clone();
                        self.send(id, &bytes);
                    }
                }
            }
            Owner::Exec(pid) => {
                let Some(s) = self.execs.get(&pid) else {
                    return true;
                };
                let number = if s.tty {
                    protocol::STDOUT
                } else {
                    stream_number(stream)
                };
                if let Some(id) = s.conn {
                    self.send(id, &frame(number, data));
                }
            }
        }
        true
    }

    /// Read everything a process has written so far (it has exited).
    fn drain_output(&mut self, owner: Owner) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            while self.read_output(owner, stream) {}
        }
    }

    fn conn_event(&mut self, id: u64, events: PollFlags) {
        if events.contains(PollFlags::POLLOUT) {
            self.flush_conn(id);
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.read_closed {
            if events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                c.dead = true;
            }
            return;
        }
        if !events.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            return;
        }
        let mut buf = vec![0u8; CHUNK];
        match c.stream.read(&mut buf) {
            Ok(0) => {
                c.read_closed = true;
                self.input_ended(id);
            }
            Ok(n) => {
                c.inbuf.extend_from_slice(&buf[..n]);
                self.process_input(id);
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => c.dead = true,
        }
    }

    /// The client shut down its side: end the stdin it fed, or drop it.
    fn input_ended(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match c.mode {
            Mode::Attached {
                stdin: true,
                stdin_once: true,
                ..
            } => {
                self.io.close_input = true;
                flush_input(&mut self.io);
            }
            Mode::Attached { .. } => {}
            Mode::Exec { pid } => {
                if let Some(s) = self.execs.get_mut(&pid) {
                    if !s.tty {
                        s.io.close_input = true;
                        flush_input(&mut s.io);
                    }
                }
            }
            Mode::Requests | Mode::Waiting => c.dead = true,
            Mode::Deleting => {}
        }
    }

    /// Handle what a client sent: requests, or bytes for a process's stdin.
    fn process_input(&mut self, id: u64) {
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            match c.mode {
                Mode::Requests => {
                    let Some(nl) = c.inbuf.iter().position(|&b| b == b'\n') else {
                        if c.inbuf.len() > 1024 * 1024 {
                            c.dead = true;
                        }
                        return;
                    };
                    let line: Vec<u8> = c.inbuf.drain(..=nl).collect();
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let response = match serde_json::from_slice::<Request>(&line) {
                        Ok(req) => self.request(id, req),
                        Err(e) => Some(Response::error(format!("bad request: {e}"))),
                    };
                    if let Some(r) = response {
                        self.send(id, &r.to_line());
                    }
                }
                Mode::Waiting | Mode::Deleting => return,
                Mode::Attached { stdin, .. } => {
                    let data = std::mem::take(&mut c.inbuf);
                    if stdin && !self.io.close_input && self.io.input.is_some() {
                        self.io.input_pending.extend_from_slice(&data);
                        flush_input(&mut self.io);
                    }
                    return;
                }
                Mode::Exec { pid } => {
                    let data = std::mem::take(&mut c.inbuf);
                    if let Some(s) = self.execs.get_mut(&pid) {
                        if s.io.input.is_some() && !s.io.close_input {
                            s.io.input_pending.extend_from_slice(&data);
                            flush_input(&mut s.io);
                        }
                    }
                    return;
                }
            }
        }
    }

    /// Carry out one request; None when the reply comes later.
    fn request(&mut self, conn: u64, req: Request) -> Option<Response> {
        let result: Result<Option<Response>> = match req {
            Request::State => self.state().map(Some),
            Request::Start => self.running_only("start").and_then(|()| {
                container::start(&self.root, &self.id)?;
                Ok(Some(Response::ok()))
            }),
            Request::Kill { signal, all } => self.running_only("kill").and_then(|()| {
                container::kill(&self.root, &self.id, signal.number()?, all)?;
                Ok(Some(Response::ok()))
            }),
            Request::Pause => self.running_only("pause").and_then(|()| {
                container::pause(&self.root, &self.id)?;
                Ok(Some(Response::ok()))
            }),
            Request::Resume => self.running_only("resume").and_then(|()| {
                container::resume(&self.root, &self.id)?;
                Ok(Some(Response::ok()))
            }),
            Request::Wait => match &self.exit {
                Some(exit) => Ok(Some(Response {
                    exit: Some(exit.clone()),
                    ..Response::ok()
                })),
                None => {
                    self.set_mode(conn, Mode::Waiting);
                    Ok(None)
                }
            },
            Request::Resize {
                height,
                width,
                exec,
            } => self.resize(height, width, exec).map(Some),
            Request::Attach {
                stdin,
                stdout,
                stderr,
                stdin_once,
            } => self.running_only("attach").map(|()| {
                self.set_mode(
                    conn,
                    Mode::Attached {
                        stdin,
                        stdout,
                        stderr,
                        stdin_once,
                    },
                );
                Some(Response {
                    tty: Some(self.tty),
                    ..Response::ok()
                })
            }),
            Request::Exec {
                process,
                tty,
                stdin,
            } => self.exec(conn, *process, tty, stdin).map(Some),
            Request::Delete { force } => self.delete(conn, force),
        };
        result.unwrap_or_else(|e| Some(Response::error(e.to_string())))
    }

    fn running_only(&self, what: &str) -> Result<()> {
        match &self.exit {
            Some(_) => Err(Error::Refused(format!(
                "container {} has exited: cannot {what} it",
                self.id
            ))),
            None => Ok(()),
        }
    }

    fn set_mode(&mut self, conn: u64, mode: Mode) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.mode = mode;
        }
    }

    fn state(&self) -> Result<Response> {
        let status = match &self.exit {
            Some(_) => "stopped".to_string(),
            None => container::state(&self.root, &self.id)?.status.to_string(),
        };
        Ok(Response {
            state: Some(ContainerState {
                id: self.id.clone(),
                pid: self.init_pid,
                status,
                exit: self.exit.clone(),
            }),
            ..Response::ok()
        })
    }

    fn resize(&self, height: u16, width: u16, exec: Option<i32>) -> Result<Response> {
        let pty = match exec {
            None => self.io.pty.as_ref(),
            Some(pid) => self.execs.get(&pid).and_then(|s| s.io.pty.as_ref()),
        }
        .ok_or_else(|| Error::Refused("resize: the process has no terminal".into()))?;
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the whole call.
        let ret = unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        if ret != 0 {
            return Err(Error::sys("resize pty (TIOCSWINSZ)", Errno::last()));
        }
        Ok(Response::ok())
    }

    fn exec(
        &mut self,
        conn: u64,
        mut process: Process,
        tty: bool,
        stdin: bool,
    ) -> Result<Response> {
        self.running_only("exec in")?;
        process.set_terminal(Some(tty));
        let (child, io) = self.new_stdio(tty, stdin)?;
        let opts = ExecOptions {
            keep_pty: tty,
            ..ExecOptions::default()
        };
        let (root, id) = (self.root.clone(), self.id.clone());
        let started = self.with_stdio(&child, || process::exec(&root, &id, &process, &opts))?;
        drop(child);
        let pid = started.pid;
        self.execs.insert(
            pid,
            ExecSession {
                io,
                tty,
                conn: Some(conn),
            },
        );
        if let Some(master) = started.pty_master {
            self.attach_pty(master, Owner::Exec(pid))?;
        }
        self.set_mode(conn, Mode::Exec { pid });
        // Its SIGCHLD may have come while signals were unblocked.
        self.reap();
        Ok(Response {
            pid: Some(pid),
            tty: Some(tty),
            ..Response::ok()
        })
    }

    fn delete(&mut self, conn: u64, force: bool) -> Result<Option<Response>> {
        if self.exit.is_none() {
            let status = container::state(&self.root, &self.id)?.status;
            if !force && status != polis_runtime::state::Status::Created {
                return Err(Error::Refused(format!(
                    "container {} is {status}: stop it first or force the delete",
                    self.id
                )));
            }
            let _ = container::kill(&self.root, &self.id, libc::SIGKILL, true);
            let _ = nix::sys::signal::kill(Pid::from_raw(self.init_pid), Signal::SIGKILL);
            self.set_mode(conn, Mode::Deleting);
            return Ok(None);
        }
        container::delete(&self.root, &self.id, true)?;
        self.quit = true;
        Ok(Some(Response::ok()))
    }

    fn reap(&mut self) {
        loop {
            let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), (code, None)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    (pid.as_raw(), (128 + sig as i32, Some(sig as i32)))
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("polis shim {}: waitpid: {e}", self.id);
                    return;
                }
            };
            let exit = ExitStatus {
                exit_code: status.0,
                signal: status.1,
                finished_at: polis_runtime::state::now_rfc3339(),
                oom_killed: false,
            };
            if pid == self.init_pid && self.exit.is_none() {
                self.container_exited(exit);
            } else if self.execs.contains_key(&pid) {
                self.exec_exited(pid, exit);
            }
        }
    }

    fn container_exited(&mut self, mut exit: ExitStatus) {
        // Read before the cgroup goes with the runtime container.
        exit.oom_killed = self
            .root
            .load(&self.id)
            .and_then(|r| r.cgroup.oom_kills())
            .is_ok_and(|n| n > 0);
        self.drain_output(Owner::Container);
        if let Some(log) = &mut self.log {
            if let Err(e) = log.flush_partial() {
                eprintln!("polis shim {}: log: {e}", self.id);
            }
        }
        // Durable before anyone hears of it.
        if let Err(e) = write_durably(&self.state_dir.join(EXIT_FILE), &exit) {
            eprintln!("polis shim {}: {e}", self.id);
        }
        self.exit = Some(exit.clone());
        self.io.input = None;
        self.io.input_pending.clear();
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            match c.mode {
                Mode::Waiting => {
                    c.mode = Mode::Requests;
                    let reply = Response {
                        exit: Some(exit.clone()),
                        ..Response::ok()
                    };
                    self.send(id, &reply.to_line());
                    self.process_input(id);
                }
                Mode::Attached { .. } => c.close_when_flushed = true,
                Mode::Deleting => {
                    c.mode = Mode::Requests;
                    let reply = match self.delete(id, true) {
                        Ok(r) => r.unwrap_or_else(Response::ok),
                        Err(e) => Response::error(e.to_string()),
                    };
                    self.send(id, &reply.to_line());
                }
                _ => {}
            }
        }
    }

    fn exec_exited(&mut self, pid: i32, exit: ExitStatus) {
        self.drain_output(Owner::Exec(pid));
        let Some(session) = self.execs.remove(&pid) else {
            return;
        };
        if let Some(id) = session.conn {
            let json = serde_json::to_vec(&exit).unwrap_or_default();
            self.send(id, &frame(protocol::EXIT, &json));
            if let Some(c) = self.conns.get_mut(&id) {
                c.close_when_flushed = true;
            }
        }
    }

    /// Queue bytes for a client and write what can be written now.
    fn send(&mut self, id: u64, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.dead {
            return;
        }
        c.outbuf.extend_from_slice(data);
        if c.outbuf.len() > OUTPUT_LIMIT {
            eprintln!("polis shim {}: client too slow, dropped", self.id);
            c.dead = true;
            return;
        }
        self.flush_conn(id);
    }

    fn flush_conn(&mut self, id: u64) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        while !c.outbuf.is_empty() {
            match send(
                c.stream.as_raw_fd(),
                &c.outbuf,
                MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(n) => {
                    c.outbuf.drain(..n);
                }
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => {}
                Err(_) => {
                    c.dead = true;
                    c.outbuf.clear();
                    return;
                }
            }
        }
    }

    /// Forget clients that are gone or done; on quit, say goodbye properly.
    fn collect_conns(&mut self) {
        let done: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, c)| c.dead || (c.close_when_flushed && c.outbuf.is_empty()))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(c) = self.conns.remove(&id) {
                if let Mode::Exec { pid } = c.mode {
                    if let Some(s) = self.execs.get_mut(&pid) {
                        s.conn = None;
                    }
                }
            }
        }
        if self.quit {
            for c in self.conns.values_mut() {
                let _ = c.stream.set_nonblocking(false);
                let _ = c.stream.write_all(&c.outbuf);
            }
            self.conns.clear();
            let _ = std::fs::remove_file(self.state_dir.join(SOCKET));
            let _ = std::fs::remove_file(self.state_dir.join(PID_FILE));
        }
    }
}

fn push_io<'a>(v: &mut Vec<(Token, BorrowedFd<'a>, PollFlags)>, owner: Owner, io: &'a Stdio) {
    if let Some(fd) = &io.out {
        v.push((
            Token::Out(owner, Stream::Stdout),
            fd.as_fd(),
            PollFlags::POLLIN,
        ));
    }
    if let Some(fd) = &io.err {
        v.push((
            Token::Out(owner, Stream::Stderr),
            fd.as_fd(),
            PollFlags::POLLIN,
        ));
    }
    if let Some(fd) = &io.input {
        if !io.input_pending.is_empty() {
            v.push((Token::In(owner), fd.as_fd(), PollFlags::POLLOUT));
        }
    }
}

/// Write pending stdin bytes; close stdin when asked to and all is written.
fn flush_input(io: &mut Stdio) {
    while let (Some(fd), false) = (&io.input, io.input_pending.is_empty()) {
        match nix::unistd::write(fd, &io.input_pending) {
            Ok(n) => {
                io.input_pending.drain(..n);
            }
            Err(Errno::EAGAIN) => return,
            Err(Errno::EINTR) => {}
            Err(_) => {
                // The reader is gone (EPIPE): nothing more can be delivered.
                io.input = None;
                io.input_pending.clear();
            }
        }
    }
    if io.close_input && io.input_pending.is_empty() {
        io.input = None;
    }
}

fn stream_number(stream: Stream) -> u8 {
    match stream {
        Stream::Stdout => protocol::STDOUT,
        Stream::Stderr => protocol::STDERR,
    }
}

fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&protocol::frame_header(stream, data.len()));
    v.extend_from_slice(data);
    v
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::sys("pipe", e))
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::sys("fcntl F_GETFL", e))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| Error::sys("fcntl F_SETFL", e))?;
    Ok(())
}

fn dup_cloexec(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    fd.try_clone_to_owned()
        .map_err(|e| Error::io("dup", format!("fd {}", fd.as_raw_fd()), e))
}

/// Write `value` as JSON so that a crash leaves either the old file or the new one.
fn write_durably(path: &Path, value: &ExitStatus) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let data = serde_json::to_vec(value).map_err(|e| Error::Protocol(e.to_string()))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(&data)
        .map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
