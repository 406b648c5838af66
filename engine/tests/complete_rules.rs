//! Stop rules, post-processing, ranking and typed-through reuse on scripted model output: each
//! test feeds what a model could have produced, token by token, through the same path the
//! completer takes after sampling, and asserts the exact text shown.

use nib_engine::complete::{apply_rules, rank, Candidate, Cursor, Language, Mode, StopReason, Stopper, SuggestionCache};

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
