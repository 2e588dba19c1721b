//! HTTP/1.1: just enough to accept a WebSocket upgrade (RFC 6455 §4) or refuse it with a status.
pub mod handshake;
pub mod origin;
pub mod static_files;
