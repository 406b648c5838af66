//! Prompts: fill-in-the-middle templates detected from the vocabulary, a token budget cut on
//! line boundaries, and extra context placed first so it stays byte- and token-stable across
//! keystrokes (and so its keys and values stay in the KV cache).
//!
//! The prompt is assembled as token ids: FIM markers are inserted by id, and user text is
//! encoded so that a marker's spelling inside it never becomes the marker (some vocabularies,
//! Qwen2.5-Coder's among them, mark FIM tokens as user-defined, which plain encoding matches).

use super::{ceil_char_boundary, floor_char_boundary};
use crate::error::Result;
use crate::tokenizer::Tokenizer;

/// A model family's fill-in-the-middle convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `<|fim_prefix|>…<|fim_suffix|>…<|fim_middle|>`, files joined by `<|file_sep|>`.
    QwenCoder,
    /// `<fim_prefix>…<fim_suffix>…<fim_middle>`, files joined by `<file_sep>`.
    StarCoder,
    /// `<fim-prefix>…<fim-suffix>…<fim-middle>` (hyphens).
    SantaCoder,
    /// `<｜fim▁begin｜>…<｜fim▁hole｜>…<｜fim▁end｜>` (full-width bars, U+2581).
    DeepSeekCoder,
    /// `▁<PRE>…▁<SUF>…▁<MID>`, ends with `▁<EOT>`.
    CodeLlama,
    /// Qwen's spellings plus `<|file_separator|>`, which also ends generation.
    CodeGemma,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Family::QwenCoder => "qwen2.5-coder",
            Family::StarCoder => "starcoder",
            Family::SantaCoder => "santacoder",
            Family::DeepSeekCoder => "deepseek-coder",
            Family::CodeLlama => "codellama",
            Family::CodeGemma => "codegemma",
        }
    }
}

/// How to recognise a family: its prefix/suffix/middle spellings (alternatives in order), a
/// token only this family has (CodeGemma vs Qwen), its file separator and its extra stops.
struct FamilySpec {
    family: Family,
    fim: [&'static [&'static str]; 3],
    requires: Option<&'static str>,
    file_sep: &'static [&'static str],
    stops: &'static [&'static str],
}

/// Checked in order: CodeGemma shares Qwen's FIM spellings, so it comes first.
const FAMILIES: &[FamilySpec] = &[
    FamilySpec {
        family: Family::CodeGemma,
        fim: [&["<|fim_prefix|>"], &["<|fim_suffix|>"], &["<|fim_middle|>"]],
        requires: Some("<|file_separator|>"),
        file_sep: &["<|file_separator|>"],
        stops: &["<|file_separator|>", "<end_of_turn>", "<eos>"],
    },
    FamilySpec {
        family: Family::QwenCoder,
        fim: [&["<|fim_prefix|>"], &["<|fim_suffix|>"], &["<|fim_middle|>"]],
        requires: None,
        file_sep: &["<|file_sep|>"],
        stops: &["<|endoftext|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<|im_start|>", "<|im_end|>"],
    },
    FamilySpec {
        family: Family::StarCoder,
        fim: [&["<fim_prefix>"], &["<fim_suffix>"], &["<fim_middle>"]],
        requires: None,
        file_sep: &["<file_sep>"],
        stops: &["<|endoftext|>", "<fim_pad>", "<file_sep>", "<repo_name>", "<reponame>"],
    },
    FamilySpec {
        family: Family::SantaCoder,
        fim: [&["<fim-prefix>"], &["<fim-suffix>"], &["<fim-middle>"]],
        requires: None,
        file_sep: &[],
        stops: &["<|endoftext|>", "<fim-pad>"],
    },
    FamilySpec {
        family: Family::DeepSeekCoder,
        fim: [&["<｜fim▁begin｜>"], &["<｜fim▁hole｜>"], &["<｜fim▁end｜>"]],
        requires: None,
        file_sep: &[],
        stops: &["<｜end▁of▁sentence｜>", "<|EOT|>"],
    },
    FamilySpec {
        family: Family::CodeLlama,
        fim: [&["▁<PRE>", "<PRE>"], &["▁<SUF>", "<SUF>"], &["▁<MID>", "<MID>"]],
        requires: None,
        file_sep: &[],
        stops: &["▁<EOT>", "<EOT>", "</s>"],
    },
];

/// The FIM marker ids of a detected family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FimTokens {
    pub family: Family,
    pub prefix: u32,
    pub suffix: u32,
    pub middle: u32,
    /// Separates files of extra context (`<|file_sep|>`), when the family has one.
    pub file_sep: Option<u32>,
}

/// Another file (or an earlier notebook cell) shown to the model before the current file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContextFile {
    pub name: String,
    pub text: String,
}

/// Token budget of a prompt. The prefix gets what the suffix leaves, and the suffix at most a
/// quarter (llama.cpp's `format_infill` ratio prefix:suffix = 3:1); context has its own cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Prefix + suffix tokens.
    pub code_tokens: usize,
    /// Extra context tokens, placed before the code.
    pub context_tokens: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { code_tokens: 1536, context_tokens: 512 }
    }
}

/// Ids a prompt holds beyond its code and context tokens at most: BOS and the FIM markers.
const MARKER_TOKENS: usize = 8;

impl Budget {
    /// Upper bound on the ids [`PromptFormat::build`] returns (the markers included).
    pub fn max_prompt_tokens(&self) -> usize {
        self.code_tokens.saturating_add(self.context_tokens).saturating_add(MARKER_TOKENS)
    }

    /// This budget, code and context shrunk in proportion, so that no prompt is longer than
    /// `max_prompt` tokens ([`Budget::max_prompt_tokens`] ≤ `max_prompt`); unchanged when it
    /// fits already. A model's context must hold the prompt and the tokens generated after it:
    /// SantaCoder's 2,048 would otherwise take a full default prompt (2,056) with no room left.
    pub fn fit(self, max_prompt: usize) -> Budget {
        if self.max_prompt_tokens() <= max_prompt {
            return self;
        }
        let room = max_prompt.saturating_sub(MARKER_TOKENS) as u128;
        let want = (self.code_tokens as u128 + self.context_tokens as u128).max(1);
        let scale = |n: usize| usize::try_from(n as u128 * room / want).unwrap_or(usize::MAX);
        Budget { code_tokens: scale(self.code_tokens), context_tokens: scale(self.context_tokens) }
    }
}

/// Bytes of text per budget token that [`PromptFormat::build`] tokenizes at first, from the
/// cursor outwards: code averages 3 to 4 bytes a token, so this is several times what a
/// budget can keep. Text beyond it is never tokenized (a notebook or a large file sends
/// megabytes: tokenizing them on every keystroke took seconds).
const CLIP_BYTES_PER_TOKEN: usize = 16;

/// Tokens beyond its budget that clipped text must hold. The tokens nearest the clip can
/// differ from those of the whole text (a pre-token that crosses the clip); with this margin
/// they are never among the tokens a budget keeps, so clipping never changes a prompt.
const CLIP_MARGIN_TOKENS: usize = 64;

/// What [`PromptFormat::build`] made: the ids and how much of the code it kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// Bytes cut from the start of the prefix (whole lines).
    pub prefix_cut: usize,
    /// Bytes of the suffix kept (whole lines, from its start).
    pub suffix_kept: usize,
    /// Bytes of text run through the tokenizer to build it (prefix and suffix only as far
    /// from the cursor as the budget can reach, context files, re-encodings of a cut).
    pub tokenized_bytes: usize,
}

/// How prompts are built for one vocabulary, and which tokens end a completion.
#[derive(Debug, Clone)]
pub struct PromptFormat {
    fim: Option<FimTokens>,
    /// FIM markers, family stops and the tokenizer's end-of-generation set, sorted.
    stop_ids: Vec<u32>,
    /// Spellings of those tokens, which user text must not turn into the tokens.
    reserved: Vec<String>,
    /// Ids [`Tokenizer::encode`] adds around any text (BOS/EOS), to strip from pieces.
    lead: usize,
    trail: usize,
    bos: Option<u32>,
}

fn first_id(tok: &Tokenizer, spellings: &[&str]) -> Option<u32> {
    spellings.iter().find_map(|s| tok.token_id(s).filter(|&id| tok.is_special(id)))
}

impl PromptFormat {
    /// Detects the FIM family from the vocabulary's special tokens; none found (or `allow_fim`
    /// false) gives prefix-only prompts.
    pub fn detect(tok: &Tokenizer, allow_fim: bool) -> Result<Self> {
        let mut stop_ids = tok.end_of_generation();
        let mut fim = None;
        if allow_fim {
            for spec in FAMILIES {
                let ids = [first_id(tok, spec.fim[0]), first_id(tok, spec.fim[1]), first_id(tok, spec.fim[2])];
                let [Some(prefix), Some(suffix), Some(middle)] = ids else { continue };
                if spec.requires.is_some_and(|r| first_id(tok, &[r]).is_none()) {
                    continue;
                }
                stop_ids.extend([prefix, suffix, middle]);
                stop_ids.extend(spec.stops.iter().filter_map(|s| first_id(tok, &[s])));
                fim = Some(FimTokens { family: spec.family, prefix, suffix, middle, file_sep: first_id(tok, spec.file_sep) });
                break;
            }
        }
        stop_ids.sort_unstable();
        stop_ids.dedup();
        let mut reserved: Vec<String> = stop_ids
            .iter()
            .filter(|&&id| tok.is_special(id))
            .filter_map(|&id| tok.token_bytes(id))
            .filter_map(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(f) = fim {
            for id in [Some(f.prefix), Some(f.suffix), Some(f.middle), f.file_sep].into_iter().flatten() {
                if let Some(s) = tok.token_bytes(id).and_then(|b| String::from_utf8(b).ok()) {
                    reserved.push(s);
                }
            }
        }
        reserved.sort_unstable();
        reserved.dedup();
        let empty = tok.encode("")?;
        let lead = usize::from(tok.add_bos());
        let trail = empty.len().saturating_sub(lead);
        Ok(PromptFormat { fim, stop_ids, reserved, lead, trail, bos: if tok.add_bos() { tok.bos() } else { None } })
    }

    pub fn fim(&self) -> Option<FimTokens> {
        self.fim
    }

    /// Tokens that end a candidate (never shown).
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    /// `text` as ids, without BOS/EOS, with reserved spellings kept as plain characters.
    pub fn encode_text(&self, tok: &Tokenizer, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        let mut rest = text;
        loop {
            let hit = self.reserved.iter().filter_map(|r| rest.find(r.as_str()).map(|at| (at, r))).min_by_key(|(at, r)| (*at, usize::MAX - r.len()));
            let Some((at, spelling)) = hit else { break };
            let (before, after) = rest.split_at(at);
            self.encode_piece(tok, before, &mut out)?;
            // One character at a time: no piece of the spelling can form the marker again.
            for c in spelling.chars() {
                let mut buf = [0u8; 4];
                self.encode_piece(tok, c.encode_utf8(&mut buf), &mut out)?;
            }
            rest = after.get(spelling.len()..).unwrap_or_default();
        }
        self.encode_piece(tok, rest, &mut out)?;
        Ok(out)
    }

    fn encode_piece(&self, tok: &Tokenizer, text: &str, out: &mut Vec<u32>) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let ids = tok.encode(text)?;
        let end = ids.len().saturating_sub(self.trail);
        out.extend_from_slice(ids.get(self.lead.min(end)..end).unwrap_or_default());
        Ok(())
    }

    /// [`PromptFormat::encode_text`], adding the bytes encoded to `count`.
    fn encode_counted(&self, tok: &Tokenizer, text: &str, count: &mut usize) -> Result<Vec<u32>> {
        *count += text.len();
        self.encode_text(tok, text)
    }

    /// The prompt for a cursor between `prefix` and `suffix`, with `context` first.
    ///
    /// Layout (FIM): `[BOS] [SEP name\ntext\n]… PRE prefix SUF suffix MID`; without a file
    /// separator the context texts are plain text before `PRE`. Prefix-only: `[BOS] context
    /// prefix` (the suffix is not shown). Each part is encoded on its own, so a keystroke in the
    /// prefix never changes the tokens of the context before it.
    ///
    /// A prefix over its budget is cut at a line start. `keep_from` is the cut of the previous
    /// request: kept while the text after it still fits, so that typing does not move the
    /// prompt's start (which would cost a full re-evaluation, keystroke after keystroke). A new
    /// cut keeps only three quarters of the prefix budget, leaving room to type before the
    /// next one. A cut that has to fall inside one line too long for the budget is made
    /// between tokens, and kept likewise.
    ///
    /// Only the text near the cursor is tokenized: the prefix from a line start about
    /// `CLIP_BYTES_PER_TOKEN` bytes per budget token before its end, the suffix likewise up to
    /// a line end, each until it holds `CLIP_MARGIN_TOKENS` more tokens than its budget. What
    /// the budget keeps lies well inside that, so the prompt is the one the whole text gives.
    pub fn build(&self, tok: &Tokenizer, prefix: &str, suffix: &str, context: &[ContextFile], budget: Budget, keep_from: Option<usize>) -> Result<Prompt> {
        let mut count = 0;
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        let ctx = self.context_ids(tok, context, budget.context_tokens, &mut count)?;
        ids.extend(ctx);
        let suffix_budget = budget.code_tokens / 4;
        let (suffix_ids, suffix_kept) = if self.fim.is_some() {
            let (end, suffix_ids) = self.encode_head(tok, suffix, suffix_budget, &mut count)?;
            self.keep_head(tok, suffix.get(..end).unwrap_or_default(), suffix_ids, suffix_budget, &mut count)?
        } else {
            (Vec::new(), suffix.len())
        };
        let prefix_budget = budget.code_tokens.saturating_sub(suffix_ids.len());
        let (prefix_ids, prefix_cut) = match self.keep_cut(tok, prefix, prefix_budget, keep_from, &mut count)? {
            Some(kept) => kept,
            None => {
                let (start, prefix_ids) = self.encode_tail(tok, prefix, prefix_budget, &mut count)?;
                // A kept cut before the clip cannot fit: the clipped text alone is over the budget.
                let keep_from = keep_from.and_then(|cut| cut.checked_sub(start));
                let tail = prefix.get(start..).unwrap_or_default();
                let (prefix_ids, tail_cut) = self.keep_tail(tok, tail, prefix_ids, prefix_budget, keep_from, &mut count)?;
                (prefix_ids, start + tail_cut)
            }
        };
        match self.fim {
            Some(f) => {
                ids.push(f.prefix);
                ids.extend(prefix_ids);
                ids.push(f.suffix);
                ids.extend(suffix_ids);
                ids.push(f.middle);
            }
            None => ids.extend(prefix_ids),
        }
        Ok(Prompt { ids, prefix_cut, suffix_kept, tokenized_bytes: count })
    }

    /// The context files' ids within `budget`: the files nearest the current one (last) are
    /// kept whole when all do not fit. Files before the first that does not fit are not
    /// tokenized, nor is more of a long file than it takes to tell that it cannot fit.
    fn context_ids(&self, tok: &Tokenizer, context: &[ContextFile], budget: usize, count: &mut usize) -> Result<Vec<u32>> {
        let sep = self.fim.and_then(|f| f.file_sep);
        let mut files = Vec::new();
        let mut total = 0;
        for file in context.iter().rev().filter(|f| !f.text.is_empty()) {
            let room = budget.saturating_sub(total);
            let mut ids: Vec<u32> = sep.into_iter().collect();
            if sep.is_some() {
                ids.extend(self.encode_counted(tok, &format!("{}\n", file.name), count)?);
            }
            let text_room = room.saturating_sub(ids.len());
            if file.text.len() > text_room.saturating_add(CLIP_MARGIN_TOKENS).saturating_mul(CLIP_BYTES_PER_TOKEN) {
                // Its start alone over what is left: the whole file is too.
                let (end, head) = self.encode_head(tok, &file.text, text_room, count)?;
                if end < file.text.len() && head.len() > text_room {
                    break;
                }
            }
            let mut text = file.text.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            ids.extend(self.encode_counted(tok, &text, count)?);
            if total + ids.len() > budget {
                break;
            }
            total += ids.len();
            files.push(ids);
        }
        Ok(files.into_iter().rev().flatten().collect())
    }

    /// What [`PromptFormat::keep_tail`] answers on a keystroke, when the kept cut still fits:
    /// `text` after `keep_from`, with the text before it tokenized only as far as it takes to
    /// tell that the whole is over `budget` (else `None`, and the caller does it all).
    fn keep_cut(&self, tok: &Tokenizer, text: &str, budget: usize, keep_from: Option<usize>, count: &mut usize) -> Result<Option<(Vec<u32>, usize)>> {
        let Some(cut) = keep_from.filter(|&c| c > 0 && c < text.len() && text.is_char_boundary(c)) else { return Ok(None) };
        // A tail too long to fit is seen to be so from its start (`encode_head` clips it).
        let tail = text.get(cut..).unwrap_or_default();
        let (end, kept) = self.encode_head(tok, tail, budget, count)?;
        let Some(left) = budget.checked_sub(kept.len()).filter(|_| end == tail.len()) else { return Ok(None) };
        // Clipped: the head alone holds `left` + CLIP_MARGIN_TOKENS tokens, so the whole is over.
        let (start, _) = self.encode_tail(tok, text.get(..cut).unwrap_or_default(), left, count)?;
        Ok((start > 0).then_some((kept, cut)))
    }

    /// The end of `text` as ids, clipped (see [`PromptFormat::build`]): `(start, ids of
    /// text[start..])`, where `start` is 0 or a point with at least `budget` +
    /// `CLIP_MARGIN_TOKENS` tokens after it.
    fn encode_tail(&self, tok: &Tokenizer, text: &str, budget: usize, count: &mut usize) -> Result<(usize, Vec<u32>)> {
        let need = budget.saturating_add(CLIP_MARGIN_TOKENS);
        let mut window = need.saturating_mul(CLIP_BYTES_PER_TOKEN);
        loop {
            let start = clip_start(text, window);
            let ids = self.encode_counted(tok, text.get(start..).unwrap_or_default(), count)?;
            if start == 0 || ids.len() >= need {
                return Ok((start, ids));
            }
            // Long tokens (runs of spaces): more text.
            window = window.saturating_mul(4);
        }
    }

    /// The start of `text` as ids, clipped: `(end, ids of text[..end])`, where `end` is the
    /// text's length or a point with at least `budget` + `CLIP_MARGIN_TOKENS` tokens before it.
    fn encode_head(&self, tok: &Tokenizer, text: &str, budget: usize, count: &mut usize) -> Result<(usize, Vec<u32>)> {
        let need = budget.saturating_add(CLIP_MARGIN_TOKENS);
        let mut window = need.saturating_mul(CLIP_BYTES_PER_TOKEN);
        loop {
            let end = clip_end(text, window);
            let ids = self.encode_counted(tok, text.get(..end).unwrap_or_default(), count)?;
            if end == text.len() || ids.len() >= need {
                return Ok((end, ids));
            }
            window = window.saturating_mul(4);
        }
    }

    /// The end of `text` within `budget` tokens, cut at a line start; `(ids, bytes cut)`. The
    /// cut `keep_from` stays while its tail fits; a new one keeps 3/4 of `budget` (hysteresis).
    ///
    /// Token ends fall inside characters (byte-level BPE splits CJK and emoji), so lines are
    /// looked for in bytes: a newline is always a character boundary.
    fn keep_tail(&self, tok: &Tokenizer, text: &str, ids: Vec<u32>, budget: usize, keep_from: Option<usize>, count: &mut usize) -> Result<(Vec<u32>, usize)> {
        if ids.len() <= budget {
            return Ok((ids, 0));
        }
        let bytes = text.as_bytes();
        let line_start = |at: usize| at == 0 || bytes.get(at.wrapping_sub(1)) == Some(&b'\n');
        // The caller checked that the text before the cut is unchanged, so the cut is where it
        // was: a line start, or a token cut inside one long line.
        if let Some(cut) = keep_from.filter(|&c| c > 0 && c < text.len() && text.is_char_boundary(c)) {
            let kept = self.encode_counted(tok, text.get(cut..).unwrap_or_default(), count)?;
            if kept.len() <= budget {
                return Ok((kept, cut));
            }
        }
        let target = (budget * 3 / 4).max(1);
        let ends = byte_ends(tok, &ids);
        let first_kept = |keep: usize| ids.len().checked_sub(keep).and_then(|drop| drop.checked_sub(1)).and_then(|i| ends.get(i)).copied().unwrap_or(0).min(text.len());
        let mut from = first_kept(target);
        loop {
            // The first line start at or after `from`.
            let start = if line_start(from) { Some(from) } else { bytes.get(from..).and_then(|b| b.iter().position(|&c| c == b'\n')).map(|i| from + i + 1) };
            let Some(start) = start.filter(|&s| s < text.len()) else { break };
            let kept = self.encode_counted(tok, text.get(start..).unwrap_or_default(), count)?;
            if kept.len() <= target {
                return Ok((kept, start));
            }
            from = start + 1;
        }
        // One line longer than the budget: cut between tokens (at a character boundary),
        // keeping 3/4 of the budget as a line cut would, so that the cut can stay put too.
        let cut = ceil_char_boundary(text, first_kept(target));
        if cut > 0 && cut < text.len() {
            let kept = self.encode_counted(tok, text.get(cut..).unwrap_or_default(), count)?;
            if kept.len() <= budget {
                return Ok((kept, cut));
            }
        }
        let drop = ids.len().saturating_sub(budget);
        Ok((ids.get(drop..).unwrap_or_default().to_vec(), first_kept(budget)))
    }

    /// The start of `text` within `budget` tokens, cut after a newline; `(ids, bytes kept)`.
    fn keep_head(&self, tok: &Tokenizer, text: &str, ids: Vec<u32>, budget: usize, count: &mut usize) -> Result<(Vec<u32>, usize)> {
        if ids.len() <= budget {
            return Ok((ids, text.len()));
        }
        let ends = byte_ends(tok, &ids);
        let mut upto = ends.get(budget).copied().unwrap_or(text.len()).min(text.len());
        while let Some(nl) = text.as_bytes().get(..upto).and_then(|b| b.iter().rposition(|&c| c == b'\n')) {
            let kept = self.encode_counted(tok, text.get(..nl + 1).unwrap_or_default(), count)?;
            if kept.len() <= budget {
                return Ok((kept, nl + 1));
            }
            upto = nl;
        }
        let kept = ids.get(..budget).unwrap_or_default().to_vec();
        Ok((kept, ends.get(budget.saturating_sub(1)).copied().unwrap_or(0)))
    }
}

/// Where to start tokenizing `text` to keep about its last `window` bytes: the last line start
/// at or before `len - window`, or, when that line alone is longer than `window` (minified
/// code, one huge line), the character boundary there. 0 when the text is no longer.
fn clip_start(text: &str, window: usize) -> usize {
    let Some(at) = text.len().checked_sub(window).filter(|&at| at > 0) else { return 0 };
    let from = at.saturating_sub(window);
    match text.as_bytes().get(from..at).and_then(|b| b.iter().rposition(|&c| c == b'\n')) {
        Some(nl) => from + nl + 1,
        None => ceil_char_boundary(text, at),
    }
}

/// Where to stop tokenizing `text` to keep about its first `window` bytes: after the first
/// newline at or after `window`, or the character boundary there when that line goes on for
/// more than `window` bytes. The text's length when it is no longer.
fn clip_end(text: &str, window: usize) -> usize {
    if text.len() <= window {
        return text.len();
    }
    let to = window.saturating_add(window).min(text.len());
    match text.as_bytes().get(window..to).and_then(|b| b.iter().position(|&c| c == b'\n')) {
        Some(nl) => window + nl + 1,
        None => floor_char_boundary(text, window),
    }
}

/// Byte offset in the text where each token ends (byte-level BPE decodes losslessly).
fn byte_ends(tok: &Tokenizer, ids: &[u32]) -> Vec<usize> {
    let mut at = 0;
    ids.iter()
        .map(|&id| {
            at += tok.token_bytes(id).map_or(0, |b| b.len());
            at
        })
        .collect()
}
