//! Authentication before the upgrade: the pieces that do not depend on the connection.
//!
//! * [`credentials`]: parsing what a request presents (an `Authorization` header, a session
//!   cookie, a login form), bounded and allocation-free;
//! * [`session`]: session tokens signed with HMAC-SHA256 under the gateway's key;
//! * [`throttle`]: the fixed-size table of login failures per network;
//! * [`users`]: the user database (the JSON-RPC `auth` plugin's file), SHA-512-crypt.

pub mod credentials;
pub mod session;
pub mod throttle;
pub mod users;
