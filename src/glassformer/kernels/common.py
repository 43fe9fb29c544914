"""What the kernel families share: the CuPy module they run on, compiled-kernel caches, row kernels.

Row kernels run one CUDA block per row of the last axis with warp-shuffle reductions in float32
(double for float64 data). float16 data is read and written as raw 16-bit values converted with PTX
cvt instructions, so NVRTC needs no CUDA header.
"""
import math

import numpy as np

from .. import backend

_module = None                          # None: backend.cp; tests set a CPU stand-in (tests/fakecupy.py)
_compiled = {}                          # key -> compiled kernel, for the module in use

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

ROW_KERNELS = {}                        # name -> CUDA source after ROW_HEADER; filled by the families
STORAGE = {"e": "unsigned short", "f": "float", "d": "double"}


def cupy():
    """The module the kernels run on: CuPy, or the stand-in use_module() set."""
    return backend.cp if _module is None else _module


def use_module(module):
    """Run the kernels on `module` (a CPU stand-in for tests) or, with None, on CuPy; clears the caches."""
    global _module
    _module = module
    _compiled.clear()


def compiled(key, build):
    """The kernel cached under key, built by build(cp) on first use (CuPy caches the CUDA on disk)."""
    if key not in _compiled:
        _compiled[key] = build(cupy())
    return _compiled[key]


def row_kernel(name, source):
    """Register the CUDA source of row kernel `name` (written against ROW_HEADER); returns name."""
    ROW_KERNELS[name] = source
    return name


def row_source(name, storage_char):
    """The CUDA source of one row kernel for one element dtype (float16, float32, float64)."""
    accum = "double" if storage_char == "d" else "float"
    header = ROW_HEADER.replace("STORAGE", STORAGE[storage_char]).replace("ACCUM", accum)
    return header + ROW_KERNELS[name]


def row_threads(n):
    """Threads per block for rows of n elements: about 4 elements a thread, 32..1024, a warp multiple."""
    return int(min(1024, max(32, 32 * math.ceil(n / 128))))


def run_rows(name, dtype, rows, n, args):
    """Launch row kernel `name` for element dtype `dtype`: one block per row of n elements."""
    if rows:
        char = np.dtype(dtype).char
        kernel = compiled(("row", name, char), lambda cp: cp.RawKernel(row_source(name, char), name))
        kernel((rows,), (row_threads(n),), args)


def accum(dtype):
    """The arithmetic dtype for data of `dtype`: float64 stays float64, else float32."""
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def accum_name(dtype):
    """accum(dtype) as a C type: "double" or "float"."""
    return "double" if np.dtype(dtype) == np.float64 else "float"


def device_scalar(value, dtype):
    """value as a kernel argument of dtype: a NumPy scalar, or a 0-d device array cast if needed."""
    if isinstance(value, cupy().ndarray):
        return value.astype(dtype, copy=False)
    return dtype(value)
