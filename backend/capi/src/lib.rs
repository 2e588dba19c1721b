//! The C ABI of wsgate's backend library: `include/wsgate_backend.h` over
//! [`wsgate_kit::conn`]. Everything a backend does (hand-over, WebSocket, relay modes,
//! limits) is in that module; this crate only moves values across the boundary.
//!
//! The only unsafe code of the crate is here, and it is of three kinds, each argued where it
//! is: dereferencing the object pointers this library handed out (`Box::into_raw` in
//! [`wsb_listen`] / [`wsb_accept`], back with `Box::from_raw` in the frees), reading the C
//! strings and buffers the caller passes, and writing the caller's out-parameters. Every
//! pointer is checked for NULL first; anything else about them is the header's contract.
//!
//! No panic crosses the boundary: the workspace builds with `panic = "abort"` (a panic would
//! end the process, never unwind into C), and the code denies `unwrap`, `expect`, `panic!` and
//! indexing, so no input reaches one.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_short, c_uint, c_ulong, c_void, CStr, CString};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::libc;
use wsgate::relay::codec::Mode;
use wsgate_kit::conn::{Connection, Listener, Options, Received, DEFAULT_MAX_MESSAGE};
use wsgate_kit::message::Kind;

const WSB_DIRECT: c_uint = 0x1;
const WSB_CONTEXT: c_uint = 0x2;
const WSB_TEXT: c_int = 1;
const WSB_BINARY: c_int = 2;
const WSB_DONE: c_int = 0;
const WSB_MESSAGE: c_int = 1;
const WSB_CLOSED: c_int = 2;
const WSB_FAILED: c_int = 3;
/// Room for a frame header (at most 10 bytes) and a record header around a message.
const FRAMING: usize = 64;

/// `struct wsb_listener`.
#[derive(Debug)]
pub struct WsbListener {
    listener: Listener,
}

/// `struct wsb_conn`.
#[derive(Debug)]
pub struct WsbConn {
    conn: Connection,
    /// The context lines with each `\n` made a NUL: [`wsb_value`] returns pointers into it.
    values: Vec<u8>,
    /// The last failure, for [`wsb_error`].
    error: CString,
}

/// `struct wsb_message`.
#[repr(C)]
#[derive(Debug)]
pub struct WsbMessage {
    /// `WSB_TEXT` or `WSB_BINARY`.
    pub kind: c_int,
    /// The message's bytes.
    pub data: *const u8,
    /// Their number.
    pub len: usize,
    /// The close code.
    pub close_code: c_int,
}

/// The negative errno for an error of the library.
fn errno(e: &std::io::Error) -> c_int {
    if let Some(n) = e.raw_os_error() {
        return -n;
    }
    -match e.kind() {
        ErrorKind::WouldBlock => libc::EAGAIN,
        ErrorKind::InvalidInput => libc::EINVAL,
        ErrorKind::NotConnected | ErrorKind::BrokenPipe => libc::EPIPE,
        ErrorKind::ConnectionReset => libc::ECONNRESET,
        ErrorKind::AddrInUse => libc::EADDRINUSE,
        ErrorKind::AlreadyExists => libc::EEXIST,
        ErrorKind::InvalidData => libc::EPROTO,
        ErrorKind::OutOfMemory => libc::ENOMEM,
        _ => libc::EIO,
    }
}

/// A C string argument as UTF-8; `None` for NULL or invalid UTF-8.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string valid for `'a`.
unsafe fn text<'a>(s: *const c_char) -> Option<&'a str> {
    if s.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(s) }.to_str().ok()
}

/// `wsb_listen`.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn wsb_listen(
    path: *const c_char,
    mode: c_int,
    flags: c_uint,
    max_message: usize,
    out: *mut *mut WsbListener,
) -> c_int {
    if out.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: forwarded contract.
    let Some(path) = (unsafe { text(path) }) else { return -libc::EINVAL };
    let mode = match mode {
        0 => Mode::Stream,
        1 => Mode::Lines,
        2 => Mode::Framed,
        3 => Mode::SeqPacket,
        _ => return -libc::EINVAL,
    };
    if flags & !(WSB_DIRECT | WSB_CONTEXT) != 0 {
        return -libc::EINVAL;
    }
    let mut options = Options::new(mode, flags & WSB_DIRECT != 0);
    options.context = flags & WSB_CONTEXT != 0;
    options.max_message = if max_message == 0 { DEFAULT_MAX_MESSAGE } else { max_message };
    options.max_queue = options.max_message.saturating_add(FRAMING);
    match Listener::bind(Path::new(path), options) {
        Ok(listener) => {
            let boxed = Box::into_raw(Box::new(WsbListener { listener }));
            // SAFETY: `out` is non-null and valid for a write (contract).
            unsafe { out.write(boxed) };
            0
        }
        Err(e) => errno(&e),
    }
}

/// `wsb_listener_fd`.
///
/// # Safety
/// `l` is NULL or a live listener from [`wsb_listen`].
#[no_mangle]
pub unsafe extern "C" fn wsb_listener_fd(l: *const WsbListener) -> c_int {
    // SAFETY: a live listener of ours, or NULL (contract); shared access only.
    match unsafe { l.as_ref() } {
        Some(l) => l.listener.as_raw_fd(),
        None => -libc::EINVAL,
    }
}

/// `wsb_accept`.
///
/// # Safety
/// `l` is NULL or a live listener from [`wsb_listen`], used by no other thread during the
/// call; `out` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn wsb_accept(l: *mut WsbListener, out: *mut *mut WsbConn) -> c_int {
    // SAFETY: a live listener of ours, or NULL, not used elsewhere meanwhile (contract).
    let Some(l) = (unsafe { l.as_mut() }) else { return -libc::EINVAL };
    if out.is_null() {
        return -libc::EINVAL;
    }
    match l.listener.accept() {
        Ok(conn) => {
            let mut values = conn.context().to_vec();
            for b in &mut values {
                if *b == b'\n' {
                    *b = 0;
                }
            }
            // The last value ends with a NUL even if its line had no `\n`.
            values.push(0);
            let boxed =
                Box::into_raw(Box::new(WsbConn { conn, values, error: CString::default() }));
            // SAFETY: `out` is non-null and valid for a write (contract).
            unsafe { out.write(boxed) };
            0
        }
        Err(e) => errno(&e),
    }
}

/// `wsb_listener_rejected`.
///
/// # Safety
/// `l` is NULL or a live listener from [`wsb_listen`].
#[no_mangle]
pub unsafe extern "C" fn wsb_listener_rejected(l: *const WsbListener) -> c_ulong {
    // SAFETY: a live listener of ours, or NULL (contract); shared access only.
    unsafe { l.as_ref() }
        .map_or(0, |l| c_ulong::try_from(l.listener.rejected()).unwrap_or(c_ulong::MAX))
}

/// `wsb_listener_free`.
///
/// # Safety
/// `l` is NULL or a listener from [`wsb_listen`], not freed before and not used after.
#[no_mangle]
pub unsafe extern "C" fn wsb_listener_free(l: *mut WsbListener) {
    if !l.is_null() {
        // SAFETY: it came from `Box::into_raw` in `wsb_listen` and is freed once (contract).
        drop(unsafe { Box::from_raw(l) });
    }
}

/// `wsb_fd`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`].
#[no_mangle]
pub unsafe extern "C" fn wsb_fd(c: *const WsbConn) -> c_int {
    // SAFETY: a live connection of ours, or NULL (contract); shared access only.
    match unsafe { c.as_ref() } {
        Some(c) => c.conn.as_raw_fd(),
        None => -libc::EINVAL,
    }
}

/// `wsb_events`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`].
#[no_mangle]
pub unsafe extern "C" fn wsb_events(c: *const WsbConn) -> c_short {
    // SAFETY: a live connection of ours, or NULL (contract); shared access only.
    match unsafe { c.as_ref() } {
        Some(c) if c.conn.wants_write() => libc::POLLIN | libc::POLLOUT,
        Some(_) => libc::POLLIN,
        None => 0,
    }
}

/// `wsb_is_direct`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`].
#[no_mangle]
pub unsafe extern "C" fn wsb_is_direct(c: *const WsbConn) -> c_int {
    // SAFETY: a live connection of ours, or NULL (contract); shared access only.
    unsafe { c.as_ref() }.map_or(0, |c| c_int::from(c.conn.is_direct()))
}

/// `wsb_is_open`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`].
#[no_mangle]
pub unsafe extern "C" fn wsb_is_open(c: *const WsbConn) -> c_int {
    // SAFETY: a live connection of ours, or NULL (contract); shared access only.
    unsafe { c.as_ref() }.map_or(0, |c| c_int::from(c.conn.is_open()))
}

/// `wsb_value`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`]; `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn wsb_value(c: *const WsbConn, name: *const c_char) -> *const c_char {
    // SAFETY: a live connection of ours, or NULL (contract); shared access only.
    let Some(c) = (unsafe { c.as_ref() }) else { return std::ptr::null() };
    // SAFETY: forwarded contract.
    let Some(name) = (unsafe { text(name) }) else { return std::ptr::null() };
    let mut at = 0;
    for entry in c.values.split(|&b| b == 0) {
        let value_at = at + name.len() + 1;
        at += entry.len() + 1;
        if entry.strip_prefix(name.as_bytes()).and_then(|r| r.strip_prefix(b"=")).is_some() {
            // `values` ends with a NUL and each entry with one: the value is a C string that
            // lives as long as the connection.
            return c.values.get(value_at..).map_or(std::ptr::null(), |v| v.as_ptr().cast());
        }
    }
    std::ptr::null()
}

/// `wsb_recv`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`], used by no other thread during the
/// call; `msg` is NULL or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn wsb_recv(c: *mut WsbConn, msg: *mut WsbMessage) -> c_int {
    // SAFETY: a live connection of ours, or NULL, not used elsewhere meanwhile (contract).
    let Some(c) = (unsafe { c.as_mut() }) else { return -libc::EINVAL };
    if msg.is_null() {
        return -libc::EINVAL;
    }
    let mut out = WsbMessage { kind: 0, data: std::ptr::null(), len: 0, close_code: 0 };
    let result = match c.conn.recv() {
        Ok(Received::Message(kind, data)) => {
            out.kind = if kind == Kind::Binary { WSB_BINARY } else { WSB_TEXT };
            // Valid until the next call on the connection (header): the bytes are the
            // connection's buffer, which only the next call changes.
            out.data = data.as_ptr();
            out.len = data.len();
            WSB_MESSAGE
        }
        Ok(Received::Closed(code)) => {
            out.close_code = code.map_or(0, c_int::from);
            WSB_CLOSED
        }
        Ok(Received::Failed(failure)) => {
            out.close_code = c_int::from(failure.close_code());
            c.error = CString::new(failure.to_string()).unwrap_or_default();
            WSB_FAILED
        }
        Ok(Received::Done) => WSB_DONE,
        Err(e) => {
            if e.kind() != ErrorKind::WouldBlock {
                c.error = CString::new(e.to_string()).unwrap_or_default();
            }
            errno(&e)
        }
    };
    // SAFETY: `msg` is non-null and valid for a write (contract).
    unsafe { msg.write(out) };
    result
}

/// `wsb_send`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`], used by no other thread during the
/// call; `data` is valid for reads of `len` bytes (or NULL with `len` 0).
#[no_mangle]
pub unsafe extern "C" fn wsb_send(
    c: *mut WsbConn,
    kind: c_int,
    data: *const c_void,
    len: usize,
) -> c_int {
    // SAFETY: a live connection of ours, or NULL, not used elsewhere meanwhile (contract).
    let Some(c) = (unsafe { c.as_mut() }) else { return -libc::EINVAL };
    let kind = match kind {
        WSB_TEXT => Kind::Text,
        WSB_BINARY => Kind::Binary,
        _ => return -libc::EINVAL,
    };
    let data: &[u8] = if len == 0 {
        &[]
    } else if data.is_null() {
        return -libc::EINVAL;
    } else {
        // SAFETY: non-null and valid for reads of `len` bytes, not written meanwhile (contract).
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }
    };
    match c.conn.send(kind, data) {
        Ok(()) => 0,
        Err(e) if e.kind() == ErrorKind::InvalidInput => -libc::EMSGSIZE,
        Err(e) => {
            if e.kind() != ErrorKind::WouldBlock {
                c.error = CString::new(e.to_string()).unwrap_or_default();
            }
            errno(&e)
        }
    }
}

/// `wsb_close`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`], used by no other thread during the
/// call; `reason` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn wsb_close(c: *mut WsbConn, code: c_int, reason: *const c_char) -> c_int {
    // SAFETY: a live connection of ours, or NULL, not used elsewhere meanwhile (contract).
    let Some(c) = (unsafe { c.as_mut() }) else { return -libc::EINVAL };
    let Ok(code) = u16::try_from(code) else { return -libc::EINVAL };
    let reason = if reason.is_null() {
        ""
    } else {
        // SAFETY: forwarded contract.
        match unsafe { text(reason) } {
            Some(r) => r,
            None => return -libc::EINVAL,
        }
    };
    match c.conn.close(code, reason) {
        Ok(()) => 0,
        Err(e) => errno(&e),
    }
}

/// `wsb_flush`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`], used by no other thread during the
/// call.
#[no_mangle]
pub unsafe extern "C" fn wsb_flush(c: *mut WsbConn) -> c_int {
    // SAFETY: a live connection of ours, or NULL, not used elsewhere meanwhile (contract).
    let Some(c) = (unsafe { c.as_mut() }) else { return -libc::EINVAL };
    match c.conn.flush() {
        Ok(_) if c.conn.wants_write() => -libc::EAGAIN,
        Ok(_) => 0,
        Err(e) => {
            c.error = CString::new(e.to_string()).unwrap_or_default();
            errno(&e)
        }
    }
}

/// `wsb_error`.
///
/// # Safety
/// `c` is NULL or a live connection from [`wsb_accept`].
#[no_mangle]
pub unsafe extern "C" fn wsb_error(c: *const WsbConn) -> *const c_char {
    // SAFETY: a live connection of ours, or NULL (contract); shared access only.
    match unsafe { c.as_ref() } {
        Some(c) => c.error.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// `wsb_free`.
///
/// # Safety
/// `c` is NULL or a connection from [`wsb_accept`], not freed before and not used after.
#[no_mangle]
pub unsafe extern "C" fn wsb_free(c: *mut WsbConn) {
    if !c.is_null() {
        // SAFETY: it came from `Box::into_raw` in `wsb_accept` and is freed once (contract).
        drop(unsafe { Box::from_raw(c) });
    }
}
