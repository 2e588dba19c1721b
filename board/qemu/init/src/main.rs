//! PID 1 of the QEMU system test: mounts /proc, /sys and /dev, brings up `lo` and `eth0`
//! (10.0.2.15, QEMU's user-mode network), starts `websocket_echo` and `wsgate -f
//! /etc/wsgate.conf` from the initramfs, and says `WSGATE-GUEST: READY` on the console. The
//! host then drives the load through the forwarded port.
//!
//! It also serves the backend `ctl` (`lines` mode) in the gateway's docroot, so the host asks
//! for figures through the gateway itself: `mem` answers the memory in use now, `report` the
//! peaks seen by a 50 ms sampler. When the `ctl` client goes away, init stops the gateway with
//! SIGTERM (it must exit 0), checks that the kernel killed nothing for memory, prints the
//! verdict (`WSGATE-GUEST: PASS` or `FAIL ...`) and powers off. A deadline powers off anyway.
//!
//! The gateway's resident memory by mapping goes to the console twice, idle after start-up and
//! after the load (`WSGATE-GUEST: smaps ...`): /proc/PID/smaps_rollup's totals and every
//! mapping with resident pages, with its size, resident and private dirty kB and its name.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DOCROOT: &str = "/run/ws";
const DEADLINE: Duration = Duration::from_secs(600);

fn main() {
    if std::process::id() != 1 {
        eprintln!("init: not PID 1; this program only runs as the test guest's init");
        std::process::exit(2);
    }
    let verdict = run();
    match &verdict {
        Ok(()) => say("PASS"),
        Err(e) => say(&format!("FAIL {e}")),
    }
    power_off();
}

fn say(msg: &str) {
    println!("WSGATE-GUEST: {msg}");
}

fn run() -> Result<(), String> {
    mount("devtmpfs", "/dev", "devtmpfs");
    mount("proc", "/proc", "proc");
    mount("sysfs", "/sys", "sysfs");
    mount("tmpfs", "/run", "tmpfs");
    if_up("lo", None).map_err(|e| format!("lo: {e}"))?;
    let host_side = if_up("eth0", Some([10, 0, 2, 15])).is_ok();
    if !host_side {
        say("no eth0: the host cannot reach the guest");
    }
    fs::create_dir_all(DOCROOT).map_err(|e| e.to_string())?;
    let kernel = fs::read_to_string("/proc/version").unwrap_or_default();
    say(&format!("kernel {}", kernel.trim()));
    say(&format!("boot {}", mem_line(&meminfo())));

    let mut echo = spawn("/bin/websocket_echo", &["-R", DOCROOT, "-n", "echo", "-m", "framed"])?;
    let mut lines = spawn("/bin/websocket_echo", &["-R", DOCROOT, "-n", "lines", "-m", "lines"])?;
    wait_for(|| Path::new("/run/ws/echo").exists() && Path::new("/run/ws/lines").exists())
        .ok_or("the echo sockets never appeared")?;
    let ctl = UnixListener::bind("/run/ws/ctl").map_err(|e| format!("ctl: {e}"))?;
    ctl.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut gw = spawn("/bin/wsgate", &["-f", "/etc/wsgate.conf", "-L", "/run/wsgate.log"])?;
    wait_for(|| TcpStream::connect("127.0.0.1:8080").is_ok()).ok_or("wsgate never listened")?;
    say(&format!("started wsgate pid {} (websocket_echo {} {})", gw.id(), echo.id(), lines.id()));
    print_smaps("idle", gw.id());
    say("READY");

    let result = serve_ctl(&ctl, gw.id(), &[echo.id(), lines.id()]);
    print_smaps("after load", gw.id());
    // SIGTERM drains: closes every connection with 1001 and exits 0.
    let stop = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(gw.id() as libc::pid_t, libc::SIGTERM) };
    let status = gw.wait().map_err(|e| e.to_string())?;
    say(&format!("wsgate exited {status} {} ms after SIGTERM", stop.elapsed().as_millis()));
    let _ = echo.kill();
    let _ = lines.kill();
    let _ = echo.wait();
    let _ = lines.wait();
    let oom = vmstat("oom_kill");
    say(&format!("oom_kill {oom}"));
    if let Err(e) = &result {
        print_log();
        return Err(e.clone());
    }
    if !status.success() {
        print_log();
        return Err(format!("wsgate exit status {status}"));
    }
    if oom != 0 {
        return Err(format!("the kernel killed {oom} processes for memory"));
    }
    Ok(())
}

/// Peaks of the memory figures, sampled while the host drives the load.
#[derive(Default)]
struct Peaks {
    used_kib: u64,
    min_available_kib: u64,
    samples: u64,
}

/// Answers `mem` and `report` on the ctl socket; returns when the ctl client leaves after a
/// `report` (the end of the test), or errs at the deadline.
fn serve_ctl(ctl: &UnixListener, gw: u32, backends: &[u32]) -> Result<(), String> {
    let start = Instant::now();
    let mut peaks = Peaks { min_available_kib: u64::MAX, ..Peaks::default() };
    let mut client: Option<BufReader<UnixStream>> = None;
    let mut reported = false;
    loop {
        if start.elapsed() > DEADLINE {
            return Err(format!("no report from the host within {}s", DEADLINE.as_secs()));
        }
        let m = meminfo();
        let total = field(&m, "MemTotal");
        let avail = field(&m, "MemAvailable");
        peaks.used_kib = peaks.used_kib.max(total.saturating_sub(avail));
        peaks.min_available_kib = peaks.min_available_kib.min(avail);
        peaks.samples += 1;
        if client.is_none() {
            if let Ok((s, _)) = ctl.accept() {
                s.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| e.to_string())?;
                // Connection context off: the first line is the first command.
                client = Some(BufReader::new(s));
            }
        }
        if let Some(c) = client.as_mut() {
            let mut line = String::new();
            match c.read_line(&mut line) {
                Ok(0) => {
                    client = None;
                    if reported {
                        return Ok(());
                    }
                }
                Ok(_) => {
                    let answer = match line.trim() {
                        "mem" => format!("{} {}", mem_line(&m), proc_mem(gw, backends)),
                        "report" => {
                            reported = true;
                            format!(
                                "peak used={}KiB min-available={}KiB samples={} {} {}",
                                peaks.used_kib,
                                peaks.min_available_kib,
                                peaks.samples,
                                mem_line(&m),
                                proc_mem(gw, backends)
                            )
                        }
                        other => format!("unknown command {other:?}"),
                    };
                    say(&format!("ctl {}: {answer}", line.trim()));
                    let s = c.get_mut();
                    s.write_all(format!("{answer}\n").as_bytes()).map_err(|e| e.to_string())?;
                }
                // A timeout: keep sampling. read_line keeps a partial line in `line` only
                // until the next call; commands are short and arrive in one write.
                Err(_) => {}
            }
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn meminfo() -> String {
    fs::read_to_string("/proc/meminfo").unwrap_or_default()
}

/// A `Key:   123 kB` field of /proc/meminfo or /proc/PID/status, in KiB (0 when missing).
fn field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mem_line(m: &str) -> String {
    let (total, free, avail) =
        (field(m, "MemTotal"), field(m, "MemFree"), field(m, "MemAvailable"));
    format!(
        "MemTotal={total}KiB MemFree={free}KiB MemAvailable={avail}KiB used={}KiB",
        total.saturating_sub(avail)
    )
}

/// The gateway's resident memory (now and peak) and the echo backends' (they hold whole
/// messages in `framed` mode).
fn proc_mem(gw: u32, backends: &[u32]) -> String {
    let status = |pid: u32| fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let s = status(gw);
    let echo: u64 = backends.iter().map(|&p| field(&status(p), "VmRSS")).sum();
    format!(
        "wsgate VmRSS={}KiB VmHWM={}KiB; websocket_echo VmRSS={echo}KiB",
        field(&s, "VmRSS"),
        field(&s, "VmHWM")
    )
}

/// The gateway's resident set by mapping: the totals of /proc/PID/smaps_rollup, then each
/// mapping of /proc/PID/smaps that has resident pages, largest first.
fn print_smaps(when: &str, pid: u32) {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let totals: Vec<String> = ["Rss", "Pss", "Private_Clean", "Private_Dirty", "Anonymous"]
        .iter()
        .map(|k| format!("{k}={}", field(&rollup, k)))
        .collect();
    say(&format!("smaps {when} wsgate total {} (kB)", totals.join(" ")));
    let smaps = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut maps: Vec<(u64, String)> = Vec::new();
    let mut head: Option<(u64, String)> = None;
    let mut rss = 0;
    let mut dirty = 0;
    let mut flush = |head: &mut Option<(u64, String)>, rss: u64, dirty: u64| {
        if let Some((size, desc)) = head.take() {
            if rss > 0 {
                maps.push((rss, format!("size={size} rss={rss} private_dirty={dirty} {desc}")));
            }
        }
    };
    for line in smaps.lines() {
        // A mapping's header: `start-end perms offset dev inode [name]`.
        let mut w = line.split_whitespace();
        let range = w.next().unwrap_or_default();
        if let Some((a, b)) = range.split_once('-').filter(|_| !range.ends_with(':')) {
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
                continue;
            };
            flush(&mut head, rss, dirty);
            (rss, dirty) = (0, 0);
            let perms = w.next().unwrap_or_default();
            let name = w.nth(3).unwrap_or("[anon]");
            head = Some(((b - a) / 1024, format!("{perms} {name}")));
        } else if let Some(v) = line.strip_prefix("Rss:") {
            rss = v.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("Private_Dirty:") {
            dirty = v.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        }
    }
    flush(&mut head, rss, dirty);
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    for (_, m) in maps {
        say(&format!("smaps {when} wsgate {m}"));
    }
}

fn vmstat(key: &str) -> u64 {
    fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn spawn(path: &str, args: &[&str]) -> Result<Child, String> {
    Command::new(path).args(args).stdin(Stdio::null()).spawn().map_err(|e| format!("{path}: {e}"))
}

fn wait_for(mut ready: impl FnMut() -> bool) -> Option<()> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if ready() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn print_log() {
    for line in fs::read_to_string("/run/wsgate.log").unwrap_or_default().lines().rev().take(40) {
        say(&format!("log {line}"));
    }
}

fn mount(src: &str, dir: &str, fstype: &str) {
    let _ = fs::create_dir_all(dir);
    let c = |s: &str| std::ffi::CString::new(s).unwrap_or_default();
    let (src, dir, fstype) = (c(src), c(dir), c(fstype));
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    let r =
        unsafe { libc::mount(src.as_ptr(), dir.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if r != 0 {
        say(&format!("mount {dir:?}: {}", std::io::Error::last_os_error()));
    }
}

/// `ifconfig NAME [ADDR] up` through the SIOCSIFADDR / SIOCSIFFLAGS ioctls.
fn if_up(name: &str, addr: Option<[u8; 4]>) -> std::io::Result<()> {
    // SAFETY: a datagram socket used only for the interface ioctls below and closed at the
    // end; `ifreq` is plain old data, zeroed, and its name stays NUL-terminated (15 bytes).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes().take(15)) {
            *d = s as libc::c_char;
        }
        let mut r = 0;
        if let Some(a) = addr {
            let sin = &mut *(&mut ifr.ifr_ifru as *mut _ as *mut libc::sockaddr_in);
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            // The address is in network order whatever the CPU's byte order.
            sin.sin_addr.s_addr = u32::from_ne_bytes(a);
            r = libc::ioctl(fd, libc::SIOCSIFADDR as _, &ifr);
        }
        if r == 0 {
            r = libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifr);
        }
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            r = libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifr);
        }
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r != 0 {
            return Err(err);
        }
    }
    Ok(())
}

fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers; as PID 1 we may power off.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}
