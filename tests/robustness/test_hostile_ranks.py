"""Hostile ranks: under mpiexec, one rank started with another flag, file or tokenizer. Before step 1
the ranks compare a digest of their settings, tokenizer, tokens and model (train/agree.py
agreement) and stop together: one `error:` line naming the first difference, exit 2, no MPI_Abort,
no hang, no "Message truncated". Generated cases, each judged by the shared judge (cause "ranks"):
many in-process (threads stand in for ranks; real parsed flags), a few under `mpiexec -n 2`."""
import importlib.util
import io
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from contextlib import redirect_stderr
from pathlib import Path

import numpy as np
import pytest

from glassformer.cli import train
from glassformer.errors import UserError
from glassformer.train import agree
from hostile import early, judge
from tools import tool

REPO = Path(__file__).resolve().parents[2]
CAUSE = "ranks"
FIX = "start every rank with the same flags"
TIMEOUT_S = int(os.environ.get("GLASSFORMER_HOSTILE_RANKS_TIMEOUT", "60"))   # per mpiexec run
TEXT = "".join(f"the {w} fox jumps over the lazy dog number {i}. "
               for i, w in enumerate(["quick", "slow", "red", "brown"] * 60))
# a short --task lm run every rank starts from; each case changes one flag on rank 1
RUN = ["--task", "lm", "--preset", "tiny", "--context", "16", "--batch-size", "4", "--steps", "4",
       "--eval-interval", "4", "--eval-batches", "2", "--warmup", "0", "--lr", "1e-3", "--no-interactive"]


# ---- threads stand in for ranks ----------------------------------------------------------------

class ThreadWorld:
    """The COMM_WORLD calls agreement makes, between threads. Allgather refuses buffers of other sizes
    than the other ranks' (MPI would truncate them): the exchange must never send one."""

    def __init__(self, rank, shared):
        self.rank, self.shared = rank, shared

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return len(self.shared["slots"])

    def _meet(self, send):
        """Every rank's send buffer, flat, in rank order."""
        slots, barrier = self.shared["slots"], self.shared["barrier"]
        slots[self.rank] = np.array(send).reshape(-1).copy()
        barrier.wait()
        out = list(slots)
        barrier.wait()
        return out

    def Allgather(self, send, recv):
        parts = self._meet(send)
        assert len({p.size for p in parts}) == 1, "Allgather of buffers of different sizes: truncated"
        recv.reshape(-1)[...] = np.concatenate(parts)

    def Allgatherv(self, send, spec):
        recv, counts = spec
        parts = self._meet(send)
        assert [p.size for p in parts] == list(counts), "Allgatherv counts differ from what was sent"
        recv[...] = np.concatenate(parts)


def agree_in_threads(ranks, fix=FIX):
    """Run agreement on len(ranks) threads; ranks[r] = (items, stop or None): rank r adds its items,
    then raises UserError(stop) when given. Each rank's outcome: None (went on) or its error text."""
    shared = {"slots": [None] * len(ranks), "barrier": threading.Barrier(len(ranks), timeout=20)}
    outcomes = [MISSING_OUTCOME] * len(ranks)

    def rank(r):
        items, stop = ranks[r]
        try:
            with agree.agreement(ThreadWorld(r, shared), fix) as agreed:
                for name, value in items:
                    agreed.add(name, value)
                if stop is not None:
                    raise UserError(stop)
            outcomes[r] = None
        except UserError as e:
            outcomes[r] = str(e)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(len(ranks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    hung = any(t.is_alive() for t in threads) or MISSING_OUTCOME in outcomes
    return outcomes, hung


MISSING_OUTCOME = object()


def judged(outcomes, hung, must_refuse):
    """Judge the run as rank 0 shows it (rank 0 alone prints), and check every rank stopped alike."""
    if hung:
        return judge(CAUSE, 124, "", must_refuse=must_refuse, hung=True)
    said = outcomes[0]
    assert all((o is None) == (said is None) for o in outcomes), outcomes   # all stop, or none does
    return judge(CAUSE, 0 if said is None else 2, "" if said is None else f"error: {said}\n",
                 must_refuse=must_refuse)


# a run's settings as prepare_lm adds them, and other values of each
SETTINGS = {"--data": "/data/t.txt", "--tokenizer": "char", "--preset": "tiny", "--context": 64,
            "--dropout": 0.0, "--batch-size": 16, "--grad-accum": 1, "--steps": 1000, "--lr": 0.001,
            "--min-lr": 0.0001, "--warmup": 100, "--weight-decay": 0.1, "--beta1": 0.9, "--beta2": 0.99,
            "--grad-clip": 1.0, "--eval-interval": 100, "--max-time": None, "--seed": 0,
            "--precision": "fp32", "--init-from": None, "--zero-stage": 0, "--no-bias": False,
            "the vocabulary size": 65, "the training tokens": "sha256 1a2b3c4d5e6f7a8b"}
OTHER = {"--data": ["/data/u.txt", "t.txt"], "--tokenizer": ["bpe", "gpt2"], "--preset": ["small"],
         "--context": [32, 65], "--dropout": [0.1], "--batch-size": [32, 15], "--grad-accum": [2],
         "--steps": [20, 1001], "--lr": [0.01, 0.0010000001], "--min-lr": [0.0], "--warmup": [0, 99],
         "--weight-decay": [0.0], "--beta1": [0.8], "--beta2": [0.999], "--grad-clip": [0.0],
         "--eval-interval": [10, 0], "--max-time": [60.0], "--seed": [1, 1337], "--precision": ["fp16", "tf32"],
         "--init-from": ["/models/gpt2"], "--zero-stage": [1], "--no-bias": [True],
         "the vocabulary size": [66, 50257], "the training tokens": ["sha256 ffffffffffffffff"]}
CHANGES = [(name, value) for name, values in OTHER.items() for value in values]


def items_with(**changed):
    """SETTINGS in order, with the given names changed."""
    return [(name, changed.get(name, value)) for name, value in SETTINGS.items()]


@pytest.mark.parametrize("name, value", CHANGES)
@pytest.mark.parametrize("n_ranks, odd", [(2, 1), (3, 2), (4, 1)])
def test_one_rank_with_another_setting_stops_every_rank_naming_it(name, value, n_ranks, odd):
    """Rank `odd` has another value of one setting: every rank stops, and rank 0's one line names
    the setting and both values."""
    ranks = [(items_with(**{name: value}) if r == odd else items_with(), None) for r in range(n_ranks)]
    outcomes, hung = agree_in_threads(ranks)
    assert judged(outcomes, hung, must_refuse=True) == "refused"
    shown = [agree.one_line(v) for v in (SETTINGS[name], value)]
    assert outcomes[0] == (f"ranks disagree on {name}: rank 0 has {shown[0]}, rank {odd} has {shown[1]}: {FIX}")


@pytest.mark.parametrize("first, second", list(itertools.combinations(list(OTHER)[:8], 2)))
def test_two_differences_name_the_first_in_rank_0s_order(first, second):
    ranks = [(items_with(), None), (items_with(**{first: OTHER[first][0], second: OTHER[second][0]}), None)]
    outcomes, hung = agree_in_threads(ranks)
    assert judged(outcomes, hung, must_refuse=True) == "refused"
    assert outcomes[0].startswith(f"ranks disagree on {first}: ")


@pytest.mark.parametrize("odd, said", [((1, 3), "; rank 3 differs too"), ((2, 3, 4), "; ranks 3, 4 differ too"),
                                       ((4,), ": start")])
def test_the_line_counts_the_other_ranks_that_differ(odd, said):
    ranks = [(items_with(**({"--seed": 7} if r in odd else {})), None) for r in range(5)]
    outcomes, hung = agree_in_threads(ranks)
    assert judged(outcomes, hung, must_refuse=True) == "refused"
    assert outcomes[0].startswith(f"ranks disagree on --seed: rank 0 has 0, rank {odd[0]} has 7{said}"), outcomes[0]


@pytest.mark.parametrize("n_ranks", [1, 2, 3, 5])
def test_ranks_that_agree_go_on(n_ranks):
    outcomes, hung = agree_in_threads([(items_with(), None)] * n_ranks)
    assert judged(outcomes, hung, must_refuse=False) == "ok"


@pytest.mark.parametrize("at", [0, 3, 12, len(SETTINGS)])
@pytest.mark.parametrize("stopper", [0, 1])
def test_a_rank_refused_alone_brings_its_error_to_the_exchange(at, stopper):
    """A rank refused after `at` of its items (a bad flag of its own) still meets the others: none
    waits in a collective forever; every rank stops, and the line says who stopped and why."""
    why = "argument --steps: -3 must be at least 1"
    ranks = [(list(SETTINGS.items())[:at] if r == stopper else items_with(), why if r == stopper else None)
             for r in range(2)]
    outcomes, hung = agree_in_threads(ranks)
    assert judged(outcomes, hung, must_refuse=True) == "refused"
    other = 1 - stopper
    assert outcomes[0] == (f"ranks disagree before the first step: rank {stopper} stopped: {why} "
                           f"(rank {other} did not): {FIX}")


@pytest.mark.parametrize("at", [0, 5, len(SETTINGS)])
@pytest.mark.parametrize("n_ranks", [2, 3])
def test_an_error_every_rank_met_is_that_error_once(at, n_ranks):
    """The common case, a mistake in the one mpiexec command: each rank raises its own error (rank 0
    says it, as in one process), no disagreement."""
    why = "--batch-size 1 is smaller than the 2 processes mpiexec started"
    outcomes, hung = agree_in_threads([(list(SETTINGS.items())[:at], why)] * n_ranks)
    assert judged(outcomes, hung, must_refuse=True) == "refused" and outcomes == [why] * n_ranks


def test_ranks_refused_for_different_reasons_say_both():
    ranks = [(items_with(), "rank 0's reason"), (items_with(), "rank 1's reason")]
    outcomes, hung = agree_in_threads(ranks)
    assert judged(outcomes, hung, must_refuse=True) == "refused"
    assert "rank 0 stopped: rank 0's reason; rank 1 stopped: rank 1's reason" in outcomes[0]


@pytest.mark.parametrize("prefix", ["", "x\n" * 200, "/tmp/" + "deep/" * 40, "/tmp/\udcff\u00e9/"])
def test_long_values_differing_anywhere_are_told_apart_on_one_short_line(prefix):
    """Values are compared in full (two long paths once looked alike, cut to their first characters),
    and shown cut around where they differ."""
    ranks = [(items_with(**{"--data": prefix + "t.txt" + "y" * 100}), None),
             (items_with(**{"--data": prefix + "u.txt" + "y" * 100}), None)]
    outcomes, hung = agree_in_threads(ranks)
    assert judged(outcomes, hung, must_refuse=True) == "refused"
    assert "\n" not in outcomes[0] and len(outcomes[0]) < 300
    assert "t.txt" in outcomes[0] and "u.txt" in outcomes[0], outcomes[0]


def test_one_process_exchanges_nothing_and_computes_no_digest():
    called = []
    with agree.agreement(None, FIX) as agreed:
        agreed.add("the training tokens", lambda: called.append(1))
    assert called == [] and list(agreed) == []


@pytest.mark.parametrize("change", ["one token", "dtype", "shape", "dict"])
def test_digests_tell_token_arrays_and_tokenizers_apart(change):
    tokens = np.arange(100, dtype=np.int32) % 7
    other = {"one token": np.where(np.arange(100) == 50, 6 - tokens, tokens).astype(np.int32),
             "dtype": tokens.astype(np.int64), "shape": tokens.reshape(10, 10)}.get(change)
    if change == "dict":
        assert agree.digest({"chars": ["a", "b"]}) != agree.digest({"chars": ["a", "c"]})
        return
    assert agree.digest(tokens) == agree.digest(tokens.copy()) != agree.digest(other)


# ---- real flags, parsed and resolved as each rank does (no MPI) ------------------------------------

@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranks")
    (folder / "t.txt").write_text(TEXT)
    (folder / "u.txt").write_text(TEXT + " a new line of other text!")
    return folder


def rank_items(argv):
    """What a rank with argv adds to the first exchange, as main runs it; (items, error or None)."""
    agreed = agree.Agreed(True)
    try:
        train.choose(train.build_parser().parse_args(argv), train.build_parser().only, agreed)
    except UserError as e:
        return list(agreed), str(e)
    return list(agreed), None


# (flag, rank 1's value, what rank 0's line names): every --task lm flag the ranks must share
FLAG_CASES = [("--steps", "20", "--steps"), ("--seed", "1", "--seed"), ("--lr", "2e-3", "--lr"),
              ("--eval-interval", "2", "--eval-interval"), ("--batch-size", "8", "--batch-size"),
              ("--context", "8", "--context"), ("--tokenizer", "bpe", "--tokenizer"),
              ("--data", "u.txt", "--data"), ("--preset", "small", "--preset"),
              ("--grad-accum", "2", "--grad-accum"), ("--precision", "fp16", "--precision"),
              ("--dropout", "0.1", "--dropout"), ("--warmup", "2", "--warmup"),
              ("--min-lr", "5e-5", "--min-lr"), ("--weight-decay", "0", "--weight-decay"),
              ("--beta1", "0.8", "--beta1"), ("--beta2", "0.9", "--beta2"),
              ("--grad-clip", "0", "--grad-clip"), ("--max-time", "100", "--max-time"),
              ("--zero-stage", "1", "--zero-stage"), ("--bpe-vocab", "300", "--bpe-vocab"),
              ("--task", "digits", "--task"), ("--task", "sentences", "--task"), ("--task", "qa", "--task"),
              ("--batch-size", "1", "--batch-size"), ("--val-data", "u.txt", "--val-data"),
              ("--test-data", "u.txt", "--test-data")]
# flags only rank 0 reads, or its own by design: the ranks may differ on them
LOCAL_CASES = [("--log-interval", "1"), ("--sample-every", "2"), ("--eval-batches", "5"), ("--out", "elsewhere")]


def with_flag(argv, flag, value):
    """argv with flag set to value (replaced, or appended)."""
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


@pytest.mark.parametrize("flag, value, named", FLAG_CASES)
def test_each_flag_rank_1_changes_is_named(flag, value, named, texts, monkeypatch):
    monkeypatch.chdir(texts)
    monkeypatch.setenv("PMI_SIZE", "2")                     # row_bounds counts two ranks
    base = RUN + ["--data", "t.txt", "--out", "r0"]
    rank0, rank1 = rank_items(base), rank_items(with_flag(base, flag, value))
    assert rank0[1] is None, rank0[1]
    ranks = [rank0[0] + ([("stop", rank0[1])] if rank0[1] else []),
             rank1[0] + ([("stop", rank1[1])] if rank1[1] else [])]
    message = agree.disagreement(ranks, FIX)                 # None: both would go on
    assert judge(CAUSE, 0 if message is None else 2, f"error: {message}\n", must_refuse=True) == "refused"
    assert message.startswith(f"ranks disagree on {named}: rank 0 has "), message


@pytest.mark.parametrize("flag, value", LOCAL_CASES)
def test_flags_only_rank_0_reads_may_differ(flag, value, texts, monkeypatch):
    monkeypatch.chdir(texts)
    base = RUN + ["--data", "t.txt", "--out", "r0"]
    rank0, rank1 = rank_items(base), rank_items(with_flag(base, flag, value))
    assert rank0[1] is None and rank1[1] is None
    assert agree.disagreement([rank0[0], rank1[0]], FIX) is None
    assert judge(CAUSE, 0, "", must_refuse=False) == "ok"


# ---- the real thing: mpiexec -n 2, rank 1 started differently --------------------------------------

needs_mpi = pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or tool("mpiexec") is None,
                               reason='needs the mpi extra: pip install -e ".[mpi]" (mpi4py, mpich)')
# rank 1 runs this before train_step_by_step.py: its argv rewritten (RANK1_FLAGS), its folder changed
# (RANK1_CWD), or code of a case (RANK1_PATCH) that gives it other files' contents
WRAPPER = """\
import json, os, sys
if os.environ.get("PMI_RANK") == "1":
    argv = sys.argv[1:]
    for flag, value in json.loads(os.environ.get("RANK1_FLAGS", "[]")):
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value] if value is not None else [flag]
    sys.argv[1:] = argv
    if os.environ.get("RANK1_CWD"):
        os.chdir(os.environ["RANK1_CWD"])
    exec(os.environ.get("RANK1_PATCH", ""))
sys.argv[0] = {script!r}
exec(compile(open(sys.argv[0]).read(), sys.argv[0], "exec"))
"""
# rank 1 reads other bytes at the same path: its tokens, or its characters
OTHER_TOKENS = """\
import dataclasses, numpy as np
import glassformer.runner.lm as lm
_load = lm.load_text
def _other(s, tok):
    corpus, test = _load(s, tok)
    return dataclasses.replace(corpus, train=np.roll(corpus.train, 1)), test
lm.load_text = _other
"""
OTHER_CHARS = """\
import glassformer.runner.lm as lm
_build = lm.build_tokenizer
def _other(*a, **k):
    tok = _build(*a, **k)
    return lm.CharTokenizer(sorted(set(tok.itos[len(tok.specials):]) | {"~"}))
lm.build_tokenizer = _other
"""


def run_ranks(tmp, argv, flags=(), cwd=None, patch=""):
    """mpiexec -n 2 of train_step_by_step.py argv, rank 1 changed; (rc, stderr, hung)."""
    script = tmp / "rank1.py"
    script.write_text(WRAPPER.format(script=str(REPO / "train_step_by_step.py")))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg", RANK1_FLAGS=json.dumps(list(flags)),
               RANK1_CWD=str(cwd or ""), RANK1_PATCH=patch)
    p = subprocess.Popen([tool("mpiexec"), "-n", "2", sys.executable, str(script), *argv], cwd=tmp, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = p.communicate(timeout=TIMEOUT_S)
        return p.returncode, err, False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)                    # mpiexec and every rank it started
        _, err = p.communicate()
        return 124, err, True


# (rank 1's flag and value, what rank 0's one line says): rank 1 started with another value of one flag
MPI_CASES = [(flag, value, f"ranks disagree on {flag}: rank 0 has ") for flag, value in (
    ("--steps", "6"), ("--zero-stage", "1"), ("--task", "digits"), ("--seed", "1"), ("--lr", "2e-3"),
    ("--eval-interval", "2"), ("--batch-size", "6"), ("--context", "8"), ("--tokenizer", "bpe"),
    ("--data", "u.txt"), ("--preset", "small"), ("--grad-accum", "2"), ("--precision", "fp16"),
    ("--dropout", "0.1"), ("--warmup", "2"), ("--no-bias", None), ("--batch-size", "1"),
    ("--max-time", "5"))] + [
    ("--steps", "0", "rank 1 stopped: argument --steps: 0 is not a whole number from 1 to 1,000,000,000"),
    ("--help", None, "rank 1 stopped: --help (rank 0 did not)"),
    ("--resume", "missing.npz", "rank 1 stopped: missing.npz: no such checkpoint file")]


@pytest.fixture
def mpi_dir(tmp_path):
    return texts_in(tmp_path)


def texts_in(folder):
    (folder / "t.txt").write_text(TEXT)
    (folder / "u.txt").write_text(TEXT + " a new line of other text!")
    return folder


PATCHES = {"tokens": (OTHER_TOKENS, "the training tokens"), "chars": (OTHER_CHARS, "the vocabulary size")}
LOCAL_FLAGS = {"log": [("--log-interval", "1")], "out": [("--out", "elsewhere")]}


def mpi_jobs(tmp_path_factory):
    """{case: job giving (its folder, run_ranks' result)} of every mpiexec case that starts from the one run
    (RUN on t.txt, rank 1 changed), each in its own folder."""
    jobs = {}
    for key, flags, patch in [*[(("flag", f, v), [(f, v)], "") for f, v, _ in MPI_CASES],
                              *[(("patch", name), (), code) for name, (code, _) in PATCHES.items()],
                              *[(("local", name), flags, "") for name, flags in LOCAL_FLAGS.items()]]:
        folder = texts_in(tmp_path_factory.mktemp("mpi"))
        jobs[key] = (lambda folder=folder, flags=flags, patch=patch:
                     (folder, run_ranks(folder, RUN + ["--data", "t.txt", "--out", str(folder / "r")], flags,
                                        patch=patch)))
    return jobs


EARLY, EARLY_SECONDS = {"mpi_runs": mpi_jobs}, 40     # started with the session (conftest): the longest chain


@pytest.fixture(scope="module")
def mpi_runs(tmp_path_factory):
    """{case: Future of (its folder, run_ranks' result)}, started with the session (hostile.early)."""
    return early(mpi_jobs, tmp_path_factory)


def judged_mpi(rc, err, hung, must_refuse=True):
    """The shared judge's outcome; a refusal also has no MPI_Abort and nothing written."""
    result = judge(CAUSE, rc, err, must_refuse=must_refuse, hung=hung)
    assert "MPI_Abort" not in err and "truncated" not in err, err[-2000:]
    return result


@needs_mpi
@pytest.mark.slow                                           # ~3 s each on 2 idle cores
@pytest.mark.parametrize("flag, value, said", MPI_CASES, ids=[f"{f}={v}" for f, v, _ in MPI_CASES])
def test_mpiexec_rank_1_with_another_flag_stops_both_at_once(flag, value, said, mpi_runs):
    mpi_dir, (rc, err, hung) = mpi_runs["flag", flag, value].result()
    assert judged_mpi(rc, err, hung) == "refused"
    assert said in err, err[-2000:]
    assert not (mpi_dir / "r").exists()                     # stopped before the run directory


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("patch", PATCHES)
def test_mpiexec_same_path_other_bytes_is_named(patch, mpi_runs):
    """The same --data path holding other text on rank 1's machine: found in the second exchange,
    before the first all-reduce (it died with MPICH's "Message truncated", exit 142)."""
    named = PATCHES[patch][1]
    _, (rc, err, hung) = mpi_runs["patch", patch].result()
    assert judged_mpi(rc, err, hung) == "refused"
    assert f"ranks disagree on {named}: rank 0 has " in err and "give every rank the same files" in err, err


@needs_mpi
@pytest.mark.slow
def test_mpiexec_resume_of_another_checkpoint_at_the_same_path_is_named(mpi_dir, monkeypatch):
    """--resume ck.npz where rank 1's ck.npz is another run's (same settings, other weights)."""
    monkeypatch.chdir(mpi_dir)
    for name, steps in (("a", "2"), ("b", "3")):
        with redirect_stderr(io.StringIO()):
            assert train.main(RUN + ["--data", str(mpi_dir / "t.txt"), "--steps", steps,
                                     "--out", str(mpi_dir / name)]) == 0
    for rank, name in ((0, "a"), (1, "b")):
        (mpi_dir / f"rank{rank}").mkdir()
        (mpi_dir / f"rank{rank}" / "ck.npz").write_bytes((mpi_dir / name / "last.npz").read_bytes())
    rc, err, hung = run_ranks(mpi_dir / "rank0", ["--resume", "ck.npz", "--steps", "6", "--no-interactive"],
                              cwd=mpi_dir / "rank1")
    assert judged_mpi(rc, err, hung) == "refused"
    assert "ranks disagree on the model's starting weights: rank 0 has sha256 " in err, err[-2000:]


@needs_mpi
@pytest.mark.slow
@pytest.mark.parametrize("flags", LOCAL_FLAGS)
def test_mpiexec_flags_only_rank_0_reads_may_differ(flags, mpi_runs):
    mpi_dir, (rc, err, hung) = mpi_runs["local", flags].result()
    assert judged_mpi(rc, err, hung, must_refuse=False) == "ok"
    assert (mpi_dir / "r" / "last.npz").exists() and not (mpi_dir / "elsewhere").exists()


def test_under_mpiexec_a_resumed_model_is_read_to_the_host_before_a_gpu_is_bound(tmp_path, monkeypatch):
    """Each rank binds its GPU in parallel.world(), after the first exchange: a checkpoint resumed
    before it must not be built on the default GPU (every rank's copy on GPU 0)."""
    from glassformer import backend
    from glassformer.runner import lm
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text(TEXT)
    with redirect_stderr(io.StringIO()):
        assert train.main(RUN + ["--data", "t.txt", "--steps", "2", "--out", "resumed"]) == 0
    seen = []
    load = lm.load_checkpoint
    monkeypatch.setattr(lm, "load_checkpoint", lambda *a, **k: seen.append(backend.current()) or load(*a, **k))
    monkeypatch.setattr(backend, "use", lambda name: setattr(backend, "_device", backend.backend_name(name)))
    monkeypatch.setattr(backend, "_device", "cupy")         # as --device cuda leaves it
    monkeypatch.setenv("PMI_SIZE", "2")
    args = train.build_parser().parse_args(["--resume", "resumed/last.npz", "--steps", "4"])
    args.resume = Path(args.resume)
    s, ckpt = lm.prepare_lm(args, agree.Agreed(True))
    assert seen == ["numpy"] and backend.current() == "cupy" and ckpt.step == 2
