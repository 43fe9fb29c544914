"""Profile one training recipe and print its top functions, then one JSON line.

  python bench/profile.py [--recipe shakespeare_char|digits] [--steps 150] \\
      [--top 25]

Runs the recipe's model (random data of the recipe's shapes: the speed does
not depend on the text) for --steps optimisation steps under cProfile, one
BLAS thread, and prints the functions with the most time spent inside them
("tottime": their own lines, not their callees), then a JSON line with the
step time and the top entries, so a change can be measured where it lands.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

# this file is named like the standard library's `profile`, which cProfile imports: drop our folder
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
import cProfile  # noqa: E402
import pstats  # noqa: E402


def shakespeare_char(np, rng):
    """nanoGPT's CPU recipe: 4 x 128, 4 heads, context 64, batch 12, vocab 65, AdamW."""
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.models import build_model, lm_config
    from glassformer.optim import AdamW
    model = build_model(lm_config("tiny", 65, max_len=64, dropout=0.0), rng)
    optimizer = AdamW(model.get_parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def batch():
        x = rng.integers(0, 65, size=(12, 65))
        return (x[:, :-1],), x[:, 1:]
    return model, CrossEntropyLoss(), optimizer, batch, 1.0


def digits(np, rng):
    """bench/digits.py's model: post-LN encoder 2 x 64, 4 heads, FFN 256, batch 32, Adam."""
    from glassformer import Adam, CrossEntropyLoss, ModelConfig, build_model
    from glassformer.tasks import digits as task
    config = ModelConfig(vocab_size=len(task.VOCAB), kind="encoder_classifier", d_model=64, n_heads=4,
                         n_layers=2, d_ff=256, max_len=16, norm_first=False, positional="sinusoidal",
                         pooling="first", n_classes=10)
    model = build_model(config, rng)
    optimizer = Adam(model.get_parameters(), lr=1e-3)

    def batch():
        return (rng.integers(0, len(task.VOCAB), size=(32, 9)),), rng.integers(0, 10, size=32)
    return model, CrossEntropyLoss(), optimizer, batch, 0.0


RECIPES = {"shakespeare_char": shakespeare_char, "digits": digits}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="shakespeare_char")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before NumPy loads its BLAS
    import numpy as np
    from glassformer.train.step import train_step

    rng = np.random.default_rng(0)
    model, loss_fn, optimizer, batch, clip = RECIPES[args.recipe](np, rng)
    model.train()

    def steps(n):
        for _ in range(n):
            train_step(model, loss_fn, optimizer, iter([batch()]), 1, clip)

    steps(5)                                                # warm-up: buffers allocated, caches filled
    start = time.perf_counter()
    steps(args.steps)
    plain = time.perf_counter() - start
    profiler = cProfile.Profile(time.process_time)
    profiler.runcall(steps, args.steps)
    stats = pstats.Stats(profiler).sort_stats("tottime")
    stats.print_stats(args.top)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:args.top]
    top = [{"function": f"{os.path.basename(f)}:{line}:{name}", "calls": nc, "tottime_s": round(tt, 3),
            "ms_per_step": round(1e3 * tt / args.steps, 3)}
           for (f, line, name), (_, nc, tt, _, _) in rows]
    print(json.dumps({"benchmark": "profile", "recipe": args.recipe, "steps": args.steps,
                      "ms_per_step": round(1e3 * plain / args.steps, 2), "top": top}))


if __name__ == "__main__":
    main()
