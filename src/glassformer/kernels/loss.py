"""Cross-entropy on CuPy: a row kernel for logsumexp, one elementwise pass for the gradient.

Laid over layers.loss.cross_entropy_forward / cross_entropy_backward; tested against them. The cache
keeps the logits and one logsumexp per row instead of the (N, V) log-probabilities.
"""
import numpy as np

from .. import backend
from .common import accum, compiled, cupy, row_kernel, run_rows

# per row: lse = logsumexp(z); loss = lse - z[target] (0 where the target is ignored, nan if out of range)
CROSS_ENTROPY_FORWARD = row_kernel("cross_entropy_forward", r"""
extern "C" __global__ void cross_entropy_forward(const S_t* z, const long long* targets,
                                                 long long ignore, int has_ignore, A_t* lse, A_t* loss,
                                                 long long n) {
    __shared__ A_t shared[32];
    long long row = blockIdx.x;
    const S_t* zr = z + row * n;
    A_t m = lowest((A_t)0);
    for (long long j = threadIdx.x; j < n; j += blockDim.x) m = fmax(m, load(zr + j));
    m = block_max(m, shared);
    A_t s = 0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) s += exp(load(zr + j) - m);
    A_t l = m + log(block_sum(s, shared));
    if (threadIdx.x == 0) {
        long long t = targets[row];
        lse[row] = l;
        if (has_ignore && t == ignore) loss[row] = 0;
        else if (t < 0 || t >= n) loss[row] = (A_t)0 / (A_t)0;      // nan: a target outside the vocab
        else loss[row] = l - load(zr + t);
    }
}
""")


@backend.accelerates("cross_entropy_forward")
def cross_entropy_forward_cuda(logits, targets, ignore_index=None):
    """(mean loss over counted rows as a 0-d array, cache = (z, lse, t, counted, n, shape))."""
    cp = cupy()
    V = logits.shape[-1]
    z = cp.ascontiguousarray(logits).reshape(-1, V)         # (N, V)
    t = cp.ascontiguousarray(cp.asarray(targets).reshape(-1), dtype=cp.int64)   # (N,)
    acc = accum(z.dtype)
    lse, rows = cp.empty(t.shape[0], acc), cp.empty(t.shape[0], acc)
    has_ignore = ignore_index is not None
    run_rows("cross_entropy_forward", z.dtype, t.shape[0], V,
             (z, t, np.int64(ignore_index if has_ignore else 0), np.int32(has_ignore), lse, rows,
              np.int64(V)))
    counted = cp.ones(t.shape, dtype=bool) if not has_ignore else t != ignore_index
    n = cp.maximum(counted.sum(), 1)                        # tokens counted (stays on the device)
    return rows.sum() / n, (z, lse, t, counted, n, logits.shape)


@backend.accelerates("cross_entropy_backward")
def cross_entropy_backward_cuda(dout, cache):
    """dlogits = (softmax - onehot(target)) * dout / n on counted rows, 0 on ignored rows."""
    z, lse, t, counted, n, shape = cache
    kernel = compiled("ce_backward", lambda cp: cp.ElementwiseKernel(
        "S z, T lse, int64 t, T w, int64 V", "S dz",
        "long long j = i % V; T p = exp((T)z - lse); dz = (S)((p - (j == t ? (T)1 : (T)0)) * w);",
        "glassformer_cross_entropy_backward", reduce_dims=False))
    w = (counted / n * dout).astype(lse.dtype)              # (N,): 1/n on counted rows, times dout
    dz = cupy().empty_like(z)
    kernel(z, lse[:, None], t[:, None], w[:, None], np.int64(z.shape[1]), dz)
    return dz.reshape(shape)
