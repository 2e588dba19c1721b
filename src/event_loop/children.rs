//! The programs of exec links, as the loop runs them: started at a connection's dial, their
//! stderr read into the log, ended when their connection lets go of them, reaped without
//! blocking.
//!
//! [`Children`] is shared (`Rc<RefCell<_>>`, one thread) between the sites' [`Backends`]
//! (which start programs), each program's [`ExecBackend`] (whose drop, wherever the connection
//! lets go of its backend, hands the process to the reaper: `SIGTERM`, then `SIGKILL` after the
//! grace period) and the loop (which reaps on `SIGCHLD` and at the `SIGKILL` deadlines, and
//! reads stderr pipes).
//!
//! stderr: each program's pipe is registered with the loop under a token of its slot
//! ([`token::child_log`]). Lines go to the log as `conn=<key> pid=<pid> stderr: <line>`,
//! at most [`LOG_BURST`] at once and [`LOG_PER_SECOND`] a second after that, each program on
//! its own budget; what goes past is counted and the count logged, so a chatty or hostile
//! program cannot flood the log or stall the loop, and it never blocks on a full pipe (the
//! pipe is always drained). The pipe stays registered until its end of file, which may come
//! after the connection closed (a program saying why it quits on `SIGTERM`).
//!
//! [`Backends`]: super::transport::Backends

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::token;
use crate::logging::{INFO, WARN};
use crate::relay::route::Backend;
use crate::slab::Key;
use crate::sys::child::{Exit, Reaper, Spawn, SpawnError};
use crate::{conn_log, log};

/// stderr lines a program may log at once.
pub const LOG_BURST: u32 = 20;
/// stderr lines a program may log a second, past the burst.
pub const LOG_PER_SECOND: u32 = 10;
/// Longest stderr line logged; a longer one is cut there (the rest logged as the next line).
const LINE: usize = 240;
/// Reads of one pipe per event: past them the pipe is re-armed and read again at the next
/// poll, so one program's output cannot hold the loop.
const READS_PER_EVENT: u32 = 32;

/// The loop's children, shared.
pub type Shared = Rc<RefCell<Children>>;

/// Every program started for a connection and not yet gone, and their stderr pipes.
#[derive(Debug)]
pub struct Children {
    reaper: Reaper,
    /// What the log says of each program, by slot (the stderr token's number).
    programs: Box<[Option<Program>]>,
    registry: Option<Registry>,
}

/// One program: its connection, for the log, and its stderr pipe until its end. The slot is
/// free once both the pipe and the process are gone.
#[derive(Debug)]
struct Program {
    pid: Pid,
    conn: Key,
    stderr: Option<OwnedFd>,
    line: heapless::Vec<u8, LINE>,
    budget: u32,
    refilled: Instant,
    dropped: u32,
}

impl Children {
    /// Room for `limit` programs at a time (allocated here). `registry`: the loop's, for the
    /// stderr pipes; without one (tests of the dial alone) stderr is read by nobody and closed.
    #[must_use]
    pub fn new(limit: usize, registry: Option<Registry>) -> Self {
        let limit = limit.min(token::MAX_CHILD_LOGS);
        let mut programs = Vec::with_capacity(limit);
        programs.resize_with(limit, || None);
        Self { reaper: Reaper::new(limit), programs: programs.into_boxed_slice(), registry }
    }

    /// The process limit.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.reaper.capacity()
    }

    /// Programs held (running, or ended while their connection is open, or closing).
    #[must_use]
    pub fn live(&self) -> usize {
        self.reaper.live()
    }

    /// Starts `spec` for connection `conn`, one of `group`'s (at most `group_limit` of them).
    ///
    /// # Errors
    /// [`SpawnError`]: a limit, or the program could not be started.
    pub fn spawn(
        &mut self,
        spec: &Spawn,
        conn: Key,
        group: u32,
        group_limit: usize,
        now: Instant,
    ) -> Result<(Pid, OwnedFd), SpawnError> {
        let child = self.reaper.spawn_in(spec, now, group, group_limit)?;
        conn_log!(INFO, "conn={conn} pid={} started {}", child.pid, spec.program.display());
        // A slot whose process the reaper no longer holds may still have a pipe open (a
        // leftover of its group that kept stderr): it is given up for the new program.
        let reaper = &self.reaper;
        let free = self.programs.iter().position(Option::is_none).or_else(|| {
            self.programs.iter().position(|p| p.as_ref().is_some_and(|p| !reaper.holds(p.pid)))
        });
        let Some(i) = free else { return Ok((child.pid, child.io)) };
        if let Some(old) = self.programs.get_mut(i).and_then(Option::take) {
            self.forget(old);
        }
        let fd = child.stderr;
        let registered = self.registry.as_ref().map(|r| {
            r.register(&mut SourceFd(&fd.as_raw_fd()), token::child_log(i), Interest::READABLE)
        });
        let stderr = match registered {
            Some(Ok(())) => Some(fd),
            Some(Err(e)) => {
                conn_log!(WARN, "conn={conn} pid={} stderr not logged: {e}", child.pid);
                None
            }
            None => None,
        };
        if let Some(slot) = self.programs.get_mut(i) {
            *slot = Some(Program {
                pid: child.pid,
                conn,
                stderr,
                line: heapless::Vec::new(),
                budget: LOG_BURST,
                refilled: now,
                dropped: 0,
            });
        }
        Ok((child.pid, child.io))
    }

    /// Closes what is left of a program's slot.
    fn forget(&self, mut p: Program) {
        if let (Some(fd), Some(r)) = (p.stderr.take(), self.registry.as_ref()) {
            let _ = r.deregister(&mut SourceFd(&fd.as_raw_fd()));
        }
    }

    /// The connection of `pid` let go of it: `SIGTERM` now, `SIGKILL` after `grace`.
    pub fn terminate(&mut self, pid: Pid, now: Instant, grace: Duration) {
        // How it ended, if it had ended on its own, was logged when it was reaped.
        let _ = self.reaper.terminate(pid, now, grace);
    }

    /// The earliest `SIGKILL` due.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.reaper.next_deadline()
    }

    /// Collects what ended and sends the `SIGKILL`s due; never blocks.
    pub fn reap(&mut self, now: Instant) {
        let programs = &self.programs;
        let said = |pid: Pid, exit: Exit| match programs.iter().flatten().find(|l| l.pid == pid) {
            Some(l) => conn_log!(INFO, "conn={} pid={pid} program ended: {exit}", l.conn),
            None => conn_log!(INFO, "pid={pid} program ended: {exit}"),
        };
        if let Err(e) = self.reaper.reap(now, said) {
            log!(WARN, "waitpid: {}", crate::sys::ErrnoText(e));
        }
        for i in 0..self.programs.len() {
            let done = self
                .programs
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|p| p.stderr.is_none() && !self.reaper.holds(p.pid));
            if done {
                if let Some(slot) = self.programs.get_mut(i) {
                    *slot = None;
                }
            }
        }
    }

    /// Reads the stderr pipe of slot `index` (its token said readable).
    pub fn on_stderr(&mut self, index: usize, now: Instant) {
        let Some(Some(l)) = self.programs.get_mut(index) else { return };
        // Out of the slot while it is read, so that the slot's line buffer can be written.
        let Some(fd) = l.stderr.take() else { return };
        let mut reads = 0;
        let ended = loop {
            if reads == READS_PER_EVENT {
                // Edge-triggered: re-arming reports the pipe again at the next poll if
                // anything is left in it.
                if let Some(r) = &self.registry {
                    let _ = r.reregister(
                        &mut SourceFd(&fd.as_raw_fd()),
                        token::child_log(index),
                        Interest::READABLE,
                    );
                }
                break false;
            }
            reads += 1;
            let start = l.line.len();
            let _ = l.line.resize(LINE, 0);
            let got = nix::unistd::read(fd.as_fd(), l.line.get_mut(start..).unwrap_or_default());
            l.line.truncate(start + got.as_ref().map_or(0, |n| *n));
            match got {
                Ok(0) => break true,
                Ok(_) => l.emit_lines(now, false),
                Err(Errno::EAGAIN) => break false,
                Err(Errno::EINTR) => {}
                Err(_) => break true,
            }
        };
        if !ended {
            l.stderr = Some(fd);
        } else {
            l.emit_lines(now, true);
            l.report_dropped();
            if let Some(r) = &self.registry {
                let _ = r.deregister(&mut SourceFd(&fd.as_raw_fd()));
            }
            drop(fd);
            // The end of its stderr is most often the end of the program: reaped now, so that
            // a loop without the signal descriptor leaves no zombie either.
            self.reap(now);
        }
    }
}

impl Program {
    /// Logs each complete line in `line` (and, at the end or when it is full, what is left).
    fn emit_lines(&mut self, now: Instant, at_end: bool) {
        loop {
            let cut = match self.line.iter().position(|&b| b == b'\n') {
                Some(nl) => nl + 1,
                None if self.line.is_full() || (at_end && !self.line.is_empty()) => self.line.len(),
                None => return,
            };
            if self.spend(now) {
                self.report_dropped();
                let text = self.line.get(..cut).unwrap_or_default();
                let text = text.strip_suffix(b"\n").unwrap_or(text);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                conn_log!(
                    WARN,
                    "conn={} pid={} stderr: {}",
                    self.conn,
                    self.pid,
                    text.escape_ascii()
                );
            } else {
                self.dropped = self.dropped.saturating_add(1);
            }
            let rest = self.line.len() - cut;
            self.line.copy_within(cut.., 0);
            self.line.truncate(rest);
        }
    }

    /// Takes one line from the budget, refilled at [`LOG_PER_SECOND`] up to [`LOG_BURST`].
    fn spend(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled);
        let earned = u32::try_from(elapsed.as_millis() * u128::from(LOG_PER_SECOND) / 1000)
            .unwrap_or(u32::MAX);
        if earned > 0 {
            self.budget = self.budget.saturating_add(earned).min(LOG_BURST);
            self.refilled = now;
        }
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        true
    }

    fn report_dropped(&mut self) {
        if self.dropped > 0 {
            conn_log!(
                WARN,
                "conn={} pid={} stderr: {} line(s) not logged (more than {LOG_PER_SECOND} a second)",
                self.conn,
                self.pid,
                self.dropped
            );
            self.dropped = 0;
        }
    }
}

/// The backend of an exec link's connection: the gateway's end of the program's stdio socket.
/// Dropping it hands the program to the reaper.
#[derive(Debug)]
pub struct ExecBackend {
    /// The socket.
    pub sock: Backend,
    /// The program (its process group).
    pub pid: Pid,
    children: Shared,
    grace: Duration,
}

impl ExecBackend {
    /// `sock`, connected to `pid`'s stdio; `grace`: from `SIGTERM` to `SIGKILL` at the end.
    #[must_use]
    pub fn new(sock: Backend, pid: Pid, children: Shared, grace: Duration) -> Self {
        Self { sock, pid, children, grace }
    }
}

impl Drop for ExecBackend {
    fn drop(&mut self) {
        if let Ok(mut c) = self.children.try_borrow_mut() {
            c.terminate(self.pid, Instant::now(), self.grace);
        } else {
            // Only reachable if a backend were dropped while the table is in use (it is not:
            // no connection is driven then). Nothing may outlive its connection, and the
            // reaper still holds the pid, so it is reaped at the next SIGCHLD.
            let _ = killpg(self.pid, Signal::SIGKILL);
        }
    }
}
