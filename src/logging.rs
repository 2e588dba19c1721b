//! Log lines, one per event, prefixed `wsgate: `. Connection lines carry
//! `conn=<slot>:<gen> peer=<addr>`.
//!
//! # Sinks
//!
//! Until [`install`] is called (and when it is given nothing), lines go to stderr. [`install`]
//! sets the sinks once for the life of the process:
//!
//! * a log file (`-L FILE`, `log-file`): opened by the caller before the privilege drop,
//!   `O_APPEND`, so every line is one `write` and lines of the privileged parent and of the
//!   serving child never interleave;
//! * syslog (`--syslog`, `syslog = true;`): RFC 3164 datagrams on the UNIX datagram socket
//!   `/dev/log` (or `$WSGATE_SYSLOG_SOCKET`), facility daemon, severity from the level
//!   (warning 4, info 6, debug 7), tag `wsgate[PID]:`, no timestamp (syslogd adds one). One
//!   non-blocking `send` per line; a line the socket cannot take at once is dropped, never
//!   waited for, and the count is reported (`N log lines lost`) when a datagram gets through
//!   again. When syslogd is gone, each line tries one reconnect and
//!   otherwise goes to stderr (with a single warning per outage).
//!
//! [`announce`] lines (start-up banner, fatal errors) go to stderr as well as to the sinks.
//!
//! # No allocation
//!
//! A line is formatted once into a fixed stack buffer ([`LineBuf`], 1 KiB, cut at a character
//! boundary and ended with `...` when longer), then written with one system call per sink. No
//! heap allocation, so logging is allowed on the relay path.
//!
//! # Rate limit
//!
//! Every refused handshake logs a line, so an attacker could otherwise flood the log (and the
//! flash it lives on). Lines at [`WARN`] and [`INFO`] about connection events (those logged
//! with [`conn_log!`](crate::conn_log), never those of [`log!`](crate::log)) pass a token bucket: at most
//! [`DEFAULT_RATE`] lines per second on average, bursts of [`DEFAULT_BURST`]. Lines refused by
//! the bucket are counted; when logging resumes, the line is preceded by one
//! `N log lines suppressed` line (during a long flood, at most one such line per second; the
//! count carries over). The bucket and the count live in a thread-local `Cell`: the
//! gateway runs one thread.

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// How much a line matters; lines above the level set with [`set_level`] are not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    /// Errors and warnings.
    Warn = 0,
    /// One line per connection opened and closed.
    Info = 1,
    /// Everything else.
    Debug = 2,
}

impl Level {
    /// syslog severity: warning (4), info (6), debug (7).
    #[must_use]
    pub const fn severity(self) -> u8 {
        match self {
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

/// [`Level::Warn`], as call sites spell it: `log!(WARN, ...)`.
pub const WARN: Level = Level::Warn;
/// [`Level::Info`].
pub const INFO: Level = Level::Info;
/// [`Level::Debug`].
pub const DEBUG: Level = Level::Debug;

/// Sets the verbosity: 0 writes warnings only, 1 connection lines too, 2 and more everything.
pub fn set_level(verbosity: u8) {
    LEVEL.store(verbosity, Ordering::Relaxed);
}

/// Would a line at `level` be written?
#[must_use]
pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

// ---- the line buffer ---------------------------------------------------------------------

/// Largest syslog datagram (RFC 3164 §4.1), and so the size of every line.
pub const LINE_MAX: usize = 1024;
/// Room before the text for the longest prefix: `<31>wsgate[4294967295]: ` is 25 bytes.
const HEAD: usize = 32;
/// Longest text of a line.
pub const TEXT_MAX: usize = LINE_MAX - HEAD;
/// What ends a cut line.
const ELLIPSIS: &[u8] = b"...";

/// One formatted line on the stack: `[prefix room | text | '\n']`.
#[derive(Debug)]
pub struct LineBuf {
    buf: [u8; HEAD + TEXT_MAX + 1],
    len: usize,
    cut: bool,
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuf {
    /// An empty line.
    #[must_use]
    pub const fn new() -> Self {
        Self { buf: [0; HEAD + TEXT_MAX + 1], len: 0, cut: false }
    }

    /// Formats `args` as the line's text (replacing what was there). Text longer than
    /// [`TEXT_MAX`] is cut at a character boundary and ends with `...`; CR and LF become
    /// spaces, so one event is always one line.
    pub fn format(&mut self, args: fmt::Arguments<'_>) -> &mut Self {
        self.len = 0;
        self.cut = false;
        let _ = self.write_fmt(args);
        if self.cut {
            let mut end = self.len.min(TEXT_MAX - ELLIPSIS.len());
            // Back off to the start of a UTF-8 sequence.
            while end > 0 && self.text_byte(end).is_some_and(|b| b & 0xC0 == 0x80) {
                end -= 1;
            }
            if let Some(dst) = self.buf.get_mut(HEAD + end..HEAD + end + ELLIPSIS.len()) {
                dst.copy_from_slice(ELLIPSIS);
            }
            self.len = end + ELLIPSIS.len();
        }
        self
    }

    fn text_byte(&self, i: usize) -> Option<u8> {
        self.buf.get(HEAD + i).copied()
    }

    /// The text, without prefix or newline.
    #[must_use]
    pub fn text(&self) -> &[u8] {
        self.buf.get(HEAD..HEAD + self.len).unwrap_or_default()
    }

    /// `wsgate: <text>\n`, for stderr and the log file.
    pub fn plain(&mut self) -> &[u8] {
        self.with_prefix(b"wsgate: ", true)
    }

    /// `<PRI>wsgate[PID]: <text>`, the syslog datagram for a line at `level` (facility
    /// daemon).
    pub fn syslog(&mut self, level: Level, pid: u32) -> &[u8] {
        let mut head = Cursor { buf: [0; HEAD], len: 0 };
        let _ = write!(head, "<{}>wsgate[{pid}]: ", FACILITY_DAEMON * 8 + level.severity());
        let Cursor { buf, len } = head;
        self.with_prefix(buf.get(..len).unwrap_or_default(), false)
    }

    fn with_prefix(&mut self, prefix: &[u8], newline: bool) -> &[u8] {
        let start = HEAD.saturating_sub(prefix.len());
        if let Some(dst) = self.buf.get_mut(start..HEAD) {
            dst.copy_from_slice(prefix);
        }
        let mut end = HEAD + self.len;
        if newline {
            if let Some(b) = self.buf.get_mut(end) {
                *b = b'\n';
                end += 1;
            }
        }
        self.buf.get(start..end).unwrap_or_default()
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = TEXT_MAX - self.len;
        let (take, full) = if s.len() > room { (room, true) } else { (s.len(), false) };
        let (Some(dst), Some(src)) =
            (self.buf.get_mut(HEAD + self.len..HEAD + self.len + take), s.as_bytes().get(..take))
        else {
            return Err(fmt::Error);
        };
        for (d, &c) in dst.iter_mut().zip(src) {
            *d = if c == b'\n' || c == b'\r' { b' ' } else { c };
        }
        self.len += take;
        if full {
            // Stop formatting: the rest would be thrown away anyway.
            self.cut = true;
            return Err(fmt::Error);
        }
        Ok(())
    }
}

/// A small fixed buffer for the syslog header.
struct Cursor {
    buf: [u8; HEAD],
    len: usize,
}

impl fmt::Write for Cursor {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let dst = self.buf.get_mut(self.len..self.len + s.len()).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// syslog facility `daemon` (3).
const FACILITY_DAEMON: u8 = 3;

// ---- the rate limit ------------------------------------------------------------------------

/// Connection lines per second, on average.
pub const DEFAULT_RATE: u32 = 20;
/// Connection lines in a burst.
pub const DEFAULT_BURST: u32 = 50;

static RATE: AtomicU32 = AtomicU32::new(DEFAULT_RATE);
static BURST: AtomicU32 = AtomicU32::new(DEFAULT_BURST);

/// A duration in seconds with one decimal, rounded to the nearest tenth (`12.3`), as log lines
/// show how long something took. Integer arithmetic: formatting a float would bring core's
/// float printing (about 8 KB of the shipped armv7 gateway) for these two digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = self
            .0
            .as_secs()
            .saturating_mul(10)
            .saturating_add(u64::from((self.0.subsec_millis() + 50) / 100));
        write!(f, "{}.{}", tenths / 10, tenths % 10)
    }
}

/// Sets the rate limit of connection lines: `per_second` on average (0: no limit), bursts of
/// the larger of [`DEFAULT_BURST`] and `per_second`.
pub fn set_rate(per_second: u32) {
    RATE.store(per_second, Ordering::Relaxed);
    BURST.store(per_second.max(DEFAULT_BURST), Ordering::Relaxed);
}

/// A token bucket counting in thousandths of a line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    milli: u64,
    last: Option<Instant>,
}

impl Bucket {
    /// An unused bucket: full at its first use.
    #[must_use]
    pub const fn new() -> Self {
        Self { milli: 0, last: None }
    }

    /// Takes a token at `now` if there is one; refills at `rate` per second up to `burst`.
    /// A `rate` of 0 admits everything.
    pub fn admit(&mut self, now: Instant, rate: u32, burst: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let cap = u64::from(burst.max(1)) * 1000;
        self.milli = match self.last {
            None => cap,
            Some(last) => {
                let nanos = now.saturating_duration_since(last).as_nanos();
                let add = nanos.saturating_mul(u128::from(rate)) / 1_000_000;
                u64::try_from(add).unwrap_or(u64::MAX).saturating_add(self.milli).min(cap)
            }
        };
        self.last = Some(now);
        if self.milli >= 1000 {
            self.milli -= 1000;
            true
        } else {
            false
        }
    }
}

thread_local! {
    static BUCKET: Cell<Bucket> = const { Cell::new(Bucket::new()) };
    static SUPPRESSED: Cell<u64> = const { Cell::new(0) };
    static LAST_SUMMARY: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Where a line comes from: connection events are rate-limited, the service's own lines not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A connection event (anyone on the network can cause one).
    Connection,
    /// Start-up, signals, reloads, init.d scripts.
    Service,
}

fn admit_now() -> bool {
    let (rate, burst) = (RATE.load(Ordering::Relaxed), BURST.load(Ordering::Relaxed));
    if rate == 0 {
        return true;
    }
    let now = Instant::now();
    BUCKET
        .try_with(|b| {
            let mut bucket = b.get();
            let ok = bucket.admit(now, rate, burst);
            b.set(bucket);
            ok
        })
        .unwrap_or(true)
}

fn count_suppressed(n: u64) {
    let _ = SUPPRESSED.try_with(|s| s.set(s.get().saturating_add(n)));
}

// ---- the sinks -----------------------------------------------------------------------------

/// The syslog socket when `$WSGATE_SYSLOG_SOCKET` does not name another.
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// The syslog socket to use: `$WSGATE_SYSLOG_SOCKET` or [`SYSLOG_SOCKET`].
#[must_use]
pub fn syslog_path() -> PathBuf {
    std::env::var_os("WSGATE_SYSLOG_SOCKET")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(SYSLOG_SOCKET), PathBuf::from)
}

/// A non-blocking datagram socket connected to the syslog socket at `path`.
///
/// # Errors
/// The `socket` or `connect` error (`ENOENT` when no syslogd listens there).
pub fn connect_syslog(path: PathBuf) -> io::Result<Syslog> {
    let sock = UnixDatagram::unbound()?;
    sock.connect(&path)?;
    sock.set_nonblocking(true)?;
    Ok(Syslog { sock, path, down: AtomicBool::new(false), full: AtomicU32::new(0) })
}

/// The connected syslog socket.
#[derive(Debug)]
pub struct Syslog {
    sock: UnixDatagram,
    path: PathBuf,
    /// The last send failed for want of a syslogd: lines go to stderr meanwhile.
    down: AtomicBool,
    /// Lines dropped because the socket was full, not yet reported.
    full: AtomicU32,
}

impl Syslog {
    /// Sends the line as a datagram; reports, once it gets through again, the lines the full
    /// socket refused; falls back to stderr while no syslogd listens.
    fn deliver(&self, level: Level, line: &mut LineBuf, fallback: bool) {
        let pid = std::process::id();
        match self.send(line.syslog(level, pid)) {
            Ok(true) => {
                let mut note = LineBuf::new();
                if self.down.swap(false, Ordering::Relaxed) {
                    note.format(format_args!("syslog is back"));
                    let _ = self.send(note.syslog(WARN, pid));
                }
                let lost = self.full.swap(0, Ordering::Relaxed);
                if lost > 0 {
                    note.format(format_args!("{lost} log lines lost: the syslog socket was full"));
                    let _ = self.send(note.syslog(WARN, pid));
                }
            }
            Ok(false) => {
                self.full.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                if !self.down.swap(true, Ordering::Relaxed) {
                    let mut note = LineBuf::new();
                    note.format(format_args!(
                        "warning: syslog {}: {e}; until it is back, lines go to {}",
                        self.path.display(),
                        if fallback { "stderr" } else { "the other sinks only" }
                    ));
                    stderr(note.plain());
                }
                if fallback {
                    stderr(line.plain());
                }
            }
        }
    }

    /// Sends one datagram. `Ok(false)`: dropped because the socket was full.
    fn send(&self, datagram: &[u8]) -> io::Result<bool> {
        match self.sock.send(datagram) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => self.send(datagram),
            Err(_) => {
                // syslogd restarted (ECONNREFUSED) or its socket was replaced: reconnect
                // once. connect(2) on a datagram socket only changes its peer.
                self.sock.connect(&self.path)?;
                match self.sock.send(datagram) {
                    Ok(_) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// Where lines go, set once by [`install`].
#[derive(Debug)]
struct Sinks {
    file: Option<File>,
    syslog: Option<Syslog>,
}

impl Sinks {
    fn stderr(&self) -> bool {
        self.file.is_none() && self.syslog.is_none()
    }
}

static SINKS: OnceLock<Sinks> = OnceLock::new();

/// Sends lines to `file` and/or `syslog` from now on (stderr when both are `None`). Once per
/// process: a second call changes nothing and returns `false`.
pub fn install(file: Option<File>, syslog: Option<Syslog>) -> bool {
    SINKS.set(Sinks { file, syslog }).is_ok()
}

/// Whether lines go to stderr (no log file and no syslog).
#[must_use]
pub fn to_stderr() -> bool {
    SINKS.get().is_none_or(Sinks::stderr)
}

/// The log file, if lines go to one (the init.d scripts write their output there).
#[must_use]
pub fn file() -> Option<&'static File> {
    SINKS.get().and_then(|s| s.file.as_ref())
}

fn stderr(bytes: &[u8]) {
    let _ = io::stderr().lock().write_all(bytes);
}

fn write(level: Level, line: &mut LineBuf, also_stderr: bool) {
    let Some(sinks) = SINKS.get().filter(|s| !s.stderr()) else {
        stderr(line.plain());
        return;
    };
    if let Some(f) = &sinks.file {
        let mut f: &File = f;
        let _ = f.write_all(line.plain());
    }
    if let Some(s) = &sinks.syslog {
        // While syslogd is away, lines that reach no other sink go to stderr.
        s.deliver(level, line, !also_stderr && sinks.file.is_none());
    }
    // Last: whoever reads "listening on" on stderr finds it in the log already.
    if also_stderr {
        stderr(line.plain());
    }
}

/// Shortest time between two "suppressed" lines while a flood goes on.
const SUMMARY_SPACING: Duration = Duration::from_secs(1);

/// Writes the "N log lines suppressed" line if lines were left out. During a flood (`spaced`)
/// at most one per [`SUMMARY_SPACING`]; the count carries over to the next.
fn flush_suppressed(spaced: bool) {
    let Ok(n) = SUPPRESSED.try_with(Cell::get) else { return };
    if n == 0 {
        return;
    }
    if spaced {
        let now = Instant::now();
        let due = LAST_SUMMARY
            .try_with(|t| {
                let due = t
                    .get()
                    .is_none_or(|last| now.saturating_duration_since(last) >= SUMMARY_SPACING);
                if due {
                    t.set(Some(now));
                }
                due
            })
            .unwrap_or(true);
        if !due {
            return;
        }
    }
    let _ = SUPPRESSED.try_with(|s| s.set(0));
    let mut line = LineBuf::new();
    line.format(format_args!("{n} log lines suppressed (rate limit)"));
    write(WARN, &mut line, false);
}

/// Writes one line at `level` (the caller checked [`enabled`]). Connection lines at
/// [`WARN`] and [`INFO`] pass the rate limit. Errors writing the log are ignored: there is
/// nowhere to report them.
pub fn emit(level: Level, source: Source, args: fmt::Arguments<'_>) {
    let limited = source == Source::Connection && level <= INFO;
    if limited && !admit_now() {
        count_suppressed(1);
        return;
    }
    flush_suppressed(limited);
    let mut line = LineBuf::new();
    line.format(args);
    write(level, &mut line, false);
}

/// A line the operator must see whatever the sinks: written to stderr and to the log (start-up
/// banner, fatal errors). Not rate-limited, whatever the level.
pub fn announce(level: Level, args: fmt::Arguments<'_>) {
    flush_suppressed(false);
    let mut line = LineBuf::new();
    line.format(args);
    write(level, &mut line, true);
}

/// Logs a line of the service itself at a level: `log!(WARN, "SIGHUP: {e}")`. Never
/// rate-limited.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        if $crate::logging::enabled($level) {
            $crate::logging::emit($level, $crate::logging::Source::Service, format_args!($($arg)+));
        }
    };
}

/// Logs a connection event at a level: `conn_log!(INFO, "conn={key} peer={peer} close ...")`.
/// Anyone on the network can cause one, so at [`WARN`] and [`INFO`] these lines pass the rate
/// limit.
#[macro_export]
macro_rules! conn_log {
    ($level:expr, $($arg:tt)+) => {
        if $crate::logging::enabled($level) {
            $crate::logging::emit(
                $level,
                $crate::logging::Source::Connection,
                format_args!($($arg)+),
            );
        }
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn seconds_to_the_nearest_tenth() {
        let show = |ms: u64| Seconds(Duration::from_millis(ms)).to_string();
        assert_eq!(show(0), "0.0");
        assert_eq!(show(49), "0.0");
        assert_eq!(show(50), "0.1");
        assert_eq!(show(1_234), "1.2");
        assert_eq!(show(1_250), "1.3");
        assert_eq!(show(9_960), "10.0");
        assert_eq!(show(86_400_000), "86400.0");
        assert_eq!(Seconds(Duration::MAX).to_string(), "1844674407370955161.5");
    }

    #[test]
    fn plain_and_syslog_forms() {
        let mut l = LineBuf::new();
        l.format(format_args!("conn={} open\r\n/x", 7));
        assert_eq!(l.text(), b"conn=7 open  /x");
        assert_eq!(l.plain(), b"wsgate: conn=7 open  /x\n");
        assert_eq!(l.syslog(INFO, 42), b"<30>wsgate[42]: conn=7 open  /x");
        assert_eq!(l.syslog(WARN, 4_294_967_295), b"<28>wsgate[4294967295]: conn=7 open  /x");
        assert_eq!(l.syslog(DEBUG, 1), b"<31>wsgate[1]: conn=7 open  /x");
        assert_eq!(l.plain(), b"wsgate: conn=7 open  /x\n");
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        let long = "é".repeat(TEXT_MAX);
        let mut l = LineBuf::new();
        l.format(format_args!("x{long}"));
        let text = std::str::from_utf8(l.text()).unwrap();
        assert!(text.ends_with("..."), "{text}");
        assert!(text.len() <= TEXT_MAX);
        assert!(l.syslog(WARN, u32::MAX).len() <= LINE_MAX);
        let exact = "a".repeat(TEXT_MAX);
        l.format(format_args!("{exact}"));
        assert_eq!(l.text(), exact.as_bytes());
    }

    #[test]
    fn bucket_bursts_then_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::new();
        let passed = (0..100).filter(|_| b.admit(t0, 20, 50)).count();
        assert_eq!(passed, 50);
        assert!(!b.admit(t0 + Duration::from_millis(40), 20, 50));
        assert!(b.admit(t0 + Duration::from_millis(50), 20, 50));
        // Many small steps add up (no rounding loss to speak of).
        let mut t = t0 + Duration::from_millis(50);
        let mut n = 0;
        for _ in 0..10_000 {
            t += Duration::from_micros(100);
            n += usize::from(b.admit(t, 20, 50));
        }
        assert!((19..=20).contains(&n), "{n}");
        assert!((0..10).all(|_| Bucket::new().admit(t0, 0, 0)));
    }
}
