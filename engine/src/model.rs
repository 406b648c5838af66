//! A loaded model: architecture + weights on a backend + tokenizer, and the sessions that hold a
//! KV cache between calls.

use std::sync::Arc;

use crate::arch::llama::Config;
use crate::arch::Arch;
use crate::backend::cpu::{CpuBackend, Precision};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::gguf::{Gguf, ModelBytes};
use crate::sample::{Sampled, Sampler};
use crate::tokenizer::Tokenizer;

/// Tokens evaluated per forward pass during prefill: bounds activation memory on long prompts.
pub const PREFILL_CHUNK: usize = 512;

pub struct Model<B: Backend> {
    pub backend: B,
    pub arch: Arch<B>,
    pub tokenizer: Tokenizer,
}

impl Model<CpuBackend> {
    /// Loads a GGUF model that is already in memory (the wasm path: one buffer, read in place).
    pub fn load_cpu(bytes: ModelBytes, threads: usize) -> Result<Self> {
        let bytes = Arc::new(bytes);
        let gguf = Gguf::parse(&bytes)?;
        let backend = CpuBackend::new(Arc::clone(&bytes), threads);
        Model::new(backend, &gguf)
    }

    /// Loads a GGUF file: memory-mapped natively, read into one buffer in wasm.
    pub fn open_cpu(path: &std::path::Path, threads: usize) -> Result<Self> {
        Model::load_cpu(ModelBytes::open(path)?, threads)
    }

    /// [`Model::open_cpu`] with the CPU's arithmetic chosen: [`Precision::Reference`] is the
    /// reference the GPU backend is tested against (slow; not for users).
    pub fn open_cpu_with(path: &std::path::Path, threads: usize, precision: Precision) -> Result<Self> {
        let bytes = Arc::new(ModelBytes::open(path)?);
        let gguf = Gguf::parse(&bytes)?;
        Model::new(CpuBackend::with_precision(Arc::clone(&bytes), threads, precision), &gguf)
    }
}

/// The KV cache of one conversation with the model and the tokens it holds.
pub struct Session<B: Backend> {
    cache: B::Cache,
    tokens: Vec<u32>,
    max_ctx: usize,
}

impl<B: Backend> Session<B> {
    /// The tokens whose keys and values the cache holds, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn max_ctx(&self) -> usize {
        self.max_ctx
    }
}

impl<B: Backend> Model<B> {
    pub fn new(backend: B, gguf: &Gguf) -> Result<Self> {
        let tokenizer = Tokenizer::from_gguf(gguf)?;
        let arch = crate::arch::load(&backend, gguf)?;
        if tokenizer.vocab_size() > arch.config().vocab {
            return Err(Error::Model(format!(
                "tokenizer has {} tokens but the output has {} rows",
                tokenizer.vocab_size(),
                arch.config().vocab
            )));
        }
        Ok(Model { backend, arch, tokenizer })
    }

    pub fn config(&self) -> &Config {
        self.arch.config()
    }

    /// A session with room for `max_ctx` tokens (at most the model's trained context).
    pub fn session(&self, max_ctx: usize) -> Result<Session<B>> {
        let max_ctx = max_ctx.clamp(1, self.config().ctx_len);
        let cache = self.backend.new_cache(self.config().n_layers, max_ctx, self.config().attn)?;
        Ok(Session { cache, tokens: Vec::new(), max_ctx })
    }

    /// Brings the session to hold exactly `tokens` and returns the next-token logits `(vocab)`.
    /// Keys and values of the longest common prefix with what the session already holds are
    /// reused; only the rest is evaluated (at least the last token, so logits exist).
    pub fn eval(&self, s: &mut Session<B>, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self.eval_tensor(s, tokens)?;
        self.backend.to_vec(&logits)
    }

    /// [`Model::eval`] with an asynchronous readback (the browser's GPU path).
    pub async fn eval_async(&self, s: &mut Session<B>, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self.eval_tensor(s, tokens)?;
        self.backend.to_vec_async(&logits).await
    }

    /// [`Model::eval`] without reading the logits back: they stay on the backend as `(1, vocab)`
    /// (the browser's GPU path reads them asynchronously, or only their argmax).
    pub fn eval_tensor(&self, s: &mut Session<B>, tokens: &[u32]) -> Result<B::Tensor> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no tokens to evaluate".into()));
        }
        if tokens.len() > s.max_ctx {
            return Err(Error::InvalidArgument(format!("{} tokens do not fit a context of {}", tokens.len(), s.max_ctx)));
        }
        let common = s.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        let start = common.min(tokens.len() - 1);
        s.tokens.truncate(start);
        let mut logits = None;
        for chunk in tokens[start..].chunks(PREFILL_CHUNK) {
            let pos = s.tokens.len();
            // On error the session keeps only the tokens evaluated so far.
            let out = self.arch.forward(&self.backend, &mut s.cache, chunk, pos, false)?;
            s.tokens.extend_from_slice(chunk);
            logits = Some(out);
        }
        logits.ok_or_else(|| Error::InvalidArgument("nothing evaluated".into()))
    }

    /// A second session holding the same tokens as `s`, with room for `extra` more: another
    /// candidate continuing the same prompt. `None` when the backend cannot copy its caches.
    pub fn fork(&self, s: &Session<B>, extra: usize) -> Result<Option<Session<B>>> {
        let max_ctx = s.tokens.len().saturating_add(extra).min(s.max_ctx);
        let cache = self.backend.fork_cache(&s.cache, s.tokens.len(), max_ctx)?;
        Ok(cache.map(|cache| Session { cache, tokens: s.tokens.clone(), max_ctx }))
    }

    /// Appends `next[j]` to `sessions[j]`, all in one forward pass (the weights are read once),
    /// and returns their next-token logits `(sessions.len(), vocab)`, row j for session j.
    pub fn step_rows(&self, sessions: &mut [&mut Session<B>], next: &[u32]) -> Result<B::Tensor> {
        if sessions.is_empty() || sessions.len() != next.len() {
            return Err(Error::InvalidArgument(format!("{} tokens for {} sessions", next.len(), sessions.len())));
        }
        if let Some(s) = sessions.iter().find(|s| s.tokens.len() >= s.max_ctx) {
            return Err(Error::InvalidArgument(format!("context full: a session holds {} of {} tokens", s.tokens.len(), s.max_ctx)));
        }
        let positions: Vec<usize> = sessions.iter().map(|s| s.tokens.len()).collect();
        let mut caches: Vec<&mut B::Cache> = sessions.iter_mut().map(|s| &mut s.cache).collect();
        let out = self.arch.forward_rows(&self.backend, &mut caches, next, &positions)?;
        for (s, &t) in sessions.iter_mut().zip(next) {
            s.tokens.push(t);
        }
        Ok(out)
    }

    /// The next token from `(1, vocab)` logits left on the backend by [`Model::eval_tensor`],
    /// chosen where the logits are: greedy from the argmax (a GPU reads back 12 bytes, not the
    /// vocabulary), sampling from the top-k (16 + 8k bytes; the whole row only when the
    /// sampler needs more than [`crate::sample::MAX_TOP_K`] tokens).
    pub async fn choose_async(&self, logits: &B::Tensor, sampler: &mut Sampler) -> Result<Sampled> {
        if sampler.is_greedy() {
            return self.backend.greedy_async(logits).await?.ok_or_else(|| Error::InvalidArgument("no finite logit to sample from".into()));
        }
        if let Some(k) = sampler.backend_top_k() {
            let top = self.backend.top_k_async(logits, k, sampler.temperature()).await?;
            if let Some(s) = sampler.sample_top(&top)? {
                return Ok(s);
            }
        }
        sampler.sample(&self.backend.to_vec_async(logits).await?)
    }

    /// Logits for every position of `tokens` `(tokens.len(), vocab)`, from an empty cache.
    pub fn eval_all(&self, s: &mut Session<B>, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.len() > s.max_ctx {
            return Err(Error::InvalidArgument(format!("{} tokens do not fit a context of {}", tokens.len(), s.max_ctx)));
        }
        s.tokens.clear();
        let mut all = Vec::new();
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            let out = self.arch.forward(&self.backend, &mut s.cache, chunk, s.tokens.len(), true)?;
            s.tokens.extend_from_slice(chunk);
            all.extend(self.backend.to_vec(&out)?);
        }
        Ok(all)
    }

    /// Continues `prompt` by up to `max_tokens` tokens chosen by `sampler`, stopping early at
    /// any token in `stop` (which is not returned) or when `on_token` returns false.
    pub fn generate(
        &self,
        s: &mut Session<B>,
        prompt: &[u32],
        max_tokens: usize,
        sampler: &mut Sampler,
        stop: &[u32],
        mut on_token: impl FnMut(Sampled) -> bool,
    ) -> Result<Vec<Sampled>> {
        let mut logits = self.eval(s, prompt)?;
        let mut out = Vec::new();
        for _ in 0..max_tokens {
            let next = sampler.sample(&logits)?;
            if stop.contains(&next.id) {
                break;
            }
            out.push(next);
            if !on_token(next) || out.len() == max_tokens || s.tokens.len() >= s.max_ctx {
                break;
            }
            let mut seq = s.tokens.clone();
            seq.push(next.id);
            logits = self.eval(s, &seq)?;
        }
        Ok(out)
    }
}
