//! `nib`: the native command line of the nib engine, for tests, evaluation and benchmarks.
//! Every command prints one JSON object on stdout; errors print one line on stderr and exit 1
//! (2 for a usage error). The contract is in shared/design/target.md.

mod args;
mod bench;
mod bench_complete;
mod complete;
mod eval;

use std::io::Read;
use std::process::ExitCode;

use nib_engine::backend::cpu::CpuBackend;
use nib_engine::backend::gpu::GpuBackend;
use nib_engine::backend::Backend;
use nib_engine::sample::{self, Sampler, SamplerConfig};
use nib_engine::gguf::ModelBytes;
use nib_engine::{Error, Model};
use serde_json::json;

use args::{Args, UsageError};

const DEFAULT_MODEL: &str = "models/default/SmolLM2-135M-Instruct.Q4_1.gguf";
/// Context a CLI session allocates unless the prompt needs more.
const DEFAULT_CTX: usize = 2048;

const USAGE: &str = "usage: nib <tokenize|logits|generate|bench|bench-complete|complete|eval> [--model PATH] [--backend cpu|gpu|auto] [--threads N]
       [--quantize q8_0|q4_0]       --model may be a Hugging Face checkpoint directory (config.json,
                                    tokenizer.json, *.safetensors); --quantize quantizes its weights on load
  nib tokenize                      stdin text -> {\"ids\":[...]}
  nib logits [--top K]              stdin prompt -> {\"ids\":[...],\"top\":[[id,logit],...]}
  nib generate --max-tokens N [--temperature T] [--top-p P] [--top-k K] [--seed S]
                                    stdin prompt -> {\"ids\":[...],\"text\":\"...\"}
  nib bench [--prompt-tokens N] [--gen-tokens N] [--runs R] [--prompt-file F]
                                    -> {\"backend\",\"adapter\",\"threads\",\"prefill_tok_s\",\"decode_tok_s\"}
  nib bench-complete [--prefix-file F] [--language L] [--prefix-tokens N] [--runs R]
                                    -> line-mode latency p50/p95: cold prompt vs one-character edit
  nib complete --prefix-file F [--suffix-file F] [--language L] [--mode line|block] [--n N]
               [--max-tokens N] [--temperature T] [--seed S] [--no-fim] [--show-prompt]
                                    -> {\"candidates\":[{\"text\",\"mean_logprob\"}],\"timings\":{...}}
                                       (--show-prompt adds \"prompt_ids\":[...], the ids the model saw)
  nib eval humaneval|infill-single-line [--limit N] [--n-samples K] [--temperature T]
               [--max-tokens N] [--timeout S] [--data DIR]   -> pass@k / exact-match JSON";

enum Failure {
    Usage(String),
    Engine(Error),
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Self {
        Failure::Usage(e.0)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Engine(e)
    }
}

/// A remark for stderr, printed only when the command succeeds.
static NOTE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn note(text: String) {
    let _ = NOTE.set(text);
}

fn main() -> ExitCode {
    // Mesa's Vulkan drivers print an error on stderr when XDG_RUNTIME_DIR is unset (headless
    // machines, CI), and `--backend auto` opens Vulkan to look for a GPU: give them a directory
    // so that stderr keeps to nib's own one line. Nothing else is running yet.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    match run(std::env::args().skip(1).collect()) {
        Ok(out) => {
            if let Some(n) = NOTE.get() {
                eprintln!("nib: {n}");
            }
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("nib: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Engine(e)) => {
            eprintln!("nib: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A command with its options parsed, before the model is loaded.
enum Command {
    Tokenize,
    Logits { top: usize },
    Generate { max_tokens: usize, sampler: SamplerConfig },
    Bench(bench::Options),
    Complete(complete::Options),
    BenchComplete(bench_complete::Options),
    Eval(eval::Options),
}

fn parse_command(name: &str, eval_task: Option<&str>, args: &mut Args) -> Result<Command, UsageError> {
    Ok(match name {
        "tokenize" => Command::Tokenize,
        "logits" => Command::Logits { top: args.usize("top")?.unwrap_or(20) },
        "generate" => Command::Generate {
            max_tokens: args.usize("max-tokens")?.ok_or_else(|| UsageError("generate needs --max-tokens N".into()))?,
            sampler: SamplerConfig {
                temperature: args.f32("temperature")?.unwrap_or(0.0),
                top_p: args.f32("top-p")?.unwrap_or(1.0),
                top_k: args.usize("top-k")?.unwrap_or(0),
                seed: args.u64("seed")?.unwrap_or(0),
            },
        },
        "bench" => Command::Bench(bench::Options {
            prompt_tokens: args.usize("prompt-tokens")?.unwrap_or(512),
            gen_tokens: args.usize("gen-tokens")?.unwrap_or(128),
            runs: args.usize("runs")?.unwrap_or(5).max(1),
            prompt_file: args.string("prompt-file")?,
        }),
        "complete" => Command::Complete(complete::Options::parse(args)?),
        "bench-complete" => Command::BenchComplete(bench_complete::Options::parse(args)?),
        "eval" => Command::Eval(eval::Options::parse(args, eval_task)?),
        other => return Err(UsageError(format!("unknown command {other:?}"))),
    })
}

fn run(mut argv: Vec<String>) -> Result<serde_json::Value, Failure> {
    // `eval` names its task in a second word; `Args` knows one command word.
    let eval_task = (argv.first().is_some_and(|a| a == "eval") && argv.get(1).is_some_and(|a| !a.starts_with("--"))).then(|| argv.remove(1));
    let mut args = Args::parse(argv)?;
    let name = args.command.clone().ok_or_else(|| UsageError("no command given".into()))?;
    if name == "help" || args.flag("help") {
        println!("{USAGE}");
        std::process::exit(0);
    }
    let model_path = args.string("model")?.unwrap_or_else(|| DEFAULT_MODEL.into());
    let backend = args.string("backend")?.unwrap_or_else(|| "auto".into());
    let threads = args.usize("threads")?.unwrap_or_else(default_threads);
    let quantize = args.string("quantize")?.map(|q| nib_engine::hf::parse_quantize(&q).map_err(|e| UsageError(e.to_string()))).transpose()?;
    let command = parse_command(&name, eval_task.as_deref(), &mut args)?;
    args.finish()?;
    let ctx = Ctx { model_path: &model_path, threads, quantize };
    match backend.as_str() {
        "cpu" => {}
        "gpu" => return execute_gpu(load_gpu(&ctx)?, command, &ctx),
        // The GPU when there is a real one; a software adapter (lavapipe, SwiftShader) is slower
        // than the CPU backend, so auto takes the CPU then, and says so (after the result, so
        // that a failure stays one line).
        "auto" => match nib_engine::backend::gpu::probe_adapter() {
            Some((_, false)) => match load_gpu(&ctx) {
                Ok(m) => return execute_gpu(m, command, &ctx),
                Err(e @ (Error::InvalidArgument(_) | Error::Gguf(_) | Error::Safetensors(_))) => return Err(e.into()),
                Err(e) => note(format!("the GPU failed ({e}); using the CPU backend")),
            },
            Some((name, true)) => note(format!("only a software GPU adapter ({name}); using the CPU backend")),
            None => note("no GPU adapter; using the CPU backend".into()),
        },
        other => return Err(UsageError(format!("--backend {other:?}: expected cpu, gpu or auto")).into()),
    }
    let model = load(&ctx)?;
    match command {
        Command::Complete(opts) => Ok(complete::run(model, &opts)?),
        Command::BenchComplete(opts) => Ok(bench_complete::run(model, ctx.threads, &|| load(&ctx), &opts)?),
        Command::Eval(opts) => Ok(eval::run(model, &opts)?),
        other => execute(&model, other),
    }
}

struct Ctx<'a> {
    model_path: &'a str,
    threads: usize,
    /// `--quantize`: for a Hugging Face checkpoint.
    quantize: Option<nib_engine::quant::GgmlType>,
}

/// Every command on the GPU backend (a reload for bench-complete's cold runs opens the GPU again).
fn execute_gpu(model: Model<GpuBackend>, command: Command, ctx: &Ctx) -> Result<serde_json::Value, Failure> {
    match command {
        Command::Complete(opts) => Ok(complete::run(model, &opts)?),
        Command::BenchComplete(opts) => Ok(bench_complete::run(model, 1, &|| load_gpu(ctx), &opts)?),
        Command::Eval(opts) => Ok(eval::run(model, &opts)?),
        other => execute(&model, other),
    }
}

/// The commands that only need a model, on any backend.
fn execute<B: Backend>(model: &Model<B>, command: Command) -> Result<serde_json::Value, Failure> {
    match command {
        Command::Tokenize => Ok(json!({ "ids": model.tokenizer.encode(&stdin_text()?)? })),
        Command::Logits { top } => {
            let ids = model.tokenizer.encode(&stdin_text()?)?;
            let mut s = model.session(ids.len().max(1))?;
            let logits = model.eval(&mut s, &ids)?;
            let top: Vec<_> = sample::top_k(&logits, top).into_iter().map(|(id, l)| json!([id, l])).collect();
            Ok(json!({ "ids": ids, "top": top }))
        }
        Command::Generate { max_tokens, sampler } => {
            let mut sampler = Sampler::new(sampler)?;
            let prompt = model.tokenizer.encode(&stdin_text()?)?;
            let mut s = model.session((prompt.len() + max_tokens).max(DEFAULT_CTX))?;
            let stop = model.tokenizer.end_of_generation();
            let out = model.generate(&mut s, &prompt, max_tokens, &mut sampler, &stop, |_| true)?;
            let ids: Vec<u32> = out.iter().map(|t| t.id).collect();
            let text = model.tokenizer.decode(&ids)?;
            let logprobs: Vec<f32> = out.iter().map(|t| t.logprob).collect();
            Ok(json!({ "ids": ids, "text": text, "logprobs": logprobs }))
        }
        Command::Bench(opts) => Ok(bench::run(model, &opts)?),
        Command::Complete(_) | Command::BenchComplete(_) | Command::Eval(_) => {
            Err(Error::Unsupported("this command needs the CPU backend".into()).into())
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn model_file(path: &str) -> Result<&std::path::Path, Error> {
    let p = std::path::Path::new(path);
    if !p.is_file() {
        let hint = if path == DEFAULT_MODEL { " (run `cargo xtask setup` to fetch the default model)" } else { "" };
        return Err(Error::InvalidArgument(format!("model file {path:?} not found{hint}")));
    }
    Ok(p)
}

/// The model's GGUF bytes: the file memory-mapped, or a Hugging Face checkpoint directory
/// converted in memory.
fn model_bytes(ctx: &Ctx) -> Result<ModelBytes, Error> {
    let dir = std::path::Path::new(ctx.model_path);
    if nib_engine::hf::is_checkpoint(dir) {
        return nib_engine::hf::load_dir(dir, ctx.quantize);
    }
    if dir.is_dir() {
        return Err(Error::InvalidArgument(format!("{:?} is a directory without config.json (a Hugging Face checkpoint has config.json, tokenizer.json and safetensors)", ctx.model_path)));
    }
    if ctx.quantize.is_some() {
        return Err(Error::InvalidArgument("--quantize applies to a Hugging Face checkpoint directory (a GGUF file is already quantized)".into()));
    }
    ModelBytes::open(model_file(ctx.model_path)?)
}

fn load(ctx: &Ctx) -> Result<Model<CpuBackend>, Error> {
    Model::load_cpu(model_bytes(ctx)?, ctx.threads)
}

fn load_gpu(ctx: &Ctx) -> Result<Model<GpuBackend>, Error> {
    nib_engine::backend::gpu::load_model(model_bytes(ctx)?)
}

fn stdin_text() -> Result<String, Error> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|e| Error::InvalidArgument(format!("stdin is not valid UTF-8 (byte {})", e.utf8_error().valid_up_to())))
}
