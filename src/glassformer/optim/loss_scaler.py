"""Dynamic loss scaling for fp16 training: small float16 gradients stay above the underflow."""
import numpy as np

from ..backend import array_module
from .optimizers import grad_norm


class LossScaler:
    """Dynamic loss scaling with torch.cuda.amp.GradScaler's rules.

    The loss is multiplied by `scale` (2**16 at first) before backward. A step whose gradients hold an inf
    or nan is skipped (parameters, optimizer moments and step count unchanged) and the scale is multiplied
    by backoff_factor (0.5); after growth_interval (2000) good steps in a row it is multiplied by
    growth_factor (2). The scale and the counters are 0-d arrays on the gradients' device, so the skip
    decision never waits for the GPU (see step_unless).
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

    def step(self, optimizer, max_norm=0.0):
        """The update of an fp16 step, in place of clip and step: unscale the gradients and clip their
        global norm to max_norm (0: no clipping) in one multiply, step the optimizer unless a gradient
        is inf/nan, then adjust the scale. Returns the unscaled gradient norm (a 0-d device array; inf
        or nan on a skipped step)."""
        params = optimizer.pairs
        xp = array_module(params[0][1])
        inv_scale = 1.0 / self._on(xp)                      # 0-d float32
        norm = grad_norm(params) * inv_scale                # of the true gradients
        found_inf = ~xp.isfinite(norm)                      # an inf/nan gradient makes the norm inf/nan
        factor = inv_scale
        if max_norm:
            factor = factor * xp.minimum(1.0, max_norm / (norm + 1e-6)).astype(xp.float32)
        for _, g in params:
            g *= factor.astype(g.dtype)                     # unscaled and clipped, in place
        step_unless(found_inf, optimizer)
        self.update(found_inf)
        return norm

    def update(self, found_inf):
        """Back off on overflow, grow after growth_interval good steps in a row (on the device)."""
        xp = array_module(found_inf)
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


def step_unless(found_inf, optimizer):
    """optimizer.step() unless found_inf (a 0-d bool): a skipped step leaves the parameters, the
    optimizer's state and its step count t as they were. On NumPy that is one free host read; on a
    GPU the step runs and a skipped one is undone on the device, so nothing waits for the flag."""
    xp = array_module(found_inf)
    if xp is np:
        if not bool(found_inf):
            optimizer.step()
        return
    arrays = [p for p, _ in optimizer.pairs] + optimizer.buffers()
    before, t = [a.copy() for a in arrays], optimizer.t
    optimizer.step()
    for a, old in zip(arrays, before):
        xp.copyto(a, old, where=found_inf)
    optimizer.t = xp.asarray(t) + ~found_inf               # t counts on the device


class ScaledLoss:
    """A loss (forward(logits, targets), backward(dout)) whose backward is multiplied by the scale."""

    def __init__(self, loss_fn, scaler):
        self.loss_fn, self.scaler = loss_fn, scaler
        self.xp = np

    def forward(self, logits, targets):
        self.xp = array_module(logits)
        return self.loss_fn.forward(logits, targets)

    def backward(self, dout=1.0):
        return self.loss_fn.backward(dout * self.scaler.loss_scale(self.xp))
