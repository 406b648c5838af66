//! Fuzzes the safetensors reader: any bytes must parse or give an error, never panic, overflow,
//! read out of bounds, or allocate out of proportion to the input (the same bounded allocator as
//! `gguf_parse`). A parse that succeeds must keep its promises: every tensor's bytes lie in the
//! input, match its shape and dtype, do not overlap, and the lookup agrees.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use nib_engine::safetensors::Safetensors;

/// Largest single allocation allowed while the current input is parsed: the JSON header becomes
/// serde_json values (a few dozen bytes per one-byte token), so 64× the input plus room for
/// messages; an allocation sized by a claimed length lands far above it.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

struct Bounded;

fn check(size: usize) {
    if size > LIMIT.load(Relaxed) {
        let _ = std::io::stderr().write_all(b"safetensors_parse: allocation larger than 64x the input\n");
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
    if let Ok(st) = Safetensors::parse(data) {
        let mut last_end = 0;
        for t in &st.tensors {
            let bytes = st.data(data, t).expect("a validated tensor lies inside the input");
            assert_eq!(bytes.len() as u64, t.n_elements() * t.dtype.size());
            assert!(t.start >= last_end, "tensors overlap");
            last_end = t.end;
            assert_eq!(st.tensor(&t.name).map(|u| u.start), Some(t.start));
        }
    }
    LIMIT.store(usize::MAX, Relaxed);
});
