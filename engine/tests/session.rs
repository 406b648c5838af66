//! Sessions on the real default model: batched prefill and token-by-token decode give the same
//! logits bit for bit (every kernel is batch-invariant; llama.cpp's are not).

mod common;


const PROMPT: &str = "import numpy as np\n\ndef softmax(x):\n    \"\"\"Compute the softmax of a vector.\"\"\"\n    e = np.exp(x - x.max())\n";

fn first_bit_difference(a: &[f32], b: &[f32]) -> Option<(usize, f32, f32)> {
    a.iter().zip(b).enumerate().find(|(_, (x, y))| x.to_bits() != y.to_bits()).map(|(i, (x, y))| (i, *x, *y))
}

#[test]
fn prefill_matches_token_by_token_decode() {
    let model = common::load_default_model(2);
    let ids = model.tokenizer.encode(PROMPT).unwrap();
    assert!(ids.len() > 20);
    let mut batched = model.session(64).unwrap();
    let all = model.eval_all(&mut batched, &ids).unwrap();
    let vocab = model.config().vocab;
    let mut single = model.session(64).unwrap();
    for (t, _) in ids.iter().enumerate() {
        let logits = model.eval(&mut single, &ids[..=t]).unwrap();
        let d = first_bit_difference(&logits, &all[t * vocab..(t + 1) * vocab]);
        assert!(d.is_none(), "position {t}: single-token vs batched logit (id, single, batched) {d:?}");
    }
}
