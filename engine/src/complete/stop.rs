//! Stop rules: where a candidate ends, decided on its growing text as tokens arrive.
//!
//! [`Stopper::push`] takes each decoded piece and answers, once a rule fires, the byte offset
//! where the candidate ends. The rules (completion-systems.md §2.3):
//! - `line` mode: the first newline, and about 32 tokens at most;
//! - `block` mode: a line indented less than the block the cursor is in (Python; every
//!   language, since code is indented), a new top-level statement (`\ndef`, `\nfn`, …), a `}`
//!   closing a block opened before the cursor or the end of the line that closes the block the
//!   cursor line opened (C-like), a run of blank lines;
//! - both: a markdown fence, a line of English prose (instruct models explain themselves), a
//!   token cap; the caller adds end-of-generation tokens ([`Stopper::end`]) and a time cap
//!   ([`Stopper::time_up`]).
//!
//! The whole text is rescanned on every push: candidates are a few hundred bytes, and a
//! rescan cannot drift out of step the way incremental state can.

/// How much a completion may span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The rest of the current line.
    Line,
    /// The rest of the block the cursor is in.
    Block,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "line" => Some(Mode::Line),
            "block" => Some(Mode::Block),
            _ => None,
        }
    }

    /// Mid-line (code after the cursor on its line) → line; an empty line, or a line that
    /// opens a block (`:` / `{` at its end) → block; otherwise the end of a line → line.
    pub fn for_cursor(cx: &Cursor) -> Mode {
        if !cx.line_suffix().trim().is_empty() {
            return Mode::Line;
        }
        let line = cx.line_prefix().trim_end();
        if line.trim_start().is_empty() || line.ends_with(':') || line.ends_with('{') {
            Mode::Block
        } else {
            Mode::Line
        }
    }
}

/// The syntax facts the rules use, by language name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Language {
    /// Blocks by indentation (Python), not braces.
    pub indent_blocks: bool,
    /// `{`/`}` delimit blocks.
    pub braces: bool,
    /// `'` starts a string of any length (else only a char literal such as `'a'`: Rust, C).
    pub single_quote_strings: bool,
    pub line_comment: Option<&'static str>,
    /// Lines at indentation 0 that start a new top-level statement (Tabby's `languages.toml`,
    /// Codex's stop list for Python).
    pub top_level: &'static [&'static str],
    /// Consecutive blank lines that end a block: 1 (Tabby's and Copilot's `\n\n` stop), but 2
    /// in Python, where a blank line inside a body is idiomatic, dedent already ends bodies
    /// and PEP 8 puts two blank lines between top-level definitions.
    pub blank_run: usize,
}

const PYTHON_TOP: &[&str] = &["def", "class", "import", "from", "if", "print", "@", "#"];
const RUST_TOP: &[&str] = &["fn", "pub", "impl", "trait", "enum", "struct", "use", "mod", "extern", "static", "unsafe", "#[", "//"];
const JS_TOP: &[&str] =
    &["function", "class", "export", "import", "const", "let", "var", "interface", "type", "enum", "async", "module", "//"];
const GO_TOP: &[&str] = &["func", "type", "package", "import", "var", "const", "//"];
const C_TOP: &[&str] = &["#", "//", "typedef", "struct", "static"];
const JAVA_TOP: &[&str] = &["public", "private", "protected", "class", "interface", "import", "package", "@", "//"];

impl Language {
    /// Language by editor/file name (`python`, `py`, `rust`, `rs`, `typescript`, `go`, …);
    /// unknown names get indentation and blank-line rules only.
    pub fn from_name(name: &str) -> Language {
        let c_like = |top, single_quote_strings| Language {
            indent_blocks: false,
            braces: true,
            single_quote_strings,
            line_comment: Some("//"),
            top_level: top,
            blank_run: 1,
        };
        match name.to_ascii_lowercase().as_str() {
            "python" | "py" | "ipython" => Language {
                indent_blocks: true,
                braces: false,
                single_quote_strings: true,
                line_comment: Some("#"),
                top_level: PYTHON_TOP,
                blank_run: 2,
            },
            "rust" | "rs" => c_like(RUST_TOP, false),
            "javascript" | "js" | "jsx" | "typescript" | "ts" | "tsx" | "javascriptreact" | "typescriptreact" => {
                c_like(JS_TOP, true)
            }
            "go" | "golang" => c_like(GO_TOP, false),
            "c" | "cpp" | "c++" | "h" | "hpp" | "cc" | "cuda" => c_like(C_TOP, false),
            "java" | "kotlin" | "kt" | "scala" | "csharp" | "c#" | "cs" | "swift" | "dart" => c_like(JAVA_TOP, false),
            "php" => c_like(&["function", "class", "namespace", "use", "//"], true),
            _ => Language {
                indent_blocks: false,
                braces: false,
                single_quote_strings: true,
                line_comment: None,
                top_level: &[],
                blank_run: 1,
            },
        }
    }
}

/// Bytes on each side of the cursor that the rules look at ([`Cursor::new`]).
pub const CURSOR_WINDOW: usize = 4096;

/// The text around the cursor that the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    pub prefix: &'a str,
    pub suffix: &'a str,
    pub language: Language,
}

impl<'a> Cursor<'a> {
    /// The cursor between `prefix` and `suffix`, which it sees only [`CURSOR_WINDOW`] bytes
    /// deep on each side: the rules run on every token and look at the cursor's line, so one
    /// huge line (minified code, a data literal) would cost its length per token. Lines within
    /// the window, and the rules' answers for them, are unchanged.
    pub fn new(prefix: &'a str, suffix: &'a str, language: Language) -> Self {
        let start = super::ceil_char_boundary(prefix, prefix.len().saturating_sub(CURSOR_WINDOW));
        let end = super::floor_char_boundary(suffix, CURSOR_WINDOW);
        Cursor { prefix: prefix.get(start..).unwrap_or_default(), suffix: suffix.get(..end).unwrap_or_default(), language }
    }

    /// The cursor's line up to the cursor.
    pub fn line_prefix(&self) -> &'a str {
        self.prefix.rsplit('\n').next().unwrap_or_default()
    }

    /// The cursor's line after the cursor.
    pub fn line_suffix(&self) -> &'a str {
        self.suffix.split('\n').next().unwrap_or_default()
    }

    /// The first line after the cursor's line that is not blank.
    pub fn next_code_line(&self) -> Option<&'a str> {
        self.suffix.split('\n').skip(1).find(|l| !l.trim().is_empty())
    }
}

/// Why a candidate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndOfGeneration,
    LineEnd,
    Dedent,
    TopLevel,
    BraceClosed,
    BlankLines,
    Fence,
    Prose,
    MaxTokens,
    Time,
    Cancelled,
}

/// Where a candidate ends: it is `text[..at]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub at: usize,
    pub reason: StopReason,
}

/// Tokens at most in line mode (Copilot caps single lines at 20; a line of code is rarely
/// longer than 32 tokens of a code vocabulary).
pub const LINE_MAX_TOKENS: usize = 32;
/// Tokens at most in block mode unless the request says otherwise.
pub const BLOCK_MAX_TOKENS: usize = 192;

/// Watches one candidate's text grow.
pub struct Stopper<'a> {
    cx: Cursor<'a>,
    mode: Mode,
    max_tokens: usize,
    text: String,
    tokens: usize,
}

impl<'a> Stopper<'a> {
    pub fn new(cx: Cursor<'a>, mode: Mode, max_tokens: usize) -> Self {
        Stopper { cx, mode, max_tokens: max_tokens.max(1), text: String::new(), tokens: 0 }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Adds one token's text; `Some` once the candidate is over.
    pub fn push(&mut self, piece: &str) -> Option<Stop> {
        self.text.push_str(piece);
        self.tokens += 1;
        if let Some(stop) = self.scan() {
            return Some(stop);
        }
        (self.tokens >= self.max_tokens).then(|| self.cut_back(StopReason::MaxTokens))
    }

    /// The stream ended (end-of-generation token, or nothing more to read): all of it.
    pub fn end(&self, reason: StopReason) -> Stop {
        Stop { at: self.text.len(), reason }
    }

    /// The time cap passed: in block mode, back to the last complete line when there is one
    /// (llama.cpp's `t_max_predict_ms` waits for a newline likewise).
    pub fn time_up(&self) -> Stop {
        self.cut_back(StopReason::Time)
    }

    fn cut_back(&self, reason: StopReason) -> Stop {
        if self.mode == Mode::Block {
            if let Some(nl) = self.text.rfind('\n').filter(|&nl| !self.text[..nl].trim().is_empty()) {
                return Stop { at: nl, reason };
            }
        }
        self.end(reason)
    }

    fn scan(&self) -> Option<Stop> {
        let text = self.text.as_str();
        if self.mode == Mode::Line {
            return text.find('\n').map(|at| Stop { at, reason: StopReason::LineEnd });
        }
        let lang = self.cx.language;
        let line_prefix = self.cx.line_prefix();
        let cursor_line_blank = line_prefix.trim().is_empty();
        let mut state = Scan::default();
        let mut ref_indent: Option<usize> = None;
        let mut blank_run = 0;
        let mut content_end: Option<usize> = None;
        let mut first_brace_on_line0 = false;
        let mut start = 0;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let complete = line.ends_with('\n');
            let body = line.strip_suffix('\n').unwrap_or(line);
            let body = body.strip_suffix('\r').unwrap_or(body);
            let at = |reason| Some(Stop { at: start, reason });
            let blank = body.trim().is_empty() && (i > 0 || cursor_line_blank);
            if (i > 0 || cursor_line_blank) && body.trim_start().starts_with("```") {
                return at(StopReason::Fence);
            }
            if i > 0 && !blank {
                let indent = indent_width(body);
                let first = body.trim_start();
                let opens_with_closer = first.starts_with(['}', ')', ']']);
                let continuation = state.depth_all > 0 || state.in_triple;
                if !continuation && (!lang.braces || !opens_with_closer) {
                    if ref_indent.is_some_and(|r| indent < r) {
                        return at(StopReason::Dedent);
                    }
                    if indent == 0 && state.braces <= 0 && starts_with_keyword(first, lang.top_level) {
                        return at(StopReason::TopLevel);
                    }
                }
                if complete && indent == 0 && !continuation && looks_like_prose(first, lang) {
                    return at(StopReason::Prose);
                }
            }
            if blank && complete {
                blank_run += 1;
                let limit = if content_end.is_some() { lang.blank_run } else { lang.blank_run + 1 };
                if blank_run >= limit {
                    return Some(Stop { at: content_end.unwrap_or(0), reason: StopReason::BlankLines });
                }
            } else if !blank {
                blank_run = 0;
            }
            if ref_indent.is_none() && !blank {
                ref_indent = Some(if i == 0 {
                    // The cursor's whole line, `line_prefix` + `body`, read without joining them.
                    let blank_before = line_prefix.trim_start_matches([' ', '\t']).is_empty();
                    let indent = indent_width(line_prefix) + if blank_before { indent_width(body) } else { 0 };
                    let end = if body.trim_end().is_empty() { line_prefix.trim_end() } else { body.trim_end() };
                    let opens = !cursor_line_blank && (end.ends_with(':') || end.ends_with('{'));
                    indent + usize::from(opens)
                } else {
                    indent_width(body)
                });
            }
            // Brackets, character by character, outside strings and comments.
            let before = state.braces;
            if let Some(offset) = state.feed(body, lang) {
                // A `}` closing a block opened before the cursor: cut before it when the
                // suffix closes that block already, else keep this closing line.
                let suffix_closes = self.cx.next_code_line().is_some_and(|l| l.trim_start().starts_with('}'))
                    || self.cx.line_suffix().trim_start().starts_with('}');
                let at = if suffix_closes { start + offset } else { start + body.len() };
                return Some(Stop { at, reason: StopReason::BraceClosed });
            }
            if i == 0 && before == 0 && state.braces > 0 {
                first_brace_on_line0 = true;
            }
            if !blank && !body.trim().is_empty() {
                content_end = Some(start + body.len());
            }
            // The block the first line opened is closed: done, when that block is the cursor
            // line's own construct or a top-level item (inside a body, more statements follow).
            let own_block = !cursor_line_blank || ref_indent == Some(0);
            if complete && i > 0 && first_brace_on_line0 && own_block && state.braces == 0 && state.depth_all <= 0 {
                return Some(Stop { at: start + body.len(), reason: StopReason::BraceClosed });
            }
            if complete && i == 0 && first_brace_on_line0 && state.braces == 0 {
                // `{ … }` on one line: not a block.
                first_brace_on_line0 = false;
            }
            start += line.len();
        }
        None
    }
}

/// Bracket state of the completion so far (relative to the cursor).
#[derive(Default)]
struct Scan {
    braces: i32,
    depth_all: i32,
    in_triple: bool,
}

impl Scan {
    /// Scans one line; `Some(byte offset)` of a `}` that takes the brace depth below zero.
    fn feed(&mut self, line: &str, lang: Language) -> Option<usize> {
        let bytes = line.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if lang.indent_blocks && bytes.get(i..i + 3).is_some_and(|t| t == b"\"\"\"" || t == b"'''") {
                self.in_triple = !self.in_triple;
                i += 3;
                continue;
            }
            if self.in_triple {
                i += 1;
                continue;
            }
            if lang.line_comment.is_some_and(|c| bytes.get(i..).is_some_and(|r| r.starts_with(c.as_bytes()))) {
                break;
            }
            match b {
                b'"' | b'`' => i = skip_string(bytes, i, b),
                b'\'' if lang.single_quote_strings => i = skip_string(bytes, i, b),
                b'\'' => {
                    // A char literal ('a', '\n') is skipped; a Rust lifetime is not a string.
                    let close = (i + 2..=i + 4).find(|&j| bytes.get(j) == Some(&b'\''));
                    i = close.map_or(i + 1, |j| j + 1);
                }
                b'(' | b'[' => {
                    self.depth_all += 1;
                    i += 1;
                }
                b')' | b']' => {
                    self.depth_all -= 1;
                    i += 1;
                }
                b'{' => {
                    self.depth_all += 1;
                    self.braces += 1;
                    i += 1;
                }
                b'}' => {
                    self.depth_all -= 1;
                    self.braces -= 1;
                    if lang.braces && self.braces < 0 {
                        return Some(i);
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
        None
    }
}

/// Index after the string literal that starts at `i` (or the end of the line).
fn skip_string(bytes: &[u8], i: usize, quote: u8) -> usize {
    let mut j = i + 1;
    while let Some(&b) = bytes.get(j) {
        if b == b'\\' {
            j += 2;
            continue;
        }
        if b == quote {
            return j + 1;
        }
        j += 1;
    }
    bytes.len()
}

/// Leading whitespace in columns (a tab counts 4).
pub fn indent_width(line: &str) -> usize {
    line.chars().take_while(|c| *c == ' ' || *c == '\t').map(|c| if c == '\t' { 4 } else { 1 }).sum()
}

fn starts_with_keyword(line: &str, keywords: &[&str]) -> bool {
    keywords.iter().any(|kw| {
        line.strip_prefix(kw).is_some_and(|rest| {
            let word = kw.chars().last().is_some_and(|c| c.is_alphanumeric());
            !word || !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
        })
    })
}

/// A line of English at indentation 0: a capitalised word, at least four words, no code
/// punctuation, ending like a sentence ("Here is the code:", "This function returns …").
fn looks_like_prose(line: &str, lang: Language) -> bool {
    let line = line.trim_end();
    if lang.line_comment.is_some_and(|c| line.starts_with(c)) {
        return false;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let capital = line.starts_with(|c: char| c.is_ascii_uppercase());
    let code_chars = line.contains(|c: char| "(){}[]=<>;\"`_/\\|&*+#$@".contains(c));
    let sentence_end = line.ends_with(['.', ':', '!', '?']);
    capital && words.len() >= 4 && !code_chars && sentence_end
}
