"""The array backend: NumPy by default, CuPy on NVIDIA GPUs. The only module that imports CuPy."""
import numpy as np

from .errors import UserError

try:  # the optional `gpu` extra
    import cupy as cp
    import cupyx
except Exception:  # ImportError, or a CuPy that cannot find its CUDA libraries
    cp = None
    cupyx = None

_device = "numpy"  # where new parameters are created: "numpy" or "cupy"


def gpu_available():
    """True when CuPy imports and sees at least one CUDA device."""
    if cp is None:
        return False
    try:
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def use(name):
    """Choose where new parameters are created: "numpy" (CPU) or "cupy" (GPU)."""
    global _device
    name = {"cpu": "numpy", "cuda": "cupy", "gpu": "cupy"}.get(name, name)
    if name not in ("numpy", "cupy"):
        raise UserError(f"unknown backend {name!r}: use 'numpy' (cpu) or 'cupy' (cuda)")
    if name == "cupy":
        require_gpu()
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
    """The module for a backend name (default: the current one)."""
    name = name or _device
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
