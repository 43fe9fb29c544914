"""Are two trees' training runs bit-identical? The same flows in each, compared.

The redesign (issue 25) reshapes the code, not the numbers. This script
runs, in each tree (PYTHONPATH=TREE/src, cwd TREE): digits for 20 epochs,
nanoGPT's shakespeare_char recipe for 200 steps, an `mpiexec -n 2` LM run
with and without `--zero-stage 1`, an fp16 LM run on the CPU, and a
`--resume` of each. Then it compares every array of every saved checkpoint
(bytes and dtype) and the loss columns of metrics.csv, and prints one JSON
line: {"flows": {name: "identical" | what differs}, "identical": bool}.

  python bench/tree_identity.py run --tree OLD --out /tmp/old
  python bench/tree_identity.py run --tree NEW --out /tmp/new
  python bench/tree_identity.py compare /tmp/old /tmp/new
"""
import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("GLASSFORMER_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
LM = ["--task", "lm", "--data", "tinyshakespeare", "--tokenizer", "char", "--preset", "tiny",
      "--batch-size", "16", "--eval-interval", "10", "--eval-batches", "4", "--log-interval", "5"]
MPI = ["mpiexec", "-n", "2"]
# name: (launcher, flags of the straight run, flags of the first half, flags of its resume)
FLOWS = {
    "digits": ([], ["--task", "digits", "--epochs", "20"], ["--task", "digits", "--epochs", "3"],
               ["--epochs", "5"]),
    "shakespeare_char": ([], ["--config", "configs/shakespeare_char.json", "--steps", "200"],
                         ["--config", "configs/shakespeare_char.json", "--steps", "60"],
                         ["--steps", "120"]),
    "mpi": (MPI, LM + ["--steps", "40"], LM + ["--steps", "20"], ["--steps", "40"]),
    "mpi_zero1": (MPI, LM + ["--steps", "40", "--zero-stage", "1"],
                  LM + ["--steps", "20", "--zero-stage", "1"], ["--steps", "40"]),
    "fp16": ([], LM + ["--steps", "40", "--precision", "fp16"],
             LM + ["--steps", "20", "--precision", "fp16"], ["--steps", "40"]),
}
LOSS_COLUMNS = ("step", "tokens", "lr", "train_loss", "grad_norm", "val_loss", "val_ppl",
                "epoch", "train_acc", "val_acc", "val_exact_match")


def train(tree, launcher, flags, out):
    """One train_step_by_step.py run in tree, writing out; raises on a non-zero exit."""
    env = dict(os.environ, PYTHONPATH=str(Path(tree) / "src"), GLASSFORMER_DATA=str(DATA),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = launcher + [sys.executable, "train_step_by_step.py", *flags, "--out", str(out)]
    done = subprocess.run(cmd, cwd=tree, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True)
    (Path(out).parent / f"{Path(out).name}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")


def run(tree, out, only=None):
    """Every flow (or those named in only) of tree, into out/NAME and out/NAME_resumed."""
    for name, (launcher, straight, first, resume) in FLOWS.items():
        if only and name not in only:
            continue
        print(f"{name} ...", file=sys.stderr, flush=True)
        train(tree, launcher, straight, Path(out) / name)
        train(tree, launcher, first, Path(out) / f"{name}_resumed")
        train(tree, launcher, ["--resume", str(Path(out) / f"{name}_resumed"), *resume],
              Path(out) / f"{name}_resumed")


def arrays(path):
    """{member: raw bytes + dtype + shape} of an .npz, every member but the JSON header."""
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            if key != "__meta__":
                a = z[key]
                out[key] = (a.dtype.str, a.shape, a.tobytes())
    return out


def losses(path):
    """The metrics.csv rows, loss columns only (timings differ from run to run)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k in LOSS_COLUMNS} for row in csv.DictReader(f)]


def differences(a, b):
    """What differs between run folders a and b: checkpoint arrays and loss histories."""
    out = []
    names = sorted({p.name for p in a.glob("*.npz")} | {p.name for p in b.glob("*.npz")})
    if not names:
        out.append("no checkpoints")
    for name in names:
        if not (a / name).exists() or not (b / name).exists():
            out.append(f"{name} in one run only")
            continue
        x, y = arrays(a / name), arrays(b / name)
        bad = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
        if bad:
            out.append(f"{name}: {len(bad)} arrays differ ({', '.join(bad[:3])})")
    for csv_name in sorted({p.name for p in a.glob("*.csv")} | {p.name for p in b.glob("*.csv")}):
        if losses(a / csv_name) != losses(b / csv_name):
            out.append(f"{csv_name}: the loss history differs")
    return out


def compare(old, new):
    """One JSON line: per flow, identical or what differs."""
    flows = {}
    for folder in sorted(p for p in Path(old).iterdir() if p.is_dir()):
        other = Path(new) / folder.name
        diff = differences(folder, other) if other.is_dir() else ["missing in the new tree"]
        flows[folder.name] = "identical" if not diff else "; ".join(diff)
    print(json.dumps({"flows": flows, "identical": all(v == "identical" for v in flows.values())}))
    return 0 if all(v == "identical" for v in flows.values()) else 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run every flow in one tree")
    r.add_argument("--tree", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--only", nargs="*", choices=sorted(FLOWS), help="these flows only")
    c = sub.add_parser("compare", help="compare two run outputs")
    c.add_argument("old")
    c.add_argument("new")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(Path(args.tree).resolve(), Path(args.out).resolve(), args.only)
        return 0
    return compare(args.old, args.new)


if __name__ == "__main__":
    sys.exit(main())
