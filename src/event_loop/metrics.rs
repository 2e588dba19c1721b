//! The metrics page (`metrics = "/PATH";` in a server's websocket section, `--metrics PATH`):
//! the counters of [`super::counters`] in the Prometheus text format (version 0.0.4), served
//! on that path of the listener to a GET without `Upgrade`, behind the site's allow/deny and
//! its `auth` rules as any endpoint path is.
//!
//! The page is written into an anonymous memory file (`memfd_create`), then sent as a static
//! page is (`sendfile`, or through the client buffer over TLS): its length is known before the
//! head goes out, and its size, bounded by the fixed counter tables, never touches the heap.

use std::fs::File;
use std::io::{Seek, Write};
use std::time::Instant;

use super::counters::Counters;

/// Writes through a small stack buffer into a file.
struct Out {
    file: File,
    buf: [u8; 1024],
    len: usize,
    failed: bool,
}

impl Out {
    fn flush(&mut self) {
        if !self.failed
            && self.file.write_all(self.buf.get(..self.len).unwrap_or_default()).is_err()
        {
            self.failed = true;
        }
        self.len = 0;
    }
}

impl core::fmt::Write for Out {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                self.flush();
            }
            if let Some(dst) = self.buf.get_mut(self.len..self.len + chunk.len()) {
                dst.copy_from_slice(chunk);
                self.len += chunk.len();
            }
        }
        Ok(())
    }
}

/// The gauges the counters do not hold: buffers in use, and in all.
#[derive(Clone, Copy, Debug)]
pub struct Gauges {
    /// Relay buffers in use, and in all.
    pub buffers: (usize, usize),
}

/// The page: a file positioned at its start, and its length.
///
/// # Errors
/// The memory file cannot be made or written.
pub fn page(counters: &Counters, gauges: Gauges, now: Instant) -> std::io::Result<(File, u64)> {
    let fd =
        nix::sys::memfd::memfd_create(c"wsgate-metrics", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(std::io::Error::from)?;
    let mut out = Out { file: File::from(fd), buf: [0; 1024], len: 0, failed: false };
    let _ = render(&mut out, counters, gauges, now);
    out.flush();
    if out.failed {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    let len = out.file.stream_position()?;
    out.file.rewind()?;
    Ok((out.file, len))
}

/// The metrics, in the text format.
fn render(
    w: &mut impl core::fmt::Write,
    c: &Counters,
    g: Gauges,
    now: Instant,
) -> core::fmt::Result {
    let up = now.saturating_duration_since(c.started).as_secs();
    for (name, help, value) in [
        ("wsgate_uptime_seconds", "Seconds since the gateway started.", up),
        ("wsgate_slots_used", "Connection slots in use.", c.slots_used()),
        ("wsgate_slots", "Connection slots in all.", c.slots as u64),
        ("wsgate_buffers_used", "Relay buffers in use.", g.buffers.0 as u64),
        ("wsgate_buffers", "Relay buffers in all.", g.buffers.1 as u64),
    ] {
        writeln!(w, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}")?;
    }
    writeln!(
        w,
        "# HELP wsgate_dropped_total Connections closed by wsgate drop.\n\
         # TYPE wsgate_dropped_total counter\nwsgate_dropped_total {}",
        c.dropped.get()
    )?;
    type Field = fn(&super::counters::Listener) -> u64;
    let listeners: [(&str, &str, &str, Field); 10] = [
        ("wsgate_connections", "gauge", "Connections in a slot now.", |l| l.live()),
        ("wsgate_accepted_total", "counter", "TCP connections accepted.", |l| l.accepted.get()),
        ("wsgate_upgraded_total", "counter", "Requests upgraded to WebSocket.", |l| {
            l.upgraded.get()
        }),
        ("wsgate_pages_total", "counter", "Pages served.", |l| l.pages.get()),
        ("wsgate_refused_total", "counter", "Requests refused with an HTTP status.", |l| {
            l.refused.get()
        }),
        ("wsgate_closed_total", "counter", "Connections ended.", |l| l.closed.get()),
        (
            "wsgate_received_bytes_total",
            "counter",
            "Bytes read from clients (ended connections).",
            |l| l.bytes_in.get(),
        ),
        ("wsgate_tls_new_sessions_total", "counter", "TLS handshakes that made a session.", |l| {
            l.tls_full.get()
        }),
        ("wsgate_tls_resumed_sessions_total", "counter", "TLS handshakes that resumed one.", |l| {
            l.tls_resumed.get()
        }),
        (
            "wsgate_sent_bytes_total",
            "counter",
            "Bytes written to clients (ended connections).",
            |l| l.bytes_out.get(),
        ),
    ];
    for (name, kind, help, field) in listeners {
        writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}")?;
        for l in &c.listeners {
            writeln!(w, "{name}{{listener=\"{}\"}} {}", l.listen, field(l))?;
        }
    }
    type EndpointField = fn(&super::counters::Endpoint) -> u64;
    let endpoints: [(&str, &str, &str, EndpointField); 6] = [
        (
            "wsgate_endpoint_connections",
            "gauge",
            "Connections relaying to the endpoint now.",
            |e| e.open,
        ),
        ("wsgate_endpoint_opened_total", "counter", "Connections upgraded to the endpoint.", |e| {
            e.opened
        }),
        ("wsgate_endpoint_received_bytes_total", "counter", "Bytes from its clients.", |e| {
            e.bytes_in
        }),
        ("wsgate_endpoint_sent_bytes_total", "counter", "Bytes to its clients.", |e| e.bytes_out),
        ("wsgate_endpoint_messages_up_total", "counter", "Messages relayed to its backend.", |e| {
            e.msgs_up
        }),
        ("wsgate_endpoint_frames_down_total", "counter", "Frames relayed to its clients.", |e| {
            e.frames_down
        }),
    ];
    for (name, kind, help, field) in endpoints {
        writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}")?;
        let mut i = 0;
        while let Some(e) = c.endpoint(i) {
            w.write_str(name)?;
            w.write_str("{endpoint=\"")?;
            label(w, &e.name)?;
            writeln!(w, "\"}} {}", field(&e))?;
            i += 1;
        }
    }
    type Row = fn(&Counters, usize) -> Option<super::counters::Kind>;
    let kinds: [(&str, &str, &str, Row); 2] = [
        (
            "wsgate_refusals_total",
            "status",
            "Requests refused, by HTTP status and reason.",
            |c, i| c.refusal(i),
        ),
        (
            "wsgate_closes_total",
            "code",
            "Connections ended, by close code sent (0: none) and reason.",
            |c, i| c.close(i),
        ),
    ];
    for (name, code, help, row) in kinds {
        writeln!(w, "# HELP {name} {help}\n# TYPE {name} counter")?;
        let mut i = 0;
        while let Some(k) = row(c, i) {
            writeln!(w, "{name}{{{code}=\"{}\",reason=\"{}\"}} {}", k.code, k.reason, k.count)?;
            i += 1;
        }
    }
    Ok(())
}

/// A label value: backslash, double quote and newline escaped (the text format's rules).
fn label(w: &mut impl core::fmt::Write, s: &str) -> core::fmt::Result {
    for ch in s.chars() {
        match ch {
            '\\' => w.write_str("\\\\")?,
            '"' => w.write_str("\\\"")?,
            '\n' => w.write_str("\\n")?,
            c => w.write_char(c)?,
        }
    }
    Ok(())
}
