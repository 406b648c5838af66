//! `nib complete`: one completion request from files, answered as JSON.

use nib_engine::backend::Backend;
use nib_engine::complete::{Completer, CompleterConfig, Mode, Request, MAX_CANDIDATES};
use nib_engine::{Error, Model};
use serde_json::{json, Value};

use crate::args::{Args, UsageError};

pub struct Options {
    prefix_file: String,
    suffix_file: Option<String>,
    language: Option<String>,
    mode: Option<Mode>,
    n: usize,
    max_tokens: Option<usize>,
    temperature: Option<f32>,
    seed: u64,
    fim: bool,
    /// Also print the prompt's token ids (`prompt_ids`): what the model was shown.
    show_prompt: bool,
}

impl Options {
    pub fn parse(args: &mut Args) -> Result<Self, UsageError> {
        let mode = match args.string("mode")? {
            None => None,
            Some(m) => Some(Mode::parse(&m).ok_or_else(|| UsageError(format!("--mode {m:?}: expected line or block")))?),
        };
        let n = args.usize("n")?.unwrap_or(1);
        if n == 0 || n > MAX_CANDIDATES {
            return Err(UsageError(format!("--n {n}: expected 1..={MAX_CANDIDATES}")));
        }
        Ok(Options {
            prefix_file: args.string("prefix-file")?.ok_or_else(|| UsageError("complete needs --prefix-file F".into()))?,
            suffix_file: args.string("suffix-file")?,
            language: args.string("language")?,
            mode,
            n,
            max_tokens: args.usize("max-tokens")?,
            temperature: args.f32("temperature")?,
            seed: args.u64("seed")?.unwrap_or(0),
            fim: !args.flag("no-fim"),
            show_prompt: args.flag("show-prompt"),
        })
    }
}

fn read(path: &str) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("cannot read {path:?}: {e}")))
}

pub fn run<B: Backend>(model: Model<B>, opts: &Options) -> Result<Value, Error> {
    let prefix = read(&opts.prefix_file)?;
    let suffix = opts.suffix_file.as_deref().map(read).transpose()?.unwrap_or_default();
    let mut completer = Completer::new(model, CompleterConfig { fim: opts.fim, cache_entries: 0, ..CompleterConfig::default() })?;
    let req = Request {
        language: opts.language.clone(),
        mode: opts.mode,
        n: opts.n,
        max_tokens: opts.max_tokens,
        temperature: opts.temperature,
        seed: opts.seed,
        ..Request::new(prefix, suffix)
    };
    let prompt_ids = if opts.show_prompt { Some(completer.prompt(&req)?.ids) } else { None };
    let r = completer.complete(&req)?;
    let candidates: Vec<Value> = r.candidates.iter().map(|c| json!({ "text": c.text, "mean_logprob": c.mean_logprob })).collect();
    let mut out = json!({ "candidates": candidates, "timings": r.timings });
    if let Some(ids) = prompt_ids {
        out["prompt_ids"] = json!(ids);
    }
    Ok(out)
}
