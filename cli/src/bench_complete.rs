//! `nib bench-complete`: latency of `nib complete` requests as an editor makes them.
//!
//! A real-code prefix of about `--prefix-tokens` tokens is cut mid-line; the requests then
//! type the file's own next characters, one per request (`prefix[..cursor + r]`), in line mode
//! with the typed-through cache off, so every request runs the model:
//! - `cold`: a fresh model and [`Completer`] for each request: the whole prompt is evaluated;
//! - `edit`: one [`Completer`] across the requests: a one-character edit at the end of the
//!   prefix re-evaluates only the last token or two (KV reuse).
//!
//! Both series complete the same prompts, so the difference is the prompt evaluation saved.

use std::time::Instant;

use nib_engine::backend::Backend;
use nib_engine::complete::{Completer, CompleterConfig, Mode, Request, Response};
use nib_engine::{Error, Model};
use serde_json::{json, Value};

use crate::args::{Args, UsageError};

/// Real Python code in this repository, used unless `--prefix-file` is given.
const DEFAULT_CODE: &str = include_str!("../../tests/fixtures/make_logit_fixtures.py");

pub struct Options {
    prefix_file: Option<String>,
    language: String,
    prefix_tokens: usize,
    runs: usize,
}

impl Options {
    pub fn parse(args: &mut Args) -> Result<Self, UsageError> {
        let prefix_file = args.string("prefix-file")?;
        let language = args.string("language")?.unwrap_or_else(|| if prefix_file.is_none() { "python".into() } else { String::new() });
        let runs = args.usize("runs")?.unwrap_or(20);
        if runs == 0 {
            return Err(UsageError("--runs must be at least 1".into()));
        }
        Ok(Options { prefix_file, language, prefix_tokens: args.usize("prefix-tokens")?.unwrap_or(1000), runs })
    }
}

/// Nearest-rank percentile of `v` (sorted in place); NaN when empty.
fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.saturating_sub(1)).copied().unwrap_or(f64::NAN)
}

/// The byte offset of the cursor: after about `tokens` tokens of `text`, moved forward to the
/// middle of the next line that has code on it, so that line mode has a line to finish.
fn cursor_after<B: Backend>(model: &Model<B>, text: &str, tokens: usize) -> Result<usize, Error> {
    let ids = model.tokenizer.encode(text)?;
    let head = model.tokenizer.decode(ids.get(..tokens.min(ids.len())).unwrap_or_default())?;
    let mut at = head.len().min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    // Skip the rest of the line the token count ended in.
    let mut line_start = at + text.get(at..).and_then(|rest| rest.find('\n')).map_or(text.len() - at, |i| i + 1);
    for line in text.get(line_start..).unwrap_or_default().split_inclusive('\n') {
        let code = line.trim();
        // A long line: the cursor in its middle has real code on both sides.
        if code.len() >= 40 {
            let indent = line.len() - line.trim_start().len();
            let mut mid = line_start + indent + code.len() / 2;
            while !text.is_char_boundary(mid) {
                mid -= 1;
            }
            return Ok(mid);
        }
        line_start += line.len();
    }
    Err(Error::InvalidArgument("the bench text has no code line long enough after the prefix".into()))
}

/// Latencies and token counts of one series of requests.
#[derive(Default)]
struct Series {
    total_ms: Vec<f64>,
    prompt_ms: Vec<f64>,
    decode_ms: Vec<f64>,
    evaluated: Vec<f64>,
    generated: Vec<f64>,
    prompt_tokens: Vec<f64>,
}

impl Series {
    fn push(&mut self, wall_ms: f64, r: &Response) {
        self.total_ms.push(wall_ms);
        self.prompt_ms.push(r.timings.prompt_ms);
        self.decode_ms.push(r.timings.decode_ms);
        self.evaluated.push(r.timings.evaluated_tokens as f64);
        self.generated.push(r.timings.generated_tokens as f64);
        self.prompt_tokens.push(r.timings.prompt_tokens as f64);
    }

    fn summary(mut self) -> Value {
        json!({
            "requests": self.total_ms.len(),
            "p50_ms": percentile(&mut self.total_ms, 50.0),
            "p95_ms": percentile(&mut self.total_ms, 95.0),
            "max_ms": percentile(&mut self.total_ms, 100.0),
            "prompt_ms_p50": percentile(&mut self.prompt_ms, 50.0),
            "decode_ms_p50": percentile(&mut self.decode_ms, 50.0),
            "evaluated_tokens_p50": percentile(&mut self.evaluated, 50.0),
            "evaluated_tokens_max": percentile(&mut self.evaluated, 100.0),
            "generated_tokens_p50": percentile(&mut self.generated, 50.0),
            "prompt_tokens_p50": percentile(&mut self.prompt_tokens, 50.0),
        })
    }
}

fn config() -> CompleterConfig {
    // `nib complete`'s settings: no typed-through cache, so every request runs the model.
    CompleterConfig { cache_entries: 0, ..CompleterConfig::default() }
}

/// `load` opens a fresh model (the cold series makes one per request).
pub fn run<B: Backend>(model: Model<B>, threads: usize, load: &dyn Fn() -> Result<Model<B>, Error>, opts: &Options) -> Result<Value, Error> {
    let text = match &opts.prefix_file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("cannot read {path:?}: {e}")))?,
        None => DEFAULT_CODE.to_string(),
    };
    let cursor = cursor_after(&model, &text, opts.prefix_tokens)?;
    // Request r (0 = warm-up) has the prefix up to the cursor plus the next r typed characters.
    let mut ends = vec![cursor];
    for (i, c) in text.get(cursor..).unwrap_or_default().char_indices().take(opts.runs) {
        ends.push(cursor + i + c.len_utf8());
    }
    if ends.len() <= opts.runs {
        return Err(Error::InvalidArgument(format!("the bench text has fewer than {} characters after the cursor", opts.runs)));
    }
    let request = |end: usize| -> Result<Request, Error> {
        let prefix = text.get(..end).ok_or_else(|| Error::InvalidArgument("cursor off a character boundary".into()))?;
        Ok(Request { language: Some(opts.language.clone()), mode: Some(Mode::Line), ..Request::new(prefix, "") })
    };
    let timed = |c: &mut Completer<B>, req: &Request| -> Result<(f64, Response), Error> {
        let t = Instant::now();
        let r = c.complete(req)?;
        Ok((t.elapsed().as_secs_f64() * 1e3, r))
    };

    // Edit series: one completer; the warm-up request fills the KV cache (and faults in the
    // weights), then each request adds one typed character.
    let mut completer = Completer::new(model, config())?;
    let (_, warm) = timed(&mut completer, &request(cursor)?)?;
    let mut edit = Series::default();
    let mut examples = Vec::new();
    for &end in ends.iter().skip(1) {
        let (ms, r) = timed(&mut completer, &request(end)?)?;
        if examples.len() < 3 {
            examples.push(json!({ "typed": text.get(cursor..end), "candidate": r.candidates.first().map(|c| c.text.clone()) }));
        }
        edit.push(ms, &r);
    }
    drop(completer);

    let mut cold = Series::default();
    for &end in ends.iter().skip(1) {
        let mut fresh = Completer::new(load()?, config())?;
        let (ms, r) = timed(&mut fresh, &request(end)?)?;
        cold.push(ms, &r);
    }
    Ok(json!({
        "threads": threads,
        "language": opts.language,
        "mode": "line",
        "cursor_byte": cursor,
        "line_at_cursor": text.get(..cursor).and_then(|p| p.rsplit('\n').next()),
        "warmup_prompt_tokens": warm.timings.prompt_tokens,
        "cold": cold.summary(),
        "edit": edit.summary(),
        "examples": examples,
    }))
}
