//! A pty pair stands in for the device: the slave is the "serial line" the gateway opens by
//! path, the master is the far end (the router's console). The test keeps its own slave
//! descriptor from `openpty` to read the line's settings from outside, as another program
//! would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
use super::*;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{LocalFlags, OutputFlags};
use std::path::PathBuf;

struct Pty {
    master: OwnedFd,
    /// The test's own descriptor on the line, for `tcgetattr`/`tcsetattr` from outside.
    slave: OwnedFd,
    path: PathBuf,
}

/// A pty pair whose descriptors are all close-on-exec from the start: tests run in threads of
/// one process, and one of them starts `sh`, which would otherwise inherit another test's
/// master and keep its line from hanging up.
/// Whether the pty is in exclusive mode (`TIOCGEXCL`); `None` under qemu-user, which does not
/// emulate that ioctl (`ENOSYS`, where a kernel would say `ENOTTY`): the native run of the same
/// test makes the check.
fn exclusive(p: &Pty) -> Option<bool> {
    match crate::sys::tty_is_exclusive(p.slave.as_fd()) {
        Ok(on) => Some(on),
        Err(Errno::ENOSYS) => None,
        Err(e) => panic!("TIOCGEXCL: {e}"),
    }
}

fn pty() -> Pty {
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let master = nix::pty::posix_openpt(flags).unwrap();
    nix::pty::grantpt(&master).unwrap();
    nix::pty::unlockpt(&master).unwrap();
    let path = PathBuf::from(nix::pty::ptsname_r(&master).unwrap());
    let slave = fcntl::open(&path, flags, Mode::empty()).unwrap();
    Pty { master: master.into(), slave, path }
}

/// Waits (generously) until `fd` polls readable, then reads what is there.
fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> nix::Result<usize> {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::from(5000u16)).unwrap(), 1, "not readable in 5 s");
    nix::unistd::read(fd, buf)
}

/// Reads from `fd` until `want.len()` bytes came, and compares.
fn expect_bytes(fd: BorrowedFd<'_>, want: &[u8]) {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < want.len() {
        let n = read_some(fd, &mut buf).unwrap();
        assert!(n > 0, "end of file after {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, want);
}

fn serial(s: &str) -> Serial {
    s.parse().unwrap()
}

#[test]
fn the_compact_form_parses_with_defaults() {
    assert_eq!(Serial::default(), serial("115200"));
    assert_eq!(Serial::default(), serial("115200,8N1"));
    assert_eq!(
        serial("9600,7E2"),
        Serial {
            baud: 9600,
            data_bits: DataBits::Seven,
            parity: Parity::Even,
            stop_bits: StopBits::Two
        }
    );
    assert_eq!(serial("57600,5o1").parity, Parity::Odd);
    assert_eq!(serial("4000000,6N1").data_bits, DataBits::Six);
    for s in ["115200,8N1", "9600,7E2", "300,5O2", "1500000,6N1"] {
        assert_eq!(serial(s).to_string(), s);
    }
}

#[test]
fn bad_serial_strings_are_refused_naming_the_bad_part() {
    let cases: &[(&str, SerialError, &str)] = &[
        ("", SerialError::Empty, "empty"),
        ("fast", SerialError::BaudNotANumber("fast".into()), "\"fast\""),
        ("+9600", SerialError::BaudNotANumber("+9600".into()), "\"+9600\""),
        (" 9600", SerialError::BaudNotANumber(" 9600".into()), "\" 9600\""),
        ("99999999999", SerialError::BaudNotANumber("99999999999".into()), "99999999999"),
        ("115201", SerialError::UnsupportedBaud(115_201), "115201"),
        ("0", SerialError::UnsupportedBaud(0), "speed 0"),
        ("115200,", SerialError::Frame(String::new()), "frame \"\""),
        ("115200,8N", SerialError::Frame("8N".into()), "\"8N\""),
        ("115200,8N1,x", SerialError::Frame("8N1,x".into()), "\"8N1,x\""),
        ("115200,8N1 ", SerialError::Frame("8N1 ".into()), "\"8N1 \""),
        ("115200,9N1", SerialError::DataBits('9'), "data bits '9'"),
        ("115200,4N1", SerialError::DataBits('4'), "data bits '4'"),
        ("115200,8X1", SerialError::Parity('X'), "parity 'X'"),
        ("115200,8M1", SerialError::Parity('M'), "parity 'M'"),
        ("115200,8N3", SerialError::StopBits('3'), "stop bits '3'"),
        ("115200,8N0", SerialError::StopBits('0'), "stop bits '0'"),
        (",8N1", SerialError::BaudNotANumber(String::new()), "speed \"\""),
    ];
    for (text, error, named) in cases {
        let got = text.parse::<Serial>().unwrap_err();
        assert_eq!(&got, error, "{text:?}");
        let shown = got.to_string();
        assert!(shown.contains(named), "{text:?}: {shown:?} does not name {named:?}");
    }
    // The list of speeds is in the message, so the fix is one read away.
    assert!(SerialError::UnsupportedBaud(1).to_string().contains("9600 19200"));
}

#[test]
fn the_line_is_raw_at_the_requested_speed_and_frame() {
    // A pty keeps speeds and stop bits but forces CS8 and no parity (Linux `pty_set_termios`),
    // so the frames here are 8N1 and 8N2; other frames are in the next test.
    let cases = [
        ("115200,8N1", BaudRate::B115200),
        ("9600,8N2", BaudRate::B9600),
        ("4000000,8N1", BaudRate::B4000000),
        ("50,8N2", BaudRate::B50),
    ];
    for (text, rate) in cases {
        let p = pty();
        if rate == BaudRate::B4000000 && exclusive(&p).is_none() {
            // qemu-user (no TIOCGEXCL: see `exclusive`) translates the termios speeds of the
            // traditional table only; the native run checks this one.
            continue;
        }
        let s = serial(text);
        let tty = Tty::open(&p.path, &s).unwrap();
        let t = termios::tcgetattr(&p.slave).unwrap();
        assert_eq!(termios::cfgetospeed(&t), rate, "{text}");
        assert_eq!(termios::cfgetispeed(&t), rate, "{text}");
        let c = t.control_flags;
        assert_eq!(c & ControlFlags::CSIZE, ControlFlags::CS8, "{text}");
        assert!(!c.intersects(ControlFlags::PARENB | ControlFlags::PARODD), "{text}");
        assert_eq!(c.contains(ControlFlags::CSTOPB), s.stop_bits == StopBits::Two, "{text}");
        assert!(c.contains(ControlFlags::CLOCAL | ControlFlags::CREAD), "{text}");
        assert!(!c.contains(ControlFlags::CRTSCTS), "{text}");
        // Raw: no line editing, echo or signals; no input or output translation; no XON/XOFF.
        for l in [LocalFlags::ICANON, LocalFlags::ECHO, LocalFlags::ISIG, LocalFlags::IEXTEN] {
            assert!(!t.local_flags.contains(l), "{text}: {l:?}");
        }
        for i in [InputFlags::ICRNL, InputFlags::IXON, InputFlags::IXOFF, InputFlags::ISTRIP] {
            assert!(!t.input_flags.contains(i), "{text}: {i:?}");
        }
        assert!(!t.output_flags.contains(OutputFlags::OPOST), "{text}");
        assert_eq!(t.control_chars[SpecialCharacterIndices::VMIN as usize], 1);
        assert_eq!(t.control_chars[SpecialCharacterIndices::VTIME as usize], 0);
        // Exclusive mode took on the pty, and is given back.
        assert_ne!(exclusive(&p), Some(false), "{text}");
        tty.close().unwrap();
        assert_ne!(exclusive(&p), Some(true), "{text}");
    }
}

#[test]
fn a_frame_the_driver_does_not_take_is_refused_and_the_line_left_as_found() {
    // The pty driver answers success to `tcsetattr` but keeps CS8 and drops PARENB, as a UART
    // driver does with a frame its hardware lacks: only the read-back catches it.
    let cases = [
        ("9600,7E2", "the driver did not take the data bits"),
        ("115200,5N1", "the driver did not take the data bits"),
        ("57600,8E1", "the driver did not take the parity"),
        ("57600,8O2", "the driver did not take the parity"),
    ];
    for (text, why) in cases {
        let p = pty();
        let before = termios::tcgetattr(&p.slave).unwrap();
        assert_eq!(Tty::open(&p.path, &serial(text)).unwrap_err(), TtyError::BadSettings(why));
        assert_eq!(termios::tcgetattr(&p.slave).unwrap(), before, "{text}");
        assert_ne!(exclusive(&p), Some(true), "{text}");
        drop(Tty::open(&p.path, &Serial::default()).unwrap());
    }
}

#[test]
fn bytes_pass_both_ways_unchanged_and_reads_do_not_block() {
    let p = pty();
    let mut tty = Tty::open(&p.path, &Serial::default()).unwrap();
    let mut buf = [0u8; 64];
    // Nothing there yet: a non-blocking read answers WouldBlock instead of waiting.
    assert_eq!(tty.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);

    // Every byte a cooked line would act on: CR, LF, ^C, ^D, ^S, ^Q, ^Z, DEL, NUL, 0xff.
    let special = b"login:\r\n\x03\x04\x13\x11\x1a\x7f\x00\xff end";
    assert_eq!(tty.write(special).unwrap(), special.len());
    expect_bytes(p.master.as_fd(), special);

    nix::unistd::write(&p.master, special).unwrap();
    expect_bytes(tty.as_fd(), special);
    assert_eq!(tty.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
}

#[test]
fn a_second_open_is_in_use_until_the_first_is_dropped() {
    let p = pty();
    let first = Tty::open(&p.path, &Serial::default()).unwrap();
    // The test runs as root: TIOCEXCL does not stop root, the lock does.
    assert_eq!(Tty::open(&p.path, &Serial::default()).unwrap_err(), TtyError::InUse);
    // The refused open changed nothing: the line still has the first one's settings.
    assert_eq!(termios::cfgetospeed(&termios::tcgetattr(&p.slave).unwrap()), BaudRate::B115200);
    assert_eq!(Tty::open(&p.path, &serial("9600")).unwrap_err(), TtyError::InUse);
    assert_eq!(termios::cfgetospeed(&termios::tcgetattr(&p.slave).unwrap()), BaudRate::B115200);
    drop(first);
    let second = Tty::open(&p.path, &serial("9600")).unwrap();
    assert_eq!(termios::cfgetospeed(&termios::tcgetattr(&p.slave).unwrap()), BaudRate::B9600);
    drop(second);
}

#[test]
fn the_saved_settings_are_restored_at_drop() {
    let p = pty();
    // Distinctive settings: 1200 7O2, cooked with echo, XON/XOFF, CR to NL, HUPCL off.
    let mut t = termios::tcgetattr(&p.slave).unwrap();
    termios::cfsetspeed(&mut t, BaudRate::B1200).unwrap();
    t.control_flags &= !(ControlFlags::CSIZE | ControlFlags::HUPCL);
    t.control_flags |= ControlFlags::CS7 | ControlFlags::PARENB | ControlFlags::PARODD;
    t.control_flags |= ControlFlags::CSTOPB;
    t.local_flags |= LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG;
    t.input_flags |= InputFlags::IXON | InputFlags::ICRNL;
    t.control_chars[SpecialCharacterIndices::VMIN as usize] = 7;
    termios::tcsetattr(&p.slave, SetArg::TCSANOW, &t).unwrap();
    let before = termios::tcgetattr(&p.slave).unwrap();

    let tty = Tty::open(&p.path, &Serial::default()).unwrap();
    let during = termios::tcgetattr(&p.slave).unwrap();
    assert_ne!(during, before);
    assert_eq!(termios::cfgetospeed(&during), BaudRate::B115200);
    drop(tty);
    assert_eq!(termios::tcgetattr(&p.slave).unwrap(), before);

    // The same through `close`, which reports the teardown's result.
    let tty = Tty::open(&p.path, &serial("9600,8N1")).unwrap();
    assert_ne!(termios::tcgetattr(&p.slave).unwrap(), before);
    tty.close().unwrap();
    assert_eq!(termios::tcgetattr(&p.slave).unwrap(), before);
}

#[test]
fn an_unplugged_line_reads_end_of_file_and_refuses_writes() {
    let p = pty();
    let mut tty = Tty::open(&p.path, &Serial::default()).unwrap();
    drop(p.master);
    // The hang-up wakes a poller: readable and hung up.
    let mut fds = [PollFd::new(tty.as_fd(), PollFlags::POLLIN)];
    assert_eq!(poll(&mut fds, PollTimeout::from(5000u16)).unwrap(), 1);
    let revents = fds[0].revents().unwrap();
    assert!(revents.contains(PollFlags::POLLHUP), "{revents:?}");
    let mut buf = [0u8; 16];
    assert_eq!(tty.read(&mut buf).unwrap(), 0, "a hung-up line reads end of file");
    assert_eq!(tty.read(&mut buf).unwrap(), 0, "and keeps doing so");
    let e = tty.write(b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // Nothing is left to restore: `close` says so, dropping is quiet.
    assert_eq!(tty.close().unwrap_err(), TtyError::Io { step: "tcflush", errno: Errno::EIO });
}

#[test]
fn what_is_not_a_serial_line_is_refused() {
    let dir = std::env::temp_dir().join(format!("wsgate-tty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("file");
    std::fs::write(&file, b"").unwrap();
    let fifo = dir.join("fifo");
    let _ = std::fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, Mode::S_IRWXU).unwrap();
    let s = Serial::default();
    assert_eq!(Tty::open(&file, &s).unwrap_err(), TtyError::NotATty("a regular file"));
    assert_eq!(Tty::open(&dir, &s).unwrap_err(), TtyError::NotATty("a directory"));
    assert_eq!(Tty::open(&fifo, &s).unwrap_err(), TtyError::NotATty("a FIFO"));
    assert_eq!(Tty::open(&dir.join("missing"), &s).unwrap_err(), TtyError::NotFound(Errno::ENOENT));
    assert_eq!(Tty::open(&file.join("below"), &s).unwrap_err(), TtyError::NotFound(Errno::ENOTDIR));
    // A character device of another class (sysfs says "mem"), refused before it is opened.
    assert_eq!(
        Tty::open(Path::new("/dev/null"), &s).unwrap_err(),
        TtyError::NotATty("a character device whose sysfs class is not tty")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_speed_without_a_termios_constant_is_refused_not_rounded() {
    let p = pty();
    let before = termios::tcgetattr(&p.slave).unwrap();
    let s = Serial { baud: 115_201, ..Serial::default() };
    assert_eq!(Tty::open(&p.path, &s).unwrap_err(), TtyError::BadSettings("unsupported speed"));
    assert_eq!(termios::tcgetattr(&p.slave).unwrap(), before);
    // The line is free afterwards.
    drop(Tty::open(&p.path, &Serial::default()).unwrap());
}

#[test]
fn the_output_queue_is_readable_until_the_line_hangs_up() {
    let p = pty();
    let tty = Tty::open(&p.path, &Serial::default()).unwrap();
    assert_eq!(tty.output_pending().unwrap(), 0);
    drop(p.master);
    assert_eq!(tty.output_pending().unwrap_err(), Errno::EIO);
}

#[test]
fn the_line_registers_with_mio() {
    let p = pty();
    let mut tty = Tty::open(&p.path, &Serial::default()).unwrap();
    let mut poll = mio::Poll::new().unwrap();
    let mut events = mio::Events::with_capacity(4);
    poll.registry().register(&mut tty, mio::Token(7), mio::Interest::READABLE).unwrap();
    nix::unistd::write(&p.master, b"ping").unwrap();
    poll.poll(&mut events, Some(std::time::Duration::from_secs(5))).unwrap();
    let ev = events.iter().next().expect("no readiness in 5 s");
    assert_eq!(ev.token(), mio::Token(7));
    assert!(ev.is_readable());
    let mut buf = [0u8; 8];
    assert_eq!(tty.read(&mut buf).unwrap(), 4);
    poll.registry().deregister(&mut tty).unwrap();
}

/// Whether a process without `CAP_SYS_ADMIN` can open `path` read-write: an `sh` run as
/// nobody when the test is root, this process otherwise. The error text when it cannot.
fn unprivileged_open(path: &Path) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        return std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec 3<>{}", path.display()))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn other_users_cannot_open_the_line_while_it_is_open() {
    use std::os::unix::fs::PermissionsExt;
    let p = pty();
    std::fs::set_permissions(&p.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    unprivileged_open(&p.path).unwrap();
    let tty = Tty::open(&p.path, &Serial::default()).unwrap();
    let e = unprivileged_open(&p.path).unwrap_err();
    assert!(e.to_lowercase().contains("busy"), "{e}");
    drop(tty);
    unprivileged_open(&p.path).unwrap();
}
