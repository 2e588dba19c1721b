//! The router service around the event loop: init.d scripts, the privilege drop, the pid file,
//! and the process model that lets `stop` scripts run as root after the gateway dropped root.
//!
//! # Order of start-up
//!
//! 1. The log sinks are opened ([`open_logs`]: log file, syslog socket) and the user is looked
//!    up ([`Service::prepare`]), as root, before anything starts.
//! 2. The init.d scripts run with `start`, in name order, as root, so that they can start
//!    backends as other users ([`run_scripts`]). Each may take [`SCRIPT_TIMEOUT`]; one that
//!    fails or times out is logged as a warning with its status, and start-up goes on (as in
//!    ouistiti); a timed-out script is killed with its process group (each script gets its
//!    own). Their stdout and stderr are the log file, or wsgate's stderr, handed over as is:
//!    wsgate waits for the script to exit, never for the end of its output, so a daemon that
//!    keeps them open neither blocks start-up nor dies of SIGPIPE later.
//! 3. Every listener is bound and every docroot opened ([`Server::bind`]); the pid file is
//!    written. A failure here runs the `stop` scripts and exits 1.
//! 4. The privilege drop ([`crate::sys::user::drop_privileges`]: groups, real, effective and
//!    saved gid and uid, read back). If it fails, wsgate exits 1 rather than serve as root.
//! 5. `listening on ADDR` is announced (stderr and the log): from then on the service is
//!    ready, as its final user. The event loop runs until SIGTERM/SIGINT (drain with close
//!    1001); then the `stop`
//!    scripts run in reverse order, the pid file is removed, and wsgate exits with the loop's
//!    status.
//!
//! # Process model
//!
//! ```text
//!   no user, or no init_d:     wsgate ── (drop) ── loop ── stop scripts ── exit
//!
//!   user and init_d:           wsgate (root) ── start scripts, bind, pid file
//!                                 │ fork
//!                                 ├── parent (root): waits; passes SIGTERM/SIGINT/SIGHUP on;
//!                                 │     when the child is gone: stop scripts, remove the pid
//!                                 │     file, exit with the child's status (128+N if killed
//!                                 │     by signal N)
//!                                 └── child: drop to user, loop, exit
//! ```
//!
//! Only the combination of `user` and `init_d` forks: the `stop` scripts need root, and a
//! process that really dropped root (saved ids included) can never get it back. The parent
//! does nothing but wait in a blocking `read` of a signalfd (SIGCHLD and the three forwarded
//! signals); it closes its copies of the listeners, so it holds no socket clients can reach.
//! The pid file holds the parent's pid, so `kill $(cat pidfile)` stops the service properly.
//! The child asks for SIGTERM if the parent dies (`PR_SET_PDEATHSIG`, set after the drop,
//! which would clear it), so a killed parent never leaves an orphan gateway behind.
//!
//! Without the parent (a `user` but no `init_d`), the unprivileged gateway may not be allowed
//! to unlink its pid file at exit (the directory is root's): it then empties it instead.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{getppid, ForkResult, Pid};

use crate::config::Config;
use crate::config_file::ServiceConfig;
use crate::event_loop::{Reloader, Server};
use crate::log;
use crate::logging::{self, DEBUG, INFO, WARN};
use crate::sys::signals::Signals;
use crate::sys::user::{self, Account};

/// Time an init.d script may take before it is killed.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most scripts taken from an init.d directory.
pub const MAX_SCRIPTS: usize = 64;

/// The service settings, from the config file and the command line (which wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// Run as this user after binding.
    pub user: Option<String>,
    /// Append log lines to this file.
    pub log_file: Option<PathBuf>,
    /// Log to syslog.
    pub syslog: bool,
    /// Write the pid here.
    pub pid_file: Option<PathBuf>,
    /// A script, or a directory of scripts, to run with `start` and `stop`.
    pub init_d: Option<PathBuf>,
    /// The control socket (`wsgate status`, `wsgate drop`).
    pub control: Option<PathBuf>,
}

impl Settings {
    /// `cli` on top of the config file's service settings.
    #[must_use]
    pub fn merge(file: &ServiceConfig, cli: Self) -> Self {
        Self {
            // `user = "";` (as in some ouistiti configs) means: stay who you are.
            user: cli.user.or_else(|| file.user.clone()).filter(|u| !u.is_empty()),
            log_file: cli.log_file.or_else(|| file.log_file.clone()),
            syslog: cli.syslog || file.syslog,
            pid_file: cli.pid_file.or_else(|| file.pid_file.clone()),
            init_d: cli.init_d.or_else(|| file.init_d.clone()),
            control: cli.control.or_else(|| file.control.clone()),
        }
    }
}

/// Opens `path` for appending log lines: `O_APPEND | O_CLOEXEC`, created with mode 0640.
///
/// # Errors
/// The `open` error.
pub fn open_log_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path)
}

/// Why the service could not start, before its listeners exist.
#[derive(Debug)]
pub enum ServiceError {
    /// The log file cannot be opened.
    LogFile(PathBuf, io::Error),
    /// The account to run as cannot be used.
    User(user::UserError),
}

impl core::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::LogFile(p, e) => write!(f, "log file {}: {e}", p.display()),
            Self::User(e) => write!(f, "user: {e}"),
        }
    }
}

/// Installs the log sinks of `settings` (see [`crate::logging`]). A missing syslog socket is
/// not an error: a warning, and lines go to the log file or stderr.
///
/// # Errors
/// The log file cannot be opened.
pub fn open_logs(settings: &Settings) -> Result<(), ServiceError> {
    let file = match &settings.log_file {
        Some(p) => Some(open_log_file(p).map_err(|e| ServiceError::LogFile(p.clone(), e))?),
        None => None,
    };
    let mut missing = None;
    let syslog = if settings.syslog {
        let path = logging::syslog_path();
        match logging::connect_syslog(path.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                missing = Some((path, e));
                None
            }
        }
    } else {
        None
    };
    logging::install(file, syslog);
    if let Some((path, e)) = missing {
        let to = if logging::to_stderr() { "stderr" } else { "the log file" };
        logging::announce(
            WARN,
            format_args!("warning: syslog socket {}: {e}; logging to {to}", path.display()),
        );
    }
    Ok(())
}

// ---- init.d --------------------------------------------------------------------------------

/// The argument an init.d script is run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Before the listeners are bound.
    Start,
    /// At exit, in reverse order.
    Stop,
}

impl Action {
    /// `start` or `stop`.
    #[must_use]
    pub fn arg(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }
}

impl core::fmt::Display for Action {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.arg())
    }
}

/// The scripts of `init_d`: the file itself, or the executable regular files of the directory
/// (symbolic links followed, names starting with '.' skipped) in byte order of their names.
///
/// # Errors
/// `init_d` cannot be read.
pub fn scripts(init_d: &Path) -> io::Result<Vec<PathBuf>> {
    // A bare relative name would be looked up in $PATH by exec.
    let init_d = if init_d.is_relative() && init_d.parent() == Some(Path::new("")) {
        Path::new(".").join(init_d)
    } else {
        init_d.to_path_buf()
    };
    if !fs::metadata(&init_d)?.is_dir() {
        return Ok(vec![init_d]);
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(&init_d)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = fs::metadata(&path) else { continue };
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            found.push((name, path));
        }
    }
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if found.len() > MAX_SCRIPTS {
        log!(WARN, "init_d {}: only the first {MAX_SCRIPTS} scripts run", init_d.display());
        found.truncate(MAX_SCRIPTS);
    }
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Where a script's stdout and stderr go: the log file, or wsgate's stderr.
fn script_output() -> Stdio {
    let fd = match logging::file() {
        Some(f) => f.as_fd().try_clone_to_owned(),
        None => io::stderr().as_fd().try_clone_to_owned(),
    };
    fd.map_or_else(|_| Stdio::null(), Stdio::from)
}

/// Runs `path action`, waiting at most `timeout`. Logs the outcome; `true` if it succeeded.
pub fn run_script(path: &Path, action: Action, timeout: Duration) -> bool {
    let started = Instant::now();
    log!(INFO, "init_d: {} {action}", path.display());
    let mut cmd = Command::new(path);
    cmd.arg(action.arg())
        .stdin(Stdio::null())
        .stdout(script_output())
        .stderr(script_output())
        // Its own process group: a timeout kills whatever the script is waiting for too, and
        // the terminal's ^C reaches wsgate, not the backends the scripts start.
        .process_group(0);
    // Without this the script, and every daemon it starts, would begin with the signals the
    // gateway blocks for its signalfd (TERM among them) still blocked: `Command` passes the
    // mask on.
    crate::sys::exec_clean(&mut cmd);
    let spawned = cmd.spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            log!(WARN, "init_d: {} {action}: cannot run: {e}", path.display());
            return false;
        }
    };
    let mut nap = Duration::from_millis(5);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                let secs = crate::logging::Seconds(started.elapsed());
                log!(DEBUG, "init_d: {} {action}: done ({secs}s)", path.display());
                return true;
            }
            Ok(Some(status)) => {
                log!(WARN, "init_d: {} {action}: failed, {status}", path.display());
                return false;
            }
            Ok(None) => {}
            Err(e) => {
                log!(WARN, "init_d: {} {action}: wait: {e}", path.display());
                return false;
            }
        }
        if started.elapsed() >= timeout {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
            }
            let _ = child.kill();
            let status = child.wait();
            log!(
                WARN,
                "init_d: {} {action}: timed out after {timeout:?}, killed ({})",
                path.display(),
                status.map_or_else(|e| e.to_string(), |s| s.to_string())
            );
            return false;
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(100));
    }
}

/// Runs every script with `action`: in order for [`Action::Start`], in reverse for
/// [`Action::Stop`]. Failures are logged and do not stop the others. Returns how many failed.
pub fn run_scripts(scripts: &[PathBuf], action: Action, timeout: Duration) -> usize {
    let run = |p: &PathBuf| !run_script(p, action, timeout);
    match action {
        Action::Start => scripts.iter().filter(|p| run(p)).count(),
        Action::Stop => scripts.iter().rev().filter(|p| run(p)).count(),
    }
}

// ---- pid file ------------------------------------------------------------------------------

/// A written pid file, kept open so that it can be emptied when it cannot be removed.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    /// Writes `pid` and a newline to `path` (mode 0644, replacing its content).
    ///
    /// # Errors
    /// The `open` or `write` error.
    pub fn write(path: &Path, pid: u32) -> io::Result<Self> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(nix::libc::O_CLOEXEC)
            .open(path)?;
        writeln!(file, "{pid}")?;
        Ok(Self { path: path.to_path_buf(), file })
    }

    /// Removes the file; if that is not allowed (after the privilege drop), empties it.
    pub fn remove(self) {
        if let Err(e) = fs::remove_file(&self.path) {
            let emptied = self.file.set_len(0).is_ok();
            log!(
                INFO,
                "pid file {}: cannot remove ({e}){}",
                self.path.display(),
                if emptied { "; emptied" } else { "" }
            );
        }
    }
}

// ---- the service ---------------------------------------------------------------------------

/// What the service does around the event loop, resolved before anything starts.
#[derive(Debug)]
pub struct Service {
    account: Option<Account>,
    init_d: bool,
    scripts: Vec<PathBuf>,
    pid_file: Option<PathBuf>,
    control: Option<PathBuf>,
}

impl Service {
    /// Looks the user up and lists the init.d scripts. An init.d path that cannot be read is a
    /// warning (no scripts), as a failing script would be.
    ///
    /// # Errors
    /// The user cannot be found.
    pub fn prepare(settings: &Settings) -> Result<Self, ServiceError> {
        let account = match &settings.user {
            Some(name) => Some(user::lookup(name).map_err(ServiceError::User)?),
            None => None,
        };
        let scripts = match &settings.init_d {
            Some(dir) => scripts(dir).unwrap_or_else(|e| {
                log!(WARN, "init_d {}: {e}; no scripts run", dir.display());
                Vec::new()
            }),
            None => Vec::new(),
        };
        Ok(Self {
            account,
            init_d: settings.init_d.is_some(),
            scripts,
            pid_file: settings.pid_file.clone(),
            control: settings.control.clone(),
        })
    }

    /// Whether a privileged parent will wait for the serving child.
    #[must_use]
    pub fn forks(&self) -> bool {
        self.init_d && self.account.is_some()
    }

    /// Runs the service (see the module documentation) and returns the exit status. In the
    /// forked child it returns the child's status, and the caller simply exits with it.
    pub fn run(self, config: Config, signals: Signals, reloader: Option<Reloader>) -> u8 {
        run_scripts(&self.scripts, Action::Start, SCRIPT_TIMEOUT);
        // The session keys are made before the loop reads them, owned by the account that
        // will read them again when they are rotated.
        let owner = self.account.as_ref().map(|a| (a.uid.as_raw(), a.gid.as_raw()));
        for policy in config.sites.iter().filter_map(|s| s.auth.as_ref()) {
            let Some(session) = &policy.session else { continue };
            match crate::auth::session::ensure_key_file(&session.key, owner) {
                Ok(true) => log!(INFO, "session key {} made", session.key.display()),
                Ok(false) => {}
                Err(e) => {
                    logging::announce(WARN, format_args!("{e}"));
                    return self.finish(None, 1);
                }
            }
        }
        let mut server = match Server::bind(config) {
            Ok(s) => s,
            Err(e) => {
                logging::announce(WARN, format_args!("{e}"));
                return self.finish(None, 1);
            }
        };
        // Bound as the one who starts (it may make it where only root can), owned by the
        // account that serves it.
        if let Some(path) = &self.control {
            if let Err(e) = server.open_control(path, owner) {
                logging::announce(WARN, format_args!("{e}"));
                drop(server);
                return self.finish(None, 1);
            }
        }
        let pid_file =
            match self.pid_file.as_deref().map(|p| (p, PidFile::write(p, std::process::id()))) {
                None => None,
                Some((_, Ok(f))) => Some(f),
                Some((p, Err(e))) => {
                    logging::announce(WARN, format_args!("pid file {}: {e}", p.display()));
                    drop(server);
                    return self.finish(None, 1);
                }
            };
        match (&self.account, self.forks()) {
            (Some(account), true) => match crate::sys::fork_single_threaded() {
                Ok(ForkResult::Parent { child }) => {
                    // The parent keeps no socket and no loop: the child owns them.
                    drop((server, signals, reloader));
                    log!(INFO, "privileged parent {} waits for pid {child}", std::process::id());
                    let code = wait_child(child);
                    // The child, unprivileged, may not remove it where it was made.
                    if let Some(path) = &self.control {
                        let _ = std::fs::remove_file(path);
                    }
                    self.finish(pid_file, code)
                }
                Ok(ForkResult::Child) => {
                    // Not ours to remove: the parent does at exit.
                    drop(pid_file);
                    let parent = getppid();
                    if !become_user(account) {
                        return 1;
                    }
                    if nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_err()
                        || getppid() != parent
                    {
                        logging::announce(WARN, format_args!("the privileged parent is gone"));
                        return 1;
                    }
                    serve(server, signals, reloader)
                }
                Err(e) => {
                    logging::announce(WARN, format_args!("fork: {}", crate::sys::ErrnoText(e)));
                    drop(server);
                    self.finish(pid_file, 1)
                }
            },
            (account, _) => {
                if let Some(account) = account {
                    if !become_user(account) {
                        drop(server);
                        return self.finish(pid_file, 1);
                    }
                }
                let code = serve(server, signals, reloader);
                self.finish(pid_file, code)
            }
        }
    }

    /// At exit: the `stop` scripts, then the pid file. Returns `code`.
    fn finish(&self, pid_file: Option<PidFile>, code: u8) -> u8 {
        run_scripts(&self.scripts, Action::Stop, SCRIPT_TIMEOUT);
        if let Some(p) = pid_file {
            p.remove();
        }
        code
    }
}

/// Drops to `account` for good; on failure says why (the caller exits 1).
fn become_user(account: &Account) -> bool {
    match user::drop_privileges(account) {
        Ok(()) => {
            log!(
                INFO,
                "running as {} (uid {}, gid {}), pid {}",
                account.name,
                account.uid,
                account.gid,
                std::process::id()
            );
            true
        }
        Err(e) => {
            logging::announce(
                WARN,
                format_args!("user {}: {e}; exiting rather than serving as root", account.name),
            );
            false
        }
    }
}

/// Says where it listens (all is ready: the pid file is written, the privileges are
/// dropped), then runs the event loop until it returns: 0, or 1 on a poll failure.
fn serve(mut server: Server, signals: Signals, reloader: Option<Reloader>) -> u8 {
    for addr in server.local_addrs() {
        match addr {
            Ok(addr) => logging::announce(INFO, format_args!("listening on {addr}")),
            Err(e) => logging::announce(INFO, format_args!("listening (address unknown: {e})")),
        }
    }
    if let Err(e) = server.watch_signals(signals) {
        logging::announce(WARN, format_args!("signals: {e}"));
        return 1;
    }
    if let Some(r) = reloader {
        server.set_reloader(r);
    }
    let code = match server.run() {
        Ok(()) => 0,
        Err(e) => {
            logging::announce(WARN, format_args!("poll: {e}"));
            1
        }
    };
    server.remove_control();
    code
}

/// The parent's whole job: wait for `child`, passing SIGTERM, SIGINT and SIGHUP on. Returns
/// the child's exit status, or 128+N if signal N killed it.
fn wait_child(child: Pid) -> u8 {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        mask.add(s);
    }
    // TERM, INT and HUP are blocked already (Signals::install); SIGCHLD now joins them, so
    // that an exit between `waitpid` and `read` stays pending for the signalfd.
    let sfd = mask.thread_block().and_then(|()| SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC));
    let sfd = match sfd {
        Ok(fd) => Some(fd),
        Err(e) => {
            log!(
                WARN,
                "signalfd: {}; signals are not passed on to pid {child}",
                crate::sys::ErrnoText(e)
            );
            None
        }
    };
    loop {
        let flags = sfd.as_ref().map(|_| WaitPidFlag::WNOHANG);
        match waitpid(child, flags) {
            Ok(WaitStatus::Exited(_, code)) => {
                log!(INFO, "pid {child} exited with status {code}");
                return u8::try_from(code).unwrap_or(1);
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                log!(WARN, "pid {child} killed by {sig}");
                return 128u8.saturating_add(u8::try_from(sig as i32).unwrap_or(0));
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                log!(WARN, "waitpid {child}: {}", crate::sys::ErrnoText(e));
                return 1;
            }
        }
        let Some(fd) = sfd.as_ref() else { continue };
        match fd.read_signal() {
            Ok(Some(info)) => {
                let sig = i32::try_from(info.ssi_signo).ok().and_then(|n| Signal::try_from(n).ok());
                if let Some(sig) = sig.filter(|&s| s != Signal::SIGCHLD) {
                    log!(INFO, "{sig}: passed on to pid {child}");
                    let _ = kill(child, sig);
                }
            }
            Ok(None) | Err(Errno::EINTR) => {}
            Err(e) => {
                log!(WARN, "signalfd: {}", crate::sys::ErrnoText(e));
                // Fall back to a plain blocking wait.
                return match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => u8::try_from(code).unwrap_or(1),
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        128u8.saturating_add(u8::try_from(sig as i32).unwrap_or(0))
                    }
                    _ => 1,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn cli_wins_over_the_file() {
        let file = ServiceConfig {
            user: Some("www-data".into()),
            log_file: Some("/var/log/a".into()),
            init_d: Some("/etc/init.d/x".into()),
            syslog: true,
            ..ServiceConfig::default()
        };
        let s = Settings::merge(
            &file,
            Settings {
                user: Some("nobody".into()),
                pid_file: Some("/p".into()),
                ..Settings::default()
            },
        );
        assert_eq!(s.user.as_deref(), Some("nobody"));
        assert_eq!(s.log_file, Some(PathBuf::from("/var/log/a")));
        assert_eq!(s.pid_file, Some(PathBuf::from("/p")));
        assert_eq!(s.init_d, Some(PathBuf::from("/etc/init.d/x")));
        assert!(s.syslog);
    }

    #[test]
    fn a_bare_script_name_is_not_looked_up_in_path() {
        let got = scripts(Path::new("no-such-script-wsgate"));
        assert!(got.is_err());
    }
}
