"""Interrupts at random moments: SIGINT and SIGTERM, each sent after a random delay to a process that
trains, saves a checkpoint, exports or evaluates. Afterwards every file on disk loads, no temp file is
left, no folder is missing (an export folder is the old export or the new one, whole), and the process
ended with 0 (done before the signal) or 130 (SIGTERM is handled as Ctrl-C), never a traceback.

GLASSFORMER_SIGNAL_TRIES sets the tries per action (default DEFAULT_TRIES: the file then runs in about
half a minute on a 2-core machine; 50 each is the full check). The children are forked from this
process, so each try pays no interpreter start-up and the tries are many; LANES tries run at once, each
lane in its own folder (its tries one after another there, so each replaces what the one before left).
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
LANES = 2                                                   # tries at once: each child is busy, CI has 2 cores
TRIES = int(os.environ.get("GLASSFORMER_SIGNAL_TRIES") or DEFAULT_TRIES)
TEXT = "the quick brown fox jumps over the lazy dog. " * 60
LM = ["--task", "lm", "--tokenizer", "char", "--preset", "tiny", "--context", "8", "--batch-size", "2",
      "--eval-interval", "2", "--eval-batches", "1", "--no-interactive"]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks its children (POSIX)")


def start(action, log):
    """Fork a child running action() inside run_main (its stdout dropped, stderr to log); its pid."""
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
    return pid


def exit_status(pid):
    """The child's exit status (negative: killed by a signal) once it has ended, else None."""
    done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None


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


def hammer(name, tmp_path, lane, longest):
    """TRIES interrupts (half SIGINT, half SIGTERM, delays up to `longest` s) of a lane's action(try
    number), each followed by its check(); lane(folder) makes a lane's (action, check). LANES tries run
    at once; a child that ends before its delay is not waited for. Asserts at the end, naming how many
    tries went wrong and how."""
    rng, failures, began = random.Random(f"{name}-{TRIES}"), [], time.perf_counter()
    tries = [(i, (signal.SIGINT, signal.SIGTERM)[i % 2], rng.uniform(0.02, longest)) for i in range(TRIES)]
    folders = [tmp_path / f"lane{k}" for k in range(LANES)]
    for folder in folders:
        folder.mkdir()
    lanes = {folder: lane(folder) for folder in folders}
    running = {}                                            # folder -> (try, pid, signal at, signalled)
    while tries or running:
        for folder in [f for f in folders if f not in running][:len(tries)]:   # two free lanes, one try
            (i, signum, delay), action = tries.pop(0), lanes[folder][0]
            pid = start(lambda i=i, action=action: action(i), folder / f"stderr.{i}.txt")
            running[folder] = ((i, signum, delay), pid, time.monotonic() + delay, False)
        for folder, (attempt, pid, at, signalled) in list(running.items()):
            code = exit_status(pid)
            if code is not None:
                del running[folder]
                failures += judge_try(folder, attempt, code, lanes[folder][1])
            elif not signalled and time.monotonic() >= at:
                os.kill(pid, attempt[1])
                running[folder] = (attempt, pid, at, True)
        time.sleep(0.005)
    print(f"{name}: {TRIES} interrupts in {time.perf_counter() - began:.1f} s")
    assert not failures, f"{len(failures)} of {TRIES} interrupts of {name} went wrong:\n" + \
        "\n".join(failures[:10])


def judge_try(folder, attempt, code, check):
    """[] when the try ended well, else [its line]; the lane's leftovers removed, so the next starts clean."""
    i, signum, delay = attempt
    log = folder / f"stderr.{i}.txt"
    err = log.read_text(errors="replace") if log.exists() else ""
    problems = [f"exit {code}"] if code not in (0, 130) else []
    if "Traceback" in err:
        problems.append("a traceback")
    problems += [f"left {p}" for p in leftovers(folder)]
    try:
        check()
    except Exception as e:                                  # noqa: BLE001  a file that does not load
        problems.append(f"{type(e).__name__}: {e}")
    for p in map(Path, leftovers(folder)):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return [f"try {i} ({signal.Signals(signum).name} after {delay:.2f} s): " + "; ".join(problems)] \
        if problems else []


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
    def lane(folder):
        out = folder / "run"
        return (lambda i: train.main([*LM, "--data", str(text), "--steps", "6", "--out", str(out)]),
                lambda: check_run_folder(out) if out.exists() else None)
    hammer("training", tmp_path, lane, 3.0)


def test_an_interrupted_save_keeps_the_old_checkpoint_or_the_new(tmp_path, checkpoints):
    ckpt = load_checkpoint(checkpoints[0])

    def lane(folder):
        path = folder / "last.npz"
        save_checkpoint(path, ckpt.model)

        def saving(i):
            for _ in range(200):
                save_checkpoint(path, ckpt.model, metrics={"x": 1.0})
            return 0
        return saving, lambda: load_checkpoint(path)
    hammer("saving", tmp_path, lane, 1.0)


def test_an_interrupted_export_leaves_the_old_export_or_the_new(tmp_path, checkpoints):
    refs = []
    for i, ckpt in enumerate(checkpoints):                  # what each whole export holds
        assert export.main([str(ckpt), str(tmp_path / f"ref{i}")]) == 0
        refs.append(digest(tmp_path / f"ref{i}"))

    def lane(folder):
        out = folder / "export"
        assert export.main([str(checkpoints[0]), str(out)]) == 0

        def exporting(i):                                   # the sources alternate: old and new differ
            for j in range(40):                             # busy until the signal comes
                code = export.main([str(checkpoints[(i + j + 1) % 2]), str(out)])
                if code:                                    # 130: interrupted, and said so
                    return code
            return 0

        def whole():
            assert out.is_dir(), "the export folder is missing"
            assert digest(out) in refs, f"a mixed export: {sorted(digest(out))}"
            load_checkpoint(out)
        return exporting, whole
    hammer("export", tmp_path, lane, 1.0)


def test_an_interrupted_evaluation_exits_quietly(tmp_path, checkpoints, text):
    def evaluating(i):
        for _ in range(40):                                 # busy until the signal comes
            code = evaluate.main([str(checkpoints[0]), "--data", str(text), "--json"])
            if code:
                return code
        return 0
    hammer("evaluate", tmp_path, lambda folder: (evaluating, lambda: load_checkpoint(checkpoints[0])), 1.0)
