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
use nib_engine::sample::{self, Sampler, SamplerConfig};
use nib_engine::{Error, Model};
use serde_json::json;

use args::{Args, UsageError};

const DEFAULT_MODEL: &str = "models/default/SmolLM2-135M-Instruct.Q4_1.gguf";
/// Context a CLI session allocates unless the prompt needs more.
const DEFAULT_CTX: usize = 2048;

const USAGE: &str = "usage: nib <tokenize|logits|generate|bench|bench-complete|complete|eval> [--model PATH] [--backend cpu|gpu|auto] [--threads N]
  nib tokenize                      stdin text -> {\"ids\":[...]}
  nib logits [--top K]              stdin prompt -> {\"ids\":[...],\"top\":[[id,logit],...]}
  nib generate --max-tokens N [--temperature T] [--top-p P] [--top-k K] [--seed S]
                                    stdin prompt -> {\"ids\":[...],\"text\":\"...\"}
  nib bench [--prompt-tokens N] [--gen-tokens N] [--runs R] [--prompt-file F]
                                    -> {\"backend\",\"adapter\",\"threads\",\"prefill_tok_s\",\"decode_tok_s\"}
  nib bench-complete [--prefix-file F] [--language L] [--prefix-tokens N] [--runs R]
                                    -> line-mode latency p50/p95: cold prompt vs one-character edit
  nib complete --prefix-file F [--suffix-file F] [--language L] [--mode line|block] [--n N]
               [--max-tokens N] [--temperature T] [--seed S] [--no-fim]
                                    -> {\"candidates\":[{\"text\",\"mean_logprob\"}],\"timings\":{...}}
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

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(out) => {
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
    let command = parse_command(&name, eval_task.as_deref(), &mut args)?;
    args.finish()?;
    match backend.as_str() {
        "cpu" | "auto" => {}
        "gpu" => return Err(Error::Unsupported("the GPU backend is not built yet; use --backend cpu".into()).into()),
        other => return Err(UsageError(format!("--backend {other:?}: expected cpu, gpu or auto")).into()),
    }
    let model = load(&model_path, threads)?;
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
        Command::Bench(opts) => Ok(bench::run(&model, &opts)?),
        Command::Complete(opts) => Ok(complete::run(model, &opts)?),
        Command::BenchComplete(opts) => Ok(bench_complete::run(model, threads, &|| load(&model_path, threads), &opts)?),
        Command::Eval(opts) => Ok(eval::run(model, &opts)?),
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn load(path: &str, threads: usize) -> Result<Model<CpuBackend>, Error> {
    let p = std::path::Path::new(path);
    if !p.is_file() {
        let hint = if path == DEFAULT_MODEL { " (run `cargo xtask setup` to fetch the default model)" } else { "" };
        return Err(Error::InvalidArgument(format!("model file {path:?} not found{hint}")));
    }
    Model::open_cpu(p, threads)
}

fn stdin_text() -> Result<String, Error> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|e| Error::InvalidArgument(format!("stdin is not valid UTF-8 (byte {})", e.utf8_error().valid_up_to())))
}
