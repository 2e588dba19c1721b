//! The C side of the ABI: the functions [`crate::export_plugin!`] exports call these. This is
//! the crate's only unsafe code; each function states the contract of `wsgate_rpc.h` it
//! relies on.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_void, CStr};

use crate::{Plugin, RpcError, INTERNAL_ERROR};

/// A connection as the C side sees it: the plugin it belongs to and its state.
struct ConnBox<P: Plugin> {
    plugin: *const P,
    conn: P::Conn,
}

/// The text of a C string; an invalid UTF-8 sequence is replaced (the server only passes
/// UTF-8, so this never happens with it).
///
/// # Safety
/// `s` is null or a NUL-terminated string valid for the call.
unsafe fn text<'a>(s: *const c_char) -> std::borrow::Cow<'a, str> {
    if s.is_null() {
        return std::borrow::Cow::Borrowed("");
    }
    // SAFETY: non-null and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(s) }.to_string_lossy()
}

/// `wsgate_rpc_init`.
///
/// # Safety
/// `config` is null or a NUL-terminated string.
pub unsafe fn init<P: Plugin>(config: *const c_char) -> *mut c_void {
    // SAFETY: forwarded contract.
    let config = unsafe { text(config) };
    match P::init(&config) {
        Ok(p) => Box::into_raw(Box::new(p)).cast(),
        Err(e) => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "plugin: {e}");
            std::ptr::null_mut()
        }
    }
}

/// `wsgate_rpc_open`.
///
/// # Safety
/// `plugin` came from [`init`] for the same `P` and is not finished; `context` is null or
/// NUL-terminated.
pub unsafe fn open<P: Plugin>(plugin: *mut c_void, context: *const c_char) -> *mut c_void {
    let plugin = plugin.cast::<P>().cast_const();
    // SAFETY: `plugin` is a live `P` from `init` (contract); only shared access here.
    let Some(p) = (unsafe { plugin.as_ref() }) else { return std::ptr::null_mut() };
    // SAFETY: forwarded contract.
    let context = unsafe { text(context) };
    match p.open(&context) {
        Some(conn) => Box::into_raw(Box::new(ConnBox { plugin, conn })).cast(),
        None => std::ptr::null_mut(),
    }
}

/// `wsgate_rpc_call`.
///
/// # Safety
/// `conn` came from [`open`] for the same `P` and is not closed, its plugin is not finished;
/// `method` and `params` are null or NUL-terminated; `out` is writable for `out_cap` bytes;
/// `out_len` is writable.
pub unsafe fn call<P: Plugin>(
    conn: *mut c_void,
    method: *const c_char,
    params: *const c_char,
    out: *mut c_char,
    out_cap: usize,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: `conn` is a live ConnBox<P> from `open`; the server makes one call at a time,
    // so this is the only reference.
    let Some(cb) = (unsafe { conn.cast::<ConnBox<P>>().as_mut() }) else { return INTERNAL_ERROR };
    // SAFETY: the plugin outlives its connections (contract).
    let Some(plugin) = (unsafe { cb.plugin.as_ref() }) else { return INTERNAL_ERROR };
    // SAFETY: forwarded contract.
    let (method, params) = unsafe { (text(method), text(params)) };
    let result = match serde_json::from_str(&params) {
        Ok(params) => plugin.call(&mut cb.conn, &method, &params),
        Err(_) => Err(RpcError::invalid_params("params are not JSON")),
    };
    let (code, bytes) = match result {
        Ok(value) => match serde_json::to_vec(&value) {
            Ok(v) if v.len() <= out_cap => (0, v),
            Ok(_) => (INTERNAL_ERROR, b"result too large".to_vec()),
            Err(_) => (INTERNAL_ERROR, b"result not serialisable".to_vec()),
        },
        Err(e) => {
            let mut msg = e.message.into_bytes();
            // Cut on a character boundary.
            let mut cut = msg.len().min(out_cap);
            while cut > 0 && msg.get(cut).is_some_and(|b| b & 0xc0 == 0x80) {
                cut -= 1;
            }
            msg.truncate(cut);
            (e.code, msg)
        }
    };
    if out.is_null() || out_len.is_null() {
        return INTERNAL_ERROR;
    }
    let n = bytes.len().min(out_cap);
    // SAFETY: `out` is writable for `out_cap` bytes and `n <= out_cap`; the source is our own
    // vector, so the ranges do not overlap. `out_len` is writable.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>(), n);
        *out_len = n;
    }
    code
}

/// `wsgate_rpc_close`.
///
/// # Safety
/// `conn` came from [`open`] for the same `P` and is not used again.
pub unsafe fn close<P: Plugin>(conn: *mut c_void) {
    if !conn.is_null() {
        // SAFETY: made by Box::into_raw in `open`, released once.
        drop(unsafe { Box::from_raw(conn.cast::<ConnBox<P>>()) });
    }
}

/// `wsgate_rpc_fini`.
///
/// # Safety
/// `plugin` came from [`init`] for the same `P`, all its connections are closed, and it is not
/// used again.
pub unsafe fn fini<P: Plugin>(plugin: *mut c_void) {
    if !plugin.is_null() {
        // SAFETY: made by Box::into_raw in `init`, released once.
        drop(unsafe { Box::from_raw(plugin.cast::<P>()) });
    }
}
