"""llama.cpp's side of `cargo xtask bench`, through llama-cpp-python 0.3.36.

Takes the same options as `nib bench` and prints the same JSON keys. The prompt is the file's
text tokenized by llama.cpp, repeated and cut to --prompt-tokens, exactly as nib builds it.
Timings are wall-clock around llama.cpp's eval calls only (its perf counters are off in
llama-cpp-python); Python's share is a few microseconds per call, well under 1% of a decode step.
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

    # Warm-up, as nib does.
    llm.reset()
    llm.eval(ids[:16])
    prefill, decode = [], []
    for _ in range(a.runs):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        prefill.append(len(ids) / (time.perf_counter() - t0))
        spent = 0.0
        for _ in range(a.gen_tokens):
            tok = int(last_logits(llm).argmax())
            t0 = time.perf_counter()
            llm.eval([tok])
            spent += time.perf_counter() - t0
        if a.gen_tokens:
            decode.append(a.gen_tokens / spent)
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
