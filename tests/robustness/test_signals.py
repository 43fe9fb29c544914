"""Interrupts at random moments: SIGINT and SIGTERM, each sent after a random delay to a process that
trains, saves a checkpoint, exports or evaluates. Afterwards every file on disk loads, no temp file is
left, no folder is missing (an export folder is the old export or the new one, whole), and the process
ended with 0 (done before the signal) or 130 (SIGTERM is handled as Ctrl-C), never a traceback.

GLASSFORMER_SIGNAL_TRIES sets the tries per action (default DEFAULT_TRIES: the file then runs in about
a minute on a busy 2-core machine; 50 each is the full check). The children are forked from this
process, so each try pays no interpreter start-up and the tries are many.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from glassformer.cli import evaluate, export
from glassformer.checkpoint import load_checkpoint, save_checkpoint
from glassformer.cli import train
from glassformer.errors import run_main
from glassformer.train.records import read_metrics

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRIES = 12
TRIES = int(os.environ.get("GLASSFORMER_SIGNAL_TRIES") or DEFAULT_TRIES)
TEXT = "the quick brown fox jumps over the lazy dog. " * 60
LM = ["--task", "lm", "--tokenizer", "char", "--preset", "tiny", "--context", "8", "--batch-size", "2",
      "--eval-interval", "2", "--eval-batches", "1", "--no-interactive"]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks its children (POSIX)")


def interrupted(action, log, delay, signum):
    """Fork a child running action() inside run_main (its stdout dropped, stderr to log); after
    `delay` seconds send it signum; its exit status (negative: killed by that signal)."""
    pid = os.fork()
    if pid == 0:                                            # the child: never returns into pytest
        code = 99
        try:
            sys.stdout = open(os.devnull, "w")
            sys.stderr = open(log, "w")
            code = run_main(action)
            sys.stderr.flush()
        finally:
            os._exit(code)
    time.sleep(delay)
    os.kill(pid, signum)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def leftovers(root):
    """Temp files or folders of writers anywhere under root."""
    return [str(p) for p in Path(root).rglob(".*") if p.name.endswith((".tmp", ".old"))]


def check_run_folder(folder):
    """Every checkpoint loads, every JSON parses, metrics.csv reads."""
    for f in folder.glob("*.npz"):
        load_checkpoint(f)
    for f in folder.glob("*.json"):
        json.loads(f.read_text(encoding="utf-8"))
    if (folder / "metrics.csv").exists():
        read_metrics(folder / "metrics.csv")


def digest(folder):
    """{file name: sha256} of a folder's files."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def hammer(name, tmp_path, action, check, longest):
    """TRIES interrupts of action(try number) (half SIGINT, half SIGTERM, delays up to `longest` s),
    each followed by check(); asserts at the end, naming how many tries went wrong and how."""
    rng, failures = random.Random(f"{name}-{TRIES}"), []
    start = time.perf_counter()
    for i in range(TRIES):
        signum = (signal.SIGINT, signal.SIGTERM)[i % 2]
        delay = rng.uniform(0.02, longest)
        log = tmp_path / f"stderr.{i}.txt"
        code = interrupted(lambda: action(i), log, delay, signum)
        err = log.read_text(errors="replace") if log.exists() else ""
        problems = []
        if code not in (0, 130):
            problems.append(f"exit {code}")
        if "Traceback" in err:
            problems.append("a traceback")
        problems += [f"left {p}" for p in leftovers(tmp_path)]
        try:
            check()
        except Exception as e:                              # noqa: BLE001  a file that does not load
            problems.append(f"{type(e).__name__}: {e}")
        if problems:
            failures.append(f"try {i} ({signal.Signals(signum).name} after {delay:.2f} s): "
                            + "; ".join(problems))
        for p in map(Path, leftovers(tmp_path)):            # the next try starts clean
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    print(f"{name}: {TRIES} interrupts in {time.perf_counter() - start:.1f} s")
    assert not failures, f"{len(failures)} of {TRIES} interrupts of {name} went wrong:\n" + \
        "\n".join(failures[:10])


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, text):
    """Two finished tiny LM runs (other seeds and contexts, so their exports differ in every file but
    the tokenizer's): their best.npz files."""
    root = tmp_path_factory.mktemp("lm")
    paths = []
    for seed in (0, 1):
        assert train.main([*LM, "--data", str(text), "--steps", "2", "--seed", str(seed), "--context",
                           str(8 - 2 * seed), "--out", str(root / f"run{seed}")]) == 0
        paths.append(root / f"run{seed}" / "best.npz")
    return paths


def test_interrupted_training_leaves_a_run_folder_that_loads(tmp_path, text):
    out = tmp_path / "run"
    action = lambda i: train.main([*LM, "--data", str(text), "--steps", "6", "--out", str(out)])
    hammer("training", tmp_path, action, lambda: check_run_folder(out) if out.exists() else None, 3.0)


def test_an_interrupted_save_keeps_the_old_checkpoint_or_the_new(tmp_path, checkpoints):
    ckpt = load_checkpoint(checkpoints[0])
    path = tmp_path / "last.npz"
    save_checkpoint(path, ckpt.model)

    def saving(i):
        for _ in range(200):
            save_checkpoint(path, ckpt.model, metrics={"x": 1.0})
        return 0
    hammer("saving", tmp_path, saving, lambda: load_checkpoint(path), 1.0)


def test_an_interrupted_export_leaves_the_old_export_or_the_new(tmp_path, checkpoints):
    out, refs = tmp_path / "export", []
    for i, ckpt in enumerate(checkpoints):                  # what each whole export holds
        assert export.main([str(ckpt), str(tmp_path / f"ref{i}")]) == 0
        refs.append(digest(tmp_path / f"ref{i}"))
    assert export.main([str(checkpoints[0]), str(out)]) == 0

    def exporting(i):                                       # the sources alternate: old and new differ
        for j in range(40):                                 # busy until the signal comes
            code = export.main([str(checkpoints[(i + j + 1) % 2]), str(out)])
            if code:                                        # 130: interrupted, and said so
                return code
        return 0

    def whole():
        assert out.is_dir(), "the export folder is missing"
        assert digest(out) in refs, f"a mixed export: {sorted(digest(out))}"
        load_checkpoint(out)
    hammer("export", tmp_path, exporting, whole, 1.0)


def test_an_interrupted_evaluation_exits_quietly(tmp_path, checkpoints, text):
    def evaluating(i):
        for _ in range(40):                                 # busy until the signal comes
            code = evaluate.main([str(checkpoints[0]), "--data", str(text), "--json"])
            if code:
                return code
        return 0
    action = evaluating
    hammer("evaluate", tmp_path, action, lambda: load_checkpoint(checkpoints[0]), 1.0)
