//! Fuzzes the GGUF reader: any bytes must parse or give an error, never panic, overflow (the
//! fuzz build has overflow checks on), read out of bounds, or make an allocation out of
//! proportion to the input. A parse that succeeds must keep its promises: every tensor's data
//! lies in the input and has the size its type and dims say, and the lookups agree.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use nib_engine::gguf::Gguf;

/// Largest single allocation allowed while the current input is parsed. Parsed values take
/// more memory than their encoding (a one-byte u8 becomes a 32-byte `Value`, and vectors grow
/// by doubling), so the bound is 64× the input plus room for error messages; an allocation
/// sized by a count the file claims (up to 2^64) lands far above it.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

struct Bounded;

fn check(size: usize) {
    if size > LIMIT.load(Relaxed) {
        // No allocation here: stderr is unbuffered.
        let _ = std::io::stderr().write_all(b"gguf_parse: allocation larger than 64x the input\n");
        std::process::abort();
    }
}

unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Bounded = Bounded;

/// Lifts the bound before the panic message and backtrace are formatted, so that a failed
/// assertion reports itself instead of tripping the allocation check.
fn lift_limit_on_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            LIMIT.store(usize::MAX, Relaxed);
            previous(info)
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    lift_limit_on_panic();
    LIMIT.store(data.len().saturating_mul(64).saturating_add(4096), Relaxed);
    let parsed = Gguf::parse(data);
    if let Ok(g) = &parsed {
        for t in &g.tensors {
            let bytes = g
                .tensor_data(data, t)
                .expect("a validated tensor lies inside the input");
            assert_eq!(bytes.len() as u64, t.size);
            assert_eq!(t.ty.bytes_for(t.n_elements()), Some(t.size));
            assert!(t.offset >= g.data_offset && t.offset % g.alignment == 0);
            assert_eq!(g.tensor(&t.name).map(|u| u.offset), Some(t.offset));
        }
        for (k, v) in g.metadata() {
            // The same value, not an equal one (NaN != NaN).
            assert!(g.get(k).is_some_and(|w| std::ptr::eq(v, w)), "get({k:?})");
        }
        let _ = g.architecture();
    }
    drop(parsed);
    LIMIT.store(usize::MAX, Relaxed);
});
