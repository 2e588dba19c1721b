//! The Rust side of `websocket_jsonrpc`'s plugin ABI, `backend/plugins/wsgate_rpc.h`: implement
//! [`Plugin`] and call [`export_plugin!`] once, and the library exports the header's C
//! functions. Plugins written in C use the header directly.
//!
//! The ABI carries JSON as text; this crate parses the params into a [`serde_json::Value`]
//! and serialises the result, so a plugin only sees values. All the unsafe code (C strings
//! and the output buffer) is in [`ffi`].
pub use serde_json;
use serde_json::Value;

pub mod ffi;

/// `WSGATE_RPC_ABI_VERSION`.
pub const ABI_VERSION: u32 = 1;
/// JSON-RPC 2.0 "Invalid params".
pub const INVALID_PARAMS: i32 = -32602;
/// JSON-RPC 2.0 "Method not found".
pub const METHOD_NOT_FOUND: i32 = -32601;
/// JSON-RPC 2.0 "Internal error".
pub const INTERNAL_ERROR: i32 = -32603;

/// A method's failure: a JSON-RPC error code and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i32,
    /// A short human-readable message.
    pub message: String,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// -32602 with `message`.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// -32601 for `method`.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(METHOD_NOT_FOUND, format!("no method {method:?}"))
    }
}

/// A JSON-RPC plugin.
pub trait Plugin: Sized {
    /// What each client connection keeps (a login, for instance).
    type Conn;

    /// `wsgate_rpc_init`: starts the plugin with the `-C` string.
    ///
    /// # Errors
    /// A message saying why the plugin cannot start; the server then exits.
    fn init(config: &str) -> Result<Self, String>;

    /// `wsgate_rpc_open`: a client connected, with this connection context (`NAME=value`
    /// lines, or ""). `None` refuses the client.
    fn open(&self, context: &str) -> Option<Self::Conn>;

    /// `wsgate_rpc_call`: runs `method` with `params` (an object, an array, or `Null` when
    /// the request had none).
    ///
    /// # Errors
    /// The JSON-RPC error for the response.
    fn call(&self, conn: &mut Self::Conn, method: &str, params: &Value) -> Result<Value, RpcError>;
}

/// The string member `name` of an object `params`, or -32602.
///
/// # Errors
/// [`RpcError::invalid_params`] when `params` is not an object or the member is missing or
/// not a string.
pub fn str_param<'a>(params: &'a Value, name: &str) -> Result<&'a str, RpcError> {
    opt_str_param(params, name)?
        .ok_or_else(|| RpcError::invalid_params(format!("missing string parameter {name:?}")))
}

/// The string member `name` of an object `params` if present, or -32602 when it is there but
/// not a string (or `params` is not an object).
///
/// # Errors
/// [`RpcError::invalid_params`] as said.
pub fn opt_str_param<'a>(params: &'a Value, name: &str) -> Result<Option<&'a str>, RpcError> {
    let Value::Object(map) = params else {
        return Err(RpcError::invalid_params("params must be an object"));
    };
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RpcError::invalid_params(format!("parameter {name:?} must be a string"))),
    }
}

/// Exports the C functions of `backend/plugins/wsgate_rpc.h` for the [`Plugin`] type given.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// `wsgate_rpc_abi_version` (backend/plugins/wsgate_rpc.h).
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn wsgate_rpc_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        /// `wsgate_rpc_init` (backend/plugins/wsgate_rpc.h).
        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn wsgate_rpc_init(
            config: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_void {
            // SAFETY: the caller passes a NUL-terminated string (the header's contract).
            unsafe { $crate::ffi::init::<$plugin>(config) }
        }

        /// `wsgate_rpc_open` (backend/plugins/wsgate_rpc.h).
        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn wsgate_rpc_open(
            plugin: *mut ::std::ffi::c_void,
            context: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_void {
            // SAFETY: `plugin` came from wsgate_rpc_init, `context` is NUL-terminated.
            unsafe { $crate::ffi::open::<$plugin>(plugin, context) }
        }

        /// `wsgate_rpc_call` (backend/plugins/wsgate_rpc.h).
        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn wsgate_rpc_call(
            conn: *mut ::std::ffi::c_void,
            method: *const ::std::ffi::c_char,
            params: *const ::std::ffi::c_char,
            out: *mut ::std::ffi::c_char,
            out_cap: usize,
            out_len: *mut usize,
        ) -> i32 {
            // SAFETY: the header's contract: `conn` from wsgate_rpc_open, NUL-terminated
            // strings, `out` writable for `out_cap` bytes, `out_len` writable.
            unsafe { $crate::ffi::call::<$plugin>(conn, method, params, out, out_cap, out_len) }
        }

        /// `wsgate_rpc_close` (backend/plugins/wsgate_rpc.h).
        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn wsgate_rpc_close(conn: *mut ::std::ffi::c_void) {
            // SAFETY: `conn` came from wsgate_rpc_open and is not used again.
            unsafe { $crate::ffi::close::<$plugin>(conn) }
        }

        /// `wsgate_rpc_fini` (backend/plugins/wsgate_rpc.h).
        #[allow(unsafe_code)]
        #[no_mangle]
        pub unsafe extern "C" fn wsgate_rpc_fini(plugin: *mut ::std::ffi::c_void) {
            // SAFETY: `plugin` came from wsgate_rpc_init; every connection is closed.
            unsafe { $crate::ffi::fini::<$plugin>(plugin) }
        }
    };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn string_params() {
        let p: Value = serde_json::from_str(r#"{"user":"bob","n":1}"#).unwrap();
        assert_eq!(str_param(&p, "user"), Ok("bob"));
        assert_eq!(str_param(&p, "n").unwrap_err().code, INVALID_PARAMS);
        assert_eq!(str_param(&p, "x").unwrap_err().code, INVALID_PARAMS);
        assert_eq!(opt_str_param(&p, "x"), Ok(None));
        assert_eq!(str_param(&Value::Null, "user").unwrap_err().code, INVALID_PARAMS);
    }
}
