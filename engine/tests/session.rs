//! Sessions on the real default model: batched prefill and token-by-token decode compute the
//! same thing, and the KV cache is reused across calls.

mod common;


const PROMPT: &str = "import numpy as np\n\ndef softmax(x):\n    \"\"\"Compute the softmax of a vector.\"\"\"\n    e = np.exp(x - x.max())\n";

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
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
        let d = max_abs_diff(&logits, &all[t * vocab..(t + 1) * vocab]);
        assert!(d < 2e-2, "position {t}: batched and single-token logits differ by {d}");
    }
}
