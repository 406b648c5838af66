//! Generation one step at a time. The worker awaits `step()` in a loop and goes back to its
//! event loop between calls, which is how an abort message reaches it without
//! SharedArrayBuffer: each step is one bounded piece of work (a prefill chunk of at most
//! `prefillChunk` tokens, or one decoded token). A step is a Promise: on WebGPU the token's
//! logits can only be awaited.

use std::cell::RefCell;
use std::rc::Rc;

use nib_engine::backend::cpu::CpuBackend;
use nib_engine::backend::gpu::GpuBackend;
use nib_engine::backend::Backend;
use nib_engine::sample::{Sampler, SamplerConfig};
use nib_engine::{Model, Session};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::clock::now_ms;
use crate::engine::{borrow, Loaded, Shared};
use crate::error::{Code, NibError, NibResult};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GenOptions {
    pub max_tokens: usize,
    /// 0: greedy.
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub seed: u64,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eos: bool,
    /// Prompt tokens in the first prefill step; later steps are sized to `step_budget_ms`.
    pub prefill_chunk: usize,
    /// How long one prefill step should take: an abort waits for at most one step.
    pub step_budget_ms: f64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions { max_tokens: 128, temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, ignore_eos: false, prefill_chunk: 2, step_budget_ms: 40.0 }
    }
}

/// The session of a generation, on the backend of the model it belongs to.
enum GenSession {
    Cpu(Session<CpuBackend>),
    Gpu(Session<GpuBackend>),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Step {
    /// The token chosen by this step (absent while the prompt is being evaluated).
    token: Option<u32>,
    /// The text this token completes (whole UTF-8 characters only).
    text: String,
    logprob: Option<f32>,
    /// Prompt tokens evaluated so far.
    prefilled: usize,
    /// No more steps: the last token, an end-of-generation token or the context is full.
    done: bool,
}

#[wasm_bindgen]
pub struct Generation {
    state: Rc<RefCell<GenState>>,
}

struct GenState {
    shared: Shared,
    session: GenSession,
    core: Core,
}

/// Everything of a generation but its session.
struct Core {
    sampler: Sampler,
    prompt: Vec<u32>,
    prefilled: usize,
    /// Prompt tokens the next prefill step evaluates.
    chunk: usize,
    /// The sampled token whose keys and values are not in the cache yet.
    pending: Option<u32>,
    generated: usize,
    stop: Vec<u32>,
    opts: GenOptions,
    /// Bytes of an unfinished UTF-8 sequence.
    utf8: Vec<u8>,
    done: bool,
    /// The error a step failed with: every later step fails with it too. A failed step may
    /// have taken the pending token or left the session part-way through a chunk, so there is
    /// nothing to go on from.
    failed: Option<NibError>,
}

impl Generation {
    pub(crate) fn start(shared: Shared, prompt: &str, opts: GenOptions) -> NibResult<Generation> {
        if opts.prefill_chunk == 0 {
            return Err(NibError::invalid("prefillChunk must be at least 1"));
        }
        if !(opts.step_budget_ms.is_finite() && opts.step_budget_ms > 0.0) {
            return Err(NibError::invalid("stepBudgetMs must be a positive number"));
        }
        let sampler = Sampler::new(SamplerConfig { temperature: opts.temperature, top_k: opts.top_k, top_p: opts.top_p, seed: opts.seed })
            .map_err(NibError::from_run)?;
        let (session, ids, stop) = {
            let loaded = borrow(&shared)?;
            fn open<B: Backend>(m: &Model<B>, prompt: &str, opts: &GenOptions) -> NibResult<(Session<B>, Vec<u32>, Vec<u32>)> {
                let ids = m.tokenizer.encode(prompt).map_err(NibError::from_run)?;
                if ids.is_empty() {
                    return Err(NibError::invalid("the prompt has no tokens"));
                }
                let ctx = m.config().ctx_len;
                if ids.len() >= ctx {
                    return Err(NibError::invalid(format!("a prompt of {} tokens leaves no room in a context of {ctx}", ids.len())));
                }
                let s = m.session(ids.len().saturating_add(opts.max_tokens)).map_err(NibError::from_run)?;
                let stop = if opts.ignore_eos { Vec::new() } else { m.tokenizer.end_of_generation() };
                Ok((s, ids, stop))
            }
            match &*loaded {
                Loaded::Cpu(c) => open(c.model(), prompt, &opts).map(|(s, i, t)| (GenSession::Cpu(s), i, t))?,
                Loaded::Gpu(c) => open(c.model(), prompt, &opts).map(|(s, i, t)| (GenSession::Gpu(s), i, t))?,
            }
        };
        let done = opts.max_tokens == 0;
        let core = Core { sampler, prompt: ids, prefilled: 0, chunk: opts.prefill_chunk, pending: None, generated: 0, stop, opts, utf8: Vec::new(), done, failed: None };
        Ok(Generation { state: Rc::new(RefCell::new(GenState { shared, session, core })) })
    }
}

impl GenState {
    #[allow(clippy::await_holding_refcell_ref)] // the engine's lock, as in `NibEngine::logits`
    async fn advance(&mut self) -> NibResult<Step> {
        if self.core.done {
            return Ok(self.core.idle());
        }
        let shared = self.shared.clone();
        let loaded = borrow(&shared)?;
        match (&*loaded, &mut self.session) {
            (Loaded::Cpu(c), GenSession::Cpu(s)) => self.core.advance(c.model(), s).await,
            (Loaded::Gpu(c), GenSession::Gpu(s)) => {
                // A GPU step costs its dispatches whatever its length: prefill in one step.
                self.core.chunk = nib_engine::model::PREFILL_CHUNK;
                self.core.advance(c.model(), s).await
            }
            _ => Err(NibError::new(Code::Internal, "generation on another backend than its model")),
        }
    }
}

impl Core {
    /// One step ([`Core::step`]); after a failed one, its error again (same code), since the
    /// generation cannot go on.
    async fn advance<B: Backend>(&mut self, m: &Model<B>, s: &mut Session<B>) -> NibResult<Step> {
        if let Some(e) = &self.failed {
            return Err(NibError::new(e.code, format!("the generation ended at an earlier error: {}", e.message)));
        }
        let step = self.step(m, s).await;
        if let Err(e) = &step {
            self.failed = Some(e.clone());
        }
        step
    }

    async fn step<B: Backend>(&mut self, m: &Model<B>, s: &mut Session<B>) -> NibResult<Step> {
        let logits = if self.prefilled < self.prompt.len() {
            let end = self.prompt.len().min(self.prefilled.saturating_add(self.chunk));
            let t0 = now_ms();
            let logits = m.eval_tensor(s, &self.prompt[..end]).map_err(NibError::from_run)?;
            // Size the next chunk to the budget from this one's time per token. That time grows
            // with the context, so the budget sits well below the 100 ms an abort may take.
            let per_token = (now_ms() - t0) / (end - self.prefilled) as f64;
            let fit = (self.opts.step_budget_ms / per_token.max(1e-3)) as usize;
            self.chunk = fit.clamp(1, nib_engine::model::PREFILL_CHUNK);
            self.prefilled = end;
            if end < self.prompt.len() {
                return Ok(self.idle());
            }
            logits
        } else {
            let next = self.pending.take().ok_or_else(|| NibError::new(Code::Internal, "generation has no token to continue from"))?;
            let mut seq = s.tokens().to_vec();
            seq.push(next);
            m.eval_tensor(s, &seq).map_err(NibError::from_run)?
        };
        let next = m.choose_async(&logits, &mut self.sampler).await.map_err(NibError::from_run)?;
        if self.stop.contains(&next.id) {
            self.done = true;
            return Ok(self.idle());
        }
        self.generated += 1;
        // The token's keys and values go in at the next step; a full context ends here.
        self.done = self.generated >= self.opts.max_tokens || s.tokens().len() >= s.max_ctx();
        self.pending = Some(next.id);
        self.utf8.extend_from_slice(&m.tokenizer.token_bytes(next.id).unwrap_or_default());
        let text = take_utf8(&mut self.utf8, self.done);
        Ok(Step { token: Some(next.id), text, logprob: Some(next.logprob), prefilled: self.prefilled, done: self.done })
    }

    fn idle(&self) -> Step {
        Step { token: None, text: String::new(), logprob: None, prefilled: self.prefilled, done: self.done }
    }
}

#[wasm_bindgen]
impl Generation {
    /// A Promise of one prefill chunk or one token: `{token?, text, logprob?, prefilled, done}`.
    #[allow(clippy::await_holding_refcell_ref)] // this generation's own lock: a second step gets `busy`
    pub fn step(&self) -> js_sys::Promise {
        let state = Rc::clone(&self.state);
        wasm_bindgen_futures::future_to_promise(async move {
            let mut g = state.try_borrow_mut().map_err(|_| JsValue::from(NibError::new(Code::Busy, "a step of this generation is running")))?;
            let step = g.advance().await?;
            let ser = serde_wasm_bindgen::Serializer::json_compatible();
            step.serialize(&ser).map_err(|e| NibError::new(Code::Internal, format!("step to JS: {e}")).into())
        })
    }

    /// Tokens in the prompt.
    #[wasm_bindgen(getter, js_name = promptTokens)]
    pub fn prompt_tokens(&self) -> usize {
        self.state.try_borrow().map_or(0, |g| g.core.prompt.len())
    }

    /// Tokens generated so far.
    #[wasm_bindgen(getter)]
    pub fn generated(&self) -> usize {
        self.state.try_borrow().map_or(0, |g| g.core.generated)
    }
}

/// Takes the complete UTF-8 characters from the front of `buf`; bytes that can never be valid
/// become U+FFFD; an unfinished sequence stays unless `flush`.
fn take_utf8(buf: &mut Vec<u8>, flush: bool) -> String {
    let mut out = nib_engine::tokenizer::take_complete_utf8(buf);
    if flush && !buf.is_empty() {
        out.push_str(&String::from_utf8_lossy(&std::mem::take(buf)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::take_utf8;

    #[test]
    fn utf8_waits_for_whole_characters() {
        let euro = "€".as_bytes();
        let mut b = euro[..2].to_vec();
        assert_eq!(take_utf8(&mut b, false), "");
        b.push(euro[2]);
        b.extend_from_slice(b"x");
        assert_eq!(take_utf8(&mut b, false), "€x");
        assert!(b.is_empty());
        let mut b = vec![b'a', 0xff, b'b', 0xe2];
        assert_eq!(take_utf8(&mut b, false), "a\u{fffd}b");
        assert_eq!(take_utf8(&mut b, true), "\u{fffd}");
    }
}
