"""The CPU's cores and NumPy's OpenBLAS: its thread count and the kernels it chose."""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from glassformer import backend, cores


def numpy_runs_openblas():
    """True when NumPy was built against OpenBLAS (the wheels from PyPI are)."""
    config = np.show_config(mode="dicts") if np.lib.NumpyVersion(np.__version__) >= "1.26.0" else {}
    return "openblas" in str(config.get("Build Dependencies", {}).get("blas", {})).lower()


needs_openblas = pytest.mark.skipif(not numpy_runs_openblas() or not os.path.exists("/proc/self/maps"),
                                    reason="NumPy here runs another BLAS, or this system has no /proc")


@needs_openblas
def test_set_blas_threads_is_the_count_openblas_then_reports(threads_reset):
    get_num_threads = cores.openblas_function("get_num_threads")
    assert get_num_threads is not None
    for n in (1, 2, 1):
        assert backend.set_blas_threads(n) is True
        assert get_num_threads() == n


@needs_openblas
def test_blas_kernel_names_openblas_s_choice():
    assert cores.blas_kernel() not in ("", "unknown")


def test_a_function_openblas_lacks_is_none():
    assert cores.openblas_function("no_such_function_anywhere") is None


@needs_openblas
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="Haswell's kernels are x86-64's")
def test_openblas_coretype_pins_the_kernel_blas_kernel_reports():
    """What bench/ prints as blas_kernel: the kernel that ran, which OPENBLAS_CORETYPE overrides."""
    code = "from glassformer import cores; print(cores.blas_kernel())"
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    said = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip() == "Haswell"


@pytest.fixture
def threads_reset():
    """Give the BLAS back the suite's thread count afterwards."""
    yield
    backend.set_threads(None)
