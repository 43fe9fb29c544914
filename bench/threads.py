"""Benchmark: the CPU threads scaling table (training step ms/iter at 1 and N
threads, tiny, small and GPT-2 sizes), and each element-wise kernel with the
thread pool on and off (only the cross-entropy uses it); one JSON line.

Every setting runs in one process, interleaved step by step (1 thread, N
threads, N threads with the overlay's pool off, then again), so a machine
shared with other work slows each alike; the median and the best of the
repeats are printed. "N threads" is backend.set_threads(N): the BLAS and the
pool. Model FLOP/s per step: (6 P + 12 L d T) per token times the tokens,
read against an sgemm on the same threads (glassformer.cli.common.matmul_rate).
An OPENBLAS_CORETYPE in the environment pins OpenBLAS's kernels (README);
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...` runs the ones
it picks for this CPU, and the JSON's blas_kernel names the ones that ran.
  python bench/threads.py [--threads 2] [--repeats 5] [--sizes tiny,small,gpt2]
"""
import argparse
import json
import os
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="the many-threads count (default: every core)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per setting (after one warm-up)")
    p.add_argument("--sizes", default="tiny,small,gpt2", help="of tiny, small, gpt2")
    p.add_argument("--kernel-repeats", type=int, default=30, help="timed calls per kernel and setting (0: skip)")
    return p.parse_args(argv)


# (preset, vocabulary, batch, context): nanoGPT's shakespeare_char shape, a small LM, GPT-2 124M fine-tuning
SIZES = {"tiny": ("tiny", 65, 12, 64), "small": ("small", 65, 8, 256), "gpt2": ("large", 50257, 1, 256)}


def settings(n):
    """{name: (threads, pool on?)} of the interleaved settings."""
    return {"1": (1, True), str(n): (n, True), f"{n}_no_pool": (n, False)}


def apply(threads, pool_on):
    """Set the BLAS and pool threads; the pool off: no array is big enough to split."""
    from glassformer import backend
    from glassformer.kernels.cpu import pool
    backend.set_threads(threads)
    pool.MIN_PART = POOL_MIN if pool_on else 1 << 62


def summary(times, work=None, roof=None):
    """Median and best ms of a list of seconds, and the model FLOP/s share of the sgemm roof."""
    times = sorted(times)
    out = {"median_ms": round(1e3 * times[len(times) // 2], 3), "best_ms": round(1e3 * times[0], 3)}
    if work:
        rate = work / times[len(times) // 2]
        out.update(model_gflops=round(rate / 1e9, 2), sgemm_gflops=round(roof / 1e9, 2),
                   flops_ratio=round(rate / roof, 3))
    return out


def step_table(size, n, repeats):
    """{setting: summary} of one size's training step (forward, backward, clip, AdamW)."""
    import numpy as np
    from glassformer.cli.common import matmul_rate
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.models import build_model, lm_config
    from glassformer.models.arithmetic import flops_per_token, lm_parameters
    from glassformer.optim.optimizers import AdamW
    from glassformer.train.step import train_step
    preset, vocab, batch, context = SIZES[size]
    config = lm_config(preset, vocab)
    model = build_model(config, np.random.default_rng(0))
    optimizer = AdamW(model.get_parameters(), lr=1e-4, weight_decay=0.1)
    x = np.random.default_rng(1).integers(0, vocab, (batch, context + 1))
    data = [((x[:, :-1],), x[:, 1:])]
    work = flops_per_token(lm_parameters(config), config.n_layers, config.d_model, context) * batch * context
    times, roofs = {}, {}
    for name, (threads, pool_on) in settings(n).items():
        apply(threads, pool_on)
        roofs[name] = matmul_rate(0.3)
        train_step(model, CrossEntropyLoss(), optimizer, iter(data), grad_clip=1.0)   # warm-up
    for _ in range(repeats):
        for name, (threads, pool_on) in settings(n).items():
            apply(threads, pool_on)
            t = time.perf_counter()
            train_step(model, CrossEntropyLoss(), optimizer, iter(data), grad_clip=1.0)
            times.setdefault(name, []).append(time.perf_counter() - t)
    return {"batch": batch, "context": context, "params": lm_parameters(config),
            **{name: summary(times[name], work, roofs[name]) for name in times}}


def kernel_table(n, repeats):
    """{kernel: {setting: summary}} of each pooled kernel at GPT-2's sizes (1 x 256 tokens, 12 heads)."""
    import numpy as np
    from glassformer.kernels.cpu import activations as A, attention as At, loss as L, norm as N, optim as O
    from glassformer.layers.attention import attention_mask
    rng = np.random.default_rng(0)
    f32 = np.float32
    h, fc = rng.standard_normal((256, 768)).astype(f32), rng.standard_normal((256, 3072)).astype(f32)
    q, k, v = (rng.standard_normal((1, 12, 256, 64)).astype(f32) for _ in range(3))
    logits, targets = rng.standard_normal((256, 50257)).astype(f32), rng.integers(0, 50257, 256)
    gamma, beta = np.ones(768, f32), np.zeros(768, f32)
    params = [(rng.standard_normal(1 << 22).astype(f32), rng.standard_normal(1 << 22).astype(f32))]
    ms, vs = [np.zeros(1 << 22, f32)], [np.zeros(1 << 22, f32)]
    allowed = attention_mask(np, 256, 256, causal=True)
    _, gcache = A.gelu_forward_cpu(fc)
    _, lcache = L.cross_entropy_forward_cpu(logits, targets)
    _, ncache = N.layer_norm_forward_cpu(h, gamma, beta, 1e-5)
    calls = {"gelu_fwd_bwd (256x3072)": lambda: A.gelu_backward_cpu(fc, A.gelu_forward_cpu(fc)[1]),
             "attention_fwd (12x256x256)": lambda: At.attend_cpu(q, k, v, allowed),
             "layer_norm_fwd_bwd (256x768)": lambda: N.layer_norm_backward_cpu(
                 h, N.layer_norm_forward_cpu(h, gamma, beta, 1e-5)[1], gamma, np.zeros(768, f32),
                 np.zeros(768, f32)),
             "cross_entropy_fwd_bwd (256x50257)": lambda: L.cross_entropy_backward_cpu(
                 1.0, L.cross_entropy_forward_cpu(logits, targets)[1]),
             "adamw (4M numbers)": lambda: O.adam_step_cpu(params, ms, vs, 0, (1e-4, 0.9, 0.999, 1e-8, True,
                                                                               (0.1,))),
             "grad_norm (4M numbers)": lambda: O.grad_norm_cpu(params)}
    del gcache, lcache, ncache
    out = {}
    for kernel, call in calls.items():
        times = {}
        for _ in range(repeats):
            for name, (threads, pool_on) in settings(n).items():
                apply(threads, pool_on)
                t = time.perf_counter()
                call()
                times.setdefault(name, []).append(time.perf_counter() - t)
        out[kernel] = {name: summary(ts) for name, ts in times.items()}
    return out


def main(argv=None):
    global POOL_MIN
    args = parse_args(argv)
    from glassformer import cores
    from glassformer.kernels.cpu import pool
    POOL_MIN = pool.MIN_PART
    result = {"benchmark": "threads", "threads": args.threads, "cores": os.cpu_count(),
              "blas_kernel": cores.blas_kernel(),
              "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "auto"),
              "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    if args.kernel_repeats:
        result["kernels"] = kernel_table(args.threads, args.kernel_repeats)
    result["steps"] = {size: step_table(size, args.threads, args.repeats) for size in args.sizes.split(",") if size}
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))


POOL_MIN = None

if __name__ == "__main__":
    main()
