//! RFC 6455, server side, and its one extension, permessage-deflate (RFC 7692).
//!
//! * [`frame`]: frame headers (§5.2), parse and emit, and close codes (§7.4).
//! * [`mask`]: client-to-server masking (§5.3).
//! * [`utf8`]: incremental UTF-8 validation for text messages (§8.1), failing fast.
//! * [`session`]: the receive side of a connection: turns client bytes into message chunks and
//!   control events, enforcing §5.1 (masking), §5.2 (RSV, opcodes), §5.4 (fragmentation), §5.5
//!   (control frames) and the message size limit.
//! * [`deflate`]: permessage-deflate's negotiation and DEFLATE streams (the `deflate` feature).
#[cfg(feature = "deflate")]
pub mod deflate;
pub mod frame;
pub mod mask;
pub mod session;
pub mod utf8;
