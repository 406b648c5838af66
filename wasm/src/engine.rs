//! A loaded model behind one handle, whatever backend runs it. [`Loaded`] is an enum over the
//! backends so that the WebGPU backend becomes one more variant (and one more arm in
//! [`with_model!`]) when the engine can run it in the browser; until then `"webgpu"` is refused
//! with `gpu_unavailable`.

use std::cell::RefCell;
use std::rc::Rc;

use nib_engine::backend::cpu::CpuBackend;
use nib_engine::backend::Backend;
use nib_engine::complete::{Completer, CompleterConfig, Mode, Request};
use nib_engine::gguf::ModelBytes;
use nib_engine::sample::{top_k, Sampler};
use nib_engine::Model;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use crate::clock::now_ms;
use crate::error::{Code, JsResult, NibError, NibResult};
use crate::generation::{GenOptions, Generation};
use crate::loader::ModelLoader;

/// The model on the backend that runs it. The completer owns the model and keeps its KV
/// session across completion requests; the other calls use sessions of their own.
pub(crate) enum Loaded {
    Cpu(Completer<CpuBackend>),
}

/// Runs `$body` with `$c` bound to the completer, whatever its backend.
macro_rules! with_model {
    ($loaded:expr, $c:ident => $body:expr) => {
        match $loaded {
            Loaded::Cpu($c) => $body,
        }
    };
}
pub(crate) use with_model;

pub(crate) type Shared = Rc<RefCell<Loaded>>;

/// Borrows the model for one call. A JS callback that calls back into the engine while it
/// runs (from `complete`'s `onPartial`) gets `busy` instead of a panic.
pub(crate) fn borrow(shared: &Shared) -> NibResult<std::cell::RefMut<'_, Loaded>> {
    shared.try_borrow_mut().map_err(|_| NibError::new(Code::Busy, "the engine is running another call"))
}

/// Whether this build can run models on WebGPU. Not yet: the engine's GPU backend reads results
/// back synchronously, which the browser cannot do.
#[wasm_bindgen(js_name = webgpuSupported)]
pub fn webgpu_supported() -> bool {
    false
}

#[wasm_bindgen]
pub struct NibEngine {
    shared: Shared,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CompleteRequest {
    prefix: String,
    #[serde(default)]
    suffix: String,
    language: Option<String>,
    mode: Option<String>,
    n: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_tokens: Option<usize>,
    seed: Option<u64>,
    time_limit_ms: Option<f64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    text: String,
    mean_logprob: f32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Timings {
    prompt_tokens: usize,
    reused_tokens: usize,
    evaluated_tokens: usize,
    generated_tokens: usize,
    prompt_ms: f64,
    decode_ms: f64,
    total_ms: f64,
    cache_hit: bool,
    mode: Option<Mode>,
    stop: Option<nib_engine::complete::StopReason>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Completion {
    candidates: Vec<Candidate>,
    timings: Timings,
    cancelled: bool,
}

#[derive(Serialize)]
struct Logits {
    ids: Vec<u32>,
    top: Vec<(u32, f32)>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bench {
    prompt_tokens: usize,
    gen_tokens: usize,
    prefill_ms: f64,
    decode_ms: f64,
    prefill_tok_s: f64,
    decode_tok_s: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    backend: &'static str,
    adapter: String,
    n_layers: usize,
    vocab: usize,
    ctx_len: usize,
    prompt_format: String,
}

fn to_js<T: Serialize>(v: &T) -> JsResult<JsValue> {
    // Maps as plain objects, so the worker can post them as they are.
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    v.serialize(&ser).map_err(|e| NibError::new(Code::Internal, format!("result to JS: {e}")).into())
}

fn from_js<T: for<'de> Deserialize<'de>>(v: JsValue, what: &str) -> NibResult<T> {
    serde_wasm_bindgen::from_value(v).map_err(|e| NibError::invalid(format!("{what}: {e}")))
}

#[wasm_bindgen]
impl NibEngine {
    /// Builds the engine from a finished download (`backend`: "cpu"; "webgpu" is refused with
    /// `gpu_unavailable` until the engine's GPU backend runs in the browser).
    /// The loader is emptied only on success, so that `"auto"` can try WebGPU and then the CPU
    /// with the same bytes.
    pub fn load(loader: &mut ModelLoader, backend: &str) -> JsResult<NibEngine> {
        let loaded = match backend {
            "cpu" => {
                let bytes = loader.take_bytes()?;
                // One thread: an embedded widget cannot require cross-origin isolation.
                let model = Model::load_cpu(ModelBytes::Owned(bytes), 1).map_err(NibError::from_load)?;
                let mut c = Completer::new(model, CompleterConfig::default()).map_err(NibError::from_load)?;
                c.set_clock(Box::new(now_ms));
                Loaded::Cpu(c)
            }
            "webgpu" if !webgpu_supported() => {
                return Err(NibError::new(Code::GpuUnavailable, "this build of nib has no WebGPU backend yet; use backend \"cpu\"").into())
            }
            other => return Err(NibError::invalid(format!("unknown backend {other:?} (cpu or webgpu)")).into()),
        };
        Ok(NibEngine { shared: Rc::new(RefCell::new(loaded)) })
    }

    /// What runs the model: "cpu" or "webgpu".
    pub fn backend(&self) -> String {
        match &*self.shared.borrow() {
            Loaded::Cpu(_) => "cpu".into(),
        }
    }

    /// The model and the backend in a few numbers, for diagnostics.
    pub fn info(&self) -> JsResult<JsValue> {
        let loaded = borrow(&self.shared)?;
        let info = with_model!(&*loaded, c => {
            let cfg = c.model().config();
            Info {
                backend: "cpu",
                adapter: c.model().backend.name(),
                n_layers: cfg.n_layers,
                vocab: cfg.vocab,
                ctx_len: cfg.ctx_len,
                prompt_format: if c.format().fim().is_some() { "fim".into() } else { "prefix-only".into() },
            }
        });
        to_js(&info)
    }

    /// Token ids of `text` (BOS only if the model asks); `special`: parse control-token spellings.
    pub fn tokenize(&self, text: &str, special: bool) -> JsResult<Vec<u32>> {
        let loaded = borrow(&self.shared)?;
        let ids = with_model!(&*loaded, c => if special { c.model().tokenizer.encode_with_special(text) } else { c.model().tokenizer.encode(text) });
        Ok(ids.map_err(NibError::from_run)?)
    }

    /// The text of token ids.
    pub fn detokenize(&self, ids: &[u32]) -> JsResult<String> {
        let loaded = borrow(&self.shared)?;
        Ok(with_model!(&*loaded, c => c.model().tokenizer.decode(ids)).map_err(NibError::from_run)?)
    }

    /// `{ids, top: [[id, logit], …]}`: the raw next-token logits after the whole prompt,
    /// highest first (the CLI's `nib logits`).
    pub fn logits(&self, prompt: &str, top: usize) -> JsResult<JsValue> {
        let loaded = borrow(&self.shared)?;
        let out = with_model!(&*loaded, c => {
            let m = c.model();
            let ids = m.tokenizer.encode(prompt).map_err(NibError::from_run)?;
            let mut s = m.session(ids.len()).map_err(NibError::from_run)?;
            let logits = m.eval(&mut s, &ids).map_err(NibError::from_run)?;
            Logits { top: top_k(&logits, top), ids }
        });
        to_js(&out)
    }

    /// Starts a generation; the caller runs it with `step()`.
    pub fn generate(&self, prompt: &str, options: JsValue) -> JsResult<Generation> {
        let opts: GenOptions = if options.is_undefined() || options.is_null() { GenOptions::default() } else { from_js(options, "generate options")? };
        Ok(Generation::start(Rc::clone(&self.shared), prompt, opts)?)
    }

    /// One completion request through the engine's pipeline; `on_partial` gets the best
    /// candidate's text as it grows. Runs to the end: the worker cannot see an abort while
    /// wasm runs (no SharedArrayBuffer), so it bounds a request with `timeLimitMs` instead.
    pub fn complete(&self, request: JsValue, on_partial: Option<js_sys::Function>) -> JsResult<JsValue> {
        let r: CompleteRequest = from_js(request, "complete request")?;
        let mode = match r.mode.as_deref() {
            None => None,
            Some(m) => Some(Mode::parse(m).ok_or_else(|| NibError::invalid(format!("mode {m:?} is not line or block")))?),
        };
        let mut req = Request::new(r.prefix, r.suffix);
        req.language = r.language;
        req.mode = mode;
        req.n = r.n.unwrap_or(1);
        req.temperature = r.temperature;
        req.top_p = r.top_p;
        req.max_tokens = r.max_tokens;
        req.seed = r.seed.unwrap_or(0);
        req.time_limit_ms = r.time_limit_ms;
        let mut loaded = borrow(&self.shared)?;
        let mut partial = |text: &str| {
            if let Some(f) = &on_partial {
                // A throwing callback must not stop the completion.
                let _ = f.call1(&JsValue::NULL, &JsValue::from_str(text));
            }
        };
        let resp = with_model!(&mut *loaded, c => c.complete_with(&req, &|| false, &mut partial)).map_err(NibError::from_run)?;
        let t = resp.timings;
        to_js(&Completion {
            candidates: resp.candidates.into_iter().map(|c| Candidate { text: c.text, mean_logprob: c.mean_logprob }).collect(),
            timings: Timings {
                prompt_tokens: t.prompt_tokens,
                reused_tokens: t.reused_tokens,
                evaluated_tokens: t.evaluated_tokens,
                generated_tokens: t.generated_tokens,
                prompt_ms: t.prompt_ms,
                decode_ms: t.decode_ms,
                total_ms: t.total_ms,
                cache_hit: t.cache_hit,
                mode: t.mode,
                stop: t.stop,
            },
            cancelled: resp.cancelled,
        })
    }

    /// Prefill of the first `prompt_tokens` tokens of `text` in one pass, then `gen_tokens`
    /// greedy tokens one at a time (the CLI's `nib bench`, one run).
    pub fn bench(&self, text: &str, prompt_tokens: usize, gen_tokens: usize) -> JsResult<JsValue> {
        let loaded = borrow(&self.shared)?;
        let out = with_model!(&*loaded, c => {
            let m = c.model();
            let mut ids = m.tokenizer.encode(text).map_err(NibError::from_run)?;
            if ids.len() < prompt_tokens || prompt_tokens == 0 {
                return Err(NibError::invalid(format!("the bench text has {} tokens, {prompt_tokens} asked", ids.len())).into());
            }
            ids.truncate(prompt_tokens);
            let mut s = m.session(prompt_tokens + gen_tokens).map_err(NibError::from_run)?;
            let t0 = now_ms();
            let mut logits = m.eval(&mut s, &ids).map_err(NibError::from_run)?;
            let t1 = now_ms();
            let mut sampler = Sampler::greedy();
            for _ in 0..gen_tokens {
                let next = sampler.sample(&logits).map_err(NibError::from_run)?;
                ids.push(next.id);
                logits = m.eval(&mut s, &ids).map_err(NibError::from_run)?;
            }
            let t2 = now_ms();
            Bench {
                prompt_tokens,
                gen_tokens,
                prefill_ms: t1 - t0,
                decode_ms: t2 - t1,
                prefill_tok_s: prompt_tokens as f64 / ((t1 - t0) / 1e3),
                decode_tok_s: gen_tokens as f64 / ((t2 - t1) / 1e3),
            }
        });
        to_js(&out)
    }
}
