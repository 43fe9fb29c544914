"""Run glassformer and its PyTorch peer at the same time, one thread each, and
print one JSON line.

Pairs:
  shakespeare  ours: bench/shakespeare_char.py --threads 1 (ms_per_iter,
               val_loss from its JSON);
               peer: nanoGPT's CPU recipe (its run_cpu.sh, with
               --log_interval=1): ms/iter is the mean of its "iter k: ... time
               X ms" lines leaving out iter 0 (start-up) and every iteration k
               that evaluated ("step k: ..." comes right before "iter k",
               whose time holds the evaluation and checkpoint); val loss from
               its last "step" line. Targets: ours/peer <= 1.0, val <= 1.89.
  digits       ours: bench/digits.py; peer: bench/digits_torch.py (the same
               model in PyTorch eager); train_seconds of each. Targets:
               ours/peer <= 0.6, test accuracy 1.000.
Each of --runs rounds starts both at once (OPENBLAS/OMP/MKL threads 1 each)
and waits for both (--all-cores: one after the other, ours with --threads
set to every core, the peer at its default threads, which is every core);
the JSON holds per-run figures, medians, the median of per-run ratios and
the ratio of the medians. The peer needs a side environment
with torch and numpy (never a glassformer dependency), e.g.
  python -m venv /tmp/tv
  /tmp/tv/bin/pip install numpy torch --index-url \\
      https://download.pytorch.org/whl/cpu
given by --peer-python (or --torch-python), $PEER_PYTHON or $TORCH_PYTHON
(default /tmp/tv/bin/python); bench/gpt2.py reads the same $PEER_PYTHON.
  python bench/side_by_side.py shakespeare [--runs 3] [--iters 200]
  python bench/side_by_side.py digits [--runs 3] [--epochs 20]
  python bench/side_by_side.py shakespeare --all-cores [--mpi]
An OPENBLAS_CORETYPE in the environment pins OpenBLAS's kernels (README);
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...` runs the ones
it picks for this CPU, and the JSON's blas_kernel names the ones that ran.
--mpi (with --all-cores): ours as data-parallel ranks under mpiexec, one per
core with 1 thread each (the .[mpi] extra), the peer as before.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NANOGPT = ROOT.parent / "shared" / "anchors" / "nanoGPT"
TARGETS = {"shakespeare": {"ratio": 1.0, "val_loss": 1.89}, "digits": {"ratio": 0.6, "test_accuracy": 1.0}}
FULL_LENGTH = {"shakespeare": ("iters", 2000), "digits": ("epochs", 20)}
ITER_LINE = re.compile(r"^iter (\d+): loss ([-+\d.eE]+|nan|inf), time ([\d.]+)ms", re.M)
STEP_LINE = re.compile(r"^step (\d+): train loss ([-+\d.eE]+|nan|inf), val loss ([-+\d.eE]+|nan|inf)", re.M)


class PeerMissing(Exception):
    """The side Python for the peer is absent or cannot import torch and numpy."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pair", choices=sorted(TARGETS))
    parser.add_argument("--runs", type=int, default=3, help="rounds, both side by side (default 3)")
    parser.add_argument("--iters", type=int, default=2000, help="shakespeare: iterations (default 2000)")
    parser.add_argument("--eval-iters", type=int, default=200,
                        help="shakespeare: validation batches of each (default 200, as nanoGPT)")
    parser.add_argument("--epochs", type=int, default=20, help="digits: epochs (default 20)")
    parser.add_argument("--no-bias", action="store_true",
                        help="shakespeare: ours without biases too, as nanoGPT's model (bias=False)")
    parser.add_argument("--peer-python", "--torch-python", dest="torch_python",
                        default=os.environ.get("PEER_PYTHON") or os.environ.get("TORCH_PYTHON", "/tmp/tv/bin/python"),
                        help="a Python with torch + numpy for the peer "
                             "($PEER_PYTHON or $TORCH_PYTHON, else /tmp/tv/bin/python)")
    parser.add_argument("--nanogpt", default=str(NANOGPT), help="nanoGPT's folder (with run_cpu.sh)")
    parser.add_argument("--all-cores", action="store_true",
                        help="every core each, one after the other (default: 1 thread each, together)")
    parser.add_argument("--mpi", action="store_true",
                        help="with --all-cores: ours under mpiexec, a 1-thread rank per core")
    args = parser.parse_args(argv)
    if args.mpi and not (args.all_cores and args.pair == "shakespeare"):
        parser.error("--mpi goes with shakespeare --all-cores")
    for name in ("runs", "iters", "eval_iters", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def check_torch_python(python):
    """Raise PeerMissing (with what to do) unless `python` runs and imports torch and numpy."""
    fix = ("the peer needs a side Python with torch and numpy: make one with `python -m venv /tmp/tv && "
           "/tmp/tv/bin/pip install numpy torch --index-url https://download.pytorch.org/whl/cpu`, then "
           "pass --peer-python /tmp/tv/bin/python (or --torch-python, or set PEER_PYTHON)")
    if not (shutil.which(python) or Path(python).is_file()):
        raise PeerMissing(f"no Python at {python}; {fix}")
    try:
        done = subprocess.run([python, "-c", "import torch, numpy"], capture_output=True, text=True,
                              timeout=300)
    except OSError as e:
        raise PeerMissing(f"cannot run {python} ({e}); {fix}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise PeerMissing(f"{python} cannot import torch and numpy ({last}); {fix}")


def parse_nanogpt_log(text):
    """{"ms_per_iter", "val_loss", "train_loss_eval", "iters_timed", "iters_left_out"} of a nanoGPT log.

    ms_per_iter: mean over its "iter k" lines but iter 0 and each k with a "step k" (evaluation) line.
    """
    evaluated = {int(m.group(1)) for m in STEP_LINE.finditer(text)}
    times = {int(m.group(1)): float(m.group(3)) for m in ITER_LINE.finditer(text)}
    left_out = sorted(k for k in times if k == 0 or k in evaluated)
    timed = [t for k, t in times.items() if k not in left_out]
    if not timed:
        raise ValueError("no timed 'iter k: ... time X ms' lines in nanoGPT's log (besides iter 0 and "
                         "evaluations): was it run with --log_interval=1?")
    steps = list(STEP_LINE.finditer(text))
    last = steps[-1] if steps else None
    return {"ms_per_iter": round(sum(timed) / len(timed), 2),
            "val_loss": float(last.group(3)) if last else None,
            "train_loss_eval": float(last.group(2)) if last else None,
            "iters_timed": len(timed), "iters_left_out": left_out}


def last_json(text, who):
    """The last line of text that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError(f"{who} printed no JSON line")


def median_summary(runs, key, quality):
    """Medians of the per-run figures (key and the quality figure), the median of per-run ratios
    ours/peer of key and the ratio of its medians."""
    ours = statistics.median(r["ours"][key] for r in runs)
    peer = statistics.median(r["peer"][key] for r in runs)
    per_run = statistics.median(r["ours"][key] / r["peer"][key] for r in runs)
    known = [r for r in runs if r["ours"].get(quality) is not None and r["peer"].get(quality) is not None]
    return {"ours": ours, "peer": peer,
            "ratio_median_of_runs": round(per_run, 4),
            "ratio_of_medians": round(ours / peer, 4),
            quality: {who: statistics.median(r[who][quality] for r in known) if known else None
                      for who in ("ours", "peer")}}


THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "THREADS", "GLASSFORMER_THREADS")


def threads_each(args):
    """Threads for each side: 1, or every core with --all-cores."""
    return len(os.sched_getaffinity(0)) if args.all_cores else 1


def thread_env(args=None, extra=None):
    """os.environ with threads_each BLAS/OpenMP threads: 1, or every core, which is torch's default and
    ours (nanoGPT's run_cpu.sh reads THREADS, default 1), and extra variables."""
    n = str(threads_each(args) if args is not None else 1)
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(OPENBLAS_NUM_THREADS=n, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, THREADS=n)
    env.update(extra or {})
    return env


def commands(args, work):
    """((ours argv, env, cwd), (peer argv, env, cwd)) for one run of the pair; work: a scratch folder."""
    src = str(ROOT / "src")
    peer_path = src + os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else src
    if args.pair == "digits":
        threads = str(threads_each(args))
        ours = [sys.executable, str(ROOT / "bench" / "digits.py"), "--threads", threads,
                "--epochs", str(args.epochs)]
        peer = [args.torch_python, str(ROOT / "bench" / "digits_torch.py"), "--threads", threads,
                "--epochs", str(args.epochs)]
        return (ours, thread_env(args), ROOT), (peer, thread_env(args, {"PYTHONPATH": peer_path}), ROOT)
    n = args.iters
    threads = 1 if args.mpi else threads_each(args)
    ours = [sys.executable, str(ROOT / "bench" / "shakespeare_char.py"), "--threads", str(threads),
            "--quiet",
            "--iters", str(n), "--eval-batches", str(args.eval_iters)]
    if args.no_bias:
        ours.append("--no-bias")
    if args.mpi:                                            # a rank per core, one thread each
        return (["mpiexec", "-n", str(threads_each(args))] + ours, thread_env(), ROOT), \
            (peer_command(args), thread_env(args, peer_env(args, work)), work)
    return (ours, thread_env(args), ROOT), (peer_command(args), thread_env(args, peer_env(args, work)), work)


def peer_command(args):
    """nanoGPT's run_cpu.sh for args.iters iterations, logging each."""
    n = args.iters
    return ["bash", str(Path(args.nanogpt) / "run_cpu.sh"), "--log_interval=1", f"--max_iters={n}",
            f"--lr_decay_iters={n}", f"--eval_interval={n}", f"--eval_iters={args.eval_iters}"]


def peer_env(args, work):
    """What run_cpu.sh reads besides the threads: the side Python and a scratch folder."""
    return {"PY": args.torch_python, "NANOGPT_WORK": str(Path(work) / "nanogpt")}


def run_pair(args, index):
    """One round: start ours and the peer together (--all-cores: ours, then the peer), wait for both;
    {"ours", "peer", "ratio", "wall_s"}.

    Their output goes to files, not pipes: a full pipe (nanoGPT logs every iteration) would stall
    the peer until ours ended. wall_s: seconds from the start until each ended.
    """
    with tempfile.TemporaryDirectory(prefix="side_by_side_") as work:
        specs = commands(args, work)
        logs = [(open(Path(work) / f"{who}.out", "w+"), open(Path(work) / f"{who}.err", "w+"))
                for who in ("ours", "peer")]
        start = time.perf_counter()
        procs, ended = [], [None, None]
        for i, ((cmd, env, cwd), (out, err)) in enumerate(zip(specs, logs)):
            procs.append(subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True))
            if args.all_cores:                              # one after the other: each has every core
                procs[-1].wait()
                ended[i] = round(time.perf_counter() - start, 1)
        while None in ended:                                # note when each one ends
            for i, proc in enumerate(procs):
                if ended[i] is None and proc.poll() is not None:
                    ended[i] = round(time.perf_counter() - start, 1)
            time.sleep(0.2)
        outputs = []
        for out, err in logs:
            out.seek(0), err.seek(0)
            outputs.append((out.read(), err.read()))
            out.close(), err.close()
    for who, proc, (out, err) in zip(("ours", "peer"), procs, outputs):
        if proc.returncode != 0:
            tail = "\n".join((err or out).strip().splitlines()[-15:])
            raise RuntimeError(f"run {index}: {who} exited with status {proc.returncode}:\n{tail}")
    ours, peer = pick(args.pair, last_json(outputs[0][0], "ours"), outputs[1][0])
    key = "ms_per_iter" if args.pair == "shakespeare" else "train_seconds"
    return {"ours": ours, "peer": peer, "ratio": round(ours[key] / peer[key], 4),
            "wall_s": {"ours": ended[0], "peer": ended[1]}}


def pick(pair, ours_json, peer_out):
    """The figures compared, from ours' JSON and the peer's stdout."""
    if pair == "shakespeare":
        ours = {k: ours_json.get(k) for k in ("ms_per_iter", "val_loss", "ranks", "model_flops_per_s",
                                              "sgemm_flops_per_s", "model_to_sgemm", "flops_per_iter",
                                              "blas_kernel")}
        return ours, parse_nanogpt_log(peer_out)
    peer_json = last_json(peer_out, "peer")
    ours = {k: ours_json.get(k) for k in ("train_seconds", "test_accuracy", "train_loss_last",
                                          "model_flops_per_s", "sgemm_flops_per_s", "model_to_sgemm",
                                          "blas_kernel")}
    peer = {k: peer_json.get(k) for k in ("train_seconds", "test_accuracy", "train_loss_last")}
    return ours, peer


def verdict(pair, summary, full_length):
    """Whether the medians meet the issue's targets (None for a shortened run)."""
    if not full_length:
        return None
    t = TARGETS[pair]
    ok = {"ratio": summary["ratio_of_medians"] <= t["ratio"]}
    for name in t.keys() - {"ratio"}:
        value = summary[name]["ours"]
        ok[name] = value is not None and (value >= t[name] if name == "test_accuracy" else value <= t[name])
    return ok


def main(argv=None):
    args = parse_args(argv)
    try:
        check_torch_python(args.torch_python)
    except PeerMissing as e:
        print(f"side_by_side.py: {e}", file=sys.stderr)
        return 2
    if args.mpi and not shutil.which("mpiexec"):
        print("side_by_side.py: --mpi needs mpiexec on PATH: pip install -e \".[mpi]\"", file=sys.stderr)
        return 2
    if args.pair == "shakespeare" and not (Path(args.nanogpt) / "run_cpu.sh").is_file():
        print(f"side_by_side.py: no run_cpu.sh in {args.nanogpt}; pass nanoGPT's folder with --nanogpt",
              file=sys.stderr)
        return 2
    key = "ms_per_iter" if args.pair == "shakespeare" else "train_seconds"
    runs = []
    for i in range(1, args.runs + 1):
        how = "one after the other, every core each" if args.all_cores else "side by side"
        how += " (ours: a rank per core under mpiexec)" if args.mpi else ""
        print(f"run {i}/{args.runs}: {args.pair}, ours and peer {how} ...", file=sys.stderr,
              flush=True)
        try:
            run = run_pair(args, i)
        except (RuntimeError, ValueError) as e:
            print(f"side_by_side.py: {e}", file=sys.stderr)
            return 1
        runs.append(run)
        print(f"run {i}/{args.runs}: ours {run['ours'][key]} vs peer {run['peer'][key]} {key} "
              f"(ratio {run['ratio']}); ended after {run['wall_s']['ours']} s and "
              f"{run['wall_s']['peer']} s", file=sys.stderr, flush=True)
    summary = median_summary(runs, key, "val_loss" if args.pair == "shakespeare" else "test_accuracy")
    name, default = FULL_LENGTH[args.pair]
    full = getattr(args, name) == default and (args.pair != "shakespeare" or args.eval_iters == 200)
    print(json.dumps({"pair": args.pair, "measure": key, "runs": runs, "median": summary,
                      "targets": TARGETS[args.pair], "meets_targets": verdict(args.pair, summary, full),
                      "settings": {"runs": args.runs, name: getattr(args, name),
                                   "no_bias": args.no_bias, "torch_python": args.torch_python,
                                   "threads_each": threads_each(args), "ours_mpi_ranks":
                                   threads_each(args) if args.mpi else None,
                                   "one_after_the_other": args.all_cores}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
