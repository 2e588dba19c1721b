//! wsgate: a WebSocket gateway for embedded Linux routers.
//!
//! Browsers and devices connect with `ws://` or `wss://`; wsgate performs TLS, the HTTP/1.1
//! upgrade and the RFC 6455 framing, and relays every connection to a local "websocket server": any program
//! listening on a UNIX socket at `<docroot>/<name>`, where `<name>` is the URL path.
//!
//! # Layers, in data-flow order
//!
//! ```text
//!             event_loop (mio, one thread): accept, dispatch readiness and timers, nothing else
//!                │
//! listener ─accept→ slab slot: event_loop::conn::Connection, a state machine
//!   client bytes ⇄ Transport ⇄ from_client/to_client ⇄ Handshake: relay::upgrade::decide
//!   (TcpStream,     (rustls:        buffers          │  (http::handshake, relay::{path, acl,
//!    or a fake)      tls_io)                         │   route}) → 101, page, refusal
//!                                                     Open: ws::session ⇄ relay::codec (mode)
//!                                                      ⇄ to_backend/from_backend ⇄ Upstream
//!                                                        (UNIX socket, or a fake) via Dial
//! ```
//!
//! The connection reaches its two sockets only through `event_loop::transport`: [`Transport`]
//! for the client, [`Upstream`] for the backend and [`Dial`] to find one by name. The loop
//! runs it over a mio `TcpStream` and a UNIX socket; its tests over in-memory fakes and a
//! clock they move, which is how the whole lifecycle runs under qemu-user on the routers'
//! CPUs.
//!
//! [`Transport`]: event_loop::transport::Transport
//! [`Upstream`]: event_loop::transport::Upstream
//! [`Dial`]: event_loop::transport::Dial
//!
//! * [`http`] parses the upgrade request and writes the 101 or the error answer. Sans-IO.
//! * [`ws`] is RFC 6455: frame headers, masking, UTF-8 validation, and the receive-side
//!   session that turns client bytes into message chunks and control events. Sans-IO.
//! * [`relay`] decides what a request gets (`upgrade`, with `route`, `acl`, `path`) and how
//!   messages map to backend bytes in each relay mode (`codec`, `record`).
//! * [`auth`] is the login before the upgrade and the page: credentials (Basic, Bearer, the
//!   session cookie, a client certificate's names), the user database, session tokens and
//!   their key file, the failure throttle, and each site's [`auth::gate::Gate`], which the
//!   decision asks about every protected path; `auth::login` is the session endpoint's HTTP,
//!   answered by the connection (`event_loop::conn::session`) before the decision.
//! * [`buffer`] holds the fixed buffer pool allocated at start-up, [`slab`] the fixed
//!   connection table.
//! * [`event_loop`] owns the sockets: one single-threaded mio loop that moves bytes between the
//!   client and the backend of each connection, with backpressure and timers. A connection
//!   (`event_loop::conn`) is a state enum whose variants own their data, changed in one place,
//!   forward only; `event_loop::timers` holds its deadlines and the timeouts it was accepted
//!   with.
//! * [`tls`] builds each TLS listener's rustls configuration from its certificate files;
//!   `event_loop::tls_io` runs rustls inside a connection, with the same readiness rules as a
//!   plain socket.
//! * [`sys`] holds the only `unsafe` code (`fork`, a child's clean-up before exec, `flock`,
//!   terminal ioctls) and the OS-level helpers (signals, users, serial lines, child processes
//!   for exec backends);
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

pub mod auth;
pub mod buffer;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod ctl;
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
