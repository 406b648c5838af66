//! Typed-through reuse: when the user types the first characters of a suggestion that is on
//! screen, the same suggestion, shortened, is the answer; no inference is needed (Copilot's
//! `getCompletionsForUserTyping`, its `LRURadixTrie` walk-back, llama.vim's cache).

use std::collections::VecDeque;

use super::rank::Candidate;

struct Entry {
    prefix: String,
    suffix: String,
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
        self.entries.retain(|e| !(e.prefix == prefix && e.suffix == suffix && e.options == options));
        if self.entries.len() >= self.capacity {
            self.entries.pop_back();
        }
        self.entries.push_front(Entry {
            prefix: prefix.into(),
            suffix: suffix.into(),
            options: options.into(),
            candidates: candidates.to_vec(),
        });
    }

    /// Candidates for a cursor after `prefix`: from the most recent entry whose prefix,
    /// followed by what was typed since, is `prefix`, with the same suffix and options, keeping
    /// the candidates that start with the typed text and go beyond it, minus that text.
    pub fn lookup(&mut self, prefix: &str, suffix: &str, options: &str) -> Option<Vec<Candidate>> {
        let found = self.entries.iter().enumerate().find_map(|(i, e)| {
            if e.suffix != suffix || e.options != options {
                return None;
            }
            let typed = prefix.strip_prefix(e.prefix.as_str())?;
            let rest: Vec<Candidate> = e
                .candidates
                .iter()
                .filter_map(|c| {
                    let left = c.text.strip_prefix(typed)?;
                    (!left.trim().is_empty()).then(|| Candidate { text: left.to_string(), mean_logprob: c.mean_logprob })
                })
                .collect();
            (!rest.is_empty()).then_some((i, rest))
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
