//! Code completion on top of a [`Model`]: the Codex/Copilot pipeline (target.md decision 6).
//!
//! cache lookup (typed-through reuse, [`cache`]) → FIM prompt within a token budget
//! ([`prompt`]) → KV reuse of the longest common token prefix with the previous request (the
//! [`Session`] is kept between requests) → n candidates → stop rules on the growing text
//! ([`stop`]) → post-processing ([`post`]) → dedup and ranking by mean log-probability
//! ([`rank`]).
//!
//! Candidates are decoded one after the other: each starts by evaluating the prompt again,
//! which, thanks to prefix reuse, re-evaluates only its last token. Decoding them together as a
//! batch (one forward pass per step for all n) is future work: it needs per-sequence KV
//! caches in the backend.

pub mod cache;
pub mod post;
pub mod prompt;
pub mod rank;
pub mod stop;

use std::future::Future;
use std::task::{Context, Poll, Waker};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{Model, Session};
use crate::sample::{Sampler, SamplerConfig};

pub use cache::SuggestionCache;
pub use prompt::{Budget, ContextFile, Family, Prompt, PromptFormat};
pub use rank::Candidate;
pub use stop::{Cursor, Language, Mode, Stop, StopReason, Stopper};

/// One completion request: the text around the cursor and how to complete it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prefix: String,
    pub suffix: String,
    /// Editor language name (`python`, `typescript`, `rust`, …); `None`: generic rules.
    pub language: Option<String>,
    /// `None`: chosen from the cursor ([`Mode::for_cursor`]).
    pub mode: Option<Mode>,
    /// Candidates to sample; 1 is greedy.
    pub n: usize,
    /// Defaults for n > 1: temperature 0.2, top-p 0.95 (the Codex paper's pass@1 setting).
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    /// Tokens per candidate; default 32 in line mode, 192 in block mode.
    pub max_tokens: Option<usize>,
    pub seed: u64,
    /// Other files or earlier notebook cells, placed before the code.
    pub context: Vec<ContextFile>,
    /// Stop decoding a candidate after this long (block mode keeps whole lines).
    pub time_limit_ms: Option<f64>,
}

impl Request {
    pub fn new(prefix: impl Into<String>, suffix: impl Into<String>) -> Self {
        Request {
            prefix: prefix.into(),
            suffix: suffix.into(),
            language: None,
            mode: None,
            n: 1,
            temperature: None,
            top_p: None,
            max_tokens: None,
            seed: 0,
            context: Vec::new(),
            time_limit_ms: None,
        }
    }

    fn language(&self) -> Language {
        Language::from_name(self.language.as_deref().unwrap_or(""))
    }

    fn cache_options(&self, mode: Mode) -> String {
        format!(
            "{mode:?}|{:?}|{}|{:?}|{:?}|{:?}|{}|{:?}",
            self.language, self.n, self.temperature, self.top_p, self.max_tokens, self.seed, self.context
        )
    }
}

/// Where the time and the tokens of one request went.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values were already in the session.
    pub reused_tokens: usize,
    /// Prompt tokens evaluated for this request (the rest of the prompt after the reuse).
    pub evaluated_tokens: usize,
    /// Tokens sampled over all candidates.
    pub generated_tokens: usize,
    /// Evaluating the prompt. A GPU only records that work here and finishes it with the first
    /// token, which `decode_ms` then includes.
    pub prompt_ms: f64,
    pub decode_ms: f64,
    pub total_ms: f64,
    /// Served by typed-through reuse, without inference.
    pub cache_hit: bool,
    pub mode: Option<Mode>,
    /// Why the first candidate ended.
    pub stop: Option<StopReason>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Response {
    /// Best first; empty when nothing worth showing came out.
    pub candidates: Vec<Candidate>,
    pub timings: Timings,
    /// A newer request (the cancellation hook) stopped this one; candidates are partial.
    pub cancelled: bool,
}

/// Settings that hold for every request of a [`Completer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompleterConfig {
    pub budget: Budget,
    /// Use the vocabulary's FIM template when it has one (false: prefix-only prompts).
    pub fim: bool,
    /// Typed-through cache entries (0 turns the cache off).
    pub cache_entries: usize,
}

impl Default for CompleterConfig {
    fn default() -> Self {
        CompleterConfig { budget: Budget::default(), fim: true, cache_entries: 64 }
    }
}

/// A clock in milliseconds from any fixed origin. Natively `Instant`; in the browser the wasm
/// layer passes `performance.now()` (std's clock panics on wasm32-unknown-unknown).
pub type Clock = Box<dyn Fn() -> f64>;

fn default_clock() -> Clock {
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    {
        let origin = std::time::Instant::now();
        Box::new(move || origin.elapsed().as_secs_f64() * 1e3)
    }
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    {
        Box::new(|| 0.0)
    }
}

/// Completes code with one model, keeping one KV cache across requests.
pub struct Completer<B: Backend> {
    model: Model<B>,
    session: Session<B>,
    format: PromptFormat,
    config: CompleterConfig,
    cache: SuggestionCache,
    clock: Clock,
    /// Tokens run through the model since creation (prompt and decode): KV reuse shows here.
    evaluated: u64,
    /// Where the last prompt cut a long prefix, and a hash of the text it dropped: the next
    /// prompt keeps that cut while the dropped text is unchanged (see [`PromptFormat::build`]).
    prefix_cut: Option<(usize, u64)>,
}

impl<B: Backend> Completer<B> {
    pub fn new(model: Model<B>, config: CompleterConfig) -> Result<Self> {
        let format = PromptFormat::detect(&model.tokenizer, config.fim)?;
        let ctx = config.budget.max_prompt_tokens() + BLOCK_MAX_TOKENS_CAP;
        let session = model.session(ctx)?;
        Ok(Completer { model, session, format, cache: SuggestionCache::new(config.cache_entries), config, clock: default_clock(), evaluated: 0, prefix_cut: None })
    }

    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub fn model(&self) -> &Model<B> {
        &self.model
    }

    pub fn format(&self) -> &PromptFormat {
        &self.format
    }

    pub fn config(&self) -> CompleterConfig {
        self.config
    }

    /// Tokens evaluated by the model since this completer was made.
    pub fn evaluated_tokens(&self) -> u64 {
        self.evaluated
    }

    /// Forgets the suggestions kept for typed-through reuse (the KV cache stays).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// The prompt ids this completer would evaluate for `req`.
    ///
    /// One space at the end of the prefix (after `return`, the last column of an indentation)
    /// is left out: byte-level BPE pre-tokenizers attach a single space to the word after it
    /// (`"        x"` → `"       "`, `" x"`), so a prompt ending in that space is a split the
    /// model never saw in training. The model writes the space again and [`decode`] skips it.
    /// (Dropping all of an empty line's indentation is worse: a prompt that ends in a newline
    /// reads as a finished block.)
    pub fn prompt(&self, req: &Request) -> Result<Prompt> {
        let prefix = req.prefix.strip_suffix(' ').unwrap_or(&req.prefix);
        let keep_from = self.prefix_cut.filter(|&(cut, hash)| prefix.get(..cut).is_some_and(|head| hash_of(head) == hash)).map(|(cut, _)| cut);
        self.format.build(&self.model.tokenizer, prefix, &req.suffix, &req.context, self.config.budget, keep_from)
    }

    pub fn complete(&mut self, req: &Request) -> Result<Response> {
        self.complete_with(req, &|| false, &mut |_| {})
    }

    /// As [`Completer::complete`], checking `cancelled` before every token (a newer request
    /// sets it) and calling `on_partial` with the first candidate's text as it grows.
    pub fn complete_with(&mut self, req: &Request, cancelled: &dyn Fn() -> bool, on_partial: &mut dyn FnMut(&str)) -> Result<Response> {
        ready_now(self.complete_async(req, cancelled, on_partial, &mut || std::future::ready(())))
    }

    /// As [`Completer::complete_with`], awaiting the backend's readbacks (the browser's GPU) and
    /// `pause()` before every token: a browser worker yields to its event loop there, so that an
    /// abort or a newer request can arrive while a completion runs.
    pub async fn complete_async<F: Future<Output = ()>>(
        &mut self,
        req: &Request,
        cancelled: &dyn Fn() -> bool,
        on_partial: &mut dyn FnMut(&str),
        pause: &mut dyn FnMut() -> F,
    ) -> Result<Response> {
        let t0 = (self.clock)();
        let cx = Cursor::new(&req.prefix, &req.suffix, req.language());
        let mode = req.mode.unwrap_or_else(|| Mode::for_cursor(&cx));
        let options = req.cache_options(mode);
        let mut timings = Timings { mode: Some(mode), ..Timings::default() };
        if let Some(candidates) = self.cache.lookup(&req.prefix, &req.suffix, &options) {
            timings.cache_hit = true;
            timings.total_ms = (self.clock)() - t0;
            return Ok(Response { candidates, timings, cancelled: false });
        }
        if req.n == 0 {
            return Err(Error::InvalidArgument("n must be at least 1".into()));
        }
        let prompt = self.prompt(req)?;
        self.prefix_cut = req.prefix.get(..prompt.prefix_cut).filter(|h| !h.is_empty()).map(|head| (prompt.prefix_cut, hash_of(head)));
        let default_cap = if mode == Mode::Line { stop::LINE_MAX_TOKENS } else { stop::BLOCK_MAX_TOKENS };
        let room = self.session.max_ctx().saturating_sub(prompt.ids.len());
        let max_tokens = req.max_tokens.unwrap_or(default_cap).min(room);
        if max_tokens == 0 {
            return Err(Error::InvalidArgument(format!("a prompt of {} tokens leaves no room to generate", prompt.ids.len())));
        }
        let sampling = if req.n == 1 && req.temperature.is_none_or(|t| t == 0.0) {
            None
        } else {
            Some(SamplerConfig { temperature: req.temperature.unwrap_or(0.2), top_p: req.top_p.unwrap_or(0.95), top_k: 0, seed: req.seed })
        };
        let reused = common_prefix(self.session.tokens(), &prompt.ids).min(prompt.ids.len() - 1);
        timings.prompt_tokens = prompt.ids.len();
        timings.reused_tokens = reused;
        timings.evaluated_tokens = prompt.ids.len() - reused;

        let mut raw = Vec::with_capacity(req.n);
        let mut cancel = false;
        let mut decode_start = t0;
        for i in 0..req.n {
            // Brings the session back to the prompt: the first time, everything after the common
            // prefix; afterwards only the prompt's last token.
            let before = common_prefix(self.session.tokens(), &prompt.ids).min(prompt.ids.len() - 1);
            let logits = self.model.eval_tensor(&mut self.session, &prompt.ids)?;
            self.evaluated += (prompt.ids.len() - before) as u64;
            if i == 0 {
                decode_start = (self.clock)();
                timings.prompt_ms = decode_start - t0;
            }
            let mut sampler = match sampling {
                Some(cfg) => Sampler::new(SamplerConfig { seed: cfg.seed.wrapping_add(i as u64), ..cfg })?,
                None => Sampler::greedy(),
            };
            let deadline = req.time_limit_ms.map(|ms| (self.clock)() + ms);
            let stream = |partial: &str| {
                if i == 0 {
                    if let Some(r) = post::process(partial, &cx, mode) {
                        on_partial(partial.get(r).unwrap_or_default());
                    }
                }
            };
            let hooks = Hooks { cancelled, deadline, clock: &self.clock };
            let typed_ws = usize::from(req.prefix.ends_with(' '));
            let out = decode(&self.model, &mut self.session, &self.format, logits, &mut sampler, cx, mode, max_tokens, typed_ws, &hooks, pause, stream).await?;
            self.evaluated += out.evaluated;
            timings.generated_tokens += out.logprobs.len();
            if i == 0 {
                timings.stop = Some(out.stop.reason);
            }
            cancel = out.stop.reason == StopReason::Cancelled;
            raw.push(out);
            if cancel {
                break;
            }
        }
        let candidates = rank::rank(raw.iter().filter_map(|o| finish(o, &cx, mode)).collect());
        let t1 = (self.clock)();
        timings.decode_ms = t1 - decode_start;
        timings.total_ms = t1 - t0;
        if !cancel {
            self.cache.insert(&req.prefix, &req.suffix, &options, &candidates);
        }
        Ok(Response { candidates, timings, cancelled: cancel })
    }
}

fn hash_of(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

/// The result of a future that needs no waiting: every backend's but the browser GPU's
/// readbacks are ready at once, so the synchronous entry points poll the pipeline once.
pub(crate) fn ready_now<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(Error::Unsupported("this backend reads results asynchronously: use Completer::complete_async".into())),
    }
}

/// Generation room kept in the session beyond the prompt budget.
const BLOCK_MAX_TOKENS_CAP: usize = 256;

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One candidate as decoded: its raw text, where the stop rules cut it, and per token the
/// log-probability and the text length after it.
#[derive(Debug, Clone)]
pub struct RawCandidate {
    pub text: String,
    pub stop: Stop,
    pub logprobs: Vec<f32>,
    pub ends: Vec<usize>,
    evaluated: u64,
}

struct Hooks<'h> {
    cancelled: &'h dyn Fn() -> bool,
    deadline: Option<f64>,
    clock: &'h Clock,
}

#[allow(clippy::too_many_arguments)]
async fn decode<B: Backend, F: Future<Output = ()>>(
    model: &Model<B>,
    session: &mut Session<B>,
    format: &PromptFormat,
    mut logits: B::Tensor,
    sampler: &mut Sampler,
    cx: Cursor<'_>,
    mode: Mode,
    max_tokens: usize,
    mut typed_ws: usize,
    hooks: &Hooks<'_>,
    pause: &mut dyn FnMut() -> F,
    mut on_text: impl FnMut(&str),
) -> Result<RawCandidate> {
    let tok = &model.tokenizer;
    let mut decoder = tok.stream_decoder();
    let mut stopper = Stopper::new(cx, mode, max_tokens);
    let mut logprobs = Vec::new();
    let mut ends = Vec::new();
    let mut evaluated = 0;
    let stop = loop {
        pause().await;
        if (hooks.cancelled)() {
            break stopper.end(StopReason::Cancelled);
        }
        let next = model.choose_async(&logits, sampler).await?;
        // Control tokens (FIM markers, chat markers) are never part of shown text.
        if format.stop_ids().contains(&next.id) || tok.is_special(next.id) {
            break stopper.end(StopReason::EndOfGeneration);
        }
        let mut piece = decoder.push(next.id)?;
        if typed_ws > 0 {
            // The space the prompt left out and the user already typed.
            let skip: usize = piece.bytes().take(typed_ws).take_while(|b| *b == b' ' || *b == b'\t').count();
            typed_ws = if skip == piece.len() { typed_ws - skip } else { 0 };
            piece.drain(..skip);
        }
        logprobs.push(next.logprob);
        let stopped = stopper.push(&piece);
        ends.push(stopper.text().len());
        if let Some(stop) = stopped {
            break stop;
        }
        on_text(stopper.text());
        if hooks.deadline.is_some_and(|d| (hooks.clock)() >= d) {
            break stopper.time_up();
        }
        if session.tokens().len() >= session.max_ctx() {
            break stopper.end(StopReason::MaxTokens);
        }
        let mut seq = session.tokens().to_vec();
        seq.push(next.id);
        logits = model.eval_tensor(session, &seq)?;
        evaluated += 1;
    };
    Ok(RawCandidate { text: stopper.text().to_string(), stop, logprobs, ends, evaluated })
}

/// The shown candidate for a decoded one: stop cut, post-processing, mean log-probability of
/// the tokens kept.
fn finish(raw: &RawCandidate, cx: &Cursor, mode: Mode) -> Option<Candidate> {
    let stopped = raw.text.get(..raw.stop.at)?;
    let kept = post::process(stopped, cx, mode)?;
    let text = stopped.get(kept.clone())?.to_string();
    Some(Candidate { text, mean_logprob: rank::mean_logprob(&raw.logprobs, &raw.ends, kept) })
}

/// The rules alone, on a scripted model output: `pieces` are the decoded texts of successive
/// tokens (an end-of-generation token is the end of the list). Returns the candidate text
/// (None when post-processing drops it) and why it stopped. The same path
/// [`Completer::complete`] takes after sampling.
pub fn apply_rules<'p>(cx: &Cursor, mode: Option<Mode>, max_tokens: Option<usize>, pieces: impl IntoIterator<Item = &'p str>) -> (Option<String>, StopReason) {
    let mode = mode.unwrap_or_else(|| Mode::for_cursor(cx));
    let cap = max_tokens.unwrap_or(if mode == Mode::Line { stop::LINE_MAX_TOKENS } else { stop::BLOCK_MAX_TOKENS });
    let mut stopper = Stopper::new(*cx, mode, cap);
    let mut stop = None;
    for piece in pieces {
        if let Some(s) = stopper.push(piece) {
            stop = Some(s);
            break;
        }
    }
    let stop = stop.unwrap_or_else(|| stopper.end(StopReason::EndOfGeneration));
    let text = stopper.text().get(..stop.at).and_then(|t| post::process(t, cx, mode).and_then(|r| t.get(r))).map(str::to_string);
    (text, stop.reason)
}
