"""Benchmark: decoder-LM training throughput on a GPU (CuPy), per preset and precision, beside PyTorch eager.

One JSON line per (preset run, precision), then one {"summary": ...} line. Each row: tokens/s, step ms,
model TFLOP/s ((6 N + 12 L d T) FLOPs per token, N = all parameters, as nanoGPT's MFU estimate), MFU
against the GPU's dense peak for that precision (PEAKS; --peaks overrides), peak GPU memory (the CuPy
pool, freed before each run), the loss after the timed steps and, for fp16, the loss scaler's skipped
steps. Random tokens from a 50,257-word vocabulary (GPT-2's), drawn on the GPU. Runs (preset, batch x
context): small, medium, large at 8 x 256, qa at 4 x 1024, large-16x1024; the costliest last, so a
time budget (--budget-s) cuts it first; SIGINT ends the current run and still prints the summary. The step (TrainStep) is what Trainer.update does:
AdamW, clipping to norm 1, dynamic loss scaling under fp16.

When PyTorch sees a GPU the same architecture (pre-LN GPT-2 blocks, fused QKV, tied head, attention as
matmul + masked softmax + matmul, the same optimizer settings; tf32 by PyTorch's TF32 switch, fp16 by
autocast + GradScaler) is timed in the same process: torch_* fields and ratio_vs_torch = glassformer
tokens/s / PyTorch tokens/s (--torch-attention sdpa times PyTorch's fused attention instead). Without
CuPy or a GPU it prints one {"error": ...} line and exits 2; it exits 1 when a configuration failed.
Run from the repository root: PYTHONPATH=src python3 bench/gpu_lm.py --presets small --precisions fp16
"""
import argparse
import json
import math
import sys
import time

import numpy as np

from glassformer import backend, precision
from glassformer.errors import UserError

RUNS = {"small": ("small", 8, 256), "medium": ("medium", 8, 256), "large": ("large", 8, 256),
        "qa": ("qa", 4, 1024), "large-16x1024": ("large", 16, 1024)}
PRECISIONS = ("fp32", "tf32", "fp16")
VOCAB = 50257
# Dense peaks in TFLOP/s (NVIDIA datasheets; their tensor-core figures are with sparsity, halved here).
# fp32: CUDA cores (no TF32); tf32: TF32 tensor cores; fp16: FP16/BF16 tensor cores. First match wins.
PEAKS = (("H200 NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5}),
         ("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5}),
         ("H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0}),
         ("H200", {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4}),      # H200 SXM: H100 SXM's compute
         ("H100", {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4}),
         ("A100", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0}))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", "--runs", dest="presets", default=",".join(RUNS),
                   help=f"comma list of {list(RUNS)}")
    p.add_argument("--precisions", default=",".join(PRECISIONS), help="comma list of fp32,tf32,fp16")
    p.add_argument("--steps", type=int, default=10, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (kernel compilation)")
    p.add_argument("--vocab", type=int, default=VOCAB)
    p.add_argument("--batched-matmul", choices=backend.BATCHED_MATMUL_MODES, default="matmul",
                   help="attention's batched products: cupy.matmul or a direct cuBLAS call")
    p.add_argument("--no-fused", action="store_true", help="the plain array code, no fused kernels")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--torch-attention", choices=("matmul", "sdpa"), default="matmul")
    p.add_argument("--peaks", default="", help="override the peaks, e.g. fp32=66.9,tf32=494.7,fp16=989.4")
    p.add_argument("--budget-s", type=float, default=0.0,
                   help="start no new configuration after this many seconds (0: no limit)")
    args = p.parse_args(argv)
    args.presets = [r for r in args.presets.split(",") if r]
    args.precisions = [q for q in args.precisions.split(",") if q]
    for r in args.presets:
        if r not in RUNS:
            p.error(f"unknown preset run {r!r}: use some of {list(RUNS)}")
    for q in args.precisions:
        if q not in PRECISIONS:
            p.error(f"unknown precision {q!r}: use some of {list(PRECISIONS)}")
    try:
        args.peaks = parse_peaks(args.peaks)
    except ValueError as e:
        p.error(str(e))
    return args


# ---- the arithmetic (pure Python; tests/bench/test_gpu_check.py) -------------------------------------

def flops_per_token(n_params, n_layers, d_model, context):
    """6 N (forward + backward of every weight) + 12 L d T (attention scores and weighted sums)."""
    return 6 * n_params + 12 * n_layers * d_model * context


def gpt2_params(config):
    """Parameters of a preset DecoderLM (fused QKV with biases, learned positions, tied head, ln_f)."""
    C, F, L = config.d_model, config.d_ff, config.n_layers
    block = (3 * C * C + 3 * C) + (C * C + C) + (C * F + F) + (F * C + C) + 2 * 2 * C  # qkv proj fc1 fc2 2 LN
    return config.vocab_size * C + config.max_len * C + L * block + 2 * C


def parse_peaks(text):
    """"fp32=66.9,fp16=989.4" -> {"fp32": 66.9, "fp16": 989.4} (TFLOP/s)."""
    peaks = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in PRECISIONS or not value:
            raise ValueError(f"--peaks: {item!r} is not PRECISION=TFLOPS with PRECISION in {PRECISIONS}")
        peaks[name] = float(value)
    return peaks


def peaks_for(device, overrides=None):
    """{precision: dense peak TFLOP/s} for a device name (None where unknown), overrides applied."""
    table = next((dict(p) for key, p in PEAKS if key.lower() in device.lower()), {})
    table.update(overrides or {})
    return {q: table.get(q) for q in PRECISIONS}


def mfu(tflops, peak):
    """Model FLOPs utilisation: achieved / peak (None without a peak)."""
    return round(tflops / peak, 4) if peak else None


def geomean(values):
    """The geometric mean of the values that are there (None if none): the fair mean of ratios."""
    values = [v for v in values if v]
    return round(math.exp(sum(math.log(v) for v in values) / len(values)), 3) if values else None


def summarize(rows, device, peaks):
    """The last line: what ran, failed or was skipped; per precision the mean ratio to PyTorch, best MFU."""
    done = [r for r in rows if "tokens_per_s" in r]
    by_precision = {}
    for q in PRECISIONS:
        mine = [r for r in done if r["precision"] == q]
        if mine:
            by_precision[q] = {
                "ratio_vs_torch_geomean": geomean([r.get("ratio_vs_torch") for r in mine]),
                "best_mfu": max((r["mfu"] for r in mine if r.get("mfu") is not None), default=None),
                "best_torch_mfu": max((r["torch_mfu"] for r in mine if r.get("torch_mfu") is not None),
                                      default=None),
                "best_tokens_per_s": max(r["tokens_per_s"] for r in mine)}
    return {"summary": {"device": device, "peaks_tflops": peaks, "configs": len(rows),
                        "measured": len(done),
                        "errors": [f"{r['run']}/{r['precision']}" for r in rows if "error" in r],
                        "skipped": [f"{r['run']}/{r['precision']}" for r in rows if "skipped" in r],
                        "by_precision": by_precision}}


# ---- timing ---------------------------------------------------------------------------------------

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


class TrainStep:
    """One AdamW update per call, as Trainer.update: clip to max_norm; fp16: dynamic loss scaling."""

    def __init__(self, model, batches, rng=None, lr=3e-4, max_norm=1.0, schedule=None):
        from glassformer.layers import CrossEntropyLoss
        from glassformer.optim import AdamW, LossScaler, decay_mask
        named = model.named_parameters()
        self.model, self.batches, self.rng, self.max_norm = model, batches, rng, max_norm
        self.params = [pg for _, pg in named]
        self.optimizer = AdamW(self.params, lr=lr, betas=(0.9, 0.99), weight_decay=0.1,
                               decay=decay_mask(named))
        self.scaler = LossScaler() if precision.current().loss_scaling else None
        self.loss_fn = CrossEntropyLoss() if self.scaler is None else self.scaler.scaled(CrossEntropyLoss())
        self.schedule, self.step = schedule, 0              # schedule(step) -> lr, or None: constant
        model.train()

    def __call__(self):
        """The loss of this step's batch (a device scalar: no host sync)."""
        from glassformer.optim import clip_grad_norm
        if self.schedule is not None:
            self.optimizer.lr = self.schedule(self.step)
        xp = backend.array_module(self.params[0][0])
        self.optimizer.zero_grad()
        x, y = self.batches(self.rng)
        x, y = xp.asarray(x), xp.asarray(y)                 # (B, T) ids each
        loss = self.loss_fn.forward(self.model.forward(x), y)
        self.model.backward(self.loss_fn.backward(1.0))
        if self.scaler is not None:                         # unscale, clip, skip the step on inf/nan
            self.scaler.step(self.optimizer, self.max_norm)
        else:
            clip_grad_norm(self.params, self.max_norm)
            self.optimizer.step()
        self.step += 1
        return loss


def glassformer_run(cp, preset, batch, context, prec, args):
    """Time TrainStep on the GPU; returns the measured fields and the model config."""
    from glassformer.models import build_model, lm_config
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
    step = TrainStep(model, batches)
    seconds, loss = time_steps(step, args.warmup, args.steps, backend.synchronize)
    out = {"step_ms": round(1e3 * seconds, 2), "tokens_per_s": round(batch * context / seconds, 1),
           "params": model.n_parameters(), "loss": round(float(loss), 4),
           "peak_mem_gib": round(backend.memory_stats()["pool_bytes"] / 2 ** 30, 3)}
    if step.scaler is not None:
        out["loss_scale"], out["skipped_steps"] = step.scaler.scale, step.scaler.skipped_steps
    del step, model
    cp.get_default_memory_pool().free_all_blocks()
    return out, config


def torch_tf32(torch, enabled):
    """Switch TF32 for PyTorch's float32 matmuls; returns the API used (allow_tf32 is deprecated in 2.9+)."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        try:
            matmul.fp32_precision = "tf32" if enabled else "ieee"
            return f"torch.backends.cuda.matmul.fp32_precision={matmul.fp32_precision}"
        except (RuntimeError, ValueError, TypeError):       # fall back to the legacy switch
            pass
    matmul.allow_tf32 = enabled
    return f"torch.backends.cuda.matmul.allow_tf32={enabled}"


def torch_gpt(torch, config, attention):
    """The preset's architecture in PyTorch eager (GPT-2's init), on the GPU."""
    import torch.nn as nn
    import torch.nn.functional as F
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
            if attention == "sdpa":
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
    model = GPT().to(torch.device("cuda"))
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    return model


def torch_run(config, batch, context, prec, args):
    """The same model and step in PyTorch (None when PyTorch or its GPU is missing)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    import torch.nn.functional as F
    tf32_api = torch_tf32(torch, prec == "tf32")
    model = torch_gpt(torch, config, args.torch_attention)
    V = config.vocab_size
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.99), weight_decay=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=prec == "fp16")
    torch.cuda.reset_peak_memory_stats()

    def step():
        ids = torch.randint(0, V, (batch, context + 1), device="cuda")
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
           "torch_params": sum(p.numel() for p in model.parameters()),
           "torch_peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 3),
           "torch_reserved_gib": round(torch.cuda.max_memory_reserved() / 2 ** 30, 3),
           "torch_version": torch.__version__, "torch_attention": args.torch_attention,
           "torch_tf32_api": tf32_api}
    del model, opt
    torch.cuda.empty_cache()
    return out


def measure(cp, run, prec, args, peaks):
    """One configuration: glassformer, then PyTorch; FLOP rates, MFU and the ratio added."""
    preset, batch, context = RUNS[run]
    row, config = glassformer_run(cp, preset, batch, context, prec, args)
    fpt = flops_per_token(row["params"], config.n_layers, config.d_model, context)
    row["tflops"] = round(fpt * row["tokens_per_s"] / 1e12, 2)
    row["peak_tflops"], row["mfu"] = peaks[prec], mfu(row["tflops"], peaks[prec])
    row["params_as_gpt2"] = row["params"] == gpt2_params(config)
    if not args.no_torch:
        try:
            theirs = torch_run(config, batch, context, prec, args)
        except Exception as e:                              # keep glassformer's numbers
            theirs = {"torch_error": f"{type(e).__name__}: {e}"[:400]}
        if theirs and "torch_tokens_per_s" in theirs:
            theirs["torch_tflops"] = round(fpt * theirs["torch_tokens_per_s"] / 1e12, 2)
            theirs["torch_mfu"] = mfu(theirs["torch_tflops"], peaks[prec])
            theirs["ratio_vs_torch"] = round(row["tokens_per_s"] / theirs["torch_tokens_per_s"], 3)
        row.update(theirs or {})
    return row


def main(argv=None):
    args = parse_args(argv)
    try:
        backend.require_gpu()
    except UserError as e:
        print(json.dumps({"error": str(e)}))
        return 2
    cp = backend.xp_for("cupy")
    device = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
    device = device.decode() if isinstance(device, bytes) else str(device)
    peaks = peaks_for(device, args.peaks)
    t0, rows, interrupted = time.perf_counter(), [], False
    for run, prec in ((r, q) for r in args.presets for q in args.precisions):
        preset, batch, context = RUNS[run]
        row = {"run": run, "preset": preset, "precision": prec, "batch": batch,
               "context": context, "vocab": args.vocab, "steps": args.steps, "device": device,
               "batched_matmul": args.batched_matmul, "fused": not args.no_fused}
        started = time.perf_counter()
        if interrupted or (args.budget_s and started - t0 > args.budget_s):
            row["skipped"] = "interrupted" if interrupted else f"time budget of {args.budget_s:g} s spent"
        else:
            try:
                row.update(measure(cp, run, prec, args, peaks))
            except Exception as e:                          # out of memory, a kernel failing: say so
                row["error"] = f"{type(e).__name__}: {e}"[:500]
                cp.get_default_memory_pool().free_all_blocks()
            except KeyboardInterrupt:                       # gpu_check's cap (SIGINT): still summarise
                row["error"], interrupted = "interrupted (SIGINT)", True
            finally:
                precision.use("fp32")
                backend.use("numpy")
        row["wall_s"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(summarize(rows, device, peaks)), flush=True)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
