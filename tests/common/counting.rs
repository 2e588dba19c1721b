//! A counting global allocator for the tests that prove "no allocation here" or measure heap
//! use. A test crate installs it with
//! `#[global_allocator] static GLOBAL: Counting = Counting;` and switches counting on for the
//! threads it cares about with [`COUNTING`].
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Allocations (alloc, alloc_zeroed, realloc) made on counting threads.
pub static ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Bytes live through allocations made on counting threads.
pub static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The highest `LIVE` seen.
pub static PEAK: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// Set on a thread to count its allocations.
    pub static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

fn add(n: isize) {
    let now = LIVE.fetch_add(n, Ordering::SeqCst) + n;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

/// Runs `f` with this thread's allocations counted.
pub fn counted<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    r
}

/// The allocator: the system's, plus counters.
pub struct Counting;

// SAFETY: forwards to the system allocator unchanged; counting touches only atomics and a
// const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for this method is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && counting() {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            add(-(layout.size() as isize));
        }
        // SAFETY: the caller's contract for this method is the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for this method is the system allocator's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() && counting() {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
            add(layout.size() as isize);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for this method is the system allocator's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() && counting() {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
            add(new_size as isize - layout.size() as isize);
        }
        p
    }
}
