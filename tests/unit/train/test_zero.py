"""ZeRO-1 (train/zero.py): ShardedAdamW on N ranks makes AdamW's updates bit for bit, keeps 1/N of the
moments per rank, and saves and loads AdamW's checkpoint state. The ranks here are threads that meet
in a barrier for each collective; tests/unit/train/test_parallel.py runs the real thing under mpiexec."""
import threading

import numpy as np
import pytest

from glassformer import backend
from glassformer.backend import array_module, to_numpy
from glassformer.checkpoint import optimizer_name
from glassformer.models import build_model, lm_config
from glassformer.optim.optimizers import AdamW, decay_mask
from glassformer.train.parallel import Communicator
from glassformer.train.zero import ShardedAdamW, adamw, describe

SETTINGS = {"lr": 1e-2, "betas": (0.9, 0.99), "weight_decay": 0.1}
STEPS = 3


def model(device="cpu"):
    m = build_model(lm_config("tiny", 50, max_len=16), np.random.default_rng(0))
    return m.to("cuda") if device == "cuda" else m


def params_and_decay(m):
    named = m.named_parameters()
    return [pg for _, pg in named], decay_mask(named)


def set_grads(m, step):
    """The same made-up gradients on every rank at a step (as after the gradient all-reduce)."""
    r = np.random.default_rng(step)
    for _, (_, g) in m.named_parameters():
        g[...] = array_module(g).asarray(r.standard_normal(g.shape).astype(g.dtype))


class ThreadComm:
    """The collectives ShardedAdamW uses, between threads, through a shared table."""

    def __init__(self, rank, shared):
        self.rank, self.size, self.shared = rank, len(shared["slots"]), shared
        self.is_root, self.buffer = rank == 0, None

    def _meet(self, value):
        slots, barrier = self.shared["slots"], self.shared["barrier"]
        slots[self.rank] = value
        barrier.wait()
        seen = list(slots)
        barrier.wait()                                      # nobody writes again before all have read
        return seen

    def allgather(self, buf, bounds):
        lo, hi = bounds[self.rank], bounds[self.rank + 1]
        shards = self._meet(buf[lo:hi].copy())
        assert [s.size for s in shards] == np.diff(bounds).tolist()
        buf[...] = array_module(buf).concatenate(shards)

    def gather_root(self, shard, counts):
        shards = self._meet(shard)
        assert [s.size for s in shards] == counts
        return np.concatenate(shards) if self.is_root else None


def reference(device="cpu"):
    """A straight AdamW run: the parameters and the state it ends with."""
    m = model(device)
    params, decay = params_and_decay(m)
    opt = AdamW(params, decay=decay, **SETTINGS)
    for step in range(STEPS):
        set_grads(m, step)
        opt.step()
    return m, opt


def sharded_run(n_ranks, load=None, device="cpu"):
    """STEPS updates on n_ranks threads, each with its own model and ShardedAdamW; per rank
    (model, optimizer, state_dict on rank 0 else None). load: an AdamW state_dict to start from."""
    shared = {"slots": [None] * n_ranks, "barrier": threading.Barrier(n_ranks, timeout=60)}
    out, errors = [None] * n_ranks, []

    def rank(r):
        try:
            m = model(device)
            params, decay = params_and_decay(m)
            comm = ThreadComm(r, shared)
            opt = ShardedAdamW(params, comm, decay=decay, **SETTINGS)
            comm.buffer = array_module(params[0][0]).empty(sum(p.size for p, _ in opt.pairs) + 1,
                                                           dtype=np.float32)
            if load is not None:
                opt.load_state_dict(load)
            for step in range(STEPS):
                set_grads(m, step)
                opt.step()
            opt.gather_state()
            out[r] = (m, opt, opt.state_dict() if r == 0 else None)
        except Exception as e:                              # noqa: BLE001  reported below
            errors.append(e)
            shared["barrier"].abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(n_ranks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def max_param_diff(a, b):
    return max(float(np.abs(to_numpy(p) - to_numpy(q)).max())
               for (_, (p, _)), (_, (q, _)) in zip(a.named_parameters(), b.named_parameters()))


@pytest.mark.parametrize("n_ranks", [2, 3])
def test_sharded_updates_are_adamws_bit_for_bit_with_a_share_of_the_moments(n_ranks):
    ref_model, ref_opt = reference()
    ranks = sharded_run(n_ranks)
    for m, opt, _ in ranks:
        assert max_param_diff(m, ref_model) == 0.0          # every rank: every parameter, gathered
    shares = [opt.moment_bytes() for _, opt, _ in ranks]
    assert sum(shares) == ref_opt.moment_bytes() and max(shares) - min(shares) <= 8 * n_ranks
    state, want = ranks[0][2], ref_opt.state_dict()
    assert state["t"] == want["t"] == STEPS and state["arrays"].keys() == want["arrays"].keys()
    for k, a in want["arrays"].items():
        assert state["arrays"][k].shape == a.shape and np.array_equal(state["arrays"][k], a), k


def test_a_sharded_run_loads_adamws_state_and_goes_on_alike():
    ref_model, ref_opt = reference()                        # 3 steps, then 3 more from its state
    saved = {"t": ref_opt.t, "lr": ref_opt.lr,
             "arrays": {k: a.copy() for k, a in ref_opt.state_arrays().items()}}
    for step in range(STEPS):
        set_grads(ref_model, step)
        ref_opt.step()
    ranks = sharded_run(2, load=saved)
    for k, a in ref_opt.state_arrays().items():
        assert np.array_equal(ranks[0][2]["arrays"][k], a), k
    assert ranks[0][2]["t"] == 2 * STEPS


def test_one_rank_is_adamw_and_saves_as_adamw():
    ref_model, ref_opt = reference()
    m = model()
    params, decay = params_and_decay(m)
    opt = ShardedAdamW(params, Communicator(), decay=decay, **SETTINGS)
    for step in range(STEPS):
        set_grads(m, step)
        opt.step()
    assert max_param_diff(m, ref_model) == 0.0 and opt.moment_bytes() == ref_opt.moment_bytes()
    assert optimizer_name(opt) == "AdamW" == optimizer_name(ref_opt)
    assert all(np.array_equal(opt.state_arrays()[k], a) for k, a in ref_opt.state_arrays().items())
    assert f"1/1 of the {m.n_parameters():,} parameters" in describe(opt)


def test_saving_moments_not_gathered_is_refused():
    m = model()
    params, decay = params_and_decay(m)
    comm = ThreadComm(1, {"slots": [None, None], "barrier": threading.Barrier(2)})
    opt = ShardedAdamW(params, comm, decay=decay, **SETTINGS)
    with pytest.raises(RuntimeError, match="before gather_state"):
        opt.state_arrays()


def test_zero_stage_1_shards_only_with_several_ranks():
    params, decay = params_and_decay(model())
    two = ThreadComm(0, {"slots": [None, None], "barrier": threading.Barrier(2)})
    assert type(adamw(params, two, 1, decay=decay)) is ShardedAdamW
    assert type(adamw(params, two, 0, decay=decay)) is AdamW
    assert type(adamw(params, Communicator(), 1, decay=decay)) is AdamW   # one rank: its moments by name


@pytest.mark.gpu
def test_sharded_updates_on_the_gpu_are_adamws_bit_for_bit():
    """CuPy parameters: the fused Adam kernel on slices, the gather in device buffers."""
    pytest.importorskip("cupy")
    if not backend.gpu_available():
        pytest.skip("no CUDA device")
    ref_model, ref_opt = reference("cuda")
    ranks = sharded_run(2, device="cuda")
    assert all(max_param_diff(m, ref_model) == 0.0 for m, _, _ in ranks)
    for k, a in ref_opt.state_arrays().items():
        assert np.array_equal(ranks[0][2]["arrays"][k], to_numpy(a)), k


def test_zero_stage_1_in_one_process_says_it_changes_nothing(tmp_path, capsys):
    from glassformer.cli import train
    (tmp_path / "t.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    assert train.main(["--task", "lm", "--data", str(tmp_path / "t.txt"), "--preset", "tiny", "--context",
                       "16", "--steps", "2", "--eval-batches", "1", "--zero-stage", "1",
                       "--no-interactive", "--out", str(tmp_path / "r")]) == 0
    assert "--zero-stage 1 in one process: it keeps every moment" in capsys.readouterr().out
