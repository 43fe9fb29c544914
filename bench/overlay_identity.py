"""Check that the CPU overlay gives today's numbers to the bit: the same runs
in an old tree and this one, compared, and one JSON line printed.

Each case trains with train_step_by_step.py in both trees
(OPENBLAS_NUM_THREADS=1, PYTHONPATH at each tree's src), once straight through
and once stopped halfway and continued with --resume. It compares every array
saved in last.npz (parameters and optimizer state) with np.array_equal, and
every column of metrics.csv but the timings as text (the loss histories, every
step or epoch). Cases:
  digits       the digit-operations encoder, --epochs (default 20)
  shakespeare  configs/shakespeare_char.json, --steps (default 200), a loss
               line every step
  fp16         the same, --precision fp16 (NumPy's float16 stand-in for cuBLAS)
  mpi, zero1   the same on mpiexec -n 2, without and with --zero-stage 1
               (skipped without mpiexec)
The old tree is a checkout of the commit to compare with, e.g.
  git archive <commit> | tar -x -C /tmp/old
  python bench/overlay_identity.py --old /tmp/old [--epochs 20] \\
      [--steps 200] [--cases digits fp16]
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = (Path(os.environ["GLASSFORMER_DATA"]) if os.environ.get("GLASSFORMER_DATA")
        else ROOT.parent / "shared" / "data") / "tinyshakespeare" / "input.txt"
TIMINGS = {"seconds", "elapsed_s", "tokens_per_s", "ms_per_iter"}
CASES = ("digits", "shakespeare", "fp16", "mpi", "zero1")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the tree to compare with (a checkout's root)")
    parser.add_argument("--new", default=str(ROOT), help="this tree (default: the one holding this file)")
    parser.add_argument("--epochs", type=int, default=20, help="digits epochs (default 20)")
    parser.add_argument("--steps", type=int, default=200, help="shakespeare steps (default 200)")
    parser.add_argument("--data", default=str(DATA), help="tinyshakespeare input.txt")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES), metavar="CASE",
                        help=f"which cases: {', '.join(CASES)} (default: all)")
    return parser.parse_args(argv)


def case_flags(case, args):
    """(launcher prefix, training flags, the length flag, its full value) of one case."""
    if case == "digits":
        return [], ["--task", "digits"], "--epochs", args.epochs
    lm = ["--config", str(ROOT / "configs" / "shakespeare_char.json"), "--data", args.data,
          "--log-interval", "1", "--eval-batches", "20"]
    if case == "fp16":
        lm += ["--precision", "fp16"]
    if case in ("mpi", "zero1"):
        mpiexec = shutil.which("mpiexec")
        return [mpiexec, "-n", "2"], lm + (["--zero-stage", "1"] if case == "zero1" else []), \
            "--steps", args.steps // 2
    return [], lm, "--steps", args.steps


def train(tree, prefix, flags, out):
    """Run train_step_by_step.py of `tree` with flags into out; raises with its output on failure."""
    env = dict(os.environ, PYTHONPATH=str(Path(tree) / "src"), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = prefix + [sys.executable, str(Path(tree) / "train_step_by_step.py"), "--no-interactive", *flags]
    if "--resume" not in flags:                             # a resumed run writes into its own folder
        cmd += ["--out", str(out)]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def runs(tree, case, args, work):
    """{"straight": run folder, "resumed": run folder} of one case in one tree."""
    prefix, flags, length, full = case_flags(case, args)
    straight, resumed = work / "straight", work / "resumed"
    train(tree, prefix, flags + [length, str(full)], straight)
    train(tree, prefix, flags + [length, str(full // 2)], resumed)
    train(tree, prefix, ["--resume", str(resumed / "last.npz"), length, str(full)], resumed)
    return {"straight": straight, "resumed": resumed}


def saved_arrays(path):
    """{name: array} of a checkpoint's parameters and optimizer state (no metadata)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if not k.startswith("__")}


def history(path):
    """The rows of metrics.csv without the timing columns: the loss history, as text."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(f)]


def compare(old_run, new_run):
    """{"arrays", "equal_arrays", "history_rows", "history_equal"} of two run folders."""
    a, b = saved_arrays(old_run / "last.npz"), saved_arrays(new_run / "last.npz")
    equal = sum(1 for k in a if k in b and a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]))
    ha, hb = history(old_run / "metrics.csv"), history(new_run / "metrics.csv")
    return {"arrays": max(len(a), len(b)), "equal_arrays": equal, "history_rows": len(ha),
            "history_equal": ha == hb}


def main(argv=None):
    args = parse_args(argv)
    results, start = {}, time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="overlay_identity_") as tmp:
        for case in args.cases:
            if case in ("mpi", "zero1") and not shutil.which("mpiexec"):
                results[case] = {"skipped": "no mpiexec"}
                continue
            folders = {side: runs(tree, case, args, Path(tmp) / case / side)
                       for side, tree in (("old", args.old), ("new", args.new))}
            results[case] = {kind: compare(folders["old"][kind], folders["new"][kind])
                             for kind in ("straight", "resumed")}
    identical = all(r.get("skipped") or all(c["equal_arrays"] == c["arrays"] and c["history_equal"]
                                            for c in r.values()) for r in results.values())
    print(json.dumps({"identical": identical, "epochs": args.epochs, "steps": args.steps,
                      "seconds": round(time.perf_counter() - start, 1), "cases": results}))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
