"""Benchmark: generation speed with and without the KV cache, random weights; one
JSON line.

For each preset (tiny: vocab 65, a character model's; small: vocab 50257,
GPT-2's), a 16-token prompt is continued greedily to the preset's full context
(tiny: 112 new tokens, small: 240), once feeding one token per step through
the cache and once recomputing the whole context every step. Greedy, so both
must give the same ids (checked).
  python bench/generate.py [--threads 1] [--presets tiny,small]
"""
import argparse
import json
import os
import time

VOCAB = {"tiny": 65, "small": 50257}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads (sets OPENBLAS_NUM_THREADS before NumPy loads)")
    return parser.parse_args(argv)


def best_time(fn, repeats):
    """(fastest wall seconds of repeats calls, the last result)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main(argv=None):
    args = parse_args(argv)
    if args.threads:                                        # must happen before NumPy is imported
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    from glassformer import cores
    from glassformer.models import lm_config
    from glassformer.models import build_model
    from glassformer.generate import generate_tokens

    result = {"benchmark": "generate", "decoding": "greedy", "batch": 1}
    for preset in args.presets.split(","):
        config = lm_config(preset, VOCAB[preset])
        model = build_model(config, np.random.default_rng(0))
        prompt = np.random.default_rng(1).integers(0, config.vocab_size, args.prompt_len).tolist()
        n_new = config.max_len - args.prompt_len
        cached_s, a = best_time(lambda: generate_tokens(model, prompt, n_new, temperature=0), args.repeats)
        full_s, b = best_time(lambda: generate_tokens(model, prompt, n_new, temperature=0, use_cache=False),
                              max(1, args.repeats - 1))
        result[preset] = {"vocab_size": config.vocab_size, "params": model.n_parameters(),
                          "new_tokens": n_new, "cached_tokens_per_s": round(n_new / cached_s, 1),
                          "uncached_tokens_per_s": round(n_new / full_s, 1),
                          "speedup": round(full_s / cached_s, 2), "same_ids": a == b}
    result["blas_threads"] = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    result["openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE", "auto")
    result["blas_kernel"] = cores.blas_kernel()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
