//! Loading a `websocket_jsonrpc` plugin (`-L`): a shared library with the C ABI of
//! `backend/plugins/wsgate_rpc.h`, opened with `dlopen` through `libloading`.
//!
//! This is the only place that calls into a plugin. Calling foreign code is unsafe by nature:
//! Rust cannot check that the library really has the header's signatures, so the ABI version
//! is checked first and every call keeps to the header's contract (NUL-terminated strings
//! that live through the call, an output buffer of the stated size, one call at a time,
//! connections closed before the plugin is finished, the library unloaded last). What a
//! plugin does inside is the plugin's responsibility, as with any code an administrator
//! chooses to load.
//!
//! A statically linked musl build (the router targets' shipped binaries, `+crt-static`) has no
//! dynamic loader: musl's `dlopen` fails there for any name, with "Dynamic loading not
//! supported". [`Plugin::load`] refuses at once in such a build and says which build loads
//! plugins (the dynamically linked one of `scripts/cross.sh plugins`, cross/README.md).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::path::Path;

use libloading::Library;

/// The ABI version this server speaks (`WSGATE_RPC_ABI_VERSION`).
pub const ABI_VERSION: u32 = 1;

type AbiVersionFn = unsafe extern "C" fn() -> c_uint;
type InitFn = unsafe extern "C" fn(*const c_char) -> *mut c_void;
type OpenFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
type CallFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_char,
    *const c_char,
    *mut c_char,
    usize,
    *mut usize,
) -> c_int;
type CloseFn = unsafe extern "C" fn(*mut c_void);
type FiniFn = unsafe extern "C" fn(*mut c_void);

/// Why a plugin could not be loaded or started.
#[derive(Debug)]
pub enum PluginError {
    /// This program is statically linked against musl, which cannot load libraries.
    Static,
    /// `dlopen` failed (no such file, not a library, missing dependencies...).
    Open(String),
    /// A required function is missing.
    Symbol(&'static str),
    /// The plugin speaks another ABI version.
    Version(u32),
    /// `wsgate_rpc_init` returned NULL.
    Init,
    /// The `-C` string holds a NUL byte.
    Config,
}

impl core::fmt::Display for PluginError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Static => f.write_str(
                "this program is statically linked and cannot load a library: plugins need the \
                 dynamically linked build (scripts/cross.sh plugins)",
            ),
            Self::Open(e) => write!(f, "cannot load: {e}"),
            Self::Symbol(s) => write!(f, "not a wsgate_rpc plugin: no {s}()"),
            Self::Version(v) => {
                write!(f, "plugin ABI version {v}, this server speaks version {ABI_VERSION}")
            }
            Self::Init => f.write_str("wsgate_rpc_init failed"),
            Self::Config => f.write_str("-C holds a NUL byte"),
        }
    }
}

/// A loaded and started plugin. Dropping it calls `wsgate_rpc_fini`, then unloads the library.
#[derive(Debug)]
pub struct Plugin {
    state: *mut c_void,
    open: Option<OpenFn>,
    call: CallFn,
    close: Option<CloseFn>,
    fini: Option<FiniFn>,
    /// Last field: dropped after `fini` ran, so the function pointers above stay valid for the
    /// plugin's whole life.
    _lib: Library,
}

/// One client's state in the plugin (from `wsgate_rpc_open`). Must be given back to
/// [`Plugin::close`].
#[derive(Debug)]
pub struct Conn(*mut c_void);

impl Plugin {
    /// Loads the library at `path`, checks its ABI version and starts it with `config`.
    ///
    /// # Errors
    /// [`PluginError`].
    pub fn load(path: &Path, config: &str) -> Result<Self, PluginError> {
        if cfg!(all(target_env = "musl", target_feature = "crt-static")) {
            return Err(PluginError::Static);
        }
        let config = CString::new(config).map_err(|_| PluginError::Config)?;
        // SAFETY: loading runs the library's initialisers; the administrator chose this
        // library with -L, which is the trust this server extends to it.
        let lib = unsafe { Library::new(path) }.map_err(|e| PluginError::Open(e.to_string()))?;
        // SAFETY: (here and at each `sym` call below) the types are the header's signatures
        // for these names; the pointers are copied out and used only while `lib` is loaded (it
        // is dropped last).
        let version: AbiVersionFn = unsafe { sym(&lib, b"wsgate_rpc_abi_version\0") }
            .ok_or(PluginError::Symbol("wsgate_rpc_abi_version"))?;
        // SAFETY: takes no arguments, per the header.
        let v = unsafe { version() };
        if v != ABI_VERSION {
            return Err(PluginError::Version(v));
        }
        // SAFETY: a header signature, used while `lib` is loaded (see above).
        let init: InitFn = unsafe { sym(&lib, b"wsgate_rpc_init\0") }
            .ok_or(PluginError::Symbol("wsgate_rpc_init"))?;
        // SAFETY: a header signature, used while `lib` is loaded (see above).
        let call: CallFn = unsafe { sym(&lib, b"wsgate_rpc_call\0") }
            .ok_or(PluginError::Symbol("wsgate_rpc_call"))?;
        // SAFETY: a header signature, used while `lib` is loaded (see above).
        let open: Option<OpenFn> = unsafe { sym(&lib, b"wsgate_rpc_open\0") };
        // SAFETY: a header signature, used while `lib` is loaded (see above).
        let close: Option<CloseFn> = unsafe { sym(&lib, b"wsgate_rpc_close\0") };
        // SAFETY: a header signature, used while `lib` is loaded (see above).
        let fini: Option<FiniFn> = unsafe { sym(&lib, b"wsgate_rpc_fini\0") };
        // SAFETY: `config` is NUL-terminated and outlives the call.
        let state = unsafe { init(config.as_ptr()) };
        if state.is_null() {
            return Err(PluginError::Init);
        }
        Ok(Self { state, open, call, close, fini, _lib: lib })
    }

    /// Opens a client's state with its connection `context`; `None` when the plugin refuses
    /// the client.
    #[must_use]
    pub fn open(&self, context: &[u8]) -> Option<Conn> {
        let Some(open) = self.open else { return Some(Conn(self.state)) };
        // Context lines hold no NUL (the gateway's values come from a parsed HTTP head); a
        // context that does would be cut there, so it is dropped instead.
        let context = CString::new(context).unwrap_or_default();
        // SAFETY: `state` came from init and the plugin is live; the string outlives the call.
        let conn = unsafe { open(self.state, context.as_ptr()) };
        (!conn.is_null()).then_some(Conn(conn))
    }

    /// Calls `method` with the JSON text `params` for `conn`; the plugin writes into `out`.
    /// Returns the status code and the length written (never more than `out.len()`).
    #[must_use]
    pub fn call(&self, conn: &Conn, method: &str, params: &str, out: &mut [u8]) -> (i32, usize) {
        // Method names and JSON texts from serde_json hold no NUL byte unescaped; one that
        // does cannot be passed, and is answered as an unknown method.
        let (Ok(method), Ok(params)) = (CString::new(method), CString::new(params)) else {
            return (-32601, 0);
        };
        let mut len = 0usize;
        // SAFETY: `conn` came from `open` on this plugin and is not closed; the strings
        // outlive the call; `out` is writable for `out.len()` bytes; `len` is writable.
        let code = unsafe {
            (self.call)(
                conn.0,
                method.as_ptr(),
                params.as_ptr(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut len,
            )
        };
        (code, len.min(out.len()))
    }

    /// Releases a client's state.
    pub fn close(&self, conn: Conn) {
        if let Some(close) = self.close {
            // SAFETY: `conn` came from `open` on this plugin and is given up here.
            unsafe { close(conn.0) };
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(fini) = self.fini {
            // SAFETY: `state` came from init; callers close every Conn first (the server
            // closes each client's state when the client goes, and drops the plugin last).
            unsafe { fini(self.state) };
        }
    }
}

/// The function `name` (NUL-terminated) of `lib`, copied out of its `Symbol`.
///
/// # Safety
/// `T` must be the function's real type, and the pointer must not be used after `lib` is
/// unloaded.
unsafe fn sym<T: Copy>(lib: &Library, name: &[u8]) -> Option<T> {
    // SAFETY: forwarded to the caller.
    unsafe { lib.get::<T>(name) }.ok().map(|s| *s)
}

/// Run by `scripts/cross.sh test` on the static musl targets, under qemu-user.
#[cfg(all(test, target_env = "musl", target_feature = "crt-static"))]
mod static_build {
    use super::*;

    /// A statically linked musl program has no dynamic loader: any `-L` is refused with the
    /// reason and the build that can load plugins (musl's own dlerror would say only "Dynamic
    /// loading not supported", for a missing file too).
    #[test]
    fn a_static_build_refuses_any_plugin_and_says_why() {
        for path in ["/nonexistent/libplugin.so", "libc.so", "libwsgate_rpc_sysinfo.so"] {
            let e = Plugin::load(Path::new(path), "").err().map(|e| e.to_string());
            assert_eq!(
                e.as_deref(),
                Some(
                    "this program is statically linked and cannot load a library: plugins need \
                     the dynamically linked build (scripts/cross.sh plugins)"
                ),
                "{path}"
            );
        }
    }
}
