//! Fixed-size byte buffers and the pool that owns them, allocated once at start-up.
//!
//! A connection takes a buffer from the pool when bytes have to wait somewhere and gives it
//! back as soon as it is empty, so an idle connection pins no buffer, and the buffers in use
//! stay the same few (the free list is LIFO: a recently used, already resident buffer is handed
//! out first).
//!
//! All buffers are carved from one anonymous mapping made at start-up
//! ([`crate::sys::reserve_zeroed`]), not from the C library's allocator: the kernel gives a
//! page its memory at the first write, so buffers nobody has used cost address space, not RSS,
//! and nothing at start-up touches them (the free list holds slices, it never reads them). With
//! `calloc`, whether a large block is cleared byte by byte depends on the libc: zig's, linked
//! into the static router builds, clears it, which would make the 72 × 4 × 16 KiB pool of the
//! default 64-client gateway resident from the start (4.6 MB of a 32 MB router). The mapping
//! is never unmapped: the pool lives as long as the process.

/// A byte queue over a fixed slice: bytes are appended at `end` and consumed from `start`.
///
/// The offsets are `u32` (a buffer is at most [`crate::config::MAX_BUFFER_SIZE`], and
/// [`BufPool::new`] refuses one past `u32::MAX`): a connection slot has room for four
/// buffers, so this keeps 32 bytes off every slot.
#[derive(Debug)]
pub struct Buf {
    data: &'static mut [u8],
    start: u32,
    end: u32,
}

/// An offset within a buffer, which [`BufPool::new`] keeps within `u32`.
fn offset(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Buf {
    /// Where the queued bytes start.
    fn start(&self) -> usize {
        self.start as usize
    }

    /// Where they end.
    fn end(&self) -> usize {
        self.end as usize
    }

    /// The queued bytes.
    #[must_use]
    pub fn readable(&self) -> &[u8] {
        self.data.get(self.start()..self.end()).unwrap_or_default()
    }

    /// The queued bytes, mutable (unmasking happens in place).
    pub fn readable_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.start(), self.end());
        self.data.get_mut(start..end).unwrap_or_default()
    }

    /// Where the first queued byte lies in the buffer's storage, for [`raw`](Self::raw).
    #[must_use]
    pub fn position(&self) -> usize {
        self.start()
    }

    /// The bytes at `range` of the buffer's storage, queued or not: bytes consumed stay where
    /// they are until the next write into the buffer ([`spare`](Self::spare),
    /// [`room`](Self::room), [`append`](Self::append)), so a frame's payload can be sent from
    /// where it was read after the relay codec has consumed it. Empty when out of bounds.
    #[must_use]
    pub fn raw(&self, range: core::ops::Range<usize>) -> &[u8] {
        self.data.get(range).unwrap_or_default()
    }

    /// Number of queued bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// No queued bytes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Total size.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Bytes that can still be appended (after compaction).
    #[must_use]
    pub fn free(&self) -> usize {
        self.capacity() - self.len()
    }

    /// Drops `n` bytes from the front (clamped to what is queued).
    pub fn consume(&mut self, n: usize) {
        self.start = offset(self.start().saturating_add(n)).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// The free space at the back, compacted first so that it is all of [`free`](Self::free).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.data.copy_within(self.start()..self.end(), 0);
            self.end -= self.start;
            self.start = 0;
        }
        let end = self.end();
        self.data.get_mut(end..).unwrap_or_default()
    }

    /// Marks `n` bytes written into [`spare`](Self::spare) as queued (clamped to the capacity).
    pub fn commit(&mut self, n: usize) {
        self.end = offset(self.end().saturating_add(n).min(self.data.len()));
    }

    /// `n` writable bytes at the back, compacting only when the tail alone is too short (so
    /// that appending a frame does not move the queued bytes every time); `None` when `n` is
    /// more than [`free`](Self::free).
    pub fn room(&mut self, n: usize) -> Option<&mut [u8]> {
        if self.end().saturating_add(n) > self.data.len() {
            let _ = self.spare();
        }
        let end = self.end();
        self.data.get_mut(end..end.saturating_add(n))
    }

    /// Appends all of `bytes`, or nothing when they do not fit.
    #[must_use]
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        let Some(dst) = self.room(bytes.len()) else { return false };
        dst.copy_from_slice(bytes);
        self.commit(bytes.len());
        true
    }

    /// The last `n` queued bytes, for patching a header written earlier.
    pub fn tail_mut(&mut self, n: usize) -> Option<&mut [u8]> {
        let end = self.end();
        let from = end.checked_sub(n)?;
        if from < self.start() {
            return None;
        }
        self.data.get_mut(from..end)
    }
}

/// The start-up allocation of every buffer the gateway will ever use.
#[derive(Debug)]
pub struct BufPool {
    free: Vec<&'static mut [u8]>,
    size: usize,
    capacity: usize,
}

impl BufPool {
    /// Reserves `count` buffers of `size` bytes.
    ///
    /// # Errors
    /// `ENOMEM` when the address space for them cannot be had (or `count * size` overflows);
    /// `EINVAL` for a `size` past `u32::MAX` (see [`Buf`]).
    pub fn new(count: usize, size: usize) -> std::io::Result<Self> {
        if u32::try_from(size).is_err() {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        let len = count.checked_mul(size).ok_or(std::io::ErrorKind::OutOfMemory)?;
        let arena = crate::sys::reserve_zeroed(len)?;
        let mut free = Vec::with_capacity(count);
        // Reversed, so that the first buffer handed out is the arena's first.
        free.extend(arena.chunks_exact_mut(size.max(1)).rev());
        Ok(Self { free, size, capacity: count })
    }

    /// Takes a buffer, `None` when all are in use.
    pub fn take(&mut self) -> Option<Buf> {
        self.free.pop().map(|data| Buf { data, start: 0, end: 0 })
    }

    /// Returns a buffer. Never grows the free list past its start-up capacity.
    pub fn put(&mut self, buf: Buf) {
        if self.free.len() < self.capacity {
            self.free.push(buf.data);
        }
    }

    /// Gives `slot`'s buffer back when it is empty.
    pub fn release_if_empty(&mut self, slot: &mut Option<Buf>) {
        if slot.as_ref().is_some_and(Buf::is_empty) {
            if let Some(b) = slot.take() {
                self.put(b);
            }
        }
    }

    /// Makes sure `slot` holds a buffer; `false` when the pool is empty.
    pub fn ensure(&mut self, slot: &mut Option<Buf>) -> bool {
        if slot.is_none() {
            *slot = self.take();
        }
        slot.is_some()
    }

    /// Size of every buffer.
    #[must_use]
    pub fn buf_size(&self) -> usize {
        self.size
    }

    /// Buffers not in use.
    #[must_use]
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Buffers in all.
    #[must_use]
    pub fn count(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn room_compacts_only_when_the_tail_is_short() {
        let mut b = BufPool::new(1, 8).unwrap().take().unwrap();
        assert!(b.append(b"abcd"));
        b.consume(2);
        // Two bytes fit behind "cd" where they are: nothing moves.
        assert!(b.append(b"ef"));
        assert_eq!((b.start, b.end), (2, 6));
        // Four do not: the queue moves to the front first.
        assert!(b.append(b"ghij"));
        assert_eq!((b.start, b.end), (0, 8));
        assert_eq!(b.readable(), b"cdefghij");
        assert!(b.room(1).is_none());
    }

    #[test]
    fn a_buffer_is_resident_only_once_written() {
        const SIZE: usize = 16 * 1024;
        let mut pool = BufPool::new(64, SIZE).unwrap();
        let resident = |pool: &BufPool| -> usize {
            pool.free.iter().map(|b| crate::sys::resident_pages(b).unwrap().0).sum()
        };
        // Reserving the pool touches none of its pages.
        assert_eq!(resident(&pool), 0);
        let mut b = pool.take().unwrap();
        assert_eq!(crate::sys::resident_pages(b.spare()).unwrap().0, 0);
        assert!(b.append(&[1; SIZE]));
        // The one buffer written is, all of it; the 63 others are still not.
        let (written, spanned) = crate::sys::resident_pages(b.readable()).unwrap();
        assert!(spanned > 0 && written == spanned, "{written} of {spanned} pages resident");
        assert_eq!(resident(&pool), 0);
    }

    #[test]
    fn queue_compacts_and_refuses_overflow() {
        let mut pool = BufPool::new(1, 8).unwrap();
        let mut b = pool.take().unwrap();
        assert!(pool.take().is_none());
        assert!(b.append(b"abcdef"));
        b.consume(4);
        assert_eq!(b.readable(), b"ef");
        assert_eq!(b.free(), 6);
        assert!(b.append(b"123456"));
        assert_eq!(b.readable(), b"ef123456");
        assert!(!b.append(b"x"));

        b.tail_mut(2).unwrap().copy_from_slice(b"XY");
        assert_eq!(b.readable(), b"ef1234XY");
        b.consume(100);
        assert!(b.is_empty());
        pool.put(b);
        assert_eq!(pool.available(), 1);
    }
}
