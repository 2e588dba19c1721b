//! `websocket_chat`: the sample chat server for wsgate. It listens on a UNIX socket at
//! `<docroot>/<name>` and sends every message to every other client (not back to its sender),
//! as ouistiti's `websocket_chat` does.
//!
//! With `-w` it also understands ouistiti's commands, text messages of space-separated
//! words:
//!
//! * `WSHello <name>` sets the client's nickname (at most 30 bytes; control characters are
//!   not allowed) and answers the client alone with `WSWelcome <name>`. A name another client
//!   already has gets a three-digit suffix, the first free one from `001` on, the name cut to
//!   27 bytes (on a character boundary) first: `bob`, `bob001`, `bob002`. (ouistiti appended
//!   the count of clients with the same name, which hands out `bob001` twice, and cut inside
//!   UTF-8 characters.)
//! * `WSPrivate <name> <message>` sends `<message>` only to the client named `<name>`.
//! * `WSWhois <name>` answers `WSIs <name> <address>`: the client's address from the
//!   connection context (the gateway's `--context`; IPv6 too), `WSIs <name> network error`
//!   when the gateway sent no context, `WSIs <name> undefined` when nobody has that name.
//! * Any other message is broadcast as without `-w`.
//!
//! Everything is bounded ([`wsgate_kit::server`]): [`MAX_CLIENTS`] clients, messages of
//! `-M` bytes, four times that waiting for each client; a client that does not read what the
//! others send fast enough is disconnected.
use std::process::ExitCode;

use wsgate_kit::message::Kind;
use wsgate_kit::sample::{self, Serving};
use wsgate_kit::server::{Clients, Limits, Service};
use wsgate_kit::{context, Fatal};

/// Most clients at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 256;
/// Longest nickname, in bytes.
const MAX_NICK: usize = 30;
/// A duplicate nickname is cut to this many bytes before its 3-digit suffix.
const NICK_STEM: usize = 27;

wsgate_kit::sample_args! {
    /// Sample chat server for wsgate: every message goes to every other client. At most 256
    /// clients; a message is at most -M bytes (bigger: the client is closed, with close 1009 in
    /// framed mode) and at most 4 x -M bytes may wait for a client (a client that does not keep
    /// up is disconnected).
    struct Args {
        socket: "chat", "socket name, which is the URL path (default \"chat\"); a single name, no '/'",
        max_message: 16 << 10, "largest message in bytes, or with a K or M suffix (default 16K)",
        /// understand ouistiti's commands: WSHello, WSPrivate, WSWhois
        #[argh(switch, short = 'w')]
        commands: bool,
        /// the gateway sends the connection context (wsgate --context): needed in stream, lines
        /// and seqpacket modes, recognised without it in framed mode
        #[argh(switch, short = 'c')]
        context: bool,
    }
}

fn main() -> ExitCode {
    sample::main("websocket_chat", run)
}

fn run(args: &Args) -> Result<(), Fatal> {
    let common = args.common();
    let max_queue = common.max_message.saturating_mul(4);
    let limits = Limits {
        max_clients: MAX_CLIENTS,
        max_message: common.max_message,
        max_queue,
        pause_at: max_queue / 2,
    };
    let detail = if args.commands { ", commands" } else { "" };
    let serving = Serving { limits, context: args.context, detail };
    sample::serve(&common, &serving, || Ok(Chat::new(args.commands)))
}

/// What the chat knows about a client.
#[derive(Debug, Default)]
struct Member {
    nick: Option<String>,
    /// REMOTE_ADDR from the connection context.
    addr: Option<String>,
}

#[derive(Debug)]
struct Chat {
    commands: bool,
    members: Vec<Member>,
}

impl Chat {
    fn new(commands: bool) -> Self {
        Self { commands, members: (0..MAX_CLIENTS).map(|_| Member::default()).collect() }
    }

    fn broadcast(&self, from: usize, kind: Kind, data: &[u8], clients: &mut Clients<'_>) {
        for id in (0..self.members.len()).filter(|&id| id != from) {
            clients.send(id, kind, data);
        }
    }

    /// Runs a `-w` command; `false` when `text` is none.
    fn command(&mut self, id: usize, text: &str, clients: &mut Clients<'_>) -> bool {
        let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
        match word {
            "WSHello" => {
                let wanted = rest.split(' ').next().unwrap_or_default().trim_end_matches('\r');
                if let Some(nick) = self.unique_nick(id, wanted) {
                    let answer = format!("WSWelcome {nick}");
                    if let Some(m) = self.members.get_mut(id) {
                        m.nick = Some(nick);
                    }
                    clients.send(id, Kind::Text, answer.as_bytes());
                }
                true
            }
            "WSPrivate" => {
                let (to, message) = rest.split_once(' ').unwrap_or((rest, ""));
                for (other, m) in self.members.iter().enumerate() {
                    if m.nick.as_deref() == Some(to) {
                        clients.send(other, Kind::Text, message.as_bytes());
                    }
                }
                true
            }
            "WSWhois" => {
                let name = rest.split(' ').next().unwrap_or_default();
                let member = self.members.iter().find(|m| m.nick.as_deref() == Some(name));
                let answer = match member {
                    Some(Member { addr: Some(addr), .. }) => format!("WSIs {name} {addr}"),
                    Some(_) => format!("WSIs {name} network error"),
                    None => format!("WSIs {name} undefined"),
                };
                clients.send(id, Kind::Text, answer.as_bytes());
                true
            }
            _ => false,
        }
    }

    /// The nickname client `id` gets for `wanted`: itself if nobody else has it, else the
    /// first free `<stem>NNN`. `None` for an empty or invalid name, or when all 999 are taken.
    fn unique_nick(&self, id: usize, wanted: &str) -> Option<String> {
        if wanted.is_empty() || wanted.chars().any(char::is_control) {
            return None;
        }
        let wanted = cut(wanted, MAX_NICK);
        let taken = |n: &str| {
            self.members.iter().enumerate().any(|(i, m)| i != id && m.nick.as_deref() == Some(n))
        };
        if !taken(wanted) {
            return Some(wanted.to_owned());
        }
        let stem = cut(wanted, NICK_STEM);
        (1..=999).map(|n| format!("{stem}{n:03}")).find(|n| !taken(n))
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

impl Service for Chat {
    fn context(&mut self, id: usize, ctx: &[u8], _clients: &mut Clients<'_>) {
        if let Some(m) = self.members.get_mut(id) {
            m.addr = context::value(ctx, "REMOTE_ADDR").map(str::to_owned);
        }
    }

    fn message(&mut self, id: usize, kind: Kind, data: &[u8], clients: &mut Clients<'_>) {
        if self.commands && kind == Kind::Text && data.starts_with(b"WS") {
            if let Ok(text) = std::str::from_utf8(data) {
                if self.command(id, text, clients) {
                    return;
                }
            }
        }
        self.broadcast(id, kind, data, clients);
    }

    fn closed(&mut self, id: usize, _clients: &mut Clients<'_>) {
        if let Some(m) = self.members.get_mut(id) {
            *m = Member::default();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nicknames_get_the_first_free_suffix() {
        let mut chat = Chat::new(true);
        chat.members.get_mut(0).unwrap().nick = Some("bob".into());
        assert_eq!(chat.unique_nick(1, "bob").as_deref(), Some("bob001"));
        chat.members.get_mut(1).unwrap().nick = Some("bob001".into());
        assert_eq!(chat.unique_nick(2, "bob").as_deref(), Some("bob002"));
        // Renaming oneself to one's own name keeps it.
        assert_eq!(chat.unique_nick(0, "bob").as_deref(), Some("bob"));
        assert_eq!(chat.unique_nick(2, ""), None);
        assert_eq!(chat.unique_nick(2, "a\u{7}"), None);
    }

    #[test]
    fn long_names_are_cut_on_character_boundaries() {
        let mut chat = Chat::new(true);
        let long = "é".repeat(20); // 40 bytes
        let first = chat.unique_nick(0, &long).unwrap();
        assert_eq!(first, "é".repeat(15));
        chat.members.get_mut(0).unwrap().nick = Some(first);
        assert_eq!(chat.unique_nick(1, &long).unwrap(), format!("{}001", "é".repeat(13)));
    }
}
