"""Every CUDA source glassformer.kernels asks CuPy to compile, compiled with NVRTC for sm_80 and sm_90,
with no GPU: the row kernels (RawKernel) for float16, float32 and float64, and each ElementwiseKernel
and ReductionKernel body wrapped by CuPy's own code generator, with CuPy's headers and options.

Needs the gpu-compile extra (`pip install -e ".[gpu-compile]"`: the NVRTC wheel, and CuPy for its
code generator, headers and NVRTC binding; `import cupy` works without a device); skips without it.
The sources are gathered by driving every registered kernel family through tests/fakecupy.py's
recording stand-in, so a new kernel family must add a driver below (a test checks it).
"""
import time

import numpy as np
import pytest

from glassformer import backend
from glassformer.kernels import common

ARCHS = ("80", "90")
DTYPES = (np.float16, np.float32, np.float64)
TIMES = {}                                  # (case, arch) -> seconds NVRTC took, for the summary line


def needs_nvrtc():
    """(cupy, nvrtc binding), or a skip naming the extra: the only reason this file skips."""
    try:
        import cupy
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()                  # loads libnvrtc.so.12 from the nvidia-cuda-nvrtc-cu12 wheel
    except Exception as e:                  # ImportError, or the library not found
        pytest.skip(f'needs the gpu-compile extra (pip install -e ".[gpu-compile]"): '
                    f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
    return cupy, nvrtc


# ---- gathering: drive each kernel family with small arrays through the recording stand-in ---------

def drive_all(dtype):
    """Run every registered kernel on `dtype` data on fakecupy's recording module; returns its calls."""
    import fakecupy
    cp, calls = fakecupy.recording_module()
    rng = np.random.default_rng(0)
    kernels = {name: k for name, (_, k) in backend.overlays().items() if k is not None}
    common.use_module(cp)
    try:
        for name, drive in DRIVERS.items():
            drive(kernels[name], dtype, rng)
    finally:
        common.use_module(None)
    return calls


def data(rng, dtype, *shape):
    """Standard normal data of `shape` in `dtype`."""
    return rng.standard_normal(shape).astype(dtype)


def drive_attention(kernel, dtype, rng):
    """attend, unmasked and causal, on (B, H, T, D) = (1, 2, 3, 4)."""
    q, k, v = (data(rng, dtype, 1, 2, 3, 4) for _ in range(3))
    kernel(q, k, v, None)
    kernel(q, k, v, np.tril(np.ones((3, 3), bool)))


def drive_attention_backward(kernel, dtype, rng):
    """attend_backward on (1, 2, 3, 4) with a (1, 2, 3, 3) attention matrix."""
    q, k, v, dy = (data(rng, dtype, 1, 2, 3, 4) for _ in range(4))
    kernel(dy, q, k, v, data(rng, dtype, 1, 2, 3, 3))


def drive_gelu(kernel, dtype, rng):
    """gelu_forward on a (2, 3) array."""
    kernel(data(rng, dtype, 2, 3))


def drive_gelu_backward(kernel, dtype, rng):
    """gelu_backward: dout and x of one dtype."""
    x = data(rng, dtype, 2, 3)
    kernel(data(rng, dtype, 2, 3), (x, None))


def drive_cross_entropy(kernel, dtype, rng):
    """cross_entropy_forward without and with an ignored target."""
    kernel(data(rng, dtype, 2, 5), np.array([1, 4]), ignore_index=None)
    kernel(data(rng, dtype, 2, 5), np.array([1, -1]), ignore_index=-1)


def drive_cross_entropy_backward(kernel, dtype, rng):
    """cross_entropy_backward from the forward kernel's cache."""
    _, cache = backend._kernels["cuda"]["cross_entropy_forward"](data(rng, dtype, 2, 5), np.array([1, 4]))
    kernel(np.float32(1.0), cache)


def drive_layer_norm(kernel, dtype, rng):
    """layer_norm_forward on (2, 8) rows."""
    kernel(data(rng, dtype, 2, 8), np.ones(8, dtype), np.zeros(8, dtype), 1e-5)


def drive_layer_norm_backward(kernel, dtype, rng):
    """layer_norm_backward (and its dgamma reduction) from the forward kernel's cache."""
    gamma = np.ones(8, dtype)
    _, cache = backend._kernels["cuda"]["layer_norm_forward"](data(rng, dtype, 2, 8), gamma, None, 1e-5)
    kernel(data(rng, dtype, 2, 8), cache, gamma, np.zeros(8, dtype), np.zeros(8, dtype))


def drive_adam(kernel, dtype, rng):
    """AdamW with a host step count, then with a device one (the loss scaler's)."""
    params = [(data(rng, dtype, 2, 3), data(rng, dtype, 2, 3))]
    ms, vs = [np.zeros((2, 3), dtype)], [np.zeros((2, 3), dtype)]
    settings = (1e-3, 0.9, 0.999, 1e-8, True, [0.1])
    kernel(params, ms, vs, 0, settings)
    kernel(params, ms, vs, np.array(1), settings)


def drive_sum_squares(kernel, dtype, rng):
    """sum_squares of a (2, 3) gradient."""
    kernel(data(rng, dtype, 2, 3))


def drive_linear_backward(kernel, dtype, rng):
    """linear_backward of a (2, 3, 4) -> (2, 3, 5) Linear (cuBLAS GEMMs only: no CUDA of ours)."""
    kernel(data(rng, dtype, 2, 3, 5), data(rng, dtype, 2, 3, 4), data(rng, dtype, 4, 5),
           np.zeros((4, 5), dtype), np.zeros(5, dtype))


DRIVERS = {"attend": drive_attention, "attend_backward": drive_attention_backward,
           "gelu_forward": drive_gelu, "gelu_backward": drive_gelu_backward,
           "cross_entropy_forward": drive_cross_entropy,
           "cross_entropy_backward": drive_cross_entropy_backward,
           "layer_norm_forward": drive_layer_norm, "layer_norm_backward": drive_layer_norm_backward,
           "adam_step": drive_adam, "sum_squares": drive_sum_squares,
           "linear_backward": drive_linear_backward}


# ---- CuPy's wrapping: the source CuPy generates for a recorded launch -------------------------------

def launch_layout(infos, reduce_dims):
    """(ndim, [contiguous per array]) of a launch as CuPy sees it after broadcasting: C-contiguous
    arrays of the full shape collapse to 1-D when reduce_dims (broadcast ones keep the ndim)."""
    shape = np.broadcast_shapes(*[s for _, s, _ in infos if s is not None])
    contiguous = [c and s == shape for _, s, c in infos]
    arrays = [c for (_, s, _), c in zip(infos, contiguous) if s is not None]
    if reduce_dims and len(shape) > 1 and all(arrays):
        return 1, contiguous
    return len(shape), contiguous


def arginfo(cupy, kind, dtype=None, ndim=0, contiguous=True):
    """CuPy's _ArgInfo of one kernel argument: kind "array", "scalar" or "indexer"."""
    from cupy._core import _carray, _kernel, _scalar
    code, typ = {"array": (1, cupy.ndarray), "indexer": (2, _carray.Indexer),
                 "scalar": (3, _scalar.CScalar)}[kind]
    return _kernel._ArgInfo(code, typ, None if dtype is None else np.dtype(dtype), ndim, contiguous,
                            True)


def elementwise_source(cupy, recorded, infos):
    """The CUDA CuPy's ElementwiseKernel generates for this launch (its body, typedefs, CArrays)."""
    from cupy._core import _kernel
    k = cupy.ElementwiseKernel(*recorded.args, **recorded.kw)
    ins, outs = infos[:k.nin], infos[k.nin:]
    in_types, out_types, type_map = k._decide_params_type(
        tuple(np.dtype(d).type if s is not None else None for d, s, _ in ins),
        tuple(np.dtype(d).type for d, _, _ in outs))
    if not outs:                                            # outputs CuPy allocates: full shape
        shape = np.broadcast_shapes(*[s for _, s, _ in ins if s is not None])
        outs = [(np.dtype(t).name, shape, True) for t in out_types]
    ndim, contiguous = launch_layout(ins + outs, k.reduce_dims)
    args = [arginfo(cupy, "scalar", t) if s is None else arginfo(cupy, "array", t, ndim, c)
            for (_, s, _), t, c in zip(ins + outs, in_types + out_types, contiguous)]
    args.append(arginfo(cupy, "indexer", ndim=ndim))
    return k.name, _kernel._get_elementwise_kernel_code(
        tuple(args), type_map, k.params, k.operation, k.name, k.preamble), k.kwargs.get("options", ())


def reduction_source(cupy, recorded, infos, axis):
    """The CUDA CuPy's ReductionKernel generates for this launch (the default 512-thread block)."""
    from cupy._core import _kernel, _reduction
    r = cupy.ReductionKernel(*recorded.args, **recorded.kw)
    in_types, out_types, type_map = _kernel._decide_params_type(
        r.in_params, r.out_params, tuple(np.dtype(d).type for d, _, _ in infos), ())
    type_map = _kernel._TypeMap(type_map._pairs + (("IndexT", "int32"),))
    shape = np.broadcast_shapes(*[s for _, s, _ in infos])
    ndim_in, contiguous = launch_layout(infos, r.reduce_dims)
    ndim_out = 0 if axis is None else len(shape) - 1
    args = [arginfo(cupy, "array", t, ndim_in, c) for t, c in zip(in_types, contiguous)]
    args += [arginfo(cupy, "array", t, ndim_out) for t in out_types]
    args += [arginfo(cupy, "indexer", ndim=ndim_in), arginfo(cupy, "indexer", ndim=ndim_out),
             arginfo(cupy, "scalar", np.int32)]
    return r.name, _reduction._ReductionKernel_get_cached_function_code(
        r.nin, r.nout, r._params, tuple(args), type_map, r.name, 512, r.reduce_type, r.identity,
        r.map_expr, r.reduce_expr, r.post_map_expr, r.preamble, r.options), r.options


def cupy_source(cupy, kind, recorded, infos, axis):
    """(name, full source, options) CuPy would hand NVRTC for one recorded launch."""
    from cupy._core import core
    if kind == "raw":                                       # RawKernel: the code as it is
        code, name = recorded.args
        return name, code, recorded.kw.get("options", ())
    name, code, options = (elementwise_source(cupy, recorded, infos) if kind == "elementwise"
                           else reduction_source(cupy, recorded, infos, axis))
    return name, "".join(f"#include <{h}>\n" for h in core._cupy_header_list) + code, options


def nvrtc_compile(cupy, nvrtc, name, source, options, arch):
    """(ok, log, cubin bytes) of NVRTC compiling source for sm_<arch> with CuPy's options."""
    from cupy._core import core
    options = core.assemble_cupy_compiler_options(tuple(options)) + (
        "-ftz=true", f"-arch=sm_{arch}", "--device-as-default-execution-space")
    prog = nvrtc.createProgram(source, f"{name}.cu", (), ())
    try:
        nvrtc.compileProgram(prog, options)
        return True, nvrtc.getProgramLog(prog), nvrtc.getCUBIN(prog)
    except nvrtc.NVRTCError:
        return False, nvrtc.getProgramLog(prog), b""
    finally:
        nvrtc.destroyProgram(prog)


def numbered(source):
    """source with line numbers, as NVRTC's log counts them."""
    return "\n".join(f"{i:4d} {line}" for i, line in enumerate(source.splitlines(), 1))


# ---- the cases: every row kernel x dtype, every recorded elementwise / reduction launch -----------

def row_cases():
    """("raw", name, dtype) for every registered row kernel and each storage dtype."""
    import glassformer.kernels  # noqa: F401  every family registers its row kernels
    return [(name, np.dtype(d).char) for name in common.ROW_KERNELS for d in DTYPES]


def launch_cases():
    """{case id: (kind, kernel, arg infos, axis)}: each distinct elementwise / reduction launch."""
    cases, seen = {}, set()
    for dtype in DTYPES:
        for kind, kernel, infos, axis in drive_all(dtype):
            key = (kind, kernel.args, tuple(sorted(kernel.kw.items())), tuple(infos), axis)
            if kind == "raw" or key in seen:
                continue
            seen.add(key)
            name = kernel.args[3] if kind == "elementwise" else kernel.args[6]
            base = f"{name}-{np.dtype(dtype).name}"
            n = sum(1 for c in cases if c.split("#")[0] == base)
            cases[base + (f"#{n + 1}" if n else "")] = (kind, kernel, infos, axis)
    return cases


ROWS = row_cases()
LAUNCHES = launch_cases()


@pytest.fixture(scope="module")
def nvrtc_env(request):
    """(cupy, nvrtc); at the end prints how many sources compiled and how long NVRTC took."""
    cupy, nvrtc = needs_nvrtc()
    yield cupy, nvrtc
    if TIMES:
        major, minor = nvrtc.getVersion()
        line = (f"NVRTC {major}.{minor}: compiled {len(TIMES)} CUDA sources "
                f"(row kernels, elementwise and reduction kernels x sm_{', sm_'.join(ARCHS)}) "
                f"in {sum(TIMES.values()):.1f} s")
        plugins = request.config.pluginmanager
        reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():    # shown even when output is captured
                reporter.ensure_newline()
                reporter.write_line(line)


def check_compiles(nvrtc_env, case, name, source, options, arch):
    """Compile one source; on failure show NVRTC's log and the numbered source."""
    cupy, nvrtc = nvrtc_env
    start = time.perf_counter()
    ok, log, cubin = nvrtc_compile(cupy, nvrtc, name, source, options, arch)
    TIMES[(case, arch)] = time.perf_counter() - start
    assert ok, f"NVRTC failed on {case} for sm_{arch}:\n{log}\n{numbered(source)}"
    assert len(cubin) > 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name,char", ROWS, ids=[f"{n}-{np.dtype(c).name}" for n, c in ROWS])
def test_row_kernel_compiles(nvrtc_env, name, char, arch):
    """Each row kernel, as run_rows hands it to cupy.RawKernel, for each storage dtype."""
    check_compiles(nvrtc_env, f"{name}-{np.dtype(char).name}", name, common.row_source(name, char),
                   (), arch)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("case", list(LAUNCHES))
def test_elementwise_and_reduction_kernels_compile(nvrtc_env, case, arch):
    """Each ElementwiseKernel / ReductionKernel launch, wrapped by CuPy's generator and headers."""
    kind, kernel, infos, axis = LAUNCHES[case]
    name, source, options = cupy_source(nvrtc_env[0], kind, kernel, infos, axis)
    check_compiles(nvrtc_env, case, name, source, options, arch)


def test_every_kernel_family_is_gathered():
    """A driver per registered kernel, every row kernel launched, and no RawKernel source the
    row-kernel cases miss: so a new kernel cannot escape the compile tests."""
    import glassformer.kernels  # noqa: F401
    registered = {name for name, (_, k) in backend.overlays().items() if k is not None}
    assert set(DRIVERS) == registered
    sources = {common.row_source(n, c) for n, c in ROWS}
    launched = set()
    for dtype in DTYPES:
        for kind, kernel, _, _ in drive_all(dtype):
            if kind == "raw":
                code, name = kernel.args
                assert code in sources, f"a RawKernel source the row cases miss: {name}"
                launched.add(name)
    assert launched == set(common.ROW_KERNELS)
    assert {k.split("-")[0] for k in LAUNCHES} >= {"glassformer_gelu_forward_float",
                                                   "glassformer_adam_double", "glassformer_ln_dgamma"}


TYPOS = {"row kernel": ("layer_norm_forward", "block_sum(s, shared)", "block_sum(s, shraed)", "shraed"),
         "elementwise body": ("glassformer_gelu_forward_float-float32", "tanh(", "tanhh(", "tanhh")}


@pytest.mark.parametrize("where", list(TYPOS))
def test_a_planted_typo_fails_to_compile(nvrtc_env, where):
    """The harness catches errors: one real source with a typo fails, and NVRTC's log names it."""
    cupy, nvrtc = nvrtc_env
    target, good, bad, word = TYPOS[where]
    if where == "row kernel":
        name, source, options = target, common.row_source(target, "f"), ()
    else:
        name, source, options = cupy_source(cupy, *LAUNCHES[target])
    assert good in source
    ok, log, _ = nvrtc_compile(cupy, nvrtc, name, source.replace(good, bad, 1), options, ARCHS[0])
    assert not ok and "error" in log and f'"{word}"' in log, log


def test_sum_squares_returns_the_documented_dtype_under_cupys_parameter_parsing(monkeypatch):
    """CuPy reads a kernel's parameter types as NumPy names, where "float" is float64: the clip norm's
    sum of squares must come back float32 for float16/float32 gradients and float64 for float64."""
    cupy = pytest.importorskip("cupy", reason="needs the gpu-compile extra (CuPy parses the kernel)")
    from glassformer.kernels import optim as kernels_optim
    built = {}

    def build_only(key, factory):
        built["kernel"] = factory(cupy)                     # construction needs no device
        return lambda g: None

    monkeypatch.setattr(kernels_optim, "compiled", build_only)
    for dtype, want in ((np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64)):
        kernels_optim.sum_squares_cuda(np.ones(3, dtype))
        assert built["kernel"].out_params[0].dtype == want, dtype
