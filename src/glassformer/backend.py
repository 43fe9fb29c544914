"""The array backend: NumPy by default, CuPy on NVIDIA GPUs. The only module that imports CuPy.

Besides module lookup and host copies it holds what differs on a GPU: TF32 in cuBLAS, the registry of
accelerated kernels laid over the reference functions (@accelerated; the CUDA overlay in kernels/ and
the CPU overlay in kernels/cpu/ register into it, each under a device), batched-matmul modes and
device RNG. The precision helpers are re-exported for the layers and the overlays.
"""
import contextlib
import functools
import importlib
import os
import warnings

import numpy as np

from . import cores, precision
from .errors import UserError
from .precision import matmul, to_compute, upcast  # noqa: F401  re-exported: layers import them here

try:  # the optional `gpu` extra
    import cupy as cp
    import cupyx
except Exception:  # ImportError, or a CuPy that cannot find its CUDA libraries
    cp = None
    cupyx = None

_device = "numpy"  # where new parameters are created: "numpy" or "cupy"
_cupy = cp         # the CuPy imported here (tests may swap cp for a stand-in)
_cuda_devices = [None]  # whether _cupy sees a CUDA device: asked once, by _cupy_arrays_can_exist


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def backend_name(name):
    """"numpy" or "cupy" for a backend or device name ("cpu", "cuda", "gpu" are aliases)."""
    name = {"cpu": "numpy", "cuda": "cupy", "gpu": "cupy"}.get(name, name)
    if name not in ("numpy", "cupy"):
        raise UserError(f"unknown backend {name!r}: use 'numpy' (cpu) or 'cupy' (cuda)")
    return name


def use(name):
    """Choose where new parameters are created: "numpy" (CPU) or "cupy" (GPU)."""
    global _device
    name = backend_name(name)
    if name == "cupy":
        require_gpu()
        _apply_tf32()
    _device = name


def current():
    """The name of the backend new parameters are created on."""
    return _device


def require_gpu():
    """Raise a clear UserError unless CuPy and a CUDA device are both present."""
    if cp is None:
        raise UserError("CuPy is not installed: install the gpu extra with "
                        "pip install -e \".[gpu]\" (needs an NVIDIA GPU and CUDA 12)")
    if not gpu_available():
        raise UserError("CuPy is installed but no CUDA device is visible: run on a machine "
                        "with an NVIDIA GPU, or use --device cpu")


def array_module(x):
    """numpy or cupy, whichever module owns the array x (layer code calls this: arrays follow the data)."""
    if cp is not None and isinstance(x, cp.ndarray):
        return cp
    return np


def xp_for(name=None):
    """The module for a backend or device name (default: the current backend)."""
    name = backend_name(name or _device)
    if name == "cupy":
        require_gpu()
        return cp
    return np


def to_numpy(x):
    """A NumPy copy (or the array itself) of a NumPy or CuPy array."""
    if cp is not None and isinstance(x, cp.ndarray):
        return cp.asnumpy(x)
    return np.asarray(x)


def to_device(x, name=None):
    """Move a NumPy array to the named backend (default: the current one)."""
    return xp_for(name).asarray(x)


def flat_offset(a):
    """(buffer, element offset) when a is a C-contiguous view into a flat 1-D buffer, else None."""
    base = getattr(a, "base", None)
    if base is None or base.ndim != 1 or not (a.flags.c_contiguous and base.flags.c_contiguous):
        return None
    if cp is not None and isinstance(a, cp.ndarray):
        return base, (a.data.ptr - base.data.ptr) // a.itemsize
    return base, (a.ctypes.data - base.ctypes.data) // a.itemsize


def scatter_add(target, idx, values):
    """target[idx] += values where repeated indices sum (the embedding backward); idx is 1-D."""
    if cp is not None and isinstance(target, cp.ndarray):
        cupyx.scatter_add(target, idx, values)
        return
    # NumPy: sort the ids, sum each run of equal ids with reduceat, add once per distinct id
    # (several times faster than np.add.at on (N, C) rows).
    if idx.size == 0:                                       # reduceat needs at least one run
        return
    order = np.argsort(idx, kind="stable")
    sorted_idx = idx[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_idx[1:] != sorted_idx[:-1])))
    target[sorted_idx[starts]] += np.add.reduceat(values[order], starts, axis=0)


# ---- TF32: the precision policy's switch inside cuBLAS -----------------------------------------

_tf32 = precision.current().tf32                 # a policy chosen before this import
CUBLAS_DEFAULT_MATH, CUBLAS_TF32_TENSOR_OP_MATH = 0, 3     # cublasMath_t


def set_tf32(enabled):
    """Let cuBLAS round float32 matmul inputs to TF32 (Ampere and newer GPUs); precision.use("tf32")
    calls it through the listener below."""
    global _tf32
    _tf32 = bool(enabled)
    if gpu_available():
        _apply_tf32()


def tf32_enabled():
    """True when set_tf32(True) asked cuBLAS for TF32 float32 matmuls."""
    return _tf32


def _apply_tf32():
    """Tell CuPy: its 2-D GEMMs read a per-dtype compute type, cupy.matmul's batched GEMMs the handle's
    math mode. Both are per process (the handle per thread); NVIDIA_TF32_OVERRIDE=0 overrides them."""
    try:
        from cupy._core import _routines_linalg as linalg   # CuPy's switch behind CUPY_TF32=1
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if _tf32
                                else linalg.COMPUTE_TYPE_DEFAULT)
        cp.cuda.cublas.setMathMode(cp.cuda.device.get_cublas_handle(),
                                   CUBLAS_TF32_TENSOR_OP_MATH if _tf32 else CUBLAS_DEFAULT_MATH)
    except (AttributeError, ImportError) as e:              # a CuPy whose internals moved
        warnings.warn(f"could not switch TF32 {'on' if _tf32 else 'off'} in CuPy ({e}); "
                      "set CUPY_TF32=1 before starting Python instead")


precision.on_change(lambda policy: set_tf32(policy.tf32))


# ---- attention's batched matmuls on CuPy --------------------------------------------------------

BATCHED_MATMUL_MODES = ("matmul", "cublas")
_batched_matmul = "matmul"


def set_batched_matmul(mode):
    """How attention's (B, H, ., .) products run on CuPy: "matmul" (cupy.matmul) or "cublas".

    Why a choice: CuPy before PR #10317 computes float16 matmul of arrays with more than two dimensions
    in float32 (casting copies, no float16 tensor cores; Linear is unaffected: its GEMMs are 2-D over
    reshaped arrays, like the tied LM head); cupy.matmul's batched GEMM takes TF32 from the
    handle's math mode only; and it copies transposed operands (k^T) to contiguous ones. "cublas" calls
    cublasGemmStridedBatchedEx itself: float16 stays float16 (float32 accumulation), TF32 when the
    policy asks, transposes passed as op flags. Which is faster is measured by bench/gpu_lm.py.
    """
    global _batched_matmul
    if mode not in BATCHED_MATMUL_MODES:
        raise UserError(f"unknown batched matmul mode {mode!r}: use one of {BATCHED_MATMUL_MODES}")
    _batched_matmul = mode


def batched_matmul_mode():
    """The mode set_batched_matmul chose: "matmul" or "cublas"."""
    return _batched_matmul


# ---- accelerated kernels: a fast path laid over the reference array code -------------------------

DEVICES = ("cuda", "cpu")
KERNELS = {"cuda": __package__ + ".kernels",            # the packages of kernels, loaded by name
           "cpu": __package__ + ".kernels.cpu"}         # on first use (see kernel_for)
REFERENCE_ENV = "GLASSFORMER_REFERENCE"                 # set to 1: the plain reference, no CPU overlay
_references = {}                          # name -> every @accelerated reference function
_kernels = {device: {} for device in DEVICES}   # device -> {reference name: the kernel replacing it}
_loaded = set()                           # the devices whose kernel package is imported
_fusion = True                            # False: the reference array code runs on CuPy arrays too
_overlay = os.environ.get(REFERENCE_ENV, "").strip() in ("", "0")   # the CPU overlay: on by default


def accelerates(name, device="cuda"):
    """Register the decorated function as the `device` kernel ("cuda": CuPy data, "cpu": NumPy data)
    that replaces the reference function `name`."""
    if device not in DEVICES:
        raise ValueError(f"unknown kernel device {device!r}: use one of {DEVICES}")

    def register(kernel):
        _kernels[device][name] = kernel
        return kernel
    return register


def accelerated(reference):
    """Wrap a reference function: a kernel registered under its name runs instead (see kernel_for):
    the CUDA one for CuPy data while fusion is on, the CPU one for NumPy data while the CPU overlay
    is on; otherwise the reference itself runs.

    The reference stays the definition; its kernels are tested against it (tests/gpu/test_gpu.py and,
    on the CPU, tests/gpu/test_kernels.py). The wrapper's .reference is the plain function.
    """
    name = reference.__name__
    known = _references.get(name)
    if known is not None and (known.__module__, known.__qualname__) != (reference.__module__,
                                                                        reference.__qualname__):
        raise ValueError(f"two @accelerated functions are named {name!r}: "
                         f"{known.__module__} and {reference.__module__}")
    _references[name] = reference

    @functools.wraps(reference)
    def dispatch(*args, **kwargs):
        kernel = kernel_for(name, *args)
        return (kernel or reference)(*args, **kwargs)
    dispatch.reference = reference
    return dispatch


def reference(name):
    """The plain reference function of the @accelerated `name` (for a kernel handing work back)."""
    return _references[name]


def overlays(device="cuda"):
    """{name: (reference, the device's kernel or None)} of every @accelerated function."""
    _load(device)
    return {name: (ref, _kernels[device].get(name)) for name, ref in _references.items()}


def kernel_for(name, *args):
    """The kernel registered for reference `name` that these arguments would run, or None.

    The first CuPy array among the arguments (looking into tuples and lists, such as a cache or
    (param, grad) pairs) decides: a floating one picks the CUDA kernel while fusion is on, any other
    the reference. No CuPy array: the CPU kernel while the CPU overlay is on, else the reference.
    """
    x = None if cp is None or not _cupy_arrays_can_exist() else _first_cupy_array(args)
    if x is not None:
        if not _fusion or x.dtype.char not in "efd":
            return None
        return _load("cuda").get(name)
    return _load("cpu").get(name) if _overlay else None


def _load(device):
    """The kernel table of `device`, its package imported on first use."""
    if device not in _loaded:
        # Overlays are plugins: backend never imports a kernels package statically (the kernels
        # import backend), so it is loaded by module name, once, when data first reaches here.
        importlib.import_module(KERNELS[device])
        _loaded.add(device)
    return _kernels[device]


def _cupy_arrays_can_exist():
    """False when the CuPy imported at start-up sees no CUDA device: then no CuPy array can be made,
    and kernel_for skips looking for one (20 us for AdamW's list of (param, grad) pairs, every step,
    on a laptop with the gpu extra). The device count is asked once; a stand-in cp (tests) is looked
    into always."""
    if cp is not _cupy:
        return True
    if _cuda_devices[0] is None:
        _cuda_devices[0] = gpu_available()
    return _cuda_devices[0]


def _first_cupy_array(values, depth=2):
    """The first CuPy array among values, looking into tuples and lists depth levels deep."""
    for v in values:
        if type(v) is np.ndarray:                           # NumPy data: one check, the common case
            continue
        if isinstance(v, cp.ndarray):
            return v
        if depth and isinstance(v, (tuple, list)):
            found = _first_cupy_array(v, depth - 1)
            if found is not None:
                return found
    return None


def set_fusion(enabled):
    """Run the accelerated (fused: one pass over memory) CuPy kernels, or the reference code on CuPy."""
    global _fusion
    _fusion = bool(enabled)


@contextlib.contextmanager
def fusion(enabled):
    """with backend.fusion(False): ... runs the reference array code on CuPy arrays (to compare)."""
    saved = _fusion
    set_fusion(enabled)
    try:
        yield
    finally:
        set_fusion(saved)


def set_overlay(enabled):
    """Run the CPU overlay's kernels on NumPy data (the default), or with False the plain reference."""
    global _overlay
    _overlay = bool(enabled)


def overlay_enabled():
    """True while the CPU overlay replaces the reference functions on NumPy data."""
    return _overlay


@contextlib.contextmanager
def use_overlay(enabled):
    """with backend.use_overlay(False): ... runs the plain reference layers on NumPy data (to compare)."""
    saved = _overlay
    set_overlay(enabled)
    try:
        yield
    finally:
        set_overlay(saved)


# ---- CPU threads: the BLAS's and the CPU overlay's thread pool, one number ----------------------

THREADS_ENV = "GLASSFORMER_THREADS"                     # a whole number >= 1; default: every core
BLAS_ENVS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")  # what the BLAS itself read at start-up
_threads = None                                         # set_threads' number, once called


def cpu_threads():
    """The CPU threads to use: set_threads' number, else GLASSFORMER_THREADS, else the BLAS's own
    setting (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS: kept, never overridden), else every core, shared
    out between the processes mpiexec started on this machine (cores.share)."""
    if _threads is not None:
        return _threads
    raw = os.environ.get(THREADS_ENV, "").strip()
    if raw:
        return parse_threads(raw, THREADS_ENV)
    for name in BLAS_ENVS:
        raw = os.environ.get(name, "").strip()
        if raw.isdigit() and int(raw) >= 1:
            return int(raw)
    return cores.share()


def parse_threads(raw, where):
    """A thread count from text, or one UserError naming where it came from."""
    if not raw.isdigit() or int(raw) < 1:
        raise UserError(f"{where}={raw!r}: give a whole number of threads >= 1 (e.g. 1, or 8 for eight "
                        "cores)")
    return int(raw)


def set_threads(n):
    """Use n CPU threads (None: GLASSFORMER_THREADS or every core) for the CPU overlay's tiles and the
    BLAS (OpenBLAS as NumPy bundles it; another BLAS keeps its own setting, OMP_NUM_THREADS)."""
    global _threads
    _threads = None if n is None else parse_threads(str(n), "--threads")
    set_blas_threads(cpu_threads())


def set_blas_threads(n):
    """Tell NumPy's bundled OpenBLAS to use n threads; True when it could be told."""
    import ctypes
    set_num_threads = cores.openblas_function("set_num_threads")
    if set_num_threads is not None:
        set_num_threads(ctypes.c_int(n))
    return set_num_threads is not None


# ---- random numbers and memory on the device ----------------------------------------------------

_device_rngs = {}                                           # id(host Generator) -> (it, cupy RandomState)


def random_uniform(rng, shape, like):
    """Uniform [0, 1) draws of `shape` where `like` lives: rng.random on NumPy (bit-reproducible); on
    CuPy a cupy RandomState seeded once from rng, so masks are drawn on the GPU (not reproducible)."""
    if cp is None or not isinstance(like, cp.ndarray):
        return rng.random(shape)
    entry = _device_rngs.get(id(rng))
    if entry is None or entry[0] is not rng:
        entry = _device_rngs[id(rng)] = (rng, cp.random.RandomState(int(rng.integers(2 ** 62))))
    return entry[1].random_sample(shape, dtype=cp.float32)


def memory_stats():
    """{"used_bytes", "pool_bytes"} of CuPy's memory pool (pool_bytes: the peak reserved); 0s without a GPU."""
    if not gpu_available():
        return {"used_bytes": 0, "pool_bytes": 0}
    pool = cp.get_default_memory_pool()
    return {"used_bytes": int(pool.used_bytes()), "pool_bytes": int(pool.total_bytes())}


def synchronize():
    """Wait for the GPU (timing only; a no-op on NumPy)."""
    if gpu_available():
        cp.cuda.get_current_stream().synchronize()


# ---- NCCL: the gradient all-reduce of data-parallel training on GPUs (train/parallel.py) ----------

def nccl_communicator(mpi_comm, local_rank):
    """Bind this process to GPU local_rank of its node (one process per GPU) and join a NCCL
    communicator over mpi_comm's ranks: rank 0 makes NCCL's unique id, MPI broadcasts it."""
    require_gpu()
    try:
        from cupy.cuda import nccl
    except ImportError:
        raise UserError("this CuPy has no NCCL: install NCCL for data-parallel training on GPUs "
                        "(python -m cupyx.tools.install_library --library nccl)") from None
    cp.cuda.Device(local_rank % cp.cuda.runtime.getDeviceCount()).use()
    uid = mpi_comm.bcast(nccl.get_unique_id() if mpi_comm.Get_rank() == 0 else None, root=0)
    return nccl.NcclCommunicator(mpi_comm.Get_size(), uid, mpi_comm.Get_rank())


def nccl_allreduce(comm, buf):
    """Sum the flat CuPy buffer over comm's ranks in place, on the current stream (no host copy)."""
    from cupy.cuda import nccl
    dtypes = {np.dtype(np.float16): nccl.NCCL_FLOAT16, np.dtype(np.float32): nccl.NCCL_FLOAT32,
              np.dtype(np.float64): nccl.NCCL_FLOAT64}
    comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, dtypes[buf.dtype], nccl.NCCL_SUM,
                   cp.cuda.get_current_stream().ptr)
