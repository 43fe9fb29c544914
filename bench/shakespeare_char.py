"""Benchmark: nanoGPT's CPU Shakespeare recipe, character level, and print one
JSON line.

tinyshakespeare (first 90% train, last 10% validation), 65 characters, 4
layers, 4 heads, d_model 128, context 64, batch 12, dropout 0 (--no-bias: no
biases in Linear and LayerNorm, nanoGPT's bias=False), AdamW lr 1e-3 (betas
0.9/0.99, decay 0.1, clip 1.0), 100 warm-up
steps, cosine to 1e-4 over 2,000 iterations. Validation loss is the mean over
200 random batches of 12 x 64, as nanoGPT's estimate_loss does (its figure for
this recipe: about 1.88). Model FLOPs per iteration: (6 N + 12 L d T) per
token (glassformer.cli.lm.flops_per_token, N from lm_parameters) times the 12
x 64 tokens; read against an sgemm on the same BLAS threads, timed in this
process before training (glassformer.cli.common.matmul_rate). Under
mpiexec -n R the ranks train one model data parallel, each on R-th of the
batch; rank 0 prints, and model_to_sgemm reads against R times the sgemm.
  python bench/shakespeare_char.py [--threads 1] \\
      [--save checkpoints/shakespeare_char.npz]
  mpiexec -n 2 python bench/shakespeare_char.py --threads 1
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DATA), help="tinyshakespeare input.txt")
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--eval-batches", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads (sets OPENBLAS_NUM_THREADS before NumPy loads)")
    parser.add_argument("--no-bias", dest="bias", action="store_false",
                        help="no biases in Linear and LayerNorm, as nanoGPT's model (bias=False)")
    parser.add_argument("--save", default=None, help="write the trained model (+ tokenizer) here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:                                        # must happen before NumPy is imported
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import io
    import numpy as np
    from glassformer import cores
    from glassformer.checkpoint import save_checkpoint
    from glassformer.cli.common import matmul_rate
    from glassformer.cli.lm import flops_per_token, lm_parameters
    from glassformer.train import TrainConfig, Trainer
    from glassformer.data import lm_batches
    from glassformer.models import lm_config
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.models import build_model
    from glassformer.tokenizers import CharTokenizer

    text = Path(args.data).read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    ids = np.array(tok.encode(text), dtype=np.uint16)
    n_train = int(0.9 * len(ids))
    train, val = ids[:n_train], ids[n_train:]
    B, T = 12, 64
    config = lm_config("tiny", tok.vocab_size, max_len=T, dropout=0.0,    # 128 / 4 heads / 4 layers
                       bias=args.bias)
    model = build_model(config, np.random.default_rng(args.seed))
    tcfg = TrainConfig(steps=args.iters, lr=1e-3, min_lr=1e-4, warmup=100, weight_decay=0.1,
                       beta1=0.9, beta2=0.99, grad_clip=1.0, eval_interval=0,
                       eval_batches=args.eval_batches, log_interval=100, seed=args.seed)
    task = {"name": "lm", "context": T, "data": "tinyshakespeare", "split": "90/10"}
    trainer = Trainer(model, CrossEntropyLoss(), lm_batches(train, B, T), tcfg,
                      val_batches=lm_batches(val, B, T), tokenizer=tok, task=task,
                      log=io.StringIO() if args.quiet else sys.stderr)
    flops_per_iter = flops_per_token(lm_parameters(config), config.n_layers, config.d_model, T) * B * T
    sgemm = matmul_rate()                                   # FLOP/s, before training, same threads
    start = time.perf_counter()
    summary = trainer.fit()                                 # evaluates once, after the last step
    wall = time.perf_counter() - start
    train_seconds = summary["elapsed_s"]
    ranks = trainer.comm.size                               # mpiexec's processes (1 without it)
    if not trainer.comm.is_root:
        return
    if args.save:
        metrics = {"val_loss": summary["val_loss"], "val_ppl": summary["val_ppl"]}
        save_checkpoint(args.save, model, tokenizer=tok.to_dict(), task=task, step=trainer.step,
                        metrics=metrics)
    print(json.dumps({
        "benchmark": "shakespeare_char", "val_loss": round(summary["val_loss"], 4),
        "train_loss_last": round(summary["train_loss"], 4), "iters": trainer.step,
        "train_seconds": round(train_seconds, 2), "wall_seconds": round(wall, 2),
        "tokens_per_s": round(trainer.tokens_seen / train_seconds, 1),
        "ms_per_iter": round(1e3 * train_seconds / trainer.step, 2),
        "flops_per_iter": flops_per_iter,
        "model_flops_per_s": round(flops_per_iter * trainer.step / train_seconds),
        "sgemm_flops_per_s": round(sgemm),
        "model_to_sgemm": round(flops_per_iter * trainer.step / train_seconds / (ranks * sgemm), 4),
        "ranks": ranks,
        "params": model.n_parameters(), "vocab_size": tok.vocab_size, "eval_batches": args.eval_batches,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "auto"), "blas_kernel": cores.blas_kernel()}))


if __name__ == "__main__":
    main()
