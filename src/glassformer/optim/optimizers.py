"""Optimizers that update live (param, grad) pairs in place: SGD with momentum, Adam, AdamW."""
import math

from .. import backend
from ..backend import array_module


def decay_mask(named_parameters):
    """Weight decay applies to matrices only: not biases, norm gains or embedding tables."""
    return [p.ndim >= 2 and "emb" not in name and not name.endswith(".P")
            for name, (p, _) in named_parameters]


class Optimizer:
    """Holds the (param, grad) pairs, the learning rate and a step count; state is saved by name."""

    def __init__(self, params, lr):
        self.params = list(params)
        self.lr = lr
        self.t = 0

    def zero_grad(self):
        for _, g in self.params:
            g[...] = 0

    def state_arrays(self):
        """{name: array} of the per-parameter state (momentum buffers...)."""
        return {}

    def state_dict(self):
        return {"t": int(self.t), "lr": self.lr, "arrays": self.state_arrays()}

    def load_state_dict(self, state):
        self.t, self.lr = int(state["t"]), float(state["lr"])
        for name, buf in self.state_arrays().items():
            if tuple(state["arrays"][name].shape) != tuple(buf.shape):
                raise ValueError(f"optimizer state {name!r} has the wrong shape")
            buf[...] = array_module(buf).asarray(state["arrays"][name])


class SGD(Optimizer):
    """p -= lr * (v = momentum * v + g)."""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.velocity = [array_module(p).zeros_like(p) for p, _ in self.params]

    def step(self):
        self.t += 1
        for (p, g), vel in zip(self.params, self.velocity):
            grad = g + self.weight_decay * p if self.weight_decay else g
            if self.momentum:
                vel *= self.momentum
                vel += grad
                grad = vel
            p -= self.lr * grad

    def state_arrays(self):
        return {f"velocity.{i}": v for i, v in enumerate(self.velocity)}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015); weight_decay adds decay * p to the gradient (L2, coupled)."""

    decoupled = False
    accepts_grad_scale = True                               # step(grad_scale, found_inf): LossScaler

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decay=None):
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.decay = decay if decay is not None else [True] * len(self.params)
        self.m = [array_module(p).zeros_like(p) for p, _ in self.params]
        self.v = [array_module(p).zeros_like(p) for p, _ in self.params]

    def step(self, grad_scale=None, found_inf=None):
        """One update; grad_scale multiplies every gradient first (loss-scale unscaling and clipping in
        one), a true found_inf (0-d bool) skips the update: parameters, moments and t unchanged."""
        fused = backend.fused("adam_update", self.params[0][0])
        if fused is not None:
            return self._fused_step(fused, grad_scale, found_inf)
        if found_inf is not None and bool(found_inf):       # a host read: free on NumPy
            return
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr * math.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)  # bias corrections
        eps_hat = self.eps * math.sqrt(1 - b2 ** self.t)
        for (p, g), m, v, decay in zip(self.params, self.m, self.v, self.decay):
            if grad_scale is not None:
                g = g * grad_scale
            if self.weight_decay and decay:
                if self.decoupled:
                    p *= 1.0 - self.lr * self.weight_decay          # AdamW: shrink the weight itself
                else:
                    g = g + self.weight_decay * p
            m *= b1
            m += (1 - b1) * g                                       # m = b1 m + (1 - b1) g
            v *= b2
            v += (1 - b2) * (g * g)                                 # v = b2 v + (1 - b2) g^2
            p -= step_size * m / (array_module(v).sqrt(v) + eps_hat)

    def _fused_step(self, kernel, grad_scale, found_inf):
        """step() as one GPU kernel per parameter; with found_inf, t counts on the device (no sync)."""
        if found_inf is None:
            self.t += 1
        else:                                               # t becomes a 0-d device array
            xp = array_module(found_inf)
            self.t = xp.asarray(self.t, dtype=xp.float32) + (~found_inf)
        for (p, g), m, v, decay in zip(self.params, self.m, self.v, self.decay):
            kernel(p, g, m, v, self.lr, self.beta1, self.beta2, self.eps,
                   self.weight_decay if decay else 0.0, self.decoupled, self.t,
                   1.0 if grad_scale is None else grad_scale,
                   False if found_inf is None else found_inf)

    def state_arrays(self):
        out = {f"m.{i}": m for i, m in enumerate(self.m)}
        out.update({f"v.{i}": v for i, v in enumerate(self.v)})
        return out


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p *= 1 - lr * wd each step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decay=None):
        super().__init__(params, lr, betas, eps, weight_decay, decay)
