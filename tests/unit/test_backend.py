"""The array backend: module lookup, backend choice, host copies, scatter-add, the kernel registry."""
import inspect
import os
import types

import numpy as np
import pytest

from glassformer import backend
from glassformer.errors import UserError


def test_array_module_follows_the_data(xp):
    assert backend.array_module(xp.zeros(3)) is xp
    assert backend.array_module(np.float32(1.0)) is np


def test_array_module_of_numpy_arrays_is_numpy():
    assert backend.array_module(np.zeros((2, 3))) is np
    assert backend.array_module(np.arange(4)) is np


def test_use_numpy_and_aliases():
    backend.use("numpy")
    assert backend.current() == "numpy"
    assert backend.xp_for() is np
    backend.use("cpu")
    assert backend.current() == "numpy"


def test_use_unknown_backend_raises_user_error():
    with pytest.raises(UserError, match="bogus"):
        backend.use("bogus")
    assert backend.current() == "numpy"                    # a failed use() changes nothing


def test_use_cupy_without_cupy_names_the_gpu_extra(monkeypatch):
    monkeypatch.setattr(backend, "cp", None)
    assert not backend.gpu_available()
    with pytest.raises(UserError, match=r"\.\[gpu\]"):
        backend.use("cupy")
    with pytest.raises(UserError, match="gpu"):
        backend.use("cuda")
    assert backend.current() == "numpy"
    assert backend.array_module(np.zeros(2)) is np         # still works with cp = None


def test_to_numpy_returns_numpy(xp):
    a = xp.arange(6, dtype=xp.float32).reshape(2, 3)
    out = backend.to_numpy(a)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, np.arange(6, dtype=np.float32).reshape(2, 3))


def test_to_numpy_of_a_list():
    out = backend.to_numpy([1.0, 2.0])
    assert isinstance(out, np.ndarray) and out.tolist() == [1.0, 2.0]


def test_to_device_numpy_copies_values():
    out = backend.to_device(np.array([1, 2, 3]), "numpy")
    assert isinstance(out, np.ndarray) and out.tolist() == [1, 2, 3]


def test_scatter_add_sums_repeated_ids(xp):
    target = xp.zeros((4, 2))
    idx = xp.asarray([1, 3, 1, 1])
    values = xp.asarray([[1.0, 2.0], [5.0, 6.0], [10.0, 20.0], [100.0, 200.0]])
    backend.scatter_add(target, idx, values)
    expected = np.array([[0, 0], [111, 222], [0, 0], [5, 6]], dtype=float)
    np.testing.assert_array_equal(backend.to_numpy(target), expected)


def test_scatter_add_accumulates_into_existing_values():
    target = np.ones((3, 1))
    backend.scatter_add(target, np.array([0, 0]), np.array([[2.0], [3.0]]))
    assert target[:, 0].tolist() == [6.0, 1.0, 1.0]


def test_scatter_add_matches_add_at_on_random_ids(rng):
    idx = rng.integers(0, 20, 500)                         # unsorted, many repeats, some ids unused
    values = rng.standard_normal((500, 3))
    expected = np.zeros((20, 3))
    np.add.at(expected, idx, values)
    target = np.zeros((20, 3))
    backend.scatter_add(target, idx, values)
    np.testing.assert_allclose(target, expected, rtol=1e-12, atol=1e-12)


def test_scatter_add_with_no_ids_is_a_no_op(xp):
    target = xp.ones((3, 2))
    backend.scatter_add(target, xp.zeros(0, dtype=xp.int64), xp.zeros((0, 2)))
    np.testing.assert_array_equal(backend.to_numpy(target), np.ones((3, 2)))


# ---- the accelerated-kernel registry ------------------------------------------------------------

@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_every_kernel_is_laid_over_a_reference_with_the_same_signature(device):
    table = backend.overlays(device)                        # imports the device's kernels (no CuPy needed)
    kernels = {name: kernel for name, (_, kernel) in table.items() if kernel is not None}
    assert {"attend", "attend_backward", "layer_norm_forward", "layer_norm_backward", "gelu_forward",
            "gelu_backward", "cross_entropy_forward", "cross_entropy_backward", "adam_step",
            "sum_squares"} <= set(kernels)
    for name, kernel in kernels.items():
        reference = table[name][0]
        assert (list(inspect.signature(kernel).parameters)
                == list(inspect.signature(reference).parameters)), name


def test_every_reference_has_a_kernel_somewhere():
    cuda, cpu = backend.overlays("cuda"), backend.overlays("cpu")
    assert not [name for name in cuda if cuda[name][1] is None and cpu[name][1] is None]


def test_accelerated_runs_the_kernel_only_for_floating_device_arrays(monkeypatch):
    class DevArray(np.ndarray):
        """A stand-in for cupy.ndarray."""
    monkeypatch.setattr(backend, "cp", types.SimpleNamespace(ndarray=DevArray))
    monkeypatch.setattr(backend, "_loaded", {"cuda", "cpu"})   # no kernels package to load
    monkeypatch.setattr(backend, "_references", dict(backend._references))

    def probe_double(x, *rest):
        return "reference"
    fast = backend.accelerated(probe_double)
    assert fast.reference is probe_double and fast.__name__ == "probe_double"
    monkeypatch.setitem(backend._kernels["cuda"], "probe_double", lambda x, *rest: "kernel")
    x = np.ones(3)
    dev = x.view(DevArray)
    assert fast(x) == "reference" and fast(dev) == "kernel"
    assert fast(1.0, (dev, 2)) == "kernel"                  # inside a tuple argument
    assert fast([(dev, dev)]) == "kernel"                   # (param, grad) pairs
    assert fast(x, dev) == "kernel"                         # any device array: its cache, say
    assert fast(x, [x, x]) == "reference"
    assert fast(np.arange(3).view(DevArray)) == "reference"   # integers: no kernel
    with backend.fusion(False):
        assert fast(dev) == "reference"
    monkeypatch.delitem(backend._kernels["cuda"], "probe_double")
    assert fast(dev) == "reference"                         # no kernel registered: the reference


def test_the_cpu_overlay_runs_on_numpy_data_until_switched_off(monkeypatch):
    class DevArray(np.ndarray):
        """A stand-in for cupy.ndarray."""
    monkeypatch.setattr(backend, "cp", types.SimpleNamespace(ndarray=DevArray))
    monkeypatch.setattr(backend, "_loaded", {"cuda", "cpu"})
    monkeypatch.setattr(backend, "_references", dict(backend._references))
    monkeypatch.setattr(backend, "_overlay", True)

    def probe_cpu(x):
        return "reference"
    fast = backend.accelerated(probe_cpu)
    monkeypatch.setitem(backend._kernels["cpu"], "probe_cpu", lambda x: "cpu kernel")
    x = np.ones(3)
    assert fast(x) == "cpu kernel" and fast(1.0) == "cpu kernel"
    assert fast(x.view(DevArray)) == "reference"            # CuPy data never runs a CPU kernel
    with backend.use_overlay(False):
        assert not backend.overlay_enabled() and fast(x) == "reference"
    assert backend.overlay_enabled() and fast(x) == "cpu kernel"
    with pytest.raises(ValueError, match="device"):
        backend.accelerates("probe_cpu", device="tpu")


def test_with_no_cuda_device_kernel_for_asks_once_and_looks_for_no_device_array(monkeypatch):
    class DevArray(np.ndarray):
        """A stand-in for cupy.ndarray."""
    fake = types.SimpleNamespace(ndarray=DevArray)
    monkeypatch.setattr(backend, "cp", fake)
    monkeypatch.setattr(backend, "_cupy", fake)             # as if this CuPy were the one imported
    monkeypatch.setattr(backend, "_cuda_devices", [None])
    asked = []
    monkeypatch.setattr(backend, "gpu_available", lambda: asked.append(1) or False)
    monkeypatch.setattr(backend, "_loaded", {"cuda", "cpu"})
    monkeypatch.setitem(backend._kernels["cpu"], "layer_norm_forward", "cpu kernel")
    monkeypatch.setitem(backend._kernels["cuda"], "layer_norm_forward", "cuda kernel")
    monkeypatch.setattr(backend, "_overlay", True)
    dev = np.ones(3).view(DevArray)
    for _ in range(3):                                      # no device: no scan, whatever the data
        assert backend.kernel_for("layer_norm_forward", np.ones(3), [(dev, dev)]) == "cpu kernel"
    assert asked == [1]                                     # the device count asked once
    monkeypatch.setattr(backend, "_cuda_devices", [True])   # a device: the first device array decides
    assert backend.kernel_for("layer_norm_forward", np.ones(3), [(dev, dev)]) == "cuda kernel"
    assert backend.kernel_for("layer_norm_forward", np.ones(3), [(np.ones(3), 1.0)]) == "cpu kernel"


@pytest.mark.parametrize("value,on", [("1", False), ("0", True), ("", True)])
def test_the_reference_environment_variable_switches_the_cpu_overlay_off(value, on):
    import subprocess
    import sys
    env = dict(os.environ, GLASSFORMER_REFERENCE=value)
    done = subprocess.run([sys.executable, "-c", "from glassformer import backend; "
                           "print(backend.overlay_enabled())"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == str(on), done.stderr


def test_two_references_with_one_name_are_refused(monkeypatch):
    monkeypatch.setattr(backend, "_references", dict(backend._references))

    def layer_norm_forward(x):                              # shadows layers.norm's reference
        return x
    with pytest.raises(ValueError, match="layer_norm_forward"):
        backend.accelerated(layer_norm_forward)


# ---- the overlay switch and the batched-matmul modes -------------------------------------------


def test_no_cuda_kernel_for_numpy_and_batched_matmul_modes_are_checked():
    x = np.ones((2, 3), np.float32)
    assert backend.kernel_for("layer_norm_forward", x).__module__ == "glassformer.kernels.cpu.compiled"
    with backend.use_overlay(False):
        assert backend.kernel_for("layer_norm_forward", x) is None      # the plain reference
    with pytest.raises(UserError, match="cublas"):
        backend.set_batched_matmul("einsum")
    backend.set_batched_matmul("cublas")
    assert backend.batched_matmul_mode() == "cublas"
    backend.set_batched_matmul("matmul")
    assert backend.memory_stats() == {"used_bytes": 0, "pool_bytes": 0} or backend.gpu_available()
