"""Benchmark: decoder-LM training throughput on a GPU (CuPy), per preset and precision, against PyTorch.

One JSON line per (run, precision): tokens/s, step ms, model TFLOP/s ((6 N + 12 L d T) FLOPs per token,
N = all parameters, as nanoGPT's MFU estimate), peak GPU memory (the CuPy pool, freed before each run),
the loss after the timed steps and, for fp16, the loss-scaler's skipped steps. Random tokens from a
50,257-word vocabulary (GPT-2's), drawn on the GPU. Runs (preset, batch x context): small, medium, large
at 8 x 256, qa at 4 x 1024, large-16x1024. The steps are glassformer's Trainer.train_step (AdamW,
clipping, warm-up/cosine, loss scaling), so what is timed is what training runs.

When PyTorch sees a GPU the same architecture (pre-LN GPT-2 blocks, fused QKV, tied head, attention
as matmul + masked softmax + matmul, the same optimizer settings) is timed in the same process, and
torch_* fields plus ratio = glassformer tokens/s / PyTorch tokens/s are added (--torch-attention sdpa
times PyTorch's fused attention instead). Without CuPy or a GPU it prints {"error": ...} and exits 2.
"""
import argparse
import json
import sys
import time

import numpy as np

from glassformer import backend, precision
from glassformer.errors import UserError

RUNS = {"small": ("small", 8, 256), "medium": ("medium", 8, 256), "large": ("large", 8, 256),
        "qa": ("qa", 4, 1024), "large-16x1024": ("large", 16, 1024)}
PRECISIONS = ("fp32", "tf32", "fp16")
VOCAB = 50257


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {list(RUNS)}")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list of fp32,tf32,fp16")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (kernel compilation)")
    p.add_argument("--vocab", type=int, default=VOCAB)
    p.add_argument("--batched-matmul", choices=backend.BATCHED_MATMUL_MODES, default="matmul",
                   help="attention's batched products: cupy.matmul or a direct cuBLAS call")
    p.add_argument("--no-fused", action="store_true", help="the plain array code, no fused kernels")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--torch-attention", choices=("matmul", "sdpa"), default="matmul")
    args = p.parse_args(argv)
    args.runs = [r for r in args.runs.split(",") if r]
    args.precisions = [q for q in args.precisions.split(",") if q]
    for r in args.runs:
        if r not in RUNS:
            p.error(f"unknown run {r!r}: use some of {list(RUNS)}")
    for q in args.precisions:
        if q not in PRECISIONS:
            p.error(f"unknown precision {q!r}: use some of {list(PRECISIONS)}")
    return args


def flops_per_token(n_params, n_layers, d_model, context):
    """6 N (forward + backward of every weight) + 12 L d T (attention scores and weighted sums)."""
    return 6 * n_params + 12 * n_layers * d_model * context


def time_steps(step, warmup, steps, sync):
    """Seconds per step over `steps` steps after `warmup` untimed ones (synchronised at both ends)."""
    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        last = step()
    sync()
    return (time.perf_counter() - t0) / steps, last


def glassformer_run(preset, batch, context, prec, args):
    """Time Trainer.train_step on the GPU; returns the measured fields."""
    import cupy as cp
    from glassformer.train import TrainConfig, Trainer
    from glassformer.models import lm_config
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.models import build_model
    cp.get_default_memory_pool().free_all_blocks()
    backend.use("cupy")
    precision.use(prec)
    backend.set_batched_matmul(args.batched_matmul)
    backend.set_fusion(not args.no_fused)
    config = lm_config(preset, args.vocab)
    model = build_model(config, np.random.default_rng(0))  # on the GPU: backend.use("cupy")
    tokens = cp.random.RandomState(0)

    def batches(rng):                                       # drawn on the GPU: no host copy per step
        ids = tokens.randint(0, args.vocab, (batch, context + 1), dtype=cp.int64)
        return ids[:, :-1], ids[:, 1:]
    total = args.warmup + args.steps
    trainer = Trainer(model, CrossEntropyLoss(), batches,
                      TrainConfig(steps=total, lr=3e-4, min_lr=3e-5, warmup_steps=total // 4,
                                  eval_interval=0, log_interval=10 ** 9), log=sys.stderr)
    seconds, loss = time_steps(trainer.train_step, args.warmup, args.steps, backend.synchronize)
    out = {"step_ms": round(1e3 * seconds, 2), "tokens_per_s": round(batch * context / seconds, 1),
           "params": model.n_parameters(), "loss": round(float(loss), 4),
           "peak_mem_gib": round(backend.memory_stats()["pool_bytes"] / 2 ** 30, 3)}
    if trainer.scaler is not None:
        out["loss_scale"], out["skipped_steps"] = trainer.scaler.scale, trainer.scaler.skipped_steps
    del trainer, model
    cp.get_default_memory_pool().free_all_blocks()
    return out, config


def torch_run(config, batch, context, prec, args):
    """The same model and step in PyTorch (None when PyTorch or its GPU is missing)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    import torch.nn as nn
    import torch.nn.functional as F
    torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
    torch.backends.cudnn.allow_tf32 = prec == "tf32"
    dev = torch.device("cuda")
    C, H, L, V = config.d_model, config.n_heads, config.n_layers, config.vocab_size

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.fc1, self.fc2 = nn.Linear(C, config.d_ff), nn.Linear(config.d_ff, C)

        def forward(self, x, mask):
            B, T, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
            if args.torch_attention == "sdpa":
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                s = (q @ k.transpose(-1, -2)) * (C // H) ** -0.5
                s = s.masked_fill(~mask[:T, :T], torch.finfo(s.dtype).min)
                y = torch.softmax(s.float(), dim=-1).to(q.dtype) @ v
            x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(V, C), nn.Embedding(config.max_len, C)
            self.blocks = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C)
            self.register_buffer("mask", torch.ones(config.max_len, config.max_len,
                                                    dtype=torch.bool).tril())

        def forward(self, ids):
            x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
            for block in self.blocks:
                x = block(x, self.mask)
            return self.ln_f(x) @ self.tok.weight.T         # tied head

    torch.manual_seed(0)
    model = GPT().to(dev)
    for m in model.modules():                               # GPT-2's init, as lm_config's presets
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.99), weight_decay=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=prec == "fp16")
    torch.cuda.reset_peak_memory_stats()

    def step():
        ids = torch.randint(0, V, (batch, context + 1), device=dev)
        with torch.autocast("cuda", dtype=torch.float16, enabled=prec == "fp16"):
            logits = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().view(-1, V), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        return loss
    seconds, loss = time_steps(step, args.warmup, args.steps, torch.cuda.synchronize)
    out = {"torch_step_ms": round(1e3 * seconds, 2),
           "torch_tokens_per_s": round(batch * context / seconds, 1),
           "torch_loss": round(float(loss), 4),
           "torch_peak_mem_gib": round(torch.cuda.max_memory_reserved() / 2 ** 30, 3),
           "torch_version": torch.__version__, "torch_attention": args.torch_attention}
    del model, opt
    torch.cuda.empty_cache()
    return out


def main(argv=None):
    args = parse_args(argv)
    try:
        backend.require_gpu()
    except UserError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    import cupy as cp
    device = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    device = device.decode() if isinstance(device, bytes) else str(device)
    for run in args.runs:
        preset, batch, context = RUNS[run]
        for prec in args.precisions:
            row = {"run": run, "preset": preset, "precision": prec, "batch": batch,
                   "context": context, "vocab": args.vocab, "steps": args.steps, "device": device,
                   "batched_matmul": args.batched_matmul, "fused": not args.no_fused}
            try:
                measured, config = glassformer_run(preset, batch, context, prec, args)
                row.update(measured)
                fpt = flops_per_token(measured["params"], config.n_layers, config.d_model, context)
                row["tflops"] = round(fpt * measured["tokens_per_s"] / 1e12, 2)
                if not args.no_torch:
                    theirs = torch_run(config, batch, context, prec, args)
                    if theirs is not None:
                        row.update(theirs)
                        row["torch_tflops"] = round(fpt * theirs["torch_tokens_per_s"] / 1e12, 2)
                        row["ratio_vs_torch"] = round(measured["tokens_per_s"]
                                                      / theirs["torch_tokens_per_s"], 3)
            except Exception as e:                          # out of memory, a kernel failing: say so
                row["error"] = f"{type(e).__name__}: {e}"[:500]
                cp.get_default_memory_pool().free_all_blocks()
            finally:
                precision.use("fp32")
                backend.use("numpy")
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
