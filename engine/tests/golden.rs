//! The default model on the CPU backend against llama.cpp's fixtures
//! (tests/fixtures/make_logit_fixtures.py made them).
//!
//! llama.cpp quantizes activations to 8 bits inside its quantized matmuls and keeps an f16 KV
//! cache; nib quantizes activations the same way but keeps f32 keys and values, so logits agree
//! closely but not exactly. The thresholds are the issue's: top-1 equal wherever llama.cpp's
//! top-2 margin exceeds 0.1, top-5 sets sharing at least 4, greedy continuations identical on
//! all but at most two prompts (each divergence printed with llama.cpp's margin there).

mod common;

use nib_engine::sample::{argmax, top_k};
use nib_engine::Model;
use serde_json::Value;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn logits_and_greedy_match_llama_cpp() {
    let model = Model::open_cpu(&common::default_model(), 2).unwrap();
    let fx = common::fixture("logits_smollm2.json");
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 12);
    let (mut worst_delta, mut greedy_same, mut report) = (0f32, 0usize, Vec::new());
    for (ci, case) in cases.iter().enumerate() {
        let prompt = case["prompt"].as_str().unwrap();
        let want_ids = ids(&case["ids"]);
        assert_eq!(model.tokenizer.encode(prompt).unwrap(), want_ids, "token ids of case {ci}");

        let mut s = model.session(want_ids.len() + 40).unwrap();
        let logits = model.eval(&mut s, &want_ids).unwrap();
        let top: Vec<(u32, f32)> = case["top"].as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32)).collect();
        let margin = top[0].1 - top[1].1;
        let ours = top_k(&logits, 5);
        if margin > 0.1 {
            assert_eq!(ours[0].0, top[0].0, "case {ci}: top-1 differs (llama.cpp margin {margin:.3})");
        }
        let shared = ours.iter().filter(|(id, _)| top[..5].iter().any(|(t, _)| t == id)).count();
        assert!(shared >= 4, "case {ci}: top-5 share only {shared}: ours {ours:?} vs {:?}", &top[..5]);
        for (id, l) in &top {
            worst_delta = worst_delta.max((logits[*id as usize] - l).abs());
        }

        // Greedy continuation, token by token as llama.cpp made it.
        let want = ids(&case["greedy"]);
        let margins: Vec<f64> = case["greedy_margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let mut seq = want_ids.clone();
        let mut logits = logits;
        let mut diverged = None;
        for (step, &w) in want.iter().enumerate() {
            let got = argmax(&logits).unwrap() as u32;
            if got != w {
                diverged = Some((step, got, w, margins[step]));
                break;
            }
            seq.push(got);
            logits = model.eval(&mut s, &seq).unwrap();
        }
        match diverged {
            None => greedy_same += 1,
            Some((step, got, w, m)) => report.push(format!("case {ci}: step {step}: nib {got} vs llama.cpp {w} (llama.cpp margin {m:.3})")),
        }
    }
    println!("largest |Δlogit| over llama.cpp's top-20: {worst_delta:.4}");
    println!("greedy continuations identical: {greedy_same}/{}", cases.len());
    for r in &report {
        println!("  {r}");
    }
    assert!(greedy_same + 2 >= cases.len(), "too many greedy divergences:\n{}", report.join("\n"));
    assert!(worst_delta < 0.5, "largest |Δlogit| {worst_delta}");
}
