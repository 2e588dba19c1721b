//! OS-level helpers: privilege drop and listening UNIX sockets for the sample backends.
pub mod listen;
pub mod signals;
pub mod user;
