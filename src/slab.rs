//! The fixed connection table: capacity set at start-up, a LIFO free list, and a generation
//! per slot so that an event or timer meant for a connection that has gone cannot reach the
//! next one in the same slot.

/// Identifies a live entry: slot index plus the slot's generation when the entry was inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    /// Slot index.
    pub index: u32,
    /// Generation of the slot at insertion.
    pub gen: u32,
}

impl core::fmt::Display for Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.index, self.gen)
    }
}

#[derive(Debug)]
struct Slot<T> {
    gen: u32,
    value: Option<T>,
}

/// A fixed-capacity slab.
#[derive(Debug)]
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    /// All slots allocated now; nothing grows later.
    #[must_use]
    pub fn with_capacity(capacity: u32) -> Self {
        let mut slots = Vec::with_capacity(capacity as usize);
        slots.resize_with(capacity as usize, || Slot { gen: 0, value: None });
        // Reverse order so that slot 0 is handed out first.
        let free = (0..capacity).rev().collect();
        Self { slots, free, len: 0 }
    }

    /// Inserts `make(key)`; `None` when full.
    pub fn insert_with(&mut self, make: impl FnOnce(Key) -> T) -> Option<Key> {
        self.try_insert_with(|k| Ok::<T, core::convert::Infallible>(make(k)))?.ok()
    }

    /// Inserts `make(key)` unless it fails; `None` when full.
    pub fn try_insert_with<E>(
        &mut self,
        make: impl FnOnce(Key) -> Result<T, E>,
    ) -> Option<Result<Key, E>> {
        let &index = self.free.last()?;
        let slot = self.slots.get_mut(index as usize)?;
        let gen = slot.gen.wrapping_add(1) & GEN_MASK;
        let key = Key { index, gen };
        Some(make(key).map(|value| {
            slot.gen = gen;
            slot.value = Some(value);
            self.free.pop();
            self.len += 1;
            key
        }))
    }

    /// The entry for `key`, if it is still the one inserted under it.
    pub fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        slot.value.as_mut()
    }

    /// Removes and returns the entry for `key`.
    pub fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        let value = slot.value.take()?;
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// Live entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// No live entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity fixed at start-up.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The key of the live entry in slot `index`, if any.
    #[must_use]
    pub fn key_at(&self, index: usize) -> Option<Key> {
        let slot = self.slots.get(index)?;
        slot.value.as_ref().map(|_| Key { index: index as u32, gen: slot.gen })
    }
}

/// Generations are kept to 15 bits so that a key fits a 32-bit token with the slot and side.
pub const GEN_MASK: u32 = 0x7fff;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stale_keys_miss() {
        let mut s = Slab::with_capacity(2);
        let a = s.insert_with(|_| "a").unwrap();
        let b = s.insert_with(|_| "b").unwrap();
        assert!(s.insert_with(|_| "c").is_none());
        assert_eq!(s.remove(a), Some("a"));
        let c = s.insert_with(|_| "c").unwrap();
        assert_eq!(c.index, a.index);
        assert_ne!(c.gen, a.gen);
        assert!(s.get_mut(a).is_none());
        assert_eq!(s.get_mut(c), Some(&mut "c"));
        assert_eq!(s.get_mut(b), Some(&mut "b"));
        assert_eq!(s.len(), 2);
    }
}
