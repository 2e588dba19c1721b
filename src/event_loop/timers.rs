//! The timeouts a connection lives by, and the two rules that keep its timers from spinning the
//! loop.
//!
//! **One source.** A connection copies its site's timeouts when it is accepted
//! ([`Timeouts::of`]) and from then on reads only that copy, both to arm a timer and to act when
//! it fires. A reload (SIGHUP) replaces the site's settings, so it applies to the connections
//! accepted after it; open connections keep the timeouts they were admitted with, as they keep
//! their TLS configuration, relay mode and message limit. Both ends must read the same value: a
//! deadline computed from one value and a firing check that reads another can leave a deadline
//! in the past that firing never moves, and the loop, asked to wake at a past instant, would
//! wake for it again at once, for as long as the connection lives.
//!
//! **Firing consumes.** When a connection's timers are fired, every deadline that is due is
//! taken ([`take_due`]) before any of them acts, so a timer that means nothing in the current
//! phase (a ping falling due while the connection is closing) is dropped rather than left in
//! the past; a timer that must run again is armed anew, in the future. The idle timer is not
//! stored: it is the last activity plus [`Timeouts::idle`], and firing it leaves `Open`, the
//! only phase that has it.

use std::time::{Duration, Instant};

use crate::config::Site;

/// A site's timer settings, as one connection sees them for its whole life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// For the upgrade request (and the TLS handshake before it).
    pub handshake: Duration,
    /// Between static requests on one connection; zero closes after each response.
    pub keepalive: Duration,
    /// Ping after this much client silence; `None`: no pings.
    pub ping_interval: Option<Duration>,
    /// For the answer to a ping.
    pub pong: Duration,
    /// Close after this much silence both ways; `None`: never.
    pub idle: Option<Duration>,
    /// For the closing handshake, a refusal's flush and the lingering after it.
    pub close: Duration,
}

impl Timeouts {
    /// The timeouts of `site` as they are now.
    #[must_use]
    pub fn of(site: &Site) -> Self {
        Self {
            handshake: site.handshake_timeout,
            keepalive: site.keepalive,
            ping_interval: site.ping_interval,
            pong: site.pong_timeout,
            idle: site.idle_timeout,
            close: site.close_timeout,
        }
    }
}

/// Takes the deadline in `slot` if it is due at `now`: `true` when it was (`slot` is then
/// empty).
pub fn take_due(slot: &mut Option<Instant>, now: Instant) -> bool {
    slot.take_if(|d| *d <= now).is_some()
}

/// A connection's timers: the timeouts it was admitted with and every deadline armed from
/// them, in one place.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    /// The site's timeouts at accept (see the module comment).
    pub timeouts: Timeouts,
    /// The phase's own deadline: handshake, keep-alive, page, hand-over, close, or the next
    /// connect to a busy backend.
    pub deadline: Option<Instant>,
    /// The next ping, when pings are on and the connection is open.
    pub ping_at: Option<Instant>,
    /// The answer to a ping is due.
    pub pong_deadline: Option<Instant>,
    /// The client was last heard from (any bytes).
    pub last_rx: Instant,
    /// The last message either way (the idle timer counts from it).
    pub last_activity: Instant,
}

impl Timers {
    /// A client accepted at `now`: the handshake deadline runs.
    #[must_use]
    pub fn new(timeouts: Timeouts, now: Instant) -> Self {
        Self {
            timeouts,
            deadline: Some(now + timeouts.handshake),
            ping_at: None,
            pong_deadline: None,
            last_rx: now,
            last_activity: now,
        }
    }

    /// The connection opened at `now`: no phase deadline, the ping timer starts.
    pub fn open(&mut self, now: Instant) {
        self.deadline = None;
        self.last_rx = now;
        self.last_activity = now;
        self.ping_at = self.timeouts.ping_interval.map(|i| now + i);
    }

    /// A pong came: nothing is outstanding; the next ping is an interval away.
    pub fn pong(&mut self, now: Instant) {
        self.pong_deadline = None;
        if let Some(interval) = self.timeouts.ping_interval {
            self.ping_at = Some(now + interval);
        }
    }

    /// The idle deadline, which only an open connection has: the last activity plus the
    /// idle timeout.
    #[must_use]
    pub fn idle_deadline(&self, open: bool) -> Option<Instant> {
        match (open, self.timeouts.idle) {
            (true, Some(d)) => Some(self.last_activity + d),
            _ => None,
        }
    }

    /// The earliest deadline.
    #[must_use]
    pub fn next(&self, open: bool) -> Option<Instant> {
        [self.deadline, self.ping_at, self.pong_deadline, self.idle_deadline(open)]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_deadlines_are_taken_others_kept() {
        let now = Instant::now();
        let later = now + Duration::from_millis(5);
        let mut slot = Some(later);
        assert!(!take_due(&mut slot, now));
        assert_eq!(slot, Some(later));
        assert!(take_due(&mut slot, later));
        assert_eq!(slot, None);
        assert!(!take_due(&mut slot, later));
        let mut past = Some(now);
        assert!(take_due(&mut past, later));
        assert_eq!(past, None);
    }

    #[test]
    fn a_copy_does_not_follow_the_site() {
        let mut site = Site { idle_timeout: Some(Duration::from_secs(3)), ..Site::default() };
        let admitted = Timeouts::of(&site);
        site.idle_timeout = None;
        assert_eq!(admitted.idle, Some(Duration::from_secs(3)));
        assert_eq!(Timeouts::of(&site).idle, None);
    }
}
