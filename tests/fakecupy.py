"""A CPU stand-in for the CuPy that glassformer.kernels uses, so its kernels run without a GPU.

NumPy arrays play device arrays. RawKernel sources compile with g++ and run one std::thread per CUDA
thread (std::barrier for __syncthreads, a per-warp exchange for __shfl_xor_sync, _Float16 for the
PTX float16 conversions). ElementwiseKernel operations compile as C++ loops over the broadcast
elements. The two ReductionKernels are evaluated with NumPy. This checks the kernels' logic and the
Python around them; cuBLAS and real GPU timing are left to tests/gpu/test_gpu.py.

recording_module() is the same stand-in with every compilation skipped: it collects the CUDA each
kernel family asks CuPy for (and the argument types CuPy specialises it on), which
tests/gpu/test_nvrtc_compile.py compiles with NVRTC.
"""
import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
import types

import numpy as np

EMULATOR = r"""
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>
using std::exp; using std::log; using std::sqrt; using std::fmax; using std::tanh; using std::pow;
struct Dim3 { unsigned x, y, z; };
thread_local Dim3 threadIdx, blockIdx;
Dim3 blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
static std::barrier<>* block_barrier;
static std::vector<std::barrier<>*> warp_barriers;
struct WarpData { double v[32]; };
static std::vector<WarpData> warp_data;
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
template <typename T> T __shfl_xor_sync(unsigned, T v, int o) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    warp_barriers[warp]->arrive_and_wait();
    std::memcpy(&warp_data[warp].v[lane], &v, sizeof(T));
    warp_barriers[warp]->arrive_and_wait();
    T r; std::memcpy(&r, &warp_data[warp].v[lane ^ o], sizeof(T));
    return r;
}
inline float half_to_float(unsigned short h) { _Float16 f; std::memcpy(&f, &h, 2); return (float)f; }
inline unsigned short float_to_half(float v) {
    _Float16 f = (_Float16)v; unsigned short h; std::memcpy(&h, &f, 2); return h;
}
template <typename... P, typename... A>
void launch(void (*kernel)(P...), unsigned grid, unsigned block, A... args) {
    blockDim = {block, 1, 1}; gridDim = {grid, 1, 1};
    for (unsigned b = 0; b < grid; ++b) {
        std::barrier<> bb(block); block_barrier = &bb;
        std::vector<std::unique_ptr<std::barrier<>>> owned; warp_barriers.clear();
        for (unsigned w = 0; w < block / 32; ++w) {
            owned.emplace_back(new std::barrier<>(32)); warp_barriers.push_back(owned.back().get());
        }
        warp_data.assign(block / 32, WarpData{});
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < block; ++t)
            ts.emplace_back([=] { threadIdx = {t, 0, 0}; blockIdx = {b, 0, 0}; kernel(args...); });
        for (auto& th : ts) th.join();
    }
}
"""

CACHE = os.path.join(tempfile.gettempdir(), "glassformer_fakecupy")
CTYPES = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "float": ctypes.c_float,
          "double": ctypes.c_double, "bool": ctypes.c_bool}


def compile_library(source):
    os.makedirs(CACHE, exist_ok=True)
    key = hashlib.sha1(source.encode()).hexdigest()[:16]
    lib = os.path.join(CACHE, f"k{key}.so")
    if not os.path.exists(lib):                             # content-addressed: reused across runs
        src, tmp = lib[:-3] + f".{os.getpid()}.cpp", lib + f".{os.getpid()}"
        with open(src, "w") as f:
            f.write(source)
        r = subprocess.run(["g++", "-std=c++20", "-O0", "-shared", "-fPIC", "-pthread", "-o", tmp, src],
                           capture_output=True, text=True)
        os.unlink(src)
        if r.returncode:
            raise RuntimeError(f"g++ failed:\n{r.stderr[:3000]}")
        os.replace(tmp, lib)                                # atomic: parallel runs may race here
    return ctypes.CDLL(lib)


def row_library(code):
    """All of glassformer.kernels' row kernels for the element type of `code`, compiled once (one g++
    run per dtype instead of one per kernel)."""
    import glassformer.kernels  # noqa: F401  every family registers its row kernels
    from glassformer.kernels import common
    header = code[:code.index('extern "C"')]
    char = {"unsigned short": "e", "float": "f", "double": "d"}[re.search(r"typedef (.+?) S_t;",
                                                                           header).group(1)]
    source, launchers = common.row_source(next(iter(common.ROW_KERNELS)), char), []
    source = source[:source.index('extern "C"')]
    for name, body in common.ROW_KERNELS.items():
        sig = re.search(r'extern "C" __global__ void ' + name + r"\(([^)]*)\)", body).group(1)
        names = [p.strip().rsplit(" ", 1)[1].lstrip("*") for p in sig.split(",")]
        source += body
        launchers.append(f'extern "C" void run_{name}(unsigned g, unsigned b, {sig}) '
                         f'{{ launch({name}, g, b, {", ".join(names)}); }}\n')
    source = source.replace(RawKernel.ASM_LOAD, "f = half_to_float(h);").replace(
        RawKernel.ASM_STORE, "h = float_to_half(v);")
    return compile_library(EMULATOR + source + "".join(launchers))


class RawKernel:
    """cupy.RawKernel(code, name) run on the CPU."""
    ASM_LOAD = 'asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));'
    ASM_STORE = 'asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));'

    def __init__(self, code, name):
        assert self.ASM_LOAD in code and self.ASM_STORE in code
        code = code.replace(self.ASM_LOAD, "f = half_to_float(h);").replace(
            self.ASM_STORE, "h = float_to_half(v);")
        sig = re.search(r'extern "C" __global__ void ' + name + r"\(([^)]*)\)", code).group(1)
        params = [p.strip() for p in sig.split(",")]
        self.kinds = []
        names = []
        for p in params:
            ctype, pname = p.rsplit(" ", 1)
            names.append(pname.lstrip("*"))
            ctype = ctype.replace("const ", "").strip()
            if "*" in p:
                self.kinds.append("ptr")
            else:
                typedefs = {b: a for a, b in re.findall(r"typedef (.+?) (\w+);", code)}
                self.kinds.append(CTYPES[typedefs.get(ctype, ctype)])
        self.fn = getattr(row_library(code), f"run_{name}")

    def __call__(self, grid, block, args):
        assert len(args) == len(self.kinds)
        cargs = [ctypes.c_uint(grid[0]), ctypes.c_uint(block[0])]
        for a, kind in zip(args, self.kinds):
            if kind == "ptr":
                assert isinstance(a, np.ndarray) and a.flags.c_contiguous, "pointer args: contiguous"
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                assert isinstance(a, np.generic), f"scalar args must be NumPy scalars, got {type(a)}"
                cargs.append(kind(a.item()))
        self.fn(*cargs)


CNAME = {"float16": "_Float16", "float32": "float", "float64": "double", "int64": "long long",
         "bool": "bool", "int32": "int"}


class ElementwiseKernel:
    """cupy.ElementwiseKernel run as a C++ loop over the broadcast elements (C order; `i` the index)."""

    def __init__(self, in_params, out_params, operation, name="kernel", reduce_dims=True,
                 preamble="", **kw):
        parse = lambda s: [tuple(p.split()) for p in s.split(",") if p.strip()]   # noqa: E731
        self.ins, self.outs, self.op, self.name, self.pre = parse(in_params), parse(out_params), \
            operation, name, preamble
        self._libs = {}

    def __call__(self, *args):
        n_in = len(self.ins)
        ins, outs = list(args[:n_in]), list(args[n_in:])
        types = {}
        for (t, _), a in zip(self.ins + self.outs, ins + outs):
            if len(t) == 1 and isinstance(a, np.ndarray):
                assert types.get(t, a.dtype) == a.dtype, f"{self.name}: {t} mismatched"
                types[t] = a.dtype
            elif len(t) > 1 and isinstance(a, np.ndarray):
                assert a.dtype == np.dtype(t), f"{self.name}: array for {t} is {a.dtype}"
        arrays = [a for a in ins + outs if isinstance(a, np.ndarray)]
        shape = np.broadcast_shapes(*[a.shape for a in arrays])
        if not outs:
            outs = [np.empty(shape, types[t] if len(t) == 1 else t) for t, _ in self.outs]
        assert all(o.shape == shape for o in outs)
        flat_in = [np.ascontiguousarray(np.broadcast_to(a, shape)) if isinstance(a, np.ndarray) else a
                   for a in ins]
        flat_out = [np.ascontiguousarray(o) for o in outs]
        key = tuple(str(types[k]) for k in sorted(types)) + tuple(
            "arr" if isinstance(a, np.ndarray) else "s" for a in ins)
        if key not in self._libs:
            self._libs[key] = self._build(types, ins)
        cargs = []
        for (t, _), a in zip(self.ins, flat_in):
            if isinstance(a, np.ndarray):
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                ctype = CNAME[str(np.dtype(types[t] if len(t) == 1 else t))]
                cargs.append({"float": ctypes.c_float, "double": ctypes.c_double,
                              "long long": ctypes.c_longlong, "bool": ctypes.c_bool,
                              "int": ctypes.c_int}[ctype](a.item() if isinstance(a, np.generic) else a))
        cargs += [ctypes.c_void_p(o.ctypes.data) for o in flat_out]
        self._libs[key](ctypes.c_longlong(int(np.prod(shape))), *cargs)
        for o, f in zip(outs, flat_out):
            if o is not f:
                o[...] = f
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _build(self, types, ins):
        tdefs = "".join(f"typedef {CNAME[str(v)]} {k};\n" for k, v in sorted(types.items()))
        params, body = [], []
        for const, plist, vals in ((True, self.ins, ins), (False, self.outs, [0] * len(self.outs))):
            for (t, n), v in zip(plist, vals):
                ct = t if len(t) == 1 else CNAME[t]
                if const and not isinstance(v, np.ndarray):
                    params.append(f"{ct} {n}")
                else:
                    params.append(f"{'const ' if const else ''}{ct}* _raw_{n}")
                    body.append(f"{'const ' if const else ''}{ct} &{n} = _raw_{n}[i];")
        src = (f"#include <cmath>\nusing std::exp; using std::log; using std::sqrt; using std::tanh;"
               f" using std::pow;\n{tdefs}{self.pre}\n"
               f'extern "C" void run(long long size, {", ".join(params)}) {{\n'
               f"  for (long long i = 0; i < size; ++i) {{\n    " + "\n    ".join(body)
               + f"\n    {self.op};\n  }}\n}}\n")
        return compile_library(src).run


class ReductionKernel:
    """The reductions glassformer.kernels defines, evaluated with NumPy by name."""

    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name,
                 **kw):
        self.name = name

    def __call__(self, *args, axis=None):
        if self.name.startswith("glassformer_sum_squares_"):    # _float or _double: the sum's type
            (x,) = args
            acc = np.float64 if self.name.endswith("double") else np.float32
            return (x.astype(acc) ** 2).sum(dtype=acc)
        if self.name == "glassformer_ln_dgamma":
            dy, x, mu, r = args
            return (dy.astype(x.dtype) * (x - mu) * r).sum(axis=axis)
        raise NotImplementedError(self.name)


def module(raw=RawKernel, elementwise=ElementwiseKernel, reduction=ReductionKernel):
    """A `cp` stand-in: numpy plus the kernel classes above."""
    cp = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("_")})
    cp.RawKernel, cp.ElementwiseKernel, cp.ReductionKernel = raw, elementwise, reduction
    cp.ndarray = np.ndarray
    return cp


def arg_info(a):
    """What CuPy specialises a kernel argument on: (dtype, shape, C-contiguous); shape None: a scalar."""
    if isinstance(a, np.ndarray):
        return str(a.dtype), a.shape, a.flags.c_contiguous
    return str(np.asarray(a).dtype), None, True


def recording_module():
    """(cp, calls): a stand-in that compiles nothing and appends to `calls`, for each kernel launch,
    (kind "raw"/"elementwise"/"reduction", the kernel object, [arg_info of each argument], axis)."""
    calls = []

    class RecordedRaw:
        def __init__(self, code, name, **kw):
            self.args, self.kw = (code, name), kw

        def __call__(self, grid, block, args):
            calls.append(("raw", self, [arg_info(a) for a in args], None))

    class RecordedElementwise(ElementwiseKernel):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.args, self.kw = args, kw                   # to build the same cupy.ElementwiseKernel

        def __call__(self, *args):
            calls.append(("elementwise", self, [arg_info(a) for a in args], None))
            return super().__call__(*args)

        def _build(self, types, ins):
            return lambda *a: None                          # outputs allocated, left unwritten

    class RecordedReduction(ReductionKernel):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.args, self.kw = args, kw                   # to build the same cupy.ReductionKernel

        def __call__(self, *args, axis=None):
            calls.append(("reduction", self, [arg_info(a) for a in args], axis))
            return super().__call__(*args, axis=axis)

    cp = module(RecordedRaw, RecordedElementwise, RecordedReduction)
    cp.empty, cp.empty_like = np.zeros, np.zeros_like      # unwritten outputs: zeros, not garbage
    return cp, calls
