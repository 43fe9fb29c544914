"""CuPy kernels laid over the reference functions of layers/ and optim/ (llm.c's .cu beside its .c);
the CPU overlay, NumPy kernels laid over the same functions, is the subpackage cpu/.

Each family module registers its kernels with @backend.accelerates("<reference name>"); backend loads
this package by name on the first CuPy array that reaches an @accelerated function, and nothing else
imports it (the kernels get cupy from backend). Each kernel computes what its reference computes, in
fewer passes over memory: tests/gpu/test_gpu.py compares them on a GPU, tests/gpu/test_kernels.py on
the CPU through a g++ emulator (tests/fakecupy.py).
"""
from . import activations, attention, common, linear, loss, norm, optim  # noqa: F401  each registers

__all__ = ["activations", "attention", "common", "linear", "loss", "norm", "optim"]
