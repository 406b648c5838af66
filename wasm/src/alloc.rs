//! The global allocator: the system's (dlmalloc over wasm memory), remembering the size of the
//! last allocation it could not make. Rust aborts on a failed allocation with neither a panic
//! nor a message, so the worker sees a bare trap; it asks [`alloc_failure`] and reports
//! `out_of_memory` with the size instead of an unexplained `internal`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use wasm_bindgen::prelude::*;

static FAILED: AtomicUsize = AtomicUsize::new(0);

struct Remembering;

fn noted(p: *mut u8, size: usize) -> *mut u8 {
    if p.is_null() {
        FAILED.store(size.max(1), Ordering::Relaxed);
    }
    p
}

// SAFETY: every call goes to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Remembering {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        noted(unsafe { System.alloc(layout) }, layout.size())
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        noted(unsafe { System.alloc_zeroed(layout) }, layout.size())
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        noted(unsafe { System.realloc(ptr, layout, new_size) }, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: Remembering = Remembering;

/// Bytes of the last allocation that failed, 0 if none has: read by the worker after a trap.
#[wasm_bindgen(js_name = "__nibAllocFailure")]
pub fn alloc_failure() -> f64 {
    FAILED.load(Ordering::Relaxed) as f64
}

/// Allocates until memory runs out (a test of what the worker reports then). Nothing is
/// written, so the browser commits none of it.
#[wasm_bindgen(js_name = "__testExhaustMemory")]
pub fn test_exhaust_memory() {
    loop {
        std::mem::forget(Vec::<u8>::with_capacity(1 << 30));
    }
}
