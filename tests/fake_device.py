"""Run pytest with `import cupy` answered by a NumPy-backed fake GPU, to exercise the GPU code paths on a
machine without one: python tests/fake_device.py tests/gpu/test_gpu.py -k "not training" -W ignore

"Device" arrays are a DevArray subclass of ndarray that backend.array_module maps to the fake module;
kernels run through tests/fakecupy.py (g++). It checks the Python paths (dispatch, dtypes, shapes,
device-side loss scaling, checkpoints) and the kernels' logic, not CUDA, cuBLAS or speed. Tests that
reach into CuPy internals (TF32 switch, cuBLAS calls) cannot run here; the training tests take minutes
(one std::thread per emulated CUDA thread).
"""
import contextlib
import sys
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fakecupy  # noqa: E402


class DevArray(np.ndarray):
    """A 'device' array: a NumPy array that array_module() maps to the fake cupy."""


def dev(x):
    if isinstance(x, np.ndarray) and not isinstance(x, DevArray):
        return x.view(DevArray)
    if isinstance(x, np.generic):                           # CuPy reductions return 0-d arrays
        return np.asarray(x).view(DevArray)
    if isinstance(x, tuple):
        return tuple(dev(v) for v in x)
    return x


def wrap(fn):
    def call(*a, **k):
        return dev(fn(*a, **k))
    return call


class FakeCupy(types.ModuleType):
    def __getattr__(self, name):
        obj = getattr(np, name)
        if callable(obj) and not isinstance(obj, type):
            return wrap(obj)
        return obj


cp = FakeCupy("cupy")
cp.ndarray = DevArray
def asarray(a, dtype=None):
    if isinstance(a, DevArray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    return dev(np.array(a, dtype=dtype, copy=None))


cp.asarray = asarray
cp.array = lambda a, dtype=None: dev(np.array(a, dtype=dtype))
cp.asnumpy = lambda a: np.array(a).view(np.ndarray)
cp.RawKernel = fakecupy.RawKernel


class EK(fakecupy.ElementwiseKernel):
    def __call__(self, *a):
        return dev(super().__call__(*a))


class RK(fakecupy.ReductionKernel):
    def __call__(self, *a, **k):
        return dev(super().__call__(*a, **k))


cp.ElementwiseKernel, cp.ReductionKernel = EK, RK


class Pool:
    def used_bytes(self):
        return 1

    def total_bytes(self):
        return 2

    def free_all_blocks(self):
        pass


cp.get_default_memory_pool = lambda: Pool()


class RandomState:
    def __init__(self, seed):
        self.r = np.random.RandomState(seed % 2 ** 32)

    def random_sample(self, shape, dtype=np.float64):
        return dev(self.r.random_sample(shape).astype(dtype))

    def randint(self, lo, hi, size, dtype=np.int64):
        return dev(self.r.randint(lo, hi, size).astype(dtype))


cp.random = types.SimpleNamespace(RandomState=RandomState)
cp.cuda = types.SimpleNamespace(
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1,
                                  getDeviceProperties=lambda i: {"name": b"fake"}),
    get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None),
    Device=lambda *a: types.SimpleNamespace(compute_capability="90", id=0))
cupyx = types.ModuleType("cupyx")
cupyx.scatter_add = lambda t, i, v: np.add.at(t, np.asarray(i), v)
cupyx.allow_synchronize = lambda allow: contextlib.nullcontext()
sys.modules["cupy"], sys.modules["cupyx"] = cp, cupyx

import pytest  # noqa: E402
sys.exit(pytest.main(sys.argv[1:]))
