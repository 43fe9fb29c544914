"""Lesson 11: sampling and the KV cache."""
import numpy as np

from ...layers.activations import softmax
from ...layers.attention import attend, attention_mask
from ..grading import close, exercise, expect, randn, unpack


@exercise("11")
def temperature_probs(fn, rng):
    z = randn(rng, 16)
    for tau in (0.1, 0.5, 1.0, 3.0):
        close(fn(z.copy(), tau), softmax(z / tau), f"temperature_probs(z, {tau})")
    want = np.zeros(16)
    want[np.argmax(z)] = 1.0
    close(fn(z.copy(), 0), want, "temperature_probs(z, 0) (greedy: one-hot at the argmax)")
    with np.errstate(all="ignore"):
        got = fn(np.array([800.0, 790.0, 0.0]), 0.1)
    close(got, softmax(np.array([800.0, 790.0, 0.0]) / 0.1), "temperature_probs([800, 790, 0], 0.1)")


@exercise("11")
def top_k_filter(fn, rng):
    z = randn(rng, 12)
    for k in (1, 3, 12):
        want = np.where(z >= np.sort(z)[-k], z, -np.inf)
        got = np.asarray(fn(z.copy(), k), dtype=np.float64)
        expect(got.shape == z.shape, f"top_k_filter(z, {k}) has shape {got.shape}, expected {z.shape}")
        expect(np.array_equal(np.isinf(got), np.isinf(want)),
               f"top_k_filter(z, {k}) keeps {int(np.isfinite(got).sum())} logits, expected {k}")
        close(got[np.isfinite(want)], z[np.isfinite(want)], f"the kept logits of top_k_filter(z, {k})")


@exercise("11")
def top_p_filter(fn, rng):
    close(fn(np.array([0.5, 0.3, 0.15, 0.05]), 0.75), [0.625, 0.375, 0.0, 0.0],
          "top_p_filter([0.5, 0.3, 0.15, 0.05], 0.75)")
    close(fn(np.array([0.05, 0.15, 0.3, 0.5]), 0.5), [0.0, 0.0, 0.0, 1.0],
          "top_p_filter([0.05, 0.15, 0.3, 0.5], 0.5)")
    for p in (0.3, 0.9, 1.0):
        probs = rng.dirichlet(np.ones(10))
        order = np.argsort(-probs)
        n = int(np.searchsorted(np.cumsum(probs[order]), p)) + 1
        want = np.zeros(10)
        want[order[:n]] = probs[order[:n]] / probs[order[:n]].sum()
        close(fn(probs.copy(), p), want, f"top_p_filter(random distribution, {p})")


@exercise("11")
def kv_cache_step(fn, rng):
    B, H, T, D = 2, 2, 5, 4
    q, k, v = randn(rng, B, H, T, D), randn(rng, B, H, T, D), randn(rng, B, H, T, D)
    y_full, _ = attend(q, k, v, attention_mask(np, T, T, True))
    cache_k, cache_v = np.zeros((B, H, 0, D)), np.zeros((B, H, 0, D))
    for t in range(T):
        y, cache_k, cache_v = unpack(fn(q[:, :, t:t + 1].copy(), k[:, :, t:t + 1].copy(),
                                        v[:, :, t:t + 1].copy(), cache_k, cache_v),
                                     ("y", "cache_k", "cache_v"))
        close(cache_k, k[:, :, :t + 1], f"cache_k after step {t}")
        close(cache_v, v[:, :, :t + 1], f"cache_v after step {t}")
        close(y, y_full[:, :, t:t + 1], f"y at step {t} (should equal causal attention over 0..{t})")
