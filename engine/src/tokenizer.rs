//! Text ⇄ token ids, giving the same ids as llama.cpp.
//!
//! The merging is the `tokenizers` crate's byte-level BPE; what makes the ids match llama.cpp is
//! everything around it, reproduced here from llama.cpp's `src/llama-vocab.cpp`:
//! - the pre-tokenizer regexes llama.cpp picks for each `tokenizer.ggml.pre` name, applied one
//!   after the other, each splitting the pieces of the previous one and keeping both the
//!   matches and the text between them (a `Split` with `Isolated` behaviour per regex);
//! - special tokens are cut out of the text before any regex runs, longest spelling first
//!   (llama.cpp's `tokenizer_st_partition`): user-defined tokens always, control tokens only
//!   when asked ([`Tokenizer::encode_with_special`]);
//! - BOS/EOS are added as the metadata (or llama.cpp's per-pre-tokenizer default) says;
//! - end-of-generation tokens are found by id and by spelling, as llama.cpp does.
//!
//! Decoding does not go through `tokenizers`: every token's bytes are precomputed once, so
//! [`Tokenizer::decode`] and [`StreamDecoder`] are a table lookup plus UTF-8 assembly.
//!
//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`: Gemma) merge by score in
//! [`spm`] instead of `tokenizers`' BPE; everything around the merging is shared.

mod spm;

use std::collections::HashMap;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::models::ModelWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

/// What a token is, from `tokenizer.ggml.token_type` (llama.cpp's `LLAMA_TOKEN_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Ordinary text, stored in byte-level form (`Ġ` for a space).
    Normal,
    Unknown,
    /// Chat/FIM/end-of-text markers: never produced from plain text.
    Control,
    /// Added by the model's authors; always matched in text, like llama.cpp does.
    UserDefined,
    Unused,
    /// A raw byte spelled `<0xNN>`.
    Byte,
    Undefined,
}

impl TokenKind {
    fn from_gguf(t: i64) -> TokenKind {
        match t {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            5 => TokenKind::Unused,
            6 => TokenKind::Byte,
            _ => TokenKind::Undefined,
        }
    }
}

// llama.cpp's regexes (src/llama-vocab.cpp, `llm_tokenizer_bpe`), verbatim.
const RE_GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const RE_DIGIT: &str = r"\p{N}";
const RE_LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const RE_DEEPSEEK_CODER: [&str; 5] = [
    r"[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    "[\u{4E00}-\u{9FA5}\u{0800}-\u{4E00}\u{AC00}-\u{D7FF}]+",
    r"\p{N}",
];

/// How llama.cpp pre-tokenizes for one `tokenizer.ggml.pre` name.
struct PreTokenizerSpec {
    regexes: &'static [&'static str],
    /// A word that is itself a token skips merging (llama.cpp's `ignore_merges`).
    ignore_merges: bool,
    /// llama.cpp's default for `add_bos` when the metadata has no `add_bos_token`.
    add_bos: bool,
}

/// The pre-tokenizer names nib knows, grouped as llama.cpp groups them (same regexes, same
/// flags). Anything else is refused rather than guessed: a wrong split gives plausible but
/// different ids, which would silently degrade the model.
fn pre_tokenizer_spec(name: &str) -> Option<PreTokenizerSpec> {
    const DIGITS_GPT2: &[&str] = &[RE_DIGIT, RE_GPT2];
    const GPT2: &[&str] = &[RE_GPT2];
    const LLAMA3: &[&str] = &[RE_LLAMA3];
    const QWEN2: &[&str] = &[RE_QWEN2];
    let spec = |regexes, ignore_merges, add_bos| PreTokenizerSpec {
        regexes,
        ignore_merges,
        add_bos,
    };
    Some(match name {
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" | "exaone" | "minerva-7b" => {
            spec(DIGITS_GPT2, false, false)
        }
        // llama.cpp spells it "gpt-2"; "gpt2" is accepted as the same thing.
        "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "mellum" => spec(GPT2, false, false),
        "llama-bpe" | "llama3" | "llama-v3" | "falcon3" => spec(LLAMA3, true, true),
        "dbrx" | "smaug-bpe" => spec(LLAMA3, false, false),
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" => spec(QWEN2, false, false),
        "deepseek-coder" => spec(&RE_DEEPSEEK_CODER, false, false),
        _ => return None,
    })
}

/// Spellings llama.cpp treats as end of generation whatever the metadata says.
const EOG_SPELLINGS: [&str; 12] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
];
/// FIM pad/repo/file-separator spellings; llama.cpp also stops on these.
const FIM_EOG_SPELLINGS: [&str; 10] = [
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// FIM prefix/suffix/middle spellings: llama.cpp makes these control tokens (they do not end
/// generation).
const FIM_SPELLINGS: [&str; 21] = [
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<\u{FF5C}fim\u{2581}begin\u{FF5C}>",
    "<PRE>",
    "\u{2581}<PRE>",
    "<|code_prefix|>",
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<\u{FF5C}fim\u{2581}hole\u{FF5C}>",
    "<SUF>",
    "\u{2581}<SUF>",
    "<|code_suffix|>",
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<\u{FF5C}fim\u{2581}end\u{FF5C}>",
    "<MID>",
    "\u{2581}<MID>",
    "<|code_middle|>",
];

/// A token that is cut out of the text before pre-tokenization.
#[derive(Debug, Clone)]
struct SpecialToken {
    id: u32,
    text: String,
    /// Control and unknown tokens are only matched when special parsing is on.
    needs_parse_special: bool,
}

/// What turns text without special tokens into ids (one per tokenizer: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Encoder {
    /// Byte-level BPE: `tokenizers`' model + llama.cpp's pre-tokenizer.
    Bpe(tokenizers::Tokenizer),
    /// SentencePiece merging by score, `▁` for spaces, byte fallback.
    Spm(spm::Spm),
}

/// A tokenizer that gives llama.cpp's ids (byte-level BPE or SentencePiece). Build it once per
/// model; encoding and decoding borrow it immutably, so one instance serves every request (it
/// is `Send + Sync`).
pub struct Tokenizer {
    encoder: Encoder,
    kinds: Vec<TokenKind>,
    /// Every token's bytes back to back; token `i` is `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    /// Longest spelling first, then lowest id: llama.cpp's matching order.
    specials: Vec<SpecialToken>,
    special_ids: HashMap<String, u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    eog: Vec<u32>,
}

/// What both constructors hand to [`Tokenizer::assemble`].
struct Parts {
    encoder: Encoder,
    /// Spelling and kind of every id in `0..n`; a gap in the ids is an empty `Unused` token.
    tokens: Vec<(String, TokenKind)>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// Register the special tokens with `tokenizers` (GGUF); a tokenizer.json has its own.
    register_added: bool,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer from `tokenizer.ggml.*` metadata: `gpt2` (byte-level BPE) or
    /// `llama` (SentencePiece).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model = meta_str(g, "tokenizer.ggml.model")?;
        let sentencepiece = match model {
            "gpt2" => false,
            "llama" => true,
            _ => {
                return Err(Error::Unsupported(format!(
                    "tokenizer model '{model}' (nib reads tokenizer.ggml.model \"gpt2\" and \"llama\")"
                )))
            }
        };
        let pre = match g.get("tokenizer.ggml.pre") {
            Some(v) => v
                .as_str()
                .ok_or_else(|| Error::Model("tokenizer.ggml.pre is not a string".into()))?,
            None => "default",
        };
        // SentencePiece has no pre-tokenizer: only BPE looks the name up.
        let spec = match sentencepiece {
            true => None,
            false => Some(pre_tokenizer_spec(pre).ok_or_else(|| {
                Error::Unsupported(format!("pre-tokenizer '{pre}' (tokenizer.ggml.pre)"))
            })?),
        };

        let token_values = meta_array(g, "tokenizer.ggml.tokens")?;
        let n = token_values.len();
        if n == 0 || u32::try_from(n).is_err() {
            return Err(Error::Model(format!(
                "tokenizer.ggml.tokens has {n} entries"
            )));
        }
        let types = match g.get("tokenizer.ggml.token_type") {
            Some(v) => {
                let a = v.as_array().ok_or_else(|| {
                    Error::Model("tokenizer.ggml.token_type is not an array".into())
                })?;
                if a.len() != n {
                    return Err(Error::Model(format!(
                        "tokenizer.ggml.token_type has {} entries for {n} tokens",
                        a.len()
                    )));
                }
                Some(a)
            }
            None => None,
        };

        let mut tokens = Vec::with_capacity(n);
        let mut vocab = Vocab::with_capacity(n);
        for (i, v) in token_values.iter().enumerate() {
            let text = v.as_str().ok_or_else(|| {
                Error::Model(format!("tokenizer.ggml.tokens[{i}] is not a string"))
            })?;
            // llama.cpp renames empty tokens so that every spelling stays unique and non-empty.
            let text = if text.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                text.to_owned()
            };
            let kind = match types.and_then(|t| t.get(i)) {
                Some(t) => TokenKind::from_gguf(int_value(t).ok_or_else(|| {
                    Error::Model(format!("tokenizer.ggml.token_type[{i}] is not an integer"))
                })?),
                None => TokenKind::Normal,
            };
            let id = i as u32; // n fits in u32, checked above
            if vocab.insert(text.clone(), id).is_some() {
                return Err(Error::Model(format!(
                    "tokenizer.ggml.tokens: '{text}' appears twice"
                )));
            }
            tokens.push((text, kind));
        }

        let bool_key = |key: &str, default: bool| -> Result<bool> {
            match g.get(key) {
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| Error::Model(format!("{key} is not a bool"))),
                None => Ok(default),
            }
        };
        let (encoder, default_bos, default_eos, default_add_bos) = match spec {
            // llama.cpp's SentencePiece defaults: BOS 1, EOS 2, BOS added.
            None => (Encoder::Spm(read_spm(g, vocab, n, &bool_key)?), 1, 2, true),
            Some(spec) => (Encoder::Bpe(bpe_encoder(g, vocab, &spec)?), 11, 11, spec.add_bos),
        };

        // Metadata ids past the vocabulary are ignored, as llama.cpp does (with a warning).
        let id_key = |key: &str, default: Option<u32>| -> Result<Option<u32>> {
            let id = match g.get(key) {
                Some(v) => Some(
                    v.as_u32()
                        .ok_or_else(|| Error::Model(format!("{key} is not a token id")))?,
                ),
                None => default,
            };
            Ok(id.filter(|&id| (id as usize) < n))
        };
        // 11 is llama.cpp's default BOS/EOS for gpt2 vocabularies without the keys.
        let parts = Parts {
            encoder,
            tokens,
            bos: id_key("tokenizer.ggml.bos_token_id", Some(default_bos))?,
            eos: id_key("tokenizer.ggml.eos_token_id", Some(default_eos))?,
            eot: id_key("tokenizer.ggml.eot_token_id", None)?,
            eom: id_key("tokenizer.ggml.eom_token_id", None)?,
            add_bos: bool_key("tokenizer.ggml.add_bos_token", default_add_bos)?,
            add_eos: bool_key("tokenizer.ggml.add_eos_token", false)?,
            register_added: true,
        };
        Self::assemble(parts)
    }
}

/// The SentencePiece encoder: `tokenizer.ggml.scores` (one f32 per token), the unknown token,
/// `add_space_prefix` (llama.cpp's default: on).
fn read_spm(g: &Gguf, vocab: Vocab, n: usize, bool_key: &dyn Fn(&str, bool) -> Result<bool>) -> Result<spm::Spm> {
    let scores = meta_array(g, "tokenizer.ggml.scores")?;
    if scores.len() != n {
        return Err(Error::Model(format!("tokenizer.ggml.scores has {} entries for {n} tokens", scores.len())));
    }
    let scores = scores
        .iter()
        .enumerate()
        .map(|(i, v)| v.as_f32().ok_or_else(|| Error::Model(format!("tokenizer.ggml.scores[{i}] is not a number"))))
        .collect::<Result<Vec<f32>>>()?;
    let unk = match g.get("tokenizer.ggml.unknown_token_id") {
        Some(v) => Some(v.as_u32().ok_or_else(|| Error::Model("tokenizer.ggml.unknown_token_id is not a token id".into()))?),
        None => None,
    };
    spm::Spm::new(vocab.into_iter().collect(), scores, unk.filter(|&id| (id as usize) < n), bool_key("tokenizer.ggml.add_space_prefix", true)?)
}

/// The byte-level BPE encoder: merges, and llama.cpp's pre-tokenizer regexes for `spec`.
fn bpe_encoder(g: &Gguf, vocab: Vocab, spec: &PreTokenizerSpec) -> Result<tokenizers::Tokenizer> {
    {
        let merges = read_merges(g, &vocab)?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(spec.ignore_merges)
            .build()
            .map_err(tok_err)?;

        let mut splits = Vec::with_capacity(spec.regexes.len() + 1);
        for re in spec.regexes {
            let split = Split::new(
                SplitPattern::Regex((*re).to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(tok_err)?;
            splits.push(PreTokenizerWrapper::Split(split));
        }
        // The regexes above already split the text; ByteLevel only maps bytes to its alphabet.
        splits.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, false,
        )));

        let mut hf = tokenizers::Tokenizer::new(bpe);
        hf.with_pre_tokenizer(Some(Sequence::new(splits)));
        hf.with_decoder(Some(ByteLevel::new(false, false, false)));
        Ok(hf)
    }
}

impl Tokenizer {

    /// Loads a Hugging Face `tokenizer.json` whose model is byte-level BPE. Added tokens marked
    /// special become control tokens, the others user-defined; a post-processor that puts a
    /// token before the text makes that token BOS with `add_bos`. EOS is the first present of
    /// the usual end-of-text spellings (tokenizer.json does not name it).
    pub fn from_tokenizer_json(json: &[u8]) -> Result<Self> {
        let hf = tokenizers::Tokenizer::from_bytes(json).map_err(tok_err)?;
        if !matches!(hf.get_model(), ModelWrapper::BPE(_)) {
            return Err(Error::Unsupported(
                "tokenizer.json model other than BPE".into(),
            ));
        }
        if !matches!(hf.get_decoder(), Some(DecoderWrapper::ByteLevel(_))) {
            return Err(Error::Unsupported(
                "tokenizer.json without a ByteLevel decoder".into(),
            ));
        }
        let added = hf.get_added_tokens_decoder();
        let vocab = hf.get_vocab(true);
        let n = vocab
            .values()
            .map(|&id| id as usize + 1)
            .max()
            .ok_or_else(|| Error::Tokenizer("tokenizer.json has an empty vocabulary".into()))?;
        // A sparse vocabulary with a huge id would make the tables huge; refuse it.
        if n > vocab.len().saturating_mul(4).saturating_add(1024) {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json ids reach {n} for {} tokens",
                vocab.len()
            )));
        }
        let mut tokens = vec![(String::new(), TokenKind::Unused); n];
        for (text, id) in vocab {
            let kind = match added.get(&id) {
                Some(t) if t.special => TokenKind::Control,
                Some(_) => TokenKind::UserDefined,
                None => TokenKind::Normal,
            };
            if let Some(slot) = tokens.get_mut(id as usize) {
                *slot = (text, kind);
            }
        }
        // The post-processor adds BOS/EOS: ask it what it puts around an empty input.
        let with = hf.encode_fast("", true).map_err(tok_err)?;
        let special_ids = with.get_ids();
        let bos = special_ids.first().copied();
        let add_eos = special_ids.len() > 1;
        let eos = if add_eos {
            special_ids.last().copied()
        } else {
            EOG_SPELLINGS
                .iter()
                .chain(["</s>"].iter())
                .find_map(|s| hf.token_to_id(s))
        };
        let parts = Parts {
            encoder: Encoder::Bpe(hf),
            tokens,
            bos,
            eos,
            eot: None,
            eom: None,
            add_bos: bos.is_some(),
            add_eos,
            register_added: false,
        };
        Self::assemble(parts)
    }

    /// Shared tail of both constructors: byte tables, special-token order, EOG set.
    fn assemble(p: Parts) -> Result<Self> {
        let Parts {
            mut encoder,
            mut tokens,
            bos,
            eos,
            eot,
            eom,
            add_bos,
            add_eos,
            register_added,
        } = p;

        // llama.cpp recognises end-of-generation and FIM tokens by spelling and makes them
        // control tokens whatever their type says.
        let mut eog = Vec::new();
        for (id, (text, kind)) in tokens.iter_mut().enumerate() {
            let text = text.as_str();
            let ends = EOG_SPELLINGS.contains(&text) || FIM_EOG_SPELLINGS.contains(&text);
            if ends {
                eog.push(id as u32);
            }
            if ends || FIM_SPELLINGS.contains(&text) {
                *kind = TokenKind::Control;
            }
        }
        for id in [eos, eot, eom].into_iter().flatten() {
            if !eog.contains(&id) {
                eog.push(id);
            }
        }
        eog.sort_unstable();
        // llama.cpp takes only the first FIM repo/pad/sep spelling it meets; keeping all of the
        // present ones is a superset that stops at least as early.

        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(tokens.len() + 1);
        offsets.push(0);
        for (text, kind) in &tokens {
            match kind {
                TokenKind::Normal if matches!(encoder, Encoder::Spm(_)) => bytes.extend_from_slice(text.replace('▁', " ").as_bytes()),
                TokenKind::Normal => byte_level_decode(text, &mut bytes),
                TokenKind::Byte => match parse_byte_token(text) {
                    Some(b) => bytes.push(b),
                    None => byte_level_decode(text, &mut bytes),
                },
                TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown => {
                    bytes.extend_from_slice(text.as_bytes())
                }
                TokenKind::Unused | TokenKind::Undefined => {}
            }
            offsets.push(bytes.len());
        }

        let mut specials: Vec<SpecialToken> = tokens
            .iter()
            .enumerate()
            .filter(|(_, (text, kind))| {
                !text.is_empty()
                    && matches!(
                        kind,
                        TokenKind::Control | TokenKind::UserDefined | TokenKind::Unknown
                    )
            })
            .map(|(id, (text, kind))| SpecialToken {
                id: id as u32,
                text: text.clone(),
                needs_parse_special: *kind != TokenKind::UserDefined,
            })
            .collect();
        specials.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
        let special_ids = specials.iter().map(|s| (s.text.clone(), s.id)).collect();

        // Register the special tokens with `tokenizers` too, so that an exported tokenizer.json
        // carries them. Partitioning happens here before `tokenizers` sees the text, so its own
        // matching never fires; special ones are switched off in it for good measure.
        if let Encoder::Bpe(hf) = &mut encoder {
            if register_added {
                let added: Vec<AddedToken> = specials
                    .iter()
                    .map(|s| AddedToken::from(s.text.clone(), s.needs_parse_special).normalized(false))
                    .collect();
                hf.add_tokens(added).map_err(tok_err)?;
            }
            hf.set_encode_special_tokens(true);
        }

        let kinds = tokens.into_iter().map(|(_, k)| k).collect();
        Ok(Tokenizer {
            encoder,
            kinds,
            bytes,
            offsets,
            specials,
            special_ids,
            bos,
            eos,
            add_bos,
            add_eos,
            eog,
        })
    }

    /// Token ids for `text`, with BOS/EOS as the model's metadata asks. Spellings of control
    /// tokens in the text are tokenized as plain text (user-defined tokens are still matched,
    /// as llama.cpp does).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_impl(text, false)
    }

    /// As [`Tokenizer::encode`], but spellings of control tokens (`<|im_start|>`, FIM markers)
    /// become their ids: for prompts nib builds itself, never for user text.
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_impl(text, true)
    }

    fn encode_impl(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if self.add_bos {
            ids.extend(self.bos);
        }
        // SentencePiece: a space before text that opens the input or follows a special token
        // (when the vocabulary asks for it), every space then spelled `▁`.
        let mut after_special = true;
        for fragment in self.partition(text, parse_special) {
            match (fragment, &self.encoder) {
                (Fragment::Token(id), _) => {
                    ids.push(id);
                    after_special = true;
                }
                (Fragment::Text(t), Encoder::Bpe(hf)) => {
                    let enc = hf.encode_fast(t, false).map_err(tok_err)?;
                    ids.extend_from_slice(enc.get_ids());
                }
                (Fragment::Text(t), Encoder::Spm(spm)) => {
                    let space = if spm.add_space_prefix && after_special { " " } else { "" };
                    spm.encode(&format!("{space}{t}").replace(' ', "▁"), &mut ids)?;
                    after_special = false;
                }
            }
        }
        if self.add_eos {
            ids.extend(self.eos);
        }
        Ok(ids)
    }

    /// Cuts special-token spellings out of `text` (llama.cpp's `tokenizer_st_partition`): for
    /// each special token, longest first, every text fragment is split at every occurrence.
    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut fragments = Vec::new();
        if text.is_empty() {
            return fragments;
        }
        fragments.push(Fragment::Text(text));
        for special in &self.specials {
            if special.needs_parse_special && !parse_special {
                continue;
            }
            if !fragments
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(special.text.as_str())))
            {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for f in fragments {
                let Fragment::Text(t) = f else {
                    next.push(f);
                    continue;
                };
                let mut rest = t;
                while let Some((before, after)) = rest.split_once(special.text.as_str()) {
                    if !before.is_empty() {
                        next.push(Fragment::Text(before));
                    }
                    next.push(Fragment::Token(special.id));
                    rest = after;
                }
                if !rest.is_empty() {
                    next.push(Fragment::Text(rest));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// The text for `ids`. Control tokens are written as their spelling; invalid UTF-8 (a
    /// sequence cut at the end) becomes U+FFFD. Errors on an id past the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut out = Vec::new();
        for &id in ids {
            out.extend_from_slice(self.piece(id)?);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn piece(&self, id: u32) -> Result<&[u8]> {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => self
                .bytes
                .get(a..b)
                .ok_or_else(|| Error::Tokenizer("token table".into())),
            _ => Err(Error::InvalidArgument(format!(
                "token id {id} is past the vocabulary ({} tokens)",
                self.kinds.len()
            ))),
        }
    }

    /// The raw bytes token `id` stands for (control tokens: their spelling).
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        self.piece(id).ok().map(<[u8]>::to_vec)
    }

    /// The id of the token spelled exactly `text`: a special token's spelling (`<|im_end|>`),
    /// or else the plain-text token whose bytes are `text` (`" the"`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        if let Some(&id) = self.special_ids.get(text) {
            return Some(id);
        }
        let id = match &self.encoder {
            Encoder::Bpe(hf) => {
                let mut byte_level = String::with_capacity(text.len() * 2);
                byte_level_encode(text.as_bytes(), &mut byte_level);
                hf.token_to_id(&byte_level)
            }
            Encoder::Spm(spm) => spm.id(&text.replace(' ', "▁")),
        };
        id.filter(|&id| self.kind(id) == Some(TokenKind::Normal))
    }

    /// Number of token ids (embedding rows the model needs).
    pub fn vocab_size(&self) -> usize {
        self.kinds.len()
    }

    pub fn kind(&self, id: u32) -> Option<TokenKind> {
        self.kinds.get(id as usize).copied()
    }

    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether [`Tokenizer::encode`] puts BOS first.
    pub fn add_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Control or user-defined token: never part of what a completion shows.
    pub fn is_special(&self, id: u32) -> bool {
        matches!(
            self.kind(id),
            Some(TokenKind::Control | TokenKind::UserDefined)
        )
    }

    /// Tokens that end generation, sorted: EOS, EOT, EOM and the spellings llama.cpp stops on
    /// (`<|im_end|>`, `<|endoftext|>`, FIM repo/file-separator markers, ...), as present.
    pub fn end_of_generation(&self) -> Vec<u32> {
        self.eog.clone()
    }

    /// A decoder for ids arriving one at a time (generation).
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            pending: Vec::new(),
        }
    }

    /// This tokenizer as a Hugging Face `tokenizer.json` (pre-tokenizer, BPE, special tokens
    /// and, when BOS is added, a post-processor that adds it), for other tools and for tests.
    pub fn to_tokenizer_json(&self) -> Result<String> {
        let Encoder::Bpe(base) = &self.encoder else {
            return Err(Error::Unsupported("tokenizer.json export of a SentencePiece vocabulary".into()));
        };
        let mut hf = base.clone();
        if let (true, Some(bos)) = (self.add_bos, self.bos) {
            let spelling = base
                .id_to_token(bos)
                .ok_or_else(|| Error::Tokenizer(format!("BOS id {bos} has no spelling")))?;
            let template = TemplateProcessing::builder()
                .try_single(vec![spelling.as_str(), "$A"])
                .map_err(tok_err)?
                .special_tokens(vec![(spelling.as_str(), bos)])
                .build()
                .map_err(tok_err)?;
            hf.with_post_processor(Some(template));
        }
        hf.to_string(false).map_err(tok_err)
    }
}

/// A piece of input text: still text, or already a special token.
enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// Turns ids into text as they are generated. A token may end inside a UTF-8 sequence (emoji
/// and CJK are often split over several byte tokens); such bytes wait until the sequence is
/// complete, so every returned piece is whole characters and the pieces concatenate to
/// [`Tokenizer::decode`] of all the ids.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    /// Bytes of an unfinished UTF-8 sequence (at most 3).
    pending: Vec<u8>,
}

impl StreamDecoder<'_> {
    /// The text that `id` completes: "" while a UTF-8 sequence is still open.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.pending.extend_from_slice(self.tokenizer.piece(id)?);
        Ok(take_complete_utf8(&mut self.pending))
    }

    /// Whatever is left: an unfinished sequence becomes U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// Takes the whole UTF-8 characters from the front of `pending`: bytes that can never become
/// valid turn into U+FFFD (as [`Tokenizer::decode`] does); the start of an unfinished sequence
/// stays for the next bytes.
pub fn take_complete_utf8(pending: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut rest: &[u8] = pending;
    loop {
        match std::str::from_utf8(rest) {
            Ok(s) => {
                out.push_str(s);
                rest = &[];
                break;
            }
            Err(e) => {
                let (valid, tail) = rest.split_at(e.valid_up_to());
                out.push_str(&String::from_utf8_lossy(valid));
                match e.error_len() {
                    // The tail is the start of a sequence: wait for the next bytes.
                    None => {
                        rest = tail;
                        break;
                    }
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = tail.get(bad..).unwrap_or_default();
                    }
                }
            }
        }
    }
    let consumed = pending.len() - rest.len();
    pending.drain(..consumed);
    out
}

fn meta_str<'g>(g: &'g Gguf, key: &str) -> Result<&'g str> {
    g.get(key)
        .ok_or_else(|| Error::Model(format!("missing {key}")))?
        .as_str()
        .ok_or_else(|| Error::Model(format!("{key} is not a string")))
}

fn meta_array<'g>(g: &'g Gguf, key: &str) -> Result<&'g [Value]> {
    g.get(key)
        .ok_or_else(|| Error::Model(format!("missing {key}")))?
        .as_array()
        .ok_or_else(|| Error::Model(format!("{key} is not an array")))
}

/// Any integer value, signed or not (`token_type` is i32 in the files llama.cpp writes).
fn int_value(v: &Value) -> Option<i64> {
    match *v {
        Value::I8(x) => Some(x.into()),
        Value::I16(x) => Some(x.into()),
        Value::I32(x) => Some(x.into()),
        Value::I64(x) => Some(x),
        _ => v.as_u64().and_then(|x| i64::try_from(x).ok()),
    }
}

/// `tokenizer.ggml.merges` ("left right", rank = position) in the form `tokenizers` wants.
/// Like llama.cpp, the first occurrence of a pair sets its rank; merges that cannot apply
/// (no space, or a part or the result missing from the vocabulary) are dropped, where
/// `tokenizers` would refuse the whole vocabulary.
fn read_merges(g: &Gguf, vocab: &Vocab) -> Result<Merges> {
    let values = meta_array(g, "tokenizer.ggml.merges")?;
    let mut merges = Vec::with_capacity(values.len());
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    let mut joined = String::new();
    for (i, v) in values.iter().enumerate() {
        let line = v
            .as_str()
            .ok_or_else(|| Error::Model(format!("tokenizer.ggml.merges[{i}] is not a string")))?;
        // llama.cpp searches for the separating space from byte 1 on.
        let Some(pos) = line.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
            continue;
        };
        let (Some(left), Some(right)) = (line.get(..pos), line.get(pos + 1..)) else {
            continue;
        };
        let (Some(&a), Some(&b)) = (vocab.get(left), vocab.get(right)) else {
            continue;
        };
        joined.clear();
        joined.push_str(left);
        joined.push_str(right);
        if !vocab.contains_key(joined.as_str()) || !seen.insert((a, b)) {
            continue;
        }
        merges.push((left.to_owned(), right.to_owned()));
    }
    Ok(merges)
}

/// GPT-2's byte ↔ char table: printable bytes stand for themselves, the other 68 bytes take
/// the code points 256.. in byte order, so every token is printable text. Entry `b` is the code
/// point for byte `b`.
const BYTE_TO_CHAR: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut next = 256;
    let mut b = 0;
    while b < 256 {
        let printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        table[b] = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        b += 1;
    }
    table
};

/// The inverse of [`BYTE_TO_CHAR`] over code points 0..324; -1 where no byte maps.
const CHAR_TO_BYTE: [i16; 324] = {
    let mut table = [-1i16; 324];
    let mut b = 0;
    while b < 256 {
        table[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    table
};

fn byte_to_char(b: u8) -> char {
    BYTE_TO_CHAR
        .get(usize::from(b))
        .and_then(|&cp| char::from_u32(cp))
        .unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn char_to_byte(c: char) -> Option<u8> {
    let i = usize::try_from(u32::from(c)).ok()?;
    CHAR_TO_BYTE.get(i).and_then(|&b| u8::try_from(b).ok())
}

/// The bytes a byte-level token stands for. A char outside the alphabet (not written by any
/// converter) keeps its UTF-8 bytes, so nothing is lost silently.
fn byte_level_decode(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

fn byte_level_encode(bytes: &[u8], out: &mut String) {
    out.extend(bytes.iter().map(|&b| byte_to_char(b)));
}

/// `<0xNN>` → NN.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        let mut seen = std::collections::HashSet::new();
        for b in 0u8..=255 {
            let c = byte_to_char(b);
            assert!(seen.insert(c), "byte {b} maps to a char already used");
            assert_eq!(
                char_to_byte(c),
                Some(b),
                "byte {b} -> {c:?} does not map back"
            );
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(char_to_byte('a'), Some(b'a'));
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn tokenizer_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Tokenizer>();
    }

    #[test]
    fn byte_tokens_parse() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xff>"), Some(255));
        assert_eq!(parse_byte_token("<0x1>"), None);
        assert_eq!(parse_byte_token("0x0A"), None);
    }

    #[test]
    fn known_pre_tokenizers_compile() {
        for name in [
            "smollm",
            "gpt2",
            "gpt-2",
            "llama-bpe",
            "llama3",
            "qwen2",
            "starcoder",
            "deepseek-coder",
        ] {
            let spec = pre_tokenizer_spec(name).unwrap_or_else(|| panic!("{name} unknown"));
            for re in spec.regexes {
                Split::new(
                    SplitPattern::Regex((*re).to_owned()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .unwrap_or_else(|e| panic!("{name}: {re}: {e}"));
            }
        }
        assert!(pre_tokenizer_spec("falcon").is_none());
        assert!(pre_tokenizer_spec("").is_none());
    }
}
