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


class LossScaler:
    """Dynamic loss scaling with torch.cuda.amp.GradScaler's rules.

    The loss is multiplied by `scale` (2**16 at first) before backward. A step whose gradients hold an inf
    or nan is skipped (parameters, optimizer moments and step count unchanged) and the scale is multiplied
    by backoff_factor (0.5); after growth_interval (2000) good steps in a row it is multiplied by
    growth_factor (2). The scale and the counters are 0-d arrays on the gradients' device, so the skip
    decision never waits for the GPU (Adam takes the flag into its update; see Adam.step).
    """

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000):
        if not (init_scale > 0 and growth_factor > 1 and 0 < backoff_factor < 1
                and growth_interval >= 1):
            raise ValueError("LossScaler needs init_scale > 0, growth_factor > 1, "
                             "0 < backoff_factor < 1 and growth_interval >= 1")
        self.growth_factor, self.backoff_factor = float(growth_factor), float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self._host = {"scale": float(init_scale), "good_steps": 0, "skipped_steps": 0}
        self._scale = self._good = self._skipped = None     # 0-d device arrays, made on first use

    def _on(self, xp):
        """The 0-d float32 scale on module xp (the counters beside it), created or moved on demand."""
        if self._scale is None or not isinstance(self._scale, xp.ndarray):
            state = self.state_dict()
            self._scale = xp.asarray(state["scale"], dtype=xp.float32)
            self._good = xp.asarray(state["good_steps"], dtype=xp.int64)
            self._skipped = xp.asarray(state["skipped_steps"], dtype=xp.int64)
        return self._scale

    def loss_scale(self, xp=np):
        """The factor to pass to loss_fn.backward(): a 0-d float32 array on module xp."""
        return self._on(xp)

    def scaled(self, loss_fn):
        """loss_fn whose backward(dout) starts from dout * scale: the loss-scaled backward."""
        return ScaledLoss(loss_fn, self)

    @property
    def scale(self):
        """The current scale as a Python float (reads the device: for logs and tests)."""
        return self.state_dict()["scale"]

    @property
    def skipped_steps(self):
        """How many steps were skipped for inf/nan gradients (reads the device)."""
        return self.state_dict()["skipped_steps"]

    def step(self, optimizer, params, max_norm=0.0):
        """Unscale the gradients, clip their global norm to max_norm (0: no clipping) and step the
        optimizer unless a gradient is inf/nan; then adjust the scale. Returns the unscaled gradient norm
        (a 0-d device array; inf or nan on a skipped step)."""
        from .optimizers import grad_norm
        xp = _array_module(params[0][1])
        inv_scale = 1.0 / self._on(xp)                      # 0-d float32
        norm = grad_norm(params) * inv_scale                # of the true gradients
        found_inf = ~xp.isfinite(norm)                      # an inf/nan gradient makes the norm inf/nan
        factor = inv_scale
        if max_norm:
            factor = factor * xp.minimum(1.0, max_norm / (norm + 1e-6)).astype(xp.float32)
        if getattr(optimizer, "accepts_grad_scale", False):
            optimizer.step(grad_scale=factor, found_inf=found_inf)   # skipped on the device: no sync
        elif not bool(found_inf):                           # any other optimizer: one host read
            for _, g in params:
                g *= factor.astype(g.dtype)
            optimizer.step()
        self.update(found_inf)
        return norm

    def update(self, found_inf):
        """Back off on overflow, grow after growth_interval good steps in a row (on the device)."""
        xp = _array_module(found_inf)
        scale = self._on(xp)
        good = xp.where(found_inf, 0, self._good + 1)
        grow = good >= self.growth_interval
        scale[...] = xp.where(found_inf, scale * self.backoff_factor,
                              xp.where(grow, scale * self.growth_factor, scale))
        self._good[...] = xp.where(grow, 0, good)
        self._skipped += found_inf

    def state_dict(self):
        """{"scale", "good_steps", "skipped_steps"} as Python numbers (reads the device)."""
        if self._scale is None:
            return dict(self._host)
        return {"scale": float(self._scale), "good_steps": int(self._good),
                "skipped_steps": int(self._skipped)}

    def load_state_dict(self, state):
        """Continue from a state_dict() (a resumed run keeps its scale)."""
        self._host = {"scale": float(state["scale"]), "good_steps": int(state.get("good_steps", 0)),
                      "skipped_steps": int(state.get("skipped_steps", 0))}
        self._scale = self._good = self._skipped = None


class ScaledLoss:
    """A loss (forward(logits, targets), backward(dout)) whose backward is multiplied by the scale."""

    def __init__(self, loss_fn, scaler):
        self.loss_fn, self.scaler = loss_fn, scaler
        self.xp = np

    def forward(self, logits, targets):
        self.xp = _array_module(logits)
        return self.loss_fn.forward(logits, targets)

    def backward(self, dout=1.0):
        return self.loss_fn.backward(dout * self.scaler.loss_scale(self.xp))


def _array_module(x):
    from .backend import array_module                       # backend imports this module: import late
    return array_module(x)
