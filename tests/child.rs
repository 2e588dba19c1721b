//! Exec backends' OS layer (`wsgate::sys::child`) against real processes: the stdio socket and
//! the stderr pipe, environment, inherited descriptors and signal state, process groups, the
//! grace period, reaping, the process limits.
//!
//! The tests count this process's descriptors and ask `waitpid` whether any child is left, so
//! they run one at a time (`serial`), each ending with every child reaped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// One `signal(2)` call, to start programs from a process that ignores a signal.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, SigSet, Signal};
use nix::sys::socket::{recv, send, shutdown, MsgFlags, Shutdown};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{read, write, Pid};
use wsgate::relay::context::Info;
use wsgate::sys::child::{cgi_env, Exit, Full, Reaper, Spawn, SpawnError};

/// Generous: the machine is shared; every wait ends as soon as its condition holds.
const PATIENCE: Duration = Duration::from_secs(20);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn spec(program: &str, args: &[&str]) -> Spawn {
    Spawn {
        program: program.into(),
        args: args.iter().map(OsString::from).collect(),
        dir: None,
        env: Vec::new(),
        seqpacket: false,
    }
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// No child of this process is left, zombie or running.
fn assert_no_child() {
    assert_eq!(waitpid(None, Some(WaitPidFlag::WNOHANG)), Err(Errno::ECHILD));
}

/// Every child of this process, its programs' leftovers included (the reaper made it their
/// subreaper), ends and is reaped within `PATIENCE`.
fn assert_all_gone(reaper: &mut Reaper) {
    let start = Instant::now();
    loop {
        reaper.reap(Instant::now(), |_, _| {}).unwrap();
        if waitpid(None, Some(WaitPidFlag::WNOHANG)) == Err(Errno::ECHILD) {
            return;
        }
        assert!(start.elapsed() < PATIENCE, "a child is left");
        sleep(Duration::from_millis(1));
    }
}

/// Reads `fd` (non-blocking) to end of file.
fn read_to_end(fd: &OwnedFd) -> Vec<u8> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        assert!(
            start.elapsed() < PATIENCE,
            "no EOF; read so far: {:?}",
            String::from_utf8_lossy(&out)
        );
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(100u16)).unwrap();
        match read(fd, &mut chunk) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(Errno::EAGAIN) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// Reads one line from `fd` (non-blocking).
fn read_line(fd: &OwnedFd) -> String {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    while out.last() != Some(&b'\n') {
        assert!(start.elapsed() < PATIENCE, "no line");
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(100u16)).unwrap();
        match read(fd, &mut byte) {
            Ok(0) => panic!("EOF before a line"),
            Ok(_) => out.push(byte[0]),
            Err(Errno::EAGAIN) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8(out).unwrap().trim().to_string()
}

/// Calls `reap` until the reaper holds nothing; the exits it heard of.
fn reap_all(reaper: &mut Reaper) -> Vec<(Pid, Exit)> {
    let start = Instant::now();
    let mut ended = Vec::new();
    while reaper.live() > 0 {
        assert!(start.elapsed() < PATIENCE, "{} process(es) still held", reaper.live());
        reaper.reap(Instant::now(), |pid, exit| ended.push((pid, exit))).unwrap();
        if reaper.live() > 0 {
            sleep(Duration::from_millis(1));
        }
    }
    ended
}

/// The state letter of `/proc/<pid>/stat`, `None` once the process is gone.
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next())
}

/// Gone: no such process, or dead and waiting for its reaper (init, not us).
fn is_gone(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z' | 'X'))
}

#[test]
fn cat_echoes_bytes_through_a_nonblocking_cloexec_socket() {
    let _serial = serial();
    let fds_before = fd_count();
    let mut reaper = Reaper::new(4);
    let child = reaper.spawn(&spec("/bin/cat", &[]), Instant::now()).unwrap();
    for fd in [&child.io, &child.stderr] {
        let fl = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap());
        assert!(fl.contains(OFlag::O_NONBLOCK), "{fl:?}");
        let fd_flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap());
        assert!(fd_flags.contains(FdFlag::FD_CLOEXEC), "{fd_flags:?}");
    }
    let payload: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    assert_eq!(write(&child.io, &payload), Ok(payload.len()));
    shutdown(child.io.as_raw_fd(), Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&child.io), payload);
    assert_eq!(read_to_end(&child.stderr), b"");
    let ended = reap_until_exited(&mut reaper, child.pid);
    assert_eq!(ended, Exit::Code(0));
    // The program ended on its own: its slot waits for the connection to close.
    assert_eq!(reaper.live(), 1);
    assert_eq!(reaper.terminate(child.pid, Instant::now(), Duration::from_secs(5)), Some(ended));
    assert_eq!(reaper.live(), 0);
    drop((child.io, child.stderr));
    assert_no_child();
    assert_eq!(fd_count(), fds_before);
}

/// Reaps until `pid` is reported; how it ended.
fn reap_until_exited(reaper: &mut Reaper, pid: Pid) -> Exit {
    let start = Instant::now();
    loop {
        let mut got = None;
        reaper
            .reap(Instant::now(), |p, e| {
                if p == pid {
                    got = Some(e)
                }
            })
            .unwrap();
        if let Some(e) = got {
            return e;
        }
        assert!(start.elapsed() < PATIENCE, "pid {pid} did not end");
        sleep(Duration::from_millis(1));
    }
}

#[test]
fn the_environment_is_exactly_the_cgi_set() {
    let _serial = serial();
    let head = b"GET /chat/x?a=1 HTTP/1.1\r\nHost: router.lan:8080\r\nCookie: s=1; t=2\r\n\
        User-Agent: test agent\r\n\r\n";
    let info = Info {
        peer: "192.168.1.20:51234".parse().unwrap(),
        server_port: 8080,
        path: "/chat/x",
        query: "a=1",
        endpoint: "chat",
        host: "router.lan:8080",
        origin: None,
        protocol: None,
        tls: false,
        user: None,
        cert_subject: None,
    };
    let env = cgi_env(&info, head);
    let mut reaper = Reaper::new(1);
    // `env` itself, exec'd directly: a shell would add its own PWD.
    let child =
        reaper.spawn(&Spawn { env: env.clone(), ..spec("/usr/bin/env", &[]) }, Instant::now());
    let child = child.unwrap();
    let out = String::from_utf8(read_to_end(&child.io)).unwrap();
    let got: BTreeSet<&str> = out.lines().collect();
    let want: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{}={}", k.to_str().unwrap(), v.to_str().unwrap()))
        .collect();
    let want: BTreeSet<&str> = want.iter().map(String::as_str).collect();
    assert_eq!(got, want);
    for line in [
        "REMOTE_ADDR=192.168.1.20",
        "REMOTE_PORT=51234",
        "SERVER_NAME=router.lan",
        "SERVER_PORT=8080",
        "REQUEST_URI=/chat/x?a=1",
        "QUERY_STRING=a=1",
        "SCRIPT_NAME=/chat",
        "PATH_INFO=/x",
        "HTTPS=off",
        "GATEWAY_INTERFACE=CGI/1.1",
        "HTTP_COOKIE=s=1; t=2",
        "HTTP_USER_AGENT=test agent",
    ] {
        assert!(got.contains(line), "{line} not in {got:?}");
    }
    // The test process has PATH, HOME, CARGO_*: none of it reaches the program.
    assert!(std::env::var_os("PATH").is_some());
    assert!(!got.iter().any(|l| l.starts_with("PATH=") || l.starts_with("CARGO")), "{got:?}");
    assert_eq!(reap_until_exited(&mut reaper, child.pid), Exit::Code(0));
    reaper.terminate(child.pid, Instant::now(), Duration::ZERO);
    assert_eq!(reaper.live(), 0);
    assert_no_child();
}

#[test]
fn the_program_gets_only_its_stdio_and_a_clean_signal_state() {
    let _serial = serial();
    // A descriptor without close-on-exec, as an init system or a shell may leave the
    // gateway, and a listening socket (std: close-on-exec).
    let (leak_r, leak_w) = nix::unistd::pipe().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    assert!(!FdFlag::from_bits_retain(fcntl(&leak_r, FcntlArg::F_GETFD).unwrap())
        .contains(FdFlag::FD_CLOEXEC));
    // The gateway blocks these for its signalfd (and std ignores SIGPIPE).
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        mask.add(s);
    }
    let old = mask.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK).unwrap();
    // As `nohup` leaves it.
    // SAFETY: SIG_IGN installs no handler; the tests of this file run one at a time.
    unsafe { signal(Signal::SIGHUP, SigHandler::SigIgn) }.unwrap();

    let mut reaper = Reaper::new(2);
    let now = Instant::now();
    let fds = reaper.spawn(&spec("/bin/sh", &["-c", "ls /proc/$$/fd"]), now).unwrap();
    let sigs = reaper.spawn(&spec("/bin/grep", &["-E", "^Sig(Blk|Ign)", "/proc/self/status"]), now);
    let sigs = sigs.unwrap();
    old.thread_set_mask().unwrap();
    // SAFETY: as above.
    unsafe { signal(Signal::SIGHUP, SigHandler::SigDfl) }.unwrap();

    let listed = String::from_utf8(read_to_end(&fds.io)).unwrap();
    assert_eq!(listed.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"], "{listed}");
    let status = String::from_utf8(read_to_end(&sigs.io)).unwrap();
    let hex = |name: &str| {
        let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
        u64::from_str_radix(line.trim(), 16).unwrap()
    };
    assert_eq!(hex("SigBlk:"), 0, "{status}");
    // Signals 1 to 31 all at their default. 32 and 33 are the C library's own (glibc will not
    // set them): the test binary, which cargo started through posix_spawn, may get them
    // ignored from glibc, and passes that on.
    assert_eq!(hex("SigIgn:") & 0x7fff_ffff, 0, "{status}");
    reap_all_after_terminate(&mut reaper, &[fds.pid, sigs.pid]);
    assert_no_child();
    drop((leak_r, leak_w, listener));
}

fn reap_all_after_terminate(reaper: &mut Reaper, pids: &[Pid]) -> Vec<(Pid, Exit)> {
    for &pid in pids {
        reaper.terminate(pid, Instant::now(), Duration::from_secs(10));
    }
    reap_all(reaper)
}

#[test]
fn sigterm_ignored_means_sigkill_after_the_grace_period_for_the_whole_group() {
    let _serial = serial();
    let mut reaper = Reaper::new(1);
    let script = "trap '' TERM; sleep 60 & echo $!; wait";
    let child = reaper.spawn(&spec("/bin/sh", &["-c", script]), Instant::now()).unwrap();
    let grandchild: i32 = read_line(&child.io).parse().unwrap();
    let leader = child.pid.as_raw();
    assert!(!is_gone(leader) && !is_gone(grandchild));

    let grace = Duration::from_millis(400);
    let closed = Instant::now();
    assert_eq!(reaper.terminate(child.pid, closed, grace), None);
    assert_eq!(reaper.next_deadline(), Some(closed + grace));
    // Before the deadline, SIGTERM is all they got: both ignore it.
    sleep(Duration::from_millis(100));
    reaper.reap(Instant::now(), |_, _| {}).unwrap();
    if Instant::now() < closed + grace {
        assert!(!is_gone(leader) && !is_gone(grandchild));
        assert_eq!(reaper.live(), 1);
    }
    let ended = reap_all(&mut reaper);
    assert!(closed.elapsed() >= grace);
    assert_eq!(ended, [(child.pid, Exit::Signal(Signal::SIGKILL))]);
    assert_eq!(reaper.next_deadline(), None);
    let start = Instant::now();
    while !is_gone(grandchild) {
        assert!(start.elapsed() < PATIENCE, "grandchild {grandchild} survived");
        sleep(Duration::from_millis(5));
    }
    assert_all_gone(&mut reaper);
}

#[test]
fn sigterm_ends_a_program_and_its_children_without_waiting_for_the_grace_period() {
    let _serial = serial();
    let mut reaper = Reaper::new(1);
    let child = reaper.spawn(&spec("/bin/sh", &["-c", "sleep 60 & echo $!; wait"]), Instant::now());
    let child = child.unwrap();
    let grandchild: i32 = read_line(&child.io).parse().unwrap();
    let closed = Instant::now();
    // A grace period longer than PATIENCE: reap_all would fail if it came to SIGKILL.
    reaper.terminate(child.pid, closed, Duration::from_secs(60));
    let ended = reap_all(&mut reaper);
    assert_eq!(ended, [(child.pid, Exit::Signal(Signal::SIGTERM))]);
    // Its leftover is the test process's child now (subreaper), and reaped: the slot was
    // freed only once the group was empty.
    assert!(is_gone(grandchild));
    assert_no_child();
}

#[test]
fn a_program_that_ends_first_is_reaped_and_its_status_kept_for_the_close() {
    let _serial = serial();
    let mut reaper = Reaper::new(1);
    let child = reaper.spawn(&spec("/bin/sh", &["-c", "exit 3"]), Instant::now()).unwrap();
    assert_eq!(reap_until_exited(&mut reaper, child.pid), Exit::Code(3));
    assert_no_child();
    assert_eq!(reaper.live(), 1);
    assert_eq!(
        reaper.terminate(child.pid, Instant::now(), Duration::from_secs(5)),
        Some(Exit::Code(3))
    );
    assert_eq!(reaper.live(), 0);
    assert_eq!(reaper.next_deadline(), None);
}

#[test]
fn a_thousand_spawns_in_sequence_leave_no_zombie_and_no_descriptor() {
    let _serial = serial();
    let fds_before = fd_count();
    let mut reaper = Reaper::new(1);
    let start = Instant::now();
    for _ in 0..1000 {
        let child = reaper.spawn(&spec("/bin/cat", &[]), Instant::now()).unwrap();
        reaper.terminate(child.pid, Instant::now(), Duration::from_secs(10));
        assert_eq!(reap_all(&mut reaper), [(child.pid, Exit::Signal(Signal::SIGTERM))]);
    }
    eprintln!("1000 spawn/terminate/reap: {:?}", start.elapsed());
    assert_no_child();
    assert_eq!(fd_count(), fds_before);
}

#[test]
fn sixty_four_at_once_then_the_limit_refuses_the_next() {
    let _serial = serial();
    let fds_before = fd_count();
    let mut reaper = Reaper::new(64);
    let now = Instant::now();
    let children: Vec<_> =
        (0..64).map(|_| reaper.spawn(&spec("/bin/cat", &[]), now).unwrap()).collect();
    assert_eq!(reaper.live(), 64);
    let fds_full = fd_count();
    assert!(matches!(reaper.spawn(&spec("/bin/cat", &[]), now), Err(SpawnError::Limit)));
    assert_eq!(reaper.track(children[0].pid), Err(Full));
    assert_eq!(fd_count(), fds_full);
    for c in &children {
        // Alive until told: cat waits on its open stdin.
        assert!(!is_gone(c.pid.as_raw()));
    }
    let pids: Vec<Pid> = children.iter().map(|c| c.pid).collect();
    let ended = reap_all_after_terminate(&mut reaper, &pids);
    assert_eq!(ended.len(), 64);
    assert!(ended.iter().all(|(_, e)| *e == Exit::Signal(Signal::SIGTERM)), "{ended:?}");
    let reaped: BTreeSet<Pid> = ended.iter().map(|(p, _)| *p).collect();
    assert_eq!(reaped, pids.iter().copied().collect());
    assert_no_child();
    drop(children);
    assert_eq!(fd_count(), fds_before);
    // The slots are free again.
    let again = reaper.spawn(&spec("/bin/cat", &[]), Instant::now()).unwrap();
    reap_all_after_terminate(&mut reaper, &[again.pid]);
    assert_no_child();
}

#[test]
fn a_program_that_cannot_start_holds_nothing() {
    let _serial = serial();
    let fds_before = fd_count();
    let mut reaper = Reaper::new(1);
    let now = Instant::now();
    match reaper.spawn(&spec("/nonexistent/program", &[]), now) {
        Err(SpawnError::Start(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    assert!(matches!(reaper.spawn(&spec("cat", &[]), now), Err(SpawnError::NotAPath)));
    let dir = Spawn { dir: Some("/nonexistent-dir".into()), ..spec("/bin/cat", &[]) };
    assert!(matches!(reaper.spawn(&dir, now), Err(SpawnError::Start(_))));
    assert_eq!(reaper.live(), 0);
    assert_no_child();
    assert_eq!(fd_count(), fds_before);
}

#[test]
fn the_working_directory_is_the_one_given() {
    let _serial = serial();
    let mut reaper = Reaper::new(1);
    let child =
        reaper.spawn(&Spawn { dir: Some("/proc".into()), ..spec("/bin/pwd", &[]) }, Instant::now());
    let child = child.unwrap();
    assert_eq!(read_to_end(&child.io), b"/proc\n");
    assert_eq!(reap_until_exited(&mut reaper, child.pid), Exit::Code(0));
    reaper.terminate(child.pid, Instant::now(), Duration::ZERO);
    assert_no_child();
    let _ = child.io.as_raw_fd();
}

#[test]
fn in_seqpacket_mode_each_write_is_one_message() {
    let _serial = serial();
    let fds_before = fd_count();
    let mut reaper = Reaper::new(1);
    let child = reaper.spawn(&Spawn { seqpacket: true, ..spec("/bin/cat", &[]) }, Instant::now());
    let child = child.unwrap();
    for m in [&b"one"[..], b"two, longer", b"3"] {
        assert_eq!(send(child.io.as_raw_fd(), m, MsgFlags::empty()), Ok(m.len()));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    let start = Instant::now();
    while got.len() < 3 {
        assert!(start.elapsed() < PATIENCE, "got {got:?}");
        let mut fds = [PollFd::new(child.io.as_fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::from(100u16)).unwrap();
        match recv(child.io.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => got.push(buf[..n].to_vec()),
            Err(Errno::EAGAIN) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    assert_eq!(got, [&b"one"[..], b"two, longer", b"3"]);
    shutdown(child.io.as_raw_fd(), Shutdown::Write).unwrap();
    assert_eq!(reap_until_exited(&mut reaper, child.pid), Exit::Code(0));
    reaper.terminate(child.pid, Instant::now(), Duration::ZERO);
    drop(child);
    assert_no_child();
    assert_eq!(fd_count(), fds_before);
}

#[test]
fn a_group_limit_refuses_past_it_and_leaves_other_groups_alone() {
    let _serial = serial();
    let mut reaper = Reaper::new(4);
    let now = Instant::now();
    let a = reaper.spawn_in(&spec("/bin/cat", &[]), now, 1, 2).unwrap();
    let b = reaper.spawn_in(&spec("/bin/cat", &[]), now, 1, 2).unwrap();
    assert!(matches!(
        reaper.spawn_in(&spec("/bin/cat", &[]), now, 1, 2),
        Err(SpawnError::GroupLimit)
    ));
    let c = reaper.spawn_in(&spec("/bin/cat", &[]), now, 2, 2).unwrap();
    assert_eq!((reaper.in_group(1), reaper.in_group(2), reaper.live()), (2, 1, 3));
    // A closing program still counts: it is still a process.
    reaper.terminate(a.pid, now, Duration::from_secs(10));
    assert_eq!(reaper.in_group(1), 2);
    assert!(reaper.holds(a.pid));
    let ended = reap_all_after_terminate(&mut reaper, &[b.pid, c.pid]);
    assert_eq!(ended.len(), 3, "{ended:?}");
    assert!(!reaper.holds(a.pid));
    assert_eq!(reaper.in_group(1), 0);
    drop((a, b, c));
    assert_no_child();
}
