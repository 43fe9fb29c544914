"""One bench script from two trees, run at once on one thread each: the ratio.

A reshaping of the code (issue 25) must not cost time. Each of --runs rounds
starts TREE_OLD/bench/SCRIPT and TREE_NEW/bench/SCRIPT at once
(PYTHONPATH=TREE/src, OPENBLAS/OMP/MKL threads 1) and waits for both; each
prints one JSON line, whose --key field (ms_per_iter, train_seconds...) is
compared. Prints one JSON line: the per-run figures, their medians and the
median of the per-run new/old ratios.

  python bench/tree_speed.py --old /tmp/old --new . --key ms_per_iter \\
      shakespeare_char.py --iters 300 --eval-batches 20
  python bench/tree_speed.py --old /tmp/old --new . --key train_seconds \\
      digits.py
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

THREADS = {name: "1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                  "GLASSFORMER_THREADS")}


def start(tree, script, args):
    """TREE/bench/SCRIPT with args on one thread, its stdout piped."""
    env = dict(os.environ, PYTHONPATH=str(Path(tree) / "src"), **THREADS)
    return subprocess.Popen([sys.executable, str(Path(tree) / "bench" / script), *args], cwd=tree, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def figure(process, key):
    """The key field of the last JSON line the process printed; SystemExit if it failed."""
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{process.args[1]} exited {process.returncode}")
    return float(json.loads(out.strip().splitlines()[-1])[key])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the old source tree")
    parser.add_argument("--new", required=True, help="the new source tree")
    parser.add_argument("--key", required=True, help="the JSON field to compare (lower is faster)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("script", help="a bench/ script both trees have")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its flags")
    a = parser.parse_args(argv)
    old, new = [], []
    for _ in range(a.runs):
        p_old, p_new = start(a.old, a.script, a.args), start(a.new, a.script, a.args)
        old.append(figure(p_old, a.key))
        new.append(figure(p_new, a.key))
    ratios = [n / o for o, n in zip(old, new)]
    print(json.dumps({"script": a.script, "key": a.key, "old": old, "new": new,
                      "old_median": statistics.median(old), "new_median": statistics.median(new),
                      "ratio_median": round(statistics.median(ratios), 4),
                      "ratios": [round(r, 4) for r in ratios]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
