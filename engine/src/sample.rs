//! Choosing the next token from logits: greedy, or temperature with top-k and top-p, seeded so
//! that a run can be repeated. Every choice carries its log-probability under the model's own
//! distribution (softmax of the raw logits), which is what candidate ranking averages.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

/// A chosen token and its log-probability under the unmodified model distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampled {
    pub id: u32,
    pub logprob: f32,
}

pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Result<Self> {
        if !config.temperature.is_finite() || config.temperature < 0.0 {
            return Err(Error::InvalidArgument(format!("temperature {} must be a finite number ≥ 0", config.temperature)));
        }
        if !(config.top_p > 0.0 && config.top_p <= 1.0) {
            return Err(Error::InvalidArgument(format!("top-p {} must be in (0, 1]", config.top_p)));
        }
        Ok(Sampler { config, rng: Rng::new(config.seed) })
    }

    pub fn greedy() -> Self {
        Sampler { config: SamplerConfig::default(), rng: Rng::new(0) }
    }

    /// Whether every choice is the most likely token (the backend may then choose it where
    /// the logits are: [`crate::backend::Backend::greedy_async`]).
    pub fn is_greedy(&self) -> bool {
        self.config.temperature == 0.0 || self.config.top_k == 1
    }

    pub fn sample(&mut self, logits: &[f32]) -> Result<Sampled> {
        let best = argmax(logits).ok_or_else(|| Error::InvalidArgument("no finite logit to sample from".into()))?;
        if self.is_greedy() {
            return Ok(Sampled { id: best as u32, logprob: log_softmax_at(logits, best) });
        }
        // Candidates, most likely first (ties: lower id first), with tempered probabilities.
        let mut cand: Vec<(usize, f32)> = logits.iter().copied().enumerate().filter(|(_, l)| l.is_finite()).collect();
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if self.config.top_k > 0 {
            cand.truncate(self.config.top_k);
        }
        let max = cand.first().map_or(0.0, |c| c.1);
        let inv_t = 1.0 / self.config.temperature;
        let mut probs: Vec<f64> = cand.iter().map(|c| (((c.1 - max) * inv_t) as f64).exp()).collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if self.config.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    acc += p;
                    acc >= self.config.top_p as f64
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        let total: f64 = probs.iter().sum();
        let mut r = self.rng.next_f64() * total;
        let mut pick = cand[0].0;
        for (p, c) in probs.iter().zip(&cand) {
            pick = c.0;
            if r < *p {
                break;
            }
            r -= p;
        }
        Ok(Sampled { id: pick as u32, logprob: log_softmax_at(logits, pick) })
    }
}

/// Index of the largest finite logit (the first, on ties, as llama.cpp's greedy sampler does).
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_finite() && best.is_none_or(|(_, b)| l > b) {
            best = Some((i, l));
        }
    }
    best.map(|b| b.0)
}

/// log softmax(logits)[i], computed stably.
pub fn log_softmax_at(logits: &[f32], i: usize) -> f32 {
    let max = logits.iter().copied().filter(|l| l.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().filter(|l| l.is_finite()).map(|&l| ((l - max) as f64).exp()).sum();
    match logits.get(i) {
        Some(&l) if l.is_finite() => ((l - max) as f64 - sum.ln()) as f32,
        _ => f32::NEG_INFINITY,
    }
}

/// The `k` largest logits as `(id, logit)`, highest first (ties: lower id first).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(i, &l)| (i as u32, l)).collect();
    let k = k.min(all.len());
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if k > 0 && k < all.len() {
        all.select_nth_unstable_by(k - 1, cmp);
    }
    all.truncate(k);
    all.sort_unstable_by(cmp);
    all
}

/// xorshift64* seeded through splitmix64: small, fast, the same on every target.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGITS: [f32; 6] = [1.0, 3.0, 2.5, f32::NEG_INFINITY, 3.0, -1.0];

    #[test]
    fn greedy_takes_first_max() {
        let s = Sampler::greedy().sample(&LOGITS).unwrap();
        assert_eq!(s.id, 1);
        let z: f64 = LOGITS.iter().filter(|l| l.is_finite()).map(|l| ((l - 3.0) as f64).exp()).sum();
        assert!((s.logprob as f64 + z.ln()).abs() < 1e-6);
    }

    #[test]
    fn seeded_sampling_repeats_and_respects_top_k() {
        let cfg = SamplerConfig { temperature: 1.0, top_k: 2, top_p: 1.0, seed: 7 };
        let draw = |cfg| {
            let mut s = Sampler::new(cfg).unwrap();
            (0..200).map(|_| s.sample(&LOGITS).unwrap().id).collect::<Vec<_>>()
        };
        let a = draw(cfg);
        assert_eq!(a, draw(cfg));
        assert!(a.iter().all(|&id| id == 1 || id == 4), "top-2 of ties 1 and 4 only");
        assert!(a.contains(&1) && a.contains(&4));
        assert_ne!(a, draw(SamplerConfig { seed: 8, ..cfg }));
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // p(1) = p(4) ≈ 0.38, p(2) ≈ 0.23: top-p 0.5 keeps ids 1 and 4 only.
        let cfg = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 0.5, seed: 3 };
        let mut s = Sampler::new(cfg).unwrap();
        let ids: Vec<u32> = (0..300).map(|_| s.sample(&LOGITS).unwrap().id).collect();
        assert!(ids.iter().all(|&id| id == 1 || id == 4));
        // Low temperature with no truncation still prefers the top tokens overwhelmingly.
        let mut s = Sampler::new(SamplerConfig { temperature: 0.05, top_k: 0, top_p: 1.0, seed: 1 }).unwrap();
        assert!((0..100).all(|_| matches!(s.sample(&LOGITS).unwrap().id, 1 | 4)));
    }

    #[test]
    fn bad_parameters_and_logits_are_errors() {
        assert!(Sampler::new(SamplerConfig { temperature: -1.0, ..Default::default() }).is_err());
        assert!(Sampler::new(SamplerConfig { top_p: 0.0, ..Default::default() }).is_err());
        assert!(Sampler::new(SamplerConfig { temperature: f32::NAN, ..Default::default() }).is_err());
        assert!(Sampler::greedy().sample(&[f32::NAN, f32::NEG_INFINITY]).is_err());
        assert!(Sampler::greedy().sample(&[]).is_err());
    }

    #[test]
    fn top_k_orders_by_logit_then_id() {
        assert_eq!(top_k(&LOGITS, 3), vec![(1, 3.0), (4, 3.0), (2, 2.5)]);
        assert_eq!(top_k(&LOGITS, 100).len(), 6);
    }
}
