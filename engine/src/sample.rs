//! Choosing the next token from logits: greedy, or temperature with top-k and top-p, seeded so
//! that a run can be repeated. Every choice carries its log-probability under the model's own
//! distribution (softmax of the raw logits), which is what candidate ranking averages.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// 0 picks the most likely token (greedy), as does a temperature so small that its
    /// reciprocal is not a finite f32 (below about 3e-39): sampling at it is greedy anyway,
    /// and its arithmetic would be `0 × ∞`.
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
        // Tempered logits are `(l - max) / T` computed as `(l - max) * (1 / T)`: where 1/T is
        // infinite the top token's 0 × ∞ is NaN, and every probability with it.
        let config = if (1.0 / config.temperature).is_finite() { config } else { SamplerConfig { temperature: 0.0, ..config } };
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
        let k = if self.config.top_k > 0 { self.config.top_k } else { logits.len() };
        let top = top_k_finite(logits, k, self.config.temperature);
        self.sample_top(&top)?.ok_or_else(|| Error::Model("the sampler's candidates hold every finite logit, yet fell short".into()))
    }

    /// How many of the most likely tokens a backend should select for [`Sampler::sample_top`]
    /// ([`crate::backend::Backend::top_k_async`]); `None` when sampling needs every logit
    /// (no top-k and no top-p, or a top-k above [`MAX_TOP_K`]). With top-p alone the nucleus
    /// is usually far smaller than [`MAX_TOP_K`]; when it is not, the caller samples from all.
    pub fn backend_top_k(&self) -> Option<usize> {
        match self.config.top_k {
            0 if self.config.top_p < 1.0 => Some(MAX_TOP_K),
            k @ 1..=MAX_TOP_K => Some(k),
            _ => None,
        }
    }

    /// The sampling temperature (what [`TopK`]'s tempered sum is taken at).
    pub fn temperature(&self) -> f32 {
        self.config.temperature
    }

    /// [`Sampler::sample`] from a row's most likely tokens and its sums. `Ok(None)` (and no
    /// random number drawn) when `top` is only part of the row and top-p's nucleus is not
    /// within it: the caller samples from the whole row instead. From the same candidates this
    /// picks what `sample` picks: it is `sample`'s second half.
    pub fn sample_top(&mut self, top: &TopK) -> Result<Option<Sampled>> {
        let cand = &top.tokens;
        let Some(&(_, max)) = cand.first() else {
            return Err(Error::InvalidArgument("no finite logit to sample from".into()));
        };
        let whole = cand.len() >= top.finite;
        if self.config.top_k > 0 && cand.len() < self.config.top_k.min(top.finite) {
            return Err(Error::InvalidArgument(format!("{} candidates for a top-k of {}", cand.len(), self.config.top_k)));
        }
        let cand = if self.config.top_k > 0 { &cand[..self.config.top_k.min(cand.len())] } else { cand };
        if self.config.top_k == 0 && self.config.top_p >= 1.0 && !whole {
            return Ok(None);
        }
        // Tempered probabilities, normalized over the top-k, or over the whole row without one.
        let inv_t = 1.0 / self.config.temperature;
        let mut probs: Vec<f64> = cand.iter().map(|c| (((c.1 - max) * inv_t) as f64).exp()).collect();
        let total: f64 = if self.config.top_k > 0 || whole { probs.iter().sum() } else { top.sum_t };
        probs.iter_mut().for_each(|p| *p /= total);
        if self.config.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs.iter().position(|p| {
                acc += p;
                acc >= self.config.top_p as f64
            });
            match keep {
                Some(i) => probs.truncate(i + 1),
                None if self.config.top_k > 0 || whole => {}
                None => return Ok(None),
            }
        }
        let total: f64 = probs.iter().sum();
        let mut r = self.rng.next_f64() * total;
        let mut pick = cand[0];
        for (p, c) in probs.iter().zip(cand) {
            pick = *c;
            if r < *p {
                break;
            }
            r -= p;
        }
        // log softmax under the raw distribution, computed as `log_softmax_at` does.
        Ok(Some(Sampled { id: pick.0, logprob: ((pick.1 - max) as f64 - top.sum.ln()) as f32 }))
    }
}

/// The most candidates a backend selects for sampling ([`crate::backend::Backend::top_k_async`]).
pub const MAX_TOP_K: usize = 64;

/// A row's most likely tokens and the sums that sampling from them needs of the whole row.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    /// `(id, logit)` of the largest finite logits, highest first (ties: lower id first).
    pub tokens: Vec<(u32, f32)>,
    /// Finite logits in the whole row.
    pub finite: usize,
    /// Σ exp(l − max) over the row's finite logits (max = the first token's logit): each
    /// token's log-probability under the model's whole distribution.
    pub sum: f64,
    /// Σ exp((l − max) / temperature) over them: top-p over the whole row's tempered
    /// distribution when there is no top-k.
    pub sum_t: f64,
}

/// The `k` largest finite logits with the row's sums at `temperature` (the CPU's
/// [`crate::backend::Backend::top_k_async`]).
pub fn top_k_finite(logits: &[f32], k: usize, temperature: f32) -> TopK {
    let mut all: Vec<(u32, f32)> = logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, &l)| (i as u32, l)).collect();
    let finite = all.len();
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let k = k.min(finite);
    if k > 0 && k < finite {
        all.select_nth_unstable_by(k - 1, cmp);
    }
    all.truncate(k);
    all.sort_unstable_by(cmp);
    let max = all.first().map_or(0.0, |c| c.1);
    let inv_t = 1.0 / temperature;
    let (mut sum, mut sum_t) = (0.0, 0.0);
    for &l in logits.iter().filter(|l| l.is_finite()) {
        sum += ((l - max) as f64).exp();
        sum_t += (((l - max) * inv_t) as f64).exp();
    }
    TopK { tokens: all, finite, sum, sum_t }
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

    /// A positive temperature whose reciprocal overflows f32 is greedy: not NaN probabilities,
    /// which picked the last (least likely) candidate.
    #[test]
    fn tiny_temperatures_are_greedy() {
        for temperature in [f32::MIN_POSITIVE / 8.0, 1e-45, 2e-39] {
            assert!(!(1.0 / temperature).is_finite());
            for (top_k, top_p) in [(0, 1.0), (0, 0.9), (3, 1.0)] {
                let mut s = Sampler::new(SamplerConfig { temperature, top_k, top_p, seed: 9 }).unwrap();
                assert!(s.is_greedy(), "T = {temperature:e}");
                for _ in 0..20 {
                    assert_eq!(s.sample(&LOGITS).unwrap(), Sampler::greedy().sample(&LOGITS).unwrap(), "T = {temperature:e}");
                }
            }
        }
        // The smallest temperatures with a finite reciprocal still sample, from the top tokens.
        let mut s = Sampler::new(SamplerConfig { temperature: 1e-38, top_k: 0, top_p: 1.0, seed: 2 }).unwrap();
        assert!(!s.is_greedy());
        let ids: Vec<u32> = (0..50).map(|_| s.sample(&LOGITS).unwrap().id).collect();
        assert!(ids.iter().all(|&id| id == 1 || id == 4), "{ids:?}");
        let top = top_k_finite(&LOGITS, MAX_TOP_K, 1e-38);
        assert_eq!(s.sample_top(&top).unwrap().map(|c| c.id == 1 || c.id == 4), Some(true));
    }

    #[test]
    fn top_k_orders_by_logit_then_id() {
        assert_eq!(top_k(&LOGITS, 3), vec![(1, 3.0), (4, 3.0), (2, 2.5)]);
        assert_eq!(top_k(&LOGITS, 100).len(), 6);
    }
}
