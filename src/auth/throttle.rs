//! The login failure throttle: a fixed table of the addresses that failed lately, each with a
//! budget of failures that refills with time. An address whose budget is spent is refused
//! (429) before its password is checked, so a guessing client costs no hash work either.
//!
//! Addresses are counted by network: an IPv4 address alone, an IPv6 one by its /64 (one host
//! usually holds a whole /64, and counting its addresses one by one would give it 2^64
//! budgets).
//!
//! The table never grows. When it is full, a new address takes the slot of the one with the
//! most budget left (the least suspicious), the oldest of those: a flood of fresh addresses
//! displaces fresh addresses, and a penalised one keeps its penalty until it has paid it or
//! every slot is as penalised as it is.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures an address may have at once.
pub const BURST: u32 = 5;
/// One failure is forgiven every so long.
pub const REFILL: Duration = Duration::from_secs(12);

/// One address's budget.
#[derive(Clone, Copy, Debug)]
struct Slot {
    net: u128,
    /// Failures it may still have.
    budget: u32,
    /// When `budget` was last brought up to date.
    at: Instant,
}

/// The table.
#[derive(Debug)]
pub struct Throttle {
    slots: Box<[Option<Slot>]>,
}

fn network(addr: IpAddr) -> u128 {
    match addr {
        // Tagged so that no IPv4 address equals an IPv6 network.
        IpAddr::V4(a) => u128::from(u32::from(a)) | 1 << 127,
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => u128::from(u32::from(v4)) | 1 << 127,
            None => u128::from(a) & !0u128 << 64 & !(1 << 127),
        },
    }
}

impl Slot {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at);
        let earned = u32::try_from(elapsed.as_millis() / REFILL.as_millis()).unwrap_or(u32::MAX);
        if earned > 0 {
            self.budget = self.budget.saturating_add(earned).min(BURST);
            // Keep the remainder, so that steady attempts earn exactly one per REFILL.
            self.at += REFILL * earned.min(BURST);
            if self.budget == BURST {
                self.at = now;
            }
        }
    }
}

impl Throttle {
    /// A table of `capacity` addresses (allocated here).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { slots: vec![None; capacity.max(1)].into_boxed_slice() }
    }

    /// May `addr` try a password now?
    #[must_use]
    pub fn allows(&mut self, addr: IpAddr, now: Instant) -> bool {
        let net = network(addr);
        match self.slots.iter_mut().flatten().find(|s| s.net == net) {
            Some(s) => {
                s.refill(now);
                s.budget > 0
            }
            None => true,
        }
    }

    /// `addr` failed a login.
    pub fn failed(&mut self, addr: IpAddr, now: Instant) {
        let net = network(addr);
        if let Some(s) = self.slots.iter_mut().flatten().find(|s| s.net == net) {
            s.refill(now);
            s.budget = s.budget.saturating_sub(1);
            return;
        }
        let fresh = Slot { net, budget: BURST - 1, at: now };
        let index = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                for s in self.slots.iter_mut().flatten() {
                    s.refill(now);
                }
                // The least penalised, the oldest of those.
                let key = |s: &Option<Slot>| s.map_or((u32::MAX, now), |s| (s.budget, s.at));
                let mut best = 0;
                for (i, s) in self.slots.iter().enumerate() {
                    let (b, at) = key(s);
                    let (bb, bat) = self.slots.get(best).map_or((0, now), key);
                    if b > bb || (b == bb && at < bat) {
                        best = i;
                    }
                }
                best
            }
        };
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(fresh);
        }
    }

    /// Addresses held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// No address held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_burst_then_one_per_refill() {
        let mut t = Throttle::new(4);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert!(t.allows(a, t0));
            t.failed(a, t0);
        }
        assert!(!t.allows(a, t0));
        assert!(!t.allows(a, t0 + REFILL - Duration::from_millis(1)));
        assert!(t.allows(a, t0 + REFILL));
        t.failed(a, t0 + REFILL);
        assert!(!t.allows(a, t0 + REFILL + REFILL / 2));
        assert!(t.allows(a, t0 + REFILL * 2));
        // Others are not touched.
        assert!(t.allows("192.0.2.2".parse().unwrap(), t0));
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let mut t = Throttle::new(4);
        let t0 = Instant::now();
        for i in 0..BURST {
            t.failed(format!("2001:db8:1:2::{i:x}").parse().unwrap(), t0);
        }
        assert!(!t.allows("2001:db8:1:2:ffff::1".parse().unwrap(), t0));
        assert!(t.allows("2001:db8:1:3::1".parse().unwrap(), t0));
        for _ in 0..BURST {
            t.failed("10.0.0.1".parse().unwrap(), t0);
        }
        assert!(!t.allows("::ffff:10.0.0.1".parse().unwrap(), t0));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_flood_of_fresh_addresses_keeps_the_table_and_the_penalised() {
        let mut t = Throttle::new(64);
        let t0 = Instant::now();
        let guesser: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..BURST {
            t.failed(guesser, t0);
        }
        for i in 0..10_000u32 {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(a, t0);
        }
        assert_eq!(t.len(), 64);
        assert!(!t.allows(guesser, t0), "the flood freed the guesser");
        // A user who never failed is never refused.
        assert!(t.allows("192.0.2.99".parse().unwrap(), t0));
    }
}
