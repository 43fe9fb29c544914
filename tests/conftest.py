"""Shared fixtures: a seeded `rng`, an `xp` fixture over the array backends, and the gpu-marker skip.

Where a test goes: src/glassformer/<package>/<module>.py is tested in tests/unit/<package>/test_<module>.py,
a top-level module in tests/unit/test_<module>.py, a package's __init__ in tests/unit/<package>/test_<package>.py.
The commands end to end (src/glassformer/cli/ and the two scripts) are in tests/cli/, fuzzing and faults in
tests/robustness/, the GPU and its kernels in tests/gpu/, the lessons and exercises in tests/course/, the
explain page in a browser in tests/browser/, the bench/ scripts in tests/bench/; tests/test_layout.py checks
the whole source tree. The shared helpers (datapaths, tools, fakecupy, fake_device) stay at the top: this
file puts tests/ on sys.path. tests/unit/ is a package, so one file name in two of its folders never clashes.
"""
import os

# The tests' matrices are small: one BLAS thread is as fast, and spinning BLAS threads on a busy
# 2-core machine made some tests 20x slower. Set before NumPy loads its BLAS; a user's value wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# numba's start (its import, LLVM, the cached loops: ~1.3 s a process) in each of the suite's command
# runs took CI from 385 to 711 s. The compiled loops are tested where they are the subject:
# tests/unit/kernels/cpu/test_compiled.py turns them on in-process and runs one real training
# command with them; elsewhere the NumPy overlay runs. A user's GLASSFORMER_NUMBA wins.
os.environ.setdefault("GLASSFORMER_NUMBA", "0")

import numpy as np  # noqa: E402
import pytest
from hypothesis import settings

from glassformer import backend

# Hypothesis in CI: the same examples every run (a red CI is reproducible, never luck) and no example
# database left in the clone. Elsewhere its default profile explores afresh each run.
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` skip cleanly (not fail) on a machine without CuPy and a CUDA device."""
    if backend.gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:   # the marker: not the tests/gpu/ folder's name
            item.add_marker(skip)


@pytest.fixture
def rng():
    """A fresh seeded NumPy Generator per test: tests are reproducible and independent."""
    return np.random.default_rng(0)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module a test runs on: numpy always, cupy when a GPU is present."""
    if request.param == "numpy":
        return np
    cp = pytest.importorskip("cupy")
    if not backend.gpu_available():
        pytest.skip("no CUDA device")
    return cp


@pytest.fixture(autouse=True)
def _restore_backend():
    """A test that calls backend.use() must not change where the next test creates parameters."""
    saved = backend.current()
    yield
    backend.use(saved)
