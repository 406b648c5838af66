//! The pipelined greedy decode of the GPU backend (the host one step ahead, tokens fed back on
//! the GPU) gives exactly the tokens of the plain loop that reads each token back first.

mod common;

use nib_engine::backend::gpu::{self, decode};
use nib_engine::backend::Backend;

#[test]
fn pipelined_greedy_matches_step_by_step() {
    let m = gpu::open_model(&common::default_model()).unwrap();
    let b = &m.backend;
    let prompt = m.tokenizer.encode("def fibonacci(n):\n    ").unwrap();
    let steps = 8;
    let cfg = m.config();

    let mut cache = b.new_cache(cfg.n_layers, prompt.len() + steps + 1, cfg.attn).unwrap();
    let logits = m.arch.forward(b, &mut cache, &prompt, 0, false).unwrap();
    let mut want = vec![b.argmax(&logits).unwrap().unwrap()];
    for i in 1..steps {
        let logits = m.arch.forward(b, &mut cache, &want[i - 1..i], prompt.len() + i - 1, false).unwrap();
        want.push(b.argmax(&logits).unwrap().unwrap());
    }

    let mut cache = b.new_cache(cfg.n_layers, prompt.len() + steps + 1, cfg.attn).unwrap();
    let logits = m.arch.forward(b, &mut cache, &prompt, 0, false).unwrap();
    b.reset_stats();
    let mut seen = Vec::new();
    let got = decode::greedy(&m.arch, b, &mut cache, &logits, prompt.len(), steps, |t| {
        seen.push(t);
        true
    })
    .unwrap();
    assert_eq!(got, want);
    assert_eq!(seen, want, "every token goes to the callback");
    assert_eq!(b.stats().bytes_read, 4 * steps as u64, "4 bytes read back per token");

    // A stop after the third token: three tokens, though a fourth step may have run.
    let mut cache = b.new_cache(cfg.n_layers, prompt.len() + steps + 1, cfg.attn).unwrap();
    let logits = m.arch.forward(b, &mut cache, &prompt, 0, false).unwrap();
    let mut n = 0;
    let got = decode::greedy(&m.arch, b, &mut cache, &logits, prompt.len(), steps, |_| {
        n += 1;
        n < 3
    })
    .unwrap();
    assert_eq!(got, want[..3]);
}
