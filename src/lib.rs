//! wsgate: a WebSocket gateway for embedded Linux routers.
//!
//! Browsers and devices connect with `ws://` or `wss://`; wsgate performs TLS, the HTTP/1.1
//! upgrade and the RFC 6455 framing, and relays every connection to a local "websocket server": any program
//! listening on a UNIX socket at `<docroot>/<name>`, where `<name>` is the URL path.
//!
//! # Layers, in data-flow order
//!
//! ```text
//!                   (wss: event_loop::tls_io, rustls between the socket and the buffers)
//! listener ─accept→ slab slot ─┬─ http::handshake ─→ relay::route ─→ UNIX socket (connected before 101)
//!                              └─ ws::session (client frames) ⇄ relay::codec (mode) ⇄ backend bytes
//!                                 readiness + deadlines drive every step; event_loop only dispatches
//! ```
//!
//! * [`http`] parses the upgrade request and writes the 101 or the error answer. Sans-IO.
//! * [`ws`] is RFC 6455: frame headers, masking, UTF-8 validation, and the receive-side
//!   session that turns client bytes into message chunks and control events. Sans-IO.
//! * [`relay`] decides what a request gets (`upgrade`, with `route`, `acl`, `path`) and how
//!   messages map to backend bytes in each relay mode (`codec`, `record`).
//! * [`buffer`] holds the fixed buffer pool allocated at start-up, [`slab`] the fixed
//!   connection table.
//! * [`event_loop`] owns the sockets: one single-threaded mio loop that moves bytes between the
//!   client and the backend of each connection, with backpressure and timers
//!   (`event_loop::timers`: each connection lives by the timeouts it was accepted with).
//! * [`tls`] builds each TLS listener's rustls configuration from its certificate files;
//!   `event_loop::tls_io` runs rustls inside a connection, with the same readiness rules as a
//!   plain socket.
//! * [`sys`] holds the only `unsafe` code (`fork`) and the OS-level helpers (signals, users);
//!   [`service`] is the daemon around the loop: init.d scripts, privilege drop, log sinks,
//!   pid file.
//!
//! `http`, `ws` and `relay::codec` never see a socket, a clock or the slab. The event loop
//! never parses bytes.
//!
//! # The backend kit
//!
//! What runs behind the UNIX sockets is another crate, `wsgate-kit` in `backend/`: the backend
//! library (`wsgate_kit::conn`, with its C ABI in `backend/capi/`), the receiving side of
//! direct mode, the sample servers (`websocket_echo`, `websocket_chat`, `websocket_jsonrpc`),
//! the JSON-RPC plugins and the ouistiti shim. It depends on this crate for the wire formats
//! both sides speak ([`ws`], [`relay::codec`], [`relay::record`], [`relay::context`]); this
//! crate depends on nothing of it, so the gateway binary carries none of the kit's code or
//! dependencies.
#![deny(unsafe_code)]

pub mod buffer;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod event_loop;
pub mod http;
pub mod libconfig;
pub mod logging;
pub mod relay;
pub mod service;
pub mod slab;
pub mod sys;
pub mod tls;
pub mod ws;
