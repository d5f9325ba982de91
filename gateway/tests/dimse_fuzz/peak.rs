//! The largest single allocation made on this thread since [`measure`] began.
//!
//! The decoders under test run on the test thread (a current-thread tokio
//! runtime for the PDU reader), so a thread-local high-water mark sees every
//! allocation they make and none made by tests running beside them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // Const-initialised and without a destructor: reading it never allocates,
    // which matters inside an allocator.
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

pub struct PeakAllocator;

fn note(size: usize) {
    let _ = PEAK.try_with(|peak| {
        if size > peak.get() {
            peak.set(size);
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; we only
// record sizes in a thread-local cell, which never allocates.
unsafe impl GlobalAlloc for PeakAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` and returns its result with the largest single allocation it made.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    PEAK.with(|peak| peak.set(0));
    let out = f();
    (out, PEAK.with(Cell::get))
}

#[test]
fn the_allocator_sees_a_large_allocation() {
    let (v, peak) = measure(|| vec![0u8; 3 << 20]);
    assert!(peak >= 3 << 20);
    drop(v);
    let ((), peak) = measure(|| ());
    assert_eq!(peak, 0);
}
