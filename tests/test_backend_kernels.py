"""The fused GPU kernels (backend_kernels), run on the CPU through tests/fakecupy.py (g++, one thread per
CUDA thread), against the layers' own NumPy code: masked softmax inside attention, LayerNorm, GELU,
cross-entropy, Adam/AdamW. Skips without a g++ that has C++20 <barrier> and _Float16.

Tolerances (gradcheck.rel_error: max |a - b| over the largest |b|): float64 1e-12, float32 1e-5
(summation order differs), float16 5e-3 (one float16 rounding of float32 results, ~5e-4, plus the
reference's own float16 arithmetic); Adam is bit-exact in float32.
"""
import shutil

import numpy as np
import pytest

from glassformer import backend, gradcheck, kernels as backend_kernels
from glassformer.layers.attention import attend, attend_backward, attention_mask
from glassformer.layers import GELU, LayerNorm
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.optim.optimizers import Adam, AdamW

TOL = {"float64": 1e-12, "float32": 1e-5, "float16": 5e-3}
DTYPES = list(TOL)


@pytest.fixture(scope="module")
def kernels():
    if shutil.which("g++") is None:
        pytest.skip("no g++ to run the CUDA kernels on the CPU")
    import fakecupy
    k = backend_kernels.Kernels(fakecupy.module(), backend)
    try:
        k.masked_softmax(np.zeros((1, 32), np.float32), None, 1.0)
    except RuntimeError as e:                               # g++ without C++20 <barrier> or _Float16
        pytest.skip(f"g++ cannot build the CPU emulator: {str(e)[:200]}")
    return k


def rel(a, b):
    return gradcheck.rel_error(np.asarray(a, np.float64), np.asarray(b, np.float64))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal,padding", [(False, False), (True, True), (False, True)])
def test_attention_with_the_masked_softmax_kernel(kernels, rng, dtype, causal, padding):
    B, H, T, D = 2, 2, 5, 4
    q, k, v = (rng.standard_normal((B, H, T, D)).astype(dtype) for _ in range(3))
    pad = np.array([[True, True, True, False, False], [False] * 5]) if padding else None
    allowed = attention_mask(np, T, T, causal, pad)        # batch 1 padded everywhere: uniform rows
    y, att = kernels.attention_forward(q, k, v, allowed)
    y0, att0 = attend(q, k, v, allowed)
    assert y.dtype == att.dtype == np.dtype(dtype)
    assert rel(att, att0) < TOL[dtype] and rel(y, y0) < 2 * TOL[dtype]
    if allowed is not None:                                 # masked pairs exactly 0 (rows with a key)
        allowed = np.broadcast_to(allowed, att.shape)
        assert not att[~allowed & allowed.any(axis=-1, keepdims=True)].any()
    dy = rng.standard_normal(y.shape).astype(dtype)
    for got, want in zip(kernels.attention_backward(dy, q, k, v, att),
                         attend_backward(dy, q, k, v, att0)):
        assert rel(got, want) < 4 * TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_kernels(kernels, rng, dtype):
    C = 200                                                 # several elements per thread, 2 warps
    x_dtype = np.float32 if dtype == "float16" else dtype  # float16 dout: the fp16 policy's case
    x = (rng.standard_normal((3, 5, C)) * 3 + 1).astype(x_dtype)
    fused, ref = LayerNorm(C, dtype=x_dtype), LayerNorm(C, dtype=x_dtype)
    fused.gamma[...] = ref.gamma[...] = rng.standard_normal(C)
    fused.beta[...] = ref.beta[...] = 0.5
    y, cache = kernels.layer_norm_forward(x, fused.gamma, fused.beta, fused.eps)
    assert rel(y, ref.forward(x)) < TOL[str(np.dtype(x_dtype))]
    dout = rng.standard_normal(x.shape).astype(dtype)
    dx = kernels.layer_norm_backward(dout, cache, fused.gamma, fused.dgamma, fused.dbeta)
    tol = max(TOL[str(np.dtype(x_dtype))], 1e-6) * 10
    assert rel(dx, ref.backward(dout)) < tol
    assert rel(fused.dgamma, ref.dgamma) < tol and rel(fused.dbeta, ref.dbeta) < tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_kernels(kernels, rng, dtype):
    x = (rng.standard_normal((4, 33)) * 3).astype(dtype)
    ref = GELU()
    y, cache = kernels.gelu_forward(x)
    assert y.dtype == x.dtype and rel(y, ref.forward(x)) < TOL[dtype]
    dout = rng.standard_normal(x.shape).astype(dtype)
    assert rel(kernels.gelu_backward(dout, cache), ref.backward(dout)) < 2 * TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ignore_index", [None, 7])
def test_cross_entropy_kernels(kernels, rng, dtype, ignore_index):
    V = 50
    logits = (rng.standard_normal((3, 4, V)) * 3).astype(dtype)
    targets = rng.integers(0, V, (3, 4))
    targets[0, 1] = targets[2, 2] = 7
    ref = CrossEntropyLoss(ignore_index=ignore_index)
    loss0 = ref.forward(logits, targets)
    loss, cache = kernels.cross_entropy_forward(logits, targets, ignore_index)
    assert rel(loss, loss0) < TOL[dtype]
    dz = kernels.cross_entropy_backward(cache, 0.5)
    assert dz.shape == logits.shape and dz.dtype == logits.dtype
    assert rel(dz, ref.backward(0.5)) < 2 * TOL[dtype]


def test_cross_entropy_kernel_marks_a_target_outside_the_vocabulary(kernels, rng):
    logits = rng.standard_normal((2, 10)).astype(np.float32)
    loss, _ = kernels.cross_entropy_forward(logits, np.array([3, 12]), None)
    assert np.isnan(loss)                                   # no out-of-bounds read, no silent value


@pytest.mark.parametrize("optimizer", [Adam, AdamW])
def test_fused_adam_is_bit_exact_and_skips_on_the_flag(kernels, rng, optimizer):
    W, b = rng.standard_normal((5, 6)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    ref = optimizer([(W, dW), (b, db)], lr=1e-2, weight_decay=0.1, decay=[True, False])
    fused = [W.copy(), b.copy()]
    m, v = [np.zeros_like(p) for p in fused], [np.zeros_like(p) for p in fused]
    t = np.zeros((), np.float32)
    for step in range(4):
        dW[...], db[...] = rng.standard_normal(dW.shape), rng.standard_normal(db.shape)
        skip = np.asarray(step == 2)                        # a loss-scaling overflow on step 3
        ref.step(grad_scale=np.float32(0.5), found_inf=skip)
        t = t + ~skip
        for i, (p, g, decay) in enumerate([(fused[0], dW, True), (fused[1], db, False)]):
            kernels.adam_update(p, g, m[i], v[i], 1e-2, 0.9, 0.999, 1e-8, 0.1 if decay else 0.0,
                                optimizer.decoupled, t, np.asarray(0.5, np.float32), skip)
    assert ref.t == int(t) == 3
    for got, want in [(fused[0], W), (fused[1], b), (m[0], ref.m[0]), (v[0], ref.v[0])]:
        assert np.array_equal(got, want)
