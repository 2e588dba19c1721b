//! The status report of `wsgate status` (text, or JSON with `--json`), written item by item
//! into a fixed buffer: the gateway's figures, a line per listener, endpoint, refusal and close
//! kind, then one per connection. A [`Cursor`] says where the last fill stopped, so that a
//! report of any length goes out through the same few kilobytes, a fill per turn of the loop,
//! and relaying is never held up behind it. Connections that open or close between two fills
//! are listed or not as the slab is when their slot is reached.

use core::fmt::Write as _;
use std::time::Instant;

use super::counters::Counters;
use super::Connection;
use crate::config::Site;
use crate::relay::link;
use crate::slab::Slab;

/// Where a report is: the section and the item in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    section: u8,
    item: usize,
    /// An item of this section was written (JSON: the next one needs a comma).
    any: bool,
}

/// Sections in order.
const HEAD: u8 = 0;
const LISTENERS: u8 = 1;
const ENDPOINTS: u8 = 2;
const REFUSALS: u8 = 3;
const CLOSES: u8 = 4;
const CONNECTIONS: u8 = 5;
const TAIL: u8 = 6;
const DONE: u8 = 7;

impl Cursor {
    /// The report is complete.
    #[must_use]
    pub fn done(self) -> bool {
        self.section == DONE
    }
}

/// What the report is made from.
#[derive(Debug)]
pub struct View<'a> {
    /// The counters.
    pub counters: &'a Counters,
    /// The sites, in listener order.
    pub sites: &'a [Site],
    /// The connections.
    pub conns: &'a Slab<Connection>,
    /// Buffers taken, buffers in all, and their size.
    pub buffers: (usize, usize, usize),
    /// Programs of exec links running, and the limit.
    pub exec: (usize, usize),
    /// Now.
    pub now: Instant,
}

/// Writes into `out` up to its capacity (never growing it), and remembers a write that did not
/// fit.
#[derive(Debug)]
pub struct Fill<'a> {
    out: &'a mut Vec<u8>,
    full: bool,
}

impl<'a> Fill<'a> {
    /// A writer that appends to `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Self { out, full: false }
    }
}

impl core::fmt::Write for Fill<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.out.len() + s.len() > self.out.capacity() {
            self.full = true;
            return Err(core::fmt::Error);
        }
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Adds whole items to `out` from `cursor` on, until the next one does not fit or the report
/// is complete. An item too large for an empty buffer is left out, so a fill always moves on.
pub fn fill(out: &mut Vec<u8>, cursor: &mut Cursor, json: bool, view: &View<'_>) {
    while !cursor.done() {
        let mark = out.len();
        let mut w = Fill::new(out);
        let next = item(&mut w, *cursor, json, view);
        if w.full {
            out.truncate(mark);
            if mark > 0 {
                return;
            }
        }
        *cursor = next;
    }
}

/// Writes the item at `at` (nothing for a slot without a connection) and says where the next
/// one is.
fn item(w: &mut Fill<'_>, at: Cursor, json: bool, v: &View<'_>) -> Cursor {
    let Cursor { section, item: i, any } = at;
    let next = Cursor { section, item: i + 1, any: true };
    let section_end = Cursor { section: section + 1, item: 0, any: false };
    // JSON arrays: a comma before every item but the first.
    let sep = if json && any { "," } else { "" };
    let c = v.counters;
    let _ = match section {
        HEAD => {
            let up = v.now.saturating_duration_since(c.started).as_secs();
            let (slots, cap) = (v.conns.len(), v.conns.capacity());
            let (bufs, bufs_all, size) = v.buffers;
            let (exec, limit) = v.exec;
            let dropped = c.dropped.get();
            let version = env!("CARGO_PKG_VERSION");
            let pid = std::process::id();
            let _ = if json {
                write!(
                    w,
                    "{{\"version\":\"{version}\",\"pid\":{pid},\"uptime\":{up},\
                     \"slots\":{{\"used\":{slots},\"capacity\":{cap}}},\
                     \"buffers\":{{\"used\":{bufs},\"capacity\":{bufs_all},\"size\":{size}}},\
                     \"exec\":{{\"running\":{exec},\"limit\":{limit}}},\"dropped\":{dropped},\
                     \"listeners\":["
                )
            } else {
                write!(
                    w,
                    "wsgate {version} pid {pid} up {up}s\nslots {slots}/{cap}, buffers \
                     {bufs}/{bufs_all} of {size} bytes, exec programs {exec}/{limit}, dropped \
                     {dropped}\n"
                )
            };
            return section_end;
        }
        LISTENERS => {
            let (Some(site), Some(l)) = (v.sites.get(i), c.listeners.get(i)) else {
                let _ = if json { w.write_str("],\"endpoints\":[") } else { Ok(()) };
                return section_end;
            };
            let scheme = if site.tls.is_some() { "wss" } else { "ws" };
            let (listen, max) = (site.listen, site.max_connections);
            let (live, accepted, upgraded) = (l.live(), l.accepted.get(), l.upgraded.get());
            let (pages, refused, closed) = (l.pages.get(), l.refused.get(), l.closed.get());
            let (bytes_in, bytes_out) = (l.bytes_in.get(), l.bytes_out.get());
            let (full, resumed) = (l.tls_full.get(), l.tls_resumed.get());
            if json {
                write!(
                    w,
                    "{sep}{{\"listen\":\"{listen}\",\"scheme\":\"{scheme}\",\"live\":{live},\
                     \"max\":{max},\"accepted\":{accepted},\"upgraded\":{upgraded},\
                     \"pages\":{pages},\"refused\":{refused},\"closed\":{closed},\
                     \"bytes_in\":{bytes_in},\"bytes_out\":{bytes_out},\
                     \"tls_full\":{full},\"tls_resumed\":{resumed}}}"
                )
            } else {
                writeln!(
                    w,
                    "listener {listen} {scheme}: live {live} of {max}, accepted {accepted}, \
                     upgraded {upgraded}, pages {pages}, refused {refused}, closed {closed}, \
                     in {bytes_in} out {bytes_out} bytes, TLS sessions {full} new {resumed} \
                     resumed"
                )
            }
        }
        ENDPOINTS => {
            let Some(e) = c.endpoint(i) else {
                let _ = if json { w.write_str("],\"refusals\":[") } else { Ok(()) };
                return section_end;
            };
            let (open, opened) = (e.open, e.opened);
            let (bytes_in, bytes_out, up, down) =
                (e.bytes_in, e.bytes_out, e.msgs_up, e.frames_down);
            if json {
                let _ = write!(w, "{sep}{{\"name\":");
                let _ = text(w, &e.name, true);
                write!(
                    w,
                    ",\"open\":{open},\"opened\":{opened},\"bytes_in\":{bytes_in},\
                     \"bytes_out\":{bytes_out},\"msgs_up\":{up},\"frames_down\":{down}}}"
                )
            } else {
                let _ = w.write_str("endpoint /");
                let _ = text(w, &e.name, false);
                writeln!(
                    w,
                    ": open {open}, opened {opened}, in {bytes_in} out {bytes_out} bytes, \
                     {up} msgs up, {down} frames down"
                )
            }
        }
        REFUSALS | CLOSES => {
            let refusals = section == REFUSALS;
            let row = if refusals { c.refusal(i) } else { c.close(i) };
            let Some(k) = row else {
                let _ = match (json, refusals) {
                    (true, true) => w.write_str("],\"closes\":["),
                    (true, false) => w.write_str("],\"connections\":["),
                    (false, _) => Ok(()),
                };
                return section_end;
            };
            let (code, reason, count) = (k.code, k.reason, k.count);
            match (json, refusals) {
                (true, true) => write!(
                    w,
                    "{sep}{{\"status\":{code},\"reason\":\"{reason}\",\"count\":{count}}}"
                ),
                (true, false) => {
                    write!(w, "{sep}{{\"code\":{code},\"reason\":\"{reason}\",\"count\":{count}}}")
                }
                (false, true) => writeln!(w, "refused {code} {reason}: {count}"),
                (false, false) => writeln!(w, "closed {code} {reason}: {count}"),
            }
        }
        CONNECTIONS => {
            if i >= v.conns.capacity() {
                return section_end;
            }
            let Some(conn) = v.conns.key_at(i).and_then(|k| v.conns.get(k)) else {
                return Cursor { item: i + 1, ..at };
            };
            connection(w, conn, v, sep, json)
        }
        TAIL => {
            let _ = if json { w.write_str("]}\n") } else { Ok(()) };
            return section_end;
        }
        _ => return Cursor { section: DONE, item: 0, any: false },
    };
    next
}

/// One connection's item.
fn connection(
    w: &mut Fill<'_>,
    c: &Connection,
    v: &View<'_>,
    sep: &str,
    json: bool,
) -> core::fmt::Result {
    let id = c.key();
    let peer = c.peer;
    let site = v.sites.get(c.site);
    let listen = site.map(|s| s.listen);
    let upgraded = c.endpoint_row.is_some();
    let backend = match site.and_then(|s| link::find(&s.links, &c.name)) {
        _ if !upgraded => "-",
        None => "unix",
        Some(l) => l.target.kind(),
    };
    let mode = if upgraded { c.mode.name() } else { "-" };
    let state = c.phase().name();
    let age = v.now.saturating_duration_since(c.opened).as_secs();
    let tls = c.tls();
    let s = c.stats;
    let (bytes_in, bytes_out, up, down) = (s.client_in, s.client_out, s.msgs_up, s.frames_down);
    let listen = Shown(listen);
    if json {
        write!(w, "{sep}{{\"id\":\"{id}\",\"peer\":\"{peer}\",\"listen\":\"{listen}\",\"path\":")?;
        text(w, &c.name, true)?;
        write!(
            w,
            ",\"backend\":\"{backend}\",\"mode\":\"{mode}\",\"state\":\"{state}\",\
             \"age\":{age},\"tls\":{tls},\"user\":"
        )?;
        match c.user() {
            Some(u) => text(w, u, true)?,
            None => w.write_str("null")?,
        }
        write!(
            w,
            ",\"bytes_in\":{bytes_in},\"bytes_out\":{bytes_out},\"msgs_up\":{up},\
             \"frames_down\":{down}}}"
        )
    } else {
        write!(w, "conn {id} peer {peer} listen {listen} path /")?;
        text(w, &c.name, false)?;
        let tls = if tls { "yes" } else { "no" };
        write!(
            w,
            " backend {backend} mode {mode} state {state} age {age}s tls {tls} user {}",
            c.user().unwrap_or("-")
        )?;
        writeln!(w, " in {bytes_in} out {bytes_out} up {up} down {down}")
    }
}

/// An optional address, `-` when absent.
struct Shown<T>(Option<T>);

impl<T: core::fmt::Display> core::fmt::Display for Shown<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Some(t) => t.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// `s` as a JSON string (`json`), or as text with control characters and spaces shown as `?`
/// so that one connection stays one line of space-separated fields.
pub fn text(w: &mut impl core::fmt::Write, s: &str, json: bool) -> core::fmt::Result {
    if json {
        w.write_char('"')?;
    }
    for ch in s.chars() {
        match ch {
            '"' | '\\' if json => {
                w.write_char('\\')?;
                w.write_char(ch)?;
            }
            c if json && (c as u32) < 0x20 => write!(w, "\\u{:04x}", c as u32)?,
            c if !json && (c.is_control() || c.is_whitespace()) => w.write_char('?')?,
            c => w.write_char(c)?,
        }
    }
    if json {
        w.write_char('"')?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The whole report, filled through buffers of `cap` bytes.
    fn report(v: &View<'_>, json: bool, cap: usize) -> (String, usize) {
        let (mut all, mut fills, mut cursor) = (Vec::new(), 0, Cursor::default());
        let mut out = Vec::with_capacity(cap);
        while !cursor.done() {
            fill(&mut out, &mut cursor, json, v);
            assert!(out.len() <= cap && out.capacity() == cap, "a fill grew its buffer");
            all.extend_from_slice(&out);
            out.clear();
            fills += 1;
        }
        (String::from_utf8(all).unwrap(), fills)
    }

    #[test]
    fn a_report_is_the_same_through_a_small_buffer_and_its_tables_stay_bounded() {
        let now = Instant::now();
        let counters = Counters::new(["127.0.0.1:80".parse().unwrap()].into_iter(), 4, now);
        for i in 0..40 {
            let row = counters.opened(&format!("endpoint{i}\"\\"));
            counters.ended(row, &crate::event_loop::conn::Stats::default());
        }
        for i in 0..60 {
            counters.refused(0, 400 + i, "bad_request");
            counters.closed(1000 + i, "client_close");
        }
        let sites = [Site::default()];
        let conns = Slab::with_capacity(4);
        let v = View {
            counters: &counters,
            sites: &sites,
            conns: &conns,
            buffers: (0, 16, 4096),
            exec: (0, 16),
            now,
        };
        for json in [true, false] {
            let (whole, fills) = report(&v, json, 1 << 20);
            assert_eq!(fills, 1);
            let (small, fills) = report(&v, json, 256);
            assert_eq!(small, whole);
            assert!(fills > 20, "{fills}");
        }
        let (json, _) = report(&v, true, 4096);
        assert!(
            json.starts_with("{\"version\":") && json.ends_with("\"connections\":[]}\n"),
            "{json}"
        );
        // Names escaped; 32 endpoint rows and the rest together; 48 kinds and the rest.
        assert!(json.contains("{\"name\":\"endpoint3\\\"\\\\\",\"open\":0,\"opened\":1,"));
        assert_eq!(json.matches("\"name\":").count(), 33);
        assert!(json.contains("{\"name\":\"(other)\",\"open\":0,\"opened\":8,"));
        assert!(json.contains("{\"status\":0,\"reason\":\"(other)\",\"count\":12}"));
        assert!(json.contains("{\"code\":0,\"reason\":\"(other)\",\"count\":12}"));
        assert_eq!(json.matches('{').count(), json.matches('}').count());
        assert_eq!(json.matches('[').count(), json.matches(']').count());
        let (text, _) = report(&v, false, 4096);
        assert!(text.contains("endpoint /endpoint3\"\\: open 0, opened 1,"), "{text}");
        assert!(
            text.contains("refused 0 (other): 12\n") && text.contains("closed 0 (other): 12\n")
        );
    }
}
