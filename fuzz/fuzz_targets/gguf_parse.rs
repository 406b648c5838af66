//! Fuzzes the GGUF reader: any bytes must parse or give an error, never panic, overflow (the
//! fuzz build has overflow checks on), read out of bounds, or make an allocation out of
//! proportion to the input (`bounded.rs`). A parse that succeeds must keep its promises: every tensor's data
//! lies in the input and has the size its type and dims say, and the lookups agree.
#![no_main]

mod bounded;

use libfuzzer_sys::fuzz_target;
use nib_engine::gguf::Gguf;

fuzz_target!(|data: &[u8]| {
    bounded::bounded(data, |data| {
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
    });
});
