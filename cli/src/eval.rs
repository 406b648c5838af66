//! `nib eval humaneval|infill-single-line`: functional correctness on HumanEval (pass@k with
//! the Codex paper's unbiased estimator) and exact match on HumanEval single-line infilling.
//!
//! Completions go through the same stop and post-processing rules as the editor. Each program
//! runs in its own `python3` process with a timeout, without network when `unshare -n` works.
//! Nothing here is tuned on the data: the rules and defaults come from the completion design.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nib_engine::backend::Backend;
use nib_engine::complete::{apply_rules, Completer, CompleterConfig, Cursor, Language, Mode, Request, StopReason};
use nib_engine::{Error, Model};
use serde_json::{json, Value};

use crate::args::{Args, UsageError};

#[derive(Clone, Copy, PartialEq)]
enum Task {
    HumanEval,
    InfillSingleLine,
}

pub struct Options {
    task: Task,
    data: String,
    limit: Option<usize>,
    n_samples: usize,
    temperature: f32,
    max_tokens: usize,
    timeout_s: f64,
    /// Hidden: print each task's prompt ids instead of completing (for an outside engine).
    dump_prompts: bool,
    /// Hidden: a JSON file `{"completions":[{"task_id","ids"}]}` of generated token ids from
    /// another engine, run through the same stop and post-processing rules instead of sampling.
    replay: Option<String>,
}

impl Options {
    pub fn parse(args: &mut Args, task: Option<&str>) -> Result<Self, UsageError> {
        let task = match task {
            Some("humaneval") => Task::HumanEval,
            Some("infill-single-line") => Task::InfillSingleLine,
            other => return Err(UsageError(format!("eval needs humaneval or infill-single-line, got {other:?}"))),
        };
        let n_samples = args.usize("n-samples")?.unwrap_or(1);
        if n_samples == 0 {
            return Err(UsageError("--n-samples must be at least 1".into()));
        }
        let temperature = args.f32("temperature")?.unwrap_or(if n_samples > 1 { 0.8 } else { 0.0 });
        Ok(Options {
            task,
            data: args.string("data")?.unwrap_or_else(|| "../shared/eval".into()),
            limit: args.usize("limit")?,
            n_samples,
            temperature,
            max_tokens: args.usize("max-tokens")?.unwrap_or(300),
            timeout_s: args.f32("timeout")?.map_or(10.0, f64::from),
            dump_prompts: args.flag("dump-prompts"),
            replay: args.string("replay")?,
        })
    }
}

fn read_gz_jsonl(path: &str) -> Result<Vec<Value>, Error> {
    let out = Command::new("gzip").args(["-dc", path]).output()?;
    if !out.status.success() {
        return Err(Error::InvalidArgument(format!("cannot read {path:?}: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8(out.stdout).map_err(|_| Error::InvalidArgument(format!("{path:?} is not UTF-8")))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| Error::InvalidArgument(format!("{path:?}: {e}"))))
        .collect()
}

fn field<'v>(v: &'v Value, name: &str) -> Result<&'v str, Error> {
    v.get(name).and_then(Value::as_str).ok_or_else(|| Error::InvalidArgument(format!("record lacks the string field {name:?}")))
}

/// The unbiased pass@k of the Codex paper: 1 − C(n−c, k)/C(n, k), as a stable product.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if n - c < k {
        return 1.0;
    }
    1.0 - ((n - c + 1)..=n).map(|i| 1.0 - k as f64 / i as f64).product::<f64>()
}

/// Runs `python3` on `program` with a timeout; network-less when `isolate`.
fn passes(program: &str, timeout: Duration, isolate: bool) -> Result<bool, Error> {
    let mut cmd = if isolate {
        let mut c = Command::new("unshare");
        c.args(["-n", "python3", "-"]);
        c
    } else {
        let mut c = Command::new("python3");
        c.arg("-");
        c
    };
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        // A program that exits early closes the pipe; that is its result, not ours.
        let _ = stdin.write_all(program.as_bytes());
    }
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn network_isolation_works() -> bool {
    Command::new("unshare").args(["-n", "true"]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// The token ids another engine generated, by task id, from a `--replay` file.
fn read_replay(path: &str) -> Result<std::collections::HashMap<String, Vec<u32>>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidArgument(format!("cannot read {path:?}: {e}")))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::InvalidArgument(format!("{path:?}: {e}")))?;
    let bad = || Error::InvalidArgument(format!("{path:?}: expected {{\"completions\":[{{\"task_id\",\"ids\"}}]}}"));
    let mut out = std::collections::HashMap::new();
    for c in v.get("completions").and_then(Value::as_array).ok_or_else(bad)? {
        let id = c.get("task_id").and_then(Value::as_str).ok_or_else(bad)?;
        let ids = c.get("ids").and_then(Value::as_array).ok_or_else(bad)?;
        let ids = ids.iter().map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(bad)).collect::<Result<Vec<u32>, Error>>()?;
        out.insert(id.to_string(), ids);
    }
    Ok(out)
}

/// The candidate text the completer shows for a greedy request whose model output was `ids`:
/// the decode loop's token handling (a control token ends the candidate; the one space the
/// prompt left out and the user typed is skipped) followed by [`apply_rules`], which is the
/// stop and post-processing path of [`Completer::complete`]. Returns the text ("" when
/// post-processing drops it) and the stop reason.
fn replay_text<B: Backend>(completer: &Completer<B>, req: &Request, mode: Mode, ids: &[u32]) -> Result<(String, StopReason), Error> {
    let tok = &completer.model().tokenizer;
    let stop_ids = completer.format().stop_ids();
    let mut decoder = tok.stream_decoder();
    let mut typed_ws = usize::from(req.prefix.ends_with(' '));
    let mut pieces = Vec::new();
    for &id in ids {
        if stop_ids.contains(&id) || tok.is_special(id) {
            break;
        }
        let mut piece = decoder.push(id)?;
        if typed_ws > 0 {
            let skip = piece.bytes().take(typed_ws).take_while(|b| *b == b' ' || *b == b'\t').count();
            typed_ws = if skip == piece.len() { typed_ws - skip } else { 0 };
            piece.drain(..skip);
        }
        pieces.push(piece);
    }
    let cx = Cursor::new(&req.prefix, &req.suffix, Language::from_name(req.language.as_deref().unwrap_or("")));
    let (text, reason) = apply_rules(&cx, Some(mode), req.max_tokens, pieces.iter().map(String::as_str));
    Ok((text.unwrap_or_default(), reason))
}

pub fn run<B: Backend>(model: Model<B>, opts: &Options) -> Result<Value, Error> {
    let file = match opts.task {
        Task::HumanEval => "HumanEval.jsonl.gz",
        Task::InfillSingleLine => "HumanEval-SingleLineInfilling.jsonl.gz",
    };
    let mut records = read_gz_jsonl(&format!("{}/{file}", opts.data))?;
    if let Some(limit) = opts.limit {
        records.truncate(limit);
    }
    let replay = opts.replay.as_deref().map(read_replay).transpose()?;
    if (replay.is_some() || opts.dump_prompts) && (opts.n_samples != 1 || opts.temperature > 0.0) {
        return Err(Error::InvalidArgument("--replay and --dump-prompts are for greedy runs (--n-samples 1, temperature 0)".into()));
    }
    let isolate = network_isolation_works();
    let timeout = Duration::from_secs_f64(opts.timeout_s.max(0.1));
    let mut completer = Completer::new(model, CompleterConfig { cache_entries: 0, ..CompleterConfig::default() })?;
    let started = Instant::now();
    let mut per_task = Vec::new();
    let mut prompts = Vec::new();
    let (mut exact, mut correct_counts) = (0usize, Vec::new());
    for (t, rec) in records.iter().enumerate() {
        let prompt = field(rec, "prompt")?;
        let (suffix, mode) = match opts.task {
            Task::HumanEval => ("", Mode::Block),
            Task::InfillSingleLine => (field(rec, "suffix")?, Mode::Line),
        };
        let task_id = field(rec, "task_id")?;
        let max_tokens = if mode == Mode::Line { 48 } else { opts.max_tokens };
        if opts.dump_prompts {
            let req = Request { language: Some("python".into()), mode: Some(mode), ..Request::new(prompt, suffix) };
            prompts.push(json!({ "task_id": task_id, "ids": completer.prompt(&req)?.ids, "max_tokens": max_tokens }));
            continue;
        }
        let test = field(rec, "test")?;
        let entry = field(rec, "entry_point")?;
        let mut passed = 0;
        let mut samples = Vec::new();
        // One request per sample (n = 1 each): the candidates of one request are deduplicated,
        // and pass@k needs every sample. The prompt stays in the KV cache between them.
        for s in 0..opts.n_samples {
            let req = Request {
                language: Some("python".into()),
                mode: Some(mode),
                max_tokens: Some(max_tokens),
                temperature: (opts.temperature > 0.0).then_some(opts.temperature),
                seed: (t * 1000 + s) as u64,
                ..Request::new(prompt, suffix)
            };
            let (text, stop) = match &replay {
                Some(r) => {
                    let ids = r.get(task_id).ok_or_else(|| Error::InvalidArgument(format!("the replay file lacks {task_id:?}")))?;
                    replay_text(&completer, &req, mode, ids)?
                }
                None => {
                    let r = completer.complete(&req)?;
                    (r.candidates.first().map(|c| c.text.clone()).unwrap_or_default(), r.timings.stop.unwrap_or(StopReason::EndOfGeneration))
                }
            };
            let program = format!("{prompt}{text}\n{suffix}\n{test}\n\ncheck({entry})\n");
            let ok = passes(&program, timeout, isolate)?;
            passed += usize::from(ok);
            if opts.task == Task::InfillSingleLine && s == 0 {
                let want = field(rec, "canonical_solution")?;
                exact += usize::from(text.trim_end() == want.trim_end());
            }
            samples.push(json!({ "text": text, "passed": ok, "stop": stop }));
        }
        correct_counts.push(passed);
        per_task.push(json!({ "task_id": task_id, "passed": passed, "samples": samples }));
    }
    if opts.dump_prompts {
        return Ok(json!({ "prompts": prompts }));
    }
    let tasks = records.len().max(1) as f64;
    let mut out = json!({
        "task": match opts.task { Task::HumanEval => "humaneval", Task::InfillSingleLine => "infill-single-line" },
        "tasks": records.len(),
        "n_samples": opts.n_samples,
        "temperature": opts.temperature,
        "network_isolated": isolate,
        "replayed": opts.replay.is_some(),
        "elapsed_s": started.elapsed().as_secs_f64(),
    });
    for k in [1, 10, 100].into_iter().filter(|&k| k <= opts.n_samples) {
        let p: f64 = correct_counts.iter().map(|&c| pass_at_k(opts.n_samples, c, k)).sum::<f64>() / tasks;
        out[format!("pass@{k}")] = json!(p);
    }
    if opts.task == Task::InfillSingleLine {
        out["exact_match"] = json!(exact as f64 / tasks);
    }
    out["per_task"] = Value::Array(per_task);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::pass_at_k;

    #[test]
    fn pass_at_k_matches_the_closed_form() {
        // 1 − C(n−c, k)/C(n, k) for n = 5, c = 2, k = 2: 1 − 3/10.
        assert!((pass_at_k(5, 2, 2) - 0.7).abs() < 1e-12);
        assert_eq!(pass_at_k(1, 1, 1), 1.0);
        assert_eq!(pass_at_k(1, 0, 1), 0.0);
        assert_eq!(pass_at_k(20, 19, 10), 1.0);
        assert!((pass_at_k(20, 5, 1) - 0.25).abs() < 1e-12);
    }
}
