"""Data-parallel training (train/parallel.py): rows split over ranks, the row-weighted all-reduce of
one flat buffer, refusals; and under `mpiexec -n 2` (the mpi extra) the same run as one process."""
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from glassformer.cli import train
from glassformer.errors import UserError
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import build_model, lm_config
from glassformer.train import parallel, read_metrics
from tools import tool

REPO = Path(__file__).resolve().parents[3]
TEXT = "".join(f"the {w} fox jumps over the lazy dog number {i}. "
               for i, w in enumerate(["quick", "slow", "red", "brown"] * 60))
# a constant learning rate (no warm-up, cosine from lr to lr): a run stopped at step 10 and resumed
# to 20 follows the schedule of a straight 20-step run
RUN = ["--task", "lm", "--preset", "tiny", "--context", "16", "--batch-size", "5", "--grad-accum", "2",
       "--eval-interval", "10", "--eval-batches", "2", "--log-interval", "1", "--warmup", "0",
       "--lr", "1e-3", "--min-lr", "1e-3", "--no-interactive"]
# Measured on the 20-step run below: max |w(N=2) - w(N=1)| = 1.9e-5, at the attention's key bias,
# whose true gradient is exactly 0 (softmax ignores a constant added to a row of scores): its
# gradient is float32 rounding noise, which Adam divides by its own size. Every other tensor: < 9e-6.
# Training moves the weights by ~1e-2 in these 20 steps, 100x this bound.
WEIGHT_ATOL = 1e-4
LOSS_RTOL = 1e-4
TIMEOUT_S = 180


def mpiexec():
    """The mpiexec beside this Python (the mpich wheel puts it there), else the one on PATH."""
    return tool("mpiexec")


needs_mpi = pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None or mpiexec() is None,
                               reason='needs the mpi extra: pip install -e ".[mpi]" (mpi4py, mpich)')


class FakeMPI:
    """The two methods Communicator reads from an mpi4py communicator."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size


# ---- rows and weights, without MPI ---------------------------------------------------------------

@pytest.mark.parametrize("rows,size", [(16, 2), (5, 2), (7, 3), (3, 3)])
def test_rows_split_as_evenly_as_possible(rows, size):
    b = parallel.row_bounds(rows, size)
    counts = np.diff(b)
    assert b[0] == 0 and b[-1] == rows and counts.min() >= 1 and counts.max() - counts.min() <= 1
    x = np.arange(rows * 4).reshape(rows, 4)
    parts = [parallel.Communicator(FakeMPI(r, size)).shard(x, x + 1) for r in range(size)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)   # every row once, in order
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), x + 1)


def test_a_global_batch_smaller_than_the_world_is_refused():
    with pytest.raises(UserError, match="--batch-size 1 is smaller than the 2 processes"):
        parallel.row_bounds(1, 2)


def test_the_row_weighted_allreduce_gives_the_global_batch_gradient(rng):
    """3 ranks on 2 + 2 + 3 rows of a 7-row batch: sum_r (B_r / B) g_r, packed into one buffer, is the
    gradient (and loss) of the mean over all 7 rows, as one process computes it."""
    model = build_model(lm_config("tiny", 11, d_model=16, n_heads=2, n_layers=1, max_len=8), rng)
    params, loss_fn = model.get_parameters(), CrossEntropyLoss()
    x, y = rng.integers(0, 11, (7, 8)), rng.integers(0, 11, (7, 8))

    def grads_on(xs, ys):
        model.zero_grad()
        loss = loss_fn.forward(model.forward(xs), ys)
        model.backward(loss_fn.backward(1.0))
        return loss

    want_loss = grads_on(x, y)
    want = [g.copy() for _, g in params]
    ranks = [parallel.Communicator(FakeMPI(r, 3), allreduce_sum=lambda b: None) for r in range(3)]
    sent = []
    for comm in ranks:
        loss = grads_on(*comm.shard(x, y))
        comm.allreduce_mean(params, loss)                   # a sum that does nothing: the rank's part
        sent.append(comm.buffer.copy())
    total = sum(sent)                                       # what MPI's sum hands every rank
    assert [round(c.weight * 7) for c in ranks] == [2, 2, 3]
    ranks[0].allreduce_sum = lambda b: b.__setitem__(Ellipsis, total)
    loss = ranks[0].allreduce_mean(params, 0.0)             # unpacks the sum into every gradient
    assert ranks[1].reduces == 1 and ranks[1].buffer.size == sum(g.size for g in want) + 1
    np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-6)
    for (_, g), w in zip(params, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)


def test_dropout_masks_differ_between_ranks_and_repeat_on_resume():
    """Ranks draw their own masks (the shared batch generator never feeds dropout, so batches stay
    alike), seeded from (seed, step, rank): a resumed run draws the masks of the straight one."""
    r0, r1 = (parallel.Communicator(FakeMPI(r, 2)) for r in (0, 1))
    draws = []
    for comm in (r0, r1, r0):
        comm.begin_step(seed=7, step=3)
        draws.append(comm.dropout_rng.random(4))
    assert not np.allclose(draws[0], draws[1]) and np.array_equal(draws[0], draws[2])


def test_stops_and_sync_checks_are_free_in_one_process():
    comm = parallel.Communicator()
    assert comm.size == 1 and comm.is_root and comm.any(True, False) == (True, False)
    comm.check_sync([])                                     # nothing to compare with
    assert comm.allreduce_mean([], "loss") == "loss"


class Exited(Exception):
    """What os._exit raises in the test below, so pytest lives on."""


@pytest.mark.parametrize("rank, said", [(0, "error: the data is bad\n"),
                                        (1, "rank 1: error: the data is bad\n")])
def test_an_error_on_a_rank_is_said_once_and_nothing_runs_after_abort(rank, said, monkeypatch):
    """MPI_Abort may return before mpiexec kills the job: the rank must leave then and there, not run
    on past the with-block (once it went on to refuse '--task digits' in the same breath)."""
    aborts = []
    mpi = FakeMPI(rank, 2)
    mpi.Abort = aborts.append                               # returns, as MPICH's may
    monkeypatch.setattr(parallel, "DRAIN_S", 0.0)
    monkeypatch.setattr(parallel, "ROOT_FIRST_S", 0.0)
    monkeypatch.setattr(parallel.os, "_exit", lambda code: (_ for _ in ()).throw(Exited(code)))
    stream = io.StringIO()
    with pytest.raises(Exited) as e:
        with parallel.abort_on_error(parallel.Communicator(mpi), stream):
            raise UserError("the data is bad")
    assert e.value.args == (2,) and aborts == [2] and stream.getvalue() == said


class Barrier:
    """errors.Ibarrier() of a Communicator: a request that completes when `everyone_came`."""

    def __init__(self, everyone_came):
        self.everyone_came = everyone_came

    def Ibarrier(self):
        return types.SimpleNamespace(Test=lambda: self.everyone_came)


@pytest.mark.parametrize("rank", [0, 1])
def test_a_mistake_every_rank_met_is_said_once_and_all_leave_without_abort(rank):
    aborts = []
    mpi = FakeMPI(rank, 2)
    mpi.Abort = aborts.append
    comm = parallel.Communicator(mpi)
    comm.errors = Barrier(everyone_came=True)
    stream = io.StringIO()
    with pytest.raises(SystemExit) as e:
        with parallel.abort_on_error(comm, stream):
            raise UserError("the data is bad")
    assert e.value.code == 2 and aborts == []
    assert stream.getvalue() == ("error: the data is bad\n" if rank == 0 else "")   # rank 0 says it


def test_ctrl_c_while_the_ranks_start_is_one_line_not_a_traceback():
    comm = parallel.Communicator(FakeMPI(0, 2))
    comm.errors = Barrier(everyone_came=True)               # mpiexec sends SIGINT to every rank
    stream = io.StringIO()
    with pytest.raises(SystemExit) as e:
        with parallel.abort_on_error(comm, stream):
            raise KeyboardInterrupt
    assert e.value.code == 130 and stream.getvalue() == "interrupted (Ctrl-C).\n"


def test_a_mistake_one_rank_met_alone_aborts_them_all_after_waiting(monkeypatch):
    aborts = []
    mpi = FakeMPI(1, 2)
    mpi.Abort = aborts.append
    comm = parallel.Communicator(mpi)
    comm.errors = Barrier(everyone_came=False)              # rank 0 is busy elsewhere
    monkeypatch.setattr(parallel, "ROOT_FIRST_S", 0.05)
    monkeypatch.setattr(parallel, "DRAIN_S", 0.0)
    monkeypatch.setattr(parallel.os, "_exit", lambda code: (_ for _ in ()).throw(Exited(code)))
    stream = io.StringIO()
    with pytest.raises(Exited):
        with parallel.abort_on_error(comm, stream):
            raise UserError("disk full")
    assert aborts == [2] and stream.getvalue() == "rank 1: error: disk full\n"


# ---- refusals -------------------------------------------------------------------------------------

def test_launch_size_is_read_from_the_environment():
    assert parallel.launched_size({}) == 1 and parallel.launched_rank({}) == 0
    assert parallel.launched_size({"PMI_SIZE": "4"}) == 4 and parallel.launched_rank({"PMI_RANK": "3"}) == 3
    assert parallel.launched_size({"OMPI_COMM_WORLD_SIZE": "2"}) == 2


@pytest.mark.parametrize("task", ["digits", "sentences"])
def test_single_process_tasks_refuse_mpiexec(task, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    assert train.main(["--task", task, "--no-interactive", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "runs in one process, but mpiexec started 2" in err and "--task lm only" in err
    assert not (tmp_path / "run").exists()


def test_mpiexec_without_mpi4py_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setitem(sys.modules, "mpi4py", None)       # import mpi4py raises ImportError
    monkeypatch.setattr(parallel, "_world", None)
    (tmp_path / "t.txt").write_text(TEXT)
    assert train.main(RUN + ["--data", str(tmp_path / "t.txt"), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "mpiexec started 2 processes, but mpi4py is not installed" in err and '".[mpi]"' in err


# ---- the real thing: mpiexec -n 2 against one process ---------------------------------------------

def run_mpi(n, argv, cwd, script=REPO / "train_step_by_step.py"):
    """mpiexec -n n python script argv; killed with its ranks after TIMEOUT_S."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    cmd = [mpiexec(), "-n", str(n), sys.executable, str(script), *argv]
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)                    # mpiexec and every rank it started
        out, err = p.communicate()
        pytest.fail(f"mpiexec -n {n} did not finish in {TIMEOUT_S} s:\n{out[-2000:]}\n{err[-2000:]}")
    return p.returncode, out, err


def weights(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k.startswith("param/")}


def max_weight_diff(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    return max(float(np.abs(wa[k] - wb[k]).max()) for k in wa)


def assert_same_curves(a, b, steps):
    """train loss and pre-clip gradient norm at every step, validation loss where evaluated."""
    ra = {r["step"]: r for r in read_metrics(a / "metrics.csv") if r["step"] in steps}
    rb = {r["step"]: r for r in read_metrics(b / "metrics.csv") if r["step"] in steps}
    assert sorted(ra) == sorted(rb) == sorted(steps)
    for s in steps:
        for key in ("train_loss", "grad_norm", "val_loss"):
            if ra[s].get(key) is None:
                assert rb[s].get(key) is None
                continue
            assert rb[s][key] == pytest.approx(ra[s][key], rel=LOSS_RTOL), (s, key)


@needs_mpi
@pytest.mark.slow                                           # four short runs: ~15 s on 2 idle cores
def test_two_processes_train_like_one_and_resume_in_one(tmp_path, monkeypatch):
    """N=2 on a 5-row global batch (rows 2 + 3) with 2 micro-batches: the weights, losses and
    gradient norms of one process, to float32 rounding; its checkpoint at step 10 resumes in one
    process and goes on as the one-process run."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text(TEXT)
    run = RUN + ["--data", str(tmp_path / "t.txt")]
    assert train.main(run + ["--steps", "20", "--out", str(tmp_path / "one")]) == 0
    code, out, err = run_mpi(2, run + ["--steps", "20", "--out", str(tmp_path / "two")], tmp_path)
    assert code == 0, err[-3000:]
    assert out.count("files in ") == 1 and "step 20: val loss" in out   # rank 0 alone prints
    assert "data parallel: 2 processes" in out and "split 2 + 3" in out
    words = " ".join(out.split())                           # the header line is wrapped
    assert "each process runs 1 CPU thread" in words and "wait for cores" not in words   # OPENBLAS_...=1
    one, two = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "two"))
    assert (one["world_size"], two["world_size"]) == (1, 2) and one["tokens"] == two["tokens"]
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=LOSS_RTOL)
    assert max_weight_diff(tmp_path / "one" / "last.npz", tmp_path / "two" / "last.npz") < WEIGHT_ATOL
    assert_same_curves(tmp_path / "one", tmp_path / "two", range(1, 21))

    code, _, err = run_mpi(2, run + ["--steps", "10", "--out", str(tmp_path / "half")], tmp_path)
    assert code == 0, err[-3000:]
    assert max_weight_diff(tmp_path / "half" / "last.npz", tmp_path / "one" / "last.npz") > 100 * WEIGHT_ATOL
    assert train.main(["--resume", str(tmp_path / "half" / "last.npz"), "--steps", "20",
                       "--no-interactive"]) == 0
    resumed = json.loads((tmp_path / "half" / "summary.json").read_text())
    assert resumed["world_size"] == 1 and resumed["step"] == 20 and resumed["tokens"] == one["tokens"]
    assert max_weight_diff(tmp_path / "half" / "last.npz", tmp_path / "one" / "last.npz") < WEIGHT_ATOL
    assert_same_curves(tmp_path / "one", tmp_path / "half", range(11, 21))


@needs_mpi
def test_mpiexec_refuses_a_batch_smaller_than_the_world_once(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    code, out, err = run_mpi(2, RUN + ["--data", str(tmp_path / "t.txt"), "--batch-size", "1",
                                       "--out", str(tmp_path / "r")], tmp_path)
    assert code == 2 and err.count("--batch-size 1 is smaller than the 2 processes") == 1, err
    assert err.count("error:") == 1, err                   # and nothing more after it
    assert "MPI_Abort" not in err, err                      # every rank met it: they leave, no abort
    assert not (tmp_path / "r").exists()


@needs_mpi
def test_a_nan_validation_loss_on_rank_0_stops_every_rank(tmp_path):
    """Rank 0 alone evaluates: when its validation loss is NaN it must stop the others, which wait
    for it in the next all-reduce (once they waited there until killed)."""
    (tmp_path / "t.txt").write_text(TEXT)
    script = tmp_path / "nan_val.py"
    script.write_text(
        "import sys\n"
        "from glassformer.train import trainer\n"
        "trainer.Trainer.evaluate = lambda self: {'val_loss': float('nan'), 'val_ppl': float('nan')}\n"
        f"sys.argv[0] = {str(REPO / 'train_step_by_step.py')!r}\n"
        f"exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'))\n")
    code, out, err = run_mpi(2, RUN + ["--data", str(tmp_path / "t.txt"), "--steps", "20",
                                       "--out", str(tmp_path / "r")], tmp_path, script)
    assert code == 2, err[-3000:]
    assert err.count("training diverged at step 10: the validation loss is nan") == 1, err[-3000:]
    assert not (tmp_path / "r" / "best.npz").exists() and not (tmp_path / "r" / "last.npz").exists()


def arrays(path):
    """Every array of a checkpoint but its header: parameters and AdamW moments."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k != "__meta__"}


@needs_mpi
@pytest.mark.slow                                           # three short runs: ~6 s on 2 idle cores
def test_zero1_keeps_half_the_moments_per_rank_and_trains_bit_for_bit_alike(tmp_path, monkeypatch):
    """--zero-stage 1 under mpiexec -n 2: the same parameters and saved moments as without it, to the
    bit (Adam is element-wise); half of AdamW's moments per rank; its checkpoint is AdamW's, resumed
    with ZeRO under mpiexec to the straight run, and in one process without it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.txt").write_text(TEXT)
    run = RUN + ["--data", str(tmp_path / "t.txt")]
    code, _, err = run_mpi(2, run + ["--steps", "20", "--out", str(tmp_path / "plain")], tmp_path)
    assert code == 0, err[-3000:]
    code, out, err = run_mpi(2, run + ["--steps", "10", "--zero-stage", "1", "--out",
                                       str(tmp_path / "zero")], tmp_path)
    assert code == 0, err[-3000:]
    plain = json.loads((tmp_path / "plain" / "summary.json").read_text())
    zero = json.loads((tmp_path / "zero" / "summary.json").read_text())
    assert zero["zero_stage"] == 1 and 2 * zero["moment_bytes"] == plain["moment_bytes"]
    mib = plain["moment_bytes"] / 2 ** 20
    assert "its 1/2 of the" in out and f"{mib / 2:.2f} MiB in rank 0, not {mib:.2f} MiB" in out

    code, _, err = run_mpi(2, ["--resume", str(tmp_path / "zero" / "last.npz"), "--steps", "20",
                               "--no-interactive"], tmp_path)          # the run's --zero-stage 1 kept
    assert code == 0, err[-3000:]
    want, got = arrays(tmp_path / "plain" / "last.npz"), arrays(tmp_path / "zero" / "last.npz")
    assert got.keys() == want.keys() and any(k.startswith("optim/") for k in got)
    assert all(np.array_equal(got[k], want[k]) for k in want), \
        [k for k in want if not np.array_equal(got[k], want[k])]

    code, _, err = run_mpi(2, run + ["--steps", "10", "--zero-stage", "1", "--out",
                                     str(tmp_path / "again")], tmp_path)
    assert code == 0, err[-3000:]
    assert train.main(["--resume", str(tmp_path / "again" / "last.npz"), "--steps", "20",
                       "--zero-stage", "0", "--no-interactive"]) == 0     # one process, plain AdamW
    assert max_weight_diff(tmp_path / "again" / "last.npz", tmp_path / "plain" / "last.npz") < WEIGHT_ATOL


def test_the_header_names_each_process_s_threads_and_warns_when_they_outnumber_the_cores(monkeypatch):
    from glassformer import backend, cores
    for name in (backend.THREADS_ENV,) + backend.BLAS_ENVS + cores.LOCAL_SIZE_VARS + cores.SIZE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    backend.set_threads(None)
    try:
        assert parallel.describe_threads() == "each process runs 1 CPU thread"   # 2 cores, 2 ranks
        backend.set_threads(2)                              # --threads 2 in each of 2 ranks on 2 cores
        line = parallel.describe_threads()
        assert "2 CPU threads, but 2 processes x 2 threads on 2 cores wait" in line and "--threads 1" in line
    finally:
        backend.set_threads(None)
