//! Where a request goes, and how WebSocket messages map to backend bytes.
//!
//! * [`path`]: percent-decoding and the syntactic checks on the URL path.
//! * [`acl`]: ouistiti's allow / deny / denylast matcher.
//! * [`route`]: path → `<docroot>/<path>` UNIX socket, connected without leaving the docroot;
//!   a link's UNIX or TCP target.
//! * [`link`]: endpoints whose backend the configuration names (path prefix → target).
//! * [`record`]: the `framed` mode's record header.
//! * [`codec`]: the relay modes (`stream`, `lines`, `framed`, `seqpacket`).
//! * [`compress`]: permessage-deflate's contexts and per-connection state (the `deflate`
//!   feature).
//! * [`upgrade`]: what a request head gets (page, upgrade, wait, refusal), and each refusal's
//!   status.
pub mod acl;
pub mod codec;
#[cfg(feature = "deflate")]
pub mod compress;
pub mod context;
pub mod link;
pub mod path;
pub mod record;
pub mod route;
pub mod upgrade;
