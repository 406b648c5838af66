//! The default model on the CPU backend against llama.cpp's fixtures
//! (tests/fixtures/make_logit_fixtures.py made them); what is held to what is in
//! tests/common/golden.rs, shared with the qwen2 test.

mod common;

#[test]
fn logits_and_greedy_match_llama_cpp() {
    let model = common::load_default_model(2);
    let fx = common::fixture("logits_smollm2.json");
    assert!(fx["cases"].as_array().unwrap().len() >= 12);
    common::golden::check(&model, &fx);
}
