"""Benchmark: data-parallel --task lm steps with N = 1 and 2 processes on the
tiny and small presets; one JSON line.

Each run trains a preset DecoderLM on random tokens (vocabulary 256) with the
LM Trainer: the same global batch for every N (each of N ranks takes B/N
rows), one BLAS thread per rank, a few warm-up steps left out of the timing.
Per run: global tokens/s, ms per step, and the time rank 0 spends in the
gradient all-reduce per step (on the CPU: MPI over shared memory, blocking, so
it includes waiting for the slower rank), and the same all-reduce alone (after
a barrier: the transfer itself). N = 1 runs without MPI; N = 2 under mpiexec
(the mpi extra), once plainly and once with ZeRO-1 (--zero-stage 1: each rank
keeps the AdamW moments of its 1/N of the parameters); per rank, the bytes of
moments it keeps and its peak resident memory (ru_maxrss), and ZeRO-1's
parameter all-gather per step.
  python bench/data_parallel.py [--steps 8] [--presets tiny,small] \\
      [--ranks 1,2] [--zero-stages 0,1]
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

SHAPES = {"tiny": {"context": 64, "batch": 16}, "small": {"context": 128, "batch": 8},
          "medium": {"context": 128, "batch": 4}}
WARMUP = 2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8, help="timed steps per run (after %d warm-up)" % WARMUP)
    p.add_argument("--presets", default="tiny,small")
    p.add_argument("--ranks", default="1,2", help="process counts to compare")
    p.add_argument("--zero-stages", default="0,1", help="ZeRO stages to run with more than one rank")
    p.add_argument("--timeout", type=int, default=600, help="seconds per run")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)   # PRESET: one run, in a rank
    p.add_argument("--zero", type=int, default=0, help=argparse.SUPPRESS)  # the worker's ZeRO stage
    args = p.parse_args(argv)
    unknown = sorted(set(args.presets.split(",")) - set(SHAPES))
    if unknown:
        p.error(f"--presets: no shape for {', '.join(unknown)}; choose from {', '.join(SHAPES)}")
    return args


def worker(preset, steps, zero_stage=0):
    """One run inside a rank: time `steps` Trainer steps; rank 0 prints its figures as JSON."""
    import time

    import numpy as np
    from glassformer.data import lm_batches
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.models import build_model, lm_config
    from glassformer.train import TrainConfig, Trainer, parallel

    shape = SHAPES[preset]
    T, B = shape["context"], shape["batch"]
    comm = parallel.world()
    tokens = np.random.default_rng(0).integers(0, 256, 200_000).astype(np.uint16)
    model = build_model(lm_config(preset, 256, max_len=T), np.random.default_rng(0))
    trainer = Trainer(model, CrossEntropyLoss(), lm_batches(tokens, B, T),
                      TrainConfig(steps=steps + WARMUP, warmup=0, eval_interval=0,
                                  zero_stage=zero_stage),
                      log=open(os.devnull, "w"))
    for _ in range(WARMUP):
        trainer.update()
    comm.reduce_s, comm.reduces = 0.0, 0
    gather0 = getattr(trainer.optimizer, "gather_s", 0.0)   # ZeRO-1's parameter all-gather (if any)
    start = time.perf_counter()
    loss = 0.0
    for _ in range(steps):
        loss = loss + trainer.update()
    float(loss)
    seconds = time.perf_counter() - start
    gathered = getattr(trainer.optimizer, "gather_s", 0.0) - gather0
    alone = None
    if comm.size > 1:                                       # the all-reduce with no rank to wait for
        times = []
        for _ in range(5):
            comm.mpi.Barrier()
            t = time.perf_counter()
            comm.allreduce_sum(comm.buffer)
            times.append(time.perf_counter() - t)
        alone = round(1e3 * min(times), 3)
    mine = {"moment_bytes": trainer.optimizer.moment_bytes(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    per_rank = comm.mpi.allgather(mine) if comm.size > 1 else [mine]
    if comm.is_root:
        print(json.dumps({"preset": preset, "ranks": comm.size, "zero_stage": zero_stage,
                          "batch": B, "context": T,
                          "parameters": model.n_parameters(),
                          "tokens_per_s": round(B * T * steps / seconds, 1),
                          "ms_per_step": round(1e3 * seconds / steps, 2),
                          "allreduce_ms_per_step": round(1e3 * comm.reduce_s / steps, 3),
                          "allreduce_alone_ms": alone,
                          "allgather_ms_per_step": round(1e3 * gathered / steps, 3),
                          "allreduce_numbers": None if comm.buffer is None else int(comm.buffer.size),
                          "moment_bytes_per_rank": [r["moment_bytes"] for r in per_rank],
                          "peak_rss_mb_per_rank": [r["peak_rss_mb"] for r in per_rank]}))


def launch(preset, n, steps, timeout, zero_stage=0):
    """The figures of one run with n processes (a dict), or {"error": ...}."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--worker", preset, "--steps", str(steps),
           "--zero", str(zero_stage)]
    failed = {"preset": preset, "ranks": n, "zero_stage": zero_stage}
    if n > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
        if mpiexec is None:
            return {**failed, "error": 'no mpiexec: pip install -e ".[mpi]"'}
        cmd = [mpiexec, "-n", str(n)] + cmd
    try:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**failed, "error": f"timed out after {timeout} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {**failed, "error": (done.stderr or done.stdout)[-500:]}
    return json.loads(lines[-1])


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker, args.steps, args.zero)
    stages = [int(z) for z in args.zero_stages.split(",")]
    runs = [launch(p, int(n), args.steps, args.timeout, z) for p in args.presets.split(",")
            for n in args.ranks.split(",") for z in (stages if int(n) > 1 else [0])]
    speedup = {}
    for p in args.presets.split(","):
        rate = {r["ranks"]: r.get("tokens_per_s") for r in runs
                if r["preset"] == p and not r.get("zero_stage")}
        if rate.get(1) and rate.get(2):
            speedup[p] = round(rate[2] / rate[1], 3)
    print(json.dumps({"bench": "data_parallel", "blas_threads_per_rank": 1, "cpus": os.cpu_count(),
                      "timed_steps": args.steps, "runs": runs, "speedup_2_over_1": speedup}))


if __name__ == "__main__":
    sys.exit(main())
