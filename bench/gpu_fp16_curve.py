"""fp16 vs fp32 loss curves: one preset LM trained on WikiText-2 (GPT-2's BPE) under each precision policy.

DATA is a folder holding wikitext-2/{train,valid}.txt and gpt2-tokenizer/{encoder.json,vocab.bpe}, as
../shared/data does (the GPU machine has no ../shared: bench/gpu_check.sh looks for shared/data or
.gpu_data inside the repository). Both runs start from the same weights, see the same batches and the
same warm-up + cosine schedule (TrainStep from gpu_lm.py: AdamW, clipping, dynamic loss scaling under
fp16), so the curves differ by precision alone. Prints one JSON line per run (losses every --every
steps, final train loss = mean of the last 10 steps, validation loss on fixed batches, the loss
scaler's skipped steps and scale) and a final {"comparison": ...} line: the differences, ok when both
runs are finite and the validation losses are within --tolerance. --out writes every step's loss.
Run from the repository root: PYTHONPATH=src python3 bench/gpu_fp16_curve.py .gpu_data
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from glassformer import backend, precision
from glassformer.errors import UserError

from gpu_lm import TrainStep                                 # beside this script: run as bench/gpu_fp16_curve.py

FILES = ("wikitext-2/train.txt", "wikitext-2/valid.txt", "gpt2-tokenizer/encoder.json",
         "gpt2-tokenizer/vocab.bpe")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="folder with wikitext-2/ and gpt2-tokenizer/ (e.g. ../shared/data)")
    p.add_argument("--preset", default="small")
    p.add_argument("--precisions", default="fp32,fp16", help="comma list, compared first vs last")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=20, help="linear warm-up steps, then cosine to lr/10")
    p.add_argument("--train-chars", type=int, default=3_000_000,
                   help="characters of train.txt to tokenise (3 M: ~680 k tokens, > steps*batch*context)")
    p.add_argument("--val-chars", type=int, default=500_000)
    p.add_argument("--eval-batches", type=int, default=10)
    p.add_argument("--every", type=int, default=10, help="curve points: mean loss per this many steps")
    p.add_argument("--tolerance", type=float, default=0.1, help="largest |val fp16 - val fp32| for ok")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a quick dry run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write every step's loss per run to this JSON file")
    args = p.parse_args(argv)
    args.precisions = [q for q in args.precisions.split(",") if q]
    for q in args.precisions:
        if q not in precision.POLICIES:
            p.error(f"unknown precision {q!r}: use some of {sorted(precision.POLICIES)}")
    return args


def missing_files(data):
    """The FILES absent under data (relative names)."""
    return [f for f in FILES if not (Path(data) / f).is_file()]


def load_tokens(data, train_chars, val_chars):
    """(train ids, val ids, tokenizer) from the first characters of train.txt and valid.txt."""
    from glassformer.tokenizers import ByteLevelBPE
    data = Path(data)
    tok = ByteLevelBPE.from_gpt2(data / "gpt2-tokenizer/encoder.json", data / "gpt2-tokenizer/vocab.bpe")
    splits = []
    for name, n in (("train.txt", train_chars), ("valid.txt", val_chars)):
        with open(data / "wikitext-2" / name, encoding="utf-8") as f:
            splits.append(np.asarray(tok.encode(f.read(n)), dtype=np.int32))
    return splits[0], splits[1], tok


def window_means(losses, every):
    """[[last step of the window, mean loss over it], ...] for consecutive windows of `every` steps."""
    return [[min(i + every, len(losses)), round(float(np.mean(losses[i:i + every])), 4)]
            for i in range(0, len(losses), every)]


def compare(runs, tolerance):
    """Last run minus first (fp16 - fp32): final train and validation losses, the curves' largest gap."""
    a, b = runs[0], runs[-1]
    gaps = [abs(x[1] - y[1]) for x, y in zip(a["curve"], b["curve"])]
    finite = all(math.isfinite(r["final_train_loss"]) and math.isfinite(r["val_loss"]) for r in runs)
    d_val = b["val_loss"] - a["val_loss"]
    return {"comparison": {
        "runs": [a["precision"], b["precision"]],
        "final_train_loss": [a["final_train_loss"], b["final_train_loss"]],
        "val_loss": [a["val_loss"], b["val_loss"]],
        "train_loss_difference": round(b["final_train_loss"] - a["final_train_loss"], 4),
        "val_loss_difference": round(d_val, 4),
        "max_curve_gap": round(max(gaps, default=0.0), 4),
        "skipped_steps": {r["precision"]: r.get("skipped_steps") for r in runs},
        "tolerance": tolerance, "ok": finite and abs(d_val) <= tolerance}}


def evaluate(model, val, args):
    """Mean loss over eval_batches fixed validation batches (seeded: the same for every run)."""
    from glassformer.data import lm_batches
    from glassformer.layers import CrossEntropyLoss
    batches, loss_fn, rng = lm_batches(val, args.batch, args.context), CrossEntropyLoss(), np.random.default_rng(1234)
    xp = backend.array_module(model.get_parameters()[0][0])
    model.eval()
    total = 0.0
    for _ in range(args.eval_batches):
        x, y = batches(rng)
        total = total + loss_fn.forward(model.forward(xp.asarray(x)), xp.asarray(y))
    model.train()
    return float(total) / args.eval_batches


def train_run(prec, train, val, vocab_size, args):
    """Train args.steps steps under policy prec; the run's JSON row and every step's loss."""
    from glassformer.data import lm_batches
    from glassformer.models import build_model, lm_config
    from glassformer.optim import warmup_cosine
    backend.use("cupy" if args.device == "cuda" else "numpy")
    precision.use(prec)
    try:
        model = build_model(lm_config(args.preset, vocab_size),
                            np.random.default_rng(args.seed))
        step = TrainStep(model, lm_batches(train, args.batch, args.context),
                         rng=np.random.default_rng(args.seed), lr=args.lr,
                         schedule=lambda s: warmup_cosine(s, args.lr, args.warmup, args.steps, args.lr / 10))
        t0 = time.perf_counter()
        losses = [step() for _ in range(args.steps)]      # device scalars: one sync at the end
        losses = [float(v) for v in losses]
        seconds = time.perf_counter() - t0
        row = {"precision": prec, "preset": args.preset, "steps": args.steps, "batch": args.batch,
               "context": args.context, "first_loss": round(losses[0], 4),
               "final_train_loss": round(float(np.mean(losses[-10:])), 4),
               "val_loss": round(evaluate(model, val, args), 4),
               "nonfinite_steps": sum(not math.isfinite(v) for v in losses),
               "seconds": round(seconds, 1),
               "tokens_per_s": round(args.steps * args.batch * args.context / seconds, 1),
               "curve": window_means(losses, args.every)}
        if step.scaler is not None:
            row["skipped_steps"], row["loss_scale"] = step.scaler.skipped_steps, step.scaler.scale
        return row, losses
    finally:
        precision.use("fp32")
        backend.use("numpy")


def main(argv=None):
    args = parse_args(argv)
    try:
        missing = missing_files(args.data)
        if missing:
            raise UserError(f"{args.data}: missing {', '.join(missing)} (copy them from ../shared/data)")
        if args.device == "cuda":
            backend.require_gpu()
        train, val, tok = load_tokens(args.data, args.train_chars, args.val_chars)
    except UserError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    print(json.dumps({"data": str(args.data), "train_tokens": len(train), "val_tokens": len(val),
                      "vocab": tok.vocab_size}), flush=True)
    runs, steps = [], {}
    for prec in args.precisions:
        row, steps[prec] = train_run(prec, train, val, tok.vocab_size, args)
        runs.append(row)
        print(json.dumps(row), flush=True)
    result = compare(runs, args.tolerance)
    if args.out:
        from glassformer.files import write_text
        write_text(args.out, json.dumps({"runs": runs, "losses": steps, **result}))
    print(json.dumps(result), flush=True)
    return 0 if result["comparison"]["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
