"""The compiled loops of the CPU overlay (numba): one pass over memory where NumPy makes several.

Each loop fuses a chain of element-wise passes (LayerNorm's statistics and normalisation, GELU's
polynomial, the softmax's scale, mask and max, Adam's update, the gradient's sum of squares) into
one loop that reads its inputs once. numba calls the scalar libm exp and tanh (20x slower than
NumPy's SIMD loops), so a chain around an exp runs as loop, np.exp in place, loop; float32 GELU
takes its tanh as a rational function instead (tanh_rational), in one loop. The
rows (or elements) are split over numba's threads with prange; no sum ever spans two threads' rows
in a way that depends on how many there are (LayerNorm's column sums go by fixed blocks of ROWS
rows), so every thread count gives the same numbers, bit for bit. Arithmetic stays in the arrays'
dtype: constants come in typed (x.dtype.type(c)), as a Python float would make float32 loops
compute in float64.

Imported only by compiled.py, and only when numba is installed (the `fast` extra).
"""
import os

# numba's OpenMP threads spin between loops by default and fought OpenBLAS's threads for the cores (2
# threads each on 2 cores: 300-430 ms a shakespeare_char step, not 44); passive, they sleep. Read by
# libgomp when numba loads it, on the first parallel loop. (The workqueue layer sleeps too, but its
# start per loop cost 0.15 ms: 80 ms a step at 1 thread, against 55.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

FAST = {"reassoc", "contract", "nsz"}   # lets sums vectorise; keeps inf and NaN (the divergence guard)
ROWS = 32                               # rows per block of LayerNorm's column sums (a fixed order)
BLOCK = 1 << 14                         # numbers per block of the gradient's sum of squares
JIT = dict(fastmath=FAST, parallel=True, cache=True, nogil=True)


@njit(fastmath=FAST, cache=True, nogil=True, inline="always")
def row_statistics(row, inv_c, eps):
    """LayerNorm's statistics of one row (C,): its mean and rstd = 1 / sqrt(variance + eps)."""
    total = row.dtype.type(0)
    for c in range(row.size):
        total += row[c]
    mu = total * inv_c
    squares = row.dtype.type(0)
    for c in range(row.size):
        d = row[c] - mu
        squares += d * d
    return mu, row.dtype.type(1) / np.sqrt(squares * inv_c + eps)


@njit(**JIT)
def layer_norm_forward(x, gamma, beta, eps, out, x_hat, rstd):
    """Per row of x (R, C): mean, variance, rstd; x_hat = (x - mean) rstd; out = x_hat gamma + beta."""
    R, C = x.shape
    inv_c = x.dtype.type(1) / x.dtype.type(C)
    for r in prange(R):
        mu, rs = row_statistics(x[r], inv_c, eps)
        rstd[r] = rs
        for c in range(C):
            h = (x[r, c] - mu) * rs
            x_hat[r, c] = h
            out[r, c] = h * gamma[c] + beta[c]


@njit(**JIT)
def layer_norm_backward(dout, x_hat, rstd, gamma, dx, dgamma_parts, dbeta_parts):
    """dx per row (R, C): (dout gamma - mean(dout gamma) - x_hat mean(dout gamma x_hat)) rstd; the
    column sums of dout x_hat and dout, block by block of ROWS rows, into the parts (R / ROWS, C)."""
    R, C = dout.shape
    inv_c = dout.dtype.type(1) / dout.dtype.type(C)
    for block in prange(dgamma_parts.shape[0]):
        for c in range(C):
            dgamma_parts[block, c] = 0
            dbeta_parts[block, c] = 0
        for r in range(block * ROWS, min(R, (block + 1) * ROWS)):
            mean_dh = dout.dtype.type(0)
            mean_dh_xh = dout.dtype.type(0)
            for c in range(C):
                dh = dout[r, c] * gamma[c]                  # dx_hat
                mean_dh += dh
                mean_dh_xh += dh * x_hat[r, c]
                dgamma_parts[block, c] += dout[r, c] * x_hat[r, c]
                dbeta_parts[block, c] += dout[r, c]
            mean_dh *= inv_c
            mean_dh_xh *= inv_c
            for c in range(C):
                dx[r, c] = (dout[r, c] * gamma[c] - mean_dh - x_hat[r, c] * mean_dh_xh) * rstd[r]


# tanh u = u P(t) / Q(t) with t = (u / 9)^2 for |u| < 9, and +-1 beyond (1 - tanh 9 = 3e-8, half an
# ulp of float32 below 1). P (degree 5) and Q (degree 4) were fitted to tanh u / u by least squares on the
# relative error, reweighted by 1 / Q until it settled (Loeb's method), in float64: within 5e-9 of
# tanh there. tests/unit/kernels/cpu/test_compiled.py checks that and holds the fit (loeb_fit). Only
# + * / and compares: unlike math.tanh, LLVM vectorises it.
TANH_P = (0.9999999995282094, 11.089177933879693, 25.465709410281363, 15.023576409938865,
          1.3434754897392536, -0.04414704622422285)
TANH_Q = (1.0, 38.089177328030246, 179.07358651362173, 210.53537421742237, 56.20200853075478)
TANH_EDGE = 9.0


@njit(fastmath=FAST, cache=True, nogil=True, inline="always")
def tanh_rational(u):
    """tanh u of a float32 u as TANH_P / TANH_Q above; NaN stays NaN."""
    f, p, q = np.float32, TANH_P, TANH_Q
    uc = min(max(u, f(-TANH_EDGE)), f(TANH_EDGE))           # no branch: LLVM vectorises selects
    t = uc * uc * f(1 / TANH_EDGE ** 2)
    num = f(p[0]) + t * (f(p[1]) + t * (f(p[2]) + t * (f(p[3]) + t * (f(p[4]) + t * f(p[5])))))
    den = f(q[0]) + t * (f(q[1]) + t * (f(q[2]) + t * (f(q[3]) + t * f(q[4]))))
    edge = f(1) if u > 0 else (f(-1) if u < 0 else u)      # +-1; NaN stays NaN
    return uc * num / den if abs(u) < f(TANH_EDGE) else edge


@njit(fastmath=FAST, cache=True, nogil=True, inline="always")
def gelu_s32(x, c, c3):
    """s = (1 + tanh u) / 2 = sigmoid(2u), u = x (c + c3 x^2), of a float32 x: GELU(x) = x s."""
    half = np.float32(0.5)
    return half + half * tanh_rational(x * (c + c3 * x * x))


@njit(**JIT)
def gelu_forward32(x, out, s, c, c3):
    """float32 GELU in one pass: u = x (c + c3 x^2), s = (1 + tanh u) / 2 = sigmoid(2u), out = x s."""
    for i in prange(x.size):
        xi = x[i]
        si = gelu_s32(xi, c, c3)
        s[i] = si
        out[i] = xi * si


@njit(**JIT)
def gelu_inner(x, u, c, c3):
    """u = x (c + c3 x^2) = c (x + 0.044715 x^3), GELU's tanh argument, with c3 = 0.044715 c."""
    for i in prange(x.size):
        xi = x[i]
        u[i] = xi * (c + c3 * xi * xi)


@njit(**JIT)
def gelu_output(x, s, out):
    """From s = tanh(u): s = (1 + tanh u) / 2 = sigmoid(2u) in place, out = x s."""
    half = x.dtype.type(0.5)
    for i in prange(x.size):
        si = half + half * s[i]
        s[i] = si
        out[i] = x[i] * si


@njit(**JIT)
def gelu_backward(dout, x, s, dx, c, c3):
    """dx = dout (s + x s (1 - s) 2 du/dx), s = sigmoid(2u), 2 du/dx = c + c3 x^2 (c = 2 sqrt(2/pi))."""
    one = x.dtype.type(1)
    for i in prange(x.size):
        xi = x[i]
        si = s[i]
        dx[i] = dout[i] * (si + xi * si * (one - si) * (c + c3 * xi * xi))


@njit(fastmath=FAST, cache=True, nogil=True)
def row_max(row):
    """The largest number of a 1-D row, by 8 running maxima: with one, each compare waits for the one
    before (shakespeare_char's 3072 x 64 scores: 0.41 ms for the softmax's shift; with 8, 0.09)."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row.dtype.type(-np.inf)
    n8 = row.size - row.size % 8
    for j in range(0, n8, 8):
        m0, m1, m2, m3 = max(m0, row[j]), max(m1, row[j + 1]), max(m2, row[j + 2]), max(m3, row[j + 3])
        k = j + 4
        m4, m5, m6, m7 = max(m4, row[k]), max(m5, row[k + 1]), max(m6, row[k + 2]), max(m7, row[k + 3])
    for j in range(n8, row.size):
        m0 = max(m0, row[j])
    return max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))


@njit(**JIT)
def softmax_shift(z, scale, bias):
    """Rows of z (N, S) in place: z scale + bias (row n takes bias row n % len(bias): 0 or the lowest
    finite number), minus the row's max, so that exp stays <= 1."""
    N, S = z.shape
    for n in prange(N):
        m = bias[n % bias.shape[0]]
        row = z[n]
        for j in range(S):
            row[j] = row[j] * scale + m[j]
        top = row_max(row)
        for j in range(S):
            row[j] -= top


@njit(**JIT)
def softmax_normalise(e, out):
    """Rows of e (N, S) = exp(z - max): out = e / (the row's sum)."""
    N, S = e.shape
    one = e.dtype.type(1)
    for n in prange(N):
        total = e.dtype.type(0)
        for j in range(S):
            total += e[n, j]
        inv = one / total
        for j in range(S):
            out[n, j] = e[n, j] * inv


@njit(**JIT)
def softmax_backward(dprobs, probs, scale, dz):
    """Rows (N, S): dz = probs (dprobs - <dprobs, probs>) scale, the softmax's Jacobian product; dz may
    be dprobs (each row's dot is summed before the row is written)."""
    N, S = probs.shape
    for n in prange(N):
        dot = dprobs.dtype.type(0)
        for j in range(S):
            dot += dprobs[n, j] * probs[n, j]
        for j in range(S):
            dz[n, j] = probs[n, j] * (dprobs[n, j] - dot) * scale


@njit(**JIT)
def adam(p, g, m, v, b1, b2, step_size, eps_hat, shrink, l2):
    """One Adam/AdamW update in place: g + l2 p (Adam's L2), m, v, p shrink - step m / (sqrt v + eps)."""
    one = p.dtype.type(1)
    for i in prange(p.size):
        gi = g[i] + l2 * p[i]
        mi = b1 * m[i] + (one - b1) * gi
        vi = b2 * v[i] + (one - b2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * shrink - step_size * mi / (np.sqrt(vi) + eps_hat)


@njit(**JIT)
def block_sum_squares(g, parts):
    """parts[b] = the sum of g^2 over block b of BLOCK numbers, in float64: the blocks are fixed, so
    any thread count adds the same numbers in the same order."""
    for b in prange(parts.size):
        block = g[b * BLOCK:(b + 1) * BLOCK]            # a slice: its loop vectorises (3x faster)
        total = 0.0
        for i in range(block.size):
            gi = np.float64(block[i])
            total += gi * gi
        parts[b] = total


# ---- one step of cached decoding of a GPT-2-shaped model, on one thread (decode.py) --------------

ONE_THREAD = dict(fastmath=FAST, cache=True, nogil=True)


@njit(**ONE_THREAD)
def layer_norm_row(x, gamma, beta, eps, out):
    """out = (x - mean) rstd gamma + beta for one row x (C,), as layer_norm_forward computes it."""
    mu, rs = row_statistics(x, x.dtype.type(1) / x.dtype.type(x.size), eps)
    for c in range(x.size):
        out[c] = (x[c] - mu) * rs * gamma[c] + beta[c]


@njit(**ONE_THREAD)
def linear_row(x, W, b, y):
    """y = x @ W + b for one row x (n,) and W (n, m), four rows of W at a time: W streams from memory
    once while y (m,) stays in L1."""
    n, m = W.shape
    n4 = n - n % 4
    for j in range(m):
        y[j] = 0
    for i in range(0, n4, 4):
        a0, a1, a2, a3 = x[i], x[i + 1], x[i + 2], x[i + 3]
        for j in range(m):
            y[j] += (a0 * W[i, j] + a1 * W[i + 1, j]) + (a2 * W[i + 2, j] + a3 * W[i + 3, j])
    for i in range(n4, n):
        for j in range(m):
            y[j] += x[i] * W[i, j]
    for j in range(m):
        y[j] += b[j]


@njit(**ONE_THREAD)
def attend_cached(qkv, keys, values, L, scores, y):
    """Each head: this position's k, v written at L of keys, values (H, capacity, D); its q against
    the L + 1 keys so far, softmax(q k^T / sqrt(D)), y (C,) = att v. qkv (3C,) = [q | k | v]."""
    H, D, C = keys.shape[0], keys.shape[2], y.size
    scale = y.dtype.type(D ** -0.5)
    s = scores[:L + 1]                                      # (S,)
    for h in range(H):
        head = h * D
        for d in range(D):
            keys[h, L, d] = qkv[C + head + d]
            values[h, L, d] = qkv[2 * C + head + d]
        for t in range(L + 1):
            dot = y.dtype.type(0)
            for d in range(D):
                dot += qkv[head + d] * keys[h, t, d]
            s[t] = dot * scale
        top = row_max(s)
        total = y.dtype.type(0)
        for t in range(L + 1):
            s[t] = np.exp(s[t] - top)
            total += s[t]
        inv = y.dtype.type(1) / total
        for d in range(D):
            y[head + d] = 0
        for t in range(L + 1):
            w = s[t] * inv
            for d in range(D):
                y[head + d] += w * values[h, t, d]


@njit(**ONE_THREAD)
def decode_block(x, L, eps, c, c3, ln1_g, ln1_b, qkv_W, qkv_b, proj_W, proj_b, ln2_g, ln2_b,
                 fc1_W, fc1_b, fc2_W, fc2_b, keys, values):
    """One pre-LN block on one position, x (C,) in place: x += attn(LN1 x), x += W2 GELU(W1 LN2 x)
    (c, c3 as gelu_s32's). keys, values (H, capacity, D) hold positions 0..L-1 and get L."""
    C = x.size
    h, y, a = np.empty(C, x.dtype), np.empty(C, x.dtype), np.empty(C, x.dtype)
    qkv, scores, f = np.empty(3 * C, x.dtype), np.empty(L + 1, x.dtype), np.empty(fc1_W.shape[1], x.dtype)
    layer_norm_row(x, ln1_g, ln1_b, eps, h)
    linear_row(h, qkv_W, qkv_b, qkv)
    attend_cached(qkv, keys, values, L, scores, y)
    linear_row(y, proj_W, proj_b, a)
    x += a
    layer_norm_row(x, ln2_g, ln2_b, eps, h)
    linear_row(h, fc1_W, fc1_b, f)                           # (d_ff,)
    for j in range(f.size):
        f[j] *= gelu_s32(f[j], c, c3)
    linear_row(f, fc2_W, fc2_b, a)
    x += a


@njit(**ONE_THREAD)
def tied_head(x, gamma, beta, eps, E, logits):
    """logits (V,) = E LN_f(x): the final LayerNorm and the head tied to the embedding E (V, C)."""
    h = np.empty(x.size, x.dtype)
    layer_norm_row(x, gamma, beta, eps, h)
    for r in range(E.shape[0]):
        dot = x.dtype.type(0)
        for j in range(x.size):
            dot += E[r, j] * h[j]
        logits[r] = dot


def set_threads(n):
    """Run the prange loops on n threads (at most numba's pool size, NUMBA_NUM_THREADS)."""
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
