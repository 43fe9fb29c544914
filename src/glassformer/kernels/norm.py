"""LayerNorm on CuPy: one row kernel each way (two-pass statistics), a reduction for dgamma.

Laid over layers.norm.layer_norm_forward / layer_norm_backward; tested against them.
"""
import numpy as np

from .. import backend
from .common import accum, compiled, cupy, row_kernel, run_rows

# LayerNorm over each row: two-pass mean and variance, then y = x_hat * gamma + beta; keeps mean, rstd
LAYER_NORM_FORWARD = row_kernel("layer_norm_forward", r"""
extern "C" __global__ void layer_norm_forward(const S_t* x, const A_t* gamma, const A_t* beta,
                                              A_t eps, S_t* y, A_t* mean, A_t* rstd, long long n) {
    __shared__ A_t shared[32];
    long long row = blockIdx.x;
    const S_t* xr = x + row * n;
    A_t s = 0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) s += load(xr + j);
    A_t mu = block_sum(s, shared) / (A_t)n;
    A_t q = 0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) { A_t c = load(xr + j) - mu; q += c * c; }
    A_t r = (A_t)1 / sqrt(block_sum(q, shared) / (A_t)n + eps);
    for (long long j = threadIdx.x; j < n; j += blockDim.x)
        store(y + row * n + j, (load(xr + j) - mu) * r * gamma[j] + beta[j]);
    if (threadIdx.x == 0) { mean[row] = mu; rstd[row] = r; }
}
""")

# dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)), dx_hat = dout * gamma, per row
LAYER_NORM_BACKWARD = row_kernel("layer_norm_backward", r"""
extern "C" __global__ void layer_norm_backward(const S_t* dout, const A_t* x, const A_t* mean,
                                               const A_t* rstd, const A_t* gamma, A_t* dx, long long n) {
    __shared__ A_t shared[32];
    long long row = blockIdx.x;
    const S_t* dr = dout + row * n;
    const A_t* xr = x + row * n;
    A_t mu = mean[row], r = rstd[row], a = 0, b = 0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        A_t g = load(dr + j) * gamma[j];
        a += g;
        b += g * (xr[j] - mu) * r;
    }
    a = block_sum(a, shared) / (A_t)n;
    b = block_sum(b, shared) / (A_t)n;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        A_t xh = (xr[j] - mu) * r;
        dx[row * n + j] = r * (load(dr + j) * gamma[j] - a - xh * b);
    }
}
""")


@backend.accelerates("layer_norm_forward")
def layer_norm_forward_cuda(x, gamma, beta, eps):
    """(y, cache): y = (x - mean) * rstd * gamma + beta per row; cache = (x, mean, rstd)."""
    cp = cupy()
    acc = accum(x.dtype)
    x = cp.ascontiguousarray(x.astype(acc, copy=False))    # float16 input: statistics in float32
    C = x.shape[-1]
    rows = x.size // C if C else 0
    y = cp.empty_like(x)
    mean, rstd = cp.empty(rows, acc), cp.empty(rows, acc)
    beta = cp.zeros_like(gamma) if beta is None else beta   # no bias (bias=False): the kernel adds 0
    run_rows("layer_norm_forward", x.dtype, rows, C,
             (x, cp.ascontiguousarray(gamma, acc), cp.ascontiguousarray(beta, acc), acc(eps),
              y, mean, rstd, np.int64(C)))
    return y, (x, mean, rstd)


@backend.accelerates("layer_norm_backward")
def layer_norm_backward_cuda(dout, cache, gamma, dgamma, dbeta):
    """dx of layer_norm_forward_cuda; adds into dgamma and dbeta (column sums over the rows)."""
    cp = cupy()
    x, mean, rstd = cache
    C = x.shape[-1]
    rows = x.size // C if C else 0
    if accum(dout.dtype) != x.dtype:                        # the kernel reads dout as S_t, x as A_t
        dout = dout.astype(x.dtype)
    dout = cp.ascontiguousarray(dout)
    dx = cp.empty_like(x)                                   # float32 (float64 for float64 data)
    run_rows("layer_norm_backward", dout.dtype, rows, C,
             (dout, x, mean, rstd, cp.ascontiguousarray(gamma, x.dtype), dx, np.int64(C)))
    d2, x2 = dout.reshape(rows, C), x.reshape(rows, C)
    dgamma += ln_dgamma()(d2, x2, mean[:, None], rstd[:, None], axis=0).astype(dgamma.dtype)
    if dbeta is not None:                                   # forward: out = x_hat*gamma + beta
        dbeta += d2.sum(axis=0, dtype=x.dtype).astype(dbeta.dtype)
    return dx


def ln_dgamma():
    """A reduction kernel: the sum over rows of dout * x_hat, x_hat recomputed from x, mean, rstd."""
    return compiled("ln_dgamma", lambda cp: cp.ReductionKernel(
        "S dy, T x, T mu, T r", "T dg", "(T)dy * (x - mu) * r", "a + b", "dg = a", "0",
        "glassformer_ln_dgamma"))
