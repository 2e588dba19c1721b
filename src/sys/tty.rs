//! Serial lines as backends: a router's console (`/dev/ttyS0`, a USB adapter's
//! `/dev/ttyUSB0`) opened for one connection at a time, in raw mode, without ever blocking the
//! event loop.
//!
//! This module owns the OS side only: the line settings ([`Serial`], parsed from the compact
//! form `115200,8N1`), opening, locking and configuring the device ([`Tty::open`]), its
//! descriptor for mio and `read`/`write`, and the teardown that gives the line back as it was
//! found. It does not own the connection, the configuration file or the loop.
//!
//! # Opening
//!
//! 1. `stat`: the path must be a character device. Where sysfs describes the device
//!    (`/sys/dev/char/MAJ:MIN/subsystem`), its class must be `tty`: a character device of
//!    another class is refused without being opened, since opening some devices acts (opening
//!    `/dev/watchdog` arms the watchdog).
//! 2. `open(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)`: `O_NOCTTY` keeps the line from
//!    becoming the gateway's controlling terminal, `O_NONBLOCK` keeps `open` from waiting for
//!    carrier and makes every read and write answer `EAGAIN` instead of waiting. `fstat` must
//!    name the device checked in step 1, and `isatty` must hold.
//! 3. `flock(LOCK_EX | LOCK_NB)`: the lock that makes a line serve one connection. It belongs
//!    to the open file description, so it holds against root and between two opens in one
//!    process (each `open` is its own description): a second [`Tty::open`] of a line already
//!    open fails with [`TtyError::InUse`]. Programs that `flock` their line (picocom, for one)
//!    are kept out the same way. UUCP lock files (`/var/lock/LCK..ttyS0`) are not used.
//! 4. `tcgetattr` saves the line's settings; from here a failure drops the half-made [`Tty`],
//!    whose teardown restores them.
//! 5. `TIOCEXCL` where the driver takes it: further opens by processes without
//!    `CAP_SYS_ADMIN` then fail with `EBUSY` (so a getty or a shell user cannot type into the
//!    line under the gateway). It does not stop root; the lock does.
//! 6. Raw mode (`cfmakeraw`: no echo, no line editing, no signals, no CR/LF translation,
//!    8-bit clean), the speed, data bits, parity and stop bits of [`Serial`], `CLOCAL`
//!    (ignore modem lines: a console has no carrier) and `CREAD`, no flow control (neither
//!    `CRTSCTS` nor `IXON`/`IXOFF`: a router console has no RTS/CTS wired, and XON/XOFF would
//!    eat bytes 0x11 and 0x13). Parity is generated and not checked (`INPCK` off): a byte that
//!    arrives with bad parity is passed on as received. `HUPCL` is left as the line had it.
//!    `VMIN` 1, `VTIME` 0 (they do not apply to non-blocking reads).
//!    The settings are applied with `TCSANOW`, then input queued before the open (received
//!    at whatever speed the line had) is discarded, and the settings are read back:
//!    `tcsetattr` succeeds when any part of a change took, so a driver that refused the
//!    speed or the frame is caught here, not left as a silently different line.
//!
//! # Teardown ([`Drop`], or [`Tty::close`] to see the error)
//!
//! Pending output and input are discarded (`tcflush(TCIOFLUSH)`), the saved settings are put
//! back with `TCSANOW`, `TIOCNXCL` and the lock are released, and the descriptor is closed.
//! Draining is not an option in a single-threaded non-blocking gateway: `tcdrain` and
//! `TCSADRAIN` wait until the UART has sent everything, whatever `O_NONBLOCK` says (4 KiB at
//! 9600 baud is four seconds; a line stopped by flow control is forever), and the kernel's
//! last `close` of a serial port waits the same way for up to `closing_wait` (30 s by
//! default) unless the output queue is empty. Flushing first makes every step immediate, and
//! also keeps queued bytes from going out at the restored, perhaps different, speed. The cost:
//! bytes written in the last moments before the teardown may not reach the device. A caller
//! that wants them sent waits for [`Tty::output_pending`] to reach 0 (on a timer) before it
//! drops the line. On a hung-up line (an unplugged USB adapter) every step fails with `EIO`
//! and there is nothing left to restore; [`Drop`] ignores the errors, [`Tty::close`] returns
//! the first.
//!
//! # Errors and what the gateway answers
//!
//! Each [`TtyError`] maps to one answer, so the client learns which of "no such line", "busy"
//! and "broken" it met, and the log line says the rest:
//!
//! * `NotFound`: no such path, or no device behind the node (`ENXIO`, `ENODEV`: a USB adapter
//!   that is not plugged in). HTTP 404.
//! * `InUse`: another open holds the line (its lock, or `EBUSY` from `TIOCEXCL`). HTTP 503,
//!   "in use"; the client may retry.
//! * `Denied`: `EACCES`/`EPERM`/`EROFS` (the gateway's user is not in the line's group, often
//!   `dialout`). HTTP 502, logged as a deployment error.
//! * `NotATty`: not a character device, a sysfs class other than `tty`, or `isatty` false. A
//!   config error when the configuration is checked; HTTP 502 at run time (the node changed).
//! * `BadSettings`: a speed without a termios constant, or settings the driver did not take.
//!   A config error when the configuration is checked; HTTP 502 at run time.
//! * `Io`: any other failure (`EIO` from a line that went away during the open). HTTP 502.
//!
//! [`SerialError`] is a parse error of the setting text: always a config error.
//!
//! # Reading and writing
//!
//! [`Tty`] implements [`Read`] and [`Write`] (also through `&Tty`) with plain `read(2)` and
//! `write(2)`, so `WouldBlock` means "wait for readiness". Register it with mio as it is
//! ([`mio::event::Source`]), or through its descriptor ([`AsFd`], [`AsRawFd`]). When the device
//! goes away (USB adapter unplugged, a pty's master closed), the kernel hangs the line up: the
//! descriptor polls readable and hung up (`POLLHUP`), `read` returns `Ok(0)` (end of file)
//! and `write` fails with `EIO`. A read that races the hang-up (the far end is closed, the
//! line is not hung up yet) fails with `EIO` instead of returning 0. The gateway treats both
//! `Ok(0)` and `EIO` from a read as the backend closing.
use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;
use std::str::FromStr;

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::libc;
use nix::sys::stat::{self, Mode, SFlag};
use nix::sys::termios::{
    self, BaudRate, ControlFlags, FlushArg, InputFlags, SetArg, SpecialCharacterIndices, Termios,
};

/// Number of data bits in a character.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataBits {
    /// 5 bits (`CS5`).
    Five,
    /// 6 bits (`CS6`).
    Six,
    /// 7 bits (`CS7`).
    Seven,
    /// 8 bits (`CS8`), the default.
    Eight,
}

/// Parity bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit (`N`), the default.
    None,
    /// Even parity (`E`: `PARENB`).
    Even,
    /// Odd parity (`O`: `PARENB | PARODD`).
    Odd,
}

/// Number of stop bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopBits {
    /// 1 stop bit, the default.
    One,
    /// 2 stop bits (`CSTOPB`).
    Two,
}

/// The settings of a serial line: speed and character frame. Written `115200,8N1` (speed, then
/// data bits, parity `N`/`E`/`O` and stop bits); `115200` alone means `115200,8N1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Serial {
    /// Bits per second; one of the speeds termios has a constant for ([`Serial::SPEEDS`]).
    pub baud: u32,
    /// Data bits per character.
    pub data_bits: DataBits,
    /// Parity bit.
    pub parity: Parity,
    /// Stop bits.
    pub stop_bits: StopBits,
}

impl Default for Serial {
    /// 115200 8N1: what router and board consoles use.
    fn default() -> Self {
        Self {
            baud: 115_200,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
        }
    }
}

/// Why a serial setting text is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialError {
    /// The text is empty.
    Empty,
    /// The speed is not a decimal number.
    BaudNotANumber(String),
    /// The speed is a number termios has no constant for (0 included: it means "hang up").
    UnsupportedBaud(u32),
    /// The part after the comma is not three characters.
    Frame(String),
    /// The data bits are not 5 to 8.
    DataBits(char),
    /// The parity is not `N`, `E` or `O`.
    Parity(char),
    /// The stop bits are not 1 or 2.
    StopBits(char),
}

impl fmt::Display for SerialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORM: &str = "expected a speed and an optional frame, like 115200 or 9600,7E2";
        match self {
            Self::Empty => write!(f, "empty serial setting ({FORM})"),
            Self::BaudNotANumber(s) => write!(f, "speed {s:?} is not a number ({FORM})"),
            Self::UnsupportedBaud(b) => {
                write!(f, "speed {b} is not one the serial driver supports (")?;
                for (i, (speed, _)) in Serial::SPEEDS.iter().enumerate() {
                    write!(f, "{}{speed}", if i == 0 { "" } else { " " })?;
                }
                write!(f, ")")
            }
            Self::Frame(s) => {
                write!(f, "frame {s:?} is not data bits, parity and stop bits, like 8N1 ({FORM})")
            }
            Self::DataBits(c) => write!(f, "data bits {c:?} are not 5, 6, 7 or 8"),
            Self::Parity(c) => write!(f, "parity {c:?} is not N (none), E (even) or O (odd)"),
            Self::StopBits(c) => write!(f, "stop bits {c:?} are not 1 or 2"),
        }
    }
}

impl std::error::Error for SerialError {}

impl FromStr for Serial {
    type Err = SerialError;

    /// Parses `SPEED` or `SPEED,FRAME`: `115200`, `115200,8N1`, `9600,7E2`. Parity may be
    /// written in lower case; no spaces are allowed.
    fn from_str(s: &str) -> Result<Self, SerialError> {
        if s.is_empty() {
            return Err(SerialError::Empty);
        }
        let (speed, frame) = match s.split_once(',') {
            Some((speed, frame)) => (speed, Some(frame)),
            None => (s, None),
        };
        let baud = match speed.parse::<u32>() {
            Ok(b) if speed.bytes().all(|c| c.is_ascii_digit()) => b,
            _ => return Err(SerialError::BaudNotANumber(speed.to_owned())),
        };
        if baud_rate(baud).is_none() {
            return Err(SerialError::UnsupportedBaud(baud));
        }
        let mut serial = Serial { baud, ..Serial::default() };
        let Some(frame) = frame else { return Ok(serial) };
        let mut chars = frame.chars();
        let (Some(d), Some(p), Some(s), None) =
            (chars.next(), chars.next(), chars.next(), chars.next())
        else {
            return Err(SerialError::Frame(frame.to_owned()));
        };
        serial.data_bits = match d {
            '5' => DataBits::Five,
            '6' => DataBits::Six,
            '7' => DataBits::Seven,
            '8' => DataBits::Eight,
            _ => return Err(SerialError::DataBits(d)),
        };
        serial.parity = match p {
            'N' | 'n' => Parity::None,
            'E' | 'e' => Parity::Even,
            'O' | 'o' => Parity::Odd,
            _ => return Err(SerialError::Parity(p)),
        };
        serial.stop_bits = match s {
            '1' => StopBits::One,
            '2' => StopBits::Two,
            _ => return Err(SerialError::StopBits(s)),
        };
        Ok(serial)
    }
}

impl fmt::Display for Serial {
    /// The compact form, always with the frame: `115200,8N1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = match self.data_bits {
            DataBits::Five => 5,
            DataBits::Six => 6,
            DataBits::Seven => 7,
            DataBits::Eight => 8,
        };
        let p = match self.parity {
            Parity::None => 'N',
            Parity::Even => 'E',
            Parity::Odd => 'O',
        };
        let s = match self.stop_bits {
            StopBits::One => 1,
            StopBits::Two => 2,
        };
        write!(f, "{},{d}{p}{s}", self.baud)
    }
}

impl Serial {
    /// The speeds a line can be set to: Linux's termios constants, `B0` (hang up) left out.
    /// Other speeds are refused, never rounded to a neighbour.
    pub const SPEEDS: &'static [(u32, BaudRate)] = &[
        (50, BaudRate::B50),
        (75, BaudRate::B75),
        (110, BaudRate::B110),
        (134, BaudRate::B134),
        (150, BaudRate::B150),
        (200, BaudRate::B200),
        (300, BaudRate::B300),
        (600, BaudRate::B600),
        (1200, BaudRate::B1200),
        (1800, BaudRate::B1800),
        (2400, BaudRate::B2400),
        (4800, BaudRate::B4800),
        (9600, BaudRate::B9600),
        (19200, BaudRate::B19200),
        (38400, BaudRate::B38400),
        (57600, BaudRate::B57600),
        (115_200, BaudRate::B115200),
        (230_400, BaudRate::B230400),
        (460_800, BaudRate::B460800),
        (500_000, BaudRate::B500000),
        (576_000, BaudRate::B576000),
        (921_600, BaudRate::B921600),
        (1_000_000, BaudRate::B1000000),
        (1_152_000, BaudRate::B1152000),
        (1_500_000, BaudRate::B1500000),
        (2_000_000, BaudRate::B2000000),
        #[cfg(not(target_arch = "sparc64"))]
        (2_500_000, BaudRate::B2500000),
        #[cfg(not(target_arch = "sparc64"))]
        (3_000_000, BaudRate::B3000000),
        #[cfg(not(target_arch = "sparc64"))]
        (3_500_000, BaudRate::B3500000),
        #[cfg(not(target_arch = "sparc64"))]
        (4_000_000, BaudRate::B4000000),
    ];

    /// The `c_cflag` bits of this frame (`CSIZE`, `PARENB`, `PARODD`, `CSTOPB`).
    fn frame_flags(&self) -> ControlFlags {
        let mut flags = match self.data_bits {
            DataBits::Five => ControlFlags::CS5,
            DataBits::Six => ControlFlags::CS6,
            DataBits::Seven => ControlFlags::CS7,
            DataBits::Eight => ControlFlags::CS8,
        };
        match self.parity {
            Parity::None => {}
            Parity::Even => flags |= ControlFlags::PARENB,
            Parity::Odd => flags |= ControlFlags::PARENB | ControlFlags::PARODD,
        }
        if self.stop_bits == StopBits::Two {
            flags |= ControlFlags::CSTOPB;
        }
        flags
    }
}

/// The termios constant for `baud` bits per second, if there is one.
fn baud_rate(baud: u32) -> Option<BaudRate> {
    Serial::SPEEDS.iter().find(|(speed, _)| *speed == baud).map(|&(_, rate)| rate)
}

/// The `c_cflag` bits [`Tty::open`] sets and reads back: speed, frame, `CLOCAL`, `CREAD` and
/// hardware flow control.
const CHECKED: ControlFlags = ControlFlags::CBAUD
    .union(ControlFlags::CSIZE)
    .union(ControlFlags::PARENB)
    .union(ControlFlags::PARODD)
    .union(ControlFlags::CSTOPB)
    .union(ControlFlags::CLOCAL)
    .union(ControlFlags::CREAD)
    .union(ControlFlags::CRTSCTS)
    .union(CMSPAR);

/// Mark/space ("stick") parity. Linux has it on every architecture this gateway targets, with
/// this value (`asm-generic/termbits.h`, and MIPS's own `termbits.h`), but the `libc` crate
/// does not name it for MIPS, so nix has no constant there.
const CMSPAR: ControlFlags = ControlFlags::from_bits_retain(0o10_000_000_000);

/// Why a serial line could not be opened; see the module documentation for what the gateway
/// answers to each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TtyError {
    /// No such path, or the node has no device behind it (`ENOENT`, `ENOTDIR`, `ENXIO`,
    /// `ENODEV`).
    NotFound(Errno),
    /// Another open holds the line (its lock, or `TIOCEXCL` answering `EBUSY`).
    InUse,
    /// The gateway's user may not open the line (`EACCES`, `EPERM`, `EROFS`).
    Denied(Errno),
    /// The path is not a terminal; the text says what it is.
    NotATty(&'static str),
    /// The line refused the settings: no termios constant for the speed, or the driver did
    /// not apply what was asked (the text names which part).
    BadSettings(&'static str),
    /// Another system call failed; `step` names it.
    Io {
        /// The call that failed (`open`, `tcgetattr`, ...).
        step: &'static str,
        /// Its error.
        errno: Errno,
    },
}

impl fmt::Display for TtyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(e) => write!(f, "no such serial line ({})", super::ErrnoText(*e)),
            Self::InUse => write!(f, "serial line in use"),
            Self::Denied(e) => write!(f, "serial line not accessible ({})", super::ErrnoText(*e)),
            Self::NotATty(what) => write!(f, "not a serial line: {what}"),
            Self::BadSettings(what) => write!(f, "serial line refused the settings: {what}"),
            Self::Io { step, errno } => {
                write!(f, "serial line: {step}: {}", super::ErrnoText(*errno))
            }
        }
    }
}

impl std::error::Error for TtyError {}

/// The error of `open(2)` or `stat(2)` on the line's path.
fn path_error(step: &'static str, errno: Errno) -> TtyError {
    match errno {
        Errno::ENOENT | Errno::ENOTDIR | Errno::ENXIO | Errno::ENODEV => TtyError::NotFound(errno),
        Errno::EBUSY => TtyError::InUse,
        Errno::EACCES | Errno::EPERM | Errno::EROFS => TtyError::Denied(errno),
        Errno::EISDIR => TtyError::NotATty("a directory"),
        errno => TtyError::Io { step, errno },
    }
}

/// What a file of mode `mode` is, for [`TtyError::NotATty`].
fn kind(mode: libc::mode_t) -> &'static str {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFLNK => "a symbolic link",
        SFlag::S_IFCHR => "a character device that is not a terminal",
        _ => "not a device",
    }
}

/// Whether sysfs says device `rdev` is of a class other than `tty`. `false` when sysfs does not
/// describe it (not mounted, or a device without a sysfs node, as pty slaves are): `isatty`
/// after the open decides then.
fn sysfs_says_not_tty(rdev: libc::dev_t) -> bool {
    let link = format!("/sys/dev/char/{}:{}/subsystem", libc::major(rdev), libc::minor(rdev));
    match std::fs::read_link(link) {
        Ok(class) => class.file_name().is_some_and(|c| c != "tty"),
        Err(_) => false,
    }
}

/// An open serial line in raw mode, locked for its one user. Dropping it restores the line's
/// settings and releases it (module documentation: Teardown).
#[derive(Debug)]
pub struct Tty {
    fd: OwnedFd,
    /// The settings the line had before [`Tty::open`], put back at teardown: the C struct,
    /// less than half the size of nix's [`Termios`], which keeps a copy next to its fields
    /// (a `Tty` sits in every connection slot's backend).
    saved: libc::termios,
    /// Whether `TIOCEXCL` took (and `TIOCNXCL` is owed).
    exclusive: bool,
    /// Whether the teardown has run (by [`Tty::close`]).
    closed: bool,
}

impl Tty {
    /// Opens the line at `path`, locks it, and sets it to raw mode with `serial`'s settings
    /// (module documentation: Opening). Never blocks.
    ///
    /// # Errors
    /// [`TtyError`]: each variant says what the gateway answers.
    pub fn open(path: &Path, serial: &Serial) -> Result<Tty, TtyError> {
        let rate = baud_rate(serial.baud).ok_or(TtyError::BadSettings("unsupported speed"))?;
        let st = stat::stat(path).map_err(|e| path_error("stat", e))?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFCHR {
            return Err(TtyError::NotATty(kind(st.st_mode)));
        }
        if sysfs_says_not_tty(st.st_rdev) {
            return Err(TtyError::NotATty("a character device whose sysfs class is not tty"));
        }
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = fcntl::open(path, flags, Mode::empty()).map_err(|e| path_error("open", e))?;
        let fst = stat::fstat(&fd).map_err(|errno| TtyError::Io { step: "fstat", errno })?;
        if fst.st_rdev != st.st_rdev || fst.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFCHR.bits()
        {
            return Err(TtyError::NotATty("the path changed while it was opened"));
        }
        match nix::unistd::isatty(&fd) {
            Ok(true) => {}
            Ok(false) | Err(Errno::ENOTTY | Errno::EINVAL) => {
                return Err(TtyError::NotATty(kind(st.st_mode)))
            }
            Err(errno) => return Err(TtyError::Io { step: "isatty", errno }),
        }
        match super::flock_exclusive(fd.as_fd(), true) {
            Ok(()) => {}
            Err(Errno::EWOULDBLOCK) => return Err(TtyError::InUse),
            Err(errno) => return Err(TtyError::Io { step: "flock", errno }),
        }
        // Locked: this open owns the line. From here an error drops `tty`, which restores the
        // saved settings and unlocks.
        let saved =
            termios::tcgetattr(&fd).map_err(|errno| TtyError::Io { step: "tcgetattr", errno })?;
        let mut tty = Tty { fd, saved: saved.clone().into(), exclusive: false, closed: false };
        tty.exclusive = super::tty_exclusive(tty.fd.as_fd(), true).is_ok();

        let mut want = saved;
        termios::cfmakeraw(&mut want);
        want.control_flags &= !(ControlFlags::CSIZE
            | ControlFlags::PARENB
            | ControlFlags::PARODD
            | CMSPAR
            | ControlFlags::CSTOPB
            | ControlFlags::CRTSCTS);
        want.control_flags |= serial.frame_flags() | ControlFlags::CLOCAL | ControlFlags::CREAD;
        want.input_flags &= !(InputFlags::IXON | InputFlags::IXOFF | InputFlags::IXANY);
        for (index, value) in
            [(SpecialCharacterIndices::VMIN, 1), (SpecialCharacterIndices::VTIME, 0)]
        {
            if let Some(c) = want.control_chars.get_mut(index as usize) {
                *c = value;
            }
        }
        // The speed goes in the Bxxx bits of c_cflag, as glibc's and musl's cfsetspeed write
        // it on Linux; CIBAUD zero makes the input speed the output speed. Not through
        // cfsetspeed itself: the libc crate binds the cf*speed functions to versioned glibc
        // symbols, which a static glibc link (the armv7-gnueabihf build) cannot resolve.
        let speed = ControlFlags::from_bits_retain(rate as libc::tcflag_t);
        if speed.bits() & !ControlFlags::CBAUD.bits() != 0 {
            return Err(TtyError::BadSettings("unsupported speed"));
        }
        want.control_flags &= !(ControlFlags::CBAUD | ControlFlags::CIBAUD);
        want.control_flags |= speed;
        termios::tcsetattr(&tty.fd, SetArg::TCSANOW, &want)
            .map_err(|errno| TtyError::Io { step: "tcsetattr", errno })?;
        termios::tcflush(&tty.fd, FlushArg::TCIFLUSH)
            .map_err(|errno| TtyError::Io { step: "tcflush", errno })?;

        let got = termios::tcgetattr(&tty.fd)
            .map_err(|errno| TtyError::Io { step: "tcgetattr", errno })?;
        let differs = |mask: ControlFlags| got.control_flags & mask != want.control_flags & mask;
        if differs(ControlFlags::CBAUD) {
            return Err(TtyError::BadSettings("the driver did not take the speed"));
        }
        if differs(ControlFlags::CSIZE) {
            return Err(TtyError::BadSettings("the driver did not take the data bits"));
        }
        if differs(ControlFlags::PARENB | ControlFlags::PARODD | CMSPAR) {
            return Err(TtyError::BadSettings("the driver did not take the parity"));
        }
        if differs(ControlFlags::CSTOPB) {
            return Err(TtyError::BadSettings("the driver did not take the stop bits"));
        }
        if differs(CHECKED) || got.local_flags != want.local_flags {
            return Err(TtyError::BadSettings("the driver did not take raw mode"));
        }
        Ok(tty)
    }

    /// Bytes written and not yet sent by the UART (`TIOCOUTQ`).
    ///
    /// # Errors
    /// `EIO` on a hung-up line.
    pub fn output_pending(&self) -> nix::Result<usize> {
        super::tty_output_queue(self.fd.as_fd())
    }

    /// The teardown of [`Drop`], returning the first error (the later steps run regardless).
    ///
    /// # Errors
    /// The first failing step's error; `EIO` on a line that was unplugged.
    pub fn close(mut self) -> Result<(), TtyError> {
        self.teardown()
    }

    /// Flush, restore the saved settings, `TIOCNXCL`, unlock (module documentation: Teardown).
    /// The descriptor closes when `self.fd` drops.
    fn teardown(&mut self) -> Result<(), TtyError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let fd = self.fd.as_fd();
        let flushed = termios::tcflush(fd, FlushArg::TCIOFLUSH)
            .map_err(|errno| TtyError::Io { step: "tcflush", errno });
        let restored = termios::tcsetattr(fd, SetArg::TCSANOW, &Termios::from(self.saved))
            .map_err(|errno| TtyError::Io { step: "tcsetattr", errno });
        let shared = if self.exclusive {
            super::tty_exclusive(fd, false)
                .map_err(|errno| TtyError::Io { step: "TIOCNXCL", errno })
        } else {
            Ok(())
        };
        let unlocked = super::flock_exclusive(fd, false)
            .map_err(|errno| TtyError::Io { step: "flock", errno });
        flushed.and(restored).and(shared).and(unlocked)
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        // Nothing to report to: a caller that wants the error calls `close`.
        let _ = self.teardown();
    }
}

impl AsFd for Tty {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Tty {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Read for &Tty {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(nix::unistd::read(&self.fd, buf)?)
    }
}

impl Write for &Tty {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(nix::unistd::write(&self.fd, buf)?)
    }

    /// Nothing is buffered here; the kernel's queue drains on its own (see
    /// [`Tty::output_pending`]).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Tty {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Tty {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl mio::event::Source for Tty {
    fn register(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &mio::Registry,
        token: mio::Token,
        interests: mio::Interest,
    ) -> io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &mio::Registry) -> io::Result<()> {
        mio::unix::SourceFd(&self.fd.as_raw_fd()).deregister(registry)
    }
}

#[cfg(test)]
mod tests;
