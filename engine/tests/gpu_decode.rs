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

/// Candidates decoded together on the GPU: forked caches and one pass for a token of each
/// sequence give each row the logits that sequence gets alone (the batched product sums in
/// another order than the one-token one: float noise, held to the whole-model test's 1e-2,
/// and the same top-1).
#[test]
fn forked_sessions_stepped_together_match_each_alone() {
    let m = gpu::open_model(&common::default_model()).unwrap();
    let b = &m.backend;
    let prompt = m.tokenizer.encode("def fibonacci(n):\n    ").unwrap();
    let next = [m.tokenizer.encode("if").unwrap()[0], m.tokenizer.encode("return").unwrap()[0], m.tokenizer.encode("a").unwrap()[0]];

    let mut s0 = m.session(64).unwrap();
    m.eval(&mut s0, &prompt).unwrap();
    let mut forks: Vec<_> = (0..2).map(|_| m.fork(&s0, 8).unwrap().expect("the GPU forks its caches")).collect();
    let mut sessions: Vec<_> = std::iter::once(&mut s0).chain(forks.iter_mut()).collect();
    let rows = b.to_vec(&m.step_rows(&mut sessions, &next).unwrap()).unwrap();
    // A second step, from the sequences as they now stand.
    let rows2 = b.to_vec(&m.step_rows(&mut sessions, &next).unwrap()).unwrap();
    let vocab = m.config().vocab;
    assert_eq!(rows.len(), 3 * vocab);

    for (j, &t) in next.iter().enumerate() {
        let mut alone = m.session(64).unwrap();
        let mut ids = prompt.clone();
        ids.push(t);
        let want = m.eval(&mut alone, &ids).unwrap();
        ids.push(t);
        let want2 = m.eval(&mut alone, &ids).unwrap();
        for (got, want) in [(&rows[j * vocab..(j + 1) * vocab], &want), (&rows2[j * vocab..(j + 1) * vocab], &want2)] {
            let delta = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            eprintln!("row {j}: max |Δlogit| {delta:.2e}");
            assert!(delta < 1e-2, "row {j}: max |Δlogit| {delta}");
            assert_eq!(nib_engine::sample::argmax(got), nib_engine::sample::argmax(want), "row {j}: top-1");
        }
    }
}
