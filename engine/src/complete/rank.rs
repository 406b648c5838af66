//! Candidates: deduplicated and ranked by mean token log-probability, which the Codex paper
//! found better than a random pick and better than the sum (which favours short samples).

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub text: String,
    pub mean_logprob: f32,
}

/// Removes duplicates (keeping the better score) and sorts best first; equal scores keep
/// their order, so the earlier candidate wins a tie.
pub fn rank(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for c in candidates {
        match out.iter_mut().find(|o| o.text == c.text) {
            Some(o) if c.mean_logprob > o.mean_logprob => o.mean_logprob = c.mean_logprob,
            Some(_) => {}
            None => out.push(c),
        }
    }
    // NaN sorts last.
    out.sort_by(|a, b| b.mean_logprob.partial_cmp(&a.mean_logprob).unwrap_or_else(|| a.mean_logprob.is_nan().cmp(&b.mean_logprob.is_nan())));
    out
}

/// Mean log-probability of the tokens that overlap `kept`, where token `i` covers the bytes
/// `ends[i - 1]..ends[i]` of the raw candidate. A token cut in half by post-processing still
/// counts: the model chose it.
pub fn mean_logprob(logprobs: &[f32], ends: &[usize], kept: Range<usize>) -> f32 {
    let mut start = 0;
    let mut sum = 0.0f64;
    let mut n = 0usize;
    for (&lp, &end) in logprobs.iter().zip(ends) {
        if start < kept.end && end > kept.start {
            sum += lp as f64;
            n += 1;
        }
        start = end;
    }
    if n == 0 {
        f32::NEG_INFINITY
    } else {
        (sum / n as f64) as f32
    }
}
