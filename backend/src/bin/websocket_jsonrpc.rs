//! `websocket_jsonrpc`: the sample JSON-RPC 2.0 server for wsgate. It listens on a UNIX
//! socket at `<docroot>/<name>`; each WebSocket message is a request, a notification or a
//! batch, and the methods come from a plugin library (`-L`, configured with `-C`) with the C
//! ABI of `backend/plugins/wsgate_rpc.h`.
//!
//! This program owns the protocol (<https://www.jsonrpc.org/specification>): it parses the
//! message, validates each request object, answers the spec's errors itself (-32700 parse
//! error, -32600 invalid request, -32601 for `rpc.*` names), calls the plugin with the method
//! name and the params as JSON text, checks that a result is valid JSON (-32603 otherwise),
//! and writes one response (an array for a batch, nothing when only notifications came). The
//! plugin answers -32601 for methods it does not have and -32602 for bad params.
//!
//! The plugin is loaded after the privilege drop (`-u`), so it never runs as root; each
//! client gets its own plugin state (`wsgate_rpc_open`, with the connection context when the
//! gateway sends one).
//!
//! Limits: [`MAX_CLIENTS`] clients, requests of `-M` bytes, [`MAX_BATCH`] requests in a
//! batch, results of [`RESULT_LEN`] bytes, responses of [`MAX_RESPONSE`] bytes (a bigger one
//! is replaced by a -32603 error); a client is not read while more than one response waits
//! for it.
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};
use wsgate_kit::message::Kind;
use wsgate_kit::sample::{self, Serving};
use wsgate_kit::server::{Clients, Limits, Service};
use wsgate_kit::sys::plugin::{Conn, Plugin};
use wsgate_kit::Fatal;

/// Most clients at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 64;
/// Most requests in one batch.
const MAX_BATCH: usize = 32;
/// The buffer a plugin writes one result (or error message) into.
const RESULT_LEN: usize = 64 * 1024;
/// Largest response, a batch's included.
const MAX_RESPONSE: usize = 256 * 1024;

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;

wsgate_kit::sample_args! {
    /// Sample JSON-RPC 2.0 server for wsgate, with the methods of a plugin library. At most 64
    /// clients, requests of -M bytes, batches of 32 requests, results of 64 KiB and responses of
    /// 256 KiB.
    struct Args {
        socket: "jsonrpc", "socket name, which is the URL path (default \"jsonrpc\"); a single name, no '/'",
        max_message: 64 << 10, "largest request in bytes, or with a K or M suffix (default 64K)",
        /// the plugin: a shared library with the ABI of backend/plugins/wsgate_rpc.h (a path; one
        /// without '/' is searched like any dlopen name), loaded after the privilege drop (-u)
        #[argh(option, short = 'L')]
        library: PathBuf,
        /// the plugin's configuration string (default ""), e.g. the auth plugin's user database
        #[argh(option, short = 'C', default = "String::new()")]
        config: String,
        /// the gateway sends the connection context (wsgate --context): needed in stream, lines
        /// and seqpacket modes, recognised without it in framed mode
        #[argh(switch, short = 'c')]
        context: bool,
    }
}

fn main() -> ExitCode {
    sample::main("websocket_jsonrpc", run)
}

fn run(args: &Args) -> Result<(), Fatal> {
    // Room for one response while the next is made: a client with more waiting is not read
    // (backpressure).
    let max_queue = 2 * (MAX_RESPONSE + 8);
    let limits = Limits {
        max_clients: MAX_CLIENTS,
        max_message: args.common().max_message,
        max_queue,
        pause_at: max_queue / 2,
    };
    let detail = format!(", plugin {}", args.library.display());
    let serving = Serving { limits, context: args.context, detail: &detail };
    sample::serve(&args.common(), &serving, || {
        let plugin = Plugin::load(&args.library, &args.config)
            .map_err(|e| Fatal::new("-L", format!("{}: {e}", args.library.display())))?;
        Ok(JsonRpc {
            conns: (0..MAX_CLIENTS).map(|_| None).collect(),
            result: vec![0u8; RESULT_LEN].into_boxed_slice(),
            plugin,
        })
    })
}

#[derive(Debug)]
struct JsonRpc {
    /// Each client's plugin state, opened at its context or first request.
    conns: Vec<Option<Conn>>,
    /// Where the plugin writes a result.
    result: Box<[u8]>,
    /// Last: finished after the connections are closed.
    plugin: Plugin,
}

impl Drop for JsonRpc {
    /// Every client's plugin state is released before the plugin is finished.
    fn drop(&mut self) {
        for conn in self.conns.iter_mut().filter_map(Option::take) {
            self.plugin.close(conn);
        }
    }
}

/// An error response.
fn error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "error": { "code": code, "message": message }, "id": id })
}

/// The spec's message for its own codes.
fn standard_message(code: i64) -> &'static str {
    match code {
        PARSE_ERROR => "Parse error",
        INVALID_REQUEST => "Invalid Request",
        METHOD_NOT_FOUND => "Method not found",
        INVALID_PARAMS => "Invalid params",
        INTERNAL_ERROR => "Internal error",
        _ => "Server error",
    }
}

impl JsonRpc {
    /// The client's plugin state, opened now with `context` if it is not yet; `None` when the
    /// plugin refuses the client.
    fn conn(&mut self, id: usize, context: &[u8]) -> Option<&Conn> {
        let slot = self.conns.get_mut(id)?;
        if slot.is_none() {
            *slot = self.plugin.open(context);
        }
        slot.as_ref()
    }

    /// The response to one message, `None` when there is none (notifications only).
    fn answer(&mut self, id: usize, data: &[u8]) -> Option<Value> {
        let Ok(request) = serde_json::from_slice::<Value>(data) else {
            return Some(error(Value::Null, PARSE_ERROR, standard_message(PARSE_ERROR)));
        };
        match request {
            Value::Array(batch) if batch.is_empty() => {
                Some(error(Value::Null, INVALID_REQUEST, "Invalid Request: empty batch"))
            }
            Value::Array(batch) if batch.len() > MAX_BATCH => Some(error(
                Value::Null,
                INVALID_REQUEST,
                &format!("Invalid Request: more than {MAX_BATCH} requests in a batch"),
            )),
            Value::Array(batch) => {
                let answers: Vec<Value> =
                    batch.into_iter().filter_map(|r| self.single(id, r)).collect();
                (!answers.is_empty()).then_some(Value::Array(answers))
            }
            single => self.single(id, single),
        }
    }

    /// The response to one request object, `None` for a notification.
    fn single(&mut self, client: usize, request: Value) -> Option<Value> {
        let invalid = |id: Value, why: &str| {
            Some(error(id, INVALID_REQUEST, &format!("Invalid Request: {why}")))
        };
        let Value::Object(request) = request else {
            return invalid(Value::Null, "not an object");
        };
        // A missing id makes a notification; a present one must be a string, number or null.
        let id = match request.get("id") {
            None => None,
            Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id.clone()),
            Some(_) => return invalid(Value::Null, "id must be a string, a number or null"),
        };
        let reply_id = id.clone().unwrap_or(Value::Null);
        if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return invalid(reply_id, "jsonrpc must be \"2.0\"");
        }
        let Some(method) = request.get("method").and_then(Value::as_str) else {
            return invalid(reply_id, "method must be a string");
        };
        let params = match request.get("params") {
            None => "null".to_owned(),
            Some(p @ (Value::Array(_) | Value::Object(_))) => p.to_string(),
            Some(_) => return invalid(reply_id, "params must be an array or an object"),
        };
        let outcome = if method.starts_with("rpc.") {
            // Reserved for the protocol's own extensions (spec §4): none are implemented.
            Err((METHOD_NOT_FOUND, standard_message(METHOD_NOT_FOUND).to_owned()))
        } else {
            self.call(client, method, &params)
        };
        let id = id?;
        Some(match outcome {
            Ok(result) => json!({ "jsonrpc": "2.0", "result": result, "id": id }),
            Err((code, message)) => error(id, code, &message),
        })
    }

    /// Runs `method` in the plugin: the result, or an error code and message.
    fn call(&mut self, client: usize, method: &str, params: &str) -> Result<Value, (i64, String)> {
        let internal = |why: &str| (INTERNAL_ERROR, format!("Internal error: {why}"));
        let Some(conn) = self.conns.get(client).and_then(Option::as_ref) else {
            return Err(internal("no plugin state for this client"));
        };
        let (code, len) = self.plugin.call(conn, method, params, &mut self.result);
        let out = self.result.get(..len).unwrap_or_default();
        if code == 0 {
            return serde_json::from_slice(out)
                .map_err(|_| internal("the plugin's result is not JSON"));
        }
        let message = String::from_utf8_lossy(out);
        let code = i64::from(code);
        let message = if message.is_empty() {
            standard_message(code).to_owned()
        } else {
            message.into_owned()
        };
        Err((code, message))
    }
}

impl Service for JsonRpc {
    fn context(&mut self, id: usize, context: &[u8], clients: &mut Clients<'_>) {
        if self.conn(id, context).is_none() {
            clients.close(id, 1008, "refused by the plugin");
        }
    }

    fn message(&mut self, id: usize, _kind: Kind, data: &[u8], clients: &mut Clients<'_>) {
        // Messages read together with a refusal (or after a close) are not answered.
        if !clients.is_open(id) {
            return;
        }
        if self.conn(id, b"").is_none() {
            clients.close(id, 1008, "refused by the plugin");
            return;
        }
        let Some(response) = self.answer(id, data) else { return };
        let mut text = response.to_string();
        if text.len() > MAX_RESPONSE {
            text = error(Value::Null, INTERNAL_ERROR, "Internal error: response too large")
                .to_string();
        }
        clients.send(id, Kind::Text, text.as_bytes());
    }

    fn closed(&mut self, id: usize, _clients: &mut Clients<'_>) {
        if let Some(conn) = self.conns.get_mut(id).and_then(Option::take) {
            self.plugin.close(conn);
        }
    }
}
