"""One optimisation step, shared by every training loop: zero the grads; forward, loss and backward
per micro-batch; clip; update. And the divergence guard that stops a run whose loss or gradients stop
being finite numbers."""
import numpy as np

from ..backend import array_module
from ..errors import UserError
from ..optim.optimizers import clip_grad_norm

MIN_LOSS_SCALE = 2.0 ** -24             # fp16: a scale below this means every step overflows


def train_step(model, loss_fn, optimizer, micro_batches, grad_accum=1, grad_clip=0.0):
    """Zero the grads, run forward + loss + backward on each micro-batch, clip, step the optimizer.

    micro_batches yields (inputs tuple, targets) and is read lazily, so a batch may be drawn from
    the same generator as the dropout masks of the one before; grad_accum is how many it yields
    (backward is scaled by 1/grad_accum: the summed grads are the mean). grad_clip bounds the global
    norm (0: off). Returns (mean loss as a device scalar, logits of the last micro-batch, pre-clip
    norm or None).
    """
    optimizer.zero_grad()
    with quiet():                                           # overflow is the guard's to report
        loss_sum, logits = forward_backward(model, loss_fn, micro_batches, grad_accum)
        norm = clip_grad_norm(optimizer.pairs, grad_clip) if grad_clip > 0 else None
        optimizer.step()
    return loss_sum / grad_accum, logits, norm


def forward_backward(model, loss_fn, micro_batches, grad_accum):
    """Forward, loss and backward of each micro-batch; (the summed loss, the last logits)."""
    loss_sum, logits = 0.0, None
    for inputs, y in micro_batches:
        logits = model.forward(*inputs)                     # (B, n_classes) or (B, T, V)
        loss_sum = loss_sum + loss_fn.forward(logits, y)    # mean over the counted targets
        model.backward(loss_fn.backward(1.0 / grad_accum))  # grads add up across micro-batches
    return loss_sum, logits


class WrappedStep:
    """train_step with features composed around it, made once by the Trainer when a run needs one (a
    one-process fp32 run never does): reduce(pairs, loss_sum) -> loss_sum runs between backward and
    the update (data parallel's all-reduce, train/parallel.py: the clip's norm is the global batch's),
    and update(optimizer, grad_clip) -> pre-clip norm replaces clip and step (fp16's LossScaler)."""

    def __init__(self, reduce=None, update=None):
        self.reduce, self.update = reduce, update or clip_and_step

    def __call__(self, model, loss_fn, optimizer, micro_batches, grad_accum=1, grad_clip=0.0):
        optimizer.zero_grad()
        with quiet():
            loss_sum, logits = forward_backward(model, loss_fn, micro_batches, grad_accum)
            if self.reduce is not None:
                loss_sum = self.reduce(optimizer.pairs, loss_sum)
            norm = self.update(optimizer, grad_clip)
        return loss_sum / grad_accum, logits, norm


def clip_and_step(optimizer, grad_clip):
    """train_step's update: clip the global norm (0: off), step; the pre-clip norm or None."""
    norm = clip_grad_norm(optimizer.pairs, grad_clip) if grad_clip > 0 else None
    optimizer.step()
    return norm


def quiet():
    """NumPy's overflow warnings off: when a run diverges, the guard says so once, clearly."""
    return np.errstate(over="ignore", invalid="ignore", divide="ignore")


class Diverged(UserError):
    """Training stopped because a loss or gradient became NaN or inf; nothing non-finite was saved."""

    def __init__(self, step, reason):
        super().__init__(step, reason)
        self.step, self.reason = step, reason               # step: None until the caller knows it

    def __str__(self):
        at = "" if self.step is None else f" at step {self.step}"
        return (f"training diverged{at}: {self.reason}. The run stopped and saved nothing non-finite "
                "(best.npz and last.npz, if any, hold earlier finite models); lower the learning rate "
                "(--lr) or bound the steps with --grad-clip, and start again")

    def record(self):
        """{"step", "reason"}: what summary.json says under "diverged"."""
        return {"step": self.step, "reason": self.reason}


class DivergenceGuard:
    """Notes the first step whose loss or gradient norm is not finite, on the device (no host sync);
    check() raises Diverged for it. With a loss scaler such steps are skipped and counted by the
    scaler instead (fp16 overflows are expected), and only a collapsed scale is divergence."""

    def __init__(self, scaler=None):
        self.scaler = scaler
        self.first = None                                   # 0-d ints: first bad step, -1 if none

    def update(self, step, loss, norm=None):
        """Record step's loss and pre-clip norm (device scalars); on NumPy check at once (free)."""
        if self.scaler is not None:
            return
        xp = array_module(loss)
        if self.first is None:
            self.first = {"loss": xp.asarray(-1), "gradient norm": xp.asarray(-1)}
        for what, value in (("loss", loss), ("gradient norm", norm)):
            if value is not None:
                self.first[what] = xp.where((self.first[what] < 0) & ~xp.isfinite(value), step,
                                            self.first[what])
        if xp is np:
            self.check()

    def check(self, step=None):
        """Raise Diverged if a step so far had a NaN/inf loss or gradient norm (one host sync)."""
        if self.scaler is not None:
            if self.scaler.scale < MIN_LOSS_SCALE:
                raise Diverged(step, "every step overflows float16 (the loss scale "
                               f"fell below {MIN_LOSS_SCALE:g} after {self.scaler.skipped_steps} skipped steps)")
            return
        bad = {what: int(s) for what, s in (self.first or {}).items() if int(s) >= 0}
        if bad:
            what = min(bad, key=bad.get)
            raise Diverged(bad[what], f"the {what} became NaN or inf")


def check_finite(step, **values):
    """Raise Diverged when one of the named numbers (validation loss, ...) is NaN or inf."""
    for name, value in values.items():
        if not np.isfinite(value):
            raise Diverged(step, f"the {name.replace('_', ' ')} is {value}")


def all_finite(model):
    """True when every parameter of model is a finite number (one host sync)."""
    params = model.get_parameters()
    xp = array_module(params[0][0])
    return bool(sum(xp.isfinite(p).all() for p, _ in params) == len(params))
