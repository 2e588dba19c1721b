//! The fixed connection table: capacity set at start-up, a LIFO free list, and a generation
//! per slot so that an event or timer meant for a connection that has gone cannot reach the
//! next one in the same slot.
//!
//! The room for every slot is allocated at start-up, but a slot is written (made) only the
//! first time it is needed, when the free list is empty: a slot is as large as a connection
//! (under a kilobyte), and writing all of them at start would make the whole table resident
//! on a gateway that never sees that many clients at once. The slots made stay made, so a
//! gateway holds the slots of its busiest moment, never more than the capacity, and the
//! table never reallocates.

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
    /// The slots made so far, in a vector whose room for `capacity` slots is allocated at
    /// start-up: pushing never reallocates.
    slots: Vec<Slot<T>>,
    /// Made slots that hold no entry, the most recently freed last.
    free: Vec<u32>,
    len: usize,
    capacity: usize,
}

impl<T> Slab<T> {
    /// Room for `capacity` slots allocated now, none written; nothing grows later.
    #[must_use]
    pub fn with_capacity(capacity: u32) -> Self {
        let capacity = capacity as usize;
        Self {
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            len: 0,
            capacity,
        }
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
        if self.free.is_empty() && self.slots.len() < self.capacity {
            // Every made slot is taken: make the next one, free until `make` succeeds.
            let index = u32::try_from(self.slots.len()).ok()?;
            self.slots.push(Slot { gen: 0, value: None });
            self.free.push(index);
        }
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
    #[must_use]
    pub fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        slot.value.as_ref()
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
        self.capacity
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

    #[test]
    fn slots_are_made_on_first_use_in_order_and_never_past_the_capacity() {
        let mut s = Slab::with_capacity(3);
        let room = s.slots.as_ptr();
        assert_eq!((s.capacity(), s.slots.len()), (3, 0));
        let a = s.insert_with(|_| 'a').unwrap();
        assert_eq!((a.index, s.slots.len()), (0, 1));
        // A failed insert leaves the slot it made free for the next one.
        assert_eq!(s.try_insert_with(|_| Err::<char, ()>(())), Some(Err(())));
        let b = s.insert_with(|_| 'b').unwrap();
        assert_eq!((b.index, s.slots.len()), (1, 2));
        // A freed slot is reused before a new one is made.
        s.remove(a).unwrap();
        assert_eq!(s.insert_with(|_| 'c').unwrap().index, 0);
        assert_eq!(s.slots.len(), 2);
        assert_eq!(s.insert_with(|_| 'd').unwrap().index, 2);
        assert!(s.insert_with(|_| 'e').is_none());
        assert_eq!((s.len(), s.slots.len()), (3, 3));
        // The room allocated at start held every slot made.
        assert_eq!(s.slots.as_ptr(), room);
        assert_eq!(s.key_at(2), Some(Key { index: 2, gen: 1 }));
    }
}
