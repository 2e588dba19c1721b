//! OS-level helpers of the backend kit, and its only `unsafe` code: listening UNIX sockets for
//! websocket servers (`listen`), owning a descriptor received with `SCM_RIGHTS` (`fdpass`,
//! direct mode's receiving side), loading and calling `websocket_jsonrpc` plugins (`plugin`).
pub mod fdpass;
pub mod listen;
pub mod plugin;
