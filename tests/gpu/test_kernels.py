"""The GPU kernels (glassformer.kernels), run on the CPU through tests/fakecupy.py (g++, one thread per
CUDA thread), against the reference functions they are laid over: masked softmax inside attention,
LayerNorm, GELU, cross-entropy, Adam/AdamW, the sum of squares. Skips without a g++ that has C++20
<barrier> and _Float16. At the end, every registered kernel of both overlays, CPU (kernels/cpu/) and
CUDA, against its plain reference (the CPU overlay off: .reference) on random inputs.

Tolerances (gradcheck.rel_error: max |a - b| over the largest |b|): float64 1e-12, float32 1e-5
(summation order differs), float16 5e-3 (one float16 rounding of float32 results, ~5e-4, plus the
reference's own float16 arithmetic); Adam is bit-exact in float32.
"""
import shutil

import numpy as np
import pytest

from glassformer import backend, cores, gradcheck
from glassformer.kernels import activations, attention, common, loss, norm, optim
from glassformer.layers.attention import attend, attend_backward, attention_mask
from glassformer.layers import GELU, LayerNorm
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import ModelConfig
from glassformer.models.decoder import DecoderLM
from glassformer.optim.optimizers import sum_squares
from glassformer.optim.optimizers import Adam, AdamW

TOL = {"float64": 1e-12, "float32": 1e-5, "float16": 5e-3}
DTYPES = list(TOL)


@pytest.fixture(scope="module")
def kernels():
    """The kernels running on fakecupy's CPU stand-in for CuPy (restored to CuPy afterwards)."""
    if shutil.which("g++") is None:
        pytest.skip("no g++ to run the CUDA kernels on the CPU")
    import fakecupy
    common.use_module(fakecupy.module())
    try:
        attention.masked_softmax(np.zeros((1, 32), np.float32), None, 1.0)
    except RuntimeError as e:                               # g++ without C++20 <barrier> or _Float16
        common.use_module(None)
        pytest.skip(f"g++ cannot build the CPU emulator: {str(e)[:200]}")
    yield
    common.use_module(None)


def rel(a, b):
    return gradcheck.rel_error(np.asarray(a, np.float64), np.asarray(b, np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal,padding", [(False, False), (True, True), (False, True)])
def test_attention_with_the_masked_softmax_kernel(kernels, rng, dtype, causal, padding):
    B, H, T, D = 2, 2, 5, 4
    q, k, v = (rng.standard_normal((B, H, T, D)).astype(dtype) for _ in range(3))
    pad = np.array([[True, True, True, False, False], [False] * 5]) if padding else None
    allowed = attention_mask(np, T, T, causal, pad)        # batch 1 padded everywhere: uniform rows
    y, att = attention.attend_cuda(q, k, v, allowed)
    y0, att0 = attend(q, k, v, allowed)
    assert y.dtype == att.dtype == np.dtype(dtype)
    assert rel(att, att0) < TOL[dtype] and rel(y, y0) < 2 * TOL[dtype]
    if allowed is not None:                                 # masked pairs exactly 0 (rows with a key)
        allowed = np.broadcast_to(allowed, att.shape)
        assert not att[~allowed & allowed.any(axis=-1, keepdims=True)].any()
    dy = rng.standard_normal(y.shape).astype(dtype)
    for got, want in zip(attention.attend_backward_cuda(dy, q, k, v, att),
                         attend_backward(dy, q, k, v, att0)):
        assert rel(got, want) < 4 * TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_kernels(kernels, rng, dtype):
    C = 200                                                 # several elements per thread, 2 warps
    x_dtype = np.float32 if dtype == "float16" else dtype  # float16 dout: the fp16 policy's case
    x = (rng.standard_normal((3, 5, C)) * 3 + 1).astype(x_dtype)
    fast, ref = LayerNorm(C, dtype=x_dtype), LayerNorm(C, dtype=x_dtype)
    fast.gamma[...] = ref.gamma[...] = rng.standard_normal(C)
    fast.beta[...] = ref.beta[...] = 0.5
    y, cache = norm.layer_norm_forward_cuda(x, fast.gamma, fast.beta, fast.eps)
    assert rel(y, ref.forward(x)) < TOL[str(np.dtype(x_dtype))]
    dout = rng.standard_normal(x.shape).astype(dtype)
    dx = norm.layer_norm_backward_cuda(dout, cache, fast.gamma, fast.dgamma, fast.dbeta)
    tol = max(TOL[str(np.dtype(x_dtype))], 1e-6) * 10
    assert rel(dx, ref.backward(dout)) < tol
    assert rel(fast.dgamma, ref.dgamma) < tol and rel(fast.dbeta, ref.dbeta) < tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_kernels(kernels, rng, dtype):
    x = (rng.standard_normal((4, 33)) * 3).astype(dtype)
    ref = GELU()
    y, cache = activations.gelu_forward_cuda(x)
    assert y.dtype == x.dtype and rel(y, ref.forward(x)) < TOL[dtype]
    dout = rng.standard_normal(x.shape).astype(dtype)
    assert rel(activations.gelu_backward_cuda(dout, cache), ref.backward(dout)) < 2 * TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ignore_index", [None, 7])
def test_cross_entropy_kernels(kernels, rng, dtype, ignore_index):
    V = 50
    logits = (rng.standard_normal((3, 4, V)) * 3).astype(dtype)
    targets = rng.integers(0, V, (3, 4))
    targets[0, 1] = targets[2, 2] = 7
    ref = CrossEntropyLoss(ignore_index=ignore_index)
    loss0 = ref.forward(logits, targets)
    value, cache = loss.cross_entropy_forward_cuda(logits, targets, ignore_index)
    assert rel(value, loss0) < TOL[dtype]
    dz = loss.cross_entropy_backward_cuda(0.5, cache)
    assert dz.shape == logits.shape and dz.dtype == logits.dtype
    assert rel(dz, ref.backward(0.5)) < 2 * TOL[dtype]


def test_cross_entropy_kernel_marks_a_target_outside_the_vocabulary(kernels, rng):
    logits = rng.standard_normal((2, 10)).astype(np.float32)
    value, _ = loss.cross_entropy_forward_cuda(logits, np.array([3, 12]), None)
    assert np.isnan(value)                                   # no out-of-bounds read, no silent value


@pytest.mark.parametrize("optimizer", [Adam, AdamW])
def test_adam_kernel_is_bit_exact_with_a_device_step_count(kernels, rng, optimizer):
    """adam_update with t a 0-d device array (the loss scaler keeps it there) is the reference step."""
    W, b = rng.standard_normal((5, 6)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    ref = optimizer([(W, dW), (b, db)], lr=1e-2, weight_decay=0.1, decay=[True, False])
    fast = [W.copy(), b.copy()]
    m, v = [np.zeros_like(p) for p in fast], [np.zeros_like(p) for p in fast]
    t = np.zeros((), np.int64)
    for step in range(3):
        dW[...], db[...] = rng.standard_normal(dW.shape), rng.standard_normal(db.shape)
        ref.step()
        t = t + 1
        for i, (p, g, decay) in enumerate([(fast[0], dW, True), (fast[1], db, False)]):
            optim.adam_update(p, g, m[i], v[i], 1e-2, 0.9, 0.999, 1e-8, 0.1 if decay else 0.0,
                              optimizer.decoupled, t)
    assert ref.t == int(t) == 3
    for got, want in [(fast[0], W), (fast[1], b), (m[0], ref.m[0]), (v[0], ref.v[0])]:
        assert np.array_equal(got, want)


@pytest.mark.parametrize("optimizer", [Adam, AdamW])
def test_adam_step_kernel_equals_the_reference_step(kernels, rng, optimizer):
    """adam_step's kernel (laid over optimizers.adam_step) and the reference give the same update."""
    W = rng.standard_normal((5, 6)).astype(np.float32)
    runs = []
    for fast in (True, False):
        p, g = W.copy(), np.zeros_like(W)
        opt = optimizer([(p, g)], lr=1e-2, weight_decay=0.1)
        for step in range(3):
            g[...] = np.random.default_rng(step).standard_normal(g.shape)
            if fast:
                opt.t = optim.adam_step_cuda(opt.params, opt.m, opt.v, opt.t, opt.settings())
            else:
                opt.step()
        runs.append((p, opt.m[0], opt.v[0], opt.t))
    (p1, m1, v1, t1), (p0, m0, v0, t0) = runs
    assert t1 == t0 == 3 and np.array_equal(p1, p0) and np.array_equal(m1, m0)
    assert np.array_equal(v1, v0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_squares_kernel_sums_in_the_gradients_precision(kernels, rng, dtype):
    g = rng.standard_normal((7, 9)).astype(dtype)
    got, want = optim.sum_squares_cuda(g), sum_squares(g)
    assert got.dtype == want.dtype == (np.float64 if dtype == "float64" else np.float32)
    assert rel(got, want) < TOL[dtype]


# ---- every registered kernel, CPU or CUDA, against its reference -----------------------------------------------
# A scenario runs a chain of @accelerated functions looked up through `impl` (the reference, or one device's
# kernel where one is registered: a backward reads its own forward's cache) and returns {output name: array}.

REFERENCE_TOL = {"float64": 1e-12, "float32": 1e-5}


def _softmax(impl, rng, dtype):
    z, dp = (rng.standard_normal((3, 4, 9)).astype(dtype) * 3 for _ in range(2))
    probs = impl("softmax")(z)
    return {"probs": probs, "dz": impl("softmax_backward")(dp, probs)}


def _gelu(impl, rng, dtype):
    x, dout = (rng.standard_normal((5, 40)).astype(dtype) * 3 for _ in range(2))
    y, cache = impl("gelu_forward")(x)
    return {"y": y, "dx": impl("gelu_backward")(dout, cache)}


def _layer_norm(impl, rng, dtype):
    C = 70
    x, dout = ((rng.standard_normal((3, 5, C)) * 3 + 1).astype(dtype) for _ in range(2))
    gamma, beta = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    dgamma, dbeta = np.zeros(C, dtype), np.zeros(C, dtype)
    y, cache = impl("layer_norm_forward")(x, gamma, beta, 1e-5)
    dx = impl("layer_norm_backward")(dout, cache, gamma, dgamma, dbeta)
    return {"y": y, "dx": dx, "dgamma": dgamma, "dbeta": dbeta}


def _attention(impl, rng, dtype):
    B, H, T, D = 2, 2, 5, 4
    q, k, v, dy = (rng.standard_normal((B, H, T, D)).astype(dtype) for _ in range(4))
    allowed = attention_mask(np, T, T, True, np.array([[True] * 4 + [False], [True] * 5]))
    y, att = impl("attend")(q, k, v, allowed)
    dq, dk, dv = impl("attend_backward")(dy, q, k, v, att)
    return {"y": y, "att": att, "dq": dq, "dk": dk, "dv": dv}


def _cross_entropy(impl, rng, dtype):
    logits = (rng.standard_normal((3, 4, 50)) * 3).astype(dtype)
    targets = rng.integers(0, 50, (3, 4))
    targets[0, 1] = 7
    loss, cache = impl("cross_entropy_forward")(logits, targets, 7)
    return {"loss": loss, "dz": impl("cross_entropy_backward")(0.5, cache)}


def _linear(impl, rng, dtype):
    x, W, dout = (rng.standard_normal(shape).astype(dtype) for shape in ((2, 3, 5), (5, 4), (2, 3, 4)))
    dW, db = np.ones((5, 4), dtype), np.ones(4, dtype)
    return {"dx": impl("linear_backward")(dout, x, W, dW, db), "dW": dW, "db": db}


def _adam(impl, rng, dtype):
    long = 3 * 65536 + 5                                    # several of the CPU kernel's pieces
    params = [(rng.standard_normal(n).astype(dtype), np.zeros(n, dtype)) for n in (long, 30)]
    ms, vs = [np.zeros_like(p) for p, _ in params], [np.zeros_like(p) for p, _ in params]
    t = 0
    for decoupled in (True, False, True):
        for _, g in params:
            g[...] = rng.standard_normal(g.shape)
        t = impl("adam_step")(params, ms, vs, t, (1e-2, 0.9, 0.99, 1e-8, decoupled, [0.1, 0.0]))
    out = {f"p{i}": p for i, (p, _) in enumerate(params)}
    out.update({f"m{i}": m for i, m in enumerate(ms)}, **{f"v{i}": v for i, v in enumerate(vs)})
    return {**out, "t": np.asarray(t)}


def _norms(impl, rng, dtype):
    pairs = [(None, rng.standard_normal(n).astype(dtype)) for n in (2 * 65536 + 3, 17)]
    return {"sum_squares": impl("sum_squares")(pairs[1][1]), "grad_norm": impl("grad_norm")(pairs)}


def _decoding(impl, rng, dtype):
    """A GPT-2-shaped model: a 4-token prompt, then 3 cached steps (the compiled ones, with numba)."""
    config = ModelConfig(vocab_size=50, kind="decoder_lm", d_model=16, n_heads=2, n_layers=2, d_ff=32,
                         max_len=12, norm_first=True, activation="gelu", positional="learned",
                         init="normal", dtype=np.dtype(dtype).name)
    model, caches = DecoderLM(config, rng).eval(), [{"max_len": 12}, {"max_len": 12}]
    out = {"prompt": impl("decode_step")(model, rng.integers(0, 50, (1, 4)), caches, 0)}
    for i, token in enumerate(rng.integers(0, 50, 3)):
        out[f"step{i}"] = impl("decode_step")(model, np.array([[token]]), caches, 4 + i)
    return {**out, "keys": caches[1]["k"], "values": caches[1]["v"]}


SCENARIOS = {"softmax": (_softmax, {"softmax", "softmax_backward"}),
             "gelu": (_gelu, {"gelu_forward", "gelu_backward"}),
             "layer_norm": (_layer_norm, {"layer_norm_forward", "layer_norm_backward"}),
             "attention": (_attention, {"attend", "attend_backward"}),
             "cross_entropy": (_cross_entropy, {"cross_entropy_forward", "cross_entropy_backward"}),
             "linear": (_linear, {"linear_backward"}),
             "adam": (_adam, {"adam_step"}),
             "norms": (_norms, {"sum_squares", "grad_norm"}),
             "decoding": (_decoding, {"decode_step"})}


@pytest.fixture(params=["cpu", "cuda"])
def device(request):
    """A kernel device: "cpu" (the CPU overlay) or "cuda" (the CUDA kernels on fakecupy's stand-in)."""
    if request.param == "cuda":
        request.getfixturevalue("kernels")
    return request.param


def test_every_registered_kernel_has_a_scenario(device):
    registered = {name for name, (_, k) in backend.overlays(device).items() if k is not None}
    covered = set().union(*(names for _, names in SCENARIOS.values()))
    assert registered and registered <= covered, f"kernels with no scenario: {registered - covered}"


@pytest.mark.parametrize("dtype", list(REFERENCE_TOL))
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_registered_kernel_matches_its_reference(device, scenario, dtype):
    """float64 to 1e-12, float32 to 1e-5 (gradcheck.rel_error), outputs and in-place updates alike."""
    table = backend.overlays(device)
    run, names = SCENARIOS[scenario]
    if not any(table[name][1] for name in names):
        pytest.skip(f"no {device} kernel among {sorted(names)}")
    kernel = lambda name: table[name][1] or table[name][0]              # noqa: E731
    reference = lambda name: table[name][0]                             # noqa: E731
    got = run(kernel, np.random.default_rng(1), np.dtype(dtype).type)
    want = run(reference, np.random.default_rng(1), np.dtype(dtype).type)
    for key in want:
        assert np.shape(got[key]) == np.shape(want[key]), key
        assert rel(got[key], want[key]) <= REFERENCE_TOL[dtype], (key, rel(got[key], want[key]))


# ---- the CPU overlay's thread pool: the same numbers at any thread count -------------------------

@pytest.fixture
def threads(monkeypatch):
    """backend.set_threads for one test, restored (to the environment's default) afterwards; parts of
    4K numbers, so that small arrays are split as big ones are."""
    from glassformer.kernels.cpu import pool
    monkeypatch.setattr(pool, "MIN_PART", 1 << 12)
    yield backend.set_threads
    backend.set_threads(None)


def test_the_pool_splits_whole_rows_one_part_a_thread(threads):
    from glassformer.kernels.cpu.pool import MIN_PART, parts
    threads(3)
    spans = parts(1001, 3 * MIN_PART // 1000 + 1)          # 3 parts of >= MIN_PART elements each
    assert len(spans) == 3 and spans[0][0] == 0 and spans[-1][1] == 1001
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert parts(1001, 8) == [(0, 1001)]                    # too small to be worth a thread
    threads(1)
    assert parts(10 ** 6, 512) == [(0, 10 ** 6)]


def threaded_runs(threads, fn):
    """fn()'s arrays (fresh inputs each call) on 1, 2 and 3 threads: they must be equal bit for bit."""
    runs = []
    for n in (1, 2, 3):
        threads(n)
        runs.append([np.asarray(a) for a in fn()])
    for other in runs[1:]:
        assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(runs[0], other))
    return runs[0]


def test_cross_entropy_is_bit_identical_on_1_2_and_3_threads(threads, rng):
    from glassformer.kernels.cpu import loss as L
    from glassformer.layers.loss import cross_entropy_forward
    logits = (3 * rng.standard_normal((391, 67))).astype(np.float32)     # 3 parts of >= 64 rows
    targets = rng.integers(0, 67, 391)
    targets[::7] = -100

    def run():
        loss, cache = L.cross_entropy_forward_cpu(logits, targets, ignore_index=-100)
        return loss, cache[0], L.cross_entropy_backward_cpu(np.float32(1.0), cache)
    loss = threaded_runs(threads, run)[0]
    with backend.use_overlay(False):
        np.testing.assert_allclose(loss, cross_entropy_forward(logits, targets, ignore_index=-100)[0],
                                   rtol=1e-6)


def test_the_pool_s_workers_keep_the_caller_s_errstate(threads):
    from glassformer.kernels.cpu.pool import over_rows
    threads(2)
    seen = []
    with np.errstate(over="raise"):
        over_rows(lambda a, b: seen.append(np.geterr()["over"]), 10 ** 6, 1 << 12)
    assert seen == ["raise", "raise"]


@pytest.fixture
def threads_reset():
    """backend.set_threads(None) once the test's monkeypatch is undone (ask for it before monkeypatch):
    else OpenBLAS keeps a faked count (5 or 8 spinning threads on 2 cores), and a later test that forks,
    such as lesson 20's training checks, crawls past its time limit."""
    yield
    backend.set_threads(None)


def test_threads_come_from_the_flag_or_the_environment_and_bad_counts_are_one_clear_error(threads_reset,
                                                                                          monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert backend.cpu_threads() == 5                       # the BLAS's own setting is kept
    monkeypatch.setenv(backend.THREADS_ENV, "3")
    try:
        assert backend.cpu_threads() == 3
        backend.set_threads(2)
        assert backend.cpu_threads() == 2
        for bad in ("0", "-1", "two", "1.5"):
            with pytest.raises(backend.UserError, match="whole number of threads"):
                backend.set_threads(bad)
        backend.set_threads(None)
        monkeypatch.setenv(backend.THREADS_ENV, "zero")
        with pytest.raises(backend.UserError, match="GLASSFORMER_THREADS"):
            backend.cpu_threads()
    finally:
        monkeypatch.delenv(backend.THREADS_ENV)
        backend.set_threads(None)


def test_under_mpiexec_the_default_threads_share_out_the_cores_between_the_processes(threads_reset,
                                                                                     monkeypatch):
    for name in (backend.THREADS_ENV,) + backend.BLAS_ENVS + cores.LOCAL_SIZE_VARS + cores.SIZE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    backend.set_threads(None)
    assert backend.cpu_threads() == 8                       # one process: every core
    monkeypatch.setenv("PMI_SIZE", "2")                     # MPICH's ranks in all, no local count
    assert backend.cpu_threads() == 4
    monkeypatch.setenv("MPI_LOCALNRANKS", "4")              # Hydra's ranks on this machine win
    assert backend.cpu_threads() == 2
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "16")  # more ranks than cores: one thread each
    assert backend.cpu_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")              # a setting of the user's is kept
    assert backend.cpu_threads() == 3


# ---- the cross-entropy's log-softmax, a few rows at a time ----------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_cross_entropy_by_blocks_of_rows_is_bit_identical_to_one_block(monkeypatch, rng, dtype):
    from glassformer.kernels.cpu import loss as L
    logits = (4 * rng.standard_normal((7, 11, 67))).astype(dtype)
    targets = rng.integers(0, 67, (7, 11))
    runs = []
    for block in (1 << 40, 67, 3 * 67 + 5, 10 * 67):          # all rows at once; 1, 3 and 10 rows
        monkeypatch.setattr(L, "ROW_BLOCK", block)
        loss, cache = L.cross_entropy_forward_cpu(logits, targets, ignore_index=5)
        runs.append((loss, cache[0]))
    for loss, log_probs in runs[1:]:
        assert np.array_equal(loss, runs[0][0]) and np.array_equal(log_probs, runs[0][1])


def test_cross_entropy_forward_holds_no_second_copy_of_the_logits(rng):
    """Its peak memory: the log-probabilities and one block of rows, never an exp temporary as big
    as the logits (GPT-2's 51 MB: its fresh pages cost more than the exp)."""
    import tracemalloc
    from glassformer.kernels.cpu import loss as L
    logits = rng.standard_normal((64, 20000)).astype(np.float32)        # 5 MB, 40 blocks
    targets = rng.integers(0, 20000, 64)
    tracemalloc.start()
    try:
        L.cross_entropy_forward_cpu(logits, targets)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.3 * logits.nbytes, peak / logits.nbytes
