//! Greedy decoding with the host one step ahead of the GPU.
//!
//! A decode step's token is chosen by an argmax on the GPU, and here it also stays there: the
//! next step embeds it straight from the argmax's buffer. So the host records and submits step
//! i + 1 before it waits for token i, and the GPU does not idle while the host records a step
//! or a readback crosses to the host. The price is one step computed past a stop, whose key and
//! value land at a position the caller then forgets.

use super::{index_of, GpuBackend, GpuCache, GpuTensor};
use crate::arch::Arch;
use crate::error::Result;

/// Continues greedily from `logits` (the last position's, `pos` tokens in `cache`) for up to
/// `max_tokens` tokens, stopping early when `on_token` returns false or no logit is finite.
/// The tokens' keys and values occupy positions `pos ..` of `cache`.
pub async fn greedy_async(
    model: &Arch<GpuBackend>,
    b: &GpuBackend,
    cache: &mut GpuCache,
    logits: &GpuTensor,
    pos: usize,
    max_tokens: usize,
    mut on_token: impl FnMut(u32) -> bool,
) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    if max_tokens == 0 {
        return Ok(out);
    }
    let mut ids = b.record_argmax(logits)?;
    let mut pending = b.context().begin_read(&ids.buffer, 0, 4)?;
    for i in 0..max_tokens {
        // Step i + 1 goes to the GPU before token i comes back.
        let next = if i + 1 < max_tokens {
            let x = b.embed_ids(model.embedding(), &ids.buffer, 1)?;
            let logits = model.forward_embedded(b, cache, x, pos + i, false)?;
            ids = b.record_argmax(&logits)?;
            Some(b.context().begin_read(&ids.buffer, 0, 4)?)
        } else {
            None
        };
        let Some(token) = index_of(&b.context().end_read_async(pending).await?)? else { break };
        out.push(token);
        let go_on = on_token(token);
        match next {
            Some(n) if go_on => pending = n,
            _ => break,
        }
    }
    Ok(out)
}

/// [`greedy_async`] natively, where every readback is a blocking wait.
#[cfg(not(target_arch = "wasm32"))]
pub fn greedy(model: &Arch<GpuBackend>, b: &GpuBackend, cache: &mut GpuCache, logits: &GpuTensor, pos: usize, max_tokens: usize, on_token: impl FnMut(u32) -> bool) -> Result<Vec<u32>> {
    crate::complete::ready_now(greedy_async(model, b, cache, logits, pos, max_tokens, on_token))
}
