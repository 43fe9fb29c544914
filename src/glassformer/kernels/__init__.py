"""Fused CuPy kernels behind backend.fused(): masked softmax, LayerNorm, GELU, cross-entropy, Adam.

Imported only by backend.py, which passes cupy in (build(cp, backend)): nothing else imports CuPy. Each
entry computes what the layer's own array code computes (the reference; tests/test_gpu.py compares them)
in fewer passes over memory. Row kernels run one CUDA block per row of the last axis with warp-shuffle
reductions in float32 (double for float64 data). float16 data is read and written as raw 16-bit values
converted with PTX cvt instructions, so NVRTC needs no CUDA header.
"""
import math

import numpy as np

ROW_HEADER = r"""
typedef STORAGE S_t;      // element type in memory: float, double, or unsigned short (float16 bits)
typedef ACCUM A_t;        // arithmetic: float, or double for double data

__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ double load(const double* p) { return *p; }
__device__ __forceinline__ float load(const unsigned short* p) {
    float f; unsigned short h = *p;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(unsigned short* p, float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    *p = h;
}
__device__ __forceinline__ float lowest(float) { return -3.4028234663852886e38f; }
__device__ __forceinline__ double lowest(double) { return -1.7976931348623157e308; }

__device__ __forceinline__ A_t warp_sum(A_t v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ A_t warp_max(A_t v) {
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// blockDim.x is a multiple of 32 (at most 1024); every thread gets the result.
__device__ A_t block_sum(A_t v, A_t* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();                        // a previous reduction may still be reading `shared`
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_sum(lane < n_warps ? shared[lane] : (A_t)0);   // each warp sums the partial sums
}
__device__ A_t block_max(A_t v, A_t* shared) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    return warp_max(lane < n_warps ? shared[lane] : lowest((A_t)0));
}
"""

# softmax(scale * z) over each row, masked entries set to `fill` first (attention; rows of S keys)
SOFTMAX_FORWARD = r"""
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
"""

# dz = scale * y * (dy - <dy, y>) over each row (the softmax Jacobian-vector product)
SOFTMAX_BACKWARD = r"""
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
"""

# LayerNorm over each row: two-pass mean and variance, then y = x_hat * gamma + beta; keeps mean, rstd
LAYER_NORM_FORWARD = r"""
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
"""

# dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat)), dx_hat = dout * gamma, per row
LAYER_NORM_BACKWARD = r"""
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
"""

# per row: lse = logsumexp(z); loss = lse - z[target] (0 where the target is ignored, nan if out of range)
CROSS_ENTROPY_FORWARD = r"""
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
"""

ROW_KERNELS = {"softmax_forward": SOFTMAX_FORWARD, "softmax_backward": SOFTMAX_BACKWARD,
               "layer_norm_forward": LAYER_NORM_FORWARD, "layer_norm_backward": LAYER_NORM_BACKWARD,
               "cross_entropy_forward": CROSS_ENTROPY_FORWARD}

STORAGE = {"e": "unsigned short", "f": "float", "d": "double"}
GELU_C = math.sqrt(2.0 / math.pi)


def row_source(name, storage_char):
    """The CUDA source of one row kernel for one element dtype (float16, float32, float64)."""
    accum = "double" if storage_char == "d" else "float"
    header = ROW_HEADER.replace("STORAGE", STORAGE[storage_char]).replace("ACCUM", accum)
    return header + ROW_KERNELS[name]


def row_threads(n):
    """Threads per block for rows of n elements: about 4 elements a thread, 32..1024, a warp multiple."""
    return int(min(1024, max(32, 32 * math.ceil(n / 128))))


def build(cp, backend):
    """{name: kernels} for backend.fused(); CUDA code compiles on first use (and is cached on disk)."""
    return Kernels(cp, backend).table()


class Kernels:
    """The CuPy side: compiled-kernel caches and the functions backend.fused() hands out."""

    def __init__(self, cp, backend):
        self.cp, self.backend = cp, backend
        self._raw = {}

    def table(self):
        return {"attention": Fused(self.attention_forward, self.attention_backward),
                "layer_norm": Fused(self.layer_norm_forward, self.layer_norm_backward),
                "gelu": Fused(self.gelu_forward, self.gelu_backward),
                "cross_entropy": Fused(self.cross_entropy_forward, self.cross_entropy_backward),
                "adam_update": self.adam_update, "sum_squares": self.sum_squares,
                "bmm": self.bmm}

    # ---- plumbing ------------------------------------------------------------------------------

    def raw(self, name, dtype):
        """The RawKernel `name` for element dtype `dtype`, compiled once per dtype."""
        key = (name, np.dtype(dtype).char)
        if key not in self._raw:
            self._raw[key] = self.cp.RawKernel(row_source(name, key[1]), name)
        return self._raw[key]

    def run_rows(self, name, dtype, rows, n, args):
        """One block per row of n elements."""
        if rows:
            self.raw(name, dtype)((rows,), (row_threads(n),), args)

    @staticmethod
    def accum(dtype):
        """The arithmetic dtype for data of `dtype`: float64 stays float64, else float32."""
        return np.float64 if np.dtype(dtype) == np.float64 else np.float32

    # ---- attention: cuBLAS batched GEMMs around one masked-softmax kernel each way -------------

    def bmm(self, a, b):
        """a @ b over the leading (batch) axes, by backend.batched_matmul_mode()."""
        cp = self.cp
        if a.dtype != b.dtype:
            dtype = cp.result_type(a, b)
            a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
        if (self.backend.batched_matmul_mode() == "cublas" and a.ndim >= 3
                and a.shape[:-2] == b.shape[:-2] and a.dtype.char in "efd"):
            return self.cublas_bmm(a, b)
        return cp.matmul(a, b)

    def cublas_bmm(self, a, b):
        """a @ b as one cublasGemmStridedBatchedEx (row-major C = A B is column-major C^T = B^T A^T)."""
        cp = self.cp
        cublas = cp.cuda.cublas
        *batch, M, K = a.shape
        P = b.shape[-1]
        out = cp.empty((*batch, M, P), a.dtype)             # (..., M, P)
        if out.size == 0:
            return out
        if K == 0:
            out.fill(0)
            return out
        A, op_a, ld_a, stride_a = blas_operand(cp, a)
        B, op_b, ld_b, stride_b = blas_operand(cp, b)
        char = a.dtype.char
        cuda_type = {"e": 2, "f": 0, "d": 1}[char]         # CUDA_R_16F, CUDA_R_32F, CUDA_R_64F
        compute = {"e": cublas.CUBLAS_COMPUTE_32F, "d": cublas.CUBLAS_COMPUTE_64F,
                   "f": (cublas.CUBLAS_COMPUTE_32F_FAST_TF32 if self.backend.tf32_enabled()
                         else cublas.CUBLAS_COMPUTE_32F)}[char]
        coef = np.float64 if char == "d" else np.float32   # alpha, beta in the compute type
        one, zero = np.ones((), coef), np.zeros((), coef)
        cublas.gemmStridedBatchedEx(
            cp.cuda.device.get_cublas_handle(), op_b, op_a, P, M, K, one.ctypes.data,
            B.data.ptr, cuda_type, ld_b, stride_b, A.data.ptr, cuda_type, ld_a, stride_a,
            zero.ctypes.data, out.data.ptr, cuda_type, P, M * P, int(np.prod(batch, dtype=np.int64)),
            compute, cublas.CUBLAS_GEMM_DEFAULT)
        return out

    def masked_softmax(self, scores, allowed, scale):
        """softmax(scale * scores) where allowed, exactly 0 elsewhere; a fully masked row is uniform."""
        cp = self.cp
        scores = cp.ascontiguousarray(scores)
        n = scores.shape[-1]
        rows = scores.size // n if n else 0
        y = cp.empty_like(scores)
        acc = self.accum(scores.dtype)
        mask, mask_row, has_mask = mask_rows(cp, allowed, scores.shape)
        self.run_rows("softmax_forward", scores.dtype, rows, n,
                      (scores, mask, mask_row, np.int32(has_mask), acc(scale),
                       acc(np.finfo(acc).min), y, np.int64(n)))
        return y

    def softmax_backward(self, datt, att, scale):
        cp = self.cp
        datt = cp.ascontiguousarray(datt.astype(att.dtype, copy=False))
        att = cp.ascontiguousarray(att)
        n = att.shape[-1]
        rows = att.size // n if n else 0
        dz = cp.empty_like(att)
        self.run_rows("softmax_backward", att.dtype, rows, n,
                      (datt, att, self.accum(att.dtype)(scale), dz, np.int64(n)))
        return dz

    def attention_forward(self, q, k, v, allowed):
        """attend(): (y, att) with att in q's dtype."""
        D = q.shape[-1]
        scores = self.bmm(q, k.swapaxes(-1, -2))           # (B, H, T, S)
        att = self.masked_softmax(scores, allowed, D ** -0.5)
        return self.bmm(att, v), att                        # (B, H, T, D)

    def attention_backward(self, dy, q, k, v, att):
        """attend_backward(): (dq, dk, dv)."""
        D = q.shape[-1]
        dv = self.bmm(att.swapaxes(-1, -2), dy)             # y = att @ v
        datt = self.bmm(dy, v.swapaxes(-1, -2))             # (B, H, T, S)
        dscores = self.softmax_backward(datt, att, D ** -0.5)
        dq = self.bmm(dscores, k)                           # scores = q k^T / sqrt(D)
        dk = self.bmm(dscores.swapaxes(-1, -2), q)
        return dq, dk, dv

    # ---- LayerNorm -----------------------------------------------------------------------------

    def layer_norm_forward(self, x, gamma, beta, eps):
        """(y, cache): y = (x - mean) * rstd * gamma + beta per row; cache = (x, mean, rstd)."""
        cp = self.cp
        acc = self.accum(x.dtype)
        x = cp.ascontiguousarray(x.astype(acc, copy=False))  # float16 input: statistics in float32
        C = x.shape[-1]
        rows = x.size // C if C else 0
        y = cp.empty_like(x)
        mean, rstd = cp.empty(rows, acc), cp.empty(rows, acc)
        self.run_rows("layer_norm_forward", x.dtype, rows, C,
                      (x, cp.ascontiguousarray(gamma, acc), cp.ascontiguousarray(beta, acc), acc(eps),
                       y, mean, rstd, np.int64(C)))
        return y, (x, mean, rstd)

    def layer_norm_backward(self, dout, cache, gamma, dgamma, dbeta):
        """dx of layer_norm_forward; adds into dgamma and dbeta (column sums over the rows)."""
        cp = self.cp
        x, mean, rstd = cache
        C = x.shape[-1]
        rows = x.size // C if C else 0
        if self.accum(dout.dtype) != x.dtype:               # the kernel reads dout as S_t, x as A_t
            dout = dout.astype(x.dtype)
        dout = cp.ascontiguousarray(dout)
        dx = cp.empty_like(x)                               # float32 (float64 for float64 data)
        self.run_rows("layer_norm_backward", dout.dtype, rows, C,
                      (dout, x, mean, rstd, cp.ascontiguousarray(gamma, x.dtype), dx, np.int64(C)))
        d2, x2 = dout.reshape(rows, C), x.reshape(rows, C)
        dgamma += self.ln_dgamma()(d2, x2, mean[:, None], rstd[:, None], axis=0).astype(dgamma.dtype)
        dbeta += d2.sum(axis=0, dtype=x.dtype).astype(dbeta.dtype)   # forward: out = x_hat*gamma + beta
        return dx

    def ln_dgamma(self):
        """A reduction kernel: the sum over rows of dout * x_hat, x_hat recomputed from x, mean, rstd."""
        if "ln_dgamma" not in self._raw:
            self._raw["ln_dgamma"] = self.cp.ReductionKernel(
                "S dy, T x, T mu, T r", "T dg", "(T)dy * (x - mu) * r", "a + b", "dg = a", "0",
                "glassformer_ln_dgamma")
        return self._raw["ln_dgamma"]

    # ---- GELU (tanh form): one elementwise pass each way, backward recomputes tanh from x -------

    def gelu_kernels(self, accum):
        key = ("gelu", accum)
        if key not in self._raw:
            c, k = f"(A_t){GELU_C!r}", "(A_t)0.044715"
            pre = f"typedef {accum} A_t;\n"
            forward = self.cp.ElementwiseKernel(
                "S x", "S y",
                f"A_t v = (A_t)x; A_t t = tanh({c} * (v + {k} * v * v * v));"
                f" y = (S)((A_t)0.5 * v * ((A_t)1 + t));",
                f"glassformer_gelu_forward_{accum}", preamble=pre)
            backward = self.cp.ElementwiseKernel(
                "D dout, S x", "O dx",
                f"A_t v = (A_t)x; A_t t = tanh({c} * (v + {k} * v * v * v));"
                f" A_t du = {c} * ((A_t)1 + (A_t)3 * {k} * v * v);"
                f" dx = (O)((A_t)dout * ((A_t)0.5 * ((A_t)1 + t)"
                f" + (A_t)0.5 * v * ((A_t)1 - t * t) * du));",
                f"glassformer_gelu_backward_{accum}", preamble=pre)
            self._raw[key] = (forward, backward)
        return self._raw[key]

    def gelu_forward(self, x):
        """(y, cache = x): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
        forward, _ = self.gelu_kernels("double" if x.dtype == np.float64 else "float")
        return forward(x), x

    def gelu_backward(self, dout, x):
        _, backward = self.gelu_kernels("double" if x.dtype == np.float64 else "float")
        dx = self.cp.empty(x.shape, self.cp.result_type(dout, x))
        return backward(dout, x, dx)

    # ---- cross-entropy: a row kernel for logsumexp, one elementwise pass for the gradient -------

    def cross_entropy_forward(self, logits, targets, ignore_index):
        """(mean loss over counted rows as a 0-d array, cache); keeps logits and lse, not log-probs."""
        cp = self.cp
        V = logits.shape[-1]
        z = cp.ascontiguousarray(logits).reshape(-1, V)     # (N, V)
        t = cp.ascontiguousarray(cp.asarray(targets).reshape(-1), dtype=cp.int64)   # (N,)
        acc = self.accum(z.dtype)
        lse, rows = cp.empty(t.shape[0], acc), cp.empty(t.shape[0], acc)
        has_ignore = ignore_index is not None
        self.run_rows("cross_entropy_forward", z.dtype, t.shape[0], V,
                      (z, t, np.int64(ignore_index if has_ignore else 0), np.int32(has_ignore),
                       lse, rows, np.int64(V)))
        counted = cp.ones(t.shape, dtype=bool) if not has_ignore else t != ignore_index
        n = cp.maximum(counted.sum(), 1)                    # tokens counted (stays on the device)
        return rows.sum() / n, (z, lse, t, counted, n, logits.shape)

    def cross_entropy_backward(self, cache, dout):
        """dlogits = (softmax - onehot(target)) * dout / n on counted rows, 0 on ignored rows."""
        z, lse, t, counted, n, shape = cache
        if "ce_backward" not in self._raw:
            self._raw["ce_backward"] = self.cp.ElementwiseKernel(
                "S z, T lse, int64 t, T w, int64 V", "S dz",
                "long long j = i % V; T p = exp((T)z - lse);"
                " dz = (S)((p - (j == t ? (T)1 : (T)0)) * w);",
                "glassformer_cross_entropy_backward", reduce_dims=False)
        w = (counted / n * dout).astype(lse.dtype)          # (N,): 1/n on counted rows, times dout
        dz = self.cp.empty_like(z)
        self._raw["ce_backward"](z, lse[:, None], t[:, None], w[:, None], np.int64(z.shape[1]), dz)
        return dz.reshape(shape)

    # ---- optimizer -----------------------------------------------------------------------------

    def adam_update(self, p, g, m, v, lr, beta1, beta2, eps, weight_decay, decoupled, t,
                    grad_scale=1.0, skip=False):
        """One Adam/AdamW step of p, m, v in place, in one pass; t (bias correction) and skip may be
        0-d device arrays, so a skipped step (loss scaling) needs no host sync."""
        accum = "double" if p.dtype == np.float64 else "float"
        key = ("adam", accum)
        if key not in self._raw:
            self._raw[key] = self.cp.ElementwiseKernel(
                "T g, float64 lr, float64 b1, float64 b2, float64 eps, float64 wd, bool decoupled,"
                " float32 t, float32 gscale, bool skip", "T p, T m, T v",
                """
                if (!skip) {
                    // hyper-parameters and bias corrections in double, rounded once: as the host does
                    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
                    A_t step = (A_t)(lr * sqrt(bc2) / bc1), eps_hat = (A_t)(eps * sqrt(bc2));
                    A_t gf = (A_t)g * (A_t)gscale;
                    A_t pf = (A_t)p;
                    if (wd != 0) {
                        if (decoupled) pf *= (A_t)(1.0 - lr * wd); else gf += (A_t)wd * pf;
                    }
                    A_t mf = (A_t)b1 * (A_t)m + (A_t)(1.0 - b1) * gf;
                    A_t vf = (A_t)b2 * (A_t)v + (A_t)(1.0 - b2) * (gf * gf);
                    p = (T)(pf - step * mf / (sqrt(vf) + eps_hat));
                    m = (T)mf;
                    v = (T)vf;
                }
                """, f"glassformer_adam_{accum}", preamble=f"typedef {accum} A_t;")
        cp, f64 = self.cp, np.float64
        self._raw[key](g, f64(lr), f64(beta1), f64(beta2), f64(eps), f64(weight_decay),
                       bool(decoupled), device_scalar(cp, t, np.float32),
                       device_scalar(cp, grad_scale, np.float32), device_scalar(cp, skip, np.bool_),
                       p, m, v)

    def sum_squares(self, g):
        """sum(g^2) in float32 as a 0-d array (the gradient norm, without a squared copy of g)."""
        if "sum_squares" not in self._raw:
            self._raw["sum_squares"] = self.cp.ReductionKernel(
                "T x", "float32 y", "(float)x * (float)x", "a + b", "y = a", "0",
                "glassformer_sum_squares")
        return self._raw["sum_squares"](g)


class Fused:
    """A forward/backward pair of fused kernels."""

    def __init__(self, forward, backward):
        self.forward, self.backward = forward, backward


def device_scalar(cp, value, dtype):
    """value as a kernel argument of dtype: a NumPy scalar, or a 0-d device array cast if needed."""
    if isinstance(value, cp.ndarray):
        return value.astype(dtype, copy=False)
    return dtype(value)


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
