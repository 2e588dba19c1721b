//! Log lines on stderr, one per event, prefixed `wsgate: `. Connection lines carry
//! `conn=<slot>:<gen> peer=<addr>`.
//!
//! Formatting goes straight to the locked stderr handle (`write_fmt` on `format_args!`): no
//! allocation, so logging is allowed on the relay path. Syslog comes with the router service.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(1);

/// Errors and warnings.
pub const WARN: u8 = 0;
/// One line per connection opened and closed.
pub const INFO: u8 = 1;
/// Everything else.
pub const DEBUG: u8 = 2;

/// Sets the level (0 = warnings only, 1 = connection lines, 2 = debug).
pub fn set_level(level: u8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// Would a line at `level` be written?
#[must_use]
pub fn enabled(level: u8) -> bool {
    level <= LEVEL.load(Ordering::Relaxed)
}

/// Writes one line. Errors writing the log are ignored: there is nowhere to report them.
pub fn write_line(args: core::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(format_args!("wsgate: {args}\n"));
}

/// Logs at a level: `log!(INFO, "conn={} ...", key)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)*) => {
        if $crate::logging::enabled($level) {
            $crate::logging::write_line(format_args!($($arg)*));
        }
    };
}
