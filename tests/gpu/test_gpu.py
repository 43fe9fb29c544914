"""The same code on a GPU: NumPy vs CuPy agreement of every gradient-check case (float64, float32, fp16),
the accelerated kernels vs the reference array code, cuBLAS batched products, training, checkpoints GPU <-> CPU,
no host sync in a training step. Every test but the last two is marked `gpu` and skips without CuPy and
a CUDA device (conftest.py).

Tolerances (max |a - b| over the largest |b| of the tensor, as gradcheck.rel_error): float64 1e-9;
float32 2e-4 (TF32 off; summation order differs); fp16 policy 3e-2 (float16 keeps ~3 digits, errors add
up over a few layers).
"""
import io

import numpy as np
import pytest

from glassformer import backend, gradcheck, precision
from glassformer.errors import UserError
from glassformer.generate import generate_tokens

gpu = pytest.mark.gpu
TOLERANCE = {"float64": 1e-9, "float32": 2e-4, "fp16": 3e-2}
NOT_COMPARABLE = {"Dropout"}                               # masks come from another generator on the GPU


@pytest.fixture
def cp():
    cupy = pytest.importorskip("cupy")
    if not backend.gpu_available():
        pytest.skip("no CUDA device")
    return cupy


@pytest.fixture(autouse=True)
def _defaults_after():
    yield
    precision.use("fp32")
    backend.set_fusion(True)
    backend.set_batched_matmul("matmul")


def rel(a, b, floor=0.0):
    """max |a - b| relative to the largest |b| (at least `floor`, and 1e-3 as gradcheck.rel_error)."""
    a, b = backend.to_numpy(a).astype(np.float64), backend.to_numpy(b).astype(np.float64)
    return float(np.abs(a - b).max(initial=0.0) / max(np.abs(b).max(initial=0.0), floor, 1e-3))


def differences(got, want, tol):
    """{tensor: relative difference} above tol; a tensor's scale is at least 1% of the case's largest
    gradient, so gradients that are zero in theory (the key bias) are judged against real ones."""
    floor = 1e-2 * max(np.abs(v).max(initial=0.0) for k, v in want.items() if k != "out")
    return {k: e for k in want if (e := rel(got[k], want[k], 0.0 if k == "out" else floor)) > tol}


def run_case(name, mode, device, dout_seed=1):
    """Build case `name` (seed 0), cast it for `mode`, run forward and backward on `device`.

    Returns {tensor name: NumPy array} with the output, the input gradients and every parameter's."""
    layer, forward, inputs = gradcheck.CASES[name](np.random.default_rng(0))
    dtype = np.float64 if mode == "float64" else np.float32
    layer.astype(dtype)
    if device == "cuda":
        layer.to("cuda")
    xp = backend.xp_for("cupy" if device == "cuda" else "numpy")
    args = {k: (xp.asarray(v.astype(dtype)) if isinstance(v, np.ndarray) and v.dtype == np.float64
                else xp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in inputs.items()}
    with precision.policy("fp16" if mode == "fp16" else "fp32"):
        layer.zero_grad()
        out = forward(**args)
        dout = np.random.default_rng(dout_seed).standard_normal(np.shape(out)).astype(dtype)
        dins = layer.backward(xp.asarray(dout) if np.ndim(out) else float(dout))
    dins = dins if isinstance(dins, tuple) else (dins,)
    floats = [k for k, v in inputs.items() if isinstance(v, np.ndarray) and v.dtype == np.float64]
    result = {"out": backend.to_numpy(out).astype(np.float64)}
    result.update({f"d{k}": backend.to_numpy(d).astype(np.float64) for k, d in zip(floats, dins)})
    result.update({n: backend.to_numpy(g).astype(np.float64) for n, (_, g) in layer.named_parameters()})
    return result


CASE_NAMES = [n for n in gradcheck.CASES if n.split("[")[0] not in NOT_COMPARABLE]


@gpu
@pytest.mark.parametrize("mode", ["float64", "float32", "fp16"])
@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_case_agrees_between_numpy_and_cupy(cp, name, mode):
    want = run_case(name, mode, "cpu")
    got = run_case(name, mode, "cuda")
    assert want.keys() == got.keys()
    bad = differences(got, want, TOLERANCE[mode])
    assert not bad, f"{name} [{mode}]: relative differences above {TOLERANCE[mode]}: {bad}"


@gpu
@pytest.mark.parametrize("name", ["MultiHeadAttention[separate-qkv,causal,padding]",
                                  "TransformerBlock[pre-LN,causal,gelu]", "DecoderLM[tied]",
                                  "CrossEntropyLoss[ignore_index]", "LayerNorm", "GELU"])
@pytest.mark.parametrize("mode", ["float64", "float32", "fp16"])
def test_kernels_agree_with_the_reference_code_on_the_gpu(cp, name, mode):
    fast = run_case(name, mode, "cuda")
    with backend.fusion(False):
        plain = run_case(name, mode, "cuda")
    bad = differences(fast, plain, TOLERANCE[mode])
    assert not bad, f"{name} [{mode}]: kernels vs reference code: {bad}"


@gpu
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_cublas_batched_matmul_equals_cupy_matmul(cp, dtype):
    rng = np.random.default_rng(0)
    B, H, T, D = 2, 3, 17, 8
    qkv = cp.asarray(rng.standard_normal((B, T, 3, H, D)).astype(dtype)).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    att = cp.asarray(rng.random((B, H, T, T)).astype(dtype))
    from glassformer.kernels.attention import bmm
    tol = 2e-3 if dtype == "float16" else 1e-5 if dtype == "float32" else 1e-12
    for a, b in [(q, k.swapaxes(-1, -2)), (att, v), (att.swapaxes(-1, -2), q),
                 (cp.ascontiguousarray(q), cp.ascontiguousarray(k).swapaxes(-1, -2))]:
        backend.set_batched_matmul("cublas")
        got = bmm(a, b)
        backend.set_batched_matmul("matmul")
        want = cp.matmul(a.astype(np.float64), b.astype(np.float64))
        assert got.dtype == np.dtype(dtype) and got.shape == want.shape
        assert rel(got, want) < tol


@gpu
def test_adam_kernel_equals_the_reference_update(cp):
    from glassformer.layers import Linear
    from glassformer.optim.optimizers import AdamW
    layers, opts = [], []
    for fast in (True, False):
        with backend.fusion(fast):
            layer = Linear(6, 5, np.random.default_rng(0)).to("cuda")
            opt = AdamW(layer.get_parameters(), lr=1e-2, weight_decay=0.1,
                        decay=[True, False])
            for step in range(3):
                layer.dW[...] = cp.asarray(np.random.default_rng(step).standard_normal((6, 5)))
                layer.db[...] = 0.5
                opt.step()
        layers.append(layer)
        opts.append(opt)
    assert rel(layers[0].W, layers[1].W) < 1e-6 and rel(layers[0].b, layers[1].b) < 1e-6
    assert rel(opts[0].v[0], opts[1].v[0]) < 1e-6 and int(opts[0].t) == int(opts[1].t) == 3


@gpu
def test_scaler_skips_on_the_gpu_without_a_host_sync(cp):
    import cupyx
    from glassformer.layers import Linear
    from glassformer.optim import AdamW, LossScaler
    layer = Linear(4, 3, np.random.default_rng(0)).to("cuda")
    opt = AdamW(layer.get_parameters(), lr=0.1)
    scaler = LossScaler(init_scale=1024.0)
    layer.dW[...] = 1.0
    scaler.step(opt, max_norm=1.0)  # a good step: t becomes a device array
    W = layer.W.copy()
    layer.dW[0, 0] = cp.inf
    with cupyx.allow_synchronize(False):                    # raises if anything waits for the GPU
        scaler.step(opt, max_norm=1.0)
    assert bool((layer.W == W).all()) and scaler.scale == 512.0 and int(opt.t) == 1
    layer.dW[0, 0] = 1.0
    scaler.step(opt, max_norm=1.0)
    assert not bool((layer.W == W).all()) and int(opt.t) == 2 and scaler.skipped_steps == 1


def tiny_lm_trainer(steps, seed=0):
    from glassformer.train import TrainConfig, Trainer
    from glassformer.models import lm_config
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.models import build_model
    V = 17
    pattern = np.arange(400) % V                            # a cycle: next token = this + 1

    def batches(r):
        start = r.integers(0, 380, 8)
        return (np.stack([pattern[s:s + 16] for s in start]),
                np.stack([pattern[s + 1:s + 17] for s in start]))
    model = build_model(lm_config("tiny", V, d_model=32, n_heads=4, n_layers=2, max_len=16),
                        np.random.default_rng(seed))
    cfg = TrainConfig(steps=steps, lr=3e-3, min_lr=1e-4, warmup=5, eval_interval=0, log_interval=10 ** 6)
    return Trainer(model, CrossEntropyLoss(), batches, cfg, log=io.StringIO())


@gpu
@pytest.mark.parametrize("policy", ["fp32", "tf32", "fp16"])
def test_training_on_the_gpu_lowers_the_loss(cp, policy):
    backend.use("cupy")
    precision.use(policy)
    tr = tiny_lm_trainer(60)
    assert isinstance(tr.params[0][0], cp.ndarray)
    first = float(tr.update())
    for _ in range(59):
        last = tr.update()
    assert float(last) < first - 1.0
    assert all(p.dtype == np.float32 for p, _ in tr.params)
    assert backend.memory_stats()["pool_bytes"] > 0


@gpu
def test_a_training_step_never_waits_for_the_gpu(cp):
    import cupyx
    backend.use("cupy")
    precision.use("fp16")
    tr = tiny_lm_trainer(5)
    tr.update()                                         # first step: kernels compile, buffers grow
    with cupyx.allow_synchronize(False):
        for _ in range(3):
            tr.update()


@gpu
def test_checkpoint_round_trip_gpu_cpu_gpu(cp, tmp_path):
    from glassformer.checkpoint import load_checkpoint
    backend.use("cupy")
    tr = tiny_lm_trainer(6)
    for _ in range(3):
        tr.update()
    tr.save(tmp_path / "gpu.npz")
    backend.use("numpy")
    on_cpu = load_checkpoint(tmp_path / "gpu.npz")
    for (name, (p, _)), (_, (q, _)) in zip(tr.model.named_parameters(), on_cpu.model.named_parameters()):
        assert isinstance(q, np.ndarray) and np.array_equal(backend.to_numpy(p), q), name
    on_gpu = load_checkpoint(tmp_path / "gpu.npz", device="cuda")
    assert isinstance(on_gpu.model.tok_emb.W, cp.ndarray)
    ids = np.arange(12).reshape(1, 12) % 17
    assert rel(on_gpu.model.forward(cp.asarray(ids)), on_cpu.model.forward(ids)) < 1e-4
    backend.use("cupy")                                     # resume on the GPU: the same next step
    resumed = tiny_lm_trainer(6, seed=9)
    resumed.resume(tmp_path / "gpu.npz")
    assert resumed.step == 3 and isinstance(resumed.optimizer.m[0], cp.ndarray)
    assert float(resumed.update()) == pytest.approx(float(tr.update()), rel=1e-5)


@gpu
def test_nccl_sums_a_device_buffer_and_the_communicator_round_trips_grads(cp):
    """The NCCL path on the one GPU there is: a one-rank communicator (the unique id broadcast over
    MPI_COMM_SELF), its in-place sum, and Communicator.allreduce_mean packing CuPy gradients into one
    device buffer, through NCCL and back (weight 1: one rank's sum is its own numbers)."""
    mpi = pytest.importorskip("mpi4py.MPI")
    from types import SimpleNamespace
    from glassformer.train.parallel import Communicator
    nccl = backend.nccl_communicator(mpi.COMM_SELF, 0)
    buf = cp.arange(10, dtype=cp.float32)
    backend.nccl_allreduce(nccl, buf)
    assert cp.array_equal(buf, cp.arange(10, dtype=cp.float32))
    two = SimpleNamespace(Get_rank=lambda: 0, Get_size=lambda: 2)  # packs as rank 0 of 2 would
    comm = Communicator(two, allreduce_sum=lambda b: backend.nccl_allreduce(nccl, b))
    comm.weight = 1.0
    grads = [cp.full((3, 4), 2.0, dtype=cp.float32), cp.arange(5, dtype=cp.float32)]
    want = [g.copy() for g in grads]
    loss = comm.allreduce_mean([(None, g) for g in grads], cp.asarray(1.5, dtype=cp.float32))
    assert float(loss) == 1.5 and all(cp.array_equal(g, w) for g, w in zip(grads, want))
    comm.allgather(buf, [0, 4, 10])                         # ZeRO-1's route: zeros beyond rank 0's 4
    assert cp.array_equal(buf, cp.asarray([0, 1, 2, 3] + [0] * 6, dtype=cp.float32))


@gpu
def test_greedy_generation_matches_between_cpu_and_gpu(cp):
    from glassformer.models import lm_config
    from glassformer.models import build_model
    model = build_model(lm_config("tiny", 23, d_model=32, n_heads=4, n_layers=2, max_len=32,
                                  dtype="float64"), np.random.default_rng(4))
    on_cpu = generate_tokens(model, [1, 2, 3], 12, temperature=0)
    model.to("cuda")
    assert generate_tokens(model, [1, 2, 3], 12, temperature=0) == on_cpu


@gpu
def test_dropout_masks_are_drawn_on_the_gpu(cp):
    from glassformer.layers import Dropout
    layer = Dropout(0.25, np.random.default_rng(0))
    x = cp.ones((256, 256), cp.float32)
    y = layer.forward(x)
    assert isinstance(layer.mask, cp.ndarray)
    kept = float((y != 0).mean())
    assert abs(kept - 0.75) < 0.01 and float(y.max()) == pytest.approx(1 / 0.75)
    assert bool((layer.backward(x) == y).all())


@gpu
def test_tf32_is_switched_in_cupy(cp):
    from cupy._core import _routines_linalg as linalg
    precision.use("tf32")
    major = cp.cuda.Device().compute_capability
    if int(major) >= 80:
        assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32
    precision.use("fp32")
    assert linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_DEFAULT


# ---- without a GPU: a clear message -------------------------------------------------------------

@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_one_clear_error():
    with pytest.raises(UserError, match="CuPy|CUDA"):
        backend.use("cuda")
    from glassformer.cli import repl
    err = io.StringIO()
    assert repl.main(["--device", "cuda", "--expr", "Max ( 1 2 )"], stdout=io.StringIO(),
                     stderr=err) == 2
    assert err.getvalue().startswith("error: ") and "Traceback" not in err.getvalue()


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
def test_gpu_bench_without_a_gpu_prints_one_error_line_and_exits_2():
    import json
    import subprocess
    import sys
    from pathlib import Path
    bench = Path(__file__).resolve().parents[2] / "bench" / "gpu_lm.py"
    out = subprocess.run([sys.executable, str(bench)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and "error" in json.loads(lines[0])
