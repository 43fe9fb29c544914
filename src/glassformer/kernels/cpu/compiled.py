"""The compiled overlay: numba loops (jit.py) laid over the NumPy overlay where they measure faster:
LayerNorm, GELU, the softmax, attention's row work, AdamW and the clip's gradient norm.

On a shakespeare_char step (bench/profile.py's recipe, 1 thread, cProfile) they take LayerNorm from
4.8 to 2.1 ms, GELU from 9.3 to 5.7, AdamW from 2.6 to 1.0 and the softmax from 4.1 to 2.6: the step
from 61 to 53 ms. They run for float32 and float64 arrays of at least MIN_SIZE numbers when numba
is installed (pip install glassformer[fast]) and GLASSFORMER_NUMBA is not 0; anything else (no
numba, small or 16-bit arrays, a non-contiguous parameter) goes to the NumPy overlay's kernel, so
numba is imported only when a loop's work arrives (its import takes 0.1-0.3 s). Measured hot, one
thread (compiled / NumPy): LayerNorm forward on 8 x 64 numbers 4.2 / 9.5 us, on 256 x 64 7.8 / 27.4;
GELU backward on 2,048 numbers 3.4 / 7.8 us; attention on 32 x 4 x 8 x 8 scores 51 / 103 us. The
loops win from a few hundred numbers on, so MIN_SIZE is 256: the digits encoder (rows of 64) went
from 0.586 to 0.544 of PyTorch's time (bench/side_by_side.py digits, 3 runs each).
tests/unit/kernels/cpu/test_compiled.py compares each with its reference, and 1 thread with 2 bit
for bit.

Threads: a loop runs on backend.cpu_threads() threads only for PARALLEL_SIZE numbers or more. Waking
a sleeping worker costs more than a small loop gains from it: on this 2-core machine an empty
2-thread launch takes 63 us (0.8 us on one thread), so GELU forward on shakespeare_char's 393k
numbers took 1031 us on two threads against 494 on one, while GELU backward on 1M numbers took
459 us against 682.
"""
import math
import os

import numpy as np

from ... import backend
from .activations import gelu_backward_cpu, gelu_forward_cpu, softmax_backward_cpu, softmax_cpu
from .attention import attend_backward_cpu, attend_cpu, mask_bias
from .norm import layer_norm_backward_cpu, layer_norm_forward_cpu
from .optim import adam_step_cpu, bias_corrected, grad_norm_cpu

ENV = "GLASSFORMER_NUMBA"               # 0: never use the compiled loops
MIN_SIZE = 1 << 8                       # numbers: a smaller array stays with NumPy (see above)
PARALLEL_SIZE = 1 << 20                 # numbers: less work runs on one thread (the docstring says why)
FLOATS = (np.float32, np.float64)
GELU_C2 = 2 * math.sqrt(2 / math.pi)    # 2 du/dx at x = 0
GELU_TILE = 131_072                     # numbers: x, s and out tiles, 1.5 MiB of float32, stay in L2
_state = {"jit": None, "threads": 0, "on": os.environ.get(ENV, "").strip() != "0"}


def set_enabled(flag):
    """Use the compiled loops (True, where numba is installed) or never (False); returns the old flag."""
    old, _state["on"] = _state["on"], bool(flag)
    return old


def loops(*arrays, size=None):
    """jit.py's module when these arrays should run compiled (each float32 or float64, one dtype, the
    work at least MIN_SIZE numbers: size, else the first array's; numba importable), else None. Its
    loops run on backend.cpu_threads() threads for work of PARALLEL_SIZE numbers or more, else on one."""
    work = arrays[0].size if size is None else size
    if not _state["on"] or work < MIN_SIZE:
        return None
    dtype = arrays[0].dtype
    if dtype not in FLOATS or any(a.dtype != dtype for a in arrays[1:]):
        return None
    if _state["jit"] is None:
        try:
            from . import jit
        except ImportError:                                 # no numba: the NumPy overlay, always
            jit = False
        _state["jit"] = jit
    jit = _state["jit"] or None
    threads = backend.cpu_threads() if work >= PARALLEL_SIZE else 1
    if jit is not None and _state["threads"] != threads:
        _state["threads"] = threads
        jit.set_threads(threads)
    return jit


def rows(x):
    """x as a C-contiguous (rows, last axis) array (a view when it already is one)."""
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1])


@backend.accelerates("layer_norm_forward", device="cpu")
def layer_norm_forward_compiled(x, gamma, beta, eps):
    """layer_norm_forward() in one pass per row; cache (x_hat, rstd) as the reference's."""
    jit = loops(x, gamma) if beta is None or beta.dtype == x.dtype else None
    if jit is None:
        return layer_norm_forward_cpu(x, gamma, beta, eps)
    x2 = rows(x)
    out, x_hat = np.empty_like(x2), np.empty_like(x2)
    rstd = np.empty((x2.shape[0], 1), x.dtype)
    beta = np.zeros_like(gamma) if beta is None else beta
    jit.layer_norm_forward(x2, gamma, beta, x.dtype.type(eps), out, x_hat, rstd.reshape(-1))
    return out.reshape(x.shape), (x_hat.reshape(x.shape), rstd.reshape(*x.shape[:-1], 1))


@backend.accelerates("layer_norm_backward", device="cpu")
def layer_norm_backward_compiled(dout, cache, gamma, dgamma, dbeta):
    """layer_norm_backward(): dx in one pass per row, the column sums by fixed blocks of rows."""
    x_hat, rstd = cache
    jit = loops(dout, x_hat, gamma, dgamma)
    if jit is None:
        return layer_norm_backward_cpu(dout, cache, gamma, dgamma, dbeta)
    d2 = rows(dout)
    blocks = -(-d2.shape[0] // jit.ROWS)
    dgamma_parts, dbeta_parts = np.empty((2, blocks, d2.shape[1]), dout.dtype)
    dx = np.empty_like(d2)
    jit.layer_norm_backward(d2, rows(x_hat), rstd.reshape(-1), gamma, dx, dgamma_parts, dbeta_parts)
    dgamma += dgamma_parts.sum(axis=0)                      # forward: out = x_hat * gamma + beta
    if dbeta is not None:
        dbeta += dbeta_parts.sum(axis=0)
    return dx.reshape(dout.shape)


def gelu_constants(dtype):
    """(c, c3) of GELU's tanh argument u = x (c + c3 x^2), in dtype: c = sqrt(2/pi), c3 = 0.044715 c."""
    t = np.dtype(dtype).type
    return t(GELU_C2 / 2), t(GELU_C2 / 2 * 0.044715)


@backend.accelerates("gelu_forward", device="cpu")
def gelu_forward_compiled(x):
    """gelu_forward(): float32 in one loop (tanh as jit.tanh_rational), float64 as loop, np.tanh, loop
    over each L2-sized tile; cache (x, s = sigmoid(2u)) as the NumPy overlay's, so either backward
    reads it. (NumPy's SIMD tanh is faster than its exp here.)"""
    float32 = x.dtype == np.float32
    jit = loops(x, size=x.size if float32 else min(x.size, GELU_TILE))   # a launch: all, or a tile
    if jit is None:
        return gelu_forward_cpu(x)
    x1 = np.ascontiguousarray(x).reshape(-1)
    out, s = np.empty_like(x1), np.empty_like(x1)
    c, c3 = gelu_constants(x.dtype)
    if float32:                                            # read x once, write out and s once
        jit.gelu_forward32(x1, out, s, c, c3)
        return out.reshape(x.shape), (x, s.reshape(x.shape))
    for i in range(0, x1.size, GELU_TILE):
        tile = slice(i, i + GELU_TILE)
        jit.gelu_inner(x1[tile], s[tile], c, c3)           # s = u
        np.tanh(s[tile], out=s[tile])
        jit.gelu_output(x1[tile], s[tile], out[tile])      # s = sigmoid(2u) = (1 + tanh u) / 2, out = x s
    return out.reshape(x.shape), (x, s.reshape(x.shape))


@backend.accelerates("gelu_backward", device="cpu")
def gelu_backward_compiled(dout, cache):
    """gelu_backward() from the cache (x, s) in one pass."""
    x, s = cache
    jit = loops(dout, x, s)
    if jit is None:
        return gelu_backward_cpu(dout, cache)
    t = x.dtype.type
    dx = np.empty(x.size, x.dtype)
    jit.gelu_backward(np.ascontiguousarray(dout).reshape(-1), np.ascontiguousarray(x).reshape(-1),
                      s.reshape(-1), dx, t(GELU_C2), t(GELU_C2 * 3 * 0.044715))
    return dx.reshape(dout.shape)


def softmax_rows(jit, z, scale, bias):
    """softmax(z * scale + bias) over the rows of a contiguous z (N, S), in place; row n takes bias row
    n % len(bias)."""
    jit.softmax_shift(z, z.dtype.type(scale), bias)
    np.exp(z, out=z)
    jit.softmax_normalise(z, z)
    return z


@backend.accelerates("softmax", device="cpu")
def softmax_compiled(z, axis=-1):
    """softmax() over the last axis: shift, np.exp, normalise."""
    jit = loops(z)
    if jit is None or axis not in (-1, z.ndim - 1):
        return softmax_cpu(z, axis)
    e = np.array(z, order="C").reshape(-1, z.shape[-1])                 # a copy: softmax_rows writes
    return softmax_rows(jit, e, 1.0, np.zeros((1, e.shape[1]), z.dtype)).reshape(z.shape)


@backend.accelerates("softmax_backward", device="cpu")
def softmax_backward_compiled(dprobs, probs, axis=-1):
    """softmax_backward() over the last axis in one pass per row."""
    jit = loops(dprobs, probs)
    if jit is None or axis not in (-1, probs.ndim - 1):
        return softmax_backward_cpu(dprobs, probs, axis)
    dz = np.empty(probs.shape, probs.dtype)
    jit.softmax_backward(rows(dprobs), rows(probs), probs.dtype.type(1), dz.reshape(-1, probs.shape[-1]))
    return dz


def mask_rows(allowed, shape, dtype):
    """The mask (B or 1, 1, T, S) as an additive bias of rows (B H T or T, S): 0 where allowed, else the
    lowest finite number (as mask_bias); row n of the scores (B H T, S) takes row n % len(bias)."""
    B, H, T, S = shape
    if allowed is None:
        return np.zeros((1, S), dtype)
    bias = np.broadcast_to(mask_bias(np, allowed, dtype), (allowed.shape[0], 1, T, S))   # (B or 1, 1, T, S)
    if bias.shape[0] == 1:
        return np.ascontiguousarray(bias[0, 0])                         # (T, S): every (b, h) alike
    return np.repeat(bias, H, axis=1).reshape(-1, S)                    # (B H T, S)


@backend.accelerates("attend", device="cpu")
def attend_compiled(q, k, v, allowed):
    """attend(): q k^T by BLAS, then scale, mask and softmax compiled, att v by BLAS."""
    B, H, T, _ = q.shape
    jit = loops(q, k, v, size=B * H * T * k.shape[2])                  # the scores' size
    if jit is None:
        return attend_cpu(q, k, v, allowed)
    scores = q @ k.transpose(0, 1, 3, 2)                                # (B, H, T, S)
    bias = mask_rows(allowed, scores.shape, scores.dtype)
    att = softmax_rows(jit, scores.reshape(-1, scores.shape[-1]), q.shape[-1] ** -0.5, bias)
    return att.reshape(scores.shape) @ v, att.reshape(scores.shape)    # (B, H, T, D)


@backend.accelerates("attend_backward", device="cpu")
def attend_backward_compiled(dy, q, k, v, att):
    """attend_backward(): the softmax's Jacobian product and the 1/sqrt(D) scale in one pass."""
    jit = loops(att, dy, q, k, v)
    if jit is None:
        return attend_backward_cpu(dy, q, k, v, att)
    S = att.shape[-1]
    dscores = dy @ v.transpose(0, 1, 3, 2)                              # datt (B, H, T, S), then
    jit.softmax_backward(rows(dscores), rows(att), att.dtype.type(q.shape[-1] ** -0.5),
                         dscores.reshape(-1, S))                       # in place: each row's dot first
    dv = att.transpose(0, 1, 3, 2) @ dy                                 # y = att @ v
    dq = dscores @ k                                                    # scores = q k^T / sqrt(D)
    dk = dscores.transpose(0, 1, 3, 2) @ q
    return dq, dk, dv


@backend.accelerates("adam_step", device="cpu")
def adam_step_compiled(params, ms, vs, t, settings):
    """adam_step(): one loop per parameter (p, g, m, v contiguous, of one dtype), else NumPy's pieces."""
    arrays = [a for (p, g), m, v in zip(params, ms, vs) for a in (p, g, m, v)]
    jit = loops(*arrays, size=sum(p.size for p, _ in params)) if params else None
    if jit is None or not all(a.flags.c_contiguous for a in arrays):
        return adam_step_cpu(params, ms, vs, t, settings)
    t += 1
    lr, b1, b2, eps, decoupled, weight_decays = settings
    step_size, eps_hat = bias_corrected(lr, b1, b2, eps, t)
    for (p, g), m, v, wd in zip(params, ms, vs, weight_decays):
        f = p.dtype.type
        shrink = f(1.0 - lr * wd) if wd and decoupled else f(1)          # AdamW: shrink the weight
        l2 = f(wd) if wd and not decoupled else f(0)                    # Adam: L2 through the gradient
        jit.adam(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), f(b1), f(b2), f(step_size),
                 f(eps_hat), shrink, l2)
    return t


@backend.accelerates("grad_norm", device="cpu")
def grad_norm_compiled(params):
    """grad_norm(), the clip's norm: each gradient's squares summed by fixed blocks in float64 on
    numba's threads; the 0-d result in the gradients' dtype, as the reference's."""
    grads = [g for _, g in params]
    jit = loops(*grads, size=sum(g.size for g in grads)) if grads else None
    if jit is None or not all(g.flags.c_contiguous for g in grads):
        return grad_norm_cpu(params)
    total = 0.0
    for g in grads:
        parts = np.empty(-(-g.size // jit.BLOCK), np.float64)
        jit.block_sum_squares(g.reshape(-1), parts)
        total += parts.sum()
    return np.sqrt(grads[0].dtype.type(total))
