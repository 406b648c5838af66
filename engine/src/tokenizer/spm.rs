//! SentencePiece-style merging by score, as llama.cpp runs it for GGUF vocabularies with
//! `tokenizer.ggml.model = "llama"` (`llm_tokenizer_spm` in src/llama-vocab.cpp; Gemma, Llama 2).
//!
//! The text (spaces already escaped to `▁` by the caller) starts as one symbol per character;
//! every adjacent pair whose concatenation is a token goes into a queue ordered by that token's
//! score (ties: the leftmost pair first). The best pair is merged, its neighbours' pairs are
//! queued, and so on until no pair is a token. Each final symbol is its token, or, when it is
//! not one (a character outside the vocabulary), its UTF-8 bytes as `<0xNN>` byte tokens.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{Error, Result};

/// A vocabulary's spellings and scores, for merging.
pub struct Spm {
    ids: HashMap<String, u32>,
    scores: Vec<f32>,
    /// The token of each byte value (`<0xNN>`, else the byte itself as a one-byte token).
    bytes: [Option<u32>; 256],
    unk: Option<u32>,
    /// Put a space before the text that opens the input or follows a special token
    /// (`tokenizer.ggml.add_space_prefix`).
    pub add_space_prefix: bool,
}

/// One symbol of the text being merged: bytes `start..start + len`, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of symbols `left` and `right` (adjacent when queued) into a token of
/// `score` spelled by `len` bytes.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// The heap's top is the highest score, then the leftmost pair (llama.cpp's comparator).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}

impl Spm {
    /// `ids`: every spelling's id; `scores[id]`: the merge priority of each token.
    pub fn new(ids: HashMap<String, u32>, scores: Vec<f32>, unk: Option<u32>, add_space_prefix: bool) -> Result<Self> {
        if scores.len() < ids.len() {
            return Err(Error::Model(format!("{} scores for {} tokens", scores.len(), ids.len())));
        }
        let mut bytes = [None; 256];
        for (b, slot) in bytes.iter_mut().enumerate() {
            *slot = ids.get(&format!("<0x{b:02X}>")).or_else(|| ids.get(&(b as u8 as char).to_string()).filter(|_| b < 0x80)).copied();
        }
        Ok(Spm { ids, scores, bytes, unk, add_space_prefix })
    }

    /// Appends the ids of `text` (spaces already `▁`) to `out`.
    pub fn encode(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (start, c) in text.char_indices() {
            let i = symbols.len();
            symbols.push(Symbol { start, len: c.len_utf8(), prev: i.checked_sub(1), next: Some(i + 1) });
        }
        if let Some(last) = symbols.last_mut() {
            last.next = None;
        }
        let mut queue = BinaryHeap::new();
        for i in 1..symbols.len() {
            self.push_bigram(text, &symbols, i - 1, i, &mut queue);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // A pair whose symbols have changed since it was queued is stale.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if let Some(n) = r.next {
                symbols[n].prev = Some(b.left);
            }
            if let Some(p) = l.prev {
                self.push_bigram(text, &symbols, p, b.left, &mut queue);
            }
            if let Some(n) = r.next {
                self.push_bigram(text, &symbols, b.left, n, &mut queue);
            }
        }
        let mut at = if symbols.is_empty() { None } else { Some(0) };
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        let id = self.bytes[b as usize].or(self.unk).ok_or_else(|| Error::Tokenizer(format!("no token for byte 0x{b:02X}")))?;
                        out.push(id);
                    }
                }
            }
            at = s.next;
        }
        Ok(())
    }

    fn push_bigram(&self, text: &str, symbols: &[Symbol], left: usize, right: usize, queue: &mut BinaryHeap<Bigram>) {
        let (l, r) = (symbols[left], symbols[right]);
        let len = l.len + r.len;
        if let Some(&id) = text.get(l.start..l.start + len).and_then(|s| self.ids.get(s)) {
            if let Some(&score) = self.scores.get(id as usize) {
                queue.push(Bigram { score, left, right, len });
            }
        }
    }
}

impl Spm {
    /// The id of the token spelled exactly `piece`.
    pub fn id(&self, piece: &str) -> Option<u32> {
        self.ids.get(piece).copied()
    }
}
