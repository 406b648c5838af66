//! A loaded model behind one handle, whatever backend runs it: [`Loaded`] is an enum over the
//! backends, and [`with_model!`] runs one body on either. Every call that evaluates the model
//! returns a Promise: WebGPU results can only be awaited in the browser (on the CPU the Promise
//! is settled by the time it is returned).

use std::cell::RefCell;
use std::rc::Rc;

use nib_engine::backend::cpu::CpuBackend;
use nib_engine::backend::gpu::{load_model_on, Gpu, GpuBackend};
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
#[allow(clippy::large_enum_variant)] // one per engine: boxing would buy nothing
pub(crate) enum Loaded {
    Cpu(Completer<CpuBackend>),
    Gpu(Completer<GpuBackend>),
}

/// Runs `$body` with `$c` bound to the completer, whatever its backend.
macro_rules! with_model {
    ($loaded:expr, $c:ident => $body:expr) => {
        match $loaded {
            Loaded::Cpu($c) => $body,
            Loaded::Gpu($c) => $body,
        }
    };
}

pub(crate) type Shared = Rc<RefCell<Loaded>>;

/// Borrows the model for one call. A JS callback that calls back into the engine while it
/// runs (from `complete`'s `onPartial`) gets `busy` instead of a panic.
pub(crate) fn borrow(shared: &Shared) -> NibResult<std::cell::RefMut<'_, Loaded>> {
    shared.try_borrow_mut().map_err(|_| NibError::new(Code::Busy, "the engine is running another call"))
}

/// Whether this build can run models on WebGPU (whether the browser can is
/// [`GpuDevice::open`]'s answer).
#[wasm_bindgen(js_name = webgpuSupported)]
pub fn webgpu_supported() -> bool {
    true
}

/// A WebGPU device opened before the model is handed over, so that when the browser has none
/// the model's bytes stay in their loader for the CPU.
#[wasm_bindgen]
pub struct GpuDevice {
    gpu: Option<Gpu>,
}

#[wasm_bindgen]
impl GpuDevice {
    /// The browser's WebGPU adapter and a device with the limits nib needs, or `gpu_unavailable`.
    pub async fn open() -> Result<GpuDevice, JsValue> {
        match Gpu::new_async().await {
            Ok(gpu) => Ok(GpuDevice { gpu: Some(gpu) }),
            Err(e) => Err(NibError::from_load(e).into()),
        }
    }

    /// Whether the adapter is a CPU implementation (SwiftShader): correct but slower than the
    /// wasm CPU backend, so `"auto"` does not take it.
    #[wasm_bindgen(js_name = isSoftware)]
    pub fn is_software(&self) -> bool {
        self.gpu.as_ref().is_some_and(|g| g.is_software())
    }

    /// The adapter and the limits the device got.
    pub fn describe(&self) -> String {
        self.gpu.as_ref().map_or_else(|| "(handed to a model)".into(), |g| g.describe())
    }
}

/// Runs `body` as a Promise: JS sees its error as the `NibError` it is.
fn promise(body: impl std::future::Future<Output = NibResult<JsValue>> + 'static) -> js_sys::Promise {
    wasm_bindgen_futures::future_to_promise(async move { body.await.map_err(JsValue::from) })
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

fn to_js<T: Serialize>(v: &T) -> NibResult<JsValue> {
    // Maps as plain objects, so the worker can post them as they are.
    let ser = serde_wasm_bindgen::Serializer::json_compatible();
    v.serialize(&ser).map_err(|e| NibError::new(Code::Internal, format!("result to JS: {e}")))
}

fn from_js<T: for<'de> Deserialize<'de>>(v: JsValue, what: &str) -> NibResult<T> {
    serde_wasm_bindgen::from_value(v).map_err(|e| NibError::invalid(format!("{what}: {e}")))
}

#[wasm_bindgen]
impl NibEngine {
    /// Builds the engine from a finished download on the CPU (`backend`: "cpu"; WebGPU goes
    /// through [`NibEngine::load_on_gpu`]). The loader is emptied only on success.
    pub fn load(loader: &mut ModelLoader, backend: &str) -> JsResult<NibEngine> {
        if backend != "cpu" {
            return Err(NibError::invalid(format!("backend {backend:?}: load takes \"cpu\"; WebGPU loads with loadOnGpu")).into());
        }
        let bytes = loader.take_bytes()?;
        // One thread: an embedded widget cannot require cross-origin isolation.
        let model = Model::load_cpu(ModelBytes::Owned(bytes), 1).map_err(NibError::from_load)?;
        // Warm-up, as llama.cpp does after loading: a 4-token prefill and one decode step.
        // V8 runs wasm in its baseline compiler first and tiers hot functions up in the
        // background; without this the first request after a load ran 0.3-0.4 s slower
        // (one token alone left about 0.1 s of it: the prefill's attention kernels differ).
        let ids = [0u32; 5]; // any ids below the vocabulary size
        let mut s = model.session(ids.len()).map_err(NibError::from_load)?;
        model.eval(&mut s, &ids[..4]).map_err(NibError::from_load)?;
        model.eval(&mut s, &ids).map_err(NibError::from_load)?;
        drop(s);
        Ok(NibEngine::with(Loaded::Cpu(completer(model)?)))
    }

    /// Builds the engine on an opened WebGPU device: a Promise of the engine, rejected with
    /// the device's error (`gpu_device_lost`, `out_of_memory`, …) if uploading fails.
    #[wasm_bindgen(js_name = loadOnGpu)]
    pub fn load_on_gpu(loader: &mut ModelLoader, device: &mut GpuDevice) -> JsResult<js_sys::Promise> {
        let gpu = device.gpu.take().ok_or_else(|| NibError::invalid("this GPU device already holds a model"))?;
        let bytes = loader.take_bytes()?;
        Ok(promise(async move {
            let model = load_model_on(gpu, ModelBytes::Owned(bytes)).await.map_err(NibError::from_load)?;
            Ok(NibEngine::with(Loaded::Gpu(completer(model)?)).into())
        }))
    }

    /// Destroys the WebGPU device, as a GPU reset would, for the test that checks a lost
    /// device falls back to the CPU. A no-op on the CPU backend.
    #[wasm_bindgen(js_name = "__testLoseDevice")]
    pub fn test_lose_device(&self) -> JsResult<()> {
        if let Loaded::Gpu(c) = &*borrow(&self.shared)? {
            c.model().backend.lose_device();
        }
        Ok(())
    }

    /// What runs the model: "cpu" or "webgpu".
    pub fn backend(&self) -> String {
        match self.shared.try_borrow().as_deref() {
            Ok(Loaded::Cpu(_)) => "cpu".into(),
            Ok(Loaded::Gpu(_)) => "webgpu".into(),
            Err(_) => "busy".into(),
        }
    }

    /// The model and the backend in a few numbers, for diagnostics.
    pub fn info(&self) -> JsResult<JsValue> {
        let loaded = borrow(&self.shared)?;
        let info = with_model!(&*loaded, c => {
            let cfg = c.model().config();
            Info {
                backend: if matches!(&*loaded, Loaded::Gpu(_)) { "webgpu" } else { "cpu" },
                adapter: c.model().backend.name(),
                n_layers: cfg.n_layers,
                vocab: cfg.vocab,
                ctx_len: cfg.ctx_len,
                prompt_format: if c.format().fim().is_some() { "fim".into() } else { "prefix-only".into() },
            }
        });
        Ok(to_js(&info)?)
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

    /// A Promise of `{ids, top: [[id, logit], …]}`: the raw next-token logits after the whole
    /// prompt, highest first (the CLI's `nib logits`).
    // The RefCell borrow held across awaits is the engine's lock: a call that arrives while this
    // one waits on the GPU gets `busy` (the worker sends one request at a time anyway).
    #[allow(clippy::await_holding_refcell_ref)]
    pub fn logits(&self, prompt: String, top: usize) -> js_sys::Promise {
        let shared = Rc::clone(&self.shared);
        promise(async move {
            let loaded = borrow(&shared)?;
            let out = with_model!(&*loaded, c => {
                let m = c.model();
                let ids = m.tokenizer.encode(&prompt).map_err(NibError::from_run)?;
                let mut s = m.session(ids.len()).map_err(NibError::from_run)?;
                let logits = m.eval_async(&mut s, &ids).await.map_err(NibError::from_run)?;
                Logits { top: top_k(&logits, top), ids }
            });
            to_js(&out)
        })
    }

    /// Starts a generation; the caller runs it with `step()`.
    pub fn generate(&self, prompt: &str, options: JsValue) -> JsResult<Generation> {
        let opts: GenOptions = if options.is_undefined() || options.is_null() { GenOptions::default() } else { from_js(options, "generate options")? };
        Ok(Generation::start(Rc::clone(&self.shared), prompt, opts)?)
    }

    /// A Promise of one completion request through the engine's pipeline; `on_partial` gets the
    /// best candidate's text as it grows. Before every token the pipeline awaits `pause()` (the
    /// worker's way back to its event loop) and then checks `signal.aborted`, so an abort stops
    /// it within a token (`cancelled: true`).
    #[allow(clippy::await_holding_refcell_ref)] // the engine's lock, as in `logits`
    pub fn complete(&self, request: JsValue, on_partial: Option<js_sys::Function>, signal: JsValue, pause: Option<js_sys::Function>) -> JsResult<js_sys::Promise> {
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
        let shared = Rc::clone(&self.shared);
        Ok(promise(async move {
            let mut loaded = borrow(&shared)?;
            let mut partial = |text: &str| {
                if let Some(f) = &on_partial {
                    // A throwing callback must not stop the completion.
                    let _ = f.call1(&JsValue::NULL, &JsValue::from_str(text));
                }
            };
            let aborted = || js_sys::Reflect::get(&signal, &JsValue::from_str("aborted")).ok().and_then(|v| v.as_bool()).unwrap_or(false);
            let mut pause_now = || {
                let p = pause.as_ref().and_then(|f| f.call0(&JsValue::NULL).ok()).and_then(|v| v.dyn_into::<js_sys::Promise>().ok());
                async move {
                    if let Some(p) = p {
                        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
                    }
                }
            };
            let resp = with_model!(&mut *loaded, c => c.complete_async(&req, &aborted, &mut partial, &mut pause_now).await).map_err(NibError::from_run)?;
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
        }))
    }

    /// A Promise of one bench run: prefill of the first `prompt_tokens` tokens of `text` in one
    /// pass, then `gen_tokens` greedy tokens one at a time (the CLI's `nib bench`).
    #[allow(clippy::await_holding_refcell_ref)] // the engine's lock, as in `logits`
    pub fn bench(&self, text: String, prompt_tokens: usize, gen_tokens: usize) -> js_sys::Promise {
        let shared = Rc::clone(&self.shared);
        promise(async move {
            let loaded = borrow(&shared)?;
            let out = with_model!(&*loaded, c => {
                let m = c.model();
                let mut ids = m.tokenizer.encode(&text).map_err(NibError::from_run)?;
                if ids.len() < prompt_tokens || prompt_tokens == 0 {
                    return Err(NibError::invalid(format!("the bench text has {} tokens, {prompt_tokens} asked", ids.len())));
                }
                ids.truncate(prompt_tokens);
                let mut s = m.session(prompt_tokens.saturating_add(gen_tokens)).map_err(NibError::from_run)?;
                let t0 = now_ms();
                let mut logits = m.eval_async(&mut s, &ids).await.map_err(NibError::from_run)?;
                let t1 = now_ms();
                let mut sampler = Sampler::greedy();
                for _ in 0..gen_tokens {
                    let next = sampler.sample(&logits).map_err(NibError::from_run)?;
                    ids.push(next.id);
                    logits = m.eval_async(&mut s, &ids).await.map_err(NibError::from_run)?;
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
        })
    }
}

/// The completer that owns a loaded model, with the browser's clock.
fn completer<B: Backend>(model: Model<B>) -> NibResult<Completer<B>> {
    let mut c = Completer::new(model, CompleterConfig::default()).map_err(NibError::from_load)?;
    c.set_clock(Box::new(now_ms));
    Ok(c)
}

impl NibEngine {
    fn with(loaded: Loaded) -> NibEngine {
        NibEngine { shared: Rc::new(RefCell::new(loaded)) }
    }
}
