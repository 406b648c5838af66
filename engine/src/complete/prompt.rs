//! Prompts: fill-in-the-middle templates detected from the vocabulary, a token budget cut on
//! line boundaries, and extra context placed first so it stays byte- and token-stable across
//! keystrokes (and so its keys and values stay in the KV cache).
//!
//! The prompt is assembled as token ids: FIM markers are inserted by id, and user text is
//! encoded so that a marker's spelling inside it never becomes the marker (some vocabularies,
//! Qwen2.5-Coder's among them, mark FIM tokens as user-defined, which plain encoding matches).

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

impl Budget {
    /// Upper bound on the ids [`PromptFormat::build`] returns (the markers included).
    pub fn max_prompt_tokens(&self) -> usize {
        self.code_tokens + self.context_tokens + 8
    }
}

/// What [`PromptFormat::build`] made: the ids and how much of the code it kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub ids: Vec<u32>,
    /// Bytes cut from the start of the prefix (whole lines).
    pub prefix_cut: usize,
    /// Bytes of the suffix kept (whole lines, from its start).
    pub suffix_kept: usize,
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
    /// next one.
    pub fn build(&self, tok: &Tokenizer, prefix: &str, suffix: &str, context: &[ContextFile], budget: Budget, keep_from: Option<usize>) -> Result<Prompt> {
        let mut ids: Vec<u32> = self.bos.into_iter().collect();
        let ctx = self.context_ids(tok, context, budget.context_tokens)?;
        ids.extend(ctx);
        let suffix_ids = if self.fim.is_some() { self.encode_text(tok, suffix)? } else { Vec::new() };
        let suffix_budget = budget.code_tokens / 4;
        let (suffix_ids, suffix_kept) = self.keep_head(tok, suffix, suffix_ids, suffix_budget)?;
        let prefix_budget = budget.code_tokens.saturating_sub(suffix_ids.len());
        let prefix_ids = self.encode_text(tok, prefix)?;
        let (prefix_ids, prefix_cut) = self.keep_tail(tok, prefix, prefix_ids, prefix_budget, keep_from)?;
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
        Ok(Prompt { ids, prefix_cut, suffix_kept })
    }

    fn context_ids(&self, tok: &Tokenizer, context: &[ContextFile], budget: usize) -> Result<Vec<u32>> {
        let mut files = Vec::new();
        for file in context.iter().filter(|f| !f.text.is_empty()) {
            let sep = self.fim.and_then(|f| f.file_sep);
            let mut ids: Vec<u32> = sep.into_iter().collect();
            let head = if sep.is_some() { format!("{}\n", file.name) } else { String::new() };
            let mut text = file.text.clone();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            ids.extend(self.encode_text(tok, &head)?);
            ids.extend(self.encode_text(tok, &text)?);
            files.push(ids);
        }
        // The files nearest the current one (last) are kept when all do not fit.
        let mut total = 0;
        let mut keep = files.len();
        for f in files.iter().rev() {
            if total + f.len() > budget {
                break;
            }
            total += f.len();
            keep -= 1;
        }
        Ok(files.into_iter().skip(keep).flatten().collect())
    }

    /// The end of `text` within `budget` tokens, cut at a line start; `(ids, bytes cut)`. The
    /// cut `keep_from` stays while its tail fits; a new one keeps 3/4 of `budget` (hysteresis).
    fn keep_tail(&self, tok: &Tokenizer, text: &str, ids: Vec<u32>, budget: usize, keep_from: Option<usize>) -> Result<(Vec<u32>, usize)> {
        if ids.len() <= budget {
            return Ok((ids, 0));
        }
        let line_start = |at: usize| at == 0 || text.as_bytes().get(at.wrapping_sub(1)) == Some(&b'\n');
        if let Some(cut) = keep_from.filter(|&c| c > 0 && c < text.len() && line_start(c)) {
            let kept = self.encode_text(tok, text.get(cut..).unwrap_or_default())?;
            if kept.len() <= budget {
                return Ok((kept, cut));
            }
        }
        let target = (budget * 3 / 4).max(1);
        let ends = byte_ends(tok, &ids);
        let drop = ids.len() - target;
        let mut from = ends.get(drop - 1).copied().unwrap_or(0).min(text.len());
        loop {
            // The first line start at or after `from`.
            let start = if line_start(from) { Some(from) } else { text.get(from..).and_then(|t| t.find('\n')).map(|i| from + i + 1) };
            let Some(start) = start.filter(|&s| s < text.len()) else { break };
            let kept = self.encode_text(tok, text.get(start..).unwrap_or_default())?;
            if kept.len() <= target {
                return Ok((kept, start));
            }
            from = start + 1;
        }
        // One line longer than the budget: cut by tokens.
        let drop = ids.len() - budget;
        let cut = ends.get(drop - 1).copied().unwrap_or(0);
        Ok((ids.get(drop..).unwrap_or_default().to_vec(), cut))
    }

    /// The start of `text` within `budget` tokens, cut after a newline; `(ids, bytes kept)`.
    fn keep_head(&self, tok: &Tokenizer, text: &str, ids: Vec<u32>, budget: usize) -> Result<(Vec<u32>, usize)> {
        if ids.len() <= budget {
            return Ok((ids, text.len()));
        }
        let ends = byte_ends(tok, &ids);
        let mut upto = ends.get(budget).copied().unwrap_or(text.len()).min(text.len());
        while let Some(nl) = text.get(..upto).and_then(|t| t.rfind('\n')) {
            let kept = self.encode_text(tok, text.get(..nl + 1).unwrap_or_default())?;
            if kept.len() <= budget {
                return Ok((kept, nl + 1));
            }
            upto = nl;
        }
        let kept = ids.get(..budget).unwrap_or_default().to_vec();
        Ok((kept, ends.get(budget.saturating_sub(1)).copied().unwrap_or(0)))
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
