//! mio tokens: which connection, which side, and which generation of the slot.
//!
//! Layout (fits 32-bit `usize`, as on MIPS and ARM routers):
//!
//! ```text
//!  bit 31..17   16..1         0
//!  generation   slot index    side (0 client, 1 backend)
//! ```
//!
//! Reserved tokens, from the top: signals, the waker, the control socket and its clients, the
//! listeners, the programs' stderr pipes.
//!
//! Slot indexes stay below 2^15 (config `MAX_CONNECTIONS`), so bit 16 of a connection token is
//! always 0; the reserved tokens at the top of the range have it set and can never collide.

use mio::Token;

use crate::slab::{Key, GEN_MASK};

/// The signal descriptor.
pub const SIGNALS: Token = Token(usize::MAX - 1);
/// The control socket's listening socket; its client `i` is `CONTROL_CLIENT_BASE - i`.
pub const CONTROL: Token = Token(usize::MAX - 3);
const CONTROL_CLIENT_BASE: usize = usize::MAX - 4;
/// Control clients served at once (`control::MAX_CLIENTS`), within the room below
/// [`LISTENER_BASE`].
const MAX_CONTROL_CLIENTS: usize = super::control::MAX_CLIENTS;

// The control clients sit above the listeners' tokens (the waker and signals above them).
const _: () = assert!(CONTROL_CLIENT_BASE - (MAX_CONTROL_CLIENTS - 1) > LISTENER_BASE);

/// The token of control client `i`.
#[must_use]
pub fn control_client(i: usize) -> Token {
    Token(CONTROL_CLIENT_BASE - i.min(MAX_CONTROL_CLIENTS - 1))
}

/// The control client of a token.
#[must_use]
pub fn control_client_index(t: Token) -> Option<usize> {
    let i = CONTROL_CLIENT_BASE.checked_sub(t.0)?;
    (i < MAX_CONTROL_CLIENTS).then_some(i)
}

/// First listener token; listener `i` is `LISTENER_BASE - i`.
const LISTENER_BASE: usize = usize::MAX - 16;
/// Most listeners.
const MAX_LISTENERS: usize = 64;

/// The token of listener `i`.
#[must_use]
pub fn listener(i: usize) -> Token {
    Token(LISTENER_BASE - i.min(MAX_LISTENERS - 1))
}

/// The listener index of a listener token.
#[must_use]
pub fn listener_index(t: Token) -> Option<usize> {
    let i = LISTENER_BASE.checked_sub(t.0)?;
    (i < MAX_LISTENERS).then_some(i)
}

/// First token of a program's stderr pipe; the pipe of child slot `i` is `CHILD_LOG_BASE - i`.
const CHILD_LOG_BASE: usize = LISTENER_BASE - MAX_LISTENERS;
/// Most child slots (the exec process limit's bound, `config::MAX_EXEC_LIMIT`).
pub const MAX_CHILD_LOGS: usize = 1024;

/// The token of child slot `i`'s stderr pipe.
#[must_use]
pub fn child_log(i: usize) -> Token {
    Token(CHILD_LOG_BASE - i.min(MAX_CHILD_LOGS - 1))
}

/// The child slot of a stderr token.
#[must_use]
pub fn child_log_index(t: Token) -> Option<usize> {
    let i = CHILD_LOG_BASE.checked_sub(t.0)?;
    (i < MAX_CHILD_LOGS).then_some(i)
}

/// Which socket of a connection an event is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The WebSocket client.
    Client,
    /// The UNIX-socket backend.
    Backend,
}

/// The token for `key`'s `side`.
#[must_use]
pub fn encode(key: Key, side: Side) -> Token {
    let s = usize::from(side == Side::Backend);
    Token(((key.gen & GEN_MASK) as usize) << 17 | (key.index as usize & 0x7fff) << 1 | s)
}

/// The connection and side of a token; `None` for reserved tokens.
#[must_use]
pub fn decode(t: Token) -> Option<(Key, Side)> {
    let v = t.0;
    if v & (1 << 16) != 0 {
        return None;
    }
    let side = if v & 1 == 0 { Side::Client } else { Side::Backend };
    let index = ((v >> 1) & 0x7fff) as u32;
    let gen = ((v >> 17) as u32) & GEN_MASK;
    Some((Key { index, gen }, side))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_tokens_are_apart_from_every_other() {
        for i in 0..MAX_CONTROL_CLIENTS {
            let t = control_client(i);
            assert_eq!(control_client_index(t), Some(i));
            assert!(t != CONTROL && t != SIGNALS && decode(t).is_none());
            assert!(listener_index(t).is_none() && child_log_index(t).is_none());
        }
        assert_eq!(control_client_index(CONTROL), None);
        assert!(decode(CONTROL).is_none() && listener_index(CONTROL).is_none());
    }

    #[test]
    fn round_trip_and_reserved() {
        for (index, gen) in [(0, 0), (1, 1), (32_766, GEN_MASK), (12_345, 777)] {
            let k = Key { index, gen };
            for side in [Side::Client, Side::Backend] {
                let t = encode(k, side);
                assert!(t.0 <= u32::MAX as usize);
                assert_eq!(decode(t), Some((k, side)));
            }
        }
        assert_eq!(decode(listener(0)), None);
        for i in [0, 1, MAX_CHILD_LOGS - 1] {
            assert_eq!(decode(child_log(i)), None);
            assert_eq!(listener_index(child_log(i)), None);
            assert_eq!(child_log_index(child_log(i)), Some(i));
        }
        assert_eq!(child_log_index(listener(MAX_LISTENERS - 1)), None);
        assert_eq!(child_log_index(SIGNALS), None);
        // Reserved tokens keep bit 16 set on a 32-bit target too.
        assert!(child_log(MAX_CHILD_LOGS - 1).0 as u64 & 0xffff_ffff >= 0xffff_0000);
        assert_eq!(decode(listener(7)), None);
        assert_eq!(listener_index(listener(7)), Some(7));
        assert_eq!(listener_index(SIGNALS), None);
        assert_eq!(decode(SIGNALS), None);
    }
}
