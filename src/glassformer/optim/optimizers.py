"""What a training step does after backward, in one file: the learning-rate schedule (warm-up, then
cosine), the global gradient norm and clipping, and the optimizers that update live (param, grad)
pairs in place: SGD with momentum, Adam, AdamW.

@accelerated (backend.py) marks a reference a faster kernel of the same name may stand in for: the
CPU overlay's (kernels/cpu/optim.py) on NumPy arrays, the CUDA one (kernels/optim.py) on CuPy
arrays; with the overlay off (--reference, GLASSFORMER_REFERENCE=1) the function below is what runs.
Either way it is the definition: the kernels are tested against it.
"""
import math

from ..backend import accelerated, array_module, flat_offset


# ---- the learning-rate schedule ---------------------------------------------------------------

def warmup_cosine(step, max_lr, warmup_steps, total_steps, min_lr=0.0):
    """lr at `step` (0-based): linear from 0 over warmup_steps, then cosine from max_lr to min_lr."""
    if warmup_steps and step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


# ---- the global gradient norm and clipping ----------------------------------------------------

@accelerated
def sum_squares(g):
    """sum(g * g) as a 0-d value; float16 gradients are squared in float32 (their squares overflow)."""
    if g.dtype == "float16":
        g = g.astype("float32")
    return (g * g).sum()


@accelerated
def grad_norm(params):
    """The global L2 norm of the gradients, a 0-d array in their precision (no host sync)."""
    xp = array_module(params[0][1])
    return xp.sqrt(sum(sum_squares(g) for _, g in params))


def clip_grad_norm(params, max_norm):
    """Scale every gradient so their global L2 norm is at most max_norm; returns the norm before."""
    xp = array_module(params[0][1])
    total = grad_norm(params)
    scale = xp.minimum(1.0, max_norm / (total + 1e-6))
    for _, g in params:
        g *= scale.astype(g.dtype)
    return total


# ---- the optimizers ---------------------------------------------------------------------------


def decay_mask(named_parameters):
    """Weight decay applies to matrices only: not biases, norm gains or embedding tables."""
    return [p.ndim >= 2 and "emb" not in name and not name.endswith(".P")
            for name, (p, _) in named_parameters]


def adjacent_groups(params, keys):
    """[(p, g, key, member indices)]: (param, grad) pairs that are adjacent views of one flat buffer
    (see Layer.flatten) and share a key, merged into one pair of flat slices; any other pair stays a
    group of its own. Whole-buffer work (an Adam step, zeroing, norms) then costs a few calls, not a
    few per parameter."""
    groups, runs = [], {}
    for i, ((p, g), key) in enumerate(zip(params, keys)):
        po, go = flat_offset(p), flat_offset(g)
        if po is None or go is None or po[1] != go[1]:
            groups.append((p, g, key, [i]))                 # not laid flat: a group of its own
        else:
            runs.setdefault((id(po[0]), id(go[0])), []).append((po[1], i))
    for members in runs.values():                           # one list per (param, grad) buffer pair
        members.sort()                                      # by offset in the buffer
        run = members[:1]
        for offset, i in members[1:]:
            last_offset, last = run[-1]
            if offset == last_offset + params[last][0].size and keys[i] == keys[last]:
                run.append((offset, i))                     # right after the last one, same key
            else:
                groups.append(merged(params, keys, run))
                run = [(offset, i)]
        groups.append(merged(params, keys, run))
    return groups


def merged(params, keys, run):
    """The group of a run [(offset, index)] of adjacent parameters: slices of their flat buffers."""
    (start, first), (last_offset, last) = run[0], run[-1]
    end = last_offset + params[last][0].size
    flat_p, flat_g = params[first][0].base, params[first][1].base
    return flat_p[start:end], flat_g[start:end], keys[first], [i for _, i in run]


def group_state(params, groups):
    """Zeroed state (momentum...) for each group, one array each, and every parameter's view of it."""
    flats = [array_module(p).zeros_like(p) for p, _, _, _ in groups]
    return flats, member_views(params, groups, flats)


def member_views(params, groups, flats):
    """Every parameter's view of flats[k], the flat state of its group k (members end to end)."""
    views = [None] * len(params)
    for (_, _, _, members), flat in zip(groups, flats):
        start = 0
        for i in members:
            views[i] = flat.reshape(-1)[start:start + params[i][0].size].reshape(params[i][0].shape)
            start += params[i][0].size
    return views


class Optimizer:
    """Holds the (param, grad) pairs, the learning rate and a step count; state is saved by name.

    pairs covers the same arrays as params in as few (param, grad) arrays as the memory layout allows
    (the same list unless a subclass merges adjacent ones): zero_grad and gradient norms use it.
    """

    def __init__(self, params, lr):
        self.params = list(params)
        self.pairs = self.params
        self.lr = lr
        self.t = 0

    def zero_grad(self):
        for _, g in self.pairs:
            g[...] = 0

    def state_arrays(self):
        """{name: array} of the per-parameter state (momentum buffers...)."""
        return {}

    def buffers(self):
        """The arrays of state a step writes besides the parameters (moments, velocities)."""
        return list(self.state_arrays().values())

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
def adam_step(params, ms, vs, t, settings):
    """One Adam/AdamW update of every (p, g) and its moments (ms, vs) in place; returns the new step t.

    settings: (lr, beta1, beta2, eps, decoupled, weight decays). @accelerated: with the overlay on, the
    CPU's cache-sized version (kernels/cpu/optim.py) or the CUDA kernel runs instead; this defines both.
    """
    t += 1
    lr, b1, b2, eps, decoupled, weight_decays = settings
    for (p, g), m, v, wd in zip(params, ms, vs, weight_decays):
        if wd and decoupled:
            p *= 1.0 - lr * wd                              # AdamW: shrink the weight itself
        elif wd:
            g = g + wd * p                                  # Adam: L2 through the gradient
        m[...] = b1 * m + (1 - b1) * g                      # first moment: a running mean of g
        v[...] = b2 * v + (1 - b2) * g * g                  # second moment: of g^2
        m_hat = m / (1 - b1 ** t)                           # bias corrections (both start at 0)
        v_hat = v / (1 - b2 ** t)
        p -= lr * m_hat / (array_module(p).sqrt(v_hat) + eps)
    return t


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015); weight_decay adds decay * p to the gradient (L2, coupled)."""

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decay=None):
        super().__init__(params, lr)
        self.beta1, self.beta2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.decay = decay if decay is not None else [True] * len(self.params)
        self.groups = adjacent_groups(self.params, [bool(d) for d in self.decay])
        self.init_moments()

    def init_moments(self):
        """Zero moments for every parameter; pairs and _pieces: one per group of adjacent parameters."""
        self._m, self.m = group_state(self.params, self.groups)  # m[i], v[i]: views, by parameter
        self._v, self.v = group_state(self.params, self.groups)
        self.pairs = [(p, g) for p, g, _, _ in self.groups]
        self._pieces = [(m, v, decay) for (_, _, decay, _), m, v in zip(self.groups, self._m, self._v)]

    def step(self):
        """One update of every parameter with its moments."""
        ms, vs = [m for m, _, _ in self._pieces], [v for _, v, _ in self._pieces]
        self.t = adam_step(self.pairs, ms, vs, self.t, self.settings())

    def buffers(self):
        return self._m + self._v

    def settings(self):
        """(lr, beta1, beta2, eps, decoupled, [weight decay per (param, grad) pair]) for adam_step."""
        return (self.lr, self.beta1, self.beta2, self.eps, self.decoupled,
                [self.weight_decay if decay else 0.0 for _, _, decay in self._pieces])

    def moment_bytes(self):
        """Bytes of the moments m and v (2 numbers per parameter)."""
        return sum(m.nbytes + v.nbytes for m, v in zip(self._m, self._v))

    def state_arrays(self):
        out = {f"m.{i}": m for i, m in enumerate(self.m)}
        out.update({f"v.{i}": v for i, v in enumerate(self.v)})
        return out


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019): p *= 1 - lr * wd each step."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, decay=None):
        super().__init__(params, lr, betas, eps, weight_decay, decay)
