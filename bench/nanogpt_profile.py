"""Where nanoGPT's CPU step spends its time, beside bench/profile.py's figures
for ours: one JSON line.

Runs in the side environment with torch (never a glassformer dependency),
nanoGPT's own model.py imported from its unmodified folder
(../shared/anchors/nanoGPT by default, nothing copied):
  /tmp/tv/bin/python bench/nanogpt_profile.py [--steps 100] [--bias] \\
      [--nanogpt DIR]

The model and update of run_cpu.sh's recipe: 4 layers, 4 heads, n_embd 128,
block 64, batch 12, vocab 65, dropout 0, bias=False unless --bias (nanoGPT's
default for train.py), its configure_optimizers' AdamW (lr 1e-3, betas
0.9/0.99, weight decay 0.1), clip 1.0, one thread; random tokens (the speed
does not depend on the text). It prints ms_per_step without the profiler, then
torch.profiler's self CPU time per step of the operators that matter: the
matrix products (aten::mm, aten::addmm, aten::bmm), GELU, the fused attention,
AdamW, LayerNorm and the rest. The matrix products are the floor both
frameworks share (the same class of single-thread sgemm); the rest is where a
NumPy step, which runs one pass per ufunc, meets torch's fused C++ loops.
"""
import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

# bench/profile.py would shadow the standard library's profile module, which torch imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

NANOGPT = Path(__file__).resolve().parents[2] / "shared" / "anchors" / "nanoGPT"
GROUPS = {"matmul": ("aten::mm", "aten::addmm", "aten::bmm"), "gelu": ("aten::gelu", "aten::gelu_backward"),
          "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                        "aten::_scaled_dot_product_flash_attention_for_cpu_backward"),
          "layer_norm": ("aten::native_layer_norm", "aten::native_layer_norm_backward")}


def build(nanogpt, bias):
    """(model, optimizer) of run_cpu.sh's recipe, from nanoGPT's own model.py."""
    import torch
    sys.path.insert(0, str(nanogpt))
    from model import GPT, GPTConfig
    torch.manual_seed(1337)
    model = GPT(GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
                          bias=bias))
    return model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")


def group_times(events, steps):
    """{group: self CPU ms per step} for GROUPS, "adamw" (the optimizer step's own and its ops') and total."""
    self_ms = {e.key: e.self_cpu_time_total / 1e3 / steps for e in events}
    out = {g: round(sum(self_ms.get(k, 0.0) for k in keys), 3) for g, keys in GROUPS.items()}
    adamw = [e for e in events if e.key.startswith("Optimizer.step#AdamW")]
    out["adamw"] = round(sum(e.cpu_time_total for e in adamw) / 1e3 / steps, 3)   # its ops included
    out["total"] = round(sum(self_ms.values()), 3)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--bias", action="store_true", help="biases in Linear and LayerNorm (GPT-2's)")
    parser.add_argument("--nanogpt", type=Path, default=NANOGPT, help="nanoGPT's folder (with model.py)")
    args = parser.parse_args()
    if not (args.nanogpt / "model.py").is_file():
        print(f"nanogpt_profile.py: no model.py in {args.nanogpt}; pass nanoGPT's folder with --nanogpt",
              file=sys.stderr)
        return 2
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import torch
    from torch.profiler import ProfilerActivity, profile
    torch.set_num_threads(1)
    with contextlib.redirect_stdout(sys.stderr):             # nanoGPT prints its parameter counts
        model, optimizer = build(args.nanogpt, args.bias)

    def step():
        x = torch.randint(0, 65, (12, 65))
        _, loss = model(x[:, :-1].contiguous(), x[:, 1:].contiguous())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(10):                                     # warm-up
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    plain = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    print(json.dumps({"benchmark": "nanogpt_profile", "steps": args.steps, "bias": args.bias,
                      "torch": torch.__version__, "ms_per_step": round(1e3 * plain / args.steps, 2),
                      "profiled_ms_per_step": group_times(prof.key_averages(), args.steps)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
