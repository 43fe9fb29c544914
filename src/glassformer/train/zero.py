"""ZeRO stage 1 (Rajbhandari et al. 2019): under data parallelism, each rank keeps the AdamW moments of
its 1/N of the parameters only.

Plain data parallelism stores AdamW's two moments, m and v, for every parameter on every rank: N equal
copies. Stage 1 partitions them. Lay the parameters end to end (the shard space, n numbers); rank r owns
numbers lo_r..lo_{r+1}. After the gradient all-reduce every rank still holds the whole gradient (so the
clip norm is the global one), but it updates only the parameters it owns, with the moments it owns; one
all-gather then hands every rank the others' updated parameters. Adam is element-wise, so the updates
are the same numbers as without sharding: the run is bit for bit the unsharded one, with 2n/N moments
per rank instead of 2n.

  mpiexec -n 2 python train_step_by_step.py --task lm --data input.txt --zero-stage 1

Checkpoints stay AdamW's: at a step where rank 0 may save, the moments are gathered whole onto rank 0
(a host MPI_Gatherv; the other ranks send theirs and keep nothing more).
"""
import time

import numpy as np

from ..backend import array_module, to_numpy
from ..optim.optimizers import AdamW, adam_step, member_views
from .parallel import even_bounds


def flat(a):
    """a as a 1-D view (a parameter or gradient is contiguous: writes through it update a)."""
    if not a.flags.c_contiguous:
        raise RuntimeError("a parameter is not contiguous: ZeRO needs views of it (a bug)")
    return a.reshape(-1)


def adamw(params, comm, zero_stage=0, **settings):
    """AdamW(params, **settings); with zero_stage 1 and several ranks, ShardedAdamW over them (one
    rank would own every moment: plain AdamW is the same, and its moments stay readable by name)."""
    if zero_stage and comm.size > 1:
        return ShardedAdamW(params, comm, **settings)
    return AdamW(params, **settings)


class ShardedAdamW(AdamW):
    """AdamW whose moments exist only for this rank's shard of the parameters (ZeRO-1; see above).

    comm: the Communicator of the run (rank, size, buffer, allgather, gather_root). With one rank it
    owns everything and is AdamW.
    """

    checkpoint_name = "AdamW"           # its checkpoints are AdamW's: the moments gathered whole

    def __init__(self, params, comm, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 decay=None):
        self.comm = comm                                    # init_moments (called by Adam) needs it
        super().__init__(params, lr, betas, eps, weight_decay, decay)
        self.whole = None                                   # (m, v) over the shard space, rank 0's
        self.gather_s = 0.0                                 # time spent in the parameter all-gather

    def init_moments(self):
        """The shard space (the groups' flat parameters end to end), this rank's share of it and
        moments for that share only; pairs still covers every parameter (zero_grad, norms, reduce)."""
        self.flats = [(flat(p), flat(g)) for p, g, _, _ in self.groups]   # the shard space, in order
        self.offsets = np.cumsum([0] + [p.size for p, _ in self.flats]).tolist()
        self.bounds = even_bounds(self.offsets[-1], self.comm.size)   # rank r: [lo_r, lo_{r+1})
        dtypes = {p.dtype for p, _ in self.flats}
        if len(dtypes) != 1:
            raise ValueError(f"ZeRO-1 needs parameters of one dtype, not {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()
        self.pairs = list(self.flats)
        lo, hi = self.bounds[self.comm.rank], self.bounds[self.comm.rank + 1]
        xp = array_module(self.flats[0][0])
        self.m_shard = xp.zeros(hi - lo, dtype=self.dtype)  # (n/N,): this rank's moments, end to end
        self.v_shard = xp.zeros(hi - lo, dtype=self.dtype)
        self.owned = list(self._owned_pieces())             # [(p, g, m, v, decay, start)]: views
        self._pieces = [(m, v, decay) for _, _, m, v, decay, _ in self.owned]   # for settings()

    def _owned_pieces(self):
        """This rank's slice of each group, with its moments (views of the shards) and its start in
        the shard space."""
        lo, hi = self.bounds[self.comm.rank], self.bounds[self.comm.rank + 1]
        for (p, g), (_, _, decay, _), start in zip(self.flats, self.groups, self.offsets):
            a, b = max(lo, start) - start, min(hi, start + p.size) - start   # owned: p[a:b]
            if a >= b:
                continue
            m, v = (shard[start + a - lo:start + b - lo] for shard in (self.m_shard, self.v_shard))
            yield p[a:b], g[a:b], m, v, decay, start + a

    def moment_bytes(self):
        """Bytes of m and v this rank holds (the ZeRO-1 saving: about 1/N of AdamW's)."""
        return self.m_shard.nbytes + self.v_shard.nbytes

    def buffers(self):
        return [self.m_shard, self.v_shard]

    def step(self):
        """Update this rank's parameters with its moments, then all-gather everyone's."""
        pairs = [(p, g) for p, g, _, _, _, _ in self.owned]
        ms, vs = [m for _, _, m, _, _, _ in self.owned], [v for _, _, _, v, _, _ in self.owned]
        self.t = adam_step(pairs, ms, vs, self.t, self.settings())
        self.whole = None                                   # gathered moments are stale now
        if self.comm.size > 1:
            self._all_gather_parameters()

    def _all_gather_parameters(self):
        """Every rank's updated shard onto every rank (Communicator.allgather). The shard space travels
        in the gradient all-reduce's buffer, free after that call, so it costs no memory."""
        n = self.offsets[-1]
        buf = self.comm.buffer[:n]                          # (n,): (n + 1,) holds the grads and the loss
        for p, _, _, _, _, start in self.owned:
            buf[start:start + p.size] = p
        start_s = time.perf_counter()
        self.comm.allgather(buf, self.bounds)
        self.gather_s += time.perf_counter() - start_s
        for (p, _), start in zip(self.flats, self.offsets):
            p[...] = buf[start:start + p.size]              # the owner writes its own numbers back too

    def gather_state(self):
        """Collective: rank 0 gets the whole m and v (for a checkpoint); the others send theirs."""
        counts = np.diff(self.bounds).tolist()
        whole = tuple(self.comm.gather_root(to_numpy(shard), counts)
                      for shard in (self.m_shard, self.v_shard))
        self.whole = whole if self.comm.is_root else None   # held until the next step or release_state

    def release_state(self):
        """Drop the gathered moments (after the last save: rank 0 holds 2n numbers for them)."""
        self.whole = None

    def state_arrays(self):
        """{"m.i", "v.i"}: parameter i's moments, whole (gather_state() first when several ranks)."""
        if self.whole is None:
            if self.comm.size > 1:
                raise RuntimeError("ShardedAdamW.state_arrays() before gather_state(), or on a rank "
                                   "other than 0 (a bug)")
            self.gather_state()
        out = {}
        for name, whole in zip("mv", self.whole):           # the groups' flat moments, then by parameter
            groups = [whole[a:b] for a, b in zip(self.offsets, self.offsets[1:])]
            out.update({f"{name}.{i}": view
                        for i, view in enumerate(member_views(self.params, self.groups, groups))})
        return out

    def load_state_dict(self, state):
        """AdamW's state (whole moments, by parameter): keep this rank's shard of them."""
        n = self.offsets[-1]
        self.whole = (np.zeros(n, dtype=self.dtype), np.zeros(n, dtype=self.dtype))
        super().load_state_dict(state)                      # fills whole through state_arrays' views
        lo, hi = self.bounds[self.comm.rank], self.bounds[self.comm.rank + 1]
        xp = array_module(self.m_shard)
        self.m_shard[...] = xp.asarray(self.whole[0][lo:hi])
        self.v_shard[...] = xp.asarray(self.whole[1][lo:hi])
        self.whole = None


class GatherForSaves:
    """The Trainer's ZeRO-1 wrapper: at each step after which rank 0 may save, every rank sends rank 0
    its moments (a collective, so all call it at the same steps); after the last save rank 0 drops
    them. Made by the Trainer only for a ShardedAdamW over several ranks."""

    def __init__(self, optimizer):
        self.optimizer = optimizer

    def after_step(self, trainer):
        if trainer.may_save():
            self.optimizer.gather_state()

    def before_last_save(self, trainer, stepped, hard_stop):
        if not (stepped or hard_stop):                      # no step ran, so no gather yet
            self.optimizer.gather_state()

    def after_fit(self, trainer):
        self.optimizer.release_state()                      # rank 0: the whole moments, saved now


def describe(optimizer):
    """One line for the run's header: the moments this rank keeps, against AdamW's."""
    n, rank, size = optimizer.offsets[-1], optimizer.comm.rank, optimizer.comm.size
    whole = 2 * n * optimizer.dtype.itemsize
    mib = 2 ** 20
    return (f"ZeRO-1: each of the {size} processes keeps AdamW's moments (m, v) of its 1/{size} of the "
            f"{n:,} parameters: {optimizer.moment_bytes() / mib:.2f} MiB in rank {rank}, not "
            f"{whole / mib:.2f} MiB; rank 0 gathers them whole when it saves a checkpoint")
