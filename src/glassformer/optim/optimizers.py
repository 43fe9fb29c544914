"""Optimizers that update live (param, grad) pairs in place: SGD with momentum, Adam, AdamW."""
import math

from ..backend import accelerated, array_module


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


@accelerated
def adam_step(params, ms, vs, t, settings, grad_scale=None, found_inf=None):
    """One Adam/AdamW update of every (p, g) and its moments (ms, vs) in place; returns the new step t.

    settings: (lr, beta1, beta2, eps, decoupled, weight decays); grad_scale multiplies every gradient;
    a true found_inf skips the step (t returned unchanged).
    """
    if found_inf is not None and bool(found_inf):           # a host read: free on NumPy
        return t
    t += 1
    lr, b1, b2, eps, decoupled, weight_decays = settings
    step_size = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)     # bias corrections
    eps_hat = eps * math.sqrt(1 - b2 ** t)
    for (p, g), m, v, wd in zip(params, ms, vs, weight_decays):
        if grad_scale is not None:
            g = g * grad_scale
        if wd:
            if decoupled:
                p *= 1.0 - lr * wd                                  # AdamW: shrink the weight itself
            else:
                g = g + wd * p
        xp = array_module(p)
        u = xp.multiply(g, 1 - b1, out=xp.empty_like(m))           # one scratch buffer, reused:
        m *= b1
        m += u                                                      # m = b1 m + (1 - b1) g
        xp.multiply(g, g, out=u)
        u *= 1 - b2
        v *= b2
        v += u                                                      # v = b2 v + (1 - b2) g^2
        xp.sqrt(v, out=u)
        u += eps_hat
        xp.divide(step_size * m, u, out=u)
        p -= u                                                      # p -= step m / (sqrt v + eps)
    return t


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
        self.t = adam_step(self.params, self.m, self.v, self.t, self.settings(), grad_scale, found_inf)

    def settings(self):
        """(lr, beta1, beta2, eps, decoupled, [weight decay per parameter]) for adam_step."""
        return (self.lr, self.beta1, self.beta2, self.eps, self.decoupled,
                [self.weight_decay if decay else 0.0 for decay in self.decay])

    def state_arrays(self):
        out = {f"m.{i}": m for i, m in enumerate(self.m)}
        out.update({f"v.{i}": v for i, v in enumerate(self.v)})
        return out


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p *= 1 - lr * wd each step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decay=None):
        super().__init__(params, lr, betas, eps, weight_decay, decay)
