//! Child processes for exec backends: one program per WebSocket connection, its stdin and
//! stdout relayed, the connection described in CGI variables (websocketd's model).
//!
//! * [`Spawn`] starts the program: exec'd directly (no shell), its environment exactly the one
//!   given, one end of a socket pair as its stdin and stdout (inetd's way: a byte stream, or a
//!   packet socket for the seqpacket relay mode) and a pipe as its stderr, the gateway's ends
//!   non-blocking and close-on-exec, no other descriptor of the gateway inherited, in a process
//!   group of its own.
//! * [`Reaper`] owns every started process until it is gone: a fixed table (the process limit),
//!   `SIGTERM` to the group at connection close and `SIGKILL` after a grace period, and
//!   `waitpid(WNOHANG)` only, so the loop never blocks.
//! * [`cgi_env`] builds the variables from the request.
//!
//! This module owns no descriptor of the loop and no timer: the loop calls [`Reaper::reap`]
//! when `SIGCHLD` arrives (through the signalfd, see `sys::signals`) and at
//! [`Reaper::next_deadline`].
//!
//! Why a process group: the program often starts others (a shell script runs its commands as
//! children). `setpgid(0, 0)` at spawn makes the program the leader of a new group whose id is
//! its pid, and every signal goes to the group (`killpg`), so a close reaches what it started
//! too, unless that moved itself to another group or session on purpose (a daemon). The group
//! id stays valid while the leader is a zombie, and the reaper only signals a group whose
//! leader it has not reaped yet, or one it has seen members of after that (see [`Reaper`]).

use std::ffi::OsString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::http::handshake;
use crate::relay::context::Info;

/// A program to start for one connection.
#[derive(Clone, Debug, Default)]
pub struct Spawn {
    /// The program: a path (containing a `/`), never looked up in `PATH`. A relative path is
    /// taken from `dir` when one is given, else from the gateway's working directory.
    pub program: PathBuf,
    /// Its arguments, after `argv[0]` (which is `program`).
    pub args: Vec<OsString>,
    /// The working directory it starts in; the gateway's own when `None`.
    pub dir: Option<PathBuf>,
    /// Its whole environment: nothing of the gateway's is passed on.
    pub env: Vec<(OsString, OsString)>,
    /// Its stdin and stdout are a `SOCK_SEQPACKET` socket (one message per write) rather than
    /// a byte stream.
    pub seqpacket: bool,
}

/// A started program: its pid (also its process group id) and the gateway's ends of its stdio,
/// non-blocking and close-on-exec.
#[derive(Debug)]
pub struct Child {
    /// The process, leader of its own process group.
    pub pid: Pid,
    /// The gateway's end of the socket pair that is the program's stdin and stdout: what is
    /// sent on it, the program reads; what it writes, is received here. `shutdown(SHUT_WR)`
    /// is the end of its input.
    pub io: OwnedFd,
    /// Read end of its stderr.
    pub stderr: OwnedFd,
}

/// Why no program was started.
#[derive(Debug)]
pub enum SpawnError {
    /// The process limit: as many processes as the reaper holds are alive already.
    Limit,
    /// The limit of the caller's group (one endpoint's programs) is reached.
    GroupLimit,
    /// `program` has no `/`: it would be looked up in `PATH`.
    NotAPath,
    /// The program could not be started (not found, not executable, no memory, no
    /// descriptors...): nothing runs.
    Start(std::io::Error),
    /// It started, but its pipes could not be made non-blocking. The process exists: the
    /// caller kills and reaps it ([`Reaper::spawn`] does).
    Setup(Pid, Errno),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Limit => f.write_str("process limit reached"),
            Self::GroupLimit => f.write_str("the endpoint's process limit reached"),
            Self::NotAPath => f.write_str("program is not a path"),
            Self::Start(e) => write!(f, "cannot start: {e}"),
            Self::Setup(pid, e) => write!(f, "pid {pid}: pipes: {}", super::ErrnoText(*e)),
        }
    }
}

impl std::error::Error for SpawnError {}

impl Spawn {
    /// Starts the program (see the module documentation for what it gets).
    ///
    /// Why a socket pair rather than two pipes: it carries the seqpacket mode's boundaries,
    /// and its one gateway end is a socket like every other backend's (one `shutdown` ends the
    /// program's input, `recv` tells its output's end). Programs that read stdin and write
    /// stdout do not tell the difference; inetd has started them this way for decades.
    ///
    /// `std::process::Command` does most of it: `env_clear`, `process_group(0)`, the socket
    /// (made with `SOCK_CLOEXEC`) `dup2`'d onto 0 and 1 and a pipe onto 2, exec errors reported back
    /// through a pipe of its own. [`super::exec_clean`] adds the rest in the child: the signal
    /// mask emptied and every disposition at its default (`Command` passes the gateway's mask
    /// on: TERM, INT, HUP and CHLD blocked), and every descriptor above 2 close-on-exec,
    /// inherited ones included. It allocates (argv, envp, the pipes' handles): this is
    /// connection set-up, not relaying.
    ///
    /// # Errors
    /// [`SpawnError`]; only `Setup` leaves a process behind.
    pub fn spawn(&self) -> Result<Child, SpawnError> {
        if !self.program.as_os_str().as_bytes().contains(&b'/') {
            return Err(SpawnError::NotAPath);
        }
        let (ours, theirs) = if self.seqpacket {
            socket_pair_seqpacket().map_err(SpawnError::Start)?
        } else {
            UnixStream::pair()
                .map(|(a, b)| (OwnedFd::from(a), OwnedFd::from(b)))
                .map_err(SpawnError::Start)?
        };
        let stdin = theirs.try_clone().map_err(SpawnError::Start)?;
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(theirs))
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        super::exec_clean(&mut cmd);
        let mut child = cmd.spawn().map_err(SpawnError::Start)?;
        // `cmd` holds the program's ends of the socket until it is dropped.
        drop(cmd);
        // A Linux pid fits an i32 (pid_max is at most 2^22).
        #[allow(clippy::cast_possible_wrap)]
        let pid = Pid::from_raw(child.id() as i32);
        let Some(stderr) = child.stderr.take() else {
            // It was asked for as a pipe, so `Command` returns it.
            return Err(SpawnError::Setup(pid, Errno::EBADF));
        };
        // Dropping `child` neither kills nor waits: the pid is the reaper's from here.
        drop(child);
        let stderr = OwnedFd::from(stderr);
        for fd in [&ours, &stderr] {
            // The child's ends are other open file descriptions: they stay blocking.
            let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(|e| SpawnError::Setup(pid, e))?;
            let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
            fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| SpawnError::Setup(pid, e))?;
        }
        Ok(Child { pid, io: ours, stderr })
    }
}

/// A connected pair of `SOCK_SEQPACKET` sockets, close-on-exec.
fn socket_pair_seqpacket() -> std::io::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .map_err(std::io::Error::from)
}

/// How a program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(Signal),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exit status {c}"),
            Self::Signal(s) => write!(f, "killed by {s}"),
        }
    }
}

/// The reaper's table is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// One tracked process group.
#[derive(Clone, Copy, Debug)]
enum Slot {
    Free,
    /// Its connection is open. `exit`: the leader ended on its own and was reaped.
    Owned {
        pid: Pid,
        group: u32,
        exit: Option<Exit>,
    },
    /// Its connection closed: `SIGTERM` was sent to the group, `SIGKILL` is due at `kill_at`
    /// (`None` once sent). Freed when the leader is reaped and no member is left, or when the
    /// leader is reaped after `SIGKILL` (which no member survives).
    Closing {
        pid: Pid,
        group: u32,
        kill_at: Option<Instant>,
        exit: Option<Exit>,
    },
}

/// Every child process of the loop, from spawn until it is reaped.
///
/// The capacity is the process limit, fixed at construction: a slot is held from
/// [`spawn`](Self::spawn) (or [`track`](Self::track)) until the program is gone, which can be
/// after its connection closed (a program that ignores `SIGTERM` holds it for the grace
/// period). Every tracked pid must be handed back with [`terminate`](Self::terminate) when its
/// connection closes, even if the program ended first.
///
/// The reaper makes the process a child subreaper (`PR_SET_CHILD_SUBREAPER`, Linux 3.4): what a
/// program leaves behind when it exits (a background job of a script) becomes the gateway's
/// child rather than init's, so the reaper collects it and sees the group empty as soon as it
/// is (with init as the parent, a dead member would count until init got to it).
///
/// [`reap`](Self::reap) waits with `waitpid(-1, WNOHANG)`: the loop's process has no other
/// children while it serves (the init.d scripts run before and after), and one call per exit
/// is cheaper than one per tracked pid. A child it does not know (such a leftover, or a daemon
/// that an init.d script started and left) is reaped all the same, reported to nobody, so no
/// zombie stays.
///
/// On drop, every group whose leader was not reaped gets `SIGKILL`: nothing outlives the
/// gateway's loop.
#[derive(Debug)]
pub struct Reaper {
    slots: Box<[Slot]>,
    live: usize,
}

impl Reaper {
    /// A reaper for at most `capacity` processes at a time (allocated here, never grown). Makes
    /// the process a child subreaper; if the kernel refuses, leftovers go to init as usual and
    /// a closing group may hold its slot until its `SIGKILL`.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let _ = nix::sys::prctl::set_child_subreaper(true);
        Self { slots: vec![Slot::Free; capacity].into_boxed_slice(), live: 0 }
    }

    /// The process limit.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Processes held: started and not yet reaped, or reaped while their connection is open,
    /// or closing with members of their group possibly left. A spawn past
    /// [`capacity`](Self::capacity) is refused.
    #[must_use]
    pub fn live(&self) -> usize {
        self.live
    }

    /// Starts `spec` and tracks it, unless the limit is reached.
    ///
    /// # Errors
    /// [`SpawnError::Limit`] past the limit; any other [`SpawnError`] from the start. A process
    /// that started but could not be set up is killed and tracked until reaped.
    pub fn spawn(&mut self, spec: &Spawn, now: Instant) -> Result<Child, SpawnError> {
        self.spawn_in(spec, now, u32::MAX, usize::MAX)
    }

    /// [`spawn`](Self::spawn) as one of `group` (an endpoint's programs), of which at most
    /// `group_limit` may be held at a time, closing ones included.
    ///
    /// # Errors
    /// [`SpawnError::GroupLimit`] past `group_limit`, else as [`spawn`](Self::spawn).
    pub fn spawn_in(
        &mut self,
        spec: &Spawn,
        now: Instant,
        group: u32,
        group_limit: usize,
    ) -> Result<Child, SpawnError> {
        let Some(free) = self.slots.iter().position(|s| matches!(s, Slot::Free)) else {
            return Err(SpawnError::Limit);
        };
        if self.in_group(group) >= group_limit {
            return Err(SpawnError::GroupLimit);
        }
        match spec.spawn() {
            Ok(child) => {
                self.fill(free, Slot::Owned { pid: child.pid, group, exit: None });
                Ok(child)
            }
            Err(SpawnError::Setup(pid, e)) => {
                self.fill(free, Slot::Owned { pid, group, exit: None });
                self.terminate(pid, now, Duration::ZERO);
                let _ = self.reap(now, |_, _| {});
                Err(SpawnError::Setup(pid, e))
            }
            Err(e) => Err(e),
        }
    }

    /// Tracks `pid`, a process group leader started for a connection.
    ///
    /// # Errors
    /// [`Full`] past the limit (the caller kills it).
    pub fn track(&mut self, pid: Pid) -> Result<(), Full> {
        let free = self.slots.iter().position(|s| matches!(s, Slot::Free)).ok_or(Full)?;
        self.fill(free, Slot::Owned { pid, group: u32::MAX, exit: None });
        Ok(())
    }

    /// Processes of `group` held.
    #[must_use]
    pub fn in_group(&self, group: u32) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(**s, Slot::Owned { group: g, .. } | Slot::Closing { group: g, .. } if g == group))
            .count()
    }

    /// Is `pid` held (running, or reaped while its connection is open, or closing)?
    #[must_use]
    pub fn holds(&self, pid: Pid) -> bool {
        self.find(pid).is_some()
    }

    fn fill(&mut self, index: usize, slot: Slot) {
        if let Some(s) = self.slots.get_mut(index) {
            *s = slot;
            self.live += 1;
        }
    }

    fn free(&mut self, index: usize) {
        if let Some(s) = self.slots.get_mut(index) {
            if !matches!(s, Slot::Free) {
                *s = Slot::Free;
                self.live -= 1;
            }
        }
    }

    /// The connection of `pid` closes: `SIGTERM` to its process group now, `SIGKILL` at
    /// `now + grace` if the group still has members then ([`reap`](Self::reap) sends it).
    ///
    /// Returns how the program ended if it had ended on its own before (for the close log
    /// line); `None` if it was still running or `pid` is not tracked.
    pub fn terminate(&mut self, pid: Pid, now: Instant, grace: Duration) -> Option<Exit> {
        let index = self.find(pid)?;
        let Some(&Slot::Owned { exit, group, .. }) = self.slots.get(index) else { return None };
        let gone = killpg(pid, Signal::SIGTERM) == Err(Errno::ESRCH);
        if gone && exit.is_some() {
            self.free(index);
        } else if let Some(s) = self.slots.get_mut(index) {
            *s = Slot::Closing { pid, group, kill_at: Some(now + grace), exit };
        }
        exit
    }

    fn find(&self, pid: Pid) -> Option<usize> {
        self.slots.iter().position(|s| match *s {
            Slot::Owned { pid: p, .. } | Slot::Closing { pid: p, .. } => p == pid,
            Slot::Free => false,
        })
    }

    /// The earliest `SIGKILL` due, if any: call [`reap`](Self::reap) then.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| match *s {
                Slot::Closing { kill_at, .. } => kill_at,
                _ => None,
            })
            .min()
    }

    /// Collects every child that ended (`waitpid(-1, WNOHANG)` until none is left), then sends
    /// `SIGKILL` to each closing group whose grace period is over. Never blocks. Call it when
    /// `SIGCHLD` arrives and at [`next_deadline`](Self::next_deadline).
    ///
    /// `ended` hears of each tracked leader reaped: its pid and how it ended.
    ///
    /// # Errors
    /// A `waitpid` failure other than "no child" (none is expected); the deadlines are still
    /// handled.
    pub fn reap(&mut self, now: Instant, mut ended: impl FnMut(Pid, Exit)) -> Result<(), Errno> {
        let mut result = Ok(());
        loop {
            let (pid, exit) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, Exit::Signal(sig)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                // Stops and continues are not asked for (no WUNTRACED, no WCONTINUED).
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let Some(index) = self.find(pid) else { continue };
            ended(pid, exit);
            if let Some(Slot::Owned { exit: e, .. } | Slot::Closing { exit: e, .. }) =
                self.slots.get_mut(index)
            {
                *e = Some(exit);
            }
            if matches!(self.slots.get(index), Some(Slot::Closing { kill_at: None, .. })) {
                // SIGKILL went to the group already: nothing is left to wait for.
                self.free(index);
            }
        }
        // A closing group is done when its leader is reaped and no member is left. Members
        // left behind keep the group id in use, so until then it names them and nobody else.
        for index in 0..self.slots.len() {
            if let Some(&Slot::Closing { pid, exit: Some(_), .. }) = self.slots.get(index) {
                if killpg(pid, None) == Err(Errno::ESRCH) {
                    self.free(index);
                }
            }
        }
        for index in 0..self.slots.len() {
            let Some(&Slot::Closing { pid, group, kill_at: Some(at), exit }) =
                self.slots.get(index)
            else {
                continue;
            };
            if at > now {
                continue;
            }
            let _ = killpg(pid, Signal::SIGKILL);
            if exit.is_some() {
                // The leader was reaped: nothing more will be heard of this group, and
                // SIGKILL cannot be ignored.
                self.free(index);
            } else if let Some(s) = self.slots.get_mut(index) {
                *s = Slot::Closing { pid, group, kill_at: None, exit };
            }
        }
        result
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for slot in self.slots.iter() {
            // A leader not reaped keeps its group id from being reused: safe to signal.
            if let Slot::Owned { pid, exit: None, .. } | Slot::Closing { pid, exit: None, .. } =
                *slot
            {
                let _ = killpg(pid, Signal::SIGKILL);
            }
        }
    }
}

/// The CGI variables websocketd gives its programs, for the connection `info` whose request
/// head is `head`:
///
/// `GATEWAY_INTERFACE=CGI/1.1`, `SERVER_SOFTWARE=wsgate/<version>`, `SERVER_PROTOCOL`,
/// `REQUEST_METHOD`, `REMOTE_ADDR`, `REMOTE_HOST` (the address: no reverse lookup),
/// `REMOTE_PORT`, `SERVER_NAME` (the `Host` header without its port), `SERVER_PORT` (the
/// listener's), `REQUEST_URI`, `QUERY_STRING`, `SCRIPT_NAME` (`/<endpoint>`), `PATH_INFO`
/// (what follows `/<endpoint>` in the path, `""` if nothing), `HTTPS` (`on`/`off`),
/// `REMOTE_USER` and `REMOTE_GROUPS` when the request proved a user, `SSL_CLIENT_S_DN` (the
/// subject of the client's certificate) when it sent one, and `HTTP_<NAME>` for each
/// request header (`NAME` uppercased, `-` as `_`; repeated headers joined with `", "`).
///
/// Three kinds of header are left out, as Apache and nginx do: a name with a character other
/// than a letter, digit or `-` (`X_Forwarded_For` would be `HTTP_X_FORWARDED_FOR` too, and
/// could pose as the real one), `Proxy` (`HTTP_PROXY` is the proxy setting of many HTTP
/// clients: "httpoxy"), and `Authorization` (the client's password: the program gets the
/// user it proved in `REMOTE_USER`, never the credential).
///
/// Values come from a head that httparse accepted: no NUL, CR or LF. Allocates: connection
/// set-up.
#[must_use]
pub fn cgi_env(info: &Info<'_>, head: &[u8]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(20 + handshake::MAX_HEADERS);
    let mut set = |name: &str, value: &str| env.push((name.into(), value.into()));
    set("GATEWAY_INTERFACE", "CGI/1.1");
    set("SERVER_SOFTWARE", concat!("wsgate/", env!("CARGO_PKG_VERSION")));
    set("SERVER_PROTOCOL", "HTTP/1.1");
    set("REQUEST_METHOD", "GET");
    let addr = info.peer.ip().to_string();
    set("REMOTE_ADDR", &addr);
    set("REMOTE_HOST", &addr);
    set("REMOTE_PORT", &info.peer.port().to_string());
    set("SERVER_NAME", server_name(info.host));
    set("SERVER_PORT", &info.server_port.to_string());
    if info.query.is_empty() {
        set("REQUEST_URI", info.path);
    } else {
        set("REQUEST_URI", &format!("{}?{}", info.path, info.query));
    }
    set("QUERY_STRING", info.query);
    let (script, path_info) = split_script(info.path, info.endpoint);
    set("SCRIPT_NAME", &script);
    set("PATH_INFO", path_info);
    set("HTTPS", if info.tls { "on" } else { "off" });
    if let Some((user, group)) = info.user {
        set("REMOTE_USER", user);
        set("REMOTE_GROUPS", group);
    }
    if let Some(subject) = info.cert_subject {
        set("SSL_CLIENT_S_DN", subject);
    }
    handshake::for_each_header(head, |name, value| {
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            || name.eq_ignore_ascii_case("proxy")
            || name.eq_ignore_ascii_case("authorization")
        {
            return;
        }
        let mut var = String::with_capacity(5 + name.len());
        var.push_str("HTTP_");
        var.extend(name.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }));
        let var = OsString::from(var);
        if let Some((_, v)) = env.iter_mut().find(|(n, _)| *n == var) {
            v.push(", ");
            v.push(std::ffi::OsStr::from_bytes(value));
        } else {
            env.push((var, std::ffi::OsStr::from_bytes(value).to_owned()));
        }
    });
    env
}

/// The `Host` header without its port: `router.lan:8080` → `router.lan`, `[::1]:8080` →
/// `[::1]` (CGI keeps the brackets of an IPv6 literal).
fn server_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').and_then(|end| host.get(..=end)).unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// `SCRIPT_NAME` and `PATH_INFO`: `/<endpoint>`, and the rest of `path` after it when the path
/// is under it (`/chat/room/1` under `chat` → `/room/1`), else `""` (a path the router mapped
/// to another name).
fn split_script<'p>(path: &'p str, endpoint: &str) -> (String, &'p str) {
    let script = format!("/{}", endpoint.trim_start_matches('/'));
    let rest = path.strip_prefix(script.as_str()).filter(|r| r.is_empty() || r.starts_with('/'));
    (script, rest.unwrap_or(""))
}

#[cfg(test)]
mod tests;
