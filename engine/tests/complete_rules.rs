//! Stop rules, post-processing, ranking and typed-through reuse on scripted model output: each
//! test feeds what a model could have produced, token by token, through the same path the
//! completer takes after sampling, and asserts the exact text shown.

use nib_engine::complete::{apply_rules, rank, Budget, Candidate, Cursor, Language, Mode, StopReason, Stopper, SuggestionCache};

/// `text` in pieces of at most 3 characters, as a tokenizer would hand them out (the rules
/// must not depend on where tokens start).
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(3).map(|c| c.iter().collect()).collect()
}

fn run(lang: &str, prefix: &str, suffix: &str, mode: Option<Mode>, model_output: &str) -> (Option<String>, StopReason) {
    let cx = Cursor::new(prefix, suffix, Language::from_name(lang));
    let p = pieces(model_output);
    let by_3 = apply_rules(&cx, mode, None, p.iter().map(String::as_str));
    // One character per token gives the same answer.
    let singles: Vec<String> = model_output.chars().map(String::from).collect();
    let by_1 = apply_rules(&cx, mode, Some(10_000), singles.iter().map(String::as_str));
    assert_eq!(by_3.0, by_1.0, "the cut depends on token boundaries");
    by_3
}

fn shown(r: (Option<String>, StopReason)) -> String {
    r.0.expect("a candidate")
}

// ---- Python ----

#[test]
fn python_block_ends_at_dedent() {
    let prefix = "import statistics\n\ndef mean(xs):\n    ";
    let out = "total = sum(xs)\n    return total / len(xs)\n\ndef median(xs):\n    return statistics.median(xs)\n";
    let r = run("python", prefix, "\n", None, out);
    assert_eq!(r.1, StopReason::Dedent);
    assert_eq!(shown(r), "total = sum(xs)\n    return total / len(xs)");
}

#[test]
fn python_block_after_colon_line_keeps_the_body() {
    let prefix = "class Stack:\n    def push(self, item):";
    let out = "\n        self.items.append(item)\n\n    def pop(self):\n        return self.items.pop()\n";
    let r = run("python", prefix, "", None, out);
    assert_eq!(r.1, StopReason::Dedent);
    assert_eq!(shown(r), "\n        self.items.append(item)");
}

#[test]
fn python_new_top_level_statement_ends_the_block() {
    let r = run("python", "import os\n", "", None, "import sys\nimport re\n");
    assert_eq!(r.1, StopReason::TopLevel);
    assert_eq!(shown(r), "import sys");
}

#[test]
fn python_line_mode_mid_line_drops_the_closer_the_suffix_has() {
    let prefix = "def load(path):\n    data = json.loads(";
    let suffix = ")\n    return data\n";
    let cx = Cursor::new(prefix, suffix, Language::from_name("python"));
    assert_eq!(Mode::for_cursor(&cx), Mode::Line);
    let r = run("python", prefix, suffix, None, "open(path).read())\n    return data\n");
    assert_eq!(r.1, StopReason::LineEnd);
    assert_eq!(shown(r), "open(path).read()");
}

#[test]
fn python_fence_and_prose_end_the_block() {
    let r = run("python", "import math\n", "", None, "x = math.pi\n```\n\nThis sets x to pi.\n");
    assert_eq!(r.1, StopReason::Fence);
    assert_eq!(shown(r), "x = math.pi");
    // Inside a body the fence is also a dedent; either way the same text is shown.
    let r = run("python", "def add(a, b):\n    ", "", None, "return a + b\n```\n\nThis function adds two numbers.\n");
    assert_eq!(shown(r), "return a + b");
    let r = run("python", "width = 3\n", "", Some(Mode::Block), "height = 4\nThis code sets the width and the height.\n");
    assert_eq!(r.1, StopReason::Prose);
    assert_eq!(shown(r), "height = 4");
}

#[test]
fn python_line_repeating_the_suffix_is_cut() {
    let prefix = "def area(r):\n    ";
    let suffix = "\n    return result\n";
    let r = run("python", prefix, suffix, None, "result = 3.14159 * r * r\n    return result\n");
    assert_eq!(r.1, StopReason::EndOfGeneration);
    assert_eq!(shown(r), "result = 3.14159 * r * r");
}

#[test]
fn python_repetition_loops_are_dropped() {
    // The same line three times: kept once.
    let r = run("python", "def count(xs):\n    n = 0\n    ", "", Some(Mode::Block), "n += 1\n    n += 1\n    n += 1\n    n += 1\n");
    assert_eq!(shown(r), "n += 1");
    // A unit repeated to the end of the line: the line goes, and nothing is left.
    let r = run("python", "# TODO: ", "", Some(Mode::Line), "fix it fix it fix it fix it fix it fix it fix it");
    assert_eq!(r.0, None);
}

/// Closers nested at decreasing depths are the same text at different indentations, not a
/// line repeated: every one of them is kept.
#[test]
fn python_nested_closers_are_not_a_repetition_loop() {
    let out = "\n    g(\n        h(\n            1\n        )\n    )\n)\n";
    let r = run("python", "x = f(", "", Some(Mode::Block), out);
    assert_eq!(shown(r), out.trim_end());
    let out = "\n    [\n        [\n            [0, 1],\n        ],\n    ],\n]\n";
    let r = run("python", "CUBE = [", "", Some(Mode::Block), out);
    assert_eq!(shown(r), out.trim_end());
    // The same line at the same indentation three times is still a loop, the first line
    // counted with the indentation before the cursor.
    let r = run("python", "def f():\n    ", "", Some(Mode::Block), "pass\n    pass\n    pass\n    pass\n");
    assert_eq!(shown(r), "pass");
}

#[test]
fn python_docstring_brackets_and_continuations_do_not_stop() {
    let prefix = "def total(xs):\n    ";
    let out = "return sum(\n        x\n        for x in xs\n)\n\n\nprint(total([1]))\n";
    let r = run("python", prefix, "", None, out);
    assert_eq!(r.1, StopReason::BlankLines);
    assert_eq!(shown(r), "return sum(\n        x\n        for x in xs\n)");
}

// ---- JavaScript / TypeScript ----

#[test]
fn js_closing_brace_of_the_enclosing_function_is_left_to_the_suffix() {
    let prefix = "function sum(xs) {\n  ";
    let suffix = "\n}\n";
    let out = "let total = 0;\n  for (const x of xs) total += x;\n  return total;\n}\n\nfunction avg(xs) {\n";
    let r = run("javascript", prefix, suffix, None, out);
    assert_eq!(r.1, StopReason::BraceClosed);
    assert_eq!(shown(r), "let total = 0;\n  for (const x of xs) total += x;\n  return total;");
}

#[test]
fn ts_function_opened_on_the_cursor_line_is_closed_at_the_end_of_the_file() {
    let prefix = "export function isEven(n: number): boolean {";
    let cx = Cursor::new(prefix, "", Language::from_name("typescript"));
    assert_eq!(Mode::for_cursor(&cx), Mode::Block);
    let r = run("typescript", prefix, "", None, "\n  return n % 2 === 0;\n}\n\nexport function isOdd(n: number) {\n");
    assert_eq!(r.1, StopReason::BraceClosed);
    assert_eq!(shown(r), "\n  return n % 2 === 0;\n}");
}

#[test]
fn ts_line_overlap_with_the_rest_of_the_line_is_trimmed() {
    let r = run("typescript", "const user = await getUser(", ");\n", None, "id);\n");
    assert_eq!(r.1, StopReason::LineEnd);
    assert_eq!(shown(r), "id");
    // A closer the suffix does not supply stays.
    let r = run("typescript", "const n = Math.max(a, Math.min(b, ", ");\n", None, "c));\n");
    assert_eq!(shown(r), "c)");
}

#[test]
fn ts_braces_inside_strings_do_not_count() {
    let prefix = "function greet(name: string): string {\n  ";
    let out = "const msg = `Hello {${name}}`;\n  const close = \"}\";\n  return msg + close;\n}\n";
    let r = run("typescript", prefix, "\n}\n", None, out);
    assert_eq!(r.1, StopReason::BraceClosed);
    assert_eq!(shown(r), "const msg = `Hello {${name}}`;\n  const close = \"}\";\n  return msg + close;");
}

// ---- Rust ----

#[test]
fn rust_body_stops_before_the_outer_brace_and_ignores_format_braces() {
    let prefix = "fn parse(s: &str) -> Option<u32> {\n    ";
    let out = "let n: u32 = s.trim().parse().ok()?;\n    println!(\"{}\", n);\n    Some(n)\n}\n\nfn main() {\n";
    let r = run("rust", prefix, "\n}\n", None, out);
    assert_eq!(r.1, StopReason::BraceClosed);
    assert_eq!(shown(r), "let n: u32 = s.trim().parse().ok()?;\n    println!(\"{}\", n);\n    Some(n)");
}

#[test]
fn rust_method_with_lifetimes_and_char_literals_ends_with_its_block() {
    let prefix = "impl<'a> Parser<'a> {\n    ";
    let out = "fn peek(&self) -> Option<char> {\n        self.rest.chars().find(|c| *c != '{')\n    }\n\n    fn bump(&mut self) {\n";
    let r = run("rust", prefix, "\n}\n", None, out);
    assert_eq!(r.1, StopReason::BlankLines);
    assert_eq!(shown(r), "fn peek(&self) -> Option<char> {\n        self.rest.chars().find(|c| *c != '{')\n    }");
}

/// A block opened on the cursor's line and closed by nested closers: all three `}` stay (a
/// comparison that ignored indentation took them for one line repeated and kept one).
#[test]
fn rust_nested_closing_braces_are_all_kept() {
    let out = "\n    for i in 0..3 {\n        if i > 0 {\n            println!(\"{i}\");\n        }\n    }\n}\n\nfn other() {\n";
    let r = run("rust", "fn main() {", "", None, out);
    assert_eq!(r.1, StopReason::BraceClosed);
    assert_eq!(shown(r), "\n    for i in 0..3 {\n        if i > 0 {\n            println!(\"{i}\");\n        }\n    }\n}");
    // Inside a body, the closers of blocks the completion opened.
    let prefix = "fn main() {\n    ";
    let out = "for i in 0..3 {\n        for j in 0..3 {\n            if i == j {\n                println!(\"{i}\");\n            }\n        }\n    }\n}\n";
    let r = run("rust", prefix, "\n}\n", None, out);
    assert_eq!(r.1, StopReason::BraceClosed);
    assert_eq!(shown(r), "for i in 0..3 {\n        for j in 0..3 {\n            if i == j {\n                println!(\"{i}\");\n            }\n        }\n    }");
}

#[test]
fn rust_line_mode_keeps_closers_the_line_needs() {
    let prefix = "    let doubled: Vec<i32> = xs.iter().map(|x| x * 2";
    let r = run("rust", prefix, "\n", None, ").collect();\n    doubled\n");
    assert_eq!(r.1, StopReason::LineEnd);
    assert_eq!(shown(r), ").collect();");
}

// ---- Go ----

#[test]
fn go_block_inside_a_function_continues_past_an_inner_block() {
    let prefix = "func Max(a, b int) int {\n\t";
    let out = "if a > b {\n\t\treturn a\n\t}\n\treturn b\n}\n\nfunc Min(a, b int) int {\n";
    let r = run("go", prefix, "\n}\n", None, out);
    assert_eq!(r.1, StopReason::BraceClosed);
    assert_eq!(shown(r), "if a > b {\n\t\treturn a\n\t}\n\treturn b");
}

#[test]
fn go_top_level_function_ends_when_its_brace_closes() {
    let out = "func Abs(x int) int {\n\tif x < 0 {\n\t\treturn -x\n\t}\n\treturn x\n}\nfunc Sign(x int) int {\n";
    let r = run("go", "package mathx\n\n", "", None, out);
    assert_eq!(r.1, StopReason::BraceClosed);
    assert_eq!(shown(r), "func Abs(x int) int {\n\tif x < 0 {\n\t\treturn -x\n\t}\n\treturn x\n}");
}

#[test]
fn go_line_mode_call_arguments() {
    let r = run("go", "\tfmt.Println(", ")\n", None, "\"hello\", name)\n");
    assert_eq!(shown(r), "\"hello\", name");
}

// ---- Generic rules ----

#[test]
fn unknown_language_ends_at_a_blank_line() {
    let prefix = "services:\n  web:\n    image: nginx\n";
    let r = run("yaml", prefix, "", None, "    ports:\n      - \"80:80\"\n\n  db:\n    image: postgres\n");
    assert_eq!(r.1, StopReason::BlankLines);
    assert_eq!(shown(r), "    ports:\n      - \"80:80\"");
}

#[test]
fn whitespace_only_candidates_are_dropped_and_one_space_is_kept() {
    let r = run("python", "x = 1\nif x:\n    return", "\n", Some(Mode::Line), "\n");
    assert_eq!(r.0, None);
    let r = run("python", "    return ", "\n", None, " x + 1\n");
    assert_eq!(shown(r), "x + 1");
}

#[test]
fn token_and_time_caps() {
    let cx = Cursor::new("x = ", "", Language::from_name("python"));
    let long: Vec<String> = (0..40).map(|i| format!("a{i}+")).collect();
    let (text, reason) = apply_rules(&cx, Some(Mode::Line), None, long.iter().map(String::as_str));
    assert_eq!(reason, StopReason::MaxTokens);
    assert_eq!(text.unwrap(), long[..32].concat());
    // Time is up mid-line in block mode: back to the last whole line.
    let cx = Cursor::new("def f():\n    ", "", Language::from_name("python"));
    let mut s = Stopper::new(cx, Mode::Block, 100);
    for p in ["a = 1\n", "    b = 2\n", "    c = "] {
        assert!(s.push(p).is_none());
    }
    let stop = s.time_up();
    assert_eq!((&s.text()[..stop.at], stop.reason), ("a = 1\n    b = 2", StopReason::Time));
}

#[test]
fn mode_follows_the_cursor() {
    let py = Language::from_name("python");
    let mode = |p, s| Mode::for_cursor(&Cursor::new(p, s, py));
    assert_eq!(mode("x = foo(", ")\n"), Mode::Line);
    assert_eq!(mode("x = foo(1)", "\n"), Mode::Line);
    assert_eq!(mode("def f():\n    ", "\n"), Mode::Block);
    assert_eq!(mode("for x in xs:", "\n"), Mode::Block);
    assert_eq!(mode("", ""), Mode::Block);
}

#[test]
fn ranking_dedups_and_orders_by_mean_logprob() {
    let c = |t: &str, lp| Candidate { text: t.into(), mean_logprob: lp };
    let ranked = rank::rank(vec![c("a", -1.0), c("b", -0.5), c("a", -0.2), c("c", f32::NAN), c("d", -3.0)]);
    let texts: Vec<&str> = ranked.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(texts, ["a", "b", "d", "c"]);
    assert_eq!(ranked[0].mean_logprob, -0.2);
    // Tokens ending at 2, 5 and 9 bytes; keeping bytes 0..4 keeps the first two tokens.
    assert_eq!(rank::mean_logprob(&[-1.0, -3.0, -8.0], &[2, 5, 9], 0..4), -2.0);
}

#[test]
fn typed_through_reuse_shortens_the_suggestion() {
    let mut cache = SuggestionCache::new(4);
    let cands = [Candidate { text: "range(len(xs)):".into(), mean_logprob: -0.3 }, Candidate { text: "x in xs:".into(), mean_logprob: -0.5 }];
    cache.insert("for i in ", "\n", "opts", &cands);
    let hit = cache.lookup("for i in ran", "\n", "opts").unwrap();
    assert_eq!(hit, vec![Candidate { text: "ge(len(xs)):".into(), mean_logprob: -0.3 }]);
    assert!(cache.lookup("for i in rx", "\n", "opts").is_none(), "typed text that disagrees is a miss");
    assert!(cache.lookup("for i in ran", "\nmore", "opts").is_none(), "another suffix is a miss");
    assert!(cache.lookup("for i in ran", "\n", "other").is_none(), "other options are a miss");
    assert!(cache.lookup("for i in range(len(xs)):", "\n", "opts").is_none(), "fully typed: nothing left to show");
    assert_eq!(cache.lookup("for i in ", "\n", "opts").unwrap().len(), 2);
}

/// A budget shrinks in proportion to leave a short context room to generate, and only then.
#[test]
fn budget_fits_the_context() {
    let b = Budget::default();
    assert_eq!(b.max_prompt_tokens(), 2056);
    assert_eq!(b.fit(8192 - 256), b);
    assert_eq!(b.fit(2056), b);
    // SantaCoder: 2,048 tokens, 256 of them to generate.
    let f = b.fit(2048 - 256);
    assert!(f.max_prompt_tokens() <= 1792, "{f:?}");
    assert_eq!((f.code_tokens, f.context_tokens), (1338, 446));
    for max in [0, 1, 8, 9, 100, 1000] {
        assert!(b.fit(max).max_prompt_tokens() <= max.max(8), "{max}: {:?}", b.fit(max));
    }
    // No overflow on absurd budgets.
    let huge = Budget { code_tokens: usize::MAX, context_tokens: usize::MAX };
    assert!(huge.fit(4000).max_prompt_tokens() <= 4000);
}

/// The rules look at most `CURSOR_WINDOW` bytes into a huge line on either side of the
/// cursor, and answer as they do on the short line.
#[test]
fn a_huge_line_around_the_cursor_is_seen_through_a_window() {
    let filler: String = "v = f(a, [b], {c: d});".repeat(200_000);
    let prefix = format!("{filler}\nfoo(");
    let cx = Cursor::new(&prefix, &filler, Language::from_name("javascript"));
    assert!(cx.prefix.len() <= nib_engine::complete::stop::CURSOR_WINDOW && cx.suffix.len() <= nib_engine::complete::stop::CURSOR_WINDOW);
    assert_eq!(cx.line_prefix(), "foo(");
    let r = apply_rules(&cx, Some(Mode::Line), None, ["x, ", "y)", ";\n"]);
    assert_eq!(r.0.as_deref(), Some("x, y);"));
    // Inside one line of 4 MB: the cursor line is its last 4 KB, still at a character boundary.
    let line = "é".repeat(2 << 20);
    let cx = Cursor::new(&line, &line, Language::from_name("python"));
    assert!(cx.line_prefix().len() <= 4096 && cx.line_suffix().len() <= 4096);
    assert!(apply_rules(&cx, Some(Mode::Line), None, ["x = 1", "\n"]).0.is_some());
}

/// Entries keep lengths, hashes and the prefix's last bytes, not the texts: an edit far above
/// the cursor, or anywhere in the suffix, is still a miss; typing through is still a hit.
#[test]
fn typed_through_reuse_on_long_texts() {
    let mut cache = SuggestionCache::new(4);
    let body: String = (0..20_000).map(|i| format!("x{i} = {i}\n")).collect();
    let prefix = body.clone() + "for i in ";
    let suffix = body.clone();
    let cands = [Candidate { text: "range(len(xs)):".into(), mean_logprob: -0.3 }];
    cache.insert(&prefix, &suffix, "opts", &cands);
    let typed = prefix.clone() + "range(len(";
    assert_eq!(cache.lookup(&typed, &suffix, "opts").unwrap()[0].text, "xs)):");
    // The same length, one character changed at the top of the prefix or the suffix.
    let edited = |t: &str| t.replacen("x0 = 0", "y0 = 0", 1);
    assert!(cache.lookup(&edited(&typed), &suffix, "opts").is_none(), "the prefix changed above");
    assert!(cache.lookup(&typed, &edited(&suffix), "opts").is_none(), "the suffix changed");
    // The same text again replaces its entry; others stay until the capacity is reached.
    cache.insert(&prefix, &suffix, "opts", &[Candidate { text: "zip(a, b):".into(), mean_logprob: -0.1 }]);
    assert_eq!(cache.lookup(&(prefix.clone() + "zip"), &suffix, "opts").unwrap()[0].text, "(a, b):");
    assert!(cache.lookup(&typed, &suffix, "opts").is_none(), "the entry was replaced");
    // A multi-byte character typed: the entry's end is a character boundary of the new prefix.
    cache.insert("s = \"", "\"", "opts", &[Candidate { text: "日本語".into(), mean_logprob: -0.2 }]);
    assert_eq!(cache.lookup("s = \"日", "\"", "opts").unwrap()[0].text, "本語");
}
