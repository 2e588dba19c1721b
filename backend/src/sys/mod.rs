//! OS-level helpers of the backend kit, and its only `unsafe` code: listening UNIX sockets for
//! websocket servers (`listen`), listening TCP sockets for those reached through a `tcp:` link
//! (`tcp`), the connection inherited on standard input (`stdio`), owning a descriptor received
//! with `SCM_RIGHTS` (`fdpass`, direct mode's receiving side), loading and calling
//! `websocket_jsonrpc` plugins (`plugin`).
pub mod fdpass;
pub mod listen;
pub mod plugin;
pub mod stdio;
pub mod tcp;
