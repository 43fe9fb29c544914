"""Precision policies (fp32, tf32, fp16 mixed precision) and the dynamic loss scaler fp16 training needs.

fp32: every array float32. tf32: the same arrays, but cuBLAS may round matmul inputs to TF32 (a 10-bit
mantissa) on Ampere and newer GPUs. fp16 (Micikevicius et al. 2018): the Linear layers cast x and W to
float16 for the GEMM (float32 accumulation inside cuBLAS) and keep float32 master weights and gradients;
softmax, LayerNorm and cross-entropy compute in float32; the residual stream stays float32; the loss is
multiplied by a dynamic scale so that small float16 gradients do not flush to zero.
"""
import contextlib
from dataclasses import dataclass

import numpy as np

from .errors import UserError


@dataclass(frozen=True)
class Policy:
    """What a precision mode changes: the matmul input dtype, TF32 in cuBLAS, loss scaling."""
    name: str
    matmul_dtype: str = None       # float32 matmul inputs are cast to this (None: left as they are)
    tf32: bool = False             # cuBLAS may use TF32 tensor cores for float32 matmuls
    loss_scaling: bool = False     # the Trainer multiplies the loss by a LossScaler's scale


POLICIES = {"fp32": Policy("fp32"),
            "tf32": Policy("tf32", tf32=True),
            "fp16": Policy("fp16", matmul_dtype="float16", loss_scaling=True)}

_current = POLICIES["fp32"]


def current():
    """The policy in force (fp32 unless use() chose another)."""
    return _current


def use(name):
    """Choose the precision policy: "fp32", "tf32" or "fp16" (mixed precision)."""
    global _current
    if name not in POLICIES:
        raise UserError(f"unknown precision {name!r}: use one of {sorted(POLICIES)}")
    from . import backend                                   # backend consults this module: import late
    backend.set_tf32(POLICIES[name].tf32)
    _current = POLICIES[name]
    return _current


@contextlib.contextmanager
def policy(name):
    """with precision.policy("fp16"): ... runs the block under that policy, then restores the old one."""
    saved = _current.name
    use(name)
    try:
        yield _current
    finally:
        use(saved)


def _array_module(x):
    from .backend import array_module                       # backend imports this module: import late
    return array_module(x)
