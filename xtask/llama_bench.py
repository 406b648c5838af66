"""llama.cpp's side of `cargo xtask bench`, through llama-cpp-python 0.3.36.

Takes the same options as `nib bench` and prints the same JSON keys. The prompt is the file's
text tokenized by llama.cpp, repeated and cut to --prompt-tokens, exactly as nib builds it.
Timings come from llama.cpp's own counters (llama_perf_context), so Python adds nothing.
"""
import argparse
import json
import statistics

import llama_cpp
from llama_cpp import Llama


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
        llama_cpp.llama_perf_context_reset(llm.ctx)
        llm.eval(ids)
        perf = llama_cpp.llama_perf_context(llm.ctx)
        prefill.append(perf.n_p_eval / (perf.t_p_eval_ms / 1000.0))
        for _ in range(a.gen_tokens):
            tok = int(llm.scores[llm.n_tokens - 1].argmax())
            llm.eval([tok])
        perf = llama_cpp.llama_perf_context(llm.ctx)
        if a.gen_tokens:
            decode.append(perf.n_eval / (perf.t_eval_ms / 1000.0))
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
