//! What the gateway has done since it started, for `wsgate status` and the metrics page: per
//! listener, per endpoint, refusals by status and reason, closes by code and reason.
//!
//! Every table is made at start-up with a fixed size, so counting never allocates and no
//! input makes it grow: the first [`MAX_ENDPOINTS`] endpoint names get a row each, later ones
//! are counted together under [`OTHER`]; refusals and closes are keyed by a static label and a
//! code, of which there are a few dozen, with the same catch-all. The counters are `Cell`s so
//! that the loop and a connection's drive (which reaches them through its `Ctx`) both count
//! through a shared reference.

use core::cell::{Cell, RefCell};
use std::time::Instant;

/// Endpoints with a row of their own.
pub const MAX_ENDPOINTS: usize = 32;
/// Rows of the refusal and close tables.
const MAX_KINDS: usize = 48;
/// The row of what the tables have no room for.
pub const OTHER: &str = "(other)";

/// One listener's counters.
#[derive(Debug)]
pub struct Listener {
    /// Its address.
    pub listen: std::net::SocketAddr,
    /// TCP connections accepted.
    pub accepted: Cell<u64>,
    /// Requests upgraded to WebSocket.
    pub upgraded: Cell<u64>,
    /// Static pages and metrics pages served.
    pub pages: Cell<u64>,
    /// Requests refused with an HTTP status.
    pub refused: Cell<u64>,
    /// Connections ended.
    pub closed: Cell<u64>,
    /// TLS handshakes done (of connections that have ended): new sessions, and resumed ones.
    pub tls_full: Cell<u64>,
    /// See `tls_full`.
    pub tls_resumed: Cell<u64>,
    /// Bytes read from its clients, by connections that have ended.
    pub bytes_in: Cell<u64>,
    /// Bytes written to its clients, by connections that have ended.
    pub bytes_out: Cell<u64>,
}

/// One endpoint's counters.
#[derive(Clone, Debug, Default)]
pub struct Endpoint {
    /// Its name (the path without its leading '/'), or [`OTHER`].
    pub name: heapless::String<64>,
    /// Connections relaying to it now.
    pub open: u64,
    /// Connections upgraded to it since start.
    pub opened: u64,
    /// Bytes from and to clients, messages up and frames down, of ended connections.
    pub bytes_in: u64,
    /// See `bytes_in`.
    pub bytes_out: u64,
    /// See `bytes_in`.
    pub msgs_up: u64,
    /// See `bytes_in`.
    pub frames_down: u64,
}

/// A row of the refusal or close table: an HTTP status or close code (0: none), why, how many.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// The HTTP status of a refusal, or the close code sent (0 when none was).
    pub code: u16,
    /// A short label.
    pub reason: &'static str,
    /// How many.
    pub count: u64,
}

/// All the gateway's counters.
#[derive(Debug)]
pub struct Counters {
    /// When the gateway started.
    pub started: Instant,
    /// One per site, in listener order.
    pub listeners: Vec<Listener>,
    /// Connection slots in all (the slab's size).
    pub slots: usize,
    endpoints: RefCell<Vec<Endpoint>>,
    refusals: RefCell<Vec<Kind>>,
    closes: RefCell<Vec<Kind>>,
    /// Connections dropped by `wsgate drop`.
    pub dropped: Cell<u64>,
}

impl Listener {
    /// Connections in a slot now (those answering 503 included): accepted and not yet ended.
    #[must_use]
    pub fn live(&self) -> u64 {
        self.accepted.get().saturating_sub(self.closed.get())
    }
}

impl Counters {
    /// Zeroed counters for listeners at these addresses, every table at its full size.
    #[must_use]
    pub fn new(
        listeners: impl Iterator<Item = std::net::SocketAddr>,
        slots: usize,
        now: Instant,
    ) -> Self {
        let zero = Cell::new;
        Self {
            started: now,
            slots,
            listeners: listeners
                .map(|listen| Listener {
                    listen,
                    accepted: zero(0),
                    upgraded: zero(0),
                    pages: zero(0),
                    refused: zero(0),
                    closed: zero(0),
                    tls_full: zero(0),
                    tls_resumed: zero(0),
                    bytes_in: zero(0),
                    bytes_out: zero(0),
                })
                .collect(),
            endpoints: RefCell::new(Vec::with_capacity(MAX_ENDPOINTS + 1)),
            refusals: RefCell::new(Vec::with_capacity(MAX_KINDS + 1)),
            closes: RefCell::new(Vec::with_capacity(MAX_KINDS + 1)),
            dropped: Cell::new(0),
        }
    }

    /// Listener `site`'s counters.
    #[must_use]
    pub fn site(&self, site: usize) -> Option<&Listener> {
        self.listeners.get(site)
    }

    /// Connection slots in use: every listener's live connections.
    #[must_use]
    pub fn slots_used(&self) -> u64 {
        self.listeners.iter().map(Listener::live).sum()
    }

    /// A request of `site` refused with `status` for `reason`.
    pub fn refused(&self, site: usize, status: u16, reason: &'static str) {
        if let Some(l) = self.site(site) {
            bump(&l.refused);
        }
        tally(&mut self.refusals.borrow_mut(), status, reason);
    }

    /// A connection ended for `reason`, with close code `code` (0: none).
    pub fn closed(&self, code: u16, reason: &'static str) {
        tally(&mut self.closes.borrow_mut(), code, reason);
    }

    /// A connection upgraded to `name`: its endpoint row (an index for [`Self::ended`]).
    pub fn opened(&self, name: &str) -> usize {
        let mut rows = self.endpoints.borrow_mut();
        let at = match rows.iter().position(|e| e.name == name) {
            Some(i) => i,
            None => {
                let full = rows.len() >= MAX_ENDPOINTS;
                let label = if full { OTHER } else { name };
                match rows.iter().position(|e| e.name == label) {
                    Some(i) => i,
                    None => {
                        let mut row = Endpoint::default();
                        let _ = row.name.push_str(crate::event_loop::conn::truncate(label, 64));
                        rows.push(row);
                        rows.len() - 1
                    }
                }
            }
        };
        if let Some(row) = rows.get_mut(at) {
            row.open += 1;
            row.opened += 1;
        }
        at
    }

    /// A connection upgraded to endpoint row `at` ended with these counts.
    pub fn ended(&self, at: usize, stats: &super::conn::Stats) {
        if let Some(row) = self.endpoints.borrow_mut().get_mut(at) {
            row.open = row.open.saturating_sub(1);
            row.bytes_in += stats.client_in;
            row.bytes_out += stats.client_out;
            row.msgs_up += stats.msgs_up;
            row.frames_down += stats.frames_down;
        }
    }

    /// Endpoint row `i`, copied out.
    #[must_use]
    pub fn endpoint(&self, i: usize) -> Option<Endpoint> {
        self.endpoints.borrow().get(i).cloned()
    }

    /// Refusal row `i`.
    #[must_use]
    pub fn refusal(&self, i: usize) -> Option<Kind> {
        self.refusals.borrow().get(i).copied()
    }

    /// Close row `i`.
    #[must_use]
    pub fn close(&self, i: usize) -> Option<Kind> {
        self.closes.borrow().get(i).copied()
    }
}

/// Adds one.
pub fn bump(c: &Cell<u64>) {
    c.set(c.get().saturating_add(1));
}

/// Counts one (`code`, `reason`) in `rows`; past [`MAX_KINDS`] rows, under [`OTHER`].
fn tally(rows: &mut Vec<Kind>, code: u16, reason: &'static str) {
    let (code, reason) =
        if rows.len() >= MAX_KINDS && !rows.iter().any(|k| k.code == code && k.reason == reason) {
            (0, OTHER)
        } else {
            (code, reason)
        };
    match rows.iter_mut().find(|k| k.code == code && k.reason == reason) {
        Some(k) => k.count += 1,
        None => rows.push(Kind { code, reason, count: 1 }),
    }
}
