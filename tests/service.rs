//! The service pieces with real files, sockets and processes: log sinks (file and syslog
//! datagrams) without allocation, the rate limit, init.d scripts (order, failures, the timeout,
//! scripts that leave a daemon behind), and the pid file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unsafe_code
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::counting::{Counting, ALLOCS, COUNTING};
use common::TempDir;
use wsgate::logging::{self, INFO, WARN};
use wsgate::service::{self, Action, PidFile};
use wsgate::{conn_log, log};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The only test that installs sinks (once per process): file and syslog together.
#[test]
fn file_and_syslog_lines_allocate_nothing_and_floods_are_counted() {
    let dir = TempDir::new("sinks");
    let log_path = dir.0.join("wsgate.log");
    let syslogd = UnixDatagram::bind(dir.0.join("log")).unwrap();
    syslogd.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let file = service::open_log_file(&log_path).unwrap();
    assert_eq!(std::fs::metadata(&log_path).unwrap().permissions().mode() & 0o777, 0o640);
    let syslog = logging::connect_syslog(dir.0.join("log")).unwrap();

    // On a thread of its own: a fresh rate-limit bucket, and only its allocations count. A
    // syslogd reads meanwhile (the kernel queues only a few datagrams: 10 by default).
    let reader = std::thread::spawn(move || {
        let mut datagrams = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = syslogd.recv(&mut buf) {
            datagrams.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if datagrams.last().unwrap().contains("the end") {
                break;
            }
        }
        datagrams
    });
    let elapsed = std::thread::spawn(move || {
        assert!(logging::install(Some(file), Some(syslog)));
        assert!(!logging::to_stderr());
        log!(INFO, "service line before counting");
        COUNTING.with(|c| c.set(true));
        let start = std::time::Instant::now();
        for i in 0..200 {
            conn_log!(INFO, "conn={i}:1 peer=192.0.2.1:4000 close /nope refused 404");
            // Give the syslogd time to keep up: this test is not about a full socket.
            std::thread::sleep(Duration::from_micros(100));
        }
        let elapsed = start.elapsed();
        log!(WARN, "SIGHUP: a service line, never limited");
        COUNTING.with(|c| c.set(false));
        std::thread::sleep(Duration::from_millis(50));
        log!(WARN, "the end");
        elapsed
    })
    .join()
    .unwrap();
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0, "logging allocated");
    let datagrams = reader.join().unwrap();

    let text = std::fs::read_to_string(&log_path).unwrap();
    let conn_lines = text.lines().filter(|l| l.contains("refused 404")).count();
    // A burst of 50, plus the tokens the default rate (20/s) added while the loop ran: the
    // loop takes about 25 ms, but a loaded machine can stretch it.
    let refilled = (elapsed.as_secs_f64() * f64::from(logging::DEFAULT_RATE)) as usize;
    assert!(
        (50..=50 + refilled).contains(&conn_lines),
        "{conn_lines} lines in {elapsed:?}: {text}"
    );
    // Every refused line is counted, in "N log lines suppressed" lines (one before the next line
    // that goes out), the last one just before the service line.
    let suppressed = |lines: &mut dyn Iterator<Item = &str>| -> usize {
        lines
            .filter_map(|l| l.split("wsgate").nth(1))
            .filter_map(|l| l.split_once(" log lines suppressed (rate limit)"))
            .map(|(n, _)| n.rsplit(' ').next().unwrap().parse::<usize>().unwrap())
            .sum()
    };
    assert_eq!(suppressed(&mut text.lines()), 200 - conn_lines, "{text}");
    assert!(
        text.contains(" log lines suppressed (rate limit)\nwsgate: SIGHUP: a service"),
        "{text}"
    );
    let pid = std::process::id();
    assert!(datagrams.contains(&format!(
        "<30>wsgate[{pid}]: conn=0:1 peer=192.0.2.1:4000 close /nope refused 404"
    )));
    assert_eq!(suppressed(&mut datagrams.iter().map(String::as_str)), 200 - conn_lines);
    assert!(
        datagrams.contains(&format!("<28>wsgate[{pid}]: SIGHUP: a service line, never limited"))
    );
}

fn script(dir: &Path, name: &str, record: &Path, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho \"$1 {name}\" >> {}\n{body}\n", record.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn records(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// The gateway blocks TERM, INT, HUP and CHLD for its signalfd; a script and the backends it
/// starts must not inherit that, or they would never die on SIGTERM (`Command` passes the
/// mask on; `sys::exec_clean` starts them clean).
#[test]
fn scripts_start_with_no_signal_blocked_or_ignored() {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let dir = TempDir::new("initd-mask");
    let record = dir.0.join("record");
    let s = script(
        &dir.0,
        "S10mask",
        &record,
        // Builtins only, reading the shell's own status: a child it waits for would see the
        // mask the shell has while it waits (dash blocks every signal then), not its own.
        &format!(
            "while read -r k v; do case $k in SigBlk:|SigIgn:) echo \"$k $v\" >> {};; esac; \
             done < /proc/$$/status",
            record.display()
        ),
    );
    // What the service does before it runs the scripts (on this test's thread only).
    let mut blocked = SigSet::empty();
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        blocked.add(sig);
    }
    let mut before = SigSet::empty();
    blocked.thread_swap_mask(SigmaskHow::SIG_BLOCK).map(|old| before = old).unwrap();
    let ran = service::run_script(&s, Action::Start, Duration::from_secs(5));
    before.thread_set_mask().unwrap();
    assert!(ran);
    let lines = records(&record);
    assert_eq!(lines[0], "start S10mask");
    for l in &lines[1..] {
        let mask = l.split_whitespace().nth(1).unwrap();
        let bits = u64::from_str_radix(mask, 16).unwrap();
        // Signals 32 and 33 belong to the C library: it keeps them out of reach.
        assert_eq!(bits & !0x1_8000_0000, 0, "{l}");
    }
}

#[test]
fn scripts_run_in_name_order_and_stop_in_reverse() {
    let dir = TempDir::new("initd");
    let d = dir.0.join("init.d");
    std::fs::create_dir(&d).unwrap();
    let record = dir.0.join("record");
    script(&d, "S20b", &record, "exit 0");
    script(&d, "S10a", &record, "exit 0");
    script(&d, "S30fails", &record, "exit 3");
    script(&d, ".hidden", &record, "exit 0");
    std::fs::write(d.join("README"), "not executable\n").unwrap();
    std::fs::create_dir(d.join("S15dir")).unwrap();

    let list = service::scripts(&d).unwrap();
    let names: Vec<_> = list.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
    assert_eq!(names, ["S10a", "S20b", "S30fails"]);

    assert_eq!(service::run_scripts(&list, Action::Start, Duration::from_secs(5)), 1);
    assert_eq!(service::run_scripts(&list, Action::Stop, Duration::from_secs(5)), 1);
    assert_eq!(
        records(&record),
        ["start S10a", "start S20b", "start S30fails", "stop S30fails", "stop S20b", "stop S10a"]
    );
    // A single file is a list of one.
    assert_eq!(service::scripts(&list[0]).unwrap(), [list[0].clone()]);
}

#[test]
fn a_hanging_script_is_killed_at_the_timeout_with_what_it_waits_for() {
    let dir = TempDir::new("hang");
    let record = dir.0.join("record");
    let child_pid = dir.0.join("child.pid");
    let s = script(
        &dir.0,
        "hangs",
        &record,
        &format!("sleep 30 &\necho $! > {}\nwait", child_pid.display()),
    );
    // Long enough for a loaded machine to start the shell and its `sleep` before the kill.
    let t0 = Instant::now();
    assert!(!service::run_script(&s, Action::Start, Duration::from_millis(1000)));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1000) && took < Duration::from_secs(4), "{took:?}");
    let pid = std::fs::read_to_string(&child_pid).unwrap();
    let gone = || {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .map_or(true, |st| st.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
    };
    let t1 = Instant::now();
    while !gone() {
        assert!(t1.elapsed() < Duration::from_secs(3), "the script's child survived");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_script_that_leaves_a_daemon_behind_does_not_block() {
    // The daemon keeps the script's stdout and stderr open: wsgate waits for the script, not
    // for end-of-file on its output.
    let dir = TempDir::new("daemon");
    let record = dir.0.join("record");
    let s = script(&dir.0, "daemon", &record, "sleep 3 &\necho started");
    let t0 = Instant::now();
    assert!(service::run_script(&s, Action::Start, Duration::from_secs(10)));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
}

#[test]
fn a_missing_script_is_a_failure_not_a_crash() {
    let dir = TempDir::new("missing");
    assert!(!service::run_script(&dir.0.join("nope"), Action::Start, Duration::from_secs(1)));
    let not_exec = dir.0.join("plain");
    std::fs::write(&not_exec, "#!/bin/sh\n").unwrap();
    assert!(!service::run_script(&not_exec, Action::Stop, Duration::from_secs(1)));
}

#[test]
fn pid_file_is_written_and_removed() {
    let dir = TempDir::new("pid");
    let path = dir.0.join("wsgate.pid");
    let p = PidFile::write(&path, 4242).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "4242\n");
    p.remove();
    assert!(!path.exists());
}
