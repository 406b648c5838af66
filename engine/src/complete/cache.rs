//! Typed-through reuse: when the user types the first characters of a suggestion that is on
//! screen, the same suggestion, shortened, is the answer; no inference is needed (Copilot's
//! `getCompletionsForUserTyping`, its `LRURadixTrie` walk-back, llama.vim's cache).
//!
//! Entries keep no copy of the text: a notebook or a large file sends megabytes with every
//! request, and 64 copies of prefix and suffix would take hundreds of megabytes of a browser
//! tab. An entry holds each text's length and hash, and the last bytes of the prefix, which
//! tell most entries apart without hashing anything.

use std::collections::VecDeque;
use std::hash::Hasher;

use super::rank::Candidate;

/// Bytes at the end of a prefix that an entry keeps as they are.
const TAIL: usize = 256;

/// A 64-bit hash of `bytes` (SipHash-1-3 with fixed keys: the same in every run; about a
/// millisecond for 5 MB).
pub(crate) fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

/// What an entry knows of the text around its cursor.
#[derive(PartialEq)]
struct Key {
    prefix_len: usize,
    /// The prefix's last bytes (at most [`TAIL`]).
    tail: Box<[u8]>,
    /// Hash of the prefix before `tail`.
    head: u64,
    suffix_len: usize,
    suffix: u64,
}

impl Key {
    fn new(prefix: &str, suffix: &str) -> Self {
        let bytes = prefix.as_bytes();
        let split = bytes.len().saturating_sub(TAIL);
        Key {
            prefix_len: bytes.len(),
            tail: bytes.get(split..).unwrap_or_default().into(),
            head: fingerprint(bytes.get(..split).unwrap_or_default()),
            suffix_len: suffix.len(),
            suffix: fingerprint(suffix.as_bytes()),
        }
    }

    fn head_len(&self) -> usize {
        self.prefix_len - self.tail.len()
    }
}

struct Entry {
    key: Key,
    /// Everything else that shapes the answer (mode, language, n, sampling), as one key.
    options: String,
    candidates: Vec<Candidate>,
}

/// A small LRU keyed by `(prefix, suffix, options)`, searched by prefix walk-back.
pub struct SuggestionCache {
    entries: VecDeque<Entry>,
    capacity: usize,
}

impl SuggestionCache {
    pub fn new(capacity: usize) -> Self {
        SuggestionCache { entries: VecDeque::new(), capacity }
    }

    pub fn insert(&mut self, prefix: &str, suffix: &str, options: &str, candidates: &[Candidate]) {
        if self.capacity == 0 || candidates.is_empty() {
            return;
        }
        let key = Key::new(prefix, suffix);
        self.entries.retain(|e| !(e.key == key && e.options == options));
        if self.entries.len() >= self.capacity {
            self.entries.pop_back();
        }
        self.entries.push_front(Entry { key, options: options.into(), candidates: candidates.to_vec() });
    }

    /// Candidates for a cursor after `prefix`: from the most recent entry whose prefix,
    /// followed by what was typed since, is `prefix`, with the same suffix and options, keeping
    /// the candidates that start with the typed text and go beyond it, minus that text.
    ///
    /// The cheap tests come first (lengths, the prefix's tail, the candidates); only an entry
    /// that passes them has the texts hashed, each hash computed once per lookup.
    pub fn lookup(&mut self, prefix: &str, suffix: &str, options: &str) -> Option<Vec<Candidate>> {
        let bytes = prefix.as_bytes();
        let mut suffix_hash = None;
        let mut head_hashes: Vec<(usize, u64)> = Vec::new();
        let found = self.entries.iter().enumerate().find_map(|(i, e)| {
            let k = &e.key;
            if k.suffix_len != suffix.len() || e.options != options {
                return None;
            }
            let typed = prefix.get(k.prefix_len..)?;
            if bytes.get(k.head_len()..k.prefix_len)? != &k.tail[..] {
                return None;
            }
            let rest: Vec<Candidate> = e
                .candidates
                .iter()
                .filter_map(|c| {
                    let left = c.text.strip_prefix(typed)?;
                    (!left.trim().is_empty()).then(|| Candidate { text: left.to_string(), mean_logprob: c.mean_logprob })
                })
                .collect();
            if rest.is_empty() || *suffix_hash.get_or_insert_with(|| fingerprint(suffix.as_bytes())) != k.suffix {
                return None;
            }
            let head = match head_hashes.iter().find(|(len, _)| *len == k.head_len()) {
                Some(&(_, h)) => h,
                None => {
                    let h = fingerprint(bytes.get(..k.head_len())?);
                    head_hashes.push((k.head_len(), h));
                    h
                }
            };
            (head == k.head).then_some((i, rest))
        });
        let (i, rest) = found?;
        // Most recently used goes to the front.
        if let Some(e) = self.entries.remove(i) {
            self.entries.push_front(e);
        }
        Some(rest)
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
