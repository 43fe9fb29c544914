"""Muon (Jordan et al. 2024): momentum, then a Newton-Schulz-orthogonalised step; else AdamW."""
from ..backend import array_module
from ..optim.optimizers import AdamW, Optimizer, decay_mask

NS_COEFFS = (3.4445, -4.7750, 2.0315)   # quintic a, b, c: fast growth of small singular values


def orthogonalize(G, steps=5, exact=False, eps=1e-7):
    """Approximate U V^T for G = U S V^T (2-D) by Newton-Schulz iteration, without an SVD.

    exact=False: the quintic X <- a X + (b A + c A^2) X, A = X X^T, of Jordan et al.; 5 steps leave
    the singular values roughly in [0.7, 1.2]. exact=True: the cubic X <- 1.5 X - 0.5 A X, which
    converges to 1 (quadratically near it; a singular value s << 1 first grows by 1.5x a step).
    """
    xp = array_module(G)
    X = G.astype(xp.float32) if G.dtype == xp.float16 else G
    X = X / (xp.linalg.norm(X) + eps)                       # Frobenius: every singular value <= 1
    transposed = X.shape[0] > X.shape[1]
    if transposed:                                          # A = X X^T: the smaller Gram matrix
        X = X.T
    a, b, c = NS_COEFFS
    for _ in range(steps):
        A = X @ X.T                                         # (rows, rows)
        X = 1.5 * X - 0.5 * (A @ X) if exact else a * X + (b * A + c * (A @ A)) @ X
    return X.T if transposed else X


def uses_muon(name, p, exclude):
    """2-D weights, except embeddings (tok_emb.W, pos.P) and names with a dotted part in exclude."""
    return (p.ndim == 2 and "emb" not in name and not name.endswith(".P")
            and not set(name.split(".")) & set(exclude))


class Muon(Optimizer):
    """Muon on hidden 2-D weights, AdamW (glassformer.optimizers) on everything else.

    Takes model.named_parameters(). Setting .lr (a schedule) scales the AdamW rate alike.
    Muon: buf = mu buf + g; u = g + mu buf (Nesterov) or buf; p -= lr * sqrt(max(1, fan_out/fan_in))
    * orthogonalize(u). Our W is (d_in, d_out) (y = x W), so fan_out/fan_in = cols/rows: the
    paper's rows/cols for PyTorch's (out, in) layout.
    """

    def __init__(self, named_params, lr=0.02, momentum=0.95, nesterov=True, ns_steps=5,
                 weight_decay=0.0, adamw_lr=3e-4, adamw_betas=(0.9, 0.95), adamw_eps=1e-8,
                 adamw_weight_decay=0.0, exclude=("head",)):
        if lr <= 0:
            raise ValueError(f"lr={lr} must be positive")
        named = list(named_params)
        other = [(n, pg) for n, pg in named if not uses_muon(n, pg[0], exclude)]
        self.adamw = AdamW([pg for _, pg in other], lr=adamw_lr, betas=adamw_betas, eps=adamw_eps,
                           weight_decay=adamw_weight_decay, decay=decay_mask(other))
        self.adamw_ratio = adamw_lr / lr
        super().__init__([pg for _, pg in named], lr)
        self.muon_names = [n for n, pg in named if uses_muon(n, pg[0], exclude)]
        self.adamw_names = [n for n, _ in other]
        self.muon_params = [pg for n, pg in named if uses_muon(n, pg[0], exclude)]
        self.momentum, self.nesterov, self.ns_steps = momentum, nesterov, ns_steps
        self.weight_decay = weight_decay
        self.buffers = [array_module(p).zeros_like(p) for p, _ in self.muon_params]

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = value
        self.adamw.lr = value * self.adamw_ratio

    def step(self):
        self.t += 1
        mu = self.momentum
        for (p, g), buf in zip(self.muon_params, self.buffers):
            buf *= mu
            buf += g                                        # buf = mu buf + g
            u = g + mu * buf if self.nesterov else buf
            rows, cols = p.shape
            scale = max(1.0, cols / rows) ** 0.5            # fan_out / fan_in for y = x W
            if self.weight_decay:
                p *= 1.0 - self.lr * self.weight_decay      # decoupled, as in AdamW
            p -= (self.lr * scale) * orthogonalize(u, self.ns_steps).astype(p.dtype)
        self.adamw.step()

    def state_arrays(self):
        out = {f"momentum.{i}": b for i, b in enumerate(self.buffers)}
        out.update({f"adamw.{k}": v for k, v in self.adamw.state_arrays().items()})
        return out

    def state_dict(self):
        return {**super().state_dict(), "adamw_lr": self.adamw.lr}

    def load_state_dict(self, state):
        if state.get("adamw_lr") is not None and float(state["lr"]) > 0:
            self.adamw_ratio = float(state["adamw_lr"]) / float(state["lr"])
        super().load_state_dict(state)                      # t, lr (and so the AdamW lr), buffers
        self.adamw.t = self.t
