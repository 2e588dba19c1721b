//! Authentication before the upgrade and before pages: HTTP Basic against the user database,
//! for the paths a site's `auth` policy protects.
//!
//! * [`credentials`]: parsing what a request presents (an `Authorization` header, a session
//!   cookie, a login form), bounded and allocation-free;
//! * [`session`]: session tokens signed with HMAC-SHA256 under the gateway's key;
//! * [`throttle`]: the fixed-size table of login failures per network;
//! * [`users`]: the user database (the JSON-RPC `auth` plugin's file), SHA-512-crypt;
//! * [`gate`]: a site's check of each request against its policy, in that order.

pub mod credentials;
pub mod gate;
pub mod session;
pub mod throttle;
pub mod users;
