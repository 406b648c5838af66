//! Code completion on top of a [`Model`]: the Codex/Copilot pipeline (target.md decision 6).
//!
//! cache lookup (typed-through reuse, [`cache`]) → FIM prompt within a token budget
//! ([`prompt`]) → KV reuse of the longest common token prefix with the previous request (the
//! [`Session`] is kept between requests) → n candidates → stop rules on the growing text
//! ([`stop`]) → post-processing ([`post`]) → dedup and ranking by mean log-probability
//! ([`rank`]).
//!
//! n > 1 candidates are decoded together: the others continue copies of the prompt's KV cache
//! ([`Model::fork`]), and each step is one forward pass for all of them ([`Model::step_rows`]),
//! so the weights are read once per step instead of once per candidate. A backend that cannot
//! copy its cache decodes them one after another, each starting from the prompt again (prefix
//! reuse re-evaluates only its last token).

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
use crate::sample::{Sampled, Sampler, SamplerConfig};
use crate::tokenizer::{StreamDecoder, Tokenizer};

pub use cache::SuggestionCache;
use cache::fingerprint;
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
    /// Candidates to sample, 1..=[`MAX_CANDIDATES`]; 1 is greedy.
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

    /// Everything but the text that shapes the answer, as the suggestion cache's key. The mode
    /// is the one asked for (`None` stays `None`), not the one the cursor resolves to: a block
    /// suggestion made on an empty line resolves to line mode once its first character is
    /// typed, and must still be found then. The time limit is part of it: a candidate the
    /// limit cut short is no answer to a request without one.
    fn cache_options(&self) -> String {
        format!(
            "{:?}|{:?}|{}|{:?}|{:?}|{:?}|{}|{:?}|{:?}",
            self.mode, self.language, self.n, self.temperature, self.top_p, self.max_tokens, self.seed, self.context, self.time_limit_ms
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
    /// Bytes of text tokenized to build the prompt ([`Prompt::tokenized_bytes`]): bounded by
    /// the budget, not by the document's size.
    pub tokenized_bytes: usize,
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
    /// Shrunk by [`Completer::new`] where the model's context cannot hold the longest prompt
    /// and room to generate after it ([`Budget::fit`]).
    pub budget: Budget,
    /// Use the vocabulary's FIM template when it has one (false: prefix-only prompts).
    pub fim: bool,
    /// Typed-through cache entries (0 turns the cache off).
    pub cache_entries: usize,
    /// Decode n > 1 candidates together (one forward pass per step) where the backend can copy
    /// its KV cache and n ≤ 8; false decodes them one after another (the same candidates, slower).
    pub batch_candidates: bool,
}

impl Default for CompleterConfig {
    fn default() -> Self {
        CompleterConfig { budget: Budget::default(), fim: true, cache_entries: 64, batch_candidates: true }
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
    /// A completer for `model`; the budget is shrunk to leave room to generate within the
    /// model's context ([`Completer::config`] tells what it became).
    pub fn new(model: Model<B>, config: CompleterConfig) -> Result<Self> {
        let format = PromptFormat::detect(&model.tokenizer, config.fim)?;
        let config = CompleterConfig { budget: config.budget.fit(max_prompt_for(model.config().ctx_len)), ..config };
        let ctx = config.budget.max_prompt_tokens().saturating_add(BLOCK_MAX_TOKENS_CAP);
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
        self.prompt_and_cut(req).map(|(prompt, _)| prompt)
    }

    /// [`Completer::prompt`], and the cut to keep for the next request with the hash of the
    /// text before it (hashed once: a cut that stays put keeps its hash).
    fn prompt_and_cut(&self, req: &Request) -> Result<(Prompt, Option<(usize, u64)>)> {
        let prefix = req.prefix.strip_suffix(' ').unwrap_or(&req.prefix);
        let kept = self.prefix_cut.filter(|&(cut, hash)| prefix.as_bytes().get(..cut).is_some_and(|head| fingerprint(head) == hash));
        let prompt = self.format.build(&self.model.tokenizer, prefix, &req.suffix, &req.context, self.config.budget, kept.map(|(cut, _)| cut))?;
        let cut = match kept {
            Some((cut, hash)) if cut == prompt.prefix_cut => Some((cut, hash)),
            _ => prefix.as_bytes().get(..prompt.prefix_cut).filter(|h| !h.is_empty()).map(|head| (prompt.prefix_cut, fingerprint(head))),
        };
        Ok((prompt, cut))
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
        if req.n == 0 || req.n > MAX_CANDIDATES {
            return Err(Error::InvalidArgument(format!("n = {} is out of range 1..={MAX_CANDIDATES}", req.n)));
        }
        let options = req.cache_options();
        let mut timings = Timings { mode: Some(mode), ..Timings::default() };
        if let Some(candidates) = self.cache.lookup(&req.prefix, &req.suffix, &options) {
            timings.cache_hit = true;
            timings.total_ms = (self.clock)() - t0;
            return Ok(Response { candidates, timings, cancelled: false });
        }
        let (prompt, cut) = self.prompt_and_cut(req)?;
        timings.tokenized_bytes = prompt.tokenized_bytes;
        if prompt.ids.is_empty() {
            // Nothing to condition on: no BOS, no FIM markers, no context and no prefix.
            return Err(Error::InvalidArgument("the prompt is empty: give a prefix or context to complete from".into()));
        }
        self.prefix_cut = cut;
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

        let logits = self.model.eval_tensor(&mut self.session, &prompt.ids)?;
        self.evaluated += (prompt.ids.len() - reused) as u64;
        let decode_start = (self.clock)();
        timings.prompt_ms = decode_start - t0;
        let new_sampler = |i: usize| match sampling {
            Some(cfg) => Sampler::new(SamplerConfig { seed: cfg.seed.wrapping_add(i as u64), ..cfg }),
            None => Ok(Sampler::greedy()),
        };
        let typed_ws = usize::from(req.prefix.ends_with(' '));
        // The first candidate's text streams as it grows.
        let mut stream = |i: usize, partial: &str| {
            if i == 0 {
                if let Some(r) = post::process(partial, &cx, mode) {
                    on_partial(partial.get(r).unwrap_or_default());
                }
            }
        };
        let deadline = || req.time_limit_ms.map(|ms| (self.clock)() + ms);
        // n > 1: the other candidates continue copies of the prompt's cache, all n decoded
        // together, one forward pass per step, where the backend can copy caches (and n is
        // small enough that n caches are: each holds the prompt).
        let forks = if (2..=MAX_TOGETHER).contains(&req.n) && self.config.batch_candidates {
            (1..req.n).map(|_| self.model.fork(&self.session, max_tokens + 1)).collect::<Result<Option<Vec<_>>>>()?
        } else {
            None
        };
        let raw = match forks {
            Some(mut forks) => {
                let states = (0..req.n).map(|i| Ok(Decoding::new(&self.model, new_sampler(i)?, cx, mode, max_tokens, typed_ws))).collect::<Result<Vec<_>>>()?;
                let mut sessions: Vec<&mut Session<B>> = std::iter::once(&mut self.session).chain(forks.iter_mut()).collect();
                let hooks = Hooks { cancelled, deadline: deadline(), clock: &self.clock };
                let first = self.model.backend.to_vec_async(&logits).await?;
                decode_together(&self.model, &mut sessions, &self.format, first, states, &hooks, pause, |t| stream(0, t)).await?
            }
            None => {
                let mut raw = Vec::new();
                let mut first = Some(logits);
                for i in 0..req.n {
                    // Later candidates bring the session back to the prompt: with prefix reuse,
                    // only its last token is evaluated again.
                    let logits = match first.take() {
                        Some(l) => l,
                        None => {
                            let before = common_prefix(self.session.tokens(), &prompt.ids).min(prompt.ids.len() - 1);
                            let l = self.model.eval_tensor(&mut self.session, &prompt.ids)?;
                            self.evaluated += (prompt.ids.len() - before) as u64;
                            l
                        }
                    };
                    let d = Decoding::new(&self.model, new_sampler(i)?, cx, mode, max_tokens, typed_ws);
                    let hooks = Hooks { cancelled, deadline: deadline(), clock: &self.clock };
                    let out = decode(&self.model, &mut self.session, &self.format, logits, d, &hooks, pause, |t| stream(i, t)).await?;
                    let stopped = out.stop.reason == StopReason::Cancelled;
                    raw.push(out);
                    if stopped {
                        break;
                    }
                }
                raw
            }
        };
        for out in &raw {
            self.evaluated += out.evaluated;
            timings.generated_tokens += out.logprobs.len();
        }
        timings.stop = raw.first().map(|o| o.stop.reason);
        let cancel = raw.iter().any(|o| o.stop.reason == StopReason::Cancelled);
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

/// The most prompt tokens a model with a context of `ctx_len` takes: the rest is room to
/// generate (a block's worth, or a quarter of a short context).
fn max_prompt_for(ctx_len: usize) -> usize {
    ctx_len.saturating_sub(BLOCK_MAX_TOKENS_CAP.min(ctx_len / 4))
}

/// `at`, or the next character boundary of `text` after it (its length at most).
pub(crate) fn ceil_char_boundary(text: &str, at: usize) -> usize {
    (at..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len())
}

/// `at`, or the character boundary of `text` before it (its length at most).
pub(crate) fn floor_char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0)
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

/// The most candidates decoded together; more are decoded one after another.
const MAX_TOGETHER: usize = 8;

/// The most candidates one request may ask for ([`Request::n`]); more is an
/// [`Error::InvalidArgument`].
pub const MAX_CANDIDATES: usize = 16;

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

/// One candidate being decoded: its sampler, its text so far and the stop rules on it.
struct Decoding<'m> {
    sampler: Sampler,
    decoder: StreamDecoder<'m>,
    stopper: Stopper<'m>,
    logprobs: Vec<f32>,
    ends: Vec<usize>,
    /// Leading blanks still to drop: the space the prompt left out and the user already typed.
    typed_ws: usize,
    evaluated: u64,
}

impl<'m> Decoding<'m> {
    fn new<B: Backend>(model: &'m Model<B>, sampler: Sampler, cx: Cursor<'m>, mode: Mode, max_tokens: usize, typed_ws: usize) -> Self {
        let (decoder, stopper) = (model.tokenizer.stream_decoder(), Stopper::new(cx, mode, max_tokens));
        Decoding { sampler, decoder, stopper, logprobs: Vec::new(), ends: Vec::new(), typed_ws, evaluated: 0 }
    }

    /// Takes the next token; `Some` when the candidate ends with it (it is then not evaluated).
    fn accept(&mut self, next: Sampled, format: &PromptFormat, tok: &Tokenizer) -> Result<Option<Stop>> {
        // Control tokens (FIM markers, chat markers) are never part of shown text.
        if format.stop_ids().contains(&next.id) || tok.is_special(next.id) {
            return Ok(Some(self.stopper.end(StopReason::EndOfGeneration)));
        }
        let mut piece = self.decoder.push(next.id)?;
        if self.typed_ws > 0 {
            let skip: usize = piece.bytes().take(self.typed_ws).take_while(|b| *b == b' ' || *b == b'\t').count();
            self.typed_ws = if skip == piece.len() { self.typed_ws - skip } else { 0 };
            piece.drain(..skip);
        }
        self.logprobs.push(next.logprob);
        let stopped = self.stopper.push(&piece);
        self.ends.push(self.stopper.text().len());
        Ok(stopped)
    }

    fn finish(self, stop: Stop) -> RawCandidate {
        RawCandidate { text: self.stopper.text().to_string(), stop, logprobs: self.logprobs, ends: self.ends, evaluated: self.evaluated }
    }
}

/// Decodes one candidate from `logits` (the session's next-token logits, left on the backend).
#[allow(clippy::too_many_arguments)]
async fn decode<B: Backend, F: Future<Output = ()>>(
    model: &Model<B>,
    session: &mut Session<B>,
    format: &PromptFormat,
    mut logits: B::Tensor,
    mut d: Decoding<'_>,
    hooks: &Hooks<'_>,
    pause: &mut dyn FnMut() -> F,
    mut on_text: impl FnMut(&str),
) -> Result<RawCandidate> {
    let stop = loop {
        pause().await;
        if (hooks.cancelled)() {
            break d.stopper.end(StopReason::Cancelled);
        }
        let next = model.choose_async(&logits, &mut d.sampler).await?;
        if let Some(stop) = d.accept(next, format, &model.tokenizer)? {
            break stop;
        }
        on_text(d.stopper.text());
        if hooks.deadline.is_some_and(|t| (hooks.clock)() >= t) {
            break d.stopper.time_up();
        }
        if session.tokens().len() >= session.max_ctx() {
            break d.stopper.end(StopReason::MaxTokens);
        }
        let mut seq = session.tokens().to_vec();
        seq.push(next.id);
        logits = model.eval_tensor(session, &seq)?;
        d.evaluated += 1;
    };
    Ok(d.finish(stop))
}

/// Decodes candidate j in `sessions[j]` (each holding the prompt, whose next-token logits are
/// `first`), all together: one forward pass per step for every candidate still going. Each
/// candidate makes the same choices as [`decode`] would alone: the backend's rows are
/// batch-invariant, and every candidate has its own sampler.
#[allow(clippy::too_many_arguments)]
async fn decode_together<B: Backend, F: Future<Output = ()>>(
    model: &Model<B>,
    sessions: &mut [&mut Session<B>],
    format: &PromptFormat,
    first: Vec<f32>,
    mut states: Vec<Decoding<'_>>,
    hooks: &Hooks<'_>,
    pause: &mut dyn FnMut() -> F,
    mut on_text: impl FnMut(&str),
) -> Result<Vec<RawCandidate>> {
    let (n, vocab) = (states.len(), first.len());
    let mut logits = vec![first; n];
    let mut stops: Vec<Option<Stop>> = vec![None; n];
    loop {
        pause().await;
        let cancelled = (hooks.cancelled)();
        let mut rows = Vec::with_capacity(n);
        let mut next = Vec::with_capacity(n);
        for (j, (d, stop)) in states.iter_mut().zip(stops.iter_mut()).enumerate().filter(|(_, (_, s))| s.is_none()) {
            if cancelled {
                *stop = Some(d.stopper.end(StopReason::Cancelled));
                continue;
            }
            let tok = d.sampler.sample(&logits[j])?;
            if let Some(end) = d.accept(tok, format, &model.tokenizer)? {
                *stop = Some(end);
                continue;
            }
            if j == 0 {
                on_text(d.stopper.text());
            }
            if hooks.deadline.is_some_and(|t| (hooks.clock)() >= t) {
                *stop = Some(d.stopper.time_up());
            } else if sessions[j].tokens().len() >= sessions[j].max_ctx() {
                *stop = Some(d.stopper.end(StopReason::MaxTokens));
            } else {
                rows.push(j);
                next.push(tok.id);
            }
        }
        if rows.is_empty() {
            break;
        }
        let mut batch: Vec<&mut Session<B>> = sessions.iter_mut().enumerate().filter(|(j, _)| rows.contains(j)).map(|(_, s)| &mut **s).collect();
        let out = model.backend.to_vec_async(&model.step_rows(&mut batch, &next)?).await?;
        for (r, &j) in rows.iter().enumerate() {
            logits[j] = out.get(r * vocab..(r + 1) * vocab).ok_or_else(|| Error::Model("a batched step gave too few logits".into()))?.to_vec();
            states[j].evaluated += 1;
        }
    }
    Ok(states.into_iter().zip(stops).map(|(d, stop)| {
        let stop = stop.unwrap_or_else(|| d.stopper.end(StopReason::MaxTokens));
        d.finish(stop)
    }).collect())
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
