//! Fuzzes the safetensors reader: any bytes must parse or give an error, never panic, overflow,
//! read out of bounds, or allocate out of proportion to the input (`bounded.rs`, shared with
//! `gguf_parse`). A parse that succeeds must keep its promises: every tensor's bytes lie in the
//! input, match its shape and dtype, do not overlap, and the lookup agrees.
#![no_main]

mod bounded;

use libfuzzer_sys::fuzz_target;
use nib_engine::safetensors::Safetensors;

fuzz_target!(|data: &[u8]| {
    bounded::bounded(data, |data| {
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
    });
});
