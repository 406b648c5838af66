"""llama.cpp's side of `cargo xtask bench`, through llama-cpp-python 0.3.36.

Takes the same options as `nib bench` and prints the same JSON keys. The prompt is the file's
text tokenized by llama.cpp, repeated and cut to --prompt-tokens, exactly as nib builds it.
Timings are wall-clock around llama.cpp's own `llama_decode` calls through the low-level
bindings (llama-cpp-python's `Llama.eval` adds milliseconds of Python per token, which would
flatter nib), with the token's logits read and argmax'd outside the timed region.
"""
import argparse
import json
import statistics
import time

import llama_cpp
import numpy as np
from llama_cpp import Llama


def last_logits(llm):
    """The logits of the last evaluated token, straight from llama.cpp (llm.scores is only
    filled when logits_all=True)."""
    ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.array(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)), dtype=np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt-file", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=512)
    ap.add_argument("--gen-tokens", type=int, default=128)
    a = ap.parse_args()

    n_ctx = a.prompt_tokens + a.gen_tokens + 16
    llm = Llama(model_path=a.model, n_ctx=n_ctx, n_batch=512, n_ubatch=512, n_threads=a.threads,
                n_threads_batch=a.threads, verbose=False)
    text = open(a.prompt_file, encoding="utf-8").read()
    piece = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    ids = []
    while len(ids) < a.prompt_tokens:
        ids += piece
    ids = ids[: a.prompt_tokens]

    ctx = llm.ctx
    mem = llama_cpp.llama_get_memory(ctx)

    def decode(tokens):
        """Runs `tokens` through llama_decode; returns the seconds it took."""
        arr = (llama_cpp.llama_token * len(tokens))(*tokens)
        batch = llama_cpp.llama_batch_get_one(arr, len(tokens))
        t0 = time.perf_counter()
        rc = llama_cpp.llama_decode(ctx, batch)
        spent = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return spent

    # Warm-up, as nib does.
    llama_cpp.llama_memory_clear(mem, True)
    decode(ids[:16])
    prefill, decode_rates = [], []
    for _ in range(a.runs):
        llama_cpp.llama_memory_clear(mem, True)
        prefill.append(len(ids) / decode(ids))
        spent = 0.0
        for _ in range(a.gen_tokens):
            tok = int(last_logits(llm).argmax())
            spent += decode([tok])
        if a.gen_tokens:
            decode_rates.append(a.gen_tokens / spent)
    decode = decode_rates
    print(json.dumps({
        "backend": "llama.cpp",
        "adapter": "cpu",
        "threads": a.threads,
        "prefill_tok_s": statistics.median(prefill),
        "decode_tok_s": statistics.median(decode) if decode else None,
        "prefill_runs": prefill,
        "decode_runs": decode,
    }))


if __name__ == "__main__":
    main()
