"""Attention on CuPy: cuBLAS batched GEMMs around one masked-softmax row kernel each way.

Laid over layers.attention.attend / attend_backward; tested against them.
"""
import numpy as np

from .. import backend
from .common import accum, cupy, row_kernel, run_rows

# softmax(scale * z) over each row, masked entries set to `fill` first (attention; rows of S keys)
SOFTMAX_FORWARD = row_kernel("softmax_forward", r"""
extern "C" __global__ void softmax_forward(const S_t* z, const bool* allowed, const long long* mask_row,
                                           int has_mask, A_t scale, A_t fill, S_t* y, long long n) {
    __shared__ A_t shared[32];
    long long row = blockIdx.x;
    const S_t* zr = z + row * n;
    S_t* yr = y + row * n;
    const bool* ar = allowed + (has_mask ? mask_row[row] * n : 0);
    A_t m = lowest((A_t)0);
    for (long long j = threadIdx.x; j < n; j += blockDim.x)
        m = fmax(m, (!has_mask || ar[j]) ? load(zr + j) * scale : fill);
    m = block_max(m, shared);
    A_t sum = 0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x)
        sum += exp(((!has_mask || ar[j]) ? load(zr + j) * scale : fill) - m);
    A_t inv = (A_t)1 / block_sum(sum, shared);
    for (long long j = threadIdx.x; j < n; j += blockDim.x)
        store(yr + j, exp(((!has_mask || ar[j]) ? load(zr + j) * scale : fill) - m) * inv);
}
""")

# dz = scale * y * (dy - <dy, y>) over each row (the softmax Jacobian-vector product)
SOFTMAX_BACKWARD = row_kernel("softmax_backward", r"""
extern "C" __global__ void softmax_backward(const S_t* dy, const S_t* y, A_t scale, S_t* dz,
                                            long long n) {
    __shared__ A_t shared[32];
    long long row = blockIdx.x;
    const S_t* dyr = dy + row * n;
    const S_t* yr = y + row * n;
    A_t dot = 0;
    for (long long j = threadIdx.x; j < n; j += blockDim.x) dot += load(dyr + j) * load(yr + j);
    dot = block_sum(dot, shared);
    for (long long j = threadIdx.x; j < n; j += blockDim.x)
        store(dz + row * n + j, scale * load(yr + j) * (load(dyr + j) - dot));
}
""")


@backend.accelerates("attend")
def attend_cuda(q, k, v, allowed):
    """attend(): (y, att) with att in q's dtype."""
    D = q.shape[-1]
    scores = bmm(q, k.swapaxes(-1, -2))                     # (B, H, T, S)
    att = masked_softmax(scores, allowed, D ** -0.5)
    return bmm(att, v), att                                 # (B, H, T, D)


@backend.accelerates("attend_backward")
def attend_backward_cuda(dy, q, k, v, att):
    """attend_backward(): (dq, dk, dv)."""
    D = q.shape[-1]
    dv = bmm(att.swapaxes(-1, -2), dy)                      # y = att @ v
    datt = bmm(dy, v.swapaxes(-1, -2))                      # (B, H, T, S)
    dscores = softmax_backward(datt, att, D ** -0.5)
    dq = bmm(dscores, k)                                    # scores = q k^T / sqrt(D)
    dk = bmm(dscores.swapaxes(-1, -2), q)
    return dq, dk, dv


def masked_softmax(scores, allowed, scale):
    """softmax(scale * scores) where allowed, exactly 0 elsewhere; a fully masked row is uniform."""
    cp = cupy()
    scores = cp.ascontiguousarray(scores)
    n = scores.shape[-1]
    rows = scores.size // n if n else 0
    y = cp.empty_like(scores)
    acc = accum(scores.dtype)
    mask, mask_row, has_mask = mask_rows(cp, allowed, scores.shape)
    run_rows("softmax_forward", scores.dtype, rows, n,
             (scores, mask, mask_row, np.int32(has_mask), acc(scale), acc(np.finfo(acc).min), y,
              np.int64(n)))
    return y


def softmax_backward(datt, att, scale):
    """scale * att * (datt - <datt, att>) per row: the softmax backward and the score scale in one."""
    cp = cupy()
    datt = cp.ascontiguousarray(datt.astype(att.dtype, copy=False))
    att = cp.ascontiguousarray(att)
    n = att.shape[-1]
    rows = att.size // n if n else 0
    dz = cp.empty_like(att)
    run_rows("softmax_backward", att.dtype, rows, n, (datt, att, accum(att.dtype)(scale), dz, np.int64(n)))
    return dz


def mask_rows(cp, allowed, shape):
    """(mask (R, S) bool, row index (rows,) int64, has_mask) for a mask broadcastable to shape (..., S)."""
    if allowed is None:
        return cp.zeros(1, bool), cp.zeros(1, cp.int64), 0
    allowed = cp.asarray(allowed, dtype=bool)
    allowed = allowed.reshape((1,) * (len(shape) - allowed.ndim) + allowed.shape)
    lead = tuple(allowed.shape[:-1])
    mask = cp.ascontiguousarray(cp.broadcast_to(allowed, lead + (shape[-1],)))   # (*lead, S)
    index = cp.arange(int(np.prod(lead, dtype=np.int64)), dtype=cp.int64).reshape(lead)
    rows = cp.ascontiguousarray(cp.broadcast_to(index, tuple(shape[:-1]))).reshape(-1)
    return mask, rows, 1


# ---- batched matmuls: cupy.matmul, or cublasGemmStridedBatchedEx called directly ------------------

def bmm(a, b):
    """a @ b over the leading (batch) axes, by backend.batched_matmul_mode()."""
    cp = cupy()
    if a.dtype != b.dtype:
        dtype = cp.result_type(a, b)
        a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    if (backend.batched_matmul_mode() == "cublas" and a.ndim >= 3
            and a.shape[:-2] == b.shape[:-2] and a.dtype.char in "efd"):
        return cublas_bmm(a, b)
    return cp.matmul(a, b)


def cublas_bmm(a, b):
    """a @ b as one cublasGemmStridedBatchedEx (row-major C = A B is column-major C^T = B^T A^T)."""
    cp = cupy()
    cublas = cp.cuda.cublas
    *batch, M, K = a.shape
    P = b.shape[-1]
    out = cp.empty((*batch, M, P), a.dtype)                 # (..., M, P)
    if out.size == 0:
        return out
    if K == 0:
        out.fill(0)
        return out
    A, op_a, ld_a, stride_a = blas_operand(cp, a)
    B, op_b, ld_b, stride_b = blas_operand(cp, b)
    char = a.dtype.char
    cuda_type = {"e": 2, "f": 0, "d": 1}[char]             # CUDA_R_16F, CUDA_R_32F, CUDA_R_64F
    compute = {"e": cublas.CUBLAS_COMPUTE_32F, "d": cublas.CUBLAS_COMPUTE_64F,
               "f": (cublas.CUBLAS_COMPUTE_32F_FAST_TF32 if backend.tf32_enabled()
                     else cublas.CUBLAS_COMPUTE_32F)}[char]
    coef = np.float64 if char == "d" else np.float32       # alpha, beta in the compute type
    one, zero = np.ones((), coef), np.zeros((), coef)
    cublas.gemmStridedBatchedEx(
        cp.cuda.device.get_cublas_handle(), op_b, op_a, P, M, K, one.ctypes.data,
        B.data.ptr, cuda_type, ld_b, stride_b, A.data.ptr, cuda_type, ld_a, stride_a,
        zero.ctypes.data, out.data.ptr, cuda_type, P, M * P, int(np.prod(batch, dtype=np.int64)),
        compute, cublas.CUBLAS_GEMM_DEFAULT)
    return out


def blas_operand(cp, a):
    """(array, op, ld, batch stride) of a (..., r, c) array for cuBLAS's column-major GEMM.

    Row-major matrices (ld = row stride) are op N of their transpose, column-major ones (a transposed
    view such as k.swapaxes(-1, -2)) op T; their batch axes must flatten to one stride. Anything else
    is copied first, in the layout it is closest to.
    """
    *batch, r, c = a.shape
    it = a.itemsize
    s = [x // it if x % it == 0 else None for x in a.strides]
    ok, stride = batch_stride(batch, s[:-2])
    if ok and None not in s[-2:]:
        if (c == 1 or s[-1] == 1) and (r == 1 or s[-2] >= max(c, 1)):
            return a, 0, (s[-2] if r > 1 else max(c, 1)), stride          # CUBLAS_OP_N
        if (r == 1 or s[-2] == 1) and (c == 1 or s[-1] >= max(r, 1)):
            return a, 1, (s[-1] if c > 1 else max(r, 1)), stride          # CUBLAS_OP_T
    if len(s) >= 2 and s[-2] == 1:                          # a transposed view: keep it transposed
        a = cp.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2)
        return a, 1, max(r, 1), r * c
    return cp.ascontiguousarray(a), 0, max(c, 1), r * c


def batch_stride(shape, strides):
    """(True, stride) when the batch axes (sizes, element strides) flatten to one stride; else (False, 0)."""
    dims = [(n, s) for n, s in zip(shape, strides) if n != 1]
    if any(s is None for _, s in dims):
        return False, 0
    if not dims:
        return True, 0
    for (_, s0), (n1, s1) in zip(dims, dims[1:]):
        if s0 != s1 * n1:
            return False, 0
    return True, dims[-1][1]
