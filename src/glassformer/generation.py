"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus) sampling."""
import numpy as np

from .backend import to_numpy


def sample_next(logits, rng, temperature=1.0, top_k=None, top_p=None):
    """One token id from a (V,) vector of logits; greedy (argmax) when temperature is 0."""
    z = to_numpy(logits).astype(np.float64)
    if temperature == 0:
        return int(z.argmax())
    z = z / temperature
    if top_k is not None and 0 < top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)                    # keep the k largest
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and 0.0 < top_p < 1.0:
        order = np.argsort(-p)
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]  # smallest set with mass >= top_p
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(p.size, p=p))


def validate_sampling(temperature, top_k, top_p):
    """Raise ValueError for settings that cannot be sampled with."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k} must be a positive integer")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p={top_p} must be in (0, 1]")
