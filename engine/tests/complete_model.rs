//! The completer on the real default model (greedy, so deterministic): KV reuse across
//! keystrokes, candidates, typed-through reuse, streaming, cancellation; and FIM prompt ids for
//! vocabularies with FIM tokens, built from tokenizer.json files written here.

mod common;

use std::cell::Cell;

use nib_engine::backend::cpu::CpuBackend;
use nib_engine::complete::{Budget, Completer, CompleterConfig, ContextFile, Cursor, Family, Language, Mode, PromptFormat, Request, StopReason, MAX_CANDIDATES};
use nib_engine::tokenizer::Tokenizer;
use nib_engine::Error;

fn completer(cache_entries: usize) -> Completer<CpuBackend> {
    let model = common::load_default_model(2);
    Completer::new(model, CompleterConfig { cache_entries, ..CompleterConfig::default() }).unwrap()
}

/// About 1,000 tokens of ordinary Python.
fn long_python() -> String {
    let mut s = String::from("import math\nfrom dataclasses import dataclass\n\n");
    for (i, name) in ["Point", "Vector", "Segment", "Circle", "Square", "Triangle", "Polygon", "Ellipse", "Ray", "Line", "Box", "Grid"].iter().enumerate() {
        s += &format!(
            "@dataclass\nclass {name}:\n    x: float = {i}.0\n    y: float = {}.5\n\n    def norm(self) -> float:\n        \"\"\"Length of the {n} from the origin.\"\"\"\n        return math.hypot(self.x, self.y)\n\n    def scaled(self, k: float) -> \"{name}\":\n        return {name}(self.x * k, self.y * k)\n\n\n",
            i + 1,
            n = name.to_lowercase()
        );
    }
    s
}

/// Prompt tokens that cover bytes at or after `pos` of a prefix-only prompt.
fn tokens_from(tok: &Tokenizer, ids: &[u32], pos: usize) -> usize {
    let mut end = 0;
    ids.iter()
        .filter(|&&id| {
            end += tok.token_bytes(id).unwrap().len();
            end > pos
        })
        .count()
}

#[test]
fn kv_reuse_after_one_character_edits() {
    let mut c = completer(0);
    let base = long_python() + "def area(c: Circle) -> float:\n    return math.pi * c.x";
    let line = |prefix: &str| Request { mode: Some(Mode::Line), max_tokens: Some(2), language: Some("python".into()), ..Request::new(prefix, "\n") };
    let cold = c.complete(&line(&base)).unwrap();
    let n = cold.timings.prompt_tokens;
    assert!((950..1400).contains(&n), "prompt of {n} tokens");
    assert_eq!(cold.timings.evaluated_tokens, n);

    // One character typed at the end.
    let end_edit = base.clone() + "*";
    let r = c.complete(&line(&end_edit)).unwrap();
    let ids = c.prompt(&line(&end_edit)).unwrap().ids;
    let after = tokens_from(&c.model().tokenizer, &ids, base.len());
    eprintln!("end edit: prompt {} tokens, {} after the edit, {} evaluated", ids.len(), after, r.timings.evaluated_tokens);
    assert!(r.timings.evaluated_tokens <= after + 2, "{} evaluated, {after} after the edit", r.timings.evaluated_tokens);

    // One character changed in the middle.
    let mid = end_edit.find("class Square").unwrap() + "class Sq".len();
    let mut mid_edit = end_edit.clone();
    mid_edit.replace_range(mid..mid + 1, "w");
    let r = c.complete(&line(&mid_edit)).unwrap();
    let ids = c.prompt(&line(&mid_edit)).unwrap().ids;
    let from = tokens_from(&c.model().tokenizer, &ids, mid);
    eprintln!("middle edit: prompt {} tokens, {} from the edit on, {} evaluated", ids.len(), from, r.timings.evaluated_tokens);
    assert!(r.timings.evaluated_tokens <= from + 2, "{} evaluated, {from} from the edit", r.timings.evaluated_tokens);
    assert!(r.timings.evaluated_tokens < ids.len() * 3 / 4);
}

/// A prefix longer than the budget, typed into character by character: the prompt's cut stays
/// put (hysteresis), so each keystroke re-evaluates a few tokens instead of the whole prompt.
#[test]
fn typing_past_the_budget_keeps_the_cut() {
    let model = common::load_default_model(2);
    let budget = Budget { code_tokens: 400, context_tokens: 0 };
    let mut c = Completer::new(model, CompleterConfig { cache_entries: 0, budget, ..CompleterConfig::default() }).unwrap();
    let line = |prefix: &str| Request { mode: Some(Mode::Line), max_tokens: Some(1), language: Some("python".into()), ..Request::new(prefix, "") };
    let mut prefix = long_python();
    let cold = c.complete(&line(&prefix)).unwrap();
    let first_cut = c.prompt(&line(&prefix)).unwrap().prefix_cut;
    assert!(first_cut > 0 && cold.timings.prompt_tokens <= 400 * 3 / 4 + 2, "a new cut keeps 3/4 of the budget: {} tokens", cold.timings.prompt_tokens);
    let typed = "def total(shapes):\n    return sum(s.norm() for s in shapes)\n\n\ndef largest(shapes):\n    return max(shapes, key=lambda s: s.norm())\n";
    let (mut worst, mut recuts) = (0, 0);
    for ch in typed.chars() {
        prefix.push(ch);
        let r = c.complete(&line(&prefix)).unwrap();
        if r.timings.evaluated_tokens > 8 {
            recuts += 1;
        } else {
            worst = worst.max(r.timings.evaluated_tokens);
        }
    }
    eprintln!("{} keystrokes past a {}-token budget: {recuts} full re-evaluations, otherwise at most {worst} tokens each", typed.len(), budget.code_tokens);
    assert_eq!(c.prompt(&line(&prefix)).unwrap().prefix_cut, first_cut, "the cut moved although the tail still fits");
    assert_eq!(recuts, 0);
}

#[test]
fn greedy_completions_are_deterministic() {
    let mut c = completer(0);
    let req = Request { language: Some("python".into()), max_tokens: Some(48), ..Request::new("def mean(xs):\n    total = 0\n    for x in xs:\n        ", "\n") };
    let a = c.complete(&req).unwrap();
    let b = c.complete(&req).unwrap();
    eprintln!("python: {:?} {:?}", a.candidates, a.timings);
    assert_eq!(a.candidates, b.candidates);
    // Measured on this model; the next line (`return total`, dedented) ends the block.
    assert_eq!(a.candidates[0].text, "total += x");
    assert_eq!(a.timings.stop, Some(StopReason::Dedent));
    assert_eq!(a.timings.mode, Some(Mode::Block));
    // The second time the whole prompt is in the KV cache: only its last token runs again.
    assert_eq!(b.timings.evaluated_tokens, 1);
    let req = Request { language: Some("javascript".into()), ..Request::new("// Sum of an array of numbers.\nconst sum = (xs) => xs.reduce(", ");\n") };
    let js = c.complete(&req).unwrap();
    eprintln!("js: {:?} {:?}", js.candidates, js.timings);
    assert_eq!(js.timings.mode, Some(Mode::Line));
    assert_eq!(js.candidates[0].text, "function (acc, current, index) {");
}

#[test]
fn candidates_share_the_prompt_and_are_ranked() {
    let mut c = completer(0);
    let req = Request { language: Some("python".into()), n: 4, seed: 5, mode: Some(Mode::Line), ..Request::new("import os\n\nfiles = os.listdir(", ")\n") };
    let before = c.evaluated_tokens();
    let r = c.complete(&req).unwrap();
    let evaluated = c.evaluated_tokens() - before;
    eprintln!("n=4: {:?} {:?}", r.candidates, r.timings);
    // The prompt once, its last token again for each further candidate, and the decode steps.
    assert!(evaluated as usize <= r.timings.prompt_tokens + 3 + r.timings.generated_tokens);
    assert!(!r.candidates.is_empty());
    assert!(r.candidates.windows(2).all(|w| w[0].mean_logprob >= w[1].mean_logprob));
    let mut texts: Vec<&str> = r.candidates.iter().map(|c| c.text.as_str()).collect();
    texts.dedup();
    assert_eq!(texts.len(), r.candidates.len());
    // Same seed, same candidates.
    assert_eq!(c.complete(&req).unwrap().candidates, r.candidates);
}

/// n candidates decoded together (forked KV caches, one forward pass per step) are exactly the
/// candidates decoded one after another: same texts, same mean log-probabilities, same tokens.
#[test]
fn candidates_decoded_together_equal_one_after_another() {
    let together = completer(0);
    let model = common::load_default_model(2);
    let mut apart = Completer::new(model, CompleterConfig { cache_entries: 0, batch_candidates: false, ..CompleterConfig::default() }).unwrap();
    let mut together = together;
    let prefix = "def moving_average(values, window):\n    \"\"\"Mean of each run of `window` values.\"\"\"\n    ";
    for (n, temperature, mode) in [(4, 0.8, Mode::Block), (3, 0.2, Mode::Line)] {
        let req = Request { language: Some("python".into()), n, seed: 11, temperature: Some(temperature), mode: Some(mode), ..Request::new(prefix, "\n") };
        let (a, b) = (together.complete(&req).unwrap(), apart.complete(&req).unwrap());
        eprintln!("n={n}: together {:.0} ms, apart {:.0} ms of decode; {:?}", a.timings.decode_ms, b.timings.decode_ms, a.candidates);
        assert_eq!(a.candidates, b.candidates);
        assert_eq!(a.timings.generated_tokens, b.timings.generated_tokens);
        assert!(!a.candidates.is_empty());
    }
    // A newer request stops all of them.
    let calls = Cell::new(0);
    let cancel = || {
        calls.set(calls.get() + 1);
        calls.get() > 2
    };
    let req = Request { language: Some("python".into()), n: 3, mode: Some(Mode::Block), ..Request::new("def mul(a, b):\n    ", "\n") };
    let r = together.complete_with(&req, &cancel, &mut |_| {}).unwrap();
    assert!(r.cancelled);
    assert_eq!(r.timings.stop, Some(StopReason::Cancelled));
    assert!(r.timings.generated_tokens <= 2 * 3, "{:?}", r.timings);
}

#[test]
fn typed_through_streaming_and_cancellation() {
    let mut c = completer(16);
    let req = Request { language: Some("python".into()), max_tokens: Some(24), ..Request::new("def add(a, b):\n    return ", "\n") };
    let mut partials = Vec::new();
    let r = c.complete_with(&req, &|| false, &mut |t| partials.push(t.to_string())).unwrap();
    let best = r.candidates[0].text.clone();
    eprintln!("stream: {partials:?} -> {best:?}");
    assert!(best.len() >= 2);
    assert_eq!(partials.last(), Some(&best));
    assert!(partials.windows(2).all(|w| w[1].starts_with(w[0].trim_end())));

    // Typing the first character of the suggestion: served from the cache, no model call.
    let before = c.evaluated_tokens();
    let first: String = best.chars().take(1).collect();
    let typed = Request { prefix: req.prefix.clone() + &first, ..req.clone() };
    let hit = c.complete(&typed).unwrap();
    assert!(hit.timings.cache_hit);
    assert_eq!(hit.candidates[0].text, best[first.len()..]);
    assert_eq!(c.evaluated_tokens(), before);

    // A newer request cancels after three tokens.
    let calls = Cell::new(0);
    let cancel = || {
        calls.set(calls.get() + 1);
        calls.get() > 3
    };
    let other = Request { language: Some("python".into()), mode: Some(Mode::Block), ..Request::new("def mul(a, b):\n    ", "\n") };
    let r = c.complete_with(&other, &cancel, &mut |_| {}).unwrap();
    assert!(r.cancelled);
    assert_eq!(r.timings.stop, Some(StopReason::Cancelled));
    assert_eq!(r.timings.generated_tokens, 3);
}

/// A block suggestion made on an empty line is typed through: once its first character is
/// typed the cursor's line is no longer empty (the mode the cursor resolves to is line), yet
/// the request asked for the same mode (none), so the suggestion is still found.
#[test]
fn typed_through_a_block_suggestion_made_on_an_empty_line() {
    let mut c = completer(16);
    let req = Request { language: Some("python".into()), max_tokens: Some(48), ..Request::new("def mean(xs):\n    total = 0\n    for x in xs:\n        ", "\n") };
    let r = c.complete(&req).unwrap();
    assert_eq!(r.timings.mode, Some(Mode::Block));
    let best = r.candidates[0].text.clone();
    eprintln!("block: {best:?}");
    let first: String = best.chars().take(1).collect();
    let typed = Request { prefix: req.prefix.clone() + &first, ..req.clone() };
    assert_eq!(Mode::for_cursor(&Cursor::new(&typed.prefix, &typed.suffix, Language::from_name("python"))), Mode::Line);
    let before = c.evaluated_tokens();
    let hit = c.complete(&typed).unwrap();
    assert!(hit.timings.cache_hit, "{:?}", hit.timings);
    assert_eq!(hit.candidates[0].text, best[first.len()..]);
    assert_eq!(c.evaluated_tokens(), before);
    // Asking for a mode is another key: a line suggestion is not the block one shortened.
    let line = Request { mode: Some(Mode::Line), ..typed.clone() };
    assert!(!c.complete(&line).unwrap().timings.cache_hit);
}

/// A candidate cut short by a time limit is not served to a request without one (nor with
/// another limit), while the same request again is served from the cache.
#[test]
fn the_time_limit_is_part_of_the_cache_key() {
    let mut c = completer(16);
    let base = Request { language: Some("python".into()), mode: Some(Mode::Block), max_tokens: Some(24), ..Request::new("def add(a, b):\n    ", "\n") };
    // A limit of 0 ms stops every candidate after its first token.
    let limited = Request { time_limit_ms: Some(0.0), ..base.clone() };
    let r = c.complete(&limited).unwrap();
    assert_eq!(r.timings.stop, Some(StopReason::Time));
    assert_eq!(r.timings.generated_tokens, 1);
    assert!(c.complete(&limited).unwrap().timings.cache_hit);
    let full = c.complete(&base).unwrap();
    assert!(!full.timings.cache_hit);
    assert!(full.timings.generated_tokens > 1, "{:?}", full.timings);
    assert!(!c.complete(&Request { time_limit_ms: Some(60_000.0), ..base.clone() }).unwrap().timings.cache_hit);
}

/// n outside 1..=MAX_CANDIDATES is a typed error before anything is allocated for it (50
/// million candidates overflowed a `Vec::with_capacity` in wasm: a panic that killed the
/// worker); the bound itself works.
#[test]
fn candidate_count_is_bounded() {
    let mut c = completer(0);
    let req = Request { language: Some("python".into()), mode: Some(Mode::Line), max_tokens: Some(2), seed: 1, ..Request::new("import os\n\nfiles = os.listdir(", ")\n") };
    for n in [0, MAX_CANDIDATES + 1, 1_000_000, 50_000_000, usize::MAX] {
        match c.complete(&Request { n, ..req.clone() }) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("out of range"), "n = {n}: {m}"),
            other => panic!("n = {n}: {other:?}"),
        }
    }
    assert_eq!(c.evaluated_tokens(), 0);
    let r = c.complete(&Request { n: MAX_CANDIDATES, ..req }).unwrap();
    assert!(r.timings.generated_tokens <= 2 * MAX_CANDIDATES);
    assert!(!r.candidates.is_empty());
}

/// A prefix-only prompt (the default model has no FIM tokens and adds no BOS) of an empty
/// prefix is empty: a typed error, not an underflow.
#[test]
fn an_empty_prompt_is_a_typed_error() {
    let mut c = completer(16);
    for prefix in ["", " "] {
        let req = Request::new(prefix, "\nprint(x)\n");
        assert!(c.prompt(&req).unwrap().ids.is_empty(), "{prefix:?}");
        match c.complete(&req) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("prompt is empty"), "{m}"),
            other => panic!("{prefix:?}: {other:?}"),
        }
    }
    // Context before it is something to complete from.
    let req = Request { context: vec![ContextFile { name: "util.py".into(), text: "def helper():\n    return 1\n".into() }], max_tokens: Some(4), ..Request::new("", "") };
    assert!(!c.prompt(&req).unwrap().ids.is_empty());
    c.complete(&req).unwrap();
}

/// The default model's vocabulary plus `extra` added tokens (ids after the vocabulary),
/// marked non-special as Qwen2.5-Coder's tokenizer.json marks its FIM tokens.
fn vocab_with(extra: &[&str]) -> Tokenizer {
    let model = common::load_default_model(1);
    let mut json: serde_json::Value = serde_json::from_str(&model.tokenizer.to_tokenizer_json().unwrap()).unwrap();
    let n = model.tokenizer.vocab_size();
    let added = json["added_tokens"].as_array_mut().unwrap();
    for (i, t) in extra.iter().enumerate() {
        added.push(serde_json::json!({"id": n + i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": false}));
    }
    Tokenizer::from_tokenizer_json(json.to_string().as_bytes()).unwrap()
}

const QWEN_FIM: [&str; 6] = ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"];

#[test]
fn qwen_fim_prompt_ids() {
    let tok = vocab_with(&QWEN_FIM);
    let id = |s| tok.token_id(s).unwrap();
    let (pre, mid, suf, pad, sep) = (id("<|fim_prefix|>"), id("<|fim_middle|>"), id("<|fim_suffix|>"), id("<|fim_pad|>"), id("<|file_sep|>"));
    let fmt = PromptFormat::detect(&tok, true).unwrap();
    let fim = fmt.fim().unwrap();
    assert_eq!(fim.family, Family::QwenCoder);
    assert_eq!(fim.file_sep, Some(sep));
    for t in [pre, mid, suf, pad, sep, id("<|endoftext|>"), id("<|im_end|>")] {
        assert!(fmt.stop_ids().contains(&t), "{t} should end generation");
    }
    let enc = |s: &str| tok.encode(s).unwrap();
    let prefix = "def area(r):\n    return ";
    let suffix = "\n\nprint(area(2))\n";
    let p = fmt.build(&tok, prefix, suffix, &[], Budget::default(), None).unwrap();
    let want: Vec<u32> = [vec![pre], enc(prefix), vec![suf], enc(suffix), vec![mid]].concat();
    assert_eq!(p.ids, want);

    // Context files come first, each after <|file_sep|> with its name; the code's ids do not
    // change when the context does not.
    let ctx = [ContextFile { name: "geometry/util.py".into(), text: "PI = 3.14159\n".into() }];
    let p = fmt.build(&tok, prefix, suffix, &ctx, Budget::default(), None).unwrap();
    let want_ctx: Vec<u32> = [vec![sep], enc("geometry/util.py\n"), enc("PI = 3.14159\n")].concat();
    assert_eq!(p.ids, [want_ctx, want].concat());

    // FIM spellings in the user's text stay text.
    let p = fmt.build(&tok, "s = \"<|fim_prefix|>\"\n", "<|file_sep|>", &[], Budget::default(), None).unwrap();
    assert_eq!(p.ids.iter().filter(|&&t| t == pre).count(), 1);
    assert_eq!(p.ids.iter().filter(|&&t| t == sep).count(), 0);
    assert_eq!(tok.decode(&p.ids).unwrap(), "<|fim_prefix|>s = \"<|fim_prefix|>\"\n<|fim_suffix|><|file_sep|><|fim_middle|>");
}

#[test]
fn budget_cuts_whole_lines_keeping_the_prefix_end_and_the_suffix_start() {
    let tok = vocab_with(&QWEN_FIM);
    let fmt = PromptFormat::detect(&tok, true).unwrap();
    let prefix: String = (0..200).map(|i| format!("x{i} = {i} * 2\n")).collect::<String>() + "y = ";
    let suffix: String = (0..200).map(|i| format!("z{i} = x{i} + 1\n")).collect();
    let budget = Budget { code_tokens: 400, context_tokens: 0 };
    let p = fmt.build(&tok, &prefix, &suffix, &[], budget, None).unwrap();
    assert!(p.ids.len() <= 400 + 3, "{} ids", p.ids.len());
    // A cut from an earlier request stays while the tail after it fits; a new cut keeps 3/4 of
    // the prefix's share.
    let n_prefix = tok.encode(&prefix[p.prefix_cut..]).unwrap().len();
    assert!(n_prefix <= (400 - 100) * 3 / 4, "{n_prefix} prefix tokens");
    let earlier = prefix[..p.prefix_cut - 1].rfind('\n').unwrap() + 1;
    let q = fmt.build(&tok, &prefix, &suffix, &[], budget, Some(earlier)).unwrap();
    assert_eq!(q.prefix_cut, earlier);
    let too_early = fmt.build(&tok, &prefix, &suffix, &[], budget, Some(prefix.find("x9 =").unwrap())).unwrap();
    assert_eq!(too_early.prefix_cut, p.prefix_cut, "a kept cut whose tail no longer fits is dropped");
    assert!(p.prefix_cut > 0 && prefix.as_bytes()[p.prefix_cut - 1] == b'\n');
    assert!(p.suffix_kept < suffix.len() && suffix.as_bytes()[p.suffix_kept - 1] == b'\n');
    let text = tok.decode(&p.ids).unwrap();
    let want = format!("<|fim_prefix|>{}<|fim_suffix|>{}<|fim_middle|>", &prefix[p.prefix_cut..], &suffix[..p.suffix_kept]);
    assert_eq!(text, want);
    assert!(text.contains("y = <|fim_suffix|>z0 = x0 + 1\n"));
    // The suffix gets at most a quarter; the prefix the rest.
    let n_suffix = tok.encode(&suffix[..p.suffix_kept]).unwrap().len();
    assert!(n_suffix <= 100 && n_suffix > 80, "{n_suffix}");
}

#[test]
fn families_are_told_apart_by_their_special_tokens() {
    let cases: [(&[&str], Option<Family>); 5] = [
        (&["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"], Some(Family::StarCoder)),
        (&["<fim-prefix>", "<fim-middle>", "<fim-suffix>", "<fim-pad>"], Some(Family::SantaCoder)),
        (&["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"], Some(Family::DeepSeekCoder)),
        (&["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|file_separator|>"], Some(Family::CodeGemma)),
        (&["<|fim_prefix|>", "<|fim_middle|>"], None),
    ];
    for (extra, family) in cases {
        let tok = vocab_with(extra);
        let fmt = PromptFormat::detect(&tok, true).unwrap();
        assert_eq!(fmt.fim().map(|f| f.family), family, "{extra:?}");
        if family == Some(Family::CodeGemma) {
            assert!(fmt.stop_ids().contains(&tok.token_id("<|file_separator|>").unwrap()));
        }
    }
    // The default model has no FIM tokens: prefix-only, the suffix is not in the prompt.
    let model = common::load_default_model(1);
    let fmt = PromptFormat::detect(&model.tokenizer, true).unwrap();
    assert!(fmt.fim().is_none());
    let p = fmt.build(&model.tokenizer, "x = ", "\nprint(x)\n", &[], Budget::default(), None).unwrap();
    assert_eq!(p.ids, model.tokenizer.encode("x = ").unwrap());
}

/// Lines of comments and strings in CJK and emoji: most characters are several tokens of a
/// byte-level vocabulary, so token ends fall inside characters.
fn cjk_lines(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("# 注释：你好世界🌍🚀 第{i}行，数据很重要😀\nx{i} = \"数据{i}🙂东京大阪\"\n")).collect()
}

/// A cut whose token end falls inside a multi-byte character still lands on a line start, and
/// typing keeps it (prefix and suffix alike): the prompt's start does not move keystroke after
/// keystroke in a long file of non-ASCII text.
#[test]
fn cuts_inside_multibyte_characters_keep_to_line_starts() {
    let model = common::load_default_model(1);
    let tok = &model.tokenizer;
    let fmt = PromptFormat::detect(tok, true).unwrap();
    let prefix = cjk_lines(0, 40) + "y = \"你";
    // Each budget puts the first kept token elsewhere (inside a character or not).
    for n in 160..220 {
        let budget = Budget { code_tokens: n, context_tokens: 0 };
        let p = fmt.build(tok, &prefix, "", &[], budget, None).unwrap();
        assert!(p.prefix_cut > 0 && prefix.as_bytes()[p.prefix_cut - 1] == b'\n', "budget {n}: cut at {} is not a line start", p.prefix_cut);
        assert!(p.ids.len() <= n * 3 / 4, "budget {n}: {} ids", p.ids.len());
        // Typing after it: the cut stays while the tail fits.
        let mut typed = prefix.clone();
        let mut cut = p.prefix_cut;
        for ch in "好世界🌍\"\nz = 1\n".chars() {
            typed.push(ch);
            let q = fmt.build(tok, &typed, "", &[], budget, Some(cut)).unwrap();
            assert_eq!(q.prefix_cut, cut, "budget {n}: the cut moved after typing {ch:?}");
            cut = q.prefix_cut;
        }
    }
    // The suffix's cut (a FIM vocabulary), likewise at a line end.
    let tok = vocab_with(&QWEN_FIM);
    let fmt = PromptFormat::detect(&tok, true).unwrap();
    let suffix = cjk_lines(0, 40);
    for n in 160..220 {
        let p = fmt.build(&tok, "x = ", &suffix, &[], Budget { code_tokens: n * 4, context_tokens: 0 }, None).unwrap();
        assert!(p.suffix_kept < suffix.len() && suffix.as_bytes()[p.suffix_kept - 1] == b'\n', "suffix budget {n}: kept to {}", p.suffix_kept);
    }
}

/// A model whose context is shorter than the default budget's prompt and generation room
/// (SantaCoder's 2,048 tokens; here the tiny GPTBigCode model with its 2,048 learned
/// positions): the budget shrinks so that the longest prompt leaves room to generate.
#[test]
fn the_budget_fits_a_short_context() {
    let model = nib_engine::Model::open_cpu(&common::tiny_starcoder("tiny-gpt-bigcode.gguf"), 2).unwrap();
    assert_eq!(model.config().ctx_len, 2048);
    let mut c = Completer::new(model, CompleterConfig { cache_entries: 0, ..CompleterConfig::default() }).unwrap();
    assert_eq!(c.format().fim().map(|f| f.family), Some(Family::SantaCoder));
    let budget = c.config().budget;
    eprintln!("budget for a 2048-token context: {budget:?}");
    assert!(budget.max_prompt_tokens() + 192 <= 2048, "{budget:?}");
    assert!(budget.code_tokens >= 1024 && budget.context_tokens > 0, "{budget:?}");
    // A prompt as long as the budget allows, then a whole block's worth of tokens.
    let prefix: String = (0..400).map(|i| format!("def f{i}(x):\n    return x * {i}\n")).collect::<String>() + "def g(x):\n    ";
    let suffix: String = (0..400).map(|i| format!("print(f{i}(2))\n")).collect();
    let context = vec![ContextFile { name: "util.py".into(), text: (0..40).map(|i| format!("K{i} = {i}\n")).collect() }];
    let req = Request { mode: Some(Mode::Block), max_tokens: Some(192), context, ..Request::new(prefix, suffix) };
    let r = c.complete(&req).unwrap();
    eprintln!("{:?}", r.timings);
    assert!(r.timings.prompt_tokens > 1300 && r.timings.prompt_tokens <= budget.max_prompt_tokens(), "{:?}", r.timings);
    assert!(r.timings.prompt_tokens + 192 <= 2048);
}

/// About `bytes` of ordinary Python, one small function after another.
fn many_functions(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 64);
    let mut i = 0;
    while s.len() < bytes {
        s += &format!("def f{i}(x):\n    return x * {i} + {}\n\n", i % 7);
        i += 1;
    }
    s
}

/// The end of `text` from the first line start in its last `bytes` bytes.
fn last_lines(text: &str, bytes: usize) -> &str {
    let from = text.len() - bytes;
    &text[from + text[from..].find('\n').unwrap() + 1..]
}

/// A document of megabytes (a notebook, a large file): only the text the budget can reach is
/// tokenized, so the prompt and the completion are those of its last 20 KB (which the builder
/// tokenizes whole), and a keystroke costs what it costs in a small file.
#[test]
fn a_huge_document_costs_what_its_end_costs() {
    let mut c = completer(0);
    let line = |prefix: &str, suffix: &str| Request { mode: Some(Mode::Line), max_tokens: Some(6), language: Some("python".into()), ..Request::new(prefix, suffix) };
    // A normal request and a keystroke after it, for scale.
    let small = long_python() + "def area(c: Circle) -> float:\n    return math.pi * c.x";
    c.complete(&line(&small, "\n")).unwrap();
    let normal = c.complete(&line(&(small.clone() + "Z"), "\n")).unwrap();

    let end = "def area(r):\n    return 3.14159 * r";
    let prefix = many_functions(5 << 20) + end;
    let suffix = "\n\n".to_string() + &many_functions(5 << 20);
    let short = last_lines(&prefix, 20 << 10);
    let (p_big, p_short) = (c.prompt(&line(&prefix, &suffix)).unwrap(), c.prompt(&line(short, &suffix)).unwrap());
    assert_eq!(p_big.ids, p_short.ids, "clipping changed the prompt");
    assert!(p_short.prefix_cut > 0 && p_short.tokenized_bytes >= short.len(), "the short prefix is tokenized whole: {p_short:?}");
    assert_eq!(p_big.prefix_cut, p_short.prefix_cut + (prefix.len() - short.len()));

    let big = c.complete(&line(&prefix, &suffix)).unwrap();
    eprintln!("5 MB prefix and suffix, first request: {:?}\n  {:?}", big.candidates, big.timings);
    assert!(!big.candidates.is_empty());
    assert!(big.timings.tokenized_bytes < 64 << 10, "{:?}", big.timings);
    // A keystroke: the prompt's start stays, a few tokens run, a few kilobytes are tokenized.
    let typed = prefix.clone() + "Z";
    let key = c.complete(&line(&typed, &suffix)).unwrap();
    eprintln!("a keystroke in it: {:.1} ms in all, {:.1} ms to the first token; a keystroke in a {} KB file: {:.1} ms, {:.1} ms", key.timings.total_ms, key.timings.prompt_ms, small.len() >> 10, normal.timings.total_ms, normal.timings.prompt_ms);
    eprintln!("  {:?}\n  {:?}", key.timings, normal.timings);
    assert!(!key.timings.cache_hit);
    assert!(key.timings.evaluated_tokens <= 2, "{:?}", key.timings);
    assert!(key.timings.tokenized_bytes < 32 << 10, "{:?}", key.timings);
    // The same request with only the last 20 KB of the prefix: the same completion.
    let r = c.complete(&line(short, &suffix)).unwrap();
    assert_eq!(r.candidates, big.candidates);
    assert!(r.timings.evaluated_tokens <= 2, "the same prompt is in the KV cache: {:?}", r.timings);
}

/// The same with a FIM vocabulary, where the suffix is in the prompt too: clipped from its
/// end, it gives the prompt of its first 6 KB.
#[test]
fn a_huge_suffix_is_clipped_without_changing_the_prompt() {
    let tok = vocab_with(&QWEN_FIM);
    let fmt = PromptFormat::detect(&tok, true).unwrap();
    let prefix = many_functions(3 << 20) + "def area(r):\n    return 3.14159 * r";
    let suffix = "\n\n".to_string() + &many_functions(3 << 20);
    let short_prefix = last_lines(&prefix, 20 << 10);
    let short_suffix = &suffix[..suffix[6 << 10..].find('\n').unwrap() + (6 << 10) + 1];
    let big = fmt.build(&tok, &prefix, &suffix, &[], Budget::default(), None).unwrap();
    let short = fmt.build(&tok, short_prefix, short_suffix, &[], Budget::default(), None).unwrap();
    eprintln!("{} ids; {} bytes tokenized of {} (whole: {})", big.ids.len(), big.tokenized_bytes, prefix.len() + suffix.len(), short.tokenized_bytes);
    assert_eq!(big.ids, short.ids);
    assert_eq!(big.suffix_kept, short.suffix_kept);
    assert!(short.suffix_kept < short_suffix.len());
    assert_eq!(big.prefix_cut, short.prefix_cut + (prefix.len() - short_prefix.len()));
    assert!(big.tokenized_bytes < 64 << 10, "{}", big.tokenized_bytes);
    // A kept cut, in the whole prefix's offsets, stays.
    let typed = prefix.clone() + " +";
    let next = fmt.build(&tok, &typed, &suffix, &[], Budget::default(), Some(big.prefix_cut)).unwrap();
    assert_eq!(next.prefix_cut, big.prefix_cut);
    // Context files: one too long for the budget is dropped without tokenizing all of it.
    let ctx = [ContextFile { name: "big.py".into(), text: many_functions(1 << 20) }, ContextFile { name: "small.py".into(), text: "K = 1\n".into() }];
    let with_ctx = fmt.build(&tok, short_prefix, short_suffix, &ctx, Budget::default(), None).unwrap();
    let only_small = fmt.build(&tok, short_prefix, short_suffix, &ctx[1..], Budget::default(), None).unwrap();
    assert_eq!(with_ctx.ids, only_small.ids);
    assert!(with_ctx.tokenized_bytes < only_small.tokenized_bytes + (64 << 10), "{}", with_ctx.tokenized_bytes);
}

/// One line of 2 MB with no newline (minified code): the prompt is cut between tokens, and
/// that cut is kept while typing, as a line cut is; the rules look at the line's last 4 KB.
#[test]
fn a_single_huge_line() {
    let mut c = completer(0);
    let mut text = String::with_capacity((2 << 20) + 32);
    let mut i = 0;
    while text.len() < 2 << 20 {
        text += &format!("v{i}=f(v{},{});", i / 2, i % 10);
        i += 1;
    }
    let req = |prefix: &str| Request { mode: Some(Mode::Line), max_tokens: Some(6), language: Some("javascript".into()), ..Request::new(prefix, text.as_str()) };
    let short = &text[text.len() - (20 << 10)..];
    let (p_big, p_short) = (c.prompt(&req(&text)).unwrap(), c.prompt(&req(short)).unwrap());
    assert_eq!(p_big.ids, p_short.ids, "clipping changed the prompt");
    assert!(p_big.ids.len() <= Budget::default().code_tokens * 3 / 4 + 2, "a new cut keeps 3/4 of the budget: {}", p_big.ids.len());
    let first = c.complete(&req(&text)).unwrap();
    eprintln!("one 2 MB line: {:?}\n  {:?}", first.candidates, first.timings);
    assert!(first.timings.tokenized_bytes < 64 << 10, "{:?}", first.timings);
    let mut typed = text.clone();
    for ch in "v9=".chars() {
        typed.push(ch);
        let r = c.complete(&req(&typed)).unwrap();
        eprintln!("  typed {ch:?}: {:.1} ms, {:?}", r.timings.total_ms, r.timings);
        assert!(r.timings.evaluated_tokens <= 3, "the cut moved: {:?}", r.timings);
        assert!(r.timings.tokenized_bytes < 32 << 10, "{:?}", r.timings);
    }
}
