"""Data parallelism: N processes (ranks) train one model, each on its rows of the same global batch.

  mpiexec -n 2 python train_step_by_step.py --task lm --data input.txt --batch-size 16

Every rank draws the global batch from the same generator, keeps rows [lo, hi) of it and runs forward
and backward on them. One all-reduce per step then sums, over the ranks, each rank's gradients weighted
by its share of the rows (all packed into one flat buffer: one call, not one per tensor), so every rank
holds the gradient of the global batch's mean loss and applies the same update. On NumPy arrays the sum
goes through MPI (mpi4py); on CuPy arrays through NCCL, on the GPU (backend.nccl_allreduce).
Before any of that the ranks agree on their flags, tokenizer, tokens and model (agree.py).
"""
import contextlib
import hashlib
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace

import numpy as np

from .. import backend
from ..cores import SIZE_VARS, env_count, machine_cores, ranks_on_this_machine, share
from ..backend import array_module
from ..errors import (EXIT_BUG, EXIT_INTERRUPTED, EXIT_USER_ERROR, REPORT, UserError,
                      os_error_message)

# each process's rank, as launchers put it in its environment (their sizes: cores.SIZE_VARS)
RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
ROOT_FIRST_S = 2.0                      # how long a rank waits to learn whether all met its error
DRAIN_S = 0.5                           # how long a rank lets mpiexec forward its last words before Abort
INSTALL = 'pip install -e ".[mpi]" (mpi4py and an MPICH from the package index)'


def launched_size(environ=None):
    """The number of processes mpiexec started, read from the environment (1 when not under mpiexec);
    no MPI library is loaded for it."""
    return env_count(SIZE_VARS, 1, environ)


def launched_rank(environ=None):
    """This process's rank as the launcher's environment says (0 when not under mpiexec)."""
    return env_count(RANK_VARS, 0, environ)


def refuse_parallel(what):
    """A UserError when mpiexec started several processes for something that runs in one only."""
    n = launched_size()
    if n > 1:
        raise UserError(f"{what} runs in one process, but mpiexec started {n}: run it without mpiexec "
                        "(data-parallel training over MPI is --task lm only)")


def even_bounds(n, size):
    """[lo_0, lo_1, ..., n]: rank r takes items lo_r..lo_{r+1}, as even as possible (sizes differ by at
    most one): the rows of a batch, or ZeRO-1's shares of the parameters."""
    return [r * n // size for r in range(size + 1)]


def row_bounds(n_rows, size):
    """even_bounds of a global batch's rows; a UserError when some rank would get none."""
    if n_rows < size:
        raise UserError(f"--batch-size {n_rows} is smaller than the {size} processes mpiexec started: "
                        f"each needs at least one row; use --batch-size {size} or more (it is the global "
                        "batch, split over the processes)")
    return even_bounds(n_rows, size)


class Communicator:
    """The ranks of one data-parallel run: which rows are this rank's, and the all-reduces.

    mpi is an mpi4py communicator (None: one process, every method a no-op); allreduce_sum(buffer)
    sums a flat device buffer over the ranks in place (None: through MPI on the host).
    """

    def __init__(self, mpi=None, allreduce_sum=None):
        self.mpi = mpi
        self.rank, self.size = (mpi.Get_rank(), mpi.Get_size()) if mpi is not None else (0, 1)
        self.allreduce_sum = allreduce_sum or self._mpi_sum
        self.through_mpi = allreduce_sum is None            # False: NCCL (or a stand-in) sums
        self.errors = None                                  # a duplicate of mpi for all_here (connect)
        self.buffer = None                                  # (n_grads + 1,): every gradient, then the loss
        self.weight = 1.0 / self.size                       # this rank's share of the rows (see shard)
        self.reduce_s, self.reduces = 0.0, 0                # time spent in the gradient all-reduce
        self.dropout_rng = np.random.default_rng()          # this rank's masks (begin_step seeds it)
        self.interrupted = False                            # Ctrl-C seen here; any() makes it everyone's

    @property
    def is_root(self):
        """Rank 0: the one that prints, evaluates and writes files."""
        return self.rank == 0

    def shard(self, x, y):
        """This rank's rows of a global batch (x, y): (B, T) -> (B_r, T)."""
        if self.size == 1:
            return x, y
        b = row_bounds(len(x), self.size)
        lo, hi = b[self.rank], b[self.rank + 1]
        self.weight = (hi - lo) / len(x)                    # every micro-batch of a step splits alike
        return x[lo:hi], y[lo:hi]

    def begin_step(self, seed, step):
        """Seed this rank's dropout generator from (seed, step, rank): masks differ between ranks, and a
        resumed run draws the same ones (the shared batch generator never feeds dropout here)."""
        if self.size > 1:
            self.dropout_rng.bit_generator.state = np.random.default_rng([seed, step, self.rank]) \
                .bit_generator.state

    def allreduce_mean(self, params, loss):
        """Replace every gradient, and the loss, by the row-weighted mean over the ranks: sum_r w_r g_r,
        w_r = B_r / B. Each rank's loss is the mean over its own tokens (rows of equal length), so this is
        the global batch's mean loss and its gradient. One all-reduce of one flat buffer; the loss."""
        if self.size == 1:
            return loss
        grads = [g for _, g in params]
        xp = array_module(grads[0])
        n = sum(int(g.size) for g in grads)
        if self.buffer is None or self.buffer.size != n + 1 or array_module(self.buffer) is not xp:
            self.buffer = xp.empty(n + 1, dtype=np.result_type(np.float32, *(g.dtype for g in grads)))
        buf, offset = self.buffer, 0
        for g in grads:                                     # pack: (n_grads + 1,)
            buf[offset:offset + g.size] = g.reshape(-1)
            offset += g.size
        buf[n] = loss
        buf *= self.weight
        start = time.perf_counter()
        self.allreduce_sum(buf)
        self.reduce_s += time.perf_counter() - start        # on a GPU: the time to enqueue it
        self.reduces += 1
        offset = 0
        for g in grads:                                     # unpack, in place (R1: grads stay bound)
            g[...] = buf[offset:offset + g.size].reshape(g.shape)
            offset += g.size
        return buf[n].copy()                                # 0-d: the buffer is reused next step

    def any(self, *flags):
        """Each flag, true on every rank when true on any (one host all-reduce): every rank stops after
        the same step, whichever saw the Ctrl-C or ran out of --max-time."""
        if self.size == 1:
            return flags
        from mpi4py import MPI
        votes = np.array(flags, dtype=np.int32)
        self.mpi.Allreduce(MPI.IN_PLACE, votes, op=MPI.MAX)
        return tuple(bool(v) for v in votes)

    def allgather(self, buf, bounds):
        """Rank r's numbers buf[bounds[r]:bounds[r + 1]] onto every rank, in place (ZeRO-1's updated
        weights). Through MPI: MPI_Allgatherv. Through NCCL (or a stand-in sum): an all-reduce where each
        rank gives its own numbers and zeros elsewhere; x + 0 = x exactly, at twice the traffic."""
        if self.size == 1:
            return
        if self.through_mpi:
            from mpi4py import MPI
            self.mpi.Allgatherv(MPI.IN_PLACE, (buf, np.diff(bounds).tolist()))
            return
        lo, hi = bounds[self.rank], bounds[self.rank + 1]
        buf[:lo] = 0
        buf[hi:] = 0
        self.allreduce_sum(buf)

    def all_here(self, seconds):
        """True when every rank calls this within `seconds` (a non-blocking barrier on a communicator of
        its own, so it never meets training's collectives); False when some rank is elsewhere."""
        if self.errors is None:
            return False
        request, deadline = self.errors.Ibarrier(), time.monotonic() + seconds
        while not request.Test():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def gather_root(self, shard, counts):
        """The ranks' host arrays shard (rank r's of size counts[r]) end to end on rank 0, None on the
        others (MPI_Gatherv: for checkpoints, not per step)."""
        if self.size == 1:
            return shard
        recv = np.empty(sum(counts), dtype=shard.dtype) if self.is_root else None
        self.mpi.Gatherv(np.ascontiguousarray(shard), (recv, counts) if self.is_root else None, root=0)
        return recv

    def check_sync(self, params):
        """Raise RuntimeError unless every rank holds bit-identical parameters (hashes compared)."""
        if self.size == 1:
            return
        h = hashlib.sha256()
        for p, _ in params:
            h.update(np.ascontiguousarray(backend.to_numpy(p)).tobytes())
        if len(set(self.mpi.allgather(h.hexdigest()))) != 1:
            raise RuntimeError("the ranks' parameters differ after the same updates (a bug)")

    def on_sigint(self, signum, frame):
        """First Ctrl-C: stop after the step all ranks agree on (see any). Second: abort every rank."""
        if self.interrupted:
            abort(self.mpi, EXIT_INTERRUPTED)
        self.interrupted = True

    def _mpi_sum(self, buf):
        """Sum a NumPy buffer over the ranks in place, through MPI."""
        from mpi4py import MPI
        self.mpi.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)


_world = None                                               # this process's Communicator, once made


def world():
    """This process's Communicator (made once, like MPI's COMM_WORLD): one process unless mpiexec
    started several. On the CuPy backend each rank takes a GPU of its node and the gradients go through
    NCCL, so make it (first call) after backend.use and before any parameter is on a GPU."""
    global _world
    if _world is None:
        _world = connect()
    return _world


def connect():
    """A new Communicator over the processes mpiexec started (see world)."""
    size = launched_size()
    if size == 1:
        return Communicator()
    try:
        from mpi4py import MPI
    except ImportError:
        raise UserError(f"mpiexec started {size} processes, but mpi4py is not installed, so they cannot "
                        f"share gradients: install it with {INSTALL}, or run without mpiexec") from None
    comm = MPI.COMM_WORLD
    if backend.current() != "cupy":
        out = Communicator(comm)
    else:
        local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()   # this rank's index on its node
        nccl = backend.nccl_communicator(comm, local)
        out = Communicator(comm, lambda buf: backend.nccl_allreduce(nccl, buf))
    out.errors = comm.Dup()                                 # every rank makes it here, together
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):      # TERM as Ctrl-C; the Trainer's stay off
            signal.signal(signum, out.on_sigint)
    return out


def describe(comm, batch_size, params):
    """One line for the run's header: the ranks, their rows, the all-reduce."""
    b = row_bounds(batch_size, comm.size)
    rows = " + ".join(str(hi - lo) for lo, hi in zip(b, b[1:]))
    n = sum(int(p.size) for p, _ in params) + 1
    return (f"data parallel: {comm.size} processes (mpiexec), each global batch of {batch_size} rows split "
            f"{rows}; per step one all-reduce of {n:,} numbers averages gradients and loss")


def describe_threads():
    """One line for a CPU run's header under mpiexec: each process's threads, and a warning when the
    processes on this machine have more threads than it has cores."""
    threads, ranks, cores = backend.cpu_threads(), ranks_on_this_machine(), machine_cores()
    line = f"each process runs {threads} CPU thread{'s' * (threads > 1)}"
    if threads * ranks > cores:
        line += (f", but {ranks} processes x {threads} threads on {cores} cores wait for cores, which "
                 f"slowed a step 6x: use --threads {share()}, or leave it out")
    return line


class DataParallel:
    """The Trainer's data-parallel wrapper, made only when mpiexec started several ranks: each
    micro-batch keeps this rank's rows, dropout is seeded per rank and step, one all-reduce averages
    the gradients and the loss between backward and the update (reduce: the clip's norm is the global
    batch's), every rank stops after the same step, and at the end they prove they hold the same
    parameters."""

    def __init__(self, comm):
        self.comm = comm

    def begin_step(self, trainer):
        self.comm.begin_step(trainer.config.seed, trainer.step)

    def batch(self, x, y):
        return self.comm.shard(x, y)

    def reduce(self, pairs, loss_sum):
        return self.comm.allreduce_mean(pairs, loss_sum)

    def after_step(self, trainer):
        """Every rank stops after the same step, whichever saw the Ctrl-C or ran out of time."""
        trainer.stop_requested, trainer.out_of_time = self.comm.any(self.comm.interrupted,
                                                                    trainer.out_of_time)

    def before_last_save(self, trainer, stepped, hard_stop):
        if not hard_stop:
            self.comm.check_sync(trainer.params)            # every rank applied the same updates


def train_only(trainer):
    """Run a rank other than 0: the same updates as rank 0, in step with it, but no evaluation, sample,
    line or file (rank 0 does those); the exit code rank 0 returns too."""
    trainer.val_batches = None
    trainer.config = replace(trainer.config, out_dir=None, sample_every=0)
    summary = trainer.fit()
    return EXIT_USER_ERROR if summary["diverged"] else EXIT_INTERRUPTED if summary["interrupted"] else 0


def abort(mpi, code):
    """End every rank with exit status code. MPI_Abort may return before mpiexec's kill arrives: this
    rank then leaves at once, and runs nothing more (no atexit, no MPI_Finalize waiting on the others)."""
    mpi.Abort(code)
    os._exit(code)


@contextlib.contextmanager
def abort_on_error(comm, stream=None):
    """With several ranks, an error on one must not leave the others waiting in an all-reduce forever.
    A user's mistake usually meets every rank alike (a bad flag, a missing file): when all reach here
    within ROOT_FIRST_S (comm.all_here), rank 0 says it and every rank leaves with the exit status, no
    abort. Otherwise the rank that met it says it and aborts them all; a bug always does."""
    if comm.size == 1:
        yield
        return
    try:
        yield
    except BaseException as e:                              # KeyboardInterrupt, SystemExit too
        mistake = isinstance(e, (UserError, OSError, MemoryError))
        code = EXIT_USER_ERROR if mistake else EXIT_INTERRUPTED if isinstance(e, KeyboardInterrupt) \
            else EXIT_BUG
        text = (f"error: {os_error_message(e) if isinstance(e, OSError) else e}" if mistake else
                "interrupted (Ctrl-C)." if code == EXIT_INTERRUPTED else
                "".join(traceback.format_exception(type(e), e, e.__traceback__)) + REPORT)
        if comm.is_root:
            print(text, file=stream or sys.stderr, flush=True)
        if code != EXIT_BUG and comm.all_here(ROOT_FIRST_S):
            raise SystemExit(code) from None                # all met it: rank 0 said it; leave together
        if not comm.is_root:
            print(f"rank {comm.rank}: {text}", file=stream or sys.stderr, flush=True)
        time.sleep(DRAIN_S)                                 # Abort kills the job, unforwarded output too
        abort(comm.mpi, code)
