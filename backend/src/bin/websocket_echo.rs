//! `websocket_echo`: the sample websocket server for wsgate. It listens on a UNIX socket at
//! `<docroot>/<name>` (or on TCP with `--tcp`, or serves the one connection on its standard
//! input with `--stdio`: [`wsgate_kit::sample`]) and sends every message back to the client
//! that sent it.
//!
//! It runs on the kit's loop ([`wsgate_kit::server`]) as an echoing service: up to `-c`
//! clients (default [`MAX_CLIENTS`]), each relayed one with one fixed 64 KiB buffer allocated
//! when it connects and reused for every message. A client whose peer stops reading fills
//! that buffer and is then not read from until its echo drains (backpressure instead of
//! unbounded queues).
//!
//! * `stream`, `lines`: bytes come back exactly as they were sent, streaming through the
//!   buffer.
//! * `framed`: like a WebSocket echo server, a whole message is read before it is echoed. The
//!   records of [`wsgate::relay::record`] are collected verbatim (headers and payloads, as they
//!   came) until the record with `F` completes the message; then all of those bytes are
//!   echoed. A message bigger than `-M` bytes, headers included, is answered with close 1009
//!   and the connection closed; a close record is answered once everything before it is
//!   echoed. A malformed record stream is dropped.
//! * `seqpacket`: each packet comes back as one packet.
//!
//! With `-d` (direct mode) the gateway hands over each client's TCP socket after the 101
//! ([`wsgate_kit::direct`]): the echo is then the WebSocket server itself on that socket
//! (whole messages of at most `-M` bytes, UTF-8 checked, pings answered, closes answered; a
//! message is echoed once the previous echo is written). A connection that brings no socket
//! (the gateway relays this endpoint) is served in the `-m` mode as above. A closing handshake
//! that is not over within [`wsgate_kit::server::CLOSE_TIMEOUT`] ends the connection.
//!
//! SIGTERM and SIGINT end the loop (with `--stdio`, so does the end of its connection); the
//! socket file is removed on the way out.
use std::process::ExitCode;

use wsgate_kit::message::Kind;
use wsgate_kit::sample::{self, Serving};
use wsgate_kit::server::{Clients, Limits, Relayed, Service};
use wsgate_kit::Fatal;

/// Most clients served at once by default (`-c`); further connections wait in the listen
/// backlog until one leaves.
const MAX_CLIENTS: usize = 256;

wsgate_kit::sample_args! {
    /// Sample websocket server for wsgate: echoes every message back to its sender.
    struct Args {
        socket: "echo", "socket name, which is the URL path (default \"echo\"); a single name, no '/'",
        max_message: 1 << 20,
        "framed and direct modes: largest message (in framed mode record headers included), \
         in bytes or with a K or M suffix (default 1M); a bigger one is answered with close 1009",
        /// most clients served at once (default 256; each costs a 64 KiB buffer while
        /// connected)
        #[argh(option, short = 'c', default = "MAX_CLIENTS")]
        max_clients: usize,
    }
}

fn main() -> ExitCode {
    sample::main("websocket_echo", run)
}

fn run(args: &Args) -> Result<(), Fatal> {
    let common = args.common();
    let limits = Limits {
        max_clients: args.max_clients.clamp(1, 1 << 20),
        max_message: common.max_message,
        // Direct clients: an echo of the biggest message, with its header and a close.
        max_queue: common.max_message.saturating_add(256),
        // One echo at a time: the next message is decoded once the previous echo is written.
        pause_at: 0,
    };
    sample::serve(&common, &Serving { limits, context: false, detail: "" }, || Ok(Echo))
}

/// Every message back to its sender: relayed clients byte for byte by the loop, direct
/// clients' messages here.
#[derive(Debug)]
struct Echo;

impl Service for Echo {
    fn relayed(&self) -> Relayed {
        Relayed::Echoed
    }

    fn context(&mut self, _id: usize, _context: &[u8], _clients: &mut Clients<'_>) {}

    fn message(&mut self, id: usize, kind: Kind, data: &[u8], clients: &mut Clients<'_>) {
        // The queue is empty (`pause_at` 0) and holds a message of `-M` bytes: this fits.
        clients.send(id, kind, data);
    }

    fn closed(&mut self, _id: usize, _clients: &mut Clients<'_>) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use wsgate::relay::codec::Mode;

    #[test]
    fn modes_parse() {
        for m in ["stream", "lines", "framed", "seqpacket"] {
            assert_eq!(m.parse::<Mode>().unwrap().to_string(), m);
        }
        assert!("udp".parse::<Mode>().is_err());
    }
}
