//! What both fuzz targets share: a global allocator that aborts on any single allocation larger
//! than the bound set for the current input, so an allocation sized by a length or count the
//! input claims (up to 2^64) is caught, not merely survived.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Largest single allocation allowed while the current input is parsed.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

struct Bounded;

fn check(size: usize) {
    if size > LIMIT.load(Relaxed) {
        // No allocation here: stderr is unbuffered.
        let _ = std::io::stderr().write_all(b"fuzz: allocation larger than 64x the input\n");
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

/// Runs `f` on `data` with allocations bounded by 64× the input plus room for error messages:
/// parsed values take more memory than their encoding (a one-byte u8 becomes a 32-byte GGUF
/// `Value`, a JSON token a serde_json value; vectors grow by doubling). The bound is lifted
/// before a panic message is formatted, so a failed assertion reports itself instead of
/// tripping the check.
pub fn bounded(data: &[u8], f: impl FnOnce(&[u8])) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            LIMIT.store(usize::MAX, Relaxed);
            previous(info)
        }));
    });
    LIMIT.store(data.len().saturating_mul(64).saturating_add(4096), Relaxed);
    f(data);
    LIMIT.store(usize::MAX, Relaxed);
}
